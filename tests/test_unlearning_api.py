"""The public unlearning API: ``unlearn`` arguments, the registry, named batch fields, diagnostics."""

from __future__ import annotations

import copy

import lightning.pytorch as pl
import pytest
import torch

from lightning_unlearn.training import ClassifierModule
from lightning_unlearn.training.fit import make_trainer
from lightning_unlearn.unlearning import (
    METHODS,
    FineTune,
    UnlearningBatch,
    UnlearningMethod,
    UnlearningMixin,
    UnlearningRequest,
    as_unlearning_batch,
    get_method,
    register_method,
    unlearn,
)


class Model(UnlearningMixin, ClassifierModule):
    pass


def fresh(orig):
    return Model(copy.deepcopy(orig.model), num_classes=10)


class Recorder(pl.Callback):
    def __init__(self) -> None:
        self.max_epochs = None

    def on_fit_start(self, trainer, pl_module) -> None:
        self.max_epochs = trainer.max_epochs


# ---------------------------------------------------------------------------- unlearn(...)
def test_hyperparameters_go_to_the_method_and_trainer_kwargs_to_the_trainer(digits_dm, digits_original):
    rec = Recorder()
    m = fresh(digits_original)
    before = m.model.state_dict()["classifier.weight"].clone() if "classifier.weight" in m.model.state_dict() else None
    out = unlearn(m, "ft", UnlearningRequest.from_datamodule(digits_dm), epochs=2, lr=0.05, trainer_kwargs={"callbacks": [rec], "accelerator": "cpu"})
    assert out is m and rec.max_epochs == 2  # the method's epochs set the Trainer's max_epochs
    assert not m.is_unlearning
    if before is not None:
        assert not torch.equal(before, m.model.state_dict()["classifier.weight"])


def test_hyperparameters_with_a_method_object_are_refused(digits_dm, digits_original):
    with pytest.raises(TypeError, match=r"'lr'.*method object \(FineTune\)"):
        unlearn(fresh(digits_original), FineTune(), UnlearningRequest.from_datamodule(digits_dm), lr=0.1)
    with pytest.raises(TypeError, match="'epochs', 'lr'"):
        fresh(digits_original).start_unlearning(FineTune(), UnlearningRequest.from_datamodule(digits_dm), lr=0.1, epochs=1)


def test_trainer_together_with_trainer_kwargs_is_refused(digits_dm, digits_original):
    with pytest.raises(TypeError, match="either trainer or trainer_kwargs.*accelerator"):
        request = UnlearningRequest.from_datamodule(digits_dm)
        unlearn(fresh(digits_original), "ft", request, trainer=make_trainer(max_epochs=1), trainer_kwargs={"accelerator": "cpu"})
    with pytest.raises(ValueError, match=r"max_epochs=3 is shorter than the unlearning phase of method 'ft' \(epochs=10\)"):
        unlearn(fresh(digits_original), "ft", UnlearningRequest.from_datamodule(digits_dm), trainer_kwargs={"max_epochs": 3})


def test_unknown_hyperparameters_are_all_named(digits_dm, digits_original):
    with pytest.raises(TypeError) as err:
        unlearn(fresh(digits_original), "amun", UnlearningRequest.from_datamodule(digits_dm), lrr=0.1, accelerator="cpu", epochs=1)
    msg = str(err.value)
    assert "'accelerator', 'lrr'" in msg and "'amun'" in msg and "eps_init" in msg and "lr" in msg  # Trainer options are no hyperparameters
    with pytest.raises(TypeError, match="'bogus'"):
        get_method("ft").from_hyperparameters(bogus=1)
    assert "mask_ratio" in get_method("amun-salun").hyperparameter_names() and "lr" in get_method("amun-salun").hyperparameter_names()


def test_a_ready_trainer_runs_as_given(digits_dm, digits_original):
    rec = Recorder()
    unlearn(fresh(digits_original), "ft", UnlearningRequest.from_datamodule(digits_dm), epochs=1, trainer=make_trainer(max_epochs=1, callbacks=[rec]))
    assert rec.max_epochs == 1


# ---------------------------------------------------------------------------- registry
def test_registry_order_and_self_registration():
    assert list(METHODS)[:11] == ["ft", "rl", "ga", "bs", "l1", "salun", "scrub", "amun", "amun-salun", "adv-only", "trw"]
    for name, cls in METHODS.items():
        assert cls.name == name and get_method(name) is cls


def test_a_user_method_registers_and_runs_by_name(digits_dm, digits_original):
    @register_method
    class Halve(UnlearningMethod):
        """Fine-tune on D_F with halved cross-entropy (a test method)."""

        name = "test-halve"
        supported = frozenset({("random", True)})

        def loss(self, module, batch: UnlearningBatch, batch_idx: int):
            assert isinstance(batch, UnlearningBatch) and batch.phase is None
            return 0.5 * torch.nn.functional.cross_entropy(module(self.inputs(module, batch.x, batch_idx)), batch.y)

    try:
        assert get_method("test-halve") is Halve
        unlearn(fresh(digits_original), "test-halve", UnlearningRequest.from_datamodule(digits_dm), epochs=1)
        with pytest.raises(ValueError, match="already registered"):
            register_method(type("Other", (UnlearningMethod,), {"name": "test-halve"}))
        with pytest.raises(ValueError, match="needs a class attribute name"):
            register_method(type("Nameless", (UnlearningMethod,), {}))
    finally:
        METHODS.pop("test-halve", None)


# ---------------------------------------------------------------------------- batches
def test_batches_convert_to_named_fields():
    x, y, i = torch.zeros(2, 1, 4, 4), torch.tensor([1, 2]), torch.tensor([7, 8])
    b = as_unlearning_batch([x, y, i])
    assert isinstance(b, UnlearningBatch) and b.source is None and b.phase is None and torch.equal(b.index, i)
    full = as_unlearning_batch((x, y, i, torch.zeros(2, dtype=torch.long), "forget"))
    assert full.phase == "forget"
    assert as_unlearning_batch(full) is full
    both = as_unlearning_batch({"forget": (x, y, i), "remain": full})
    assert isinstance(both["forget"], UnlearningBatch) and both["remain"] is full
    with pytest.raises(TypeError, match="3 to 5 fields"):
        as_unlearning_batch((x, y))


def test_every_method_loader_yields_named_batches(digits_dm, digits_original):
    """The first batch of every registered method's loader (random forgetting with D_R) has named fields."""
    from lightning_unlearn.unlearning import methods_for

    request = UnlearningRequest.from_datamodule(digits_dm)
    for name in methods_for("random", True):
        m = fresh(digits_original)
        method = m.start_unlearning(name, request, epochs=1, **({"eps_init": 0.1} if "amun" in name or name == "adv-only" else {}))
        trainer = make_trainer(max_epochs=1, limit_train_batches=1)
        seen = []
        m.unlearning_loss = lambda batch, batch_idx=0, _orig=m.unlearning_loss, _seen=seen: _seen.append(batch) or _orig(batch, batch_idx)
        trainer.fit(m)
        m.stop_unlearning()
        batch = seen[0]
        assert isinstance(batch, UnlearningBatch), (name, type(batch))
        assert batch.x.shape[0] == batch.y.shape[0] == batch.index.shape[0], name
        assert method.diagnostics() == {} or name in ("amun", "amun-salun", "adv-only")


def test_amun_diagnostics_after_the_fit(digits_dm, digits_original):
    m = fresh(digits_original)
    method = get_method("amun")(eps_init=0.1, epochs=1)
    unlearn(m, method, UnlearningRequest.from_datamodule(digits_dm, use_remain=False))
    d = method.diagnostics()
    assert d["n_forget"] == len(digits_dm.forget_set()) == d["n_adv"] + d["n_unresolved"]
    assert d["eps_init"] == pytest.approx(0.1) and d["pgd50_passes"] > 0 and d["mean_delta"] > 0
    assert get_method("amun")().diagnostics() == {}


def test_augmentation_is_spelled_as_on_the_command_line(digits_dm):
    from lightning_unlearn.data import UnlearningDataModule

    for none in ("none", None):
        assert UnlearningDataModule("digits", augmentation=none).augmentation is None
        r = UnlearningRequest(forget=digits_dm.forget_set(), remain=None, num_classes=10, augmentation=none)
        assert r.augmentation is None
        assert ClassifierModule(torch.nn.Linear(2, 10), num_classes=10, augmentation=none).augmentation is None
    with pytest.raises(ValueError, match="'mixup'.*'auto', 'crop_flip', 'none'"):
        UnlearningDataModule("digits", augmentation="mixup")
    with pytest.raises(ValueError, match="'auto'"):  # "auto" needs the image shape: a data module's choice only
        ClassifierModule(torch.nn.Linear(2, 10), num_classes=10, augmentation="auto")
