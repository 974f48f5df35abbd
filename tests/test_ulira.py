"""U-LiRA: the statistic, the Gaussian fits, the likelihood-ratio scores and the metric.

References: hand computations and ``scipy.stats.norm`` on fixed Gaussians, numpy's ``nanmean`` /
``nanstd`` for the fits, scikit-learn for balanced accuracy and AUC, synthetic worlds with a known
answer (unlearned = retrained -> 50%, not unlearned -> far above), and one process against two.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from helpers import spawn_gloo
from scipy.stats import norm
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from test_metrics_classes import shard_with_padding

from lightning_unlearn.metrics import ULiRA
from lightning_unlearn.metrics import functional as F
from lightning_unlearn.metrics.functional.ulira import PER_EXAMPLE_MIN_OBSERVATIONS, _ulira_compute

NAN = float("nan")
pytestmark = pytest.mark.filterwarnings("ignore::lightning_unlearn.metrics.functional.LowFPRVarianceWarning")


# ----------------------------------------------------------------------------- the statistic φ
def test_logit_confidence_is_log_odds_of_the_true_class():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 50, 7, generator=g, dtype=torch.float64) * 3
    labels = torch.randint(0, 7, (50,), generator=g)
    p = torch.softmax(logits, -1)[..., torch.arange(50), labels]
    assert torch.allclose(F.logit_confidence(logits, labels), torch.log(p / (1 - p)), atol=1e-9)
    assert F.logit_confidence(logits.float(), labels).shape == (3, 50)


def test_logit_confidence_is_finite_where_one_minus_p_underflows():
    logits = torch.tensor([[100.0, 0.0, 0.0], [0.0, -200.0, -200.0]])
    phi = F.logit_confidence(logits, torch.tensor([0, 0]))
    # z_y - logsumexp(others): 100 - log 2 and 0 - (-200 + log 2)
    assert torch.allclose(phi, torch.tensor([100 - np.log(2), 200 - np.log(2)], dtype=torch.float64))
    naive = torch.softmax(logits.double(), -1)[:, 0]
    assert torch.isinf(torch.log(naive / (1 - naive))).all()  # what the formula avoids


def test_logit_confidence_rejects_bad_input():
    with pytest.raises(ValueError, match="K >= 2"):
        F.logit_confidence(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\)"):
        F.logit_confidence(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="non-finite"):
        F.logit_confidence(torch.tensor([[NAN, 0.0]]), torch.tensor([0]))


# ----------------------------------------------------------------------------- the fits
def shadow_obs(seed=0, s=6, p=30, gap=0.4):
    """(S, P) observations with nan gaps (each example seen by some shadows)."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(s, p, generator=g, dtype=torch.float64) + torch.linspace(-2, 2, p, dtype=torch.float64)
    obs[torch.rand(s, p, generator=g) < gap] = NAN
    obs[:2, :] = torch.randn(2, p, generator=g, dtype=torch.float64)  # at least 2 observations everywhere
    return obs


def test_per_example_fit_equals_numpy_nan_statistics():
    u, r = shadow_obs(0), shadow_obs(1) - 1.0
    fit = F.ulira_fit(u, r, variance="per_example")
    worlds = ((u, fit.mean_unlearned, fit.std_unlearned, fit.count_unlearned), (r, fit.mean_retrained, fit.std_retrained, fit.count_retrained))
    for obs, mean, std, count in worlds:
        a = obs.numpy()
        np.testing.assert_allclose(mean.numpy(), np.nanmean(a, 0), rtol=1e-12)
        np.testing.assert_allclose(std.numpy(), np.nanstd(a, 0, ddof=1), rtol=1e-12)
        assert torch.equal(count, (~torch.isnan(obs)).sum(0))
    assert fit.variance == "per_example" and bool(fit.fitted.all())


def test_global_fit_pools_the_within_example_variance():
    u, r = shadow_obs(2), shadow_obs(3)
    fit = F.ulira_fit(u, r, variance="global")
    for obs, std in ((u, fit.std_unlearned), (r, fit.std_retrained)):
        a = obs.numpy()
        resid = a - np.nanmean(a, 0)  # residuals about each example's own mean
        dof = (np.sum(~np.isnan(a), 0) - 1).sum()
        pooled = np.sqrt(np.nansum(resid**2) / dof)
        np.testing.assert_allclose(std.numpy(), np.full(a.shape[1], pooled), rtol=1e-12)
        assert pooled < np.nanstd(a)  # not LiRA's reference code's spread over all values


def test_auto_variance_switches_at_64_observations_per_world():
    g = torch.Generator().manual_seed(0)
    n = PER_EXAMPLE_MIN_OBSERVATIONS
    many = torch.randn(n, 5, generator=g, dtype=torch.float64)
    assert F.ulira_fit(many, many + 1).variance == "per_example"
    fewer = many.clone()
    fewer[0, 3] = NAN  # one example with 63 unlearned observations
    assert F.ulira_fit(fewer, many + 1).variance == "global"
    assert F.ulira_fit(many, many[:-1] + 1).variance == "global"


def test_fit_rejects_what_it_cannot_fit():
    u = torch.tensor([[1.0, NAN], [2.0, NAN]])
    r = torch.tensor([[NAN, 1.0], [NAN, 2.0]])
    with pytest.raises(ValueError, match="no example has observations in both worlds"):
        F.ulira_fit(u, r)
    with pytest.raises(ValueError, match="per_example.*1 .*pool index 1"):
        F.ulira_fit(torch.tensor([[1.0, 2.0], [3.0, NAN]]), torch.ones(2, 2), variance="per_example")
    with pytest.raises(ValueError, match="pooled variance needs .*unlearned"):
        F.ulira_fit(torch.tensor([[1.0, 2.0]]), torch.ones(2, 2))
    with pytest.raises(ValueError, match="variance must be one of"):
        F.ulira_fit(torch.ones(2, 2), torch.ones(2, 2), variance="pooled")
    with pytest.raises(ValueError, match="infinite"):
        F.ulira_fit(torch.tensor([[float("inf"), 1.0], [1.0, 1.0]]), torch.ones(2, 2))
    with pytest.raises(ValueError, match="disagree in length"):
        F.ulira_fit(torch.ones(2, 3), torch.ones(2, 2))
    with pytest.raises(ValueError, match="min_std"):
        F.ulira_fit(torch.ones(2, 2), torch.ones(2, 2), min_std=0.0)


def test_a_zero_spread_is_floored_to_min_std():
    fit = F.ulira_fit(torch.ones(3, 2), torch.zeros(3, 2), variance="per_example", min_std=0.01)
    assert torch.equal(fit.std_unlearned, torch.full((2,), 0.01, dtype=torch.float64))


# ----------------------------------------------------------------------------- the scores
def two_point(mean: float, std: float) -> list[float]:
    """Two observations whose mean and unbiased std are exactly ``mean`` and ``std``."""
    return [mean - std / np.sqrt(2), mean + std / np.sqrt(2)]


def test_scores_match_a_hand_computation_on_fixed_gaussians():
    # example 0: unlearned N(2, 1), retrained N(0, 0.5²); example 1: unlearned N(-1, 2²), retrained N(1, 2²)
    u = torch.tensor([two_point(2.0, 1.0), two_point(-1.0, 2.0)], dtype=torch.float64).T
    r = torch.tensor([two_point(0.0, 0.5), two_point(1.0, 2.0)], dtype=torch.float64).T
    phi = torch.tensor([1.0, 1.0, 0.0])
    index = torch.tensor([0, 0, 1])
    scores = F.ulira_scores(u, r, phi, index, variance="per_example")
    # by hand: at φ = 1 on example 0, -(1-2)²/2 - log 1 - [-(1-0)²/(2·0.25) - log 0.5] = -0.5 + 2 + log 0.5
    hand = torch.tensor([1.5 + np.log(0.5), 1.5 + np.log(0.5), (-(1.0**2) + 1.0**2) / 8], dtype=torch.float64)
    assert torch.allclose(scores, hand, atol=1e-12)
    ref = norm.logpdf([1, 1, 0], [2, 2, -1], [1, 1, 2]) - norm.logpdf([1, 1, 0], [0, 0, 1], [0.5, 0.5, 2])
    np.testing.assert_allclose(scores.numpy(), ref, atol=1e-12)


def test_compute_equals_sklearn_and_thresholds_at_a_likelihood_ratio_of_one():
    g = torch.Generator().manual_seed(4)
    scores = torch.randn(200, generator=g, dtype=torch.float64)
    scores[:5] = 0.0  # exactly at LR = 1: said "retrained"
    y = (torch.rand(200, generator=g) < 0.3).long()  # unbalanced on purpose
    out = _ulira_compute(scores, y, (0.05,))
    assert out["balanced_accuracy"] == pytest.approx(100 * balanced_accuracy_score(y.numpy(), (scores > 0).numpy()), abs=1e-9)
    assert out["auc"] == pytest.approx(100 * roc_auc_score(y.numpy(), scores.numpy()), abs=1e-4)
    assert set(out) == {"balanced_accuracy", "auc", "tpr@0.05"}
    with pytest.raises(ValueError, match="both worlds"):
        _ulira_compute(scores, torch.ones(200))


def test_scores_refuse_records_without_shadow_observations():
    u = torch.tensor([[1.0, NAN], [2.0, NAN]])
    r = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="no shadow observation.*pool index \\[1\\]"):
        F.ulira_scores(u, r, torch.tensor([0.0, 0.0]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"index must lie in \[0, 2\)"):
        F.ulira_scores(u, r, torch.tensor([0.0]), torch.tensor([2]))


# ----------------------------------------------------------------------------- sanity worlds
def world(shift: float, *, seed=0, examples=300, shadows=16, targets=8):
    """Synthetic φ: example x has a retrained mean μ(x) ~ N(0, 2²) and unit noise; the method under
    audit leaves φ ``shift`` above it. Each example is forgotten by half the shadows (and targets)."""
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(examples, generator=g, dtype=torch.float64) * 2

    def draw(n, extra):
        return mu + extra + torch.randn(n, examples, generator=g, dtype=torch.float64)

    def forget_sets(n):
        return torch.rand(n, examples, generator=g) < 0.5

    fs = forget_sets(shadows)
    su = torch.where(fs, draw(shadows, shift), torch.full((shadows, examples), NAN, dtype=torch.float64))
    sr = torch.where(fs, draw(shadows, 0.0), torch.full((shadows, examples), NAN, dtype=torch.float64))
    fu = forget_sets(targets)  # a target pair is scored on its forget set, in both worlds
    tu, tr = draw(targets, shift), draw(targets, 0.0)
    idx = torch.arange(examples).expand(targets, -1)
    target = torch.arange(targets)[:, None].expand(-1, examples)
    phi = torch.cat([tu[fu], tr[fu]])
    index = torch.cat([idx[fu], idx[fu]])
    unlearned = torch.cat([torch.ones(int(fu.sum())), torch.zeros(int(fu.sum()))]).bool()
    model = torch.cat([target[fu], target[fu] + targets])  # target j: unlearned model j, retrained model targets + j
    return su, sr, phi, index, unlearned, model


def test_unlearned_like_retrained_gives_chance():
    out = F.ulira(*world(0.0)[:5], tpr_fprs=(0.01,))
    assert abs(out["balanced_accuracy"] - 50) < 3 and abs(out["auc"] - 50) < 4


def test_not_unlearned_is_detected():
    out = F.ulira(*world(2.0)[:5], tpr_fprs=(0.01,))  # e.g. the originals: φ 2 logits above retrained
    # two unit Gaussians 2 apart: the Bayes accuracy is Φ(1) = 84%; the fit from 8 shadows per world costs little
    assert 80 < out["balanced_accuracy"] < 86 and out["auc"] > 88 and out["tpr@0.01"] > 10
    weaker = F.ulira(*world(0.5)[:5], tpr_fprs=())
    assert 50 < weaker["balanced_accuracy"] < out["balanced_accuracy"]


# ----------------------------------------------------------------------------- the metric
def metric_setup(seed=0):
    """A synthetic world as logits (z = [φ, 0], label 0, so that φ is exact) of 4 target pairs."""
    su, sr, phi, index, unlearned, model = world(1.5, seed=seed, examples=80, shadows=8, targets=4)
    logits = torch.stack([phi, torch.zeros_like(phi)], 1).float()
    return su, sr, logits, torch.zeros(len(phi), dtype=torch.long), index, unlearned, model


def test_metric_equals_functional_over_batches_with_duplicates():
    su, sr, logits, labels, index, unlearned, model = metric_setup()
    want = F.ulira(su, sr, F.logit_confidence(logits, labels), index, unlearned)
    m = ULiRA(su, sr)
    positions = torch.cat([torch.randperm(len(index), generator=torch.Generator().manual_seed(0)), torch.arange(17)])  # 17 repeated
    for start in range(0, len(positions), 23):
        p = positions[start : start + 23]
        m.update(logits[p], labels[p], index[p], unlearned=unlearned[p], model_id=model[p])
    got = m.compute()
    assert all(v.dtype == torch.float32 for v in got.values())
    assert {k: float(v) for k, v in got.items()} == pytest.approx({k: float(torch.tensor(v, dtype=torch.float32)) for k, v in want.items()})
    assert len(m.last_scores["score"]) == len(index)  # the 17 duplicates were dropped
    # a repeated (model, index) with another world or other logits is refused
    m.update(logits[:1], labels[:1], index[:1], unlearned=~unlearned[:1], model_id=model[:1])
    with pytest.raises(ValueError, match="both unlearned and retrained"):
        m.compute()
    m.reset()
    m.update(logits[:2], labels[:2], index[:2], unlearned=True, model_id=0)
    m.update(logits[:1] + torch.tensor([[1.0, 0.0]]), labels[:1], index[:1], unlearned=True, model_id=0)
    with pytest.raises(ValueError, match="recorded twice with different"):
        m.compute()


def test_metric_keeps_records_of_different_models_apart():
    su, sr, logits, labels, index, unlearned, model = metric_setup()
    pos = torch.nonzero(unlearned).flatten()
    m = ULiRA(su, sr, tpr_fprs=())
    m.update(logits, labels, index, unlearned=unlearned, model_id=model)
    m.update(logits[pos], labels[pos], index[pos], unlearned=True, model_id=model[pos] + 100)  # other models, same examples
    m.compute()
    assert len(m.last_scores["score"]) == len(index) + len(pos)  # counted, not taken for padding duplicates
    assert torch.equal(torch.unique(m.last_scores["model"]), torch.cat([torch.arange(8), torch.arange(100, 104)]))


def test_metric_rejects_bad_updates():
    su, sr, logits, labels, index, _, _ = metric_setup()
    m = ULiRA(su, sr)
    with pytest.raises(ValueError, match="outside the shadow statistics"):
        m.update(logits[:1], labels[:1], torch.tensor([su.shape[1]]), unlearned=True)
    with pytest.raises(ValueError, match="unlearned must be"):
        m.update(logits[:2], labels[:2], index[:2], unlearned=torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="model_id must be non-negative"):
        m.update(logits[:1], labels[:1], index[:1], unlearned=True, model_id=-1)
    with pytest.raises(ValueError, match="before any update"):
        m.compute()
    holes = su.clone()
    holes[:, 3] = NAN
    m = ULiRA(holes, sr)
    m.update(logits[:1], labels[:1], torch.tensor([3]), unlearned=True)
    m.update(logits[:1], labels[:1], torch.tensor([4]), unlearned=False, model_id=1)
    with pytest.raises(ValueError, match="no shadow observation.*\\[3\\]"):
        m.compute()
    with pytest.raises(ValueError, match="tpr_fprs"):
        ULiRA(su, sr, tpr_fprs=(5.0,))


def test_metric_flags():
    assert ULiRA.full_state_update is False and ULiRA.is_differentiable is False and ULiRA.higher_is_better is None


# ----------------------------------------------------------------------------- 1 process vs 2 (gloo)
def _ddp_worker(rank: int, world: int, out_dir: str) -> None:
    su, sr, logits, labels, index, unlearned, model = metric_setup()
    m = ULiRA(su, sr, check_ranks_agree=True)
    positions = shard_with_padding(len(index), rank, world)
    step = 19 + 6 * rank  # different batch counts per rank
    for start in range(0, len(positions), step):
        p = positions[start : start + step]
        m.update(logits[p], labels[p], index[p], unlearned=unlearned[p], model_id=model[p])
    torch.save({k: float(v) for k, v in m.compute().items()}, os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.mark.ddp
def test_metric_ddp_two_processes_equal_single_process(tmp_path):
    su, sr, logits, labels, index, unlearned, model = metric_setup()
    spawn_gloo(_ddp_worker, str(tmp_path))
    single = ULiRA(su, sr)
    single.update(logits, labels, index, unlearned=unlearned, model_id=model)
    want = {k: float(v) for k, v in single.compute().items()}
    for r in (0, 1):
        assert torch.load(tmp_path / f"rank{r}.pt") == want  # bit-identical: the same records, sorted, on every rank
