"""The benchmark engine: config validation, the model cache, seeds, results schema, output atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_unlearn.pipeline import BenchmarkConfig, ConfigError, ModelCache, cache_key, run_experiment
from lightning_unlearn.pipeline.output import check_output_dir, publish
from lightning_unlearn.pipeline.stages import tuning_grid

SCHEMA_KEYS = {"ua", "ra", "ta", "mia", "rmia_auc", "mia_nn_auc", "avg_gap", "avg_gap_mis", "seconds", "hparams", "per_seed"}


def tiny(cache_dir, **kw) -> BenchmarkConfig:
    base = dict(
        max_train=300, max_test=150, epochs=1, methods=("ft",), rmia_references=2, unlearn_epochs=1, max_trials=0, cache_dir=str(cache_dir)
    )
    base.update(kw)
    return BenchmarkConfig(**base)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    cfg = tiny(root / "cache")
    res = run_experiment(cfg, root / "out")
    return cfg, res, root


# ---------------------------------------------------------------------------- end to end
def test_results_schema_and_files(tiny_run):
    cfg, res, root = tiny_run
    assert set(res) >= {"config", "methods"}
    assert res["config"]["forget"] == "random:0.1" and res["config"]["no_remain"] is False
    assert res["config"]["epochs"] == 1 and res["config"]["methods"] == ["original", "retrain", "ft"]
    assert list(res["methods"]) == ["original", "retrain", "ft"]
    for name, m in res["methods"].items():
        assert SCHEMA_KEYS <= set(m), name
        assert m["mia_nn_auc"] is None  # random forgetting
        for k in ("ua", "ra", "ta"):
            assert 0.0 <= m[k] <= 100.0
        assert len(m["per_seed"]) == 1 and m["per_seed"][0]["seed"] == 0
        assert m["seconds"] > 0
    assert res["methods"]["ft"]["hparams"]["epochs"] == 1
    on_disk = json.loads((root / "out" / "results.json").read_text())
    assert on_disk["methods"].keys() == res["methods"].keys()
    report = (root / "out" / "report.md").read_text()
    assert "| original |" in report and "| ft |" in report


def test_accuracies_match_an_independent_count(tiny_run, tmp_path):
    """UA/RA/TA of the original model recomputed from the cached weights by hand."""
    cfg, res, root = tiny_run
    from lightning_unlearn.data import UnlearningDataModule
    from lightning_unlearn.models import build_model

    dm = UnlearningDataModule("digits", forget="random:0.1", seed=0, max_train=300, max_test=150, cache_dir=root / "cache")
    dm.setup()
    cache = ModelCache(root / "cache" / "models")
    originals = [cache.load(p.stem) for p in cache.root.glob("*.pt")]
    originals = [e for e in originals if e.meta["settings"]["role"] == "original" and e.meta["settings"]["seed"] == 0]
    assert len(originals) == 1
    net = build_model("small-cnn", in_channels=1, num_classes=10, mean=dm.mean, std=dm.std)
    net.load_state_dict(originals[0].state_dict)
    net.eval()
    with torch.no_grad():
        pred_train = net(dm.pool.train_x.float() / 255).argmax(1)
        pred_test = net(dm.pool.test_x.float() / 255).argmax(1)
    f, r = dm.split.forget, dm.split.remain
    ua = (pred_train[f] == dm.pool.train_y[f]).float().mean().item() * 100
    ra = (pred_train[r] == dm.pool.train_y[r]).float().mean().item() * 100
    ta = (pred_test == dm.pool.test_y).float().mean().item() * 100
    o = res["methods"]["original"]
    assert o["ua"] == pytest.approx(ua, abs=1e-4) and o["ra"] == pytest.approx(ra, abs=1e-4) and o["ta"] == pytest.approx(ta, abs=1e-4)


def test_cache_is_reused_then_invalidated(tmp_path):
    cfg = tiny(tmp_path / "cache", rmia_references=0, methods=("original", "retrain"))
    first = run_experiment(cfg)
    assert first["run"]["models_trained"] == 2 and first["run"]["models_loaded"] == 0  # original + retrain
    again = run_experiment(cfg.replace(methods=("retrain",), seeds=(0,)))  # another row list: same models
    assert again["run"]["models_trained"] == 0 and again["run"]["models_loaded"] == 2
    assert again["methods"]["original"]["ua"] == first["methods"]["original"]["ua"]
    changed = run_experiment(cfg.replace(forget="random:0.2"))  # the original is reused, the retrained model is not
    assert changed["run"]["models_trained"] == 1 and changed["run"]["models_loaded"] == 1
    longer = run_experiment(cfg.replace(epochs=2))
    assert longer["run"]["models_trained"] == 2


def test_model_cache_atomic_roundtrip(tmp_path):
    cache = ModelCache(tmp_path)
    calls = []

    def train():
        calls.append(1)
        return {"w": torch.arange(3.0)}, {"seconds": 1.5}

    a = cache.get_or_train({"role": "original", "seed": 0}, train)
    b = cache.get_or_train({"seed": 0, "role": "original"}, train)  # key independent of order
    assert len(calls) == 1 and not a.from_cache and b.from_cache
    assert torch.equal(b.state_dict["w"], torch.arange(3.0)) and b.meta["seconds"] == 1.5
    assert b.meta["settings"] == {"role": "original", "seed": 0}
    assert [p.name for p in tmp_path.iterdir()] == [f"{a.key}.pt"]  # no temporary files left
    cache.get_or_train({"role": "original", "seed": 1}, train)
    assert len(calls) == 2
    # a corrupt entry is ignored and retrained, never half-read
    cache.path(a.key).write_bytes(b"garbage")
    assert cache.load(a.key) is None


def test_cache_key_covers_every_training_setting():
    from lightning_unlearn.pipeline.config import training_settings

    cfg = BenchmarkConfig()
    base = cache_key(training_settings(cfg, data_fingerprint="x"))
    for change in (
        dict(dataset="cifar10"), dict(max_train=10), dict(max_test=10), dict(model="resnet18"), dict(epochs=3), dict(lr=0.3),
        dict(batch_size=64), dict(fastclip=1.0), dict(devices="2"), dict(strategy="ddp"),
    ):
        assert cache_key(training_settings(cfg.replace(**change), data_fingerprint="x")) != base, change
    assert cache_key(training_settings(cfg, data_fingerprint="y")) != base
    # settings that do not change a trained model do not change its key
    for change in (dict(methods=("ft",)), dict(seeds=(0, 1)), dict(rmia_gamma=1.0), dict(unlearn_epochs=2)):
        assert cache_key(training_settings(cfg.replace(**change), data_fingerprint="x")) == base


def test_fastclip_norms_are_recorded_and_plotted(tmp_path):
    from lightning_unlearn.callbacks import FastClip  # noqa: F401  (the FastClip issue)

    cfg = tiny(tmp_path / "cache", rmia_references=0, methods=("retrain",), fastclip=1.0, fastclip_every=1)
    res = run_experiment(cfg, tmp_path / "out")
    assert res["config"]["fastclip"] == 1.0 and res["methods"]["original"]["hparams"]["fastclip"] == 1.0
    assert (tmp_path / "out" / "spectral_norms.png").stat().st_size > 1000
    assert "spectral_norms.png" in (tmp_path / "out" / "report.md").read_text()
    # a clipped model is another model: the unclipped one is not reused, and vice versa
    plain = run_experiment(cfg.replace(fastclip=None))
    assert plain["run"]["models_trained"] == 2


# ---------------------------------------------------------------------------- class forgetting
def test_class_forgetting_uses_three_shared_retrained_models(tmp_path):
    cfg = tiny(tmp_path / "cache", forget="class:3", rmia_references=0)
    assert cfg.retrain_seeds() == (0, 1, 2) and cfg.replace(seeds=(4, 7)).retrain_seeds() == (4, 7, 8)
    res = run_experiment(cfg)
    rt = res["methods"]["retrain"]
    assert [p.get("model_seed", p["seed"]) for p in rt["per_seed"]] == [0, 1, 2]
    assert len(res["methods"]["original"]["per_seed"]) == 1 and len(res["methods"]["ft"]["per_seed"]) == 1
    for m in res["methods"].values():
        assert "ua_test" in m and "sym_kl" in m and "mia_nn_auc" in m


def test_held_out_class_for_tuning():
    from lightning_unlearn.pipeline.stages import held_out_class

    assert held_out_class((3,), 10) == 4
    assert held_out_class((9,), 10) == 0
    assert held_out_class((3, 4), 10) == 5
    assert held_out_class((8, 9, 0), 10) == 1
    assert held_out_class((0,), 3) is None  # only two classes would remain


def test_class_forgetting_tunes_on_a_held_out_class(tmp_path):
    cfg = tiny(tmp_path / "cache", forget="class:3", rmia_references=0, max_trials=1, tune_seed=5)
    res = run_experiment(cfg)
    assert res["tuned_on"].startswith("class:4 (held out), original seed 5")
    assert len(res["tuning"]["ft"]) == 1 and res["tuning"]["ft"][0]["avg_gap"] is not None


def test_random_forgetting_seed_mapping():
    cfg = BenchmarkConfig(seeds=(0, 1, 2))
    assert cfg.retrain_seeds(1) == (1,)
    assert BenchmarkConfig(retrain_models=2).retrain_seeds(5) == (5, 1005)


# ---------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "change, words",
    [
        (dict(dataset="imagenet"), ["imagenet", "digits", "cifar10"]),
        (dict(model="vgg"), ["vgg", "small-cnn", "resnet18"]),
        (dict(forget="half"), ["half", "random:FRACTION"]),
        (dict(methods=("nope",)), ["nope", "original", "retrain", "ft"]),
        (dict(methods=("ft",), no_remain=True), ["ft", "forget set only"]),
        (dict(dataset="cifar10", data_dir="/nonexistent/dir"), ["/nonexistent/dir"]),
        (dict(rmia_references=3), ["rmia_references", "3"]),
        (dict(rmia_signal="logit"), ["logit", "softmax"]),
        (dict(seeds=()), ["seed"]),
        (dict(augmentation="mixup"), ["mixup", "auto", "crop_flip", "none"]),
    ],
)
def test_config_errors_name_value_and_allowed(change, words):
    with pytest.raises(ConfigError) as err:
        BenchmarkConfig(**change).validate()
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg


def test_tuning_grid_is_thinned_and_uses_the_lr_grid():
    cfg = BenchmarkConfig(tune_lrs=(0.1, 0.05, 0.01, 0.005, 0.001), max_trials=3)
    grid = tuning_grid("ft", cfg)
    assert grid == [{"lr": 0.1}, {"lr": 0.01}, {"lr": 0.001}]
    assert tuning_grid("ft", cfg.replace(max_trials=0)) == [{}]
    assert tuning_grid("ft", cfg.replace(tune_lrs=(0.1, 0.01), max_trials=3)) == [{"lr": 0.1}, {"lr": 0.01}]
    # several grids: a diagonal from the first to the last value of each
    salun = tuning_grid("salun", BenchmarkConfig(max_trials=3))
    assert [t["lr"] for t in salun] == [0.1, 0.01, 0.001] and [t["mask_ratio"] for t in salun] == [0.1, 0.5, 0.9]


# ---------------------------------------------------------------------------- output
def test_output_checks(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        check_output_dir(f)
    with pytest.raises(ConfigError, match="not writable"):
        check_output_dir(f / "sub")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    assert check_output_dir(tmp_path / "busy") == tmp_path / "busy"  # a folder of the user's own files can receive the report
    (tmp_path / "busy" / "report.md").write_text("my own report")
    with pytest.raises(ConfigError, match="holds 'report.md', not written by lightning-unlearn"):
        check_output_dir(tmp_path / "busy")
    assert check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # the probe leaves nothing
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["keep.txt", "report.md"]


def test_publish_is_all_or_nothing(tmp_path):
    out = tmp_path / "out"

    def fails(tmp: Path):
        (tmp / "results.json").write_text("{}")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        publish(out, fails)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    publish(out, lambda tmp: (tmp / "results.json").write_text('{"a": 1}'))
    with pytest.raises(ConfigError, match="--overwrite"):
        publish(out, lambda tmp: (tmp / "results.json").write_text('{"a": 2}'))
    publish(out, lambda tmp: (tmp / "results.json").write_text('{"a": 2}'), overwrite=True)  # replaces a previous run
    assert json.loads((out / "results.json").read_text()) == {"a": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# ---------------------------------------------------------------------------- fuller run
@pytest.mark.slow
def test_class_forgetting_every_method_two_seeds(tmp_path):
    """Every method that applies to class forgetting, tuned, two seeds, RMIA and MIA-NN."""
    from lightning_unlearn.unlearning import methods_for

    cfg = BenchmarkConfig(
        forget="class:3", max_train=600, max_test=300, epochs=3, unlearn_epochs=1, max_trials=2, rmia_references=2,
        seeds=(0, 1), cache_dir=str(tmp_path / "cache"),
    )
    res = run_experiment(cfg, tmp_path / "out")
    assert list(res["methods"]) == ["original", "retrain", *methods_for("class", True)]
    assert len(res["methods"]["retrain"]["per_seed"]) == 3
    for name, m in res["methods"].items():
        assert len(m["per_seed"]) == (3 if name == "retrain" else 2)
        for k in ("ua", "ua_test", "ra", "ta", "mia", "rmia_auc", "mia_nn_auc", "sym_kl", "avg_gap", "avg_gap_mis"):
            assert m[k] is not None and np.isfinite(m[k]), (name, k)
        assert m["std"]["ua"] >= 0
    for name in methods_for("class", True):
        assert len(res["tuning"][name]) <= 2 and all(t["avg_gap"] is not None for t in res["tuning"][name])
    assert res["methods"]["retrain"]["ua"] < 5.0  # retrained models never saw class 3
    assert res["tuned_on"].startswith("class:4 (held out)")  # never the evaluated class
    assert (tmp_path / "out" / "rmia_roc.png").stat().st_size > 1000


def test_stale_weights_of_another_architecture_are_retrained(tmp_path):
    """A cache entry whose tensors no longer fit the model (e.g. after a library upgrade) is replaced."""
    from lightning_unlearn.pipeline.models import original_model
    from lightning_unlearn.pipeline.stages import open_data

    cfg = tiny(tmp_path / "cache").validate()
    dm = open_data(cfg, 0)
    cache = ModelCache(tmp_path / "cache" / "models")
    settings = {"x": 1}
    bogus = {"w": torch.zeros(2)}
    cache.get_or_train({**settings, "role": "original", "seed": 0}, lambda: (bogus, {"seconds": 0.0}))
    fresh = ModelCache(cache.root)
    model = original_model(cfg, dm, fresh, settings, seed=0)
    assert len(fresh.trained) == 1 and not model.from_cache
    assert ModelCache(cache.root).load(model.key).state_dict.keys() == model.net.state_dict().keys()


def test_evaluation_sets_by_hand():
    """Accuracies and the member/non-member sets of class forgetting, on hand-made logits."""
    from lightning_unlearn.pipeline import evaluation as ev

    train_y = torch.tensor([0, 0, 1, 1, 2, 2])
    test_y = torch.tensor([0, 1, 2, 1])
    # predictions: train -> [0, 1, 1, 1, 2, 0], test -> [0, 1, 1, 0]
    pred_train, pred_test = torch.tensor([0, 1, 1, 1, 2, 0]), torch.tensor([0, 1, 1, 0])
    out = ev.Outputs(torch.nn.functional.one_hot(pred_train, 3).float() * 5, torch.nn.functional.one_hot(pred_test, 3).float() * 5)
    sets = ev.Sets(
        forget=torch.tensor([2, 3]), remain=torch.tensor([0, 1, 4, 5]), test_forget=torch.tensor([1, 3]), test_remain=torch.tensor([0, 2]),
        train_y=train_y, test_y=test_y, n_train=6, kind="class", forget_classes=(1,),
    )
    pos, neg = sets.rmia_sets()
    assert pos.tolist() == [2, 3] and neg.tolist() == [7, 9]  # D_f vs T_f, as pool positions
    members, non_members = sets.mia_sets()
    assert members.tolist() == [0, 1, 4, 5] and non_members.tolist() == [6, 8]  # D_R vs T_r
    e = ev.evaluate(out, sets, retrain_outputs=[out])
    assert e.values["ua"] == 100.0  # both class-1 training samples predicted 1
    assert e.values["ra"] == 50.0  # remain: 0->0 ok, 0->1 no, 2->2 ok, 2->0 no
    assert e.values["ta"] == 50.0  # remaining-class test: 0->0 ok, 2->1 no
    assert e.values["ua_test"] == 50.0  # forget-class test: 1->1 ok, 1->0 no
    assert e.values["mia_nn_auc"] is None  # 2 samples per side < 5 folds: skipped, not a crash
    assert e.values["sym_kl"] == pytest.approx(0.0)  # identical to its "retrained" outputs
    assert e.values["rmia_auc"] is None  # no references


def test_a_method_result_does_not_depend_on_what_ran_before(tmp_path):
    """ft's figures are the same whether or not other methods (and their tuning) ran first."""
    cfg = tiny(tmp_path / "cache", rmia_references=0, methods=("rl", "ft"))
    both = run_experiment(cfg)
    alone = run_experiment(cfg.replace(methods=("ft",)))
    for k in ("ua", "ra", "ta", "mia"):
        assert both["methods"]["ft"][k] == alone["methods"]["ft"][k], k


def test_augmentation_setting_reaches_the_data_and_the_cache_key():
    from lightning_unlearn.pipeline.config import training_settings
    from lightning_unlearn.pipeline.stages import open_data

    none = BenchmarkConfig(augmentation="none", max_train=200, max_test=100)
    flip = BenchmarkConfig(augmentation="crop_flip", max_train=200, max_test=100)
    assert none.data_augmentation is None and flip.data_augmentation == "crop_flip"
    assert BenchmarkConfig().data_augmentation == "auto"
    assert open_data(none, 0).augmentation is None
    assert open_data(flip, 0).augmentation == "crop_flip"  # forced even on 8x8 digits
    # models trained with and without augmentation never share a cache entry
    assert cache_key(training_settings(none, data_fingerprint="x")) != cache_key(training_settings(flip, data_fingerprint="x"))
