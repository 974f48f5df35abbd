"""The functional metrics against independent computations (numpy, sklearn, brute force, by hand)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from lightning_unlearn.metrics import functional as F
from lightning_unlearn.metrics.functional.signals import FlooredSignalWarning


def _np_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _probs(n: int, k: int, seed: int, scale: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g) * scale
    return torch.softmax(logits.double(), 1), torch.randint(0, k, (n,), generator=g)


# ----------------------------------------------------------------------------- signals
def test_softmax_signal_matches_numpy_with_temperature_and_leading_dims():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 20, 5, generator=g) * 4
    y = torch.randint(0, 5, (20,), generator=g)
    for t in (1.0, 2.5):
        got = F.softmax_signal(z, y, temperature=t)
        ref = _np_softmax(z.double().numpy() / t)[:, np.arange(20), y.numpy()]
        assert got.shape == (3, 20)
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5, atol=1e-7)


def test_taylor_signal_matches_hand_formula():
    z = torch.tensor([[1.0, 0.0, -1.0], [0.3, 2.0, 0.5]])
    y = torch.tensor([0, 2])
    t, m = 2.0, 0.6

    def tn(v):  # 1 + v + v^2/2 + v^3/6 (four terms)
        return 1 + v + v**2 / 2 + v**3 / 6

    u = z.double().numpy() / t
    expect = []
    for i, yi in enumerate(y.tolist()):
        num = tn(u[i, yi] - m)
        expect.append(num / (num + sum(tn(u[i, j]) for j in range(3) if j != yi)))
    got = F.taylor_softmax_signal(z, y)
    np.testing.assert_allclose(got.numpy(), expect, rtol=1e-6)


def test_taylor_signal_floors_negative_values_with_counted_warning():
    # label logit -10 at T=2: t(-5.6) = -18.19 < 0, others t(3) = 13 -> signal -18.19 / 7.81 < 0
    z = torch.tensor([[-10.0, 6.0, 6.0], [2.0, 0.0, 0.0]])
    y = torch.tensor([0, 0])
    with pytest.warns(FlooredSignalWarning, match="1 of 2"):
        s = F.taylor_softmax_signal(z, y)
    assert s[0].item() == pytest.approx(1e-30, rel=1e-6)
    assert 0 < s[1].item() < 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F.taylor_softmax_signal(z[1:], y[1:])  # nothing floored -> no warning


def test_signal_input_errors():
    with pytest.raises(ValueError, match="labels must lie in"):
        F.softmax_signal(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="temperature"):
        F.softmax_signal(torch.zeros(2, 3), torch.tensor([0, 1]), temperature=0)
    with pytest.raises(ValueError, match="entries"):
        F.softmax_signal(torch.zeros(2, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="empty"):
        F.softmax_signal(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))


# ----------------------------------------------------------------------------- RMIA
def _np_rmia(tx, rx, tz, rz, gamma, a=None, strict=True, self_pos=None):
    """The definition with an explicit N x M likelihood-ratio matrix, in numpy."""
    def pr(r):
        m = r.astype(np.float64).mean(0)
        return m if a is None else 0.5 * (1 + a) * m + 0.5 * (1 - a)

    rx_ = tx.astype(np.float64) / pr(rx)
    rz_ = tz.astype(np.float64) / pr(rz)
    lr = rx_[:, None] / rz_[None, :]
    hit = lr > gamma if strict else lr >= gamma
    denom = np.full(len(tx), float(len(tz)))
    if self_pos is not None:
        for i, p in enumerate(self_pos):
            if p >= 0:
                hit[i, p] = False
                denom[i] -= 1
    return hit.sum(1) / denom


def _signals(n, r, seed, ties=False):
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n, generator=g) * 0.98 + 0.01
    ref = torch.rand(r, n, generator=g) * 0.98 + 0.01
    if ties:  # coarse values: many exactly equal ratios
        t, ref = (t * 4).round() / 4 + 0.25, (ref * 2).round() / 2 + 0.5
    return t, ref


@pytest.mark.parametrize("gamma", [1.0, 2.0, 0.5])
@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("a", [None, 0.3])
@pytest.mark.parametrize("ties", [False, True])
def test_rmia_sorting_equals_bruteforce_and_numpy_definition(gamma, strict, a, ties):
    tx, rx = _signals(257, 4, 1, ties)
    tz, rz = _signals(300, 4, 2, ties)
    fast = F.rmia_scores(tx, rx, tz, rz, gamma=gamma, offline_a=a, strict=strict)
    brute = F.rmia_scores_bruteforce(tx, rx, tz, rz, gamma=gamma, offline_a=a, strict=strict, chunk_size=50)
    ref = _np_rmia(tx.numpy(), rx.numpy(), tz.numpy(), rz.numpy(), gamma, a, strict)
    assert torch.equal(fast, brute)
    np.testing.assert_array_equal(fast.double().numpy(), ref.astype(np.float32).astype(np.float64))


@pytest.mark.parametrize("strict,gamma", [(True, 1.0), (False, 1.0), (True, 0.5), (False, 2.0)])
def test_rmia_self_in_population_is_excluded(strict, gamma):
    # population = all 200 points; candidates are 60 of them (x in Z, docs/metrics.md, section 5.3, "Computation by sorting")
    tz, rz = _signals(200, 3, 5, ties=True)
    pos = torch.randperm(200, generator=torch.Generator().manual_seed(0))[:60]
    tx, rx = tz[pos], rz[:, pos]
    fast = F.rmia_scores(tx, rx, tz, rz, gamma=gamma, strict=strict, self_index=pos)
    brute = F.rmia_scores_bruteforce(tx, rx, tz, rz, gamma=gamma, strict=strict, self_index=pos)
    ref = _np_rmia(tx.numpy(), rx.numpy(), tz.numpy(), rz.numpy(), gamma, None, strict, pos.numpy())
    assert torch.equal(fast, brute)
    np.testing.assert_allclose(fast.numpy(), ref, rtol=1e-6)
    # -1 means "not in the population": same as not passing self_index
    none = F.rmia_scores(tx, rx, tz, rz, gamma=gamma, strict=strict, self_index=torch.full((60,), -1))
    assert torch.equal(none, F.rmia_scores(tx, rx, tz, rz, gamma=gamma, strict=strict))


def test_rmia_offline_mask_equals_passing_only_out_references():
    tx, rx = _signals(50, 4, 3)
    tz, rz = _signals(80, 4, 4)
    mask_x = torch.zeros(4, 50, dtype=torch.bool)
    mask_x[2:] = True  # models 2, 3 are OUT for every x
    a = F.rmia_scores(tx, rx, tz, rz, offline_a=0.3, ref_x_mask=mask_x)
    b = F.rmia_scores(tx, rx[2:], tz, rz, offline_a=0.3)
    assert torch.equal(a, b)


def test_rmia_trimmed_mean_matches_scipy():
    from scipy.stats import trim_mean

    tx, rx = _signals(40, 10, 6)
    tz, rz = _signals(50, 10, 7)
    got = F.reference_mean(rx, proportiontocut=0.2)
    np.testing.assert_allclose(got.numpy(), trim_mean(rx.double().numpy(), 0.2, axis=0), rtol=1e-12)
    fast = F.rmia_scores(tx, rx, tz, rz, proportiontocut=0.2)
    assert torch.equal(fast, F.rmia_scores_bruteforce(tx, rx, tz, rz, proportiontocut=0.2))
    pr_x, pr_z = trim_mean(rx.double().numpy(), 0.2, axis=0), trim_mean(rz.double().numpy(), 0.2, axis=0)
    ratio_x, ratio_z = tx.double().numpy() / pr_x, tz.double().numpy() / pr_z
    expect = (ratio_x[:, None] / ratio_z[None, :] > 2.0).mean(1)  # the default gamma
    np.testing.assert_allclose(fast.numpy(), expect, rtol=1e-6)
    with pytest.raises(ValueError, match="proportiontocut"):
        F.rmia_scores(tx, rx, tz, rz, proportiontocut=0.5)


def test_rmia_hand_example_and_monotone_in_ratio():
    tx = torch.tensor([0.9, 0.1, 0.5])
    rx = torch.full((2, 3), 0.5)
    tz = torch.tensor([0.2, 0.4, 0.6, 0.8])
    rz = torch.full((2, 4), 0.5)
    # ratios x: 1.8, 0.2, 1.0; z: 0.4, 0.8, 1.2, 1.6 -> gamma = 1: counts of z below: 4, 0, 2
    assert F.rmia_scores(tx, rx, tz, rz, gamma=1.0).tolist() == [1.0, 0.0, 0.5]
    # gamma = 2 (the default): thresholds 0.9, 0.1, 0.5 -> 2, 0, 1
    assert F.rmia_scores(tx, rx, tz, rz, gamma=2.0).tolist() == [0.5, 0.0, 0.25]
    assert F.rmia_scores(tx, rx, tz, rz).tolist() == [0.5, 0.0, 0.25]


def test_rmia_invalid_inputs():
    tx, rx = _signals(10, 2, 0)
    tz, rz = _signals(12, 2, 1)
    with pytest.raises(ValueError, match="gamma"):
        F.rmia_scores(tx, rx, tz, rz, gamma=0)
    with pytest.raises(ValueError, match="gamma"):
        F.rmia_scores(tx, rx, tz, rz, gamma=-1.0)
    with pytest.raises(ValueError, match="offline_a"):
        F.rmia_scores(tx, rx, tz, rz, offline_a=1.5)
    with pytest.raises(ValueError, match="offline_a"):
        F.rmia_scores(tx, rx, tz, rz, offline_a=-0.1)
    with pytest.raises(ValueError, match=r"ref_x must have shape \(R, 10\)"):
        F.rmia_scores(tx, rx[:, :9], tz, rz)
    with pytest.raises(ValueError, match="target_z is empty"):
        F.rmia_scores(tx, rx, tz[:0], rz[:, :0])
    with pytest.raises(ValueError, match="non-negative"):
        F.rmia_scores(tx - 1, rx, tz, rz)
    with pytest.raises(ValueError, match="non-finite"):
        F.rmia_scores(tx, rx, tz * float("nan"), rz)
    with pytest.raises(ValueError, match="selects no reference"):
        F.rmia_scores(tx, rx, tz, rz, ref_x_mask=torch.zeros(2, 10, dtype=torch.bool))


# ----------------------------------------------------------------------------- SVC MIA
def test_modified_entropy_hand_row_and_legacy_bug():
    p = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]], dtype=torch.float64)
    y = torch.tensor([0, 2])
    row0 = -(0.3 * math.log(0.7)) - 0.2 * math.log(0.8) - 0.1 * math.log(0.9)
    row1 = -(0.7 * math.log(0.3)) - 0.1 * math.log(0.9) - 0.6 * math.log(0.4)
    np.testing.assert_allclose(F.modified_entropy(p, y).numpy(), [row0, row1], rtol=1e-12)
    # the published code: weights (1 - p_i) on columns {0, 2} (labels present), p_i on column 1; log p everywhere
    leg0 = -(0.3 * math.log(0.7) + 0.2 * math.log(0.2) + 0.9 * math.log(0.1))
    leg1 = -(0.9 * math.log(0.1) + 0.6 * math.log(0.6) + 0.7 * math.log(0.3))
    np.testing.assert_allclose(F.modified_entropy(p, y, legacy_m_entropy=True).numpy(), [leg0, leg1], rtol=1e-12)


def test_legacy_m_entropy_ignores_the_label_when_all_classes_present():
    p, y = _probs(40, 4, 0)
    y = torch.arange(40) % 4
    a = F.modified_entropy(p, y, legacy_m_entropy=True)
    b = F.modified_entropy(p, (y + 1) % 4, legacy_m_entropy=True)
    assert torch.allclose(a, b)
    expect = -((1 - p) * torch.log(p)).sum(1)
    assert torch.allclose(a, expect)
    assert not torch.allclose(F.modified_entropy(p, y), F.modified_entropy(p, (y + 1) % 4))


def test_entropy_matches_scipy():
    from scipy.stats import entropy as sp_entropy

    p, _ = _probs(30, 5, 1)
    np.testing.assert_allclose(F.entropy(p).numpy(), sp_entropy(p.numpy(), axis=1), rtol=1e-10)


def _np_features(p: np.ndarray, y: np.ndarray, feature: str) -> np.ndarray:
    r = np.arange(len(y))
    if feature == "correctness":
        return (p.argmax(1) == y).astype(float)[:, None]
    if feature == "confidence":
        return p[r, y][:, None]
    if feature == "entropy":
        return -(p * np.log(np.maximum(p, 1e-30))).sum(1)[:, None]
    if feature == "m_entropy":
        lp, l1p = np.log(np.maximum(p, 1e-30)), np.log(np.maximum(1 - p, 1e-30))
        mask = np.zeros_like(p, dtype=bool)
        mask[r, y] = True
        return (-(1 - p[r, y]) * lp[r, y] - np.where(mask, 0.0, p * l1p).sum(1))[:, None]
    return p


@pytest.mark.parametrize("feature", ["correctness", "confidence", "entropy", "m_entropy", "prob"])
def test_mia_efficacy_matches_sklearn_svc(feature):
    from sklearn.svm import SVC

    p_in, y_in = _probs(120, 4, 10, scale=5.0)  # confident (member-like)
    p_out, y_out = _probs(100, 4, 11, scale=1.0)
    p_t, y_t = _probs(80, 4, 12, scale=2.0)
    got = F.mia_efficacy(p_in, y_in, p_out, y_out, p_t, y_t, feature=feature)
    fin, fout, ft = (_np_features(p.numpy(), y.numpy(), feature) for p, y in ((p_in, y_in), (p_out, y_out), (p_t, y_t)))
    clf = SVC(C=3, kernel="rbf", gamma="auto").fit(np.concatenate([fin, fout]), np.r_[np.ones(120), np.zeros(100)])
    expect = 100.0 * (1 - clf.predict(ft).mean())
    assert got == pytest.approx(expect, abs=1e-9)
    assert 0.0 <= got <= 100.0


def test_mia_efficacy_invalid_inputs():
    p, y = _probs(10, 3, 0)
    with pytest.raises(ValueError, match="probabilities in"):
        F.mia_efficacy(p * 2, y, p, y, p, y)
    with pytest.raises(ValueError, match="must lie in"):
        F.mia_efficacy(p, y + 3, p, y, p, y)
    with pytest.raises(ValueError, match="empty"):
        F.mia_efficacy(p, y, p[:0], y[:0], p, y)
    with pytest.raises(ValueError, match="feature"):
        F.mia_efficacy(p, y, p, y, p, y, feature="loss")
    with pytest.raises(ValueError, match="entries"):
        F.mia_efficacy(p, y[:5], p, y, p, y)
    with pytest.raises(ValueError, match="classes"):
        F.mia_efficacy(p, y, p[:, :2] / p[:, :2].sum(1, keepdim=True), y.clamp(max=1), p, y)


def test_select_shadow_members_is_order_free_seeded_and_first():
    idx = torch.tensor([50, 3, 17, 9, 41, 22, 8, 30])
    a = F.select_shadow_members(idx, 4, seed=3)
    perm = torch.tensor([7, 6, 5, 4, 3, 2, 1, 0])
    b = F.select_shadow_members(idx[perm], 4, seed=3)
    assert set(idx[a].tolist()) == set(idx[perm][b].tolist())  # depends on the index set, not the order
    assert len(set(a.tolist())) == 4
    assert torch.equal(a, F.select_shadow_members(idx, 4, seed=3))  # seeded
    draws = {tuple(idx[F.select_shadow_members(idx, 4, seed=s)].sort().values.tolist()) for s in range(10)}
    assert len(draws) > 1  # the seed matters
    assert idx[F.select_shadow_members(idx, 3, shadow_member_strategy="first")].tolist() == [3, 8, 9]
    with pytest.raises(ValueError, match="n_members"):
        F.select_shadow_members(idx, 9)
    with pytest.raises(ValueError, match="shadow_member_strategy"):
        F.select_shadow_members(idx, 2, shadow_member_strategy="last")


# ----------------------------------------------------------------------------- MIA-NN
def _gauss(n, shift, seed, dim=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g, dtype=torch.float64) + shift


def test_mia_nn_identical_distributions_is_chance():
    # 500 per label after balancing: the spread of the 15-fold mean AUC is then about 1.5 points
    x = torch.cat([_gauss(700, 0.0, 1), _gauss(500, 0.0, 2)])
    y = torch.cat([torch.ones(700), torch.zeros(500)]).long()
    out = F.mia_nn(x, y)
    assert abs(out["auc"] - 50.0) <= 3.0, out
    assert set(out) == {"auc", "acc", "auc_std", "acc_std"}


def test_mia_nn_shifted_distributions_are_detected():
    x = torch.cat([_gauss(300, 2.5, 1), _gauss(200, 0.0, 2)])
    y = torch.cat([torch.ones(300), torch.zeros(200)]).long()
    for clf in ("svc", "logistic"):
        out = F.mia_nn(x, y, classifier=clf, n_repeats=2)
        assert out["auc"] > 90.0 and out["acc"] > 80.0, (clf, out)


@pytest.mark.parametrize("classifier", ["svc", "logistic"])
def test_mia_nn_equals_sklearn_cross_val_score(classifier):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    x = torch.cat([_gauss(90, 0.7, 3), _gauss(60, 0.0, 4)])
    y = torch.cat([torch.ones(90), torch.zeros(60)]).long()
    out = F.mia_nn(x, y, classifier=classifier, n_repeats=2, seed=7)
    aucs, accs = [], []
    for s in (7, 8):
        gen = torch.Generator().manual_seed(s)
        keep1 = np.sort(np.arange(90)[torch.randperm(90, generator=gen)[:60].numpy()])
        pos = np.concatenate([keep1, 90 + np.arange(60)])
        xs, ys = x.numpy()[pos], y.numpy()[pos]
        est = make_pipeline(StandardScaler(), SVC(C=3, kernel="rbf", gamma="auto") if classifier == "svc" else LogisticRegression(max_iter=1000))
        cv = StratifiedKFold(5, shuffle=True, random_state=s)
        aucs += list(cross_val_score(est, xs, ys, cv=cv, scoring="roc_auc"))
        accs += list(cross_val_score(est, xs, ys, cv=cv, scoring="accuracy"))
    assert out["auc"] == pytest.approx(100 * np.mean(aucs), abs=1e-9)
    assert out["acc"] == pytest.approx(100 * np.mean(accs), abs=1e-9)
    assert out["auc_std"] == pytest.approx(100 * np.std(aucs, ddof=1), abs=1e-9)


def test_mia_nn_selects_probability_columns_and_neighbors():
    # reference models put forget-class (2) inputs mostly on class 0, then class 3
    ref = torch.tensor([[0.6, 0.1, 0.0, 0.3], [0.5, 0.1, 0.05, 0.35]], dtype=torch.float64)
    ref_probs = torch.stack([ref, ref.flip(0)])  # (R=2, N=2, C=4)
    assert F.mia_nn_neighbors(ref_probs, 2, k=2).tolist() == [0, 3]
    assert F.mia_nn_neighbors(ref_probs, 0, k=1).tolist() == [3]
    lo = torch.stack([ref, torch.tensor([[0.1, 0.2, 0.0, 0.7]] * 2, dtype=torch.float64)])
    assert F.mia_nn_neighbors(lo, 2, k=1, leave_out=1).tolist() == [0]
    assert F.mia_nn_neighbors(lo, 2, k=1, leave_out=0).tolist() == [3]
    p, _ = _probs(60, 4, 5)
    y = (torch.arange(60) % 2).long()
    a = F.mia_nn(p, y, neighbors=[0, 3], forget_class=2, n_repeats=1)
    b = F.mia_nn(p[:, [0, 3, 2]], y, n_repeats=1)
    assert a == b
    feats = F.mia_nn_features(torch.log(p), [0], 2, feature="prob")
    np.testing.assert_allclose(feats.numpy(), p[:, [0, 2]].numpy(), rtol=1e-10)


def test_mia_nn_errors_and_constant_warning():
    x = _gauss(20, 0.0, 0)
    with pytest.raises(ValueError, match="at least n_splits=5 samples per label"):
        F.mia_nn(x, torch.tensor([1] * 16 + [0] * 4))
    with pytest.raises(ValueError, match="binary"):
        F.mia_nn(x, torch.arange(20) % 3)
    with pytest.raises(ValueError, match="classifier"):
        F.mia_nn(x, torch.arange(20) % 2, classifier="tree")
    with pytest.raises(ValueError, match="k must lie"):
        F.mia_nn_neighbors(torch.full((3, 4), 0.25), 0, k=4)
    with pytest.raises(ValueError, match="forget_class"):
        F.mia_nn_neighbors(torch.full((3, 4), 0.25), 4)
    with pytest.warns(UserWarning, match="constant"):
        out = F.mia_nn(torch.ones(20, 2), torch.arange(20) % 2)
    assert out["auc"] == 50.0


# ----------------------------------------------------------------------------- FADE / symmetric KL
def test_symmetric_kl_matches_numpy_is_symmetric_and_zero_on_identical():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(25, 6, generator=g) * 3, torch.randn(25, 6, generator=g) * 3
    pa, pb = _np_softmax(a.double().numpy()), _np_softmax(b.double().numpy())
    ref = (pa * np.log(pa / pb)).sum(1) + (pb * np.log(pb / pa)).sum(1)
    np.testing.assert_allclose(F.symmetric_kl(a, b).numpy(), ref, rtol=1e-10)
    assert torch.allclose(F.symmetric_kl(a, b), F.symmetric_kl(b, a))
    assert torch.all(F.symmetric_kl(a, a) == 0)
    # stable where a class underflows in one model (retrained model on the forgotten class)
    c = b.clone()
    c[:, 0] = -200.0
    assert torch.isfinite(F.symmetric_kl(a, c)).all()
    assert F.fade(a, torch.stack([a, a])) == 0.0
    assert F.fade(a, [b, c]) == pytest.approx(0.5 * (ref.mean() + F.symmetric_kl(a, c).mean().item()), rel=1e-10)
    assert F.fade_noise_floor([b, b, b]) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        F.symmetric_kl(a, b[:, :5])


# ----------------------------------------------------------------------------- ROC
def test_roc_auc_and_tpr_match_sklearn_including_ties_and_large_scores():
    from sklearn.metrics import roc_auc_score, roc_curve

    g = torch.Generator().manual_seed(0)
    labels = (torch.rand(2000, generator=g) < 0.4).long()
    scores = torch.randn(2000, generator=g, dtype=torch.float64) + labels * 0.8
    scores = (scores * 5).round() / 5  # ties
    for s in (scores, 40 + 3 * scores):  # large values would saturate a sigmoid in float32
        # torchmetrics integrates in float32: agreement to ~1e-7 relative
        assert F.roc_auc(s, labels) == pytest.approx(100 * roc_auc_score(labels.numpy(), s.numpy()), abs=1e-4)
        fpr, tpr, _ = roc_curve(labels.numpy(), s.numpy(), drop_intermediate=False)
        n_neg = int((labels == 0).sum())
        for alpha in (0.0, 0.001, 0.01, 0.1, 17 / n_neg):  # 17 / n_neg: exactly on an ROC point
            expect = 100 * tpr[fpr <= alpha].max()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                assert F.tpr_at_fpr(s, labels, fpr=alpha) == pytest.approx(expect, abs=1e-9)
            # 0.1% of ~1200 negatives is ~1 false positive: warned as high-variance
            assert bool(caught) == (0 < alpha * n_neg < 10)


def test_roc_invalid_inputs():
    with pytest.raises(ValueError, match="both classes"):
        F.roc_auc(torch.rand(5), torch.ones(5, dtype=torch.long))
    with pytest.raises(ValueError, match="binary"):
        F.roc_auc(torch.rand(5), torch.tensor([0, 1, 2, 0, 1]))
    with pytest.raises(ValueError, match="entries"):
        F.roc_auc(torch.rand(5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="fpr"):
        F.tpr_at_fpr(torch.rand(4), torch.tensor([0, 1, 0, 1]), fpr=5)


# ----------------------------------------------------------------------------- Avg. Gap
def test_avg_gap_hand_example_and_errors():
    # a check from the AMUN paper's Table 1 (docs/metrics.md, section 3): AMUN 10% with D_R, gap terms 0.96 + 0.43 + 0.88 + 0.18 -> 0.6125
    m = {"ua": 94.49 + 0.96, "ra": 100.0 - 0.43, "ta": 94.33 - 0.88, "mia": 50.00 + 0.18}
    r = {"ua": 94.49, "ra": 100.0, "ta": 94.33, "mia": [49.9, 50.1]}
    assert F.avg_gap(m, r) == pytest.approx(0.6125, abs=1e-9)
    assert F.avg_gap(m, r, keys=("ua",)) == pytest.approx(0.96, abs=1e-9)
    with pytest.raises(KeyError, match="mia"):
        F.avg_gap({"ua": 1, "ra": 1, "ta": 1}, r)
