"""Baselines: registry settings, each loss's sign and data, the saliency mask, bad input."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from lightning_unlearn.data.transforms import to_pixels
from lightning_unlearn.training import ClassifierModule
from lightning_unlearn.unlearning import METHODS, UnlearningBatch, UnlearningMixin, UnlearningRequest, methods_for, unlearn
from lightning_unlearn.unlearning.bs import BoundaryShrink, fgsm_neighbour_labels
from lightning_unlearn.unlearning.ga import GradientAscent
from lightning_unlearn.unlearning.l1 import L1Sparse, l1_alpha, l1_norm
from lightning_unlearn.unlearning.phases import FORGET, REMAIN, Phase, PhasedLoader, ShardedEpochSampler, tagged_concat
from lightning_unlearn.unlearning.rl import RandomLabel, draw_labels
from lightning_unlearn.unlearning.saliency import saliency_mask, saliency_scores, top_fraction_mask
from lightning_unlearn.unlearning.scrub import SCRUB, distill_kl


class Model(UnlearningMixin, ClassifierModule):
    pass


class Spy(Model):
    """Records every unlearning batch's pool indices and phase tag."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.seen: list[tuple[str, torch.Tensor, int]] = []

    def unlearning_loss(self, batch, batch_idx=0):
        self.seen.append((batch.phase or "plain", batch.index.clone(), self.current_epoch))
        return super().unlearning_loss(batch, batch_idx)



def fresh(orig, cls=Model):
    return cls(copy.deepcopy(orig.model), num_classes=10)


def ids(dm, part):
    return set(dm.pool.train_index[getattr(dm.split, part)].tolist())


# ---------------------------------------------------------------------------- registry
EXPECTED = {
    ("random", True): {"ft", "rl", "ga", "bs", "l1", "salun", "scrub", "amun", "amun-salun", "adv-only"},
    ("random", False): {"rl", "ga", "bs", "salun", "amun", "amun-salun", "adv-only"},
    ("class", True): {"ft", "rl", "ga", "bs", "l1", "salun", "scrub", "trw", "trw-concat"},
    ("class", False): {"rl", "ga", "bs", "salun", "trw"},
}


@pytest.mark.parametrize("setting", list(EXPECTED))
def test_registry_settings_match_the_contract(setting):
    for name, cls in METHODS.items():
        assert cls.supports(*setting) == (name in EXPECTED[setting]), name


def test_unsupported_settings_raise(digits_dm, digits_original):
    req = UnlearningRequest.from_datamodule(digits_dm, use_remain=False)
    for name in ("ft", "l1", "scrub"):
        with pytest.raises(ValueError, match="does not apply to random forgetting with the forget set only"):
            fresh(digits_original).start_unlearning(name, req)


def test_bad_requests_raise(digits_dm):
    with pytest.raises(ValueError, match="empty"):
        UnlearningRequest(forget=digits_dm.forget_set().subset(torch.tensor([], dtype=torch.long)), remain=None, num_classes=10)
    with pytest.raises(ValueError, match="unknown unlearning method 'nope'"):
        Model(copy.deepcopy(torch.nn.Linear(2, 2)), num_classes=2).start_unlearning("nope", UnlearningRequest.from_datamodule(digits_dm))
    with pytest.raises(ValueError, match="label_mode"):
        RandomLabel(label_mode="sometimes")
    with pytest.raises(ValueError, match="l1_schedule"):
        L1Sparse(l1_schedule="cosine")
    with pytest.raises(ValueError, match="mask ratio"):
        METHODS["salun"](mask_ratio=1.5)


# ---------------------------------------------------------------------------- loaders
def test_sharded_sampler_pads_and_partitions():
    n, w = 10, 3
    shards = [list(ShardedEpochSampler(n, seed=1, rank=r, world_size=w)) for r in range(w)]
    assert all(len(s) == math.ceil(n / w) for s in shards)
    assert set(sum(shards, [])) == set(range(n))
    one = list(ShardedEpochSampler(n, seed=1))
    assert sorted(one) == list(range(n))
    s = ShardedEpochSampler(n, seed=1)
    s.set_epoch(1)
    assert list(s) != one  # reshuffled per epoch
    assert list(ShardedEpochSampler(n, shuffle=False)) == list(range(n))


def test_phased_loader_yields_phase1_then_phase2_with_equal_counts_per_rank(digits_dm):
    remain = tagged_concat([(digits_dm.remain_set(), REMAIN)])
    forget = tagged_concat([(digits_dm.forget_set(), FORGET)])
    per_rank = []
    for r in range(2):
        pl_ = PhasedLoader([Phase("remain", remain, shuffle=False, batch_size=64), Phase("forget", forget, batch_size=32)], rank=r, world_size=2)
        tags = [b.phase for b in pl_]
        assert tags == sorted(tags, key=lambda t: t != "remain")  # all remain batches first
        assert len(tags) == len(pl_)
        per_rank.append((tags.count("remain"), tags.count("forget")))
    assert per_rank[0] == per_rank[1]


def test_phase_until_epoch_drops_the_phase():
    ds = tagged_concat([(torch.utils.data.TensorDataset(torch.zeros(8, 1), torch.zeros(8, dtype=torch.long), torch.arange(8)), FORGET)])
    epoch = [0]
    pl_ = PhasedLoader([Phase("max", ds, batch_size=4, until_epoch=1), Phase("min", ds, batch_size=4)], epoch_fn=lambda: epoch[0])
    assert [b.phase for b in pl_] == ["max", "max", "min", "min"]
    epoch[0] = 1
    assert [b.phase for b in pl_] == ["min", "min"] and len(pl_) == 2


# ---------------------------------------------------------------------------- data touched
# the AMUN variants' data composition (D_F and D_A only) is checked in test_amun.py
@pytest.mark.parametrize("name", [m for m in methods_for("random", False) if m not in ("amun", "amun-salun", "adv-only")])
def test_without_remain_no_remain_data_is_touched(name, digits_dm, digits_original):
    req = UnlearningRequest.from_datamodule(digits_dm, use_remain=False)
    m = fresh(digits_original, Spy)
    unlearn(m, name, req, epochs=1)
    seen = set(torch.cat([s[1] for s in m.seen]).tolist())
    assert seen == ids(digits_dm, "forget")


@pytest.mark.parametrize("name", ["ga", "bs"])
def test_ga_bs_with_remain_run_remain_pass_then_forget_pass(name, digits_dm, digits_original):
    req = UnlearningRequest.from_datamodule(digits_dm, use_remain=True)
    m = fresh(digits_original, Spy)
    unlearn(m, name, req, epochs=1)
    phases = [s[0] for s in m.seen]
    k = phases.count("remain")
    assert phases == ["remain"] * k + ["forget"] * (len(phases) - k)
    remain_order = torch.cat([s[1] for s in m.seen if s[0] == "remain"])
    assert set(remain_order.tolist()) == ids(digits_dm, "remain")
    assert torch.equal(remain_order, digits_dm.pool.train_index[digits_dm.split.remain])  # fixed order ([R])
    assert set(torch.cat([s[1] for s in m.seen if s[0] == "forget"]).tolist()) == ids(digits_dm, "forget")


def test_ft_and_l1_touch_only_remain(digits_dm, digits_original):
    req = UnlearningRequest.from_datamodule(digits_dm, use_remain=True)
    for name in ("ft", "l1"):
        m = fresh(digits_original, Spy)
        unlearn(m, name, req, epochs=1)
        assert set(torch.cat([s[1] for s in m.seen]).tolist()) == ids(digits_dm, "remain")


# ---------------------------------------------------------------------------- losses
def _batch(dm, part, n=16, phase="forget"):
    ds = getattr(dm, f"{part}_set")()
    x, y, idx = ds.x[:n], ds.y[:n], ds.index[:n]
    src = torch.full((n,), FORGET if part == "forget" else REMAIN)
    return UnlearningBatch(x, y, idx, src, phase)


def test_ga_loss_is_minus_ce_on_forget_and_plus_ce_on_remain(digits_dm, digits_original):
    m = fresh(digits_original)
    ga = GradientAscent()
    m.eval()
    for part, sign in (("forget", -1.0), ("remain", 1.0)):
        b = _batch(digits_dm, part, phase=part)
        ce = F.cross_entropy(m(to_pixels(b[0])), b[1])
        assert torch.allclose(ga.loss(m, b, 0), sign * ce)


def test_rl_labels_never_equal_y_in_wrong_mode_and_are_redrawn_per_epoch():
    y = torch.arange(2000) % 10
    idx = torch.arange(2000)
    a = draw_labels(y, idx, seed=0, epoch=0, num_classes=10, mode="wrong")
    assert (a != y).all() and set(a.tolist()) == set(range(10))
    counts = torch.bincount(a[y == 0], minlength=10)[1:]
    assert counts.min() > 0.5 * counts.float().mean()  # roughly uniform over the 9 wrong classes
    assert torch.equal(a, draw_labels(y, idx, seed=0, epoch=0, num_classes=10))  # deterministic
    b = draw_labels(y, idx, seed=0, epoch=1, num_classes=10)
    assert (a != b).float().mean() > 0.7  # redrawn each epoch
    # keyed by index, not position: a permuted batch gets the permuted labels
    p = torch.randperm(2000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(draw_labels(y[p], idx[p], seed=0, epoch=0, num_classes=10), a[p])
    anym = draw_labels(y, idx, seed=0, epoch=0, num_classes=10, mode="any")
    assert (anym == y).any()


def test_rl_loss_relabels_only_forget_samples(digits_dm, digits_original):
    m = fresh(digits_original)
    m.eval()
    rl = RandomLabel()
    rl.request = UnlearningRequest.from_datamodule(digits_dm)
    fb, rb = _batch(digits_dm, "forget", phase="mixed"), _batch(digits_dm, "remain", phase="mixed")
    batch = UnlearningBatch(*(torch.cat([a, b]) for a, b in zip(fb[:4], rb[:4])), phase="mixed")
    t = rl.targets(m, batch)
    assert (t[:16] != batch[1][:16]).all() and torch.equal(t[16:], batch[1][16:])
    assert torch.allclose(rl.loss(m, batch, 0), F.cross_entropy(m(to_pixels(batch[0])), t))


def test_bs_neighbour_labels_match_a_hand_fgsm(digits_dm, digits_original):
    net = copy.deepcopy(digits_original.model).eval()
    x, y = to_pixels(digits_dm.forget_set().x[:32]), digits_dm.forget_set().y[:32]
    xr = x.clone().requires_grad_(True)
    F.cross_entropy(net(xr), y, reduction="sum").backward()
    xn = torch.round(torch.clamp(x + 0.1 * xr.grad.sign(), 0, 1) * 255) / 255
    expected = net(xn).argmax(1)
    other = copy.deepcopy(digits_original.model).eval()
    assert torch.equal(fgsm_neighbour_labels(other, x, y), expected)
    assert all(p.grad is None for p in other.parameters())
    assert (expected != y).any()


def test_bs_copy_is_made_once_from_the_original(digits_dm, digits_original):
    from lightning_unlearn.training.fit import make_trainer

    for refresh in (False, True):
        m = fresh(digits_original)
        before = {k: v.clone() for k, v in m.state_dict().items()}
        bs = BoundaryShrink(refresh_copy_each_epoch=refresh, lr=0.05, epochs=2)
        m.start_unlearning(bs, UnlearningRequest.from_datamodule(digits_dm, use_remain=False))
        make_trainer(max_epochs=2).fit(m)
        same = all(torch.equal(bs._copy.state_dict()[k], before[k]) for k in before)
        assert same != refresh  # once from θ_o by default; re-copied per epoch with the [R] option
        m.stop_unlearning()
        assert bs._copy is None  # dropped at teardown


def test_l1_schedules():
    assert [l1_alpha(e, alpha0=1.0, epochs=10) for e in (0, 5, 9)] == pytest.approx([1.0, 0.5, 0.1])
    assert l1_alpha(8, alpha0=1.0, epochs=10, no_l1_epochs=2) == 0.0
    ref = [1, 2, 3.6, 5.76, 8.064, 9.6768, 9.6768, 7.74144, 4.644864, 1.8579456]
    assert [l1_alpha(e, alpha0=1.0, epochs=10, schedule="amun_ref") for e in range(10)] == pytest.approx(ref)


def test_l1_loss_adds_alpha_times_l1_of_all_parameters(digits_dm, digits_original):
    m = fresh(digits_original)
    m.eval()
    meth = L1Sparse(alpha=1e-3)
    x, y = digits_dm.remain_set().x[:16], digits_dm.remain_set().y[:16]
    hand = F.cross_entropy(m(to_pixels(x)), y) + 1e-3 * sum(p.abs().sum() for p in m.model.parameters())
    assert torch.allclose(meth.loss(m, UnlearningBatch(x, y, torch.arange(16)), 0), hand)
    assert torch.allclose(l1_norm(m), sum(p.abs().sum() for _, p in m.named_parameters()))


def test_scrub_kl_and_signs(digits_dm, digits_original):
    s, t = torch.randn(5, 10), torch.randn(5, 10)
    tau = 4.0
    pt, ps = F.softmax(t / tau, 1), F.softmax(s / tau, 1)
    hand = (pt * (pt.log() - ps.log())).sum(1).mean() * tau**2
    assert torch.allclose(distill_kl(s, t, tau), hand, atol=1e-6)
    m = fresh(digits_original)
    sc = SCRUB()
    sc.request = UnlearningRequest.from_datamodule(digits_dm)
    sc.setup(m, sc.request)
    with torch.no_grad():  # perturb the student so that d > 0
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))
    m.eval()
    fb = _batch(digits_dm, "forget", phase="max")
    x = to_pixels(fb[0])
    d = distill_kl(m(x), sc._teacher(x), tau)
    assert d > 0 and torch.allclose(sc.loss(m, fb, 0), -d)
    rb = _batch(digits_dm, "remain", phase="min")
    xr = to_pixels(rb[0])
    hand = 0.001 * distill_kl(m(xr), sc._teacher(xr), tau) + 0.99 * F.cross_entropy(m(xr), rb[1])
    assert torch.allclose(sc.loss(m, rb, 0), hand)


def test_scrub_runs_exactly_msteps_max_epochs_and_keeps_the_teacher(digits_dm, digits_original):
    m = fresh(digits_original, Spy)
    sc = SCRUB(msteps=2, epochs=3)
    unlearn(m, sc, UnlearningRequest.from_datamodule(digits_dm))
    max_epochs = sorted({e for ph, _, e in m.seen if ph == "max"})
    assert max_epochs == [0, 1]
    assert sorted({e for ph, _, e in m.seen if ph == "min"}) == [0, 1, 2]
    assert set(torch.cat([s[1] for s in m.seen if s[0] == "max"]).tolist()) == ids(digits_dm, "forget")


# ---------------------------------------------------------------------------- saliency
def test_saliency_mask_selects_largest_grad_and_leaves_theta_untouched(digits_dm, digits_original):
    net = copy.deepcopy(digits_original.model)
    net.train()  # the mask must be computed in eval mode and the mode restored
    before = {k: v.clone() for k, v in net.state_dict().items()}
    forget = digits_dm.forget_set()
    mask = saliency_mask(net, forget, ratio=0.3)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BN stats included
    assert all(p.grad is None for p in net.parameters()) and net.training
    # independent reference: .backward() on a copy in eval mode, summed over batches of 128
    ref = copy.deepcopy(net).eval()
    for i in range(0, len(forget), 128):
        F.cross_entropy(ref(to_pixels(forget.x[i : i + 128])), forget.y[i : i + 128]).backward()
    g = torch.cat([p.grad.abs().flatten() for p in ref.parameters()])
    flat = torch.cat([m.flatten() for m in mask.values()])
    P = g.numel()
    assert flat.sum() == math.floor(0.3 * P)
    assert g[flat].min() >= g[~flat].max()  # largest |g| selected
    scores = saliency_scores(net, forget)
    assert torch.allclose(torch.cat([s.flatten() for s in scores.values()]), g, rtol=1e-4, atol=1e-7)


def test_top_fraction_mask_counts_and_ties():
    s = {"a": torch.tensor([3.0, 1.0, 2.0]), "b": torch.tensor([[5.0, 0.0], [2.0, 4.0]])}
    m = top_fraction_mask(s, 0.5)
    assert m["a"].tolist() == [True, False, False] and m["b"].tolist() == [[True, False], [False, True]]
    assert sum(int(v.sum()) for v in top_fraction_mask(s, 0.4).values()) == math.floor(0.4 * 7)


@pytest.mark.parametrize("mask_mode", ["freeze", "grad_only"])
def test_salun_masked_out_weights(mask_mode, digits_dm, digits_original):
    m = fresh(digits_original)
    theta0 = {k: v.clone() for k, v in m.named_parameters()}
    meth = METHODS["salun"](mask_ratio=0.5, mask_mode=mask_mode, lr=0.05, epochs=2)
    mask = saliency_mask(m, digits_dm.forget_set(), ratio=0.5)
    unlearn(m, meth, UnlearningRequest.from_datamodule(digits_dm))
    after = dict(m.named_parameters())
    frozen_same = all(torch.equal(after[k][~mask[k]], theta0[k][~mask[k]]) for k in mask)
    moved_in = sum(int((after[k][mask[k]] != theta0[k][mask[k]]).sum()) for k in mask)
    assert moved_in > 0
    if mask_mode == "freeze":
        assert frozen_same
    else:
        assert not frozen_same  # weight decay and momentum still move them ([R])


@pytest.fixture(scope="module")
def digits_class_dm(cache_dir):
    from lightning_unlearn.data import UnlearningDataModule

    dm = UnlearningDataModule("digits", forget="class:3", seed=0, cache_dir=cache_dir)
    dm.setup()
    return dm


@pytest.mark.parametrize("name", ["rl", "ga", "bs", "salun"])
def test_class_forgetting_forget_set_only(name, digits_class_dm, digits_original):
    req = UnlearningRequest.from_datamodule(digits_class_dm, use_remain=False)
    assert req.kind == "class" and not req.has_remain
    m = fresh(digits_original, Spy)
    unlearn(m, name, req, epochs=1, lr=0.01)
    assert set(torch.cat([s[1] for s in m.seen]).tolist()) == ids(digits_class_dm, "forget")
    assert all(torch.isfinite(p).all() for p in m.parameters())
