"""``stats.gap_reduction`` (a claim's relative gap reduction against the best prior method) against hand
computations, exact enumeration of every resample, and ``scipy.stats.bootstrap`` with a paired statistic."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.stats

from lightning_unlearn.stats import gap_reduction

# forget-set values of three methods (one original: one row), a claimant a bit below the best prior
CLAIMANT = np.array([[2.1, 3.9, 1.2, 5.5, 2.8, 4.0, 3.1, 2.2]])
PRIORS = {"ga": np.array([[2.9, 4.1, 2.0, 6.0, 3.0, 4.9, 3.3, 2.5]]), "ft": np.array([[3.5, 3.8, 3.1, 7.2, 2.6, 5.2, 4.4, 3.0]])}


def test_point_estimate_and_best_prior_by_hand():
    r = gap_reduction(("trw", CLAIMANT), PRIORS)
    best = min(PRIORS, key=lambda m: PRIORS[m].mean())
    assert r.best_prior == best == "ga"
    assert r.reduction == pytest.approx(1 - CLAIMANT.mean() / PRIORS["ga"].mean())
    assert (r.gap_claimant, r.gap_best_prior, r.n, r.unit) == (pytest.approx(CLAIMANT.mean()), pytest.approx(PRIORS["ga"].mean()), 8, "forget_set")
    assert r.low < r.reduction < r.high and r.undefined == 0


def test_a_constant_ratio_has_a_zero_width_interval_in_every_unit():
    prior = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 1.0]])
    for unit in ("forget_set", "original", "cell", "two_way_bootstrap"):
        r = gap_reduction(("trw", 0.81 * prior), {"ga": prior, "ft": prior + 1.0}, unit=unit, resamples=500)
        assert (r.reduction, r.low, r.high) == (pytest.approx(0.19), pytest.approx(0.19), pytest.approx(0.19)), unit


def test_paired_bootstrap_matches_scipy_with_the_best_prior_chosen_in_each_resample():
    def statistic(c, ga, ft, axis=-1):
        return 1.0 - np.mean(c, axis=axis) / np.minimum(np.mean(ga, axis=axis), np.mean(ft, axis=axis))

    data = (CLAIMANT[0], PRIORS["ga"][0], PRIORS["ft"][0])
    ref = scipy.stats.bootstrap(data, statistic, paired=True, vectorized=True, method="percentile", n_resamples=40_000, rng=np.random.default_rng(3))
    ours = gap_reduction(("trw", CLAIMANT), PRIORS, resamples=40_000, seed=0)
    assert ours.low == pytest.approx(ref.confidence_interval.low, abs=0.01)
    assert ours.high == pytest.approx(ref.confidence_interval.high, abs=0.01)


def test_the_bootstrap_distribution_is_the_exact_one_over_every_resample():
    """3 forget sets: 27 equally likely resamples; the bootstrap's quantiles are quantiles of their ratios."""
    c, a, b = np.array([[1.0, 2.0, 4.0]]), np.array([[2.0, 1.5, 5.0]]), np.array([[1.0, 3.0, 6.0]])
    ratios = []
    for idx in itertools.product(range(3), repeat=3):
        pick = list(idx)
        ratios.append(1.0 - c[0, pick].mean() / min(a[0, pick].mean(), b[0, pick].mean()))
    ratios = np.sort(ratios)
    r = gap_reduction(("x", c), {"a": a, "b": b}, resamples=200_000, seed=1)
    for q, got in ((0.025, r.low), (0.975, r.high)):
        exact = ratios[int(np.ceil(q * len(ratios))) - 1]
        assert got == pytest.approx(exact, abs=0.05), q


def test_resamples_without_a_positive_prior_gap_are_left_out_and_counted():
    r = gap_reduction(("x", [[1.0, 1.0]]), {"a": [[0.0, 2.0]]}, resamples=2_000, seed=0)
    assert r.undefined > 0 and r.reduction == pytest.approx(0.0)
    zero = gap_reduction(("x", [[1.0, 1.0]]), {"a": [[0.0, 0.0]]}, resamples=100)
    assert math.isnan(zero.reduction) and zero.to_dict()["reduction"] is None and zero.undefined == 100


def test_one_unit_has_no_interval():
    r = gap_reduction(("x", [[1.0]]), {"a": [[2.0]]})
    assert r.reduction == pytest.approx(0.5) and math.isnan(r.low) and r.to_dict()["low"] is None


@pytest.mark.parametrize(
    "claimant, priors, kwargs, match",
    [
        (("x", [[1.0, 2.0]]), {}, {}, "no prior method"),
        (("x", [[1.0, 2.0]]), {"a": [[1.0, 2.0, 3.0]]}, {}, "same"),
        (("x", [[1.0, -2.0]]), {"a": [[1.0, 2.0]]}, {}, "negative"),
        (("x", [[1.0, 2.0]]), {"a": [[1.0, 2.0]]}, {"unit": "fold"}, "unknown unit"),
        (("x", [[1.0, float("nan")]]), {"a": [[1.0, 2.0]]}, {}, "finite"),
    ],
)
def test_bad_input_is_named(claimant, priors, kwargs, match):
    with pytest.raises(ValueError, match=match):
        gap_reduction(claimant, priors, **kwargs)
