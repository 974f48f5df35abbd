"""benchmarks/claims.py: a paper's claim decided from a run's cells (paired t interval, bootstrap reduction)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from helpers import ROOT, load_script
from scipy import stats

RUN = ROOT / "benchmarks" / "results" / "random_forget_digits" / "0.2_with_remain"


@pytest.fixture(scope="module")
def mod():
    return load_script("benchmarks/claims.py")


@pytest.fixture(scope="module")
def run():
    return json.loads((RUN / "results.json").read_text())


def with_cells(results, method, values):
    """A copy of ``results`` whose ``method`` has Avg. Gap ``values[o][f]`` in every cell."""
    out = copy.deepcopy(results)
    out["objectives"]["avg_gap"]["methods"][method]["cells"]["avg_gap"] = [list(row) for row in values]
    return out


def test_the_difference_is_a_t_interval_over_forget_set_means_against_the_best_prior(mod, run):
    o, f = len(run["design"]["originals"]), len(run["design"]["forget_sets"])
    prior = np.arange(o * f, dtype=float).reshape(o, f) + 4.0
    results = run
    for m in mod.PRIORS:  # every prior 10 points above bs
        results = with_cells(results, m, (prior + (0.0 if m == "bs" else 10.0)).tolist())
    amun = prior - np.array([1.0, 2.5, 0.5][:f]) - np.linspace(0, 0.3, o)[:, None]
    [row] = mod.decide(with_cells(results, "amun", amun.tolist()), "amun")
    assert row["best_prior"] == "bs" and row["claimant"] == "amun" and row["n"] == f
    per_set = (amun - prior).mean(axis=0)
    low, high = stats.t.interval(0.95, f - 1, loc=per_set.mean(), scale=stats.sem(per_set))
    d = row["difference"]
    assert d["mean"] == pytest.approx(per_set.mean()) and (d["low"], d["high"]) == (pytest.approx(low), pytest.approx(high))
    assert row["reduction"] == pytest.approx(1 - amun.mean() / prior.mean())
    assert row["reading"] == ("holds" if high < 0 else "not distinguishable at this scale")


def test_readings_follow_the_interval(mod):
    assert mod.reading(-3.0, -0.1) == "holds"
    assert mod.reading(0.2, 4.0) == "does not hold"
    assert mod.reading(-1.0, 1.0) == "not distinguishable at this scale"
    assert mod.reading(float("nan"), float("nan")) == "not distinguishable at this scale"


def test_the_claim_follows_the_rows_and_the_files_quote_the_json(mod, run, tmp_path):
    assert mod.claim_for(run) == "amun"
    trw_run = copy.deepcopy(run)
    trw_run["objectives"]["avg_gap"]["methods"]["trw"] = {"per_seed": []}
    assert mod.claim_for(trw_run) == "trw"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps(run))
    [written] = mod.main([str(tmp_path / "run")])
    stored = json.loads((tmp_path / "run" / "claims.json").read_text())
    assert stored == written and stored["rows"][0]["claimant"] == "amun"
    assert f"{stored['rows'][0]['difference']['mean']:.2f}" in (tmp_path / "run" / "claims.md").read_text()
    with pytest.raises(SystemExit, match="no results.json"):
        mod.main([str(tmp_path / "missing")])
