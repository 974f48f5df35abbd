"""The tuning engine on a cheap synthetic objective: equal budgets, grids, resume, divergence, declarations."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import optuna
import pytest

from lightning_unlearn.tuning import (
    DivergedError,
    StudyMismatchError,
    method_space,
    open_study,
    plan_tuning,
    run_tuning,
)
from lightning_unlearn.tuning.study import open_storage
from lightning_unlearn.unlearning import METHODS

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"mask_ratio": 0.3, "alpha": 1e-4, "beta": 10.0, "tau": 0.1, "msteps": 2}


def synthetic(method: str, hp: dict, k: int) -> dict:
    """A deterministic stand-in for an unlearning run: smallest at lr 0.005, step_size 5 and the TARGETS; set k adds k/2."""
    v = abs(math.log10(hp["lr"]) + 2.3) + abs(hp["step_size"] - 5) / 10 + 0.5 * k
    v += sum(abs(hp[n] - t) / t for n, t in TARGETS.items() if n in hp)
    return {"avg_gap": v, "ua": 90.0 + k, "note": "synthetic"}


class Recorder:
    """``evaluate`` that records its calls and, optionally, raises at call number ``fail_at`` (0-based)."""

    def __init__(self, fn=synthetic, fail_at: int | None = None, error: type[BaseException] = RuntimeError) -> None:
        self.fn, self.fail_at, self.error, self.calls = fn, fail_at, error, []

    def __call__(self, method, hp, k):
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            self.calls.append(("failed", dict(hp), k))
            raise self.error("interrupted on purpose")
        self.calls.append((method, dict(hp), k))
        return self.fn(method, hp, k)


@pytest.fixture
def tmp_path(tmp_path_factory, request):
    """A fresh folder, in memory (/dev/shm) where there is one: SQLite syncs every commit to
    disk, which dominates these tests' time on a busy disk; the code under test is the same."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path_factory.mktemp("tuning")
        return
    folder = Path(tempfile.mkdtemp(prefix="lu-tuning-", dir=shm))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def quiet_optuna():
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(level)


def counted(result) -> list[dict]:
    """The counted trials (complete, diverged) of a result, by slot."""
    return sorted((h for h in result.history if h["state"] in ("complete", "diverged")), key=lambda h: h["slot"])


def sequence(result) -> list[tuple]:
    return [(h["slot"], json.dumps(h["hparams"], sort_keys=True), h["value"]) for h in counted(result)]


# ---------------------------------------------------------------------------- equal budget
def test_every_method_gets_the_same_budget_grid_when_it_fits(tmp_path):
    # the reference budget of 21 trials: a grid for the methods tuned over the schedule alone
    for name in METHODS:
        plan = plan_tuning(name, budget=21, n_sets=2, seed=0)
        assert plan.n_trials == 21 and plan.sampler_kind == ("grid" if method_space(name).grid_size() == 21 else "tpe"), name
    # run every method with the learning rate fixed and a budget of 3: the 3-point step_size
    # grid where it is the whole space, seeded TPE where the method adds axes (kept small: the
    # cost of an optuna trial in SQLite is what this test spends its time on)
    budget, fixed = 3, {"lr": 0.01}
    for name in METHODS:
        plan = plan_tuning(name, budget=budget, n_sets=2, seed=0, fixed=fixed)
        result = run_tuning(plan, Recorder(), tmp_path)  # every study in one file
        assert result.n_trials == result.n_complete == budget, name
        assert [h["slot"] for h in counted(result)] == list(range(budget)), name
        space = method_space(name, fixed)
        if space.grid_size() <= budget:
            assert plan.sampler_kind == "grid" and result.declaration["sampler"]["kind"] == "grid", name
            # the grid sampler covers the whole grid exactly once
            seen = sorted(json.dumps(h["hparams"], sort_keys=True) for h in counted(result))
            assert seen == sorted(json.dumps(space.hyperparameters(p), sort_keys=True) for p in space.grid_points()), name
        else:
            assert plan.sampler_kind == "tpe" and result.declaration["sampler"]["kind"] == "tpe", name
        assert result.chosen == min(counted(result), key=lambda h: h["value"])["hparams"], name
    names = {s.study_name for s in optuna.get_all_study_summaries(open_storage(tmp_path))}
    assert names == {f"{m}/avg_gap" for m in METHODS}


def test_a_grid_smaller_than_the_budget_is_run_once_and_a_larger_one_gets_tpe(tmp_path):
    big = run_tuning(plan_tuning("ft", budget=30, n_sets=2, seed=0), Recorder(), tmp_path / "a")
    assert big.n_trials == 21 and big.declaration["n_trials"] == 21 and big.declaration["budget"] == 30
    small_plan = plan_tuning("ft", budget=5, n_sets=2, seed=0)
    small = run_tuning(small_plan, Recorder(), tmp_path / "b")
    assert small_plan.sampler_kind == "tpe" and small.n_trials == 5
    grid = method_space("ft").grid()
    assert all(h["hparams"]["lr"] in grid["lr"] and h["hparams"]["step_size"] in grid["step_size"] for h in small.history)


def test_the_value_is_the_mean_over_the_sets_with_each_set_stored(tmp_path):
    rec = Recorder()
    result = run_tuning(plan_tuning("ft", budget=21, n_sets=3, seed=0), rec, tmp_path)
    assert len(rec.calls) == 21 * 3 and [k for _, _, k in rec.calls[:3]] == [0, 1, 2]
    # the grid sampler covers the whole 21-point grid exactly once
    assert sorted(json.dumps(h["hparams"], sort_keys=True) for h in result.history) == sorted(
        json.dumps({"gamma": 0.1, **p}, sort_keys=True) for p in method_space("ft").grid_points()
    )
    for h in result.history:
        expected = [synthetic("ft", h["hparams"], k)["avg_gap"] for k in range(3)]
        assert [s["value"] for s in h["sets"]] == expected
        assert h["value"] == pytest.approx(sum(expected) / 3)
        assert h["sets"][1]["metrics"] == {"avg_gap": expected[1], "ua": 91.0, "note": "synthetic"}
    assert result.chosen == {"gamma": 0.1, "lr": 0.005, "step_size": 5}
    json.dumps(result.to_dict())  # plain JSON


def test_a_point_proposed_again_is_not_evaluated_again(tmp_path):
    # TPE over 7 categorical points with a budget of 6 proposes some point twice (seeded: always the same ones)
    plan = plan_tuning("ft", budget=6, n_sets=2, seed=0, fixed={"step_size": 5}, startup_trials=1)
    rec = Recorder(diverging)
    result = run_tuning(plan, rec, tmp_path)
    assert plan.sampler_kind == "tpe" and result.n_trials == 6
    twins = [h for h in result.history if h["duplicate_of"] is not None]
    assert twins, "the seeded TPE proposed no point twice: pick another seed for this test"
    by_slot = {h["slot"]: h for h in result.history}
    for h in twins:
        first = by_slot[h["duplicate_of"]]
        assert first["slot"] < h["slot"] and first["hparams"] == h["hparams"] and first["duplicate_of"] is None
        assert (h["state"], h["value"], h["sets"]) == (first["state"], first["value"], first["sets"])
    distinct = {json.dumps(h["hparams"], sort_keys=True) for h in result.history}
    assert len(distinct) == 6 - len(twins)
    assert {json.dumps(hp, sort_keys=True) for _, hp, _ in rec.calls} == distinct  # each point evaluated once ...
    assert len(rec.calls) == sum(len(h["sets"]) + (h["state"] == "diverged") for h in result.history if h["duplicate_of"] is None)


def test_ties_go_to_the_smallest_parameters_whatever_the_grid_order(tmp_path):
    flat = Recorder(lambda m, hp, k: {"avg_gap": 1.0})
    fixed = {"step_size": 5}
    a = run_tuning(plan_tuning("ft", budget=7, n_sets=2, seed=0, fixed=fixed), flat, tmp_path / "a")
    b = run_tuning(plan_tuning("ft", budget=7, n_sets=2, seed=1, fixed=fixed), flat, tmp_path / "b")
    assert [h["hparams"] for h in a.history] != [h["hparams"] for h in b.history]  # the seeds order the grid differently
    smallest = min((json.dumps(p, sort_keys=True), p) for p in method_space("ft", fixed).grid_points())[1]
    assert smallest == {"lr": 0.0001}  # "0.0001" sorts first as text
    assert a.chosen == b.chosen == {"gamma": 0.1, "step_size": 5, **smallest}


def test_nothing_to_tune_runs_nothing(tmp_path):
    plan = plan_tuning("ft", budget=21, n_sets=2, seed=0, fixed={"lr": 0.01, "step_size": 5})
    rec = Recorder()
    result = run_tuning(plan, rec, tmp_path)
    assert plan.sampler_kind == "none" and rec.calls == [] and result.chosen == {"gamma": 0.1, "lr": 0.01, "step_size": 5}


# ---------------------------------------------------------------------------- resume
@pytest.mark.parametrize("method, budget", [("ft", 7), ("salun", 10)])
def test_a_resumed_study_makes_the_choices_of_an_uninterrupted_one(tmp_path, method, budget):
    fixed = {"step_size": 5} if method == "ft" else {}  # ft: the 7-point lr grid
    plan = plan_tuning(method, budget=budget, n_sets=2, seed=3, startup_trials=4, fixed=fixed)
    assert plan.sampler_kind == ("grid" if method == "ft" else "tpe")
    whole = run_tuning(plan, Recorder(), tmp_path / "whole")

    failing = Recorder(fail_at=2 * 5 + 1)  # slot 5 fails on its second set
    with pytest.raises(RuntimeError, match="on purpose"):
        run_tuning(plan, failing, tmp_path / "cut")
    first = [c for c in failing.calls if c[0] != "failed"]
    resumer = Recorder()
    resumed = run_tuning(plan, resumer, tmp_path / "cut")

    assert sequence(resumed) == sequence(whole)
    assert resumed.chosen == whole.chosen and resumed.best_value == whole.best_value and resumed.best_slot == whole.best_slot
    # completed trials were not rerun: only the interrupted trial (from its first set) and the rest
    assert len(first) == 11 and len(resumer.calls) == 2 * budget - 10
    assert resumer.calls[0][1] == failing.calls[-1][1]  # the interrupted trial's parameters come first
    interrupted = [h for h in resumed.history if h["state"] == "interrupted"]
    retry = [h for h in resumed.history if h["retry_of"] is not None]
    assert len(interrupted) == len(retry) == 1 and retry[0]["retry_of"] == interrupted[0]["number"] and retry[0]["slot"] == 5
    assert resumed.n_trials == budget  # the interrupted trial is not counted


def test_a_finished_study_reruns_nothing(tmp_path):
    plan = plan_tuning("salun", budget=6, n_sets=2, seed=0)
    first = run_tuning(plan, Recorder(), tmp_path)
    again = Recorder()
    second = run_tuning(plan, again, tmp_path)
    assert again.calls == [] and sequence(second) == sequence(first)


_KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, {root!r})
import optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
from lightning_unlearn.tuning import plan_tuning, run_tuning
sys.path.insert(0, {tests!r})
from test_tuning_engine import synthetic
calls = []
def evaluate(method, hp, k):
    if len(calls) == 2 * 4:  # slot 4, first set: the process dies mid-trial
        os.kill(os.getpid(), signal.SIGKILL)
    calls.append(k)
    return synthetic(method, hp, k)
run_tuning(plan_tuning("salun", budget=8, n_sets=2, seed=5, startup_trials=3), evaluate, {folder!r})
"""


def test_a_study_resumed_after_sigkill_reruns_the_running_trial(tmp_path):
    plan = plan_tuning("salun", budget=8, n_sets=2, seed=5, startup_trials=3)
    whole = run_tuning(plan, Recorder(), tmp_path / "whole")
    code = _KILLED_RUN.format(root=str(ROOT), tests=str(ROOT / "tests"), folder=str(tmp_path / "killed"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    storage = open_storage(tmp_path / "killed")
    left = optuna.load_study(study_name=plan.study_name, storage=storage).get_trials(deepcopy=False)
    assert [t.state.name for t in left] == ["COMPLETE"] * 4 + ["RUNNING"]

    rec = Recorder()
    resumed = run_tuning(plan, rec, tmp_path / "killed")
    assert sequence(resumed) == sequence(whole) and resumed.chosen == whole.chosen
    assert len(rec.calls) == 2 * 4  # slots 4..7; slots 0..3 were complete
    assert [h["state"] for h in resumed.history if h["slot"] == 4] == ["interrupted", "complete"]


def test_reopening_repairs_nothing_twice(tmp_path):
    plan = plan_tuning("ft", budget=3, n_sets=2, seed=0, fixed={"lr": 0.01})
    with pytest.raises(KeyboardInterrupt):
        run_tuning(plan, Recorder(fail_at=4, error=KeyboardInterrupt), tmp_path)
    open_study(plan, tmp_path)  # re-queues the interrupted trial once ...
    study = open_study(plan, tmp_path)  # ... and not again
    waiting = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.WAITING]
    assert len(waiting) == 1
    assert run_tuning(plan, Recorder(), tmp_path).n_trials == 3


# ---------------------------------------------------------------------------- divergence
def diverging(method, hp, k):
    """The synthetic objective, except that lr 0.005 (its best point) diverges on set 1 and lr 0.01 gives nan."""
    if hp["lr"] == 0.005 and k == 1:
        raise DivergedError("the run diverged: 3 unlearning steps had a non-finite loss")
    out = synthetic(method, hp, k)
    return {**out, "avg_gap": math.nan} if hp["lr"] == 0.01 else out


def test_diverged_trials_are_failed_counted_and_never_chosen(tmp_path):
    plan = plan_tuning("ft", budget=21, n_sets=2, seed=0)
    rec = Recorder(diverging)
    result = run_tuning(plan, rec, tmp_path)
    diverged = [h for h in result.history if h["state"] == "diverged"]
    assert result.n_diverged == len(diverged) == 6 and result.n_trials == 21 and result.n_complete == 15
    assert {h["hparams"]["lr"] for h in diverged} == {0.005, 0.01}
    assert result.chosen["lr"] not in (0.005, 0.01) and result.chosen == {"gamma": 0.1, "lr": 0.001, "step_size": 5}
    partial = next(h for h in diverged if h["hparams"]["lr"] == 0.005)
    assert partial["diverged"]["set"] == 1 and "non-finite loss" in partial["diverged"]["reason"] and len(partial["sets"]) == 1
    assert partial["value"] is None
    nan = next(h for h in diverged if h["hparams"]["lr"] == 0.01)
    assert nan["diverged"]["set"] == 0 and "is nan" in nan["diverged"]["reason"]
    # one set diverging is enough: the next set of that trial is never run
    assert len(rec.calls) == 15 * 2 + 3 * 2 + 3 * 1
    states = {t.state for t in open_study(plan, tmp_path).get_trials(deepcopy=False) if t.params["lr"] in (0.005, 0.01)}
    assert states == {optuna.trial.TrialState.FAIL}
    again = Recorder(diverging)
    assert run_tuning(plan, again, tmp_path).n_diverged == 6 and again.calls == []  # diverged trials are not retried


def test_when_every_trial_diverges_nothing_is_chosen(tmp_path):
    def always(method, hp, k):
        raise DivergedError("the run diverged: outputs has 10 non-finite entries")

    result = run_tuning(plan_tuning("salun", budget=4, n_sets=2, seed=0), always, tmp_path)
    assert result.chosen is None and result.best_value is None and result.n_diverged == result.n_trials == 4


# ---------------------------------------------------------------------------- declarations
def test_the_declaration_is_stored_and_returned(tmp_path):
    plan = plan_tuning("salun", budget=10, n_sets=2, seed=7, fixed={"epochs": 5}, context={"forget": "random:0.1"}, kind="random")
    decl = plan.declaration()
    assert json.loads(json.dumps(decl)) == decl
    assert decl["space"]["constants"] == {"epochs": 5, "gamma": 0.1} and decl["budget"] == 10 and decl["n_sets"] == 2
    assert decl["objective"]["name"] == "avg_gap" and decl["seed"] == 7 and decl["context"] == {"forget": "random:0.1"}
    assert decl["sampler"]["kind"] == "tpe" and decl["sampler"]["n_startup_trials"] == 5 and decl["sampler"]["constant_liar"] is True
    study = open_study(plan, tmp_path)
    assert study.study_name == "salun/avg_gap" and study.user_attrs["declaration"] == decl and study.user_attrs["seed"] == 7
    assert (tmp_path / "tuning.sqlite3").is_file()


@pytest.mark.parametrize(
    "change, field",
    [
        ({"budget": 11}, "budget"),
        ({"n_sets": 3}, "n_sets"),
        ({"seed": 8}, "seed"),
        ({"fixed": {"epochs": 5, "mask_ratio": 0.5}}, "space.axes.mask_ratio"),
        ({"fixed": {"epochs": 6}}, "space.constants.epochs"),
        ({"context": {"forget": "random:0.2"}}, "context.forget"),
        ({"startup_trials": 2}, "sampler.n_startup_trials"),
    ],
)
def test_reopening_under_another_declaration_raises(tmp_path, change, field):
    base = {"budget": 10, "n_sets": 2, "seed": 7, "fixed": {"epochs": 5}, "context": {"forget": "random:0.1"}}
    open_study(plan_tuning("salun", **base), tmp_path)
    assert open_study(plan_tuning("salun", **base), tmp_path).study_name == "salun/avg_gap"  # the same plan reopens
    with pytest.raises(StudyMismatchError, match=rf"'salun/avg_gap'.*{field.replace('.', '[.]')}"):
        run_tuning(plan_tuning("salun", **{**base, **change}), Recorder(), tmp_path)


def test_another_objective_is_another_study(tmp_path):
    plan = plan_tuning("trw", budget=3, n_sets=2, seed=0)
    run_tuning(plan, Recorder(lambda m, hp, k: {"avg_gap": 1.0, "sym_kl": hp["tau"]}), tmp_path)
    kl = plan_tuning("trw", budget=3, n_sets=2, seed=0, objective="avg_gap+kl", kind="class")
    result = run_tuning(kl, Recorder(lambda m, hp, k: {"avg_gap": 1.0, "sym_kl": hp["tau"]}), tmp_path)
    assert kl.study_name == "trw/avg_gap+kl" and result.n_trials == 3
    best = min(counted(result), key=lambda h: h["hparams"]["tau"])  # the objective grows with sym_kl = tau
    assert result.chosen == best["hparams"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_sets": 1}, r"n_sets must be an integer >= 2"),
        ({"budget": 0}, r"budget must be an integer >= 1"),
        ({"seed": 1.5}, r"seed must be an integer"),
        ({"objective": "gap"}, r"unknown tuning objective 'gap'"),
        ({"objective": "avg_gap+kl", "kind": "random"}, r"'avg_gap\+kl' applies to class forgetting"),
        ({"context": {"x": object()}}, r"context must be plain JSON"),
    ],
)
def test_bad_plans_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plan_tuning("ft", **{"budget": 5, "n_sets": 2, "seed": 0, **kwargs})
    with pytest.raises(ValueError, match="does not apply to random forgetting"):
        plan_tuning("trw", budget=5, n_sets=2, seed=0, kind="random")
