"""AMUN: data composition, no augmentation on D_A, forgetting on a tiny model, AMUN+SalUn, AMUN-A, DDP."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from helpers import run_ddp_script

from lightning_unlearn.data import UnlearningDataModule
from lightning_unlearn.data.transforms import to_pixels
from lightning_unlearn.inference import accuracy, predict_logits
from lightning_unlearn.training import ClassifierModule, train_classifier
from lightning_unlearn.training.fit import make_trainer
from lightning_unlearn.unlearning import METHODS, AMUNMixin, UnlearningBatch, UnlearningRequest, build_adversarial_set, unlearn
from lightning_unlearn.unlearning import amun as amun_mod
from lightning_unlearn.unlearning.phases import ADVERSARIAL, FORGET, REMAIN
from lightning_unlearn.unlearning.saliency import saliency_mask


class Model(AMUNMixin, ClassifierModule):
    pass


class Spy(Model):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.seen: list[tuple] = []

    def unlearning_loss(self, batch, batch_idx=0):
        self.seen.append((batch.index.clone(), batch.source.clone(), batch.y.clone(), batch.phase, self.current_epoch))
        return super().unlearning_loss(batch, batch_idx)


def fresh(orig, cls=Model):
    return cls(copy.deepcopy(orig.model), num_classes=10)


@pytest.fixture(scope="module")
def adv_set(digits_dm, digits_original):
    return build_adversarial_set(copy.deepcopy(digits_original.model), digits_dm.forget_set(), eps_init=0.1)


def test_every_contract_name_is_registered():
    for name in ("ft", "rl", "ga", "bs", "l1", "salun", "scrub", "amun", "amun-salun", "adv-only"):
        assert name in METHODS and METHODS[name].name == name


def test_adversarial_set_rows(adv_set, digits_dm):
    f = digits_dm.forget_set()
    assert len(adv_set) + adv_set.n_unresolved == len(f) and adv_set.n_unresolved == 0
    assert torch.equal(adv_set.index, f.index.sort().values)  # sorted by index
    pos = {int(i): k for k, i in enumerate(f.index)}
    order = torch.tensor([pos[int(i)] for i in adv_set.index])
    assert torch.equal(adv_set.y_true, f.y[order]) and (adv_set.y != adv_set.y_true).all()
    assert (adv_set.delta <= adv_set.eps + 1e-6).all()
    assert torch.allclose(adv_set.delta, (adv_set.x - to_pixels(f.x[order])).flatten(1).norm(dim=1))
    assert adv_set.n_grad > 0 and adv_set.cost_in_pgd50_passes > 0


@pytest.mark.parametrize("variant,has_remain", [("amun", True), ("amun", False), ("adv-only", True), ("adv-only", False)])
def test_data_composition(variant, has_remain, adv_set, digits_dm, digits_original):
    req = UnlearningRequest.from_datamodule(digits_dm, use_remain=has_remain)
    m = fresh(digits_original, Spy)
    meth = m.start_amun(req, method=variant, adversarial_set=adv_set, epochs=1)
    make_trainer(max_epochs=1).fit(m)
    m.stop_unlearning()
    idx = torch.cat([s[0] for s in m.seen])
    src = torch.cat([s[1] for s in m.seen])
    lab = torch.cat([s[2] for s in m.seen])
    n_r = len(digits_dm.split.remain) if has_remain else 0
    n_f = len(digits_dm.split.forget) if variant == "amun" else 0
    assert int((src == REMAIN).sum()) == n_r and int((src == FORGET).sum()) == n_f
    assert int((src == ADVERSARIAL).sum()) == len(adv_set)
    forget_ids = set(digits_dm.pool.train_index[digits_dm.split.forget].tolist())
    assert set(idx[src != REMAIN].tolist()) <= forget_ids
    if not has_remain:
        assert set(idx.tolist()) <= forget_ids  # no remain data touched
    # D_A rows carry y_adv, D_F rows their true labels
    y_adv = dict(zip(adv_set.index.tolist(), adv_set.y.tolist()))
    y_true = dict(zip(adv_set.index.tolist(), adv_set.y_true.tolist()))
    assert all(y_adv[i] == label for i, label in zip(idx[src == ADVERSARIAL].tolist(), lab[src == ADVERSARIAL].tolist()))
    assert all(y_true[i] == label for i, label in zip(idx[src == FORGET].tolist(), lab[src == FORGET].tolist()))
    # one uniformly shuffled stream: a single phase, batches mix the parts
    assert {s[3] for s in m.seen} == {"mixed"}
    if has_remain or variant == "amun":
        assert any(len(set(s[1].tolist())) > 1 for s in m.seen)
    assert meth.adversarial is not None and len(meth.adversarial) == len(adv_set)


def test_no_augmentation_on_the_adversarial_part(adv_set, digits_dm, digits_original):
    req = dataclasses.replace(UnlearningRequest.from_datamodule(digits_dm), augmentation="crop_flip")
    seen = []
    for augment_adv in (False, True):
        m = fresh(digits_original)
        m.model.register_forward_pre_hook(lambda mod, args: seen.append(args[0].clone()))
        meth = METHODS["amun"](adversarial_set=adv_set, augment_adv=augment_adv)
        meth.request = req
        f = digits_dm.forget_set()
        x = torch.cat([to_pixels(f.x[:32]), adv_set.x[:32]])
        src = torch.cat([torch.full((32,), FORGET), torch.full((32,), ADVERSARIAL)])
        y = torch.cat([f.y[:32], adv_set.y[:32]])
        seen.clear()
        loss = meth.loss(m, UnlearningBatch(x, y, torch.arange(64), src, "mixed"), 0)
        fed = seen[0]
        assert torch.allclose(loss, F.cross_entropy(m.model(fed), y))
        assert not torch.equal(fed[:32], x[:32])  # D_F augmented
        assert torch.equal(fed[32:], x[32:]) != augment_adv  # D_A untouched unless augment_adv


def test_adversarial_set_is_built_once_per_fit_on_the_current_model(monkeypatch, digits_dm, digits_original):
    calls = []
    real = amun_mod.build_adversarial_set

    def spy(model, forget, **kw):
        calls.append({k: v.clone() for k, v in model.state_dict().items()})
        return real(model, forget, **kw)

    monkeypatch.setattr(amun_mod, "build_adversarial_set", spy)
    m = fresh(digits_original)
    theta0 = {k: v.clone() for k, v in m.state_dict().items()}
    req = UnlearningRequest.from_datamodule(digits_dm, use_remain=False)
    unlearn(m, "amun", req, epochs=2, eps_init=0.1, step_size=None, lr=0.05)
    assert len(calls) == 1 and all(torch.equal(calls[0][k], theta0[k]) for k in theta0)  # once, on θ_o
    # AMUN-A: a second request rebuilds D_A on the model as it is after the first request
    after1 = {k: v.clone() for k, v in m.state_dict().items()}
    unlearn(m, "amun", req, epochs=1, eps_init=0.1)
    assert len(calls) == 2 and all(torch.equal(calls[1][k], after1[k]) for k in after1)
    # plain AMUN across requests: rows of a precomputed set, no new attack
    pre = m.precompute_adversarial_set(digits_dm.forget_set(), eps_init=0.1)
    assert len(calls) == 3
    half = digits_dm.forget_set().subset(torch.arange(20))
    meth = m.start_amun(dataclasses.replace(req, forget=half), adversarial_set=pre, epochs=1)
    make_trainer(max_epochs=1).fit(m)
    assert len(calls) == 3 and set(meth.adversarial.index.tolist()) <= set(half.index.tolist())
    m.stop_unlearning()


def test_amun_lowers_forget_accuracy_toward_test_accuracy(cache_dir):
    dm = UnlearningDataModule("digits", forget="random:0.2", seed=0, cache_dir=cache_dir, max_train=300)
    dm.setup()
    orig = train_classifier(dm, epochs=20, seed=0)  # memorises its 300 training images

    def acc(m, ds):
        logits, y, _ = predict_logits(m, ds)
        return accuracy(logits, y)

    f0, r0, t0 = acc(orig, dm.forget_set()), acc(orig, dm.remain_set()), acc(orig, dm.test_set())
    assert f0 - t0 > 3  # a generalisation gap to close
    m = fresh(orig)
    unlearn(m, "amun", UnlearningRequest.from_datamodule(dm, use_remain=False), epochs=3, lr=0.05, step_size=None, eps_init=0.1)
    f1, r1 = acc(m, dm.forget_set()), acc(m, dm.remain_set())
    # forget accuracy drops toward the accuracy on unseen data (a retrained model's level)
    assert f1 < f0 and abs(f1 - t0) < abs(f0 - t0)
    assert r1 >= r0 - 3  # remain accuracy kept


def test_amun_salun_freezes_masked_out_weights(adv_set, digits_dm, digits_original):
    m = fresh(digits_original)
    theta0 = {k: v.clone() for k, v in m.named_parameters()}
    mask = saliency_mask(m, digits_dm.forget_set(), ratio=0.3)
    unlearn(m, "amun-salun", UnlearningRequest.from_datamodule(digits_dm), adversarial_set=adv_set, mask_ratio=0.3, epochs=1, lr=0.05, step_size=None)
    after = dict(m.named_parameters())
    assert all(torch.equal(after[k][~mask[k]], theta0[k][~mask[k]]) for k in mask)
    assert any((after[k][mask[k]] != theta0[k][mask[k]]).any() for k in mask)


def test_user_training_step_outside_the_phase(digits_dm, digits_original):
    m = fresh(digits_original, Spy)
    make_trainer(max_epochs=1, limit_train_batches=2).fit(m, train_dataloaders=digits_dm.train_dataloader())
    assert m.seen == [] and not m.is_unlearning


def test_bad_input(digits_original, digits_dm, cache_dir):
    dm = UnlearningDataModule("digits", forget="class:3", seed=0, cache_dir=cache_dir)
    dm.setup()
    for name in ("amun", "amun-salun", "adv-only"):
        with pytest.raises(ValueError, match="does not apply to class forgetting"):
            fresh(digits_original).start_unlearning(name, UnlearningRequest.from_datamodule(dm))
    with pytest.raises(ValueError, match="unknown AMUN variant"):
        METHODS["amun"](variant="both")
    with pytest.raises(ValueError, match="eps_init"):
        METHODS["amun"](eps_init="big")
    with pytest.raises(ValueError, match="unknown AMUN method 'trw'"):
        fresh(digits_original).start_amun(UnlearningRequest.from_datamodule(digits_dm), method="trw")
    empty = digits_dm.forget_set().subset(torch.tensor([], dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        build_adversarial_set(copy.deepcopy(digits_original.model), empty, eps_init=0.1)
    with pytest.raises(ValueError, match="empty"):
        UnlearningRequest(forget=empty, remain=None, num_classes=10)
    from lightning_unlearn.data.forget import validate_indices

    n = len(digits_dm.pool.train_y)
    with pytest.raises(ValueError, match="strict subset"):
        validate_indices(torch.arange(n + 5), n)  # a forget set larger than the training set
    with pytest.raises(ValueError, match="out of range"):
        validate_indices(torch.tensor([0, n]), n)


@pytest.mark.ddp
def test_amun_ddp_matches_single_process(tmp_path, cache_dir, digits_dm, digits_original):
    """Two gloo CPU processes: both ranks hold the single-process D_A and end with identical parameters."""
    torch.save(digits_original.model.state_dict(), tmp_path / "orig.pt")
    run_ddp_script("amun_ddp.py", tmp_path, cache_dir)
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    ref = build_adversarial_set(copy.deepcopy(digits_original.model), digits_dm.forget_set(), eps_init=0.1, batch_size=32)
    for r in (r0, r1):
        for k in ("x", "y", "index", "eps", "delta"):
            assert torch.equal(r[k], getattr(ref, k)), k
        assert r["n_grad"] == ref.n_grad
    # parameters are bit-identical across ranks (BatchNorm running statistics are rank-local
    # between DDP's per-forward buffer broadcasts, as in any DDP run, so they are not compared)
    assert all(torch.equal(r0["params"][k], r1["params"][k]) for k in r0["params"])
    orig = dict(digits_original.named_parameters())
    assert any(not torch.equal(r0["params"][k], orig[k]) for k in r0["params"])  # it did train
    # GA with D_R: each rank runs its D_R-pass batches, then its D_F-pass batches, in step
    assert r0["phases_ga"] == r1["phases_ga"] and r0["phases_ga"][0] == "remain" and r0["phases_ga"][-1] == "forget"
    assert all(torch.equal(r0["params_ga"][k], r1["params_ga"][k]) for k in r0["params_ga"])
