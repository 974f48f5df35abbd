"""benchmarks/smoothness.py: pairing two random-forgetting runs cell by cell, clipped − plain."""

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
    return load_script("benchmarks/smoothness.py")


@pytest.fixture(scope="module")
def plain():
    return json.loads((RUN / "results.json").read_text())


def shifted(results, method, by_forget_set, key="avg_gap"):
    """A copy of ``results`` with ``method``'s per-cell ``key`` raised by ``by_forget_set[f]`` in forget set f."""
    out = copy.deepcopy(results)
    names = [f["name"] for f in out["design"]["forget_sets"]]
    for rec in out["methods"][method]["per_seed"]:
        delta = by_forget_set[names.index(rec["forget_set"])]
        if key == "avg_gap":
            rec["avg_gap"] += delta
        else:
            rec["diagnostics"]["transfer_to_retrain"][key] += delta
    return out


def test_a_run_against_itself_differs_by_zero(mod, plain):
    result = mod.compare(plain, plain)
    amun = result["rows"]["amun"]
    assert amun["avg_gap"]["difference"]["mean"] == 0.0 and not amun["avg_gap"]["excludes_zero"]
    assert set(amun) == {"avg_gap", "transfer_prob", "transfer_top1", "gap_closed"}
    assert set(result["rows"]["rl"]) == {"avg_gap", "gap_closed"}  # no adversarial set, no transfer


def test_the_paired_difference_is_a_t_interval_over_forget_set_means(mod, plain):
    shift = [1.0, 3.0, 2.5]
    clipped = shifted(plain, "amun", shift)
    d = mod.compare(plain, clipped)["rows"]["amun"]["avg_gap"]["difference"]
    low, high = stats.t.interval(0.95, len(shift) - 1, loc=np.mean(shift), scale=stats.sem(shift))
    assert d["mean"] == pytest.approx(np.mean(shift)) and d["n"] == 3 and d["unit"] == "forget_set"
    assert (d["low"], d["high"]) == (pytest.approx(low), pytest.approx(high))
    p = mod.compare(plain, shifted(plain, "amun", [-4.0, -5.0, -4.5], key="prob"))["rows"]["amun"]["transfer_prob"]
    assert p["difference"]["mean"] == pytest.approx(-4.5) and p["excludes_zero"]


def test_gap_closed_is_one_minus_the_ratio_to_the_original(mod, plain):
    v = mod.compare(plain, plain)["rows"]["amun"]["gap_closed"]["cells"]["plain"]
    gap, orig = mod.cells(plain, "amun", "avg_gap"), mod.cells(plain, "original", "avg_gap")
    np.testing.assert_allclose(v, 100 * (1 - gap / orig))


def test_runs_of_different_designs_are_refused(mod, plain):
    other = copy.deepcopy(plain)
    other["design"]["originals"] = [5, 6, 7]
    with pytest.raises(SystemExit, match="different designs"):
        mod.compare(plain, other)


def test_runs_with_more_cells_are_paired_on_the_cells_both_measured(mod, plain):
    shift = [1.0, 3.0, 2.5]
    clipped = shifted(plain, "amun", shift)
    dropped = clipped["design"]["forget_sets"].pop()["name"]  # the clipped run measured one forget set fewer
    for row in clipped["methods"].values():
        row["per_seed"] = [r for r in row.get("per_seed", []) if r["forget_set"] != dropped]
    result = mod.compare(plain, clipped)
    assert dropped not in result["design"]["forget_sets"] and len(result["design"]["forget_sets"]) == 2
    d = result["rows"]["amun"]["avg_gap"]["difference"]
    low, high = stats.t.interval(0.95, 1, loc=np.mean(shift[:2]), scale=stats.sem(shift[:2]))
    assert d["mean"] == pytest.approx(np.mean(shift[:2])) and d["n"] == 2
    assert (d["low"], d["high"]) == (pytest.approx(low), pytest.approx(high))


def test_the_readme_quotes_the_json(mod, plain, tmp_path):
    clipped = shifted(plain, "amun", [1.0, 3.0, 2.5])
    (tmp_path / "plain").mkdir()
    (tmp_path / "clipped").mkdir()
    (tmp_path / "plain" / "results.json").write_text(json.dumps(plain))
    (tmp_path / "clipped" / "results.json").write_text(json.dumps(clipped))
    mod.main(["--plain", str(tmp_path / "plain"), "--clipped", str(tmp_path / "clipped"), "--out", str(tmp_path / "out")])
    stored = json.loads((tmp_path / "out" / "smoothness.json").read_text())
    text = (tmp_path / "out" / "README.md").read_text()
    assert f"{stored['rows']['amun']['avg_gap']['difference']['mean']:.2f}" in text
    (tmp_path / "out" / "README.md").unlink()
    mod.main(["--readme-only", "--out", str(tmp_path / "out")])
    assert (tmp_path / "out" / "README.md").read_text() == text
