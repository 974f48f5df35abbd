"""The benchmark engine: config validation, the model cache, seeds, results schema, output atomicity."""

from __future__ import annotations

import json
from pathlib import Path

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
    with pytest.raises(ConfigError, match="not empty"):
        check_output_dir(tmp_path / "busy")
    assert check_output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # the probe leaves nothing


def test_publish_is_all_or_nothing(tmp_path):
    out = tmp_path / "out"

    def fails(tmp: Path):
        (tmp / "results.json").write_text("{}")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        publish(out, fails)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    publish(out, lambda tmp: (tmp / "results.json").write_text('{"a": 1}'))
    publish(out, lambda tmp: (tmp / "results.json").write_text('{"a": 2}'))  # replaces a previous run
    assert json.loads((out / "results.json").read_text()) == {"a": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
