"""Your own module and data: each trap a new user met (following only the README, docs/ and examples/) is a test here.

The user's module is a plain ``LightningModule`` (its own ``training_step`` on ``(x, y)`` batches
and ``configure_optimizers``); the data are plain ``TensorDataset``\\ s of ``(x, y)`` built from the
embedded digits (float pixels in ``[0, 1]``), without pool indices.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lightning_unlearn.attacks import DEFAULT_EPS_INIT, pgd_l2_search
from lightning_unlearn.data import IndexedSplits
from lightning_unlearn.inference import reference_signals
from lightning_unlearn.metrics import RMIA, IncompleteSplitsWarning, MIAEfficacy
from lightning_unlearn.metrics import functional as MF
from lightning_unlearn.metrics.functional.roc import LowFPRVarianceWarning
from lightning_unlearn.models import Normalize
from lightning_unlearn.training.fit import make_trainer
from lightning_unlearn.unlearning import AMUN, METHODS, TRW, AMUNMixin, TRWMixin, UnlearningRequest, build_adversarial_set, unlearn

ROOT = Path(__file__).resolve().parents[1]
MEAN, STD = 0.3, 0.35  # the user's standardisation of the digits pixels


class DigitsNet(pl.LightningModule):
    """A user's plain classifier: (x, y) batches, its own training_step and optimizer."""

    def __init__(self, standardised: bool = False) -> None:
        super().__init__()
        self.standardised = standardised
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
        self.seen: list[torch.Tensor] = []  # every input forward() was given, when recording

    def forward(self, x):
        if self.standardised:
            self.seen.append(x.detach().clone())
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


class Unlearnable(AMUNMixin, DigitsNet):
    pass


class ClassUnlearnable(TRWMixin, DigitsNet):
    pass


@pytest.fixture(scope="module")
def own(digits_dm):
    """Plain (x, y) tensors of 40 forget, 200 remain and 100 test digits, float pixels in [0, 1]."""
    f, r, t = digits_dm.forget_set(), digits_dm.remain_set(), digits_dm.test_set()
    return {
        "forget": (f.x[:40].float() / 255, f.y[:40].clone()),
        "remain": (r.x[:200].float() / 255, r.y[:200].clone()),
        "test": (t.x[:100].float() / 255, t.y[:100].clone()),
    }


def trained(own, cls=Unlearnable, **kwargs):
    pl.seed_everything(0, verbose=False)
    model = cls(**kwargs)
    x, y = torch.cat([own["forget"][0], own["remain"][0]]), torch.cat([own["forget"][1], own["remain"][1]])
    if getattr(model, "standardised", False):
        x = (x - MEAN) / STD
    make_trainer(max_epochs=3).fit(model, DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True))
    return model


class EpochCounter(pl.Callback):
    def __init__(self) -> None:
        self.epochs = 0

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epochs += 1


# ----------------------------------------------------------------------------- 1. requests from your own data
def test_a_request_from_plain_xy_datasets_runs_amun(own):
    """Was: accepted, then IndexError inside on_fit_start (items had to be (x, y, index))."""
    request = UnlearningRequest(TensorDataset(*own["forget"]), TensorDataset(*own["remain"]), num_classes=10)
    assert request.positional == {"forget": 0, "remain": 40}  # the recorded rule
    assert torch.equal(request.forget.index, torch.arange(40)) and torch.equal(request.remain.index, torch.arange(40, 240))
    model = trained(own)
    method = model.start_amun(request, epochs=1, eps_init=0.1)
    make_trainer(max_epochs=1).fit(model)
    model.stop_unlearning()
    assert len(method.adversarial) + method.adversarial.n_unresolved == 40
    assert set(method.adversarial.index.tolist()) <= set(range(40))


def test_dict_items_read_through_a_key_mapping(own):
    class Records(Dataset):
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            return {"image": self.x[i], "label": int(self.y[i]), "id": 1000 + i}

    forget = Records(*own["forget"])
    with pytest.raises(TypeError, match=r"dict with keys \['id', 'image', 'label'\].*keys=\{'x': ..., 'y': ...\}"):
        UnlearningRequest(forget, None, num_classes=10)  # was KeyError: 0 at fit start
    r = UnlearningRequest(forget, None, num_classes=10, keys={"x": "image", "y": "label", "index": "id"})
    x, y, index = r.forget[3]
    assert torch.equal(x, own["forget"][0][3]) and y.dtype == torch.int64 and int(index) == 1003 and r.positional == {}
    with pytest.raises(KeyError, match=r"no key\(s\) \['target'\]"):
        UnlearningRequest(forget, None, num_classes=10, keys={"x": "image", "y": "target"})


def test_requests_are_checked_when_built_with_errors_naming_what_is_wrong(own):
    xf, yf = own["forget"]
    xr, yr = own["remain"]
    cases = [
        (TypeError, r"item 0 of the forget set is a Tensor", dict(forget=TensorDataset(xf, yf).tensors[0])),  # bare tensors
        (TypeError, r"labels have dtype torch.float32", dict(forget=TensorDataset(xf, yf.float()))),
        (ValueError, r"item 2 of the forget set has label 10, outside the classes 0..9", dict(forget=TensorDataset(xf, yf.where(torch.arange(40) != 2, 10)))),
        (TypeError, r"x of item 0 of the forget set is a list", dict(forget=[([0.5], 1)])),
        (ValueError, r"x values lie in \[-0.857, 2\.?\d*\], outside \[0, 1\].*normalizer=Normalize\(mean, std\)",
         dict(forget=TensorDataset((xf - MEAN) / STD, yf))),
        (ValueError, r"index 3 is both in the forget set and in the remain set",
         dict(forget=TensorDataset(xf, yf, torch.arange(40)), remain=TensorDataset(xr, yr, torch.arange(3, 203)))),
        (ValueError, r"the remain set holds index 7 more than once", dict(remain=TensorDataset(xr, yr, torch.full((200,), 7)))),
        (ValueError, r"the remain set's x has shape \(1, 4, 4\)", dict(remain=TensorDataset(xr[:, :, :4, :4], yr))),
        (TypeError, r"own collate_fn", dict(forget=DataLoader(TensorDataset(xf, yf), collate_fn=lambda b: b))),
    ]
    for error, message, parts in cases:
        kwargs = {"forget": TensorDataset(xf, yf), "remain": None, "num_classes": 10, **parts}
        with pytest.raises(error, match=message):
            UnlearningRequest(**kwargs)
    # a loader stands for its dataset; int32 labels become int64 (they failed in cross-entropy before)
    r = UnlearningRequest(DataLoader(TensorDataset(xf, yf.int()), batch_size=7, shuffle=True), None, num_classes=10)
    assert r.forget.y.dtype == torch.int64 and torch.equal(r.forget.y, yf)


def test_int32_labels_train(own):
    model = trained(own)
    (xf, yf), (xr, yr) = own["forget"], own["remain"]
    request = UnlearningRequest(TensorDataset(xf, yf.int()), TensorDataset(xr, yr.int()), num_classes=10)
    unlearn(model, "ft", request, epochs=1)  # torch's cross-entropy refuses int32 targets


def test_indexed_splits_number_forget_remain_test_in_order(own):
    splits = IndexedSplits(TensorDataset(*own["forget"]), TensorDataset(*own["remain"]), test=TensorDataset(*own["test"]), num_classes=10)
    assert splits.positional == {"forget": 0, "remain": 40, "test": 240} and splits.size == 340
    request = UnlearningRequest.from_splits(splits, use_remain=False)
    assert request.remain is None and torch.equal(request.forget.index, torch.arange(40)) and request.positional == {"forget": 0}
    x, y, index, split = next(iter(splits.audit_dataloader(batch_size=500)))
    assert torch.equal(index, torch.arange(340)) and torch.equal(split, torch.repeat_interleave(torch.tensor([0, 1, 2]), torch.tensor([40, 200, 100])))


# ----------------------------------------------------------------------------- 2. a phase never silently drops data
def test_your_own_loader_during_a_phase_raises_before_the_method_builds_anything(own):
    """Was: the loader silently replaced D_R + D_F + D_A (360 samples an epoch instead of 440)."""
    request = UnlearningRequest(TensorDataset(*own["forget"]), TensorDataset(*own["remain"]), num_classes=10)
    model = trained(own)
    method = model.start_amun(request, epochs=1, eps_init=0.1)
    for loader in (DataLoader(TensorDataset(*own["remain"], torch.arange(40, 240))), DataLoader(TensorDataset(*own["remain"]))):
        expected = r"phase of method 'amun' would train on your loader instead of the request \(random forgetting with the remain set \(40 forget, 200 remain"
        with pytest.raises(RuntimeError, match=expected):
            make_trainer(max_epochs=1).fit(model, loader)
        assert method.adversarial is None  # raised before the attack
    model.stop_unlearning()
    make_trainer(max_epochs=1).fit(model, DataLoader(TensorDataset(*own["remain"])))  # outside the phase: the user's loader


# ----------------------------------------------------------------------------- 4. the Trainer is the user's
def test_every_trainer_option_passes_through_unlearn_and_epochs_set_the_phase(own):
    """Was: TypeError (multiple values for enable_model_summary); max_epochs refused."""
    request = UnlearningRequest(TensorDataset(*own["forget"]), TensorDataset(*own["remain"]), num_classes=10)
    counter = EpochCounter()
    options = {"enable_model_summary": True, "num_sanity_val_steps": 2, "max_epochs": 5, "callbacks": [counter], "accelerator": "cpu"}
    unlearn(trained(own), "ft", request, epochs=2, trainer_kwargs=options)
    assert counter.epochs == 2
    with pytest.raises(ValueError, match=r"max_epochs=1 is shorter than the unlearning phase of method 'ft' \(epochs=2\)"):
        unlearn(trained(own), "ft", request, epochs=2, trainer_kwargs={"max_epochs": 1})


def test_the_methods_epochs_set_the_phase_on_the_mixin_path_too(own):
    request = UnlearningRequest(TensorDataset(*own["forget"]), TensorDataset(*own["remain"]), num_classes=10)
    model = trained(own)
    counter = EpochCounter()
    trainer = make_trainer(max_epochs=6, callbacks=[counter])
    model.start_amun(request, epochs=2, eps_init=0.1)
    trainer.fit(model)
    assert counter.epochs == 2 and trainer.max_epochs == 6  # the user's Trainer is left as given
    with pytest.raises(ValueError, match=r"max_epochs=1 is shorter .* 'amun' \(epochs=2\)"):
        make_trainer(max_epochs=1).fit(model)
    model.stop_unlearning()


# ----------------------------------------------------------------------------- 3. normalisation one way
def test_fine_tuning_sees_the_inputs_training_saw(own):
    """Was: AMUN's normalizer reached the attack only; fine-tuning fed [0, 1] pixels to a forward
    expecting standardised inputs. Now every forward of the phase gets normalizer(pixels)."""
    def per_sample(inputs):
        return torch.sort(torch.cat(inputs).flatten(1).sum(1)).values

    # FT on D_R in one batch: each input is the one the last training epoch (every sample once) gave for that sample
    model = trained(own, standardised=True)
    train_inputs = per_sample(model.seen[-(240 // 32 + 1):])
    model.seen.clear()
    request = UnlearningRequest(TensorDataset(*own["forget"]), TensorDataset(*own["remain"]), num_classes=10, batch_size=240)
    unlearn(model, "ft", request, epochs=1, normalizer=Normalize([MEAN], [STD]))
    got = per_sample(model.seen)
    assert len(model.seen) == 1 and len(got) == 200
    nearest = (got[:, None] - train_inputs[None, :]).abs().min(1).values
    assert float(nearest.max()) < 1e-4  # without the normalizer the sums differ by about 40 per sample
    # AMUN: the attack and the fine-tuning both see standardised inputs (the smallest pixel, 0, at -MEAN/STD)
    model = trained(own, standardised=True)
    model.seen.clear()
    method = model.start_amun(dataclasses.replace(request, batch_size=512), epochs=1, eps_init=0.1, normalizer=Normalize([MEAN], [STD]))
    make_trainer(max_epochs=1).fit(model)
    model.stop_unlearning()
    attack, fit = model.seen[:-1], model.seen[-1]  # the attack's forwards, then the one batch of D_R + D_F + D_A
    assert len(fit) == 240 + len(method.adversarial)
    for inputs in (*attack, fit):
        assert float(inputs.min()) == pytest.approx(-MEAN / STD, abs=1e-5)


def test_every_method_path_applies_the_normalizer(own):
    """BS's FGSM, SalUn's saliency and TRW's similarity also see normalizer(pixels)."""
    for name, cls, extra in (("bs", Unlearnable, {}), ("salun", Unlearnable, {}), ("trw", ClassUnlearnable, {"similarity": "feature_centroids"})):
        model = trained(own, cls, standardised=True)
        model.seen.clear()
        classes = {"forget_classes": (int(own["forget"][1][0]),)} if name == "trw" else {}
        xf, yf = own["forget"]
        if name == "trw":
            xf, yf = own["remain"][0][own["remain"][1] == classes["forget_classes"][0]], own["remain"][1][own["remain"][1] == classes["forget_classes"][0]]
            xr, yr = own["remain"][0][own["remain"][1] != classes["forget_classes"][0]], own["remain"][1][own["remain"][1] != classes["forget_classes"][0]]
        else:
            xr, yr = own["remain"]
        request = UnlearningRequest(TensorDataset(xf, yf), TensorDataset(xr, yr), num_classes=10, **classes)
        unlearn(model, name, request, epochs=1, normalizer=Normalize([MEAN], [STD]), **extra)
        lows = torch.stack([s.min() for s in model.seen])
        assert torch.allclose(lows, torch.full_like(lows, -MEAN / STD), atol=1e-5), name  # no forward ever saw raw pixels


# ----------------------------------------------------------------------------- 5. audits in torchmetrics' shape
class Audited(DigitsNet):
    """Audits itself in validation_step; ``mode`` picks where the metric is logged."""

    def __init__(self, mode: str, ref: torch.Tensor) -> None:
        super().__init__()
        self.mode = mode
        self.mis = MIAEfficacy()
        self.rmia = RMIA(ref, tpr_fprs=(0.01,))

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        if self.mode == "single":
            x, y, index, split = batch  # one loader, the split carried by the batch
        else:
            (x, y, index), split = batch, ("forget", "remain", "test")[dataloader_idx]
        logits = self(x)
        self.mis(logits, y, index, split)  # forward: records like update
        self.rmia.update(logits, y, index, split)
        if self.mode in ("step", "single"):
            self.log("mis", self.mis)

    def on_validation_epoch_end(self):
        if self.mode == "epoch_end":
            self.log("mis", self.mis)
        self.log_dict({f"rmia/{k}": v for k, v in self.rmia.compute().items()})
        self.rmia.reset()


def test_audits_log_like_torchmetrics_with_several_validation_loaders(own):
    """Was: self.log("mis", self.mis) with three loaders raised 'needs records of the remain split'."""
    splits = IndexedSplits(TensorDataset(*own["forget"]), TensorDataset(*own["remain"]), test=TensorDataset(*own["test"]), num_classes=10)
    refs = [DigitsNet(), DigitsNet()]
    ref = reference_signals(refs, splits)
    assert ref.shape == (2, 340) and ref.dtype == torch.float32 and bool(torch.isfinite(ref).all())
    loaders = [splits.dataloader(n, batch_size=64) for n in ("forget", "remain", "test")]
    values = {}
    for mode in ("step", "epoch_end", "single"):
        pl.seed_everything(0, verbose=False)
        model = Audited(mode, ref)
        val = splits.audit_dataloader(batch_size=64) if mode == "single" else loaders
        trainer = make_trainer(max_epochs=2)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.fit(model, DataLoader(TensorDataset(*own["remain"]), batch_size=32), val_dataloaders=val)
        values[mode] = {k: v for k, v in trainer.callback_metrics.items()}
        incomplete = [w for w in caught if issubclass(w.category, IncompleteSplitsWarning)]
        assert len(incomplete) == (1 if mode == "step" else 0), mode  # once per metric object, not per epoch or loader
        assert sum(issubclass(w.category, LowFPRVarianceWarning) for w in caught) == 1, mode  # 100 test samples: once, not per epoch
    # several loaders: Lightning logs per loader; the last one holds every split
    step = values["step"]
    assert torch.isnan(step["mis/dataloader_idx_0"]) and torch.isnan(step["mis/dataloader_idx_1"])
    assert step["mis/dataloader_idx_2"] == values["epoch_end"]["mis"] == values["single"]["mis"]
    assert values["single"]["mis"].dtype == torch.float32 and values["single"]["rmia/ft_auc"].dtype == torch.float32
    # and equal to the functional core on the final model's outputs
    model.eval()
    with torch.no_grad():
        logits = {n: model(splits.part(n).x) for n in ("forget", "remain", "test")}
    labels = {n: splits.part(n).y for n in ("forget", "remain", "test")}
    probs = {n: torch.softmax(v.double(), 1) for n, v in logits.items()}
    members = MF.select_shadow_members(splits.index_of("remain"), 100, seed=0)
    want = MF.mia_efficacy(probs["remain"][members], labels["remain"][members], probs["test"], labels["test"], probs["forget"], labels["forget"])
    assert float(values["single"]["mis"]) == pytest.approx(want, rel=1e-6)


def test_forward_records_the_batch_and_returns_none():
    m = MIAEfficacy()
    g = torch.Generator().manual_seed(0)
    for split, n, scale in (("remain", 60, 6.0), ("test", 30, 1.0), ("forget", 20, 6.0)):
        z = torch.randn(n, 3, generator=g) * scale
        assert m(z, z.argmax(1), torch.arange(n) + 1000 * ("remain", "test", "forget").index(split), split) is None
    direct = MIAEfficacy()
    g = torch.Generator().manual_seed(0)
    for split, n, scale in (("remain", 60, 6.0), ("test", 30, 1.0), ("forget", 20, 6.0)):
        z = torch.randn(n, 3, generator=g) * scale
        direct.update(z, z.argmax(1), torch.arange(n) + 1000 * ("remain", "test", "forget").index(split), split)
    assert m.compute() == direct.compute() and m.compute().dtype == torch.float32
    assert m.set_dtype(torch.float64).compute().dtype == torch.float64


def test_rmia_from_your_own_reference_models_equals_the_functional_core(own):
    splits = IndexedSplits(TensorDataset(*own["forget"]), TensorDataset(*own["remain"]), test=TensorDataset(*own["test"]), num_classes=10)
    torch.manual_seed(0)
    refs = [DigitsNet().eval() for _ in range(3)]
    ref = reference_signals(refs, splits, signal="sm_taylor_softmax")
    target = DigitsNet().eval()
    metric = RMIA(ref, signal="sm_taylor_softmax").set_dtype(torch.float64)
    for x, y, index, split in splits.audit_dataloader(batch_size=50):
        metric.update(target(x), y, index, split)
    out = metric.compute()
    x, y, index = (torch.cat([splits.part(n).x for n in splits.names]), torch.cat([splits.part(n).y for n in splits.names]),
                   torch.cat([splits.index_of(n) for n in splits.names]))
    with torch.no_grad():
        sig = MF.taylor_softmax_signal(target(x), y)
        ref_direct = torch.stack([MF.taylor_softmax_signal(m(x), y) for m in refs])
    assert torch.allclose(ref[:, index], ref_direct)
    scores = MF.rmia_scores(sig, ref_direct, sig, ref_direct, gamma=2.0, self_index=torch.arange(len(index)))
    f, t = index < 40, index >= 240
    want = MF.roc_auc(torch.cat([scores[f], scores[t]]), torch.cat([torch.ones(int(f.sum())), torch.zeros(int(t.sum()))]).long())
    assert float(out["ft_auc"]) == pytest.approx(want, abs=1e-9)


# ----------------------------------------------------------------------------- smaller traps and one way in
def test_a_class_method_on_a_random_request_names_forget_classes(own):
    request = UnlearningRequest(TensorDataset(*own["forget"]), TensorDataset(*own["remain"]), num_classes=10)
    with pytest.raises(ValueError, match=r"'trw' does not apply to random forgetting with the remain set \(the request has no forget_classes; .*=\(k,\)"):
        ClassUnlearnable().start_trw(request)
    class_request = UnlearningRequest(TensorDataset(*own["forget"]), TensorDataset(*own["remain"]), num_classes=10, forget_classes=(3,))
    with pytest.raises(ValueError, match=r"'amun' does not apply to class forgetting .*forget_classes=\(3,\); random forgetting needs none"):
        Unlearnable().start_amun(class_request)


def test_every_registered_variant_is_reachable_from_its_convenience(own):
    random_request = UnlearningRequest(TensorDataset(*own["forget"]), TensorDataset(*own["remain"]), num_classes=10)
    class_request = UnlearningRequest(TensorDataset(*own["forget"]), TensorDataset(*own["remain"]), num_classes=10, forget_classes=(3,))
    for name, cls in METHODS.items():
        if issubclass(cls, AMUN):
            assert type(Unlearnable().start_amun(random_request, method=name)) is cls
        if issubclass(cls, TRW):
            assert type(ClassUnlearnable().start_trw(class_request, method=name)) is cls
    assert "unlearning_loss" not in vars(TRWMixin) and "teardown" not in vars(AMUN)  # no pass-through overrides


def test_eps_init_has_one_default_on_the_whole_path():
    defaults = {
        "pgd_l2_search": inspect.signature(pgd_l2_search).parameters["eps_init"].default,
        "build_adversarial_set": inspect.signature(build_adversarial_set).parameters["eps_init"].default,
        "AMUN": AMUN().eps_init,
        "adv-only": METHODS["adv-only"]().eps_init,
    }
    assert set(defaults.values()) == {DEFAULT_EPS_INIT} == {0.04}, defaults


def test_no_private_lightning_attribute_is_read():
    """The package uses Lightning's public API (``module.trainer``, ``global_rank``, ``trainer.fit_loop.max_epochs``)."""
    offenders = []
    for path in (ROOT / "lightning_unlearn").rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\._trainer\b|\"_trainer\"|'_trainer'", line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}")
    assert offenders == []
    base = (ROOT / "lightning_unlearn" / "unlearning" / "base.py").read_text()
    assert "type: ignore" not in base
