"""lightning_unlearn.stats against scipy.stats and hand computations.

References: ``scipy.stats.t`` (quantile, tail, interval), ``scipy.special.betainc``,
``scipy.stats.ttest_rel`` (the paired t interval), ``scipy.stats.bootstrap`` (one-way percentile
bootstrap), exact enumeration of every two-way bootstrap resample of small designs, and
designs whose answer is known by hand (equal cells, effects of one factor only).
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import scipy.special
import scipy.stats

from lightning_unlearn.stats import (
    PairedDifference,
    Summary,
    betainc,
    forget_set_means,
    noise_floor,
    original_means,
    paired_differences,
    summarize,
    summarize_cells,
    t_interval,
    t_quantile,
    t_sf,
    two_way_bootstrap,
    two_way_bootstrap_means,
    verdict,
)

# a fixed 3 originals × 4 forget sets design (Avg. Gap-like numbers), and a second method on the same cells
CELLS_A = np.array([[4.1, 6.3, 5.0, 7.7], [3.2, 5.9, 4.4, 8.1], [5.0, 7.4, 4.9, 6.6]])
CELLS_B = np.array([[5.0, 7.1, 6.2, 8.0], [4.4, 6.0, 5.1, 9.3], [5.2, 8.8, 6.0, 7.1]])


# ----------------------------------------------------------------------------- the t distribution
@pytest.mark.parametrize("df", [0.5, 1, 2, 3, 4.5, 7, 10, 29, 100, 1000])
def test_t_quantile_matches_scipy(df):
    ps = [1e-10, 1e-6, 1e-3, 0.025, 0.05, 0.3, 0.5, 0.7, 0.9, 0.975, 0.995, 1 - 1e-6, 1 - 1e-10]
    ours = np.array([t_quantile(p, df) for p in ps])
    np.testing.assert_allclose(ours, scipy.stats.t.ppf(ps, df), rtol=1e-12, atol=1e-15)


def test_t_quantile_closed_forms_and_large_df():
    assert t_quantile(0.75, 1) == pytest.approx(1.0, rel=1e-14)  # Cauchy: tan(pi/4)
    p = 0.975  # df = 2: t = (2p - 1) sqrt(2 / (1 - (2p - 1)^2))
    assert t_quantile(p, 2) == pytest.approx((2 * p - 1) * math.sqrt(2 / (1 - (2 * p - 1) ** 2)), rel=1e-13)
    assert t_quantile(0.975, 1e4) == pytest.approx(scipy.stats.t.ppf(0.975, 1e4), rel=1e-10)


def test_t_sf_and_betainc_match_scipy():
    for df in (1, 2.5, 9, 60):
        ts = np.array([-30.0, -2.0, -0.1, 0.0, 0.3, 1.96, 5.0, 80.0])
        np.testing.assert_allclose([t_sf(t, df) for t in ts], scipy.stats.t.sf(ts, df), rtol=1e-12, atol=1e-300)
    for a, b in itertools.product([0.5, 1.0, 2.5, 10.0, 300.0], [0.5, 1.0, 3.0, 50.0]):
        xs = np.linspace(0, 1, 23)
        np.testing.assert_allclose([betainc(a, b, x) for x in xs], scipy.special.betainc(a, b, xs), rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("call", [lambda: t_quantile(0.0, 3), lambda: t_quantile(1.0, 3), lambda: t_quantile(0.5, 0), lambda: t_quantile(0.5, math.inf)])
def test_t_quantile_rejects_bad_input(call):
    with pytest.raises(ValueError, match="must be"):
        call()


def test_betainc_rejects_bad_input():
    with pytest.raises(ValueError, match="x must be in"):
        betainc(1.0, 1.0, 1.5)
    with pytest.raises(ValueError, match="a must be positive"):
        betainc(0.0, 1.0, 0.5)


# ----------------------------------------------------------------------------- summarize
@pytest.mark.parametrize("values", [[2.0, 4.0], [1.5, 2.5, 9.0], list(np.linspace(-3, 11, 17) ** 2)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_summarize_matches_scipy_t_interval(values, confidence):
    s = summarize(values, unit="seed", method="amun", confidence=confidence)
    x = np.asarray(values)
    low, high = scipy.stats.t.interval(confidence, len(x) - 1, loc=x.mean(), scale=scipy.stats.sem(x))
    assert (s.mean, s.n, s.unit, s.method, s.confidence) == (pytest.approx(x.mean()), len(x), "seed", "amun", confidence)
    assert s.sd == pytest.approx(np.std(x, ddof=1), rel=1e-12)
    assert (s.low, s.high) == (pytest.approx(low, rel=1e-11), pytest.approx(high, rel=1e-11))
    assert t_interval(values, confidence=confidence) == (pytest.approx(low, rel=1e-11), pytest.approx(high, rel=1e-11))


def test_summarize_one_value_has_no_interval():
    s = summarize([3.5])
    assert s.mean == 3.5 and s.n == 1 and all(math.isnan(v) for v in (s.sd, s.low, s.high))


@pytest.mark.parametrize(
    "values,kwargs,match",
    [
        ([], {}, "non-empty 1-D"),
        ([[1.0, 2.0]], {}, "non-empty 1-D"),
        ([1.0, math.nan], {}, "entry 1 is nan"),
        ([1.0, 2.0], {"confidence": 95}, "confidence must be in"),
    ],
)
def test_summarize_rejects_bad_input(values, kwargs, match):
    with pytest.raises(ValueError, match=match):
        summarize(values, **kwargs)


def test_summary_is_json_able_and_round_trips():
    for s in (summarize([1.0, 2.0, 4.0], method="rl"), summarize([1.0]), two_way_bootstrap(CELLS_A, resamples=200, seed=3)):
        text = json.dumps(s.to_dict())
        back = Summary.from_dict(json.loads(text))
        assert back.to_dict() == s.to_dict()
    assert json.loads(json.dumps(summarize([1.0]).to_dict()))["low"] is None  # NaN is written as null
    diff = paired_differences({"a": CELLS_A, "b": CELLS_B})[0]
    assert json.loads(json.dumps(diff.to_dict()))["verdict"] == diff.verdict
    assert PairedDifference.from_dict(diff.to_dict()) == diff


# ----------------------------------------------------------------------------- units of the O × F design
def test_unit_means_and_t_units_match_scipy():
    np.testing.assert_allclose(forget_set_means(CELLS_A), CELLS_A.mean(axis=0))
    np.testing.assert_allclose(original_means(CELLS_A), CELLS_A.mean(axis=1))
    for unit, per_unit in (("forget_set", CELLS_A.mean(axis=0)), ("original", CELLS_A.mean(axis=1)), ("cell", CELLS_A.ravel())):
        s = summarize_cells(CELLS_A, unit=unit, method="amun")
        low, high = scipy.stats.t.interval(0.95, len(per_unit) - 1, loc=per_unit.mean(), scale=scipy.stats.sem(per_unit))
        assert (s.n, s.unit) == (len(per_unit), unit)
        assert s.mean == pytest.approx(CELLS_A.mean())
        assert s.sd == pytest.approx(np.std(per_unit, ddof=1))
        assert (s.low, s.high) == (pytest.approx(low, rel=1e-11), pytest.approx(high, rel=1e-11))


def test_equal_cells_give_zero_width_intervals_in_every_unit():
    cells = np.full((3, 4), 2.5)
    for unit in ("forget_set", "original", "cell", "two_way_bootstrap"):
        s = summarize_cells(cells, unit=unit, resamples=500)
        assert (s.mean, s.low, s.high, s.sd) == (2.5, 2.5, 2.5, 0.0)


def test_one_factor_designs_show_which_spread_each_unit_sees():
    """Cells that vary only between originals have equal forget-set means (a zero-width forget-set
    interval: it conditions on the originals) but a non-zero original and bootstrap interval; and
    the other way round."""
    by_original = np.repeat(np.array([[1.0], [2.0], [6.0]]), 4, axis=1)  # cells[o, f] = a_o
    assert summarize_cells(by_original, unit="forget_set").high == pytest.approx(3.0)
    assert summarize_cells(by_original, unit="forget_set").low == pytest.approx(3.0)
    assert summarize_cells(by_original, unit="original").high > 6.0
    boot = summarize_cells(by_original, unit="two_way_bootstrap", resamples=4000)
    assert boot.low < 2.0 and boot.high > 4.5
    by_forget_set = by_original.T  # now cells[o, f] = b_f, 4 originals × 3 forget sets
    assert summarize_cells(by_forget_set, unit="original").high == pytest.approx(3.0)
    assert summarize_cells(by_forget_set, unit="forget_set").high > 6.0


def test_two_way_bootstrap_hand_example():
    """cells = [[0, 0], [0, 4]]: a resample's mean is u·v, u and v the draws of original 1 and
    forget set 1 (each Binomial(2, 1/2)), so P(0) = 7/16, P(1) = P(2) = 1/4, P(4) = 1/16: the 95%
    percentile interval is [0, 4] and the resampled means average E[u] E[v] = 1."""
    cells = [[0.0, 0.0], [0.0, 4.0]]
    means = two_way_bootstrap_means(cells, resamples=40_000, seed=1)
    values, counts = np.unique(means, return_counts=True)
    assert values.tolist() == [0.0, 1.0, 2.0, 4.0]
    np.testing.assert_allclose(counts / means.size, [7 / 16, 1 / 4, 1 / 4, 1 / 16], atol=0.01)
    assert means.mean() == pytest.approx(1.0, abs=0.02)
    s = two_way_bootstrap(cells, resamples=40_000, seed=1)
    assert (s.mean, s.low, s.high, s.n, s.resamples, s.seed) == (1.0, 0.0, 4.0, 4, 40_000, 1)


def exact_two_way_distribution(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every two-way resample of a small design, enumerated: its grand mean and probability."""
    n_o, n_f = cells.shape
    means, probs = [], []
    for rows in itertools.product(range(n_o), repeat=n_o):
        for cols in itertools.product(range(n_f), repeat=n_f):
            means.append(cells[np.ix_(rows, cols)].mean())
            probs.append(1.0 / (n_o**n_o * n_f**n_f))
    return np.array(means), np.array(probs)


def test_two_way_bootstrap_matches_exact_enumeration():
    cells = CELLS_A[:2, :3]  # 2 × 3: 4 · 27 equally likely resamples
    exact_means, probs = exact_two_way_distribution(cells)
    exact_mean = float((exact_means * probs).sum())
    exact_var = float((probs * (exact_means - exact_mean) ** 2).sum())
    boot = two_way_bootstrap_means(cells, resamples=100_000, seed=0)
    assert boot.mean() == pytest.approx(exact_mean, abs=4 * math.sqrt(exact_var / boot.size))
    assert boot.var() == pytest.approx(exact_var, rel=0.03)
    order = np.argsort(exact_means)
    cdf = np.cumsum(probs[order])
    for q in (0.025, 0.5, 0.975):  # the bootstrap quantiles sit inside the exact distribution's
        exact_q = exact_means[order][np.searchsorted(cdf, q)]
        assert np.quantile(boot, q) == pytest.approx(exact_q, abs=0.15)


def test_one_way_bootstrap_matches_scipy():
    """One original (one row): the two-way bootstrap is the ordinary bootstrap over forget sets."""
    values = np.array([4.1, 6.3, 5.0, 7.7, 3.2, 5.9, 4.4, 8.1, 5.0, 7.4])
    ours = two_way_bootstrap(values[None, :], resamples=50_000, seed=0)
    ref = scipy.stats.bootstrap((values,), np.mean, method="percentile", n_resamples=50_000, rng=np.random.default_rng(1))
    assert ours.low == pytest.approx(ref.confidence_interval.low, abs=0.03)
    assert ours.high == pytest.approx(ref.confidence_interval.high, abs=0.03)
    assert ours.high - ours.low > 1.0  # a real interval, not a degenerate one
    column = two_way_bootstrap(values[:, None], resamples=50_000, seed=0)  # one forget set: over originals
    assert (column.low, column.high) == (pytest.approx(ref.confidence_interval.low, abs=0.03), pytest.approx(ref.confidence_interval.high, abs=0.03))


def test_bootstrap_is_seeded():
    a = two_way_bootstrap(CELLS_A, resamples=300, seed=7)
    assert a == two_way_bootstrap(CELLS_A, resamples=300, seed=7)
    assert (a.low, a.high) != (two_way_bootstrap(CELLS_A, resamples=300, seed=8).low, two_way_bootstrap(CELLS_A, resamples=300, seed=8).high)
    single = two_way_bootstrap([[3.0]])
    assert single.mean == 3.0 and math.isnan(single.low) and math.isnan(single.high)


def test_forget_set_unit_covers_and_cell_unit_does_not_when_forget_sets_share_models():
    """Simulated designs (3 originals × 4 forget sets) with a shared per-forget-set effect: the
    forget-set t-interval holds its 95% coverage, the naive interval over all 12 cells does not."""
    rng = np.random.default_rng(0)
    trials, hits = 1500, {"forget_set": 0, "cell": 0}
    for _ in range(trials):
        cells = 5.0 + rng.normal(0, 1.0, size=(1, 4)) + rng.normal(0, 0.5, size=(3, 4))
        for unit in hits:
            s = summarize_cells(cells, unit=unit)
            hits[unit] += s.low <= 5.0 <= s.high
    assert 0.93 <= hits["forget_set"] / trials <= 0.97
    assert hits["cell"] / trials < 0.85


@pytest.mark.parametrize(
    "cells,kwargs,match",
    [
        ([1.0, 2.0], {}, "shape \\(originals, forget sets\\)"),
        ([[1.0, math.inf]], {}, "cell \\(original 0, forget set 1\\) is inf"),
        ([[1.0, 2.0]], {"unit": "seed"}, "unknown unit 'seed'; allowed: forget_set, original, two_way_bootstrap, cell"),
        ([[1.0, 2.0]], {"unit": "two_way_bootstrap", "resamples": 0}, "resamples must be a positive integer"),
    ],
)
def test_summarize_cells_rejects_bad_input(cells, kwargs, match):
    with pytest.raises(ValueError, match=match):
        summarize_cells(cells, **kwargs)


# ----------------------------------------------------------------------------- paired differences and verdicts
def test_paired_t_interval_is_scipy_ttest_rel():
    """The forget-set-unit difference interval is the paired t interval of the forget-set means."""
    (diff,) = paired_differences({"a": CELLS_A, "b": CELLS_B})
    assert (diff.method, diff.reference, diff.unit, diff.n) == ("b", "a", "forget_set", 4)
    ref = scipy.stats.ttest_rel(CELLS_B.mean(axis=0), CELLS_A.mean(axis=0)).confidence_interval(0.95)
    assert (diff.low, diff.high) == (pytest.approx(ref.low, rel=1e-11), pytest.approx(ref.high, rel=1e-11))
    assert diff.mean == pytest.approx((CELLS_B - CELLS_A).mean())
    assert diff.verdict == ("worse" if ref.low > 0 else "not distinguishable")
    # unpaired, the same two methods overlap: pairing is what removes the shared cell effects
    a, b = summarize_cells(CELLS_A), summarize_cells(CELLS_B)
    assert a.high > b.low and diff.low > 0 and diff.verdict == "worse"


def test_paired_differences_pick_the_best_and_pair_every_unit():
    cells = {"rl": CELLS_B, "amun": CELLS_A, "ga": CELLS_A + 0.01, "bs": CELLS_A[:, ::-1] + 0.3}
    for unit in ("forget_set", "original", "cell", "two_way_bootstrap"):
        diffs = paired_differences(cells, unit=unit, resamples=2000, seed=4)
        assert [d.method for d in diffs] == ["rl", "ga", "bs"] and {d.reference for d in diffs} == {"amun"}
        for d in diffs:
            expected = summarize_cells(cells[d.method] - CELLS_A, unit=unit, resamples=2000, seed=4)
            assert (d.mean, d.low, d.high, d.sd, d.n, d.unit) == (expected.mean, expected.low, expected.high, expected.sd, expected.n, expected.unit)
            assert d.verdict == verdict(d.low, d.high)
        ga = next(d for d in diffs if d.method == "ga")
        assert ga.mean == pytest.approx(0.01) and ga.low == pytest.approx(0.01) and ga.verdict == "worse"  # a constant shift is decided


def test_paired_differences_higher_is_better_and_ties():
    diffs = paired_differences({"x": [[1.0, 2.0, 3.0]], "y": [[1.0, 2.0, 3.0]], "z": [[0.0, 0.5, 1.0]]}, lower_is_better=False)
    assert [(d.method, d.reference) for d in diffs] == [("y", "x"), ("z", "x")]  # a tie keeps the first listed
    z = diffs[1]
    assert z.high < 0 and z.verdict == "worse"
    assert diffs[0].verdict == "not distinguishable" and diffs[0].low == diffs[0].high == 0.0


def test_paired_differences_reject_bad_input():
    with pytest.raises(ValueError, match="same \\(originals, forget sets\\) shape"):
        paired_differences({"a": CELLS_A, "b": CELLS_B[:, :3]})
    with pytest.raises(ValueError, match="no methods"):
        paired_differences({})
    with pytest.raises(ValueError, match="cells\\['b'\\] must be finite"):
        paired_differences({"a": CELLS_A, "b": np.where(CELLS_B > 9, np.nan, CELLS_B)})
    assert paired_differences({"only": CELLS_A}) == []


@pytest.mark.parametrize(
    "low,high,lower_is_better,expected",
    [
        (0.2, 3.0, True, "worse"),
        (-3.0, -0.2, True, "better"),
        (-1.0, 1.0, True, "not distinguishable"),
        (0.0, 1.0, True, "not distinguishable"),  # touching 0 is not excluding it
        (-1.0, 0.0, True, "not distinguishable"),
        (0.2, 3.0, False, "better"),
        (-3.0, -0.2, False, "worse"),
        (math.nan, math.nan, True, "not distinguishable"),
    ],
)
def test_verdict(low, high, lower_is_better, expected):
    assert verdict(low, high, lower_is_better=lower_is_better) == expected


def test_verdict_rejects_an_inverted_interval():
    with pytest.raises(ValueError, match="low 2.0 is above high 1.0"):
        verdict(2.0, 1.0)


# ----------------------------------------------------------------------------- noise floor
def test_noise_floor_units():
    loo = np.array([[1.2, 0.8, 1.5], [2.0, 1.1, 1.4], [0.7, 0.9, 1.3], [1.8, 2.2, 1.0]])  # 4 forget sets × 3 retrained models
    s = noise_floor(loo)
    means = loo.mean(axis=1)
    low, high = scipy.stats.t.interval(0.95, 3, loc=means.mean(), scale=scipy.stats.sem(means))
    assert (s.method, s.unit, s.n) == ("noise floor", "forget_set", 4)
    assert (s.mean, s.sd) == (pytest.approx(loo.mean()), pytest.approx(np.std(means, ddof=1)))
    assert (s.low, s.high) == (pytest.approx(low, rel=1e-11), pytest.approx(high, rel=1e-11))
    naive = noise_floor(loo, unit="cell")
    assert (naive.unit, naive.n) == ("retrained_model", 12) and naive.high - naive.low < s.high - s.low
    boot = noise_floor(loo, unit="two_way_bootstrap", resamples=3000, seed=2)
    expected = two_way_bootstrap(means[None, :], resamples=3000, seed=2)
    assert (boot.unit, boot.n, boot.low, boot.high) == ("forget_set_bootstrap", 4, expected.low, expected.high)
    with pytest.raises(ValueError, match="unknown unit 'original'"):
        noise_floor(loo, unit="original")


# ----------------------------------------------------------------------------- forest plot
def _red_and_green_pixels(path) -> tuple[int, int]:
    import matplotlib.image

    img = matplotlib.image.imread(path)[..., :3]
    red = (img[..., 0] > 0.75) & (img[..., 1] < 0.3) & (img[..., 2] < 0.3)
    green = (img[..., 1] > 0.5) & (img[..., 0] < 0.3) & (img[..., 2] < 0.3)
    return int(red.sum()), int(green.sum())


def test_forest_plot_draws_each_difference_in_its_verdict_colour(tmp_path):
    from lightning_unlearn.pipeline.report import plot_paired_differences

    worse = paired_differences({"a": CELLS_A, "b": CELLS_B})
    assert worse[0].verdict == "worse"
    assert plot_paired_differences(worse, tmp_path / "worse.png")
    red, green = _red_and_green_pixels(tmp_path / "worse.png")
    assert red > 50 and green == 0
    undecided = paired_differences({"a": CELLS_A, "c": CELLS_A[:, ::-1]})
    assert undecided[0].verdict == "not distinguishable"
    assert plot_paired_differences(undecided, tmp_path / "undecided.png")
    assert _red_and_green_pixels(tmp_path / "undecided.png") == (0, 0)
    assert plot_paired_differences([], tmp_path / "none.png") is False and not (tmp_path / "none.png").exists()
