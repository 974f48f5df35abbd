"""The U-LiRA audit stage of a benchmark run (``run_ulira``, ``lightning-unlearn ulira``) on tiny digits runs.

Checked: the benchmark is only read (its storage, declaration and files unchanged); the examples
attacked and the non-members are the documented ones (class: the class's training images under
models retrained without it; random: D_F, each example forgotten by N/2 shadows); a cell's
U-LiRA accuracy equals an independent computation (numpy Gaussians, sklearn's balanced accuracy)
from the stored φ; units are memoised (a rerun runs and trains nothing); the chosen
hyperparameters are the benchmark's; bad input and unfinished tuning are refused; and an attack
on retrained models scores 50 in expectation (the retrained models' value).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from lightning_unlearn.audit import forget_table, ulira_target_pool
from lightning_unlearn.metrics.functional import ulira
from lightning_unlearn.pipeline import BenchmarkConfig, ConfigError, run_experiment
from lightning_unlearn.pipeline.output import read_manifest
from lightning_unlearn.pipeline.store import RunStore, StoreMismatchError, default_storage_url
from lightning_unlearn.pipeline.ulira import run_ulira
from lightning_unlearn.pipeline.ulira_source import read_benchmark
from lightning_unlearn.pipeline.ulira_stage import protocol, shadow_unit, shadows_unit, target_unit, targets_unit
from lightning_unlearn.seeding import derive_seed

SHADOWS = 4


def tiny(cache, **kw) -> BenchmarkConfig:
    base = dict(max_train=240, max_test=120, epochs=3, unlearn_epochs=1, rmia_references=0, max_trials=2, seeds=(0,), retrain_models=2,
                cache_dir=str(cache))
    return BenchmarkConfig(**{**base, **kw})


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def class_run(tmp_path_factory):
    """Class forgetting of classes 3 and 8 (each on its own), ft and TRW tuned with 2 trials, then U-LiRA with 4 shadows."""
    root = tmp_path_factory.mktemp("ulira-class")
    cfg = tiny(root / "cache", forget="classes:3,8", methods=("ft", "trw"))
    run_experiment(cfg, root / "out")
    before = digest(root / "out")
    declaration = RunStore(default_storage_url(root / "out")).existing_declaration()
    res = run_ulira(root / "out", shadows=SHADOWS)
    return cfg, res, root, before, declaration


def outcomes(root: Path) -> dict:
    return RunStore(default_storage_url(root / "out" / "ulira")).outcomes()


def test_the_benchmark_is_only_read_and_the_audit_has_its_own_folder(class_run):
    cfg, res, root, before, declaration = class_run
    assert digest(root / "out") == before  # results, report, figures, manifest and the study itself: unchanged
    assert RunStore(default_storage_url(root / "out")).existing_declaration() == declaration
    owned = read_manifest(root / "out" / "ulira")
    assert set(owned) == {"ulira.json", "ulira.md"} and (root / "out" / "ulira" / "study.sqlite3").is_file()
    on_disk = json.loads((root / "out" / "ulira" / "ulira.json").read_text())
    assert on_disk["objectives"]["avg_gap"]["methods"]["trw"]["ulira_acc"] == pytest.approx(res["objectives"]["avg_gap"]["methods"]["trw"]["ulira_acc"])
    md = (root / "out" / "ulira" / "ulira.md").read_text()
    assert "| trw |" in md and "U-LiRA acc" in md and "MIA-NN AUC" in md and "Claims" in md


def test_class_forgetting_attacks_the_class_training_images_against_models_retrained_without_it(class_run):
    cfg, res, root, _, _ = class_run
    bench = read_benchmark(root / "out")
    stored = outcomes(root)
    for fs in bench.design.forget_sets:
        from lightning_unlearn.pipeline.stages import open_data

        dm = open_data(bench.config, fs.seed, spec=fs.spec)
        d_f = torch.sort(dm.forget_set().index).values
        shadows = stored[protocol.key(shadows_unit(fs, SHADOWS, 0))].record
        assert shadows["target_pool"] == d_f.tolist() == ulira_target_pool(dm).tolist()
        assert np.asarray(shadows["forget"]).all()  # every shadow forgets the whole class: N observations per world
        targets = stored[protocol.key(targets_unit(fs))].record
        assert sorted(targets["index"]) == d_f.tolist() and len(targets["retrained"]) == 2 and targets["retrain_seeds"] == list(fs.retrain_seeds)
    s = res["shadows"]
    assert s["per_world"] == SHADOWS and "training images" in s["attacked"] and "retrained without the class" in s["non_members"]
    assert res["splits"]["class:3"]["observations_per_example"] == [SHADOWS]


def _gaussian_lr(unl: np.ndarray, ret: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Λ per example, by hand: per-example means, one pooled within-example variance per world (N < 64)."""
    def fit(obs):
        mu = obs.mean(0)
        var = ((obs - mu) ** 2).sum() / (obs.shape[0] - 1) / obs.shape[1]
        return mu, np.sqrt(var)

    (mu_u, sd_u), (mu_r, sd_r) = fit(unl), fit(ret)
    return (-0.5 * ((phi - mu_u) / sd_u) ** 2 - np.log(sd_u)) - (-0.5 * ((phi - mu_r) / sd_r) ** 2 - np.log(sd_r))


def test_a_cell_equals_an_independent_computation_from_the_stored_phi(class_run):
    cfg, res, root, _, _ = class_run
    stored = outcomes(root)
    bench = read_benchmark(root / "out")
    fs = bench.design.forget_sets[1]
    hp = bench.chosen["avg_gap"]["trw"]
    base = stored[protocol.key(shadows_unit(fs, SHADOWS, 0))].record
    pool = np.asarray(base["target_pool"])
    ret = np.asarray(base["phi_retrained"], dtype=float)
    unl = np.full_like(ret, np.nan)
    for i in range(SHADOWS):
        rec = stored[protocol.key(shadow_unit("trw", hp, fs, SHADOWS, 0, i))].record
        unl[i, np.searchsorted(pool, rec["index"])] = rec["phi"]
    targets = stored[protocol.key(targets_unit(fs))].record
    cols = np.searchsorted(pool, targets["index"])
    phi_u = np.asarray(stored[protocol.key(target_unit("trw", hp, 0, fs))].record["phi"])
    audited = [phi_u] + [np.asarray(p) for p in targets["retrained"]]
    scores = np.concatenate([_gaussian_lr(unl[:, cols], ret[:, cols], phi) for phi in audited])
    truth = np.r_[np.ones(len(cols)), np.zeros(len(cols) * len(targets["retrained"]))]
    expected = 100 * balanced_accuracy_score(truth, scores > 0)
    cell = res["objectives"]["avg_gap"]["methods"]["trw"]["cells"]["ulira_acc"][0][1]
    assert cell == pytest.approx(expected, abs=1e-9)
    assert res["objectives"]["avg_gap"]["methods"]["trw"]["cells"]["ulira_gap"][0][1] == pytest.approx(abs(expected - 50))
    assert res["shadows"]["variance_used"] == ["global"]


def test_a_rerun_runs_and_trains_nothing(class_run, monkeypatch):
    cfg, res, root, _, _ = class_run
    import lightning_unlearn.audit.model_cache as model_cache
    import lightning_unlearn.pipeline.stages as stages
    import lightning_unlearn.pipeline.ulira_stage as ulira_stage

    monkeypatch.setattr(model_cache, "train_classifier", lambda *a, **k: pytest.fail("a cached shadow model was trained again"))
    for module in (stages, ulira_stage):
        monkeypatch.setattr(module, "unlearn", lambda *a, **k: pytest.fail("a stored unit ran again"))
    again = run_ulira(root / "out", shadows=SHADOWS)
    assert again["run"]["units_run"] == 0 and again["run"]["units_reused"] == res["run"]["units_run"] + res["run"]["units_reused"]
    assert again["objectives"]["avg_gap"]["methods"]["trw"]["cells"] == res["objectives"]["avg_gap"]["methods"]["trw"]["cells"]
    with pytest.raises(StoreMismatchError, match="shadows 4 in the study, 6 now"):
        run_ulira(root / "out", shadows=6)


def test_chosen_hyperparameters_are_the_benchmarks_from_its_storage_or_its_results(class_run, tmp_path):
    cfg, res, root, _, _ = class_run
    from_storage = read_benchmark(root / "out")
    assert from_storage.source == "storage"
    bare = tmp_path / "copy"
    bare.mkdir()
    shutil.copy(root / "out" / "results.json", bare / "results.json")
    from_results = read_benchmark(bare)
    assert from_results.source == "results.json" and from_results.chosen == from_storage.chosen
    assert from_results.design == from_storage.design and from_results.config.to_dict() == from_storage.config.to_dict()
    results = json.loads((root / "out" / "results.json").read_text())
    assert from_storage.chosen["avg_gap"]["trw"] == results["objectives"]["avg_gap"]["tuning"]["trw"]["chosen"]
    assert res["objectives"]["avg_gap"]["methods"]["trw"]["hparams"] == from_storage.chosen["avg_gap"]["trw"]


def test_unfinished_tuning_and_bad_settings_are_refused(class_run, monkeypatch, tmp_path):
    cfg, res, root, _, _ = class_run
    from lightning_unlearn.pipeline import results as results_module

    real = results_module._Run.tuning
    monkeypatch.setattr(results_module._Run, "tuning", lambda self, o, m: (real(self, o, m)[0], {"n_trials": 1}))
    with pytest.raises(ConfigError, match="has not finished tuning ft under avg_gap \\(1 of 2 trials\\)"):
        read_benchmark(root / "out")
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="objective 'kl' was not declared"):
        run_ulira(root / "out", shadows=SHADOWS, objectives=("kl",))
    with pytest.raises(ConfigError, match="integer >= 2"):
        run_ulira(root / "out", shadows=1)
    with pytest.raises(ConfigError, match="holds no benchmark run"):
        run_ulira(tmp_path, shadows=SHADOWS)


def test_command_line(class_run, capsys):
    from lightning_unlearn.cli import main

    cfg, res, root, _, _ = class_run
    assert main(["ulira", "--out", str(root / "out"), "--shadows", str(SHADOWS), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "avg_gap:" in out and "trw:" in out and "ulira.md" in out and "0 units run" in out
    assert main(["ulira", "--out", str(root / "out"), "--shadows", "3", "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_random_forgetting_attacks_d_f_each_example_forgotten_by_half_the_shadows(tmp_path):
    cfg = tiny(tmp_path / "cache", forget_seeds=(0,), methods=("ft",), max_trials=0)
    run_experiment(cfg, tmp_path / "out")
    with pytest.raises(ConfigError, match="even"):
        run_ulira(tmp_path / "out", shadows=3)
    res = run_ulira(tmp_path / "out", shadows=SHADOWS)
    bench = read_benchmark(tmp_path / "out")
    fs = bench.design.forget_sets[0]
    from lightning_unlearn.pipeline.stages import open_data

    dm = open_data(bench.config, fs.seed, spec=fs.spec)
    stored = outcomes(tmp_path)
    base = stored[protocol.key(shadows_unit(fs, SHADOWS, 0))].record
    assert base["target_pool"] == ulira_target_pool(dm).tolist()  # D_F and as many remain samples, seeded by the data module
    table = forget_table(SHADOWS, len(base["target_pool"]), seed=0, class_forgetting=False)
    assert np.array_equal(np.asarray(base["forget"], dtype=bool), table.numpy()) and base["forget_table_seed"] == derive_seed(0, "ulira-forget")
    assert base["target_pool_seed"] == derive_seed(int(dm.seed), "ulira-target-pool")
    assert sorted(stored[protocol.key(targets_unit(fs))].record["index"]) == torch.sort(dm.forget_set().index).values.tolist()
    assert res["shadows"]["per_world"] == SHADOWS // 2 and res["splits"][fs.name]["observations_per_example"] == [SHADOWS // 2]
    rows = res["objectives"]["avg_gap"]["methods"]
    assert rows["retrain"]["ulira_acc"] == 50.0 and rows["retrain"]["by_construction"]
    assert rows["ft"]["status"] == "ok" and rows["ft"]["hparams"] == {"epochs": 1} and 0 <= rows["ft"]["ulira_gap"] <= 50


def test_retrained_models_audited_as_unlearned_score_50_in_expectation():
    """The retrained models' value: a rule fixed by noisy shadows, applied to two samples of one distribution, has TPR = FPR."""
    gen = torch.Generator().manual_seed(0)
    n, p, accs = 4, 30, []
    mu = torch.randn(p, generator=gen) * 2
    for _ in range(400):
        unl = mu + 0.7 + torch.randn(n, p, generator=gen)  # the shadows' unlearned world: shifted
        ret = mu + torch.randn(n, p, generator=gen)
        phi = torch.cat([mu + torch.randn(p, generator=gen), mu + torch.randn(p, generator=gen)])  # both audited groups retrained
        world = torch.cat([torch.ones(p), torch.zeros(p)]).long()
        accs.append(ulira(unl, ret, phi, torch.arange(p).repeat(2), world, tpr_fprs=())["balanced_accuracy"])
    assert abs(np.mean(accs) - 50.0) < 3 * np.std(accs) / np.sqrt(len(accs))
    assert np.std(accs) > 1  # each audit is noisy; its expectation is 50


def test_benchmark_scripts_refuse_fewer_than_8_observations_per_world_and_report_the_audit(tmp_path):
    import helpers

    root = Path(__file__).resolve().parents[1]
    random_script = helpers.load_script("benchmarks/random_forget.py")
    for argv, expected in ((["--ulira-only"], 16), (["--ulira-shadows", "20"], 20), ([], 0)):
        assert random_script.ulira_shadows(random_script.parse_args(argv)) == expected, argv
    for bad in ("8", "17"):  # 4 observations per world; odd
        with pytest.raises(SystemExit, match="at least 16"):
            random_script.ulira_shadows(random_script.parse_args(["--ulira-shadows", bad]))
    class_script = helpers.load_script("benchmarks/class_forget.py")
    with pytest.raises(SystemExit):
        class_script.main(["--ulira-only", "--ulira-shadows", "4", "--out", str(tmp_path)])
    blob = json.loads((root / "benchmarks" / "results" / "class_forget_digits" / "results.json").read_text())
    pairs = blob["ulira"]["shadows"]["pairs"]
    assert pairs >= 8 and f"## U-LiRA ({pairs} shadow pairs per class)" in class_script.report(blob)
    readme = class_script.readme(blob)
    assert "### U-LiRA: TRW's gap reduction" in readme and "| trw-concat |" in readme and "the paper's 19%" in readme
