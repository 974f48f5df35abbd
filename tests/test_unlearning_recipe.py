"""The unlearning phase's data recipe, chosen apart from the originals' recipe.

``unlearn_augmentation`` (``BenchmarkConfig``, ``--unlearn-augmentation``,
``UnlearningRequest.from_datamodule(augmentation=...)``) must reach every method's request and
its augmentation calls, leave AMUN's adversarial set unaugmented, show TRW's teacher the
student's augmented input, stay out of every model's cache key, and be recorded (resolved) in
``results.json`` and ``report.md``.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from lightning_unlearn.cache import settings_key
from lightning_unlearn.data import UnlearningDataModule
from lightning_unlearn.data.transforms import resolve_augmentation
from lightning_unlearn.pipeline import BenchmarkConfig, ConfigError, run_experiment
from lightning_unlearn.pipeline.config import training_settings
from lightning_unlearn.pipeline.models import TrainedModel
from lightning_unlearn.pipeline.stages import Experiment
from lightning_unlearn.pipeline.store import RunStore
from lightning_unlearn.unlearning import UnlearningRequest, methods_for
from lightning_unlearn.unlearning.phases import ADVERSARIAL


@pytest.fixture(scope="module")
def rgb_tree(tmp_path_factory):
    """A 32x32 RGB ImageFolder tree (3 classes, 8 training and 4 test images each) of random pixels."""
    from PIL import Image

    root = tmp_path_factory.mktemp("rgb") / "tree"
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 4)):
        for c in ("a", "b", "c"):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / f"{i:03d}.png")
    return root


# ---------------------------------------------------------------------------- resolution
@pytest.mark.parametrize(
    "value,shape,expected",
    [
        ("auto", (3, 32, 32), "crop_flip"),  # CIFAR-sized RGB: the reference recipe crops and flips
        ("auto", (3, 64, 64), "crop_flip"),
        ("auto", (1, 8, 8), None),  # digits
        ("auto", (1, 32, 32), None),  # grey images
        ("auto", (3, 16, 16), None),  # smaller than the 32x32 crop
        ("crop_flip", (1, 8, 8), "crop_flip"),
        ("none", (3, 32, 32), None),
        (None, (3, 32, 32), None),
    ],
)
def test_resolve_augmentation(value, shape, expected):
    assert resolve_augmentation(value, shape) == expected


def test_resolve_augmentation_rejects_unknown_names():
    with pytest.raises(ValueError, match="'flip'.*'auto', 'crop_flip', 'none'"):
        resolve_augmentation("flip", (3, 32, 32))


def test_request_recipe_is_independent_of_the_originals(rgb_tree, cache_dir):
    """Originals trained without augmentation still get crop+flip in the unlearning phase under "auto"."""
    for originals in ("none", "crop_flip", "auto"):
        dm = UnlearningDataModule(str(rgb_tree), forget="random:0.25", augmentation=originals, cache_dir=cache_dir)
        assert UnlearningRequest.from_datamodule(dm).augmentation == "crop_flip"
        assert UnlearningRequest.from_datamodule(dm, augmentation="none").augmentation is None
        assert UnlearningRequest.from_datamodule(dm, augmentation=None).augmentation is None
        assert UnlearningRequest.from_datamodule(dm, augmentation=dm.augmentation).augmentation == dm.augmentation
    digits = UnlearningDataModule("digits", augmentation="crop_flip", max_train=200, max_test=50, cache_dir=cache_dir)
    assert UnlearningRequest.from_datamodule(digits).augmentation is None  # auto: none on 8x8 grey digits
    assert UnlearningRequest.from_datamodule(digits, augmentation="crop_flip").augmentation == "crop_flip"
    with pytest.raises(ValueError, match="'crop'"):
        UnlearningRequest.from_datamodule(digits, augmentation="crop")


# ---------------------------------------------------------------------------- config and command line
def test_config_fields_parse_validate_and_record():
    cfg = BenchmarkConfig(unlearn_augmentation=None, width="24", unlearn_batch_size=64).validate()
    assert cfg.unlearn_augmentation == "none" and cfg.width == 24 and cfg.unlearn_batch_size == 64
    d = cfg.to_dict()
    assert d["unlearn_augmentation"] == "none" and d["width"] == 24 and d["unlearn_batch_size"] == 64 and d["batch_size"] == 128
    defaults = BenchmarkConfig()
    assert (defaults.unlearn_augmentation, defaults.unlearn_batch_size, defaults.width) == ("auto", 128, None)
    for change, words in (
        (dict(unlearn_augmentation="flip"), ("unlearn_augmentation", "'flip'", "crop_flip")),
        (dict(unlearn_batch_size=0), ("unlearn_batch_size", "0")),
        (dict(width=0), ("width", "0")),
        (dict(width=8, model="resnet18"), ("width", "resnet18", "small-cnn")),
    ):
        with pytest.raises(ConfigError) as err:
            BenchmarkConfig(**change).validate()
        assert all(w in str(err.value) for w in words), (change, str(err.value))


def test_command_line_options_build_the_same_config():
    from lightning_unlearn.cli import build_parser, config_from_args

    args = build_parser().parse_args(
        ["benchmark", "--out", "x", "--unlearn-augmentation", "crop_flip", "--unlearn-batch-size", "64", "--width", "24", "--batch-size", "32"]
    )
    assert config_from_args(args) == BenchmarkConfig(unlearn_augmentation="crop_flip", unlearn_batch_size=64, width=24, batch_size=32)
    assert config_from_args(build_parser().parse_args(["benchmark", "--out", "x"])) == BenchmarkConfig()


def test_unlearning_recipe_is_in_no_cache_key_and_width_is():
    base = BenchmarkConfig()
    key = settings_key("models", training_settings(base, data_fingerprint="x"))
    for change in (dict(unlearn_augmentation="crop_flip"), dict(unlearn_augmentation="none"), dict(unlearn_batch_size=32)):
        assert settings_key("models", training_settings(base.replace(**change), data_fingerprint="x")) == key, change
    assert settings_key("models", training_settings(base.replace(width=24), data_fingerprint="x")) != key
    assert "width" not in training_settings(base, data_fingerprint="x")  # default-width models keep their former keys


def test_recipes_resolve_both_recipes():
    cfg = BenchmarkConfig(augmentation="none", width=24, batch_size=32, epochs=80, hparams="adv-only.augment_adv=true")
    r = cfg.recipes((3, 32, 32))
    assert r["original"]["augmentation"] == "none" and r["original"]["setting"] == "none"
    assert (r["original"]["batch_size"], r["original"]["epochs"], r["original"]["width"]) == (32, 80, 24)
    assert r["unlearning"]["augmentation"] == "crop_flip" and r["unlearning"]["setting"] == "auto" and r["unlearning"]["batch_size"] == 128
    assert r["unlearning"]["adversarial_set"] == {"amun": "none", "amun-salun": "none", "adv-only": "crop_flip"}
    digits = BenchmarkConfig().recipes((1, 8, 8))
    assert digits["original"]["augmentation"] == "none" and digits["unlearning"]["augmentation"] == "none"


# ---------------------------------------------------------------------------- the recipe reaches every method
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Tiny digits originals and retrained models (no augmentation), per forget kind: ``(cfg, experiment)``, one original."""
    out = {}
    for kind, forget in (("random", "random:0.1"), ("class", "class:3")):
        one = {"forget_seeds": (0,), "retrain_models": 1} if kind == "random" else {"retrain_models": 2}
        cfg = BenchmarkConfig(
            forget=forget, max_train=300, max_test=150, epochs=1, augmentation="none", rmia_references=0, max_trials=0, seeds=(0,),
            cache_dir=str(tmp_path_factory.mktemp(f"cache-{kind}")), **one,
        )
        exp = Experiment(cfg.validate(), RunStore(None))
        exp.train_models()
        out[kind] = (cfg, exp)
    return out


def with_models(cfg: BenchmarkConfig, trained_exp: Experiment) -> Experiment:
    """An experiment of ``cfg`` (another unlearning recipe) that reuses ``trained_exp``'s models."""
    exp = Experiment(cfg.validate(), RunStore(None))
    exp.open()
    exp.originals, exp.retrains = trained_exp.originals, trained_exp.retrains
    return exp


CASES = [("random", m, r) for r in (True, False) for m in methods_for("random", r)] + [("class", m, r) for r in (True, False) for m in ("trw",)]


@pytest.mark.parametrize("kind,method,has_remain", CASES, ids=[f"{m}-{'remain' if r else 'forget-only'}" for _, m, r in CASES])
def test_recipe_reaches_every_method(kind, method, has_remain, trained, monkeypatch):
    """The pipeline's request carries the unlearning recipe (not the originals' none), and every
    augmentation call of the method uses it; AMUN's adversarial rows are masked out."""
    import lightning_unlearn.pipeline.stages as stages
    import lightning_unlearn.unlearning.base as base

    cfg, trained_exp = trained[kind]
    cfg = cfg.replace(unlearn_augmentation="crop_flip", unlearn_batch_size=32, unlearn_epochs=1, no_remain=not has_remain)
    requests, calls = [], []
    real_unlearn, real_augment = stages.unlearn, base.augment

    def spy_unlearn(module, method_obj, request, **kw):
        requests.append(request)
        return real_unlearn(module, method_obj, request, **kw)

    def spy_augment(x, kind_, *, generator=None, mask=None):
        calls.append((kind_, None if mask is None else mask.clone(), len(x)))
        return real_augment(x, kind_, generator=generator, mask=mask)

    monkeypatch.setattr(stages, "unlearn", spy_unlearn)
    monkeypatch.setattr(base, "augment", spy_augment)
    exp = with_models(cfg, trained_exp)
    hp = {"eps_init": 0.1} if method in ("amun", "amun-salun", "adv-only") else {}
    fs = exp.design.forget_sets[0]
    exp.unlearned(method, {"epochs": 1, **hp}, 0, fs)
    (request,) = requests
    assert request.augmentation == "crop_flip" and request.batch_size == 32 and request.has_remain == has_remain
    assert exp.data(fs).augmentation is None  # the originals' recipe is untouched
    assert calls and all(k == "crop_flip" for k, _, _ in calls)


def test_amun_adversarial_rows_are_never_augmented_in_the_pipeline(trained, monkeypatch):
    """Every augmentation call of AMUN masks exactly the non-adversarial rows of its batch."""
    import lightning_unlearn.unlearning.amun as amun_mod
    import lightning_unlearn.unlearning.base as base

    cfg, trained_exp = trained["random"]
    cfg = cfg.replace(unlearn_augmentation="crop_flip", unlearn_epochs=1)
    seen = []
    real_loss, real_augment = amun_mod.AMUN.loss, base.augment

    def spy_loss(self, module, batch, batch_idx):
        seen.append({"source": batch.source.clone()})
        return real_loss(self, module, batch, batch_idx)

    def spy_augment(x, kind_, *, generator=None, mask=None):
        seen[-1]["mask"] = mask.clone()
        return real_augment(x, kind_, generator=generator, mask=mask)

    monkeypatch.setattr(amun_mod.AMUN, "loss", spy_loss)
    monkeypatch.setattr(base, "augment", spy_augment)
    exp = with_models(cfg, trained_exp)
    exp.unlearned("amun", {"eps_init": 0.1, "epochs": 1}, 0, exp.design.forget_sets[0])
    assert seen and any(bool((s["source"] == ADVERSARIAL).any()) for s in seen)
    for s in seen:
        assert torch.equal(s["mask"], s["source"] != ADVERSARIAL)


def test_trw_teacher_sees_the_students_augmented_input(cache_dir):
    """TRW's target comes from θ_o at the same augmented pixels the student is trained on, not the raw ones."""
    from lightning_unlearn.training import ClassifierModule, train_classifier
    from lightning_unlearn.unlearning import UnlearningMixin
    from lightning_unlearn.unlearning.batch import UnlearningBatch
    from lightning_unlearn.unlearning.trw import TRW

    class Model(UnlearningMixin, ClassifierModule):
        pass

    dm = UnlearningDataModule("digits", forget="class:3", max_train=300, max_test=100, augmentation="none", cache_dir=cache_dir)
    net = train_classifier(dm, epochs=1, seed=0).model
    module = Model(copy.deepcopy(net), num_classes=10)
    request = UnlearningRequest.from_datamodule(dm, augmentation="crop_flip")
    for mixing in ("combined", "concat"):
        method = TRW(mixing=mixing)
        module.start_unlearning(method, request)
        method.setup(module, request)
        fed: list[torch.Tensor] = []
        taught: list[torch.Tensor] = []
        hook = module.model.register_forward_pre_hook(lambda mod, args, fed=fed: fed.append(args[0].clone()))
        real = method.teacher_logits
        method.teacher_logits = lambda x, real=real, taught=taught: (taught.append(x.clone()), real(x))[1]
        f, r = request.forget, request.remain
        xf, yf, xr, yr = f.x[:16], f.y[:16], r.x[:16], r.y[:16]
        if mixing == "combined":
            batch = {"forget": UnlearningBatch(xf, yf, f.index[:16]), "remain": UnlearningBatch(xr, yr, r.index[:16])}
            method.loss(module, batch, 0)
            student_forget = fed[0][:16]
        else:
            x, y = torch.cat([xf, xr]), torch.cat([yf, yr])
            method.loss(module, UnlearningBatch(x, y, torch.arange(32)), 0)
            student_forget = fed[0][y == 3]
        hook.remove()
        module.stop_unlearning()
        (teacher_x,) = taught
        raw = xf.float() / 255
        assert torch.equal(teacher_x, student_forget), mixing
        assert not torch.equal(teacher_x, raw), mixing  # augmented, not the raw forget pixels


# ---------------------------------------------------------------------------- results and report
def test_results_and_report_record_both_recipes_and_the_transfer(tmp_path):
    cfg = BenchmarkConfig(
        max_train=300, max_test=150, epochs=4, methods=("ft", "amun"), rmia_references=0, unlearn_epochs=1, max_trials=0, seeds=(0,), forget_seeds=(0,),
        retrain_models=1, augmentation="none", unlearn_augmentation="crop_flip", unlearn_batch_size=64, hparams="amun.eps_init=0.1",
        cache_dir=str(tmp_path / "cache"),
    )
    res = run_experiment(cfg, tmp_path / "out")
    assert res["config"]["unlearn_augmentation"] == "crop_flip" and res["config"]["augmentation"] == "none"
    assert res["config"]["unlearn_batch_size"] == 64
    rec = res["recipes"]
    assert rec["original"]["augmentation"] == "none" and rec["unlearning"]["augmentation"] == "crop_flip"
    assert rec["unlearning"]["adversarial_set"] == {"amun": "none"} and rec["unlearning"]["batch_size"] == 64
    diag = res["methods"]["amun"]["per_seed"][0]["diagnostics"]
    t = diag["transfer_to_retrain"]
    assert 0 <= t["prob"] <= 100 and 0 <= t["top1"] <= 100 and t["n"] == diag["n_adv"] and t["retrain_models"] == 1
    assert diag["mean_delta"] > 0  # a 4-epoch original classifies most forget samples: their x_adv moved
    assert 0 <= diag["transfer_to_retrain_perturbed"]["prob"] <= 100 and diag["transfer_to_retrain_perturbed"]["n"] <= t["n"]
    summary = res["adversarial_transfer"]["amun"]
    assert summary["prob"] == pytest.approx(t["prob"]) and summary["mean_delta"] == pytest.approx(diag["mean_delta"]) and summary["runs"] == 1
    assert "ft" not in res["adversarial_transfer"] and "diagnostics" not in res["methods"]["ft"]["per_seed"][0]
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert on_disk["recipes"] == rec
    report = (tmp_path / "out" / "report.md").read_text()
    assert "**originals**" in report and "no augmentation (`augmentation=none`)" in report
    assert "crop+flip on D_R and D_F (`unlearn_augmentation=crop_flip`)" in report and "batch 64" in report
    assert "## Transfer of the adversarial examples to retrain" in report and "| amun | 1 |" in report


def test_transfer_diagnostics_match_a_hand_computation(trained):
    """The recorded transfer equals the retrained model's softmax at x_adv, computed here directly."""
    from lightning_unlearn.pipeline.models import UnlearnableClassifier
    from lightning_unlearn.pipeline.stages import adversarial_diagnostics
    from lightning_unlearn.unlearning import AMUN, unlearn

    cfg, exp = trained["random"]
    original, retrained = exp.originals[0], exp.retrains[exp.design.forget_sets[0].name]
    method = AMUN(eps_init=0.1, epochs=1)

    module = UnlearnableClassifier(copy.deepcopy(original.net), num_classes=10)
    unlearn(module, method, exp.request(exp.data(exp.design.forget_sets[0]), 0), trainer_kwargs=exp.tkw)
    adv = method.adversarial
    nets = [m.net for m in retrained]
    out = adversarial_diagnostics(method, nets)
    with torch.no_grad():
        p = torch.softmax(nets[0].eval()(adv.x).double(), 1)
    assert out["transfer_to_retrain"]["prob"] == pytest.approx(100 * p[torch.arange(len(adv)), adv.y].mean().item(), abs=1e-6)
    assert out["transfer_to_retrain"]["top1"] == pytest.approx(100 * (p.argmax(1) == adv.y).double().mean().item())
    assert adversarial_diagnostics(object(), nets) == {}  # a method without an adversarial set
    assert isinstance(original, TrainedModel)


def test_width_reaches_every_trained_model(tmp_path, monkeypatch):
    """``width`` builds the original, retrained and reference models (and their cache restores)."""
    import lightning_unlearn.models.factory as factory

    widths = []
    real = factory.build_model

    def spy(name, **kw):
        widths.append(kw.get("width"))
        return real(name, **kw)

    for module in ("lightning_unlearn.training.fit", "lightning_unlearn.pipeline.models", "lightning_unlearn.audit.model_cache"):
        monkeypatch.setattr(f"{module}.build_model", spy)
    cfg = BenchmarkConfig(max_train=200, max_test=100, epochs=1, width=8, methods=("retrain",), rmia_references=2, max_trials=0, cache_dir=str(tmp_path),
                          seeds=(0,), forget_seeds=(0,), retrain_models=1)
    res = run_experiment(cfg)
    assert res["run"]["models_trained"] == 4 and widths and set(widths) == {8}  # original, retrain, 2 references
    assert res["recipes"]["original"]["width"] == 8
    widths.clear()
    again = run_experiment(cfg)
    assert again["run"]["models_loaded"] == 4 and set(widths) == {8}  # restored from the cache at width 8
    assert again["methods"]["original"]["ua"] == res["methods"]["original"]["ua"]
