"""The fair-comparison protocol of the main job: the design, the storage of units, equal budgets, resume,
divergence, the noise floor, and intervals and paired differences checked against scipy."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import scipy.stats

from lightning_unlearn.pipeline import BenchmarkConfig, ConfigError, protocol, run_experiment
from lightning_unlearn.pipeline.design import design_of, run_seed
from lightning_unlearn.pipeline.results import build_results
from lightning_unlearn.pipeline.store import RUNS_STUDY, RunStore, StoreMismatchError, default_storage_url, unit_id, unit_key
from lightning_unlearn.stats import noise_floor
from lightning_unlearn.tuning import DivergedError

ROOT = Path(__file__).resolve().parents[1]


def small(cache_dir, **kw) -> BenchmarkConfig:
    """2 originals x 2 forget sets, 2 retrained models each, 3 trials per method on 2 tuning sets; tiny digits models."""
    base = dict(
        max_train=300, max_test=150, epochs=3, unlearn_epochs=1, methods=("ft", "ga", "salun"), rmia_references=2, max_trials=3, seeds=(0, 1),
        forget_seeds=(0, 1), retrain_models=2, cache_dir=str(cache_dir),
    )
    base.update(kw)
    return BenchmarkConfig(**base)


# ---------------------------------------------------------------------------- the design
def test_design_crosses_originals_with_forget_sets():
    cfg = BenchmarkConfig(seeds=(0, 1), forget_seeds=(0, 1, 2), retrain_models=2, tune_sets=2, tune_seed=100).validate()
    d = design_of(cfg, 10)
    assert d.shape == (2, 3) and d.originals == (0, 1)
    assert [s.name for s in d.forget_sets] == ["random:0.2@0", "random:0.2@1", "random:0.2@2"]
    assert [s.name for s in d.tuning_sets] == ["random:0.2@100", "random:0.2@101"] and [s.role for s in d.tuning_sets] == ["tune", "tune"]
    assert d.forget_sets[1].retrain_seeds == cfg.retrain_seeds(1) and len(d.forget_sets[1].retrain_seeds) == 2
    assert d.model_count() == 2 + (3 + 2) * 2  # O + F·R + K·R: originals do not depend on the forget set
    assert [d.tuning_original(k) for k in range(2)] == [0, 1]
    assert design_of(cfg.replace(max_trials=0), 10).tuning_sets == ()  # nothing tuned: no tuning sets to train
    cls = design_of(BenchmarkConfig(forget="classes:3,8", seeds=(0,)).validate(), 10)
    assert [s.name for s in cls.forget_sets] == ["class:3", "class:8"] and [s.name for s in cls.tuning_sets] == ["class:9", "class:0"]
    assert all(s.retrain_seeds == (0, 1, 2) for s in cls.all_sets())
    together = design_of(BenchmarkConfig(forget="class:3,8", tune_class=(1, 2)).validate(), 10)
    assert [s.name for s in together.forget_sets] == ["class:3,8"] and [s.name for s in together.tuning_sets] == ["class:1", "class:2"]
    assert type(d).from_dict(json.loads(json.dumps(d.to_dict()))) == d


def test_a_run_seed_depends_on_its_cell_only():
    d = design_of(BenchmarkConfig().validate(), 10)
    f0, f1 = d.forget_sets[:2]
    assert run_seed(0, f0) == run_seed(0, f0) and len({run_seed(0, f0), run_seed(1, f0), run_seed(0, f1)}) == 3


def test_plans_give_every_method_the_same_budget():
    """N = 4: every method gets 4 TPE trials (the schedule grid alone has 21 points); with one learning rate the
    3-point grid of FT and GA is searched in full, SalUn (a float axis of its own) still gets 4 TPE trials."""
    cfg = BenchmarkConfig(methods=("ft", "ga", "salun", "scrub"), max_trials=4).validate()
    plans = protocol.tuning_plans(cfg, design_of(cfg, 10))
    assert {m: (p.sampler_kind, p.n_trials, p.n_sets) for (_, m), p in plans.items()} == {
        "ft": ("tpe", 4, 2), "ga": ("tpe", 4, 2), "salun": ("tpe", 4, 2), "scrub": ("tpe", 4, 2)}
    one_lr = protocol.tuning_plans(cfg.replace(tune_lrs=(0.01,)), design_of(cfg, 10))
    assert {m: (p.sampler_kind, p.n_trials) for (_, m), p in one_lr.items()} == {"ft": ("grid", 3), "ga": ("grid", 3), "salun": ("tpe", 4), "scrub": ("tpe", 4)}
    assert one_lr[("avg_gap", "ft")].space.grid() == {"lr": [0.01], "step_size": [1, 5, 10]}
    fixed = protocol.tuning_plans(cfg.replace(hparams="ga.lr=0.1,ga.step_size=5"), design_of(cfg, 10))[("avg_gap", "ga")]
    assert fixed.sampler_kind == "none" and fixed.space.constants["lr"] == 0.1 and fixed.space.constants["epochs"] == 5
    assert protocol.tuning_plans(cfg.replace(max_trials=0), design_of(cfg, 10)) == {}


# ---------------------------------------------------------------------------- the storage
class Counter:
    def __init__(self, result=None, error=None):
        self.calls, self.result, self.error = 0, result or {"figures": {"ua": 1.0}}, error

    def __call__(self):
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.result


def test_a_unit_runs_once_and_its_outcome_persists(tmp_path):
    url = default_storage_url(tmp_path)
    store = RunStore(url)
    assert not store.exists() and store.existing_declaration() is None and not (tmp_path / "study.sqlite3").exists()  # nothing created yet
    store.start({"version": 1, "settings": {"a": 1}})
    key = unit_key(method="ft", hparams={"lr": 0.1}, original=0, forget_set="random:0.2@0")
    run = Counter({"figures": {"ua": 97.5, "nan": float("nan")}, "cells": {"avg_gap": 1.25}})
    first = store.run(key, run)
    again = store.run(key, run)
    assert run.calls == 1 and first.figures == again.figures == {"ua": 97.5, "nan": None} and first.cells == {"avg_gap": 1.25}
    fresh = RunStore(url)  # another process
    assert fresh.existing_declaration() == {"version": 1, "settings": {"a": 1}}
    assert fresh.run(key, run).figures["ua"] == 97.5 and run.calls == 1
    (trial,) = optuna.load_study(study_name=RUNS_STUDY, storage=url).get_trials()
    assert trial.user_attrs["key"] == key and trial.user_attrs["unit"]["method"] == "ft" and trial.params["unit"] == unit_id(key)


def test_diverged_units_are_outcomes_and_failed_ones_run_again(tmp_path):
    store = RunStore(default_storage_url(tmp_path))
    store.start({"version": 1})
    diverging = Counter(error=DivergedError("the run diverged: 3 unlearning steps had a non-finite loss"))
    out = store.run("a", diverging)
    assert out.diverged and "non-finite loss" in out.reason and store.run("a", diverging).diverged and diverging.calls == 1
    failing = Counter(error=RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        store.run("b", failing)
    ok = Counter()
    assert not RunStore(store.url).run("b", ok).diverged and ok.calls == 1  # a failure is not an outcome: the unit runs again
    states = sorted((t.user_attrs["key"], t.state.name) for t in optuna.load_study(study_name=RUNS_STUDY, storage=store.url).get_trials())
    assert states == [("a", "FAIL"), ("b", "COMPLETE"), ("b", "FAIL")]


def test_a_unit_left_running_by_a_killed_process_runs_again(tmp_path):
    """A RUNNING trial without a holder record (a killed process of a release before workers) is failed when its unit is
    next claimed, and the unit runs again; the other outcomes stay (tests/test_workers.py: dead and live holders)."""
    store = RunStore(default_storage_url(tmp_path))
    store.start({"version": 1})
    store.run("a", Counter())
    left = store.study.ask()  # a trial a killed process left RUNNING, as the earlier release claimed units
    store.study._storage.set_trial_param(left._trial_id, "unit", float(unit_id("c")), optuna.distributions.IntDistribution(0, 2**52 - 1))
    left.set_user_attr("key", "c")
    reopened = RunStore(store.url)
    assert reopened.lookup("a") is not None and reopened.lookup("c") is None
    again = Counter()
    assert not reopened.run("c", again).diverged and again.calls == 1
    states = sorted((t.user_attrs["key"], t.state.name) for t in reopened.study.get_trials())
    assert states == [("a", "COMPLETE"), ("c", "COMPLETE"), ("c", "FAIL")]


def test_a_storage_of_another_run_is_named_with_its_differences(tmp_path):
    store = RunStore(default_storage_url(tmp_path))
    declared = {"version": 1, "config": {"max_trials": 4, "cache_dir": "/a", "seeds": [0, 1]}}
    store.start(declared)
    store.run("a", Counter())
    again = RunStore(store.url)
    again.check({**declared, "config": {**declared["config"], "cache_dir": "/elsewhere"}}, fresh="x")  # where things are is not compared
    with pytest.raises(StoreMismatchError) as err:
        again.check({"version": 1, "config": {"max_trials": 21, "cache_dir": "/a", "seeds": [0, 1]}}, fresh="pass --overwrite to start afresh")
    msg = str(err.value)
    assert "\n" not in msg and "config.max_trials 4 in the study, 21 now" in msg and "pass --overwrite to start afresh" in msg
    assert isinstance(err.value, ConfigError)
    again.delete()
    assert again.existing_declaration() is None and again.lookup("a") is None


# ---------------------------------------------------------------------------- a whole run
@pytest.fixture(scope="module")
def random_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocol")
    cfg = small(root / "cache")
    res = run_experiment(cfg, root / "out")
    return cfg, res, root


def test_every_method_gets_exactly_its_budget(random_run):
    cfg, res, root = random_run
    url = default_storage_url(root / "out")
    for m in ("ft", "ga", "salun"):
        rec = res["objectives"]["avg_gap"]["tuning"][m]
        assert rec["n_trials"] == 3 and rec["sampler"] == "tpe" and len(res["tuning"][m]) == 3, m
        counted = [t for t in optuna.load_study(study_name=f"{m}/avg_gap", storage=url).get_trials() if t.state.name in ("COMPLETE", "FAIL")]
        assert len(counted) == 3 and all(len(t.user_attrs["sets"]) == 2 for t in counted if t.state.name == "COMPLETE"), m
        assert res["declaration"]["avg_gap"][m]["budget"] == 3 and res["declaration"]["avg_gap"][m]["n_sets"] == 2


def test_results_are_built_from_the_storage_alone(random_run):
    cfg, res, root = random_run
    again = build_results(RunStore(default_storage_url(root / "out")), run=res["run"], provenance=res["provenance"])
    assert json.loads(json.dumps(again)) == json.loads(json.dumps(res))
    on_disk = json.loads((root / "out" / "results.json").read_text())
    assert on_disk["objectives"]["avg_gap"]["paired"] == json.loads(json.dumps(res["objectives"]["avg_gap"]["paired"]))


def test_the_noise_floor_is_each_retrained_model_against_the_other(random_run):
    """Random forgetting, R = 2: each retrained model's Avg. Gap against the other one of its forget set, by hand."""
    cfg, res, root = random_run
    retrain = res["methods"]["retrain"]
    assert np.asarray(retrain["cells"]["avg_gap"]).shape == (2, 2)  # (F, R)
    for fs in ("random:0.2@0", "random:0.2@1"):
        a, b = [p for p in retrain["per_seed"] if p["forget_set"] == fs]
        gap = np.mean([abs(a[k] - b[k]) for k in ("ua", "ra", "ta", "rmia_auc")])
        assert a["avg_gap"] == pytest.approx(gap) and b["avg_gap"] == pytest.approx(gap), fs
    floor = noise_floor(retrain["cells"]["avg_gap"])
    assert res["noise_floor"]["mean"] == pytest.approx(floor.mean) and res["noise_floor"]["low"] == pytest.approx(floor.low)
    assert res["noise_floor"]["method"] == "noise floor"
    assert "| retrain (noise floor) |" in (root / "out" / "report.md").read_text()


def test_intervals_and_paired_differences_agree_with_scipy(random_run):
    """The forget-set unit: a t interval over the F forget-set means, and for the paired difference the paired t interval."""
    cfg, res, root = random_run
    section = res["objectives"]["avg_gap"]
    for m in ("original", "ft", "ga", "salun"):
        cells = np.asarray(section["methods"][m]["cells"]["objective"])
        means = cells.mean(axis=0)  # (O, F) -> the F forget-set means
        s = section["methods"][m]["summary"]["objective"]
        low, high = scipy.stats.t.interval(0.95, len(means) - 1, loc=means.mean(), scale=scipy.stats.sem(means))
        assert (s["mean"], s["sd"], s["n"], s["unit"]) == (pytest.approx(cells.mean()), pytest.approx(np.std(means, ddof=1)), 2, "forget_set")
        assert s["low"] == pytest.approx(low) and s["high"] == pytest.approx(high), m
        assert section["methods"][m]["std"]["avg_gap"] == pytest.approx(np.std(np.asarray(section["methods"][m]["cells"]["avg_gap"]).mean(0), ddof=1))
    best = section["best"]
    assert best == min(("ft", "ga", "salun"), key=lambda m: section["methods"][m]["objective"])
    for d in section["paired"]:
        mine = np.asarray(section["methods"][d["method"]]["cells"]["objective"]).mean(0)
        ref = np.asarray(section["methods"][best]["cells"]["objective"]).mean(0)
        ci = scipy.stats.ttest_rel(mine, ref).confidence_interval(0.95)
        assert d["reference"] == best and d["mean"] == pytest.approx((mine - ref).mean())
        assert (d["low"], d["high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
        assert d["verdict"] == ("worse" if ci.low > 0 else "not distinguishable")
    assert section["statement"] in (root / "out" / "report.md").read_text()
    assert (root / "out" / "paired_differences_avg_gap.png").stat().st_size > 1000


def test_the_verdict_sentence_names_worse_and_indistinguishable_methods():
    from lightning_unlearn.pipeline.results import verdict_statement

    paired = [{"method": "ft", "verdict": "worse"}, {"method": "rl", "verdict": "worse"}, {"method": "ga", "verdict": "not distinguishable"}]
    assert verdict_statement(paired, "amun", "avg_gap", "forget_set", 3) == (
        "amun has the lowest avg_gap; ft, rl are worse (the 95% CI of the paired difference excludes 0, n = 3 forget sets); "
        "ga is not distinguishable from it.")
    none = verdict_statement(paired[2:], "amun", "avg_gap", "forget_set", 1)
    assert none.startswith("None of the paired differences excludes 0") and "n = 1 forget set)" in none and "One unit has no interval" in none
    assert verdict_statement([], "amun", "avg_gap", "forget_set", None) == "amun is the only unlearning method compared under avg_gap."


# ---------------------------------------------------------------------------- resume
def _comparable(res: dict) -> dict:
    """What must not depend on interruptions: every cell's figures (times aside), the tuning trials and choices, the verdicts."""
    out = {}
    for name, section in res["objectives"].items():
        out[name] = {
            "cells": {m: {k: v for k, v in e["cells"].items() if k != "seconds"} for m, e in section["methods"].items()},
            "tuning": {m: {"chosen": r["chosen"], "trials": [(t["slot"], t["hparams"], t["value"]) for t in r["trials"]]}
                       for m, r in section["tuning"].items()},
            "paired": section["paired"], "statement": section["statement"],
        }
    return json.loads(json.dumps(out))


def test_a_run_cut_short_resumes_and_gives_the_uninterrupted_results(random_run, tmp_path, monkeypatch):
    """An exception after 7 measured runs (in the middle of the tuning); the same call then resumes from the storage."""
    from lightning_unlearn.pipeline.stages import Experiment

    cfg, whole, root = random_run
    real, calls = Experiment.measure_method, []

    def cut(self, *args, **kwargs):
        calls.append(args)
        if len(calls) > 7:
            raise RuntimeError("the machine went away")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Experiment, "measure_method", cut)
    with pytest.raises(RuntimeError, match="went away"):
        run_experiment(cfg, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".lightning-unlearn-manifest.json", "study.sqlite3"]  # a study, no results
    stored = RunStore(default_storage_url(tmp_path / "out")).outcomes()
    assert sum(o.record["unit"]["method"] != "retrain" for o in stored.values()) == 7
    monkeypatch.setattr(Experiment, "measure_method", real)
    resumed = run_experiment(cfg, tmp_path / "out")
    assert resumed["run"]["units_run"] + len(stored) == whole["run"]["units_run"] and resumed["run"]["models_trained"] == 0
    assert _comparable(resumed) == _comparable(whole)


def test_another_config_on_an_interrupted_study_is_one_line_and_overwrite_starts_afresh(random_run, tmp_path, monkeypatch):
    from lightning_unlearn.pipeline.stages import Experiment

    cfg, _, _ = random_run
    cfg = cfg.replace(methods=("ft",), max_trials=1)

    def broken(self, *args, **kwargs):
        raise RuntimeError("stop")

    monkeypatch.setattr(Experiment, "measure_method", broken)
    with pytest.raises(RuntimeError):
        run_experiment(cfg, tmp_path / "out")
    monkeypatch.undo()
    with pytest.raises(ConfigError) as err:
        run_experiment(cfg.replace(unlearn_epochs=2), tmp_path / "out")
    msg = str(err.value)
    assert "\n" not in msg and "unlearn_epochs 1 in the study, 2 now" in msg and "--overwrite" in msg and "another --out" in msg
    res = run_experiment(cfg.replace(unlearn_epochs=2), tmp_path / "out", overwrite=True)
    assert res["config"]["unlearn_epochs"] == 2 and res["run"]["units_reused"] == 0


def test_identical_runs_under_two_objectives_run_once(tmp_path):
    """Class forgetting, FT over one learning rate: its 3-point grid is the same under both objectives, so the 3 x 2
    tuning runs are measured once and both studies hold 3 complete trials."""
    cfg = BenchmarkConfig(
        forget="class:3", max_train=300, max_test=150, epochs=3, unlearn_epochs=1, methods=("ft",), rmia_references=0, max_trials=3, seeds=(0,),
        retrain_models=2, tune_lrs=(0.01,), objectives=("avg_gap", "avg_gap+kl"), cache_dir=str(tmp_path / "cache"),
    )
    res = run_experiment(cfg, tmp_path / "out")
    store = RunStore(default_storage_url(tmp_path / "out"))
    tuning_units = [o for o in store.outcomes().values() if o.record["unit"]["method"] == "ft" and o.record["unit"]["forget_set"] in ("class:4", "class:5")]
    assert len(tuning_units) == 3 * 2
    for name in ("avg_gap", "avg_gap+kl"):
        rec = res["objectives"][name]["tuning"]["ft"]
        assert (rec["sampler"], rec["n_trials"], rec["n_complete"]) == ("grid", 3, 3)
    assert res["objectives"]["avg_gap+kl"]["formula"] == "(4*avg_gap + 100*(1 - exp(-sym_kl))) / 5"


# ---------------------------------------------------------------------------- divergence
def test_a_diverged_evaluation_run_is_marked_not_printed(tmp_path):
    """GA with lr 50: every evaluation run's loss and weights blow up; the row says so instead of showing numbers."""
    cfg = small(tmp_path / "cache", methods=("ft", "ga"), max_trials=0, hparams="ga.lr=50")
    res = run_experiment(cfg, tmp_path / "out")
    ga = res["methods"]["ga"]
    assert ga["status"] == "diverged" and len(ga["diverged"]) == 4 and ga["avg_gap"] is None and ga["per_seed"] == []
    assert all(d["reason"].startswith("the run diverged:") for d in ga["diverged"])
    assert res["methods"]["ft"]["status"] == "ok" and res["objectives"]["avg_gap"]["paired"] == []  # one method left: nothing to pair
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| ga | **diverged** in 4 of 4 runs | – |" in report


def test_diverged_tuning_trials_are_never_scored(tmp_path):
    """GA with lr 50 fixed: its 3 StepLR periods (a grid within the budget) all diverge; nothing is chosen or evaluated."""
    cfg = small(tmp_path / "cache", methods=("ft", "ga"), max_trials=3, hparams="ga.lr=50", seeds=(0,), forget_seeds=(0,))
    res = run_experiment(cfg, tmp_path / "out")
    rec = res["objectives"]["avg_gap"]["tuning"]["ga"]
    assert (rec["sampler"], rec["n_trials"], rec["n_diverged"], rec["chosen"]) == ("grid", 3, 3, None)
    assert all(t["state"] == "diverged" and t["value"] is None for t in rec["trials"])
    assert res["methods"]["ga"]["status"] == "not tuned"
    assert "| ga | **every tuning trial diverged**: not evaluated |" in (tmp_path / "out" / "report.md").read_text()


# ---------------------------------------------------------------------------- the command line
def _cli(tmp_path, *extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "lightning_unlearn.cli", "benchmark", "--max-train", "300", "--max-test", "150", "--epochs", "3", "--unlearn-epochs", "1",
           "--methods", "ft,salun", "--rmia-references", "2", "--max-trials", "3", "--seeds", "0,1", "--forget-seeds", "0,1",
           "--cache-dir", str(tmp_path / "cache"), *extra]
    return cmd, env


def _wait_for(proc, prefix: str, timeout: float = 300) -> None:
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        if sel.select(timeout=1):
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            if line.startswith(prefix):
                return
    proc.kill()
    raise AssertionError(f"no {prefix!r} line: {''.join(seen)[-2000:]}")


def test_a_killed_benchmark_resumes_with_the_same_choices_and_results(tmp_path):
    """SIGKILL in the middle of the tuning (nothing can clean up); the same command then resumes from the study in --out
    and writes what an uninterrupted run writes."""
    cmd, env = _cli(tmp_path)
    whole = subprocess.run([*cmd, "--quiet", "--out", str(tmp_path / "whole")], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert whole.returncode == 0, whole.stderr[-2000:]
    proc = subprocess.Popen([*cmd, "--out", str(tmp_path / "cut")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    _wait_for(proc, "[tune hyperparameters 5/")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert (tmp_path / "cut" / "study.sqlite3").is_file() and not (tmp_path / "cut" / "results.json").exists()
    again = subprocess.run([*cmd, "--quiet", "--out", str(tmp_path / "cut")], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("whole", "cut"))
    assert b["run"]["units_reused"] > 0 and b["run"]["units_run"] < a["run"]["units_run"]
    assert _comparable(a) == _comparable(b)


def test_an_interrupted_benchmark_says_what_its_study_keeps(tmp_path):
    cmd, env = _cli(tmp_path)
    proc = subprocess.Popen([*cmd, "--out", str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    _wait_for(proc, "[tune hyperparameters 3/")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("lightning-unlearn: interrupted by SIGTERM: no results were written") and "(the same command resumes)" in last, last
    assert str(tmp_path / "out" / "study.sqlite3") in last and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".lightning-unlearn-manifest.json", "study.sqlite3"]


@pytest.mark.slow
def test_the_default_run_shows_a_verdict(tmp_path):
    """`lightning-unlearn benchmark` with every default: the report has a verdict line (a paired difference whose 95% CI
    excludes 0) or says that none does."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "lightning_unlearn.cli", "benchmark", "--quiet", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = (tmp_path / "out" / "report.md").read_text()
    verdicts = report.split("## Verdicts")[1].split("\n\n")[1]
    assert ("are worse (the 95% CI of the paired difference excludes 0" in verdicts or " is worse (the 95% CI" in verdicts
            or "None of the paired differences excludes 0" in verdicts), verdicts
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["design"]["shape"] == [2, 3] and res["config"]["max_trials"] == 4 and "Small tuning budget" in report


def test_the_stored_cost_adds_up_the_units_seconds_by_tuning_and_evaluation():
    from lightning_unlearn.pipeline.results import stored_cost
    from lightning_unlearn.pipeline.store import Outcome

    def unit(forget_set, seconds):
        return Outcome("k", "complete", {"unit": {"forget_set": forget_set, "method": "ft"}, "seconds": seconds})

    outcomes = {"a": unit("random:0.2@100", 2.5), "b": unit("random:0.2@101", 1.5), "c": unit("random:0.2@0", 4.0), "d": unit("random:0.2@1", 3.0),
                "e": Outcome("k", "complete", {"unit": {"forget_set": "random:0.2@0"}})}  # no seconds recorded: not counted
    cost = stored_cost(outcomes, ["random:0.2@100", "random:0.2@101"])
    assert cost == {"seconds": 11.0, "tuning": {"n": 2, "seconds": 4.0}, "evaluation": {"n": 2, "seconds": 7.0}}
