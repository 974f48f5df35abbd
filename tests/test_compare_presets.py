"""benchmarks/compare_presets.py: several presets' Avg. Gaps side by side, with the paper's numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name):
    return load_script(BENCH / f"{name}.py")


def fake_results(gaps: dict[str, list[float]], *, no_remain: bool, device: str = "CPU (x, 2 cores)") -> dict:
    """A results.json with per-seed Avg. Gaps; mean and population std computed here by hand."""
    methods = {}
    for m, per in gaps.items():
        mean = sum(per) / len(per)
        std = (sum((g - mean) ** 2 for g in per) / len(per)) ** 0.5
        methods[m] = {
            "avg_gap": mean, "avg_gap_mis": 2 * mean, "ra": 99.0, "ta": 55.0, "ua": 60.0, "rmia_auc": 70.0,
            "per_seed": [{"seed": i, "avg_gap": g} for i, g in enumerate(per)], "std": {"avg_gap": std, "avg_gap_mis": 2 * std},
        }
    return {
        "config": {"forget": "random:0.1", "no_remain": no_remain, "seeds": list(range(len(next(iter(gaps.values()))))), "max_train": 1000, "max_trials": 6},
        "methods": methods,
        "recipes": {
            "original": {"augmentation": "crop_flip", "setting": "crop_flip", "model": "small-cnn", "width": 24, "batch_size": 32, "epochs": 80, "lr": 0.05},
            "unlearning": {"augmentation": "crop_flip", "setting": "auto", "batch_size": 128, "epochs": 10},
        },
        "adversarial_transfer": {"amun": {"prob": 41.5, "top1": 38.0, "mean_delta": 0.25}},
        "tuned_on": "random:0.1 drawn with tune seed 100",
        "provenance": {"device": device, "commit": "abc1234567890"},
    }


def write_preset(root: Path, name: str, runs: dict[str, dict]) -> Path:
    folder = root / f"random_forget_{name}"
    folder.mkdir(parents=True)
    combined = {"preset": name, "folder": folder.name, "runs": {k: {"results": v} for k, v in runs.items()}}
    (folder / f"random_forget_{name}.json").write_text(json.dumps(combined))
    return folder


def test_table_holds_each_presets_gaps_and_the_paper(tmp_path):
    mod = load("compare_presets")
    paper = load("random_forget").PAPER
    crop = write_preset(tmp_path, "cifar1k-crop", {
        "0.1_with_remain": fake_results({"original": [20.0, 22.0, 24.0], "retrain": [0.0, 0.0, 0.0], "amun": [1.0, 2.0, 3.0]}, no_remain=False),
        "0.1_forget_only": fake_results({"original": [20.0, 22.0, 24.0], "retrain": [0.0, 0.0, 0.0], "amun": [5.0, 5.0, 5.0]}, no_remain=True),
    })
    mem = tmp_path / "random_forget_cifar5k" / "0.1_with_remain"  # a single pipeline folder
    mem.mkdir(parents=True)
    (mem / "results.json").write_text(json.dumps(fake_results({"original": [21.0], "retrain": [0.0], "amun": [12.5]}, no_remain=False)))
    text = mod.compare([crop, mem])
    with_remain = text.split("## forget 10%, with D_R")[1].split("## ")[0]
    std = (2 / 3) ** 0.5  # population std of 1, 2, 3
    assert f"| amun | 2.00 ± {std:.2f} | 4.00 ± {2 * std:.2f} | 12.50 | 25.00 | {paper[('0.1', True)]['amun'][4]:.2f} |" in with_remain
    assert "cifar1k-crop: RMIA | cifar1k-crop: SVC | cifar5k: RMIA | cifar5k: SVC | paper" in with_remain
    forget_only = text.split("## forget 10%, D_F only")[1].split("## ")[0]
    assert f"| amun | 5.00 ± 0.00 | 10.00 ± 0.00 | {paper[('0.1', False)]['amun'][4]:.2f} |" in forget_only
    assert "cifar5k" not in forget_only  # the memorising folder has no D_F-only run
    assert "### cifar1k-crop" in text and "width 24" in text and "P(y_adv | x_adv) 41.5%" in text


def test_the_presets_section_counts_the_trials_each_method_ran(tmp_path):
    """The tuning records, not the max_trials cap: a 6-trial diagonal through AMUN's 5 x 3 grid ran 5 points."""
    mod = load("compare_presets")
    res = fake_results({"original": [20.0], "retrain": [0.0], "amun": [1.0]}, no_remain=False)
    res["tuning"] = {"rl": [{"hparams": {"lr": lr}} for lr in (0.1, 0.05, 0.01, 0.005, 0.001)], "amun": [{"hparams": {}}] * 5}
    folder = write_preset(tmp_path, "p", {"0.1_with_remain": res})
    text = mod.compare([folder])
    assert "at most 6 trials per method" in text and "tuning trials: rl 5, amun 5" in text
    del res["tuning"]
    assert "tuning trials not recorded" in mod.compare([write_preset(tmp_path / "b", "p", {"0.1_with_remain": res})])


def test_numbers_of_two_devices_are_refused(tmp_path):
    mod = load("compare_presets")
    a = write_preset(tmp_path, "a", {"0.1_with_remain": fake_results({"amun": [1.0]}, no_remain=False)})
    b = write_preset(tmp_path, "b", {"0.1_with_remain": fake_results({"amun": [1.0]}, no_remain=False, device="NVIDIA H200")})
    with pytest.raises(SystemExit, match="different devices"):
        mod.compare([a, b])
    with pytest.raises(SystemExit, match="neither"):
        mod.compare([tmp_path])


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    """A stand-in for ``$LIGHTNING_UNLEARN_DATA`` (an empty ``cifar10`` tree)."""
    for split in ("train", "test"):
        (tmp_path / "cifar10" / split / "a").mkdir(parents=True)
    monkeypatch.setenv("LIGHTNING_UNLEARN_DATA", str(tmp_path))
    return tmp_path


def test_random_forget_presets_resolve_to_valid_configs(cifar_root):
    """Every preset builds a valid config with the corrected unlearning recipe; options override it."""
    rf = load("random_forget")
    assert set(rf.PRESETS) == {"digits", "cifar5k", "cifar1k-crop", "cifar1k-crop-clip", "cifar10-resnet18"}

    def config(*argv):
        return rf.preset_config(rf.parse_args(list(argv)))

    for preset in rf.PRESETS:  # the protocol: 3 originals x 3 forget sets, R = 2 (the papers' scale: 3), budget 21 on 2 tuning sets
        cfg = config("--preset", preset)
        assert cfg.unlearn_augmentation == "auto" and cfg.unlearn_batch_size == 128 and cfg.seeds == (0, 1, 2)
        assert cfg.resolved_retrain_models == (3 if preset == "cifar10-resnet18" else 2)
        assert cfg.resolved_forget_seeds == (0, 1, 2) and cfg.tune_sets == 2
        assert cfg.rmia_references >= 4 and cfg.max_trials == 21 and not set(cfg.tuning_seeds()) & set(cfg.resolved_forget_seeds)
    crop = config("--preset", "cifar1k-crop")
    assert (crop.width, crop.max_train, crop.epochs, crop.batch_size, crop.lr, crop.augmentation) == (24, 1000, 80, 32, 0.05, "crop_flip")
    assert crop.dataset == str(cifar_root / "cifar10") and crop.fastclip is None
    mem = config("--preset", "cifar5k")
    assert (mem.width, mem.max_train, mem.epochs, mem.batch_size, mem.augmentation) == (None, 5000, 40, 128, "none")
    assert mem.recipes((3, 32, 32))["unlearning"]["augmentation"] == "crop_flip"  # corrected: crop+flip in unlearning
    assert config("--preset", "cifar1k-crop-clip").fastclip == 1.0
    assert rf.folder_name(rf.parse_args(["--preset", "cifar1k-crop-clip"])) == "random_forget_cifar1k-crop-clip"
    milder = ["--preset", "cifar1k-crop-clip", "--fastclip", "2", "--seeds", "0"]
    assert config(*milder).fastclip == 2.0 and config(*milder).seeds == (0,)
    assert rf.folder_name(rf.parse_args(milder)) == "random_forget_cifar1k-crop-clip-c2"
    assert config("--preset", "cifar5k", "--max-trials", "1", "--unlearn-augmentation", "none").unlearn_augmentation == "none"
    assert config("--preset", "cifar5k", "--data", "/elsewhere/tree").dataset == "/elsewhere/tree"


def test_a_cifar_preset_without_its_data_says_how_to_point_at_it(monkeypatch):
    rf = load("random_forget")
    monkeypatch.delenv("LIGHTNING_UNLEARN_DATA", raising=False)
    with pytest.raises(SystemExit, match="--data or LIGHTNING_UNLEARN_DATA"):
        rf.preset_config(rf.parse_args(["--preset", "cifar5k"]))
    assert rf.preset_config(rf.parse_args(["--preset", "digits"])).dataset == "digits"


def test_each_preset_file_is_the_config_the_script_builds(cifar_root):
    """``lightning-unlearn benchmark --config <preset>.yaml`` gives the first run of ``random_forget.py --preset <preset>``
    (the preset's forget fraction with D_R), and with ``--no-remain`` its D_F-only run."""
    from lightning_unlearn.cli import build_parser, config_from_args

    rf = load("random_forget")
    for name, path in rf.PRESETS.items():
        args = rf.parse_args(["--preset", name, "--cache-dir", "c"])
        runs = rf.run_configs(args, rf.preset_config(args))
        frac = "0.2" if name == "digits" else "0.1"  # the preset's own forget fraction
        assert list(runs) == [f"{frac}_with_remain", f"{frac}_forget_only"]
        for key, extra in ((f"{frac}_with_remain", []), (f"{frac}_forget_only", ["--no-remain"])):
            cli = config_from_args(build_parser().parse_args(["benchmark", "--config", str(path), "--cache-dir", "c", *extra, "--out", "x"]))
            assert runs[key] == cli, (name, key)
