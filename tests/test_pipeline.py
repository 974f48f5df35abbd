"""The benchmark engine: config validation, the model cache, seeds, results schema, output atomicity.

Most runs here use one cell (one original, one forget set, one retrained model, nothing tuned):
the protocol's design, tuning and statistics are tested in tests/test_protocol.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_unlearn.cache import ArtefactCache, settings_key
from lightning_unlearn.fileio import load_checked
from lightning_unlearn.pipeline import BenchmarkConfig, ConfigError, run_experiment
from lightning_unlearn.pipeline.output import check_output_dir, publish

SCHEMA_KEYS = {"ua", "ra", "ta", "mia", "rmia_auc", "mia_nn_auc", "avg_gap", "avg_gap_mis", "seconds", "hparams", "per_seed"}


def tiny(cache_dir, **kw) -> BenchmarkConfig:
    """One cell: original seed 0 x the forget set of seed 0, one retrained model, nothing tuned."""
    base = dict(
        max_train=300, max_test=150, epochs=1, methods=("ft",), rmia_references=2, unlearn_epochs=1, max_trials=0, cache_dir=str(cache_dir),
        forget="random:0.1", seeds=(0,), forget_seeds=(0,), retrain_models=1,
    )
    if str(kw.get("forget", "")).startswith("class"):  # class forgetting: no forget seeds, 3 retrained models (MIA-NN leave-one-out)
        base.update(forget_seeds=None, retrain_models=None)
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
        assert not any(k.startswith("mia_nn_retrain") or k == "mia_nn_acc" for k in m)  # class forgetting only
        for k in ("ua", "ra", "ta"):
            assert 0.0 <= m[k] <= 100.0
        assert len(m["per_seed"]) == 1 and m["per_seed"][0]["seed"] == 0 and m["status"] == "ok"
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
    blobs = [load_checked(p, what="model") for p in (root / "cache" / "models").glob("*.pt")]
    originals = [b for b in blobs if json.loads(b["settings"]).get("role") == "original" and json.loads(b["settings"])["seed"] == 0]
    assert len(originals) == 1
    net = build_model("small-cnn", in_channels=1, num_classes=10, mean=dm.mean, std=dm.std)
    net.load_state_dict(originals[0]["payload"])
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


def test_cache_key_covers_every_training_setting():
    from lightning_unlearn.pipeline.config import training_settings

    def cache_key(settings):
        return settings_key("models", settings)

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


#: model cache keys (and run digests, before the protocol's fields) as the flat BenchmarkConfig computed them for the same settings
PREVIOUS_KEYS = {
    "default": (dict(max_train=None), "d351ef8f7f1b1f6fdbd9b204", "cfd70c6ba705f8d8"),  # the digits default before max_train 400
    "cifar1k-crop": (
        dict(dataset="cifar10", data_dir="/tmp", max_train=1000, max_test=1000, width=24, epochs=80, batch_size=32, lr=0.05, augmentation="crop_flip",
             max_trials=25, seeds=(0, 1, 2), tune_seed=100, rmia_references=4, unlearn_epochs=10),
        "ab3dfb07c70727aad8333821", "d3216f5975a39f7f",
    ),
    "clip-class": (
        dict(max_train=None, forget="class:3", fastclip=1.0, fastclip_every=10, seeds="0,1,2", methods="ft,trw", hparams="trw.tau=0.5", devices="2",
             precision="bf16-mixed", channels_last=True, retrain_models=3, tune_class=5),
        "004c3f33ac690223393573ef", "afde633d546a5008",
    ),
    "resnet": (
        dict(max_train=None, model="resnet18", augmentation=None, unlearn_augmentation="none", epochs=3, accelerator="cpu", strategy="ddp", no_remain=True),
        "9e5fbbd3254ac7951490c846", "f00e97d48bef9b22",
    ),
}


@pytest.mark.parametrize("name", list(PREVIOUS_KEYS))
def test_cache_keys_are_those_of_the_flat_config(name, monkeypatch):
    """Neither the sections nor the protocol's fields changed a trained model's cache key (no cached model is retrained);
    the run's digest covers the new fields."""
    from lightning_unlearn.pipeline.config import training_settings

    monkeypatch.setenv("LIGHTNING_UNLEARN_CACHE", "/c")
    settings, key, digest = PREVIOUS_KEYS[name]
    cfg = BenchmarkConfig(**settings)
    assert settings_key("models", training_settings(cfg, data_fingerprint=f"fp-{name}")) == key
    assert BenchmarkConfig(**settings, cache_dir="/c").digest() != digest


def test_fastclip_norms_are_recorded_and_plotted(tmp_path):
    from lightning_unlearn.callbacks import FastClip  # noqa: F401  (the run below uses it through fastclip=)

    cfg = tiny(tmp_path / "cache", rmia_references=0, methods=("retrain",), fastclip=1.0, fastclip_every=1)
    res = run_experiment(cfg, tmp_path / "out")
    assert res["config"]["fastclip"] == 1.0 and res["methods"]["original"]["hparams"]["fastclip"] == 1.0
    assert (tmp_path / "out" / "spectral_norms.png").stat().st_size > 1000
    assert "spectral_norms.png" in (tmp_path / "out" / "report.md").read_text()
    # a clipped model is another model: the unclipped one is not reused, and vice versa
    plain = run_experiment(cfg.replace(fastclip=None))
    assert plain["run"]["models_trained"] == 2


# ---------------------------------------------------------------------------- class forgetting
def test_class_forgetting_uses_three_retrained_models_per_forget_set(tmp_path):
    cfg = tiny(tmp_path / "cache", forget="class:3", rmia_references=0)
    assert cfg.retrain_seeds() == (0, 1, 2) and cfg.replace(seeds=(4, 7)).retrain_seeds() == (0, 1, 2)
    assert cfg.replace(retrain_models=2).retrain_seeds() == (0, 1)
    res = run_experiment(cfg)
    rt = res["methods"]["retrain"]
    assert [p["model_seed"] for p in rt["per_seed"]] == [0, 1, 2]
    assert len(res["methods"]["original"]["per_seed"]) == 1 and len(res["methods"]["ft"]["per_seed"]) == 1
    for m in res["methods"].values():
        assert "ua_test" in m and "sym_kl" in m and "mia_nn_auc" in m


def test_held_out_classes_for_tuning():
    from lightning_unlearn.pipeline.design import held_out_classes

    assert held_out_classes((3,), 10, 2) == (4, 5)
    assert held_out_classes((9,), 10, 1) == (0,)
    assert held_out_classes((3, 4), 10, 2) == (5, 6)
    assert held_out_classes((8, 9, 0), 10, 3) == (1, 2, 3)
    with pytest.raises(ConfigError, match="holds out 2 tuning classes, but only 1 of the 3"):
        held_out_classes((0, 1), 3, 2)


def test_class_forgetting_tunes_on_held_out_classes(tmp_path):
    cfg = tiny(tmp_path / "cache", forget="class:3", rmia_references=0, max_trials=1, retrain_models=2)
    res = run_experiment(cfg)
    assert res["tuned_on"].startswith("2 held-out classes (class:4, class:5; originals 0, 0)")
    assert [s["name"] for s in res["design"]["tuning_sets"]] == ["class:4", "class:5"]
    assert len(res["tuning"]["ft"]) == 1 and res["tuning"]["ft"][0]["avg_gap"] is not None


def test_random_forgetting_seed_mapping():
    from lightning_unlearn.seeding import derive_seed

    cfg = BenchmarkConfig(seeds=(0, 1, 2))
    assert cfg.retrain_seeds(1) == (1, derive_seed(1, "retrain", 1))  # R = 2 by default
    assert BenchmarkConfig(retrain_models=1).retrain_seeds(5) == (5,)
    assert cfg.resolved_forget_seeds == (0, 1, 2) and cfg.tuning_seeds() == (100, 101)


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
        (dict(forget="class:3", forget_seeds=(0, 1)), ["forget_seeds", "random forgetting", "classes:K1,K2"]),
        (dict(forget_seeds=(0, 0)), ["forget_seeds", "distinct", "[0, 0]"]),
        (dict(forget="classes:3,3"), ["classes:3,3", "listed twice"]),
        (dict(forget="classes:x"), ["classes:x", "class indices"]),
        (dict(tune_sets=1), ["tune_sets", "at least 2", "1"]),
        (dict(tune_seed=1, forget_seeds=(0, 2)), ["tuning forget sets", "forget seed 2", "tune_seed"]),
        (dict(objectives=("avg_gap+kl",)), ["avg_gap+kl", "class forgetting", "not to random", "avg_gap"]),
        (dict(objectives=("gap",)), ["'gap'", "avg_gap", "avg_gap+mia_nn", "avg_gap+kl"]),
        (dict(forget="class:3", tune_class=(4,)), ["tune_class", "at least 2", "[4]"]),
        (dict(forget="class:3", retrain_models=1), ["retrain_models", "at least 2", "class forgetting"]),
        (dict(stats_unit="seed"), ["'seed'", "forget_set", "original", "two_way_bootstrap", "cell"]),
    ],
)
def test_config_errors_name_value_and_allowed(change, words):
    with pytest.raises(ConfigError) as err:
        BenchmarkConfig(**change).validate()
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg


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
def test_class_forgetting_every_method_two_originals_two_classes(tmp_path):
    """Every method that applies to class forgetting, tuned, 2 originals x 2 forget classes, RMIA and MIA-NN."""
    from lightning_unlearn.unlearning import methods_for

    cfg = BenchmarkConfig(
        forget="classes:3,7", max_train=600, max_test=300, epochs=3, unlearn_epochs=1, max_trials=2, rmia_references=2,
        seeds=(0, 1), cache_dir=str(tmp_path / "cache"),
    )
    res = run_experiment(cfg, tmp_path / "out")
    assert list(res["methods"]) == ["original", "retrain", *methods_for("class", True)]
    assert res["design"]["shape"] == [2, 2] and [s["name"] for s in res["design"]["forget_sets"]] == ["class:3", "class:7"]
    for name, m in res["methods"].items():
        assert len(m["per_seed"]) == (6 if name == "retrain" else 4) and m["status"] == "ok", name  # (F, R) = (2, 3) or (O, F) = (2, 2)
        for k in ("ua", "ua_test", "ra", "ta", "mia", "rmia_auc", "mia_nn_auc", "sym_kl", "avg_gap", "avg_gap_mis"):
            cells = np.asarray(m["cells"][k])  # mean over the cells, sample SD of the forget-set means, recomputed
            means = cells.mean(axis=1) if name == "retrain" else cells.mean(axis=0)
            assert m[k] == pytest.approx(cells.mean()) and m["std"][k] == pytest.approx(np.std(means, ddof=1)), (name, k)
    for fs in ("class:3", "class:7"):  # Avg. Gap of each run against the mean of its forget class's 3 retrained models
        star = {k: np.mean([p[k] for p in res["methods"]["retrain"]["per_seed"] if p["forget_set"] == fs]) for k in ("ua", "ra", "ta", "rmia_auc")}
        for name in methods_for("class", True):
            for p in (p for p in res["methods"][name]["per_seed"] if p["forget_set"] == fs):
                assert p["avg_gap"] == pytest.approx(np.mean([abs(p[k] - star[k]) for k in star])), (name, p["seed"])
    for name in methods_for("class", True):
        assert len(res["tuning"][name]) == 2 and all(t["avg_gap"] is not None for t in res["tuning"][name])
    assert res["methods"]["retrain"]["ua"] < 5.0  # retrained models never saw their class
    assert res["tuned_on"].startswith("2 held-out classes (class:8, class:9")  # never an evaluated class
    assert (tmp_path / "out" / "rmia_roc.png").stat().st_size > 1000


def test_stale_weights_of_another_architecture_are_retrained(tmp_path):
    """A cache entry whose tensors no longer fit the model (e.g. after a library upgrade) is replaced."""
    from lightning_unlearn.pipeline.models import original_model
    from lightning_unlearn.pipeline.stages import open_data

    cfg = tiny(tmp_path / "cache").validate()
    dm = open_data(cfg, 0)
    cache = ArtefactCache(tmp_path / "cache", "models")
    settings = {"x": 1}
    cache.save({**settings, "role": "original", "seed": 0}, {"w": torch.zeros(2)}, {"seconds": 0.0})
    fresh = ArtefactCache(cache.root, "models")
    model = original_model(cfg, dm, fresh, settings, seed=0)
    assert len(fresh.built) == 1 and not model.from_cache and fresh.damaged == [cache.path(model.key)]
    again = original_model(cfg, dm, fresh, settings, seed=0)
    assert again.from_cache and again.net.state_dict().keys() == model.net.state_dict().keys()


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
    assert BenchmarkConfig(augmentation=None).augmentation == "none" and BenchmarkConfig().augmentation == "auto"
    assert open_data(none, 0).augmentation is None
    assert open_data(flip, 0).augmentation == "crop_flip"  # forced even on 8x8 digits
    # models trained with and without augmentation never share a cache entry
    assert settings_key("models", training_settings(none, data_fingerprint="x")) != settings_key("models", training_settings(flip, data_fingerprint="x"))


# ---------------------------------------------------------------------------- audits through the metric classes
def _synthetic(seed=0, n_train=30, n_test=20, k=3, refs=2):
    from lightning_unlearn.pipeline import evaluation as ev

    g = torch.Generator().manual_seed(seed)
    out = ev.Outputs(torch.randn(n_train, k, generator=g) * 2, torch.randn(n_test, k, generator=g) * 2)
    train_y, test_y = torch.randint(0, k, (n_train,), generator=g), torch.randint(0, k, (n_test,), generator=g)
    forget = torch.arange(0, n_train, 3)
    remain = torch.tensor([i for i in range(n_train) if i % 3])
    sets = ev.Sets(forget=forget, remain=remain, test_forget=torch.empty(0, dtype=torch.long), test_remain=torch.arange(n_test),
                   train_y=train_y, test_y=test_y, n_train=n_train, kind="random", index=torch.arange(n_train + n_test) + 5)
    signals = torch.full((refs, n_train + n_test + 5), float("nan"))
    signals[:, 5:] = torch.rand(refs, n_train + n_test, generator=g) * 0.9 + 0.05
    return out, sets, ev.References(signals=signals, membership=torch.zeros_like(signals, dtype=torch.bool))


def test_rmia_auc_equals_a_hand_computation():
    """Population = the whole pool, each candidate left out of its own population, softmax signal."""
    from sklearn.metrics import roc_auc_score

    from lightning_unlearn.pipeline import evaluation as ev

    out, sets, refs = _synthetic()
    auc, tpr, scores, labels = ev.rmia(out, sets, refs, signal_kind="softmax", gamma=2.0)
    probs = torch.softmax(out.pool.double(), 1).numpy()
    y = sets.pool_y.numpy()
    ratio = probs[np.arange(len(y)), y] / refs.signals[:, 5:].double().mean(0).numpy()
    members, non_members = sets.rmia_sets()
    query = torch.cat([members, non_members]).tolist()
    hand = [sum(ratio[x] / ratio[z] > 2.0 for z in range(len(y)) if z != x) / (len(y) - 1) for x in query]
    truth = [1] * len(members) + [0] * len(non_members)
    assert auc == pytest.approx(100 * roc_auc_score(truth, hand), abs=1e-4)  # scores are float32
    assert sorted(scores.tolist()) == pytest.approx(sorted(hand), abs=1e-6) and int(labels.sum()) == len(members)
    assert 0.0 <= tpr <= 100.0
    with pytest.raises(ValueError, match="bogus"):  # unknown signals fail, as in the metric class
        ev.rmia(out, sets, refs, signal_kind="bogus", gamma=2.0)


def test_svc_mia_is_the_metric_class_on_the_pipeline_sets():
    """The pipeline's SVC efficacy equals the functional form on hand-picked shadow sets."""
    from lightning_unlearn.metrics import functional as F
    from lightning_unlearn.pipeline import evaluation as ev

    out, sets, _ = _synthetic(n_train=60, n_test=15)
    probs, y = torch.softmax(out.pool.double(), 1), sets.pool_y
    members, non_members = sets.mia_sets()
    members = members[F.select_shadow_members(members, len(non_members), seed=ev.MIA_SHADOW_SEED)]
    f = sets.forget
    expected = F.mia_efficacy(probs[members], y[members], probs[non_members], y[non_members], probs[f], y[f], feature="confidence")
    assert ev.svc_mia(out, sets) == pytest.approx(float(expected))


def test_svc_mia_balances_a_test_set_larger_than_the_remain_set():
    """Remain smaller than test (e.g. 900 vs 1,000 images): a seeded subset of the test set of D_R's size
    is the shadow non-member set, every remain sample a shadow member (hand-picked here)."""
    from lightning_unlearn.metrics import functional as F
    from lightning_unlearn.pipeline import evaluation as ev
    from lightning_unlearn.seeding import derive_seed

    out, sets, _ = _synthetic(n_train=30, n_test=40)  # 20 remain < 40 test
    probs, y = torch.softmax(out.pool.double(), 1), sets.pool_y
    members, non_members = sets.mia_sets()
    assert len(members) < len(non_members)
    g = torch.Generator().manual_seed(derive_seed(ev.MIA_SHADOW_SEED, "svc-non-members"))
    by_index = non_members[torch.argsort(sets.pool_index[non_members])]
    chosen = by_index[torch.randperm(len(non_members), generator=g)[: len(members)].sort().values]
    f = sets.forget
    expected = F.mia_efficacy(probs[members], y[members], probs[chosen], y[chosen], probs[f], y[f], feature="confidence")
    assert ev.svc_mia(out, sets) == pytest.approx(float(expected))


# ---------------------------------------------------------------------------- report and provenance
def test_results_record_provenance_sets_and_noise(tiny_run):
    cfg, res, root = tiny_run
    prov = res["provenance"]
    assert set(prov) >= {"command", "commit", "dirty", "torch", "lightning", "device"}
    assert prov["commit"] == "unknown" or len(prov["commit"]) == 40
    assert res["sets"]["forget"] == 30 and res["sets"]["remain"] == 270 and res["sets"]["test"] == 150
    assert set(res["original_within_noise"]) == {"within", "terms"}
    report = (root / "out" / "report.md").read_text()
    assert "## Provenance" in report and prov["commit"] in report


def test_noise_helpers_match_the_textbook_values():
    from lightning_unlearn.pipeline.results import auc_se, proportion_se

    # Hanley-McNeil at A = 0.5 equals the exact null variance of the Mann-Whitney AUC, (n1 + n0 + 1) / (12 n1 n0)
    assert auc_se(50.0, 100, 80) == pytest.approx(100 * np.sqrt((100 + 80 + 1) / (12 * 100 * 80)), rel=1e-9)
    assert proportion_se(90.0, 100) == pytest.approx(100 * np.sqrt((92 / 104) * (12 / 104) / 104), rel=1e-9)
    assert proportion_se(100.0, 135) > 0  # a perfect score still has an error


def test_report_says_so_when_the_original_is_within_noise():
    from lightning_unlearn.pipeline.report import render_markdown
    from lightning_unlearn.pipeline.results import original_within_noise

    def results(orig_ua):
        methods = {
            "original": {"ua": orig_ua, "ra": 100.0, "ta": 99.0, "rmia_auc": 52.0, "per_seed": [{"seed": 0}], "std": {}},
            "retrain": {"ua": 97.8, "ra": 100.0, "ta": 98.9, "rmia_auc": 51.2, "per_seed": [{"seed": 0}], "std": {}},
        }
        sets = {"forget": 135, "remain": 1212, "test": 450, "rmia_non_members": 450}
        cfg = BenchmarkConfig().to_dict()
        return {"config": cfg, "methods": methods, "original_within_noise": original_within_noise(methods, sets, "rmia_auc")}

    near, far = results(100.0), results(60.0)
    assert near["original_within_noise"]["within"] is True and far["original_within_noise"]["within"] is False
    first_lines = render_markdown(near, []).splitlines()[:3]
    assert any("Smoke test" in line and "within the sampling noise" in line for line in first_lines)
    assert "Smoke test" not in render_markdown(far, [])


def test_an_unwritable_cache_is_a_config_error_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="not writable"):
        run_experiment(tiny(blocker / "cache"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- MIA-NN both ways
@pytest.fixture(scope="module")
def class_run(tmp_path_factory):
    """Class 3 of digits forgotten by FT and by TRW under both stream mixings; 3 retrained models, tiny models.

    Returns ``(cfg, experiment, results, store)``: the experiment keeps the models, so the tests can
    recompute the outputs a unit measured (``experiment.unlearned`` repeats a run exactly on a CPU)."""
    from lightning_unlearn.pipeline.results import build_results
    from lightning_unlearn.pipeline.stages import Experiment
    from lightning_unlearn.pipeline.store import RunStore

    root = tmp_path_factory.mktemp("class-mia-nn")
    cfg = tiny(root / "cache", forget="class:3", max_train=400, max_test=200, epochs=4, methods=("ft", "trw", "trw-concat"), rmia_references=0).validate()
    store = RunStore(None)
    exp = Experiment(cfg, store)
    store.start(exp.declaration())
    exp.run()
    return cfg, exp, build_results(store), store


def _outputs(exp, row):
    """The pool logits of ``row`` in the run's one cell (an unlearning method: its run repeated, with the untuned hyperparameters)."""
    from lightning_unlearn.pipeline import protocol

    if row == "original":
        return exp.original_outputs(0)
    return exp.unlearned(row, protocol.fixed_hparams(exp.config, row), 0, exp.design.forget_sets[0])[1]


def _retrain_protocol_by_hand(logits, refs, sets, *, feature, leave_out=None):
    from lightning_unlearn.metrics import functional as F

    is_train = torch.arange(len(sets.pool_y)) < sets.n_train
    return F.mia_nn_retrain(logits, refs, sets.pool_y, is_train, 3, feature=feature, leave_out=leave_out)


def test_class_forgetting_reports_mia_nn_both_ways(class_run):
    from lightning_unlearn.pipeline.evaluation import MIA_NN_RETRAIN_KEYS

    cfg, exp, res, _ = class_run
    assert list(res["methods"]) == ["original", "retrain", "ft", "trw", "trw-concat"]
    assert res["methods"]["trw"]["hparams"]["mixing"] == "combined" and res["methods"]["trw-concat"]["hparams"]["mixing"] == "concat"
    names = ("mia_nn_auc", "mia_nn_acc", "mia_nn_auc_gap", "mia_nn_acc_gap", "mia_nn_retrain_acc_gap_loo", "mia_nn_retrain_logit_acc_gap_loo")
    names += MIA_NN_RETRAIN_KEYS
    assert {"mia_nn_retrain_acc", "mia_nn_retrain_acc_train", "mia_nn_retrain_logit_acc", "mia_nn_retrain_acc_gap"} <= set(names)
    for row, m in res["methods"].items():
        for k in names:
            assert m[k] is not None and np.isfinite(m[k]) and k in m["std"], (row, k)
            assert all(p[k] is not None for p in m["per_seed"]), (row, k)
        for k in ("mia_nn_auc", "mia_nn_acc", "mia_nn_retrain_acc", "mia_nn_retrain_acc_train", "mia_nn_retrain_logit_acc"):
            assert 0.0 <= m[k] <= 100.0


def test_retrain_protocol_values_equal_a_direct_call_and_retrain_rows_are_left_out(class_run):
    """Every row's retrain-protocol figures are one call of ``mia_nn_retrain`` on the same logits; a retrained
    model's are the call with ``leave_out`` = its own index (fit, neighbours and reference from the others)."""

    cfg, exp, res, _ = class_run
    fs = exp.design.forget_sets[0]
    sets = exp.sets(fs)
    retrain_outputs = exp.retrain_outputs(fs)
    refs = torch.stack([o.pool for o in retrain_outputs])
    names = {"acc_test": "acc", "acc_train": "acc_train", "retrain_acc_test": "acc_star", "retrain_acc_train": "acc_train_star",
             "acc_test_gap": "acc_gap", "acc_train_gap": "acc_train_gap"}
    for prefix, feature in (("mia_nn_retrain", "neighbor_prob"), ("mia_nn_retrain_logit", "logit")):
        for row in ("original", "ft", "trw", "trw-concat"):
            want = _retrain_protocol_by_hand(_outputs(exp, row).pool, refs, sets, feature=feature)
            got = res["methods"][row]["per_seed"][0]
            for key, suffix in names.items():
                assert got[f"{prefix}_{suffix}"] == pytest.approx(want[key], abs=1e-9), (row, key)
        for j, out in enumerate(retrain_outputs):
            want = _retrain_protocol_by_hand(out.pool, refs, sets, feature=feature, leave_out=j)
            got = res["methods"]["retrain"]["per_seed"][j]
            for key, suffix in names.items():
                assert got[f"{prefix}_{suffix}"] == pytest.approx(want[key], abs=1e-9), (j, key)
            assert got[f"{prefix}_acc_gap"] == pytest.approx(abs(got[f"{prefix}_acc"] - got[f"{prefix}_acc_star"]))


def test_membership_mia_nn_accuracy_and_gaps(class_run):
    """``mia_nn_acc`` is the functional's accuracy; the gaps are per run, leave-one-out for the retrained rows."""
    from lightning_unlearn.metrics import functional as F
    from lightning_unlearn.pipeline import evaluation as ev

    cfg, exp, res, _ = class_run
    fs = exp.design.forget_sets[0]
    sets = exp.sets(fs)
    pos, neg = sets.forget[sets.train_y[sets.forget] == 3], sets.n_train + sets.test_forget
    nb = F.mia_nn_neighbors(torch.stack([torch.softmax(o.pool[pos].double(), 1) for o in exp.retrain_outputs(fs)]), 3, 1)
    feats = F.mia_nn_features(exp.original_outputs(0).pool[torch.cat([pos, neg])], nb, 3)
    want = F.mia_nn(feats, torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).long(), n_splits=ev.MIA_NN_FOLDS)
    got = res["methods"]["original"]["per_seed"][0]
    assert got["mia_nn_auc"] == pytest.approx(want["auc"]) and got["mia_nn_acc"] == pytest.approx(want["acc"])
    per = res["methods"]["retrain"]["per_seed"]
    gaps = {"mia_nn_auc": "mia_nn_auc_gap", "mia_nn_acc": "mia_nn_acc_gap", "mia_nn_retrain_acc": "mia_nn_retrain_acc_gap_loo",
            "mia_nn_retrain_logit_acc": "mia_nn_retrain_logit_acc_gap_loo"}
    for k, name in gaps.items():
        for row in ("original", "trw"):
            mine = res["methods"][row]["per_seed"][0]
            assert mine[name] == pytest.approx(abs(mine[k] - np.mean([p[k] for p in per])))
        for j, p in enumerate(per):
            others = [q[k] for i, q in enumerate(per) if i != j]
            assert p[name] == pytest.approx(abs(p[k] - np.mean(others)))


def test_report_shows_mia_nn_both_ways_and_the_logit_variant(class_run, tmp_path):
    from lightning_unlearn.pipeline.report import write_report
    from lightning_unlearn.pipeline.results import figure_data

    cfg, exp, res, store = class_run
    write_report(tmp_path, res, figure_data(store))
    md = (tmp_path / "report.md").read_text()
    main = md.split("## MIA-NN, both protocols")[0]
    assert "| MIA-NN AUC | MIA-NN acc | MIA-NN retrain acc |" in main
    section = md.split("## MIA-NN, both protocols")[1]
    assert "| method | membership AUC | gap | membership acc | gap | retrain acc T_f | gap | gap (LOO) | retrain acc D_f | gap |" in section
    assert "### Retrain protocol with logit features" in section and "| trw-concat |" in section
    ft = res["methods"]["ft"]
    assert f"{ft['mia_nn_retrain_logit_acc']:.2f}" in section.split("### Retrain protocol with logit features")[1]
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["methods"]["trw"]["mia_nn_retrain_acc"] == pytest.approx(res["methods"]["trw"]["mia_nn_retrain_acc"])
