"""benchmarks/class_forget.py: its presets, the claim analysis against a hand computation, and a tiny end-to-end run."""

import json
from pathlib import Path

import helpers
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "class_forget.py"


def load_script():
    return helpers.load_script(SCRIPT)


def test_presets_are_yaml_configs_with_the_decisive_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("LIGHTNING_UNLEARN_DATA", str(tmp_path))
    mod = load_script()
    assert set(mod.PRESETS) == {p.stem for p in mod.CONFIGS.glob("*.yaml")}
    crop, mem = mod.PRESETS["cifar1k-crop"].config(), mod.PRESETS["cifar5k"].config()
    assert (crop.width, crop.max_train, crop.epochs, crop.batch_size, crop.lr, crop.augmentation) == (24, 1000, 80, 32, 0.05, "crop_flip")
    assert mem.models.width is None  # the small CNN's default 16: random_forget's cifar5k cache entries
    assert (mem.max_train, mem.epochs, mem.batch_size, mem.augmentation) == (5000, 40, 128, "none")
    for cfg in (crop, mem):
        assert cfg.unlearn_augmentation == "auto" and cfg.rmia_references == 4 and cfg.max_test == 1000
        assert cfg.data.dataset == str(tmp_path / "cifar10")  # ${LIGHTNING_UNLEARN_DATA}/cifar10
    for name in ("cifar1k-crop", "cifar5k"):
        assert mod.PRESETS[name].forget == (1, 3, 5) and mod.PRESETS[name].held_out is None and mod.PRESETS[name].cifar
    assert mod.PRESETS["digits"].forget == (3, 8, 1) and mod.PRESETS["digits"].held_out is None
    assert mod.METHODS[-2:] == ("trw", "trw-concat")
    for preset in mod.PRESETS.values():  # the protocol: every method, 3 originals x 3 forget classes, 3 retrained models each,
        cfg = preset.config()  # budget 21 on 2 held-out classes, all three objectives declared
        assert cfg.methods == ("original", "retrain") + mod.METHODS and cfg.seeds == (0, 1, 2), preset.name
        assert cfg.retrain_models == 3 and cfg.kind == "class" and len(cfg.forget_specs) == 3, preset.name
        assert cfg.max_trials == 21 and cfg.tune_sets == 2 and cfg.objectives == ("avg_gap", "avg_gap+mia_nn", "avg_gap+kl"), preset.name


def test_cifar_presets_validate(cifar_tree):
    mod = load_script()
    for name in ("cifar1k-crop", "cifar5k"):
        mod.PRESETS[name].config(dataset=str(cifar_tree)).validate()


def test_each_preset_file_is_the_config_the_script_builds(tmp_path, monkeypatch):
    """``lightning-unlearn benchmark --config <preset>.yaml`` gives the config of ``--preset <preset>``."""
    from lightning_unlearn.cli import build_parser, config_from_args

    mod = load_script()
    (tmp_path / "cifar10" / "train").mkdir(parents=True)
    monkeypatch.setenv("LIGHTNING_UNLEARN_DATA", str(tmp_path))
    for name, preset in mod.PRESETS.items():
        script = mod.base_config(mod.parse_args(["--preset", name]), preset)
        cli = config_from_args(build_parser().parse_args(["benchmark", "--config", str(preset.file), "--out", "x"]))
        assert script == cli, name
    # the script's options override the file's settings
    args = mod.parse_args(["--preset", "digits", "--seeds", "4", "--methods", "ft", "--epochs", "2", "--tune-class", "7,9", "--cache-dir", "c",
                           "--objectives", "avg_gap", "--forget", "classes:3,4"])
    changed = mod.base_config(args, mod.PRESETS["digits"])
    assert changed == mod.PRESETS["digits"].config(seeds=(4,), methods=("original", "retrain", "ft"), epochs=2, tune_class=(7, 9), cache_dir="c",
                                                   objectives=("avg_gap",), forget="classes:3,4")


def _results(gaps: dict[str, dict[str, float]]) -> dict:
    rows = {}
    for row in ("original", "retrain", "ft", "rl", "scrub", "trw", "trw-concat"):
        rows[row] = {"ua": 0.0, "ua_test": 0.0, "ta": 80.0, "std": {}}
        for g, per in gaps.items():
            rows[row][g] = per.get(row)
            rows[row]["std"][g] = 0.5
    return {"methods": rows}


def test_derive_finds_the_best_prior_method_and_the_reduction_by_hand():
    mod = load_script()
    auc = {"original": 20.0, "retrain": 3.0, "ft": 10.0, "rl": 8.0, "scrub": 12.0, "trw": 4.0, "trw-concat": 9.0}
    acc = {"original": 50.0, "retrain": 6.0, "ft": 30.0, "rl": 5.0, "scrub": 25.0, "trw": 7.5, "trw-concat": 2.0}
    d = mod.derive(_results({"mia_nn_auc_gap": auc, "mia_nn_retrain_acc_gap": acc}))
    assert d["best_prior"] == {"mia_nn_auc_gap": "rl", "mia_nn_retrain_acc_gap": "rl"}
    assert d["noise_floor"] == {"mia_nn_auc_gap": 3.0, "mia_nn_retrain_acc_gap": 6.0}
    t = d["trw"]["trw"]["mia_nn_auc_gap"]
    assert t["closest_to_retrain"] is True and t["reduction_vs_best_prior"] == pytest.approx(1 - 4.0 / 8.0) and t["within_noise_floor"] is False
    t = d["trw"]["trw"]["mia_nn_retrain_acc_gap"]
    assert t["closest_to_retrain"] is False and t["reduction_vs_best_prior"] == pytest.approx(1 - 7.5 / 5.0)
    t = d["trw"]["trw-concat"]["mia_nn_retrain_acc_gap"]
    assert t["closest_to_retrain"] is True and t["within_noise_floor"] is True and t["reduction_vs_best_prior"] == pytest.approx(0.6)
    assert "mia_nn_acc_gap" not in d["gaps"]  # a figure no row has is left out
    lines = mod.claims_table(d, ("mia_nn_auc_gap", "mia_nn_retrain_acc_gap"))
    assert len(lines) == 2 + 4 and any("| trw-concat (concat) | 2.00 ± 0.50 | rl (5.00 ± 0.50) | yes | 60% | 6.00 |" in line for line in lines)
    # an objective's verdicts: TRW's standing against the best method under it
    with_verdicts = {**_results({"mia_nn_auc_gap": auc}), "best": "rl", "verdicts": {"trw": "worse", "trw-concat": "not distinguishable"}}
    assert mod.derive(with_verdicts)["verdicts"] == {"trw": "worse", "trw-concat": "not distinguishable"}


def test_a_tiny_digits_run_writes_the_claims_under_each_objective(tmp_path):
    mod = load_script()
    out = tmp_path / "out"
    argv = ["--preset", "digits", "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--seeds", "0", "--forget", "classes:3,8", "--epochs", "3",
            "--unlearn-epochs", "1", "--max-trials", "1", "--methods", "ft,trw,trw-concat", "--rmia-references", "0", "--objectives", "avg_gap,avg_gap+kl"]
    assert mod.main(argv) == 0
    blob = json.loads((out / "results.json").read_text())
    res = blob["results"]
    assert list(res["methods"]) == ["original", "retrain", "ft", "trw", "trw-concat"]
    assert res["methods"]["trw-concat"]["hparams"]["mixing"] == "concat" and set(mod.chosen_hparams(res)) == {"ft", "trw", "trw-concat"}
    assert res["tuned_on"].startswith("2 held-out classes (class:9, class:0")
    assert set(blob["derived"]) == {"avg_gap", "avg_gap+kl"}
    for g in mod.GAPS:
        assert set(blob["derived"]["avg_gap"]["gaps"][g]) == set(res["methods"]), g
    readme = (out / "README.md").read_text()
    assert readme.startswith(mod.README_MARKER) and "## Claims and measured outcome" in readme and "| trw-concat (concat) |" in readme
    assert "### Tuned under `avg_gap+kl`" in readme
    report = (out / "report.md").read_text()
    assert "### MIA-NN, both protocols" in report and "### MIA-NN, retrain protocol with logit features" in report and "Verdict:" in report
    # a README written by hand is never overwritten
    (out / "README.md").write_text("# my reading\n")
    assert mod.main(["--report-only", "--out", str(out)]) == 0
    assert (out / "README.md").read_text() == "# my reading\n" and (out / "README.generated.md").is_file()
