"""Many workers on one run: the storage's lock and holder records, a tuning study shared by processes, two benchmark
workers on digits (each model trained once, the single process's numbers bit for bit), a worker killed with SIGKILL in
the middle of a trial, the report from the storage, and a storage written by the release before workers."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from test_tuning_engine import synthetic

from lightning_unlearn.cache_lock import Holder, LockPolicy
from lightning_unlearn.pipeline import BenchmarkConfig, run_experiment
from lightning_unlearn.pipeline.output import register_storage
from lightning_unlearn.pipeline.store import RUNS_STUDY, UNIT_DISTRIBUTION, UNIT_PARAM, RunStore, default_storage_url, unit_id
from lightning_unlearn.pipeline.workers import worker_environments, workers_summary
from lightning_unlearn.tuning import plan_tuning, run_tuning
from lightning_unlearn.tuning.sharing import BEAT_KEY, HOLDER_KEY, Claims, open_storage_url, storage_file

ROOT = Path(__file__).resolve().parents[1]
HELPER = Path(__file__).with_name("workers_helper.py")
FIXTURE = Path(__file__).with_name("fixtures") / "main_storage.sqlite3"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
#: the run of the fixture: made by the release before workers (commit 2bb35bc) with these options, killed mid-tuning
FLAGS = ["--max-train", "300", "--max-test", "150", "--epochs", "2", "--unlearn-epochs", "1", "--methods", "ft,salun", "--rmia-references", "2",
         "--max-trials", "3", "--seeds", "0", "--forget-seeds", "0"]


def tiny(cache_dir) -> BenchmarkConfig:
    """The config of :data:`FLAGS`: 1 original x 1 forget set, 2 retrained models per set, 2 tuning sets, 3 trials per method."""
    return BenchmarkConfig(max_train=300, max_test=150, epochs=2, unlearn_epochs=1, methods=("ft", "salun"), rmia_references=2, max_trials=3,
                           seeds=(0,), forget_seeds=(0,), cache_dir=str(cache_dir))


def comparable(res: dict) -> dict:
    """What must not depend on who measured what: every cell's figures, the tuning trials and choices, the verdicts
    (times, cache hits and the run's statistics aside)."""
    out = {}
    for name, section in res["objectives"].items():
        out[name] = {
            "cells": {m: {k: v for k, v in e["cells"].items() if k != "seconds"} for m, e in section["methods"].items()},
            "per_seed": {m: [{k: v for k, v in r.items() if k not in ("seconds", "from_cache")} for r in e["per_seed"]] for m, e in section["methods"].items()},
            "tuning": section["tuning"], "paired": section["paired"], "statement": section["statement"], "noise_floor": section["noise_floor"],
        }
    return json.loads(json.dumps(out))


def helper(job: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HELPER), json.dumps(job)], env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(procs, timeout: float = 600) -> None:
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        assert p.returncode == 0, out[-3000:]


def frozen(system_attrs: dict, started: datetime.datetime | None = None, trial_id: int = 7) -> FrozenTrial:
    return FrozenTrial(number=0, state=TrialState.RUNNING, value=None, values=None, datetime_start=started or datetime.datetime.now(),
                       datetime_complete=None, params={}, distributions={}, user_attrs={}, system_attrs=system_attrs, intermediate_values={},
                       trial_id=trial_id)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------------------- storages and holders
def test_storage_urls_name_their_files_and_a_journal_holds_a_run(tmp_path):
    assert storage_file(f"sqlite:///{tmp_path}/a.sqlite3") == tmp_path / "a.sqlite3" and storage_file("mysql://host/db") is None
    assert storage_file(f"journal://{tmp_path}/run.log") == tmp_path / "run.log"
    assert isinstance(open_storage_url(f"journal://{tmp_path}/j/run.log"), optuna.storages.JournalStorage)
    url = f"journal://{tmp_path}/run.log"
    store = RunStore(url)
    assert not store.exists()
    store.start({"version": 1})
    assert store.run("a", lambda: {"figures": {"ua": 1.5}}).figures == {"ua": 1.5} and (tmp_path / "run.log").is_file()
    assert RunStore(url).lookup("a").figures == {"ua": 1.5} and RunStore(url).existing_declaration() == {"version": 1}
    named = RunStore(url, study="second")
    assert named.existing_declaration() is None and named.tuning_study_name("ft/avg_gap") == "second/ft/avg_gap"
    assert RunStore(url).tuning_study_name("ft/avg_gap") == "ft/avg_gap"


def test_a_trial_is_abandoned_when_its_holder_is_dead():
    """The cache locks' takeover rule, on trials: same host by pid, another host by heartbeat, no record: an earlier release's."""
    claims = Claims(optuna.storages.InMemoryStorage(), policy=LockPolicy(stale_after=300))
    me = Holder.this_process(lock_ino=0)
    live_here = Holder(me.host, me.pid_ns, os.getppid(), None, 0.0, "p", 0)
    dead_here = Holder(me.host, me.pid_ns, dead_pid(), None, 0.0, "d", 0)
    away = Holder("another-host", me.pid_ns, 1, None, 0.0, "a", 0)
    now = time.time()
    assert claims.abandoned(frozen({}))  # no record: left by a release that assumed one process per storage
    assert not claims.abandoned(frozen({HOLDER_KEY: live_here.to_json(), BEAT_KEY: 0.0}))  # silent for ever, but runs here
    assert claims.abandoned(frozen({HOLDER_KEY: dead_here.to_json(), BEAT_KEY: now}))  # beats, but its pid has ended
    assert not claims.abandoned(frozen({HOLDER_KEY: away.to_json(), BEAT_KEY: now - 299}))
    assert claims.abandoned(frozen({HOLDER_KEY: away.to_json(), BEAT_KEY: now - 301}))
    mine = frozen(claims.record(), trial_id=11)
    assert claims.abandoned(mine)  # this process's record on a trial it does not hold (any more)
    with claims.hold(claims.storage, 11):
        assert not claims.abandoned(mine) and claims.live(mine)
    assert Claims.private().abandoned(frozen({HOLDER_KEY: live_here.to_json()}))  # in memory: only what this process holds runs


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_the_lock_admits_one_process_at_a_time(tmp_path, kind):
    """Three processes, five rounds each, a read-sleep-write of one counter under the lock: no update is lost."""
    url = f"sqlite:///{tmp_path}/s.sqlite3" if kind == "sqlite" else f"journal://{tmp_path}/s.log"
    optuna.create_study(storage=open_storage_url(url), study_name="runs.lock")  # before the race (each creates it otherwise)
    procs = [helper({"storage": url, "signals": str(tmp_path), "mode": "lock", "rounds": 5, "hold": 0.02}) for _ in range(3)]
    finish(procs)
    assert (tmp_path / "counter").read_text() == "15"
    lock = optuna.load_study(study_name="runs.lock", storage=open_storage_url(url)).get_trials()
    assert len(lock) == 15 and all(t.state == TrialState.COMPLETE for t in lock)


def test_the_lock_of_a_killed_holder_is_taken_over(tmp_path, caplog):
    url = f"sqlite:///{tmp_path}/s.sqlite3"
    proc = helper({"storage": url, "signals": str(tmp_path), "mode": "die-holding"})
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL and (tmp_path / "holding").is_file()
    claims = Claims(open_storage_url(url), lock_study="runs.lock", policy=LockPolicy(stale_after=300, heartbeat=30, poll=0.02))
    start = time.monotonic()
    with claims.lock():  # stale_after is 300 s: only the dead pid lets it in this soon
        pass
    assert time.monotonic() - start < 30 and "no longer running; taking over" in caplog.text
    states = [t.state for t in optuna.load_study(study_name="runs.lock", storage=url).get_trials()]
    assert states == [TrialState.FAIL, TrialState.COMPLETE]


def _left_running(store: RunStore, key: str, holder: Holder) -> None:
    """A trial of unit ``key`` held by ``holder`` (as :meth:`RunStore.try_run` creates it)."""
    template = FrozenTrial(number=-1, state=TrialState.RUNNING, value=None, values=None, datetime_start=datetime.datetime.now(), datetime_complete=None,
                           params={UNIT_PARAM: unit_id(key)}, distributions={UNIT_PARAM: UNIT_DISTRIBUTION}, user_attrs={"key": key},
                           system_attrs={HOLDER_KEY: holder.to_json(), BEAT_KEY: time.time()}, intermediate_values={}, trial_id=-1)
    store.study._storage.create_new_trial(store.study._study_id, template)


def test_a_unit_a_live_worker_runs_is_left_to_it_and_a_dead_workers_is_taken(tmp_path):
    store = RunStore(default_storage_url(tmp_path))
    store.start({"version": 1})
    store.run("first", lambda: {"figures": {}})
    me = Holder.this_process(lock_ino=0)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        _left_running(store, "busy", Holder(me.host, me.pid_ns, sleeper.pid, None, 0.0, "s", 0))
        _left_running(store, "orphan", Holder(me.host, me.pid_ns, dead_pid(), None, 0.0, "o", 0))
        other = RunStore(store.url)  # another worker
        assert other.try_run("busy", lambda: 1 / 0) is None  # a live worker runs it: not taken, not waited for
        assert other.taken()[1] == {"busy"}
        assert other.try_run("orphan", lambda: {"figures": {"ua": 2.0}}).figures == {"ua": 2.0}
    finally:
        sleeper.kill()
        sleeper.wait()
    assert other.try_run("busy", lambda: {"figures": {"ua": 3.0}}).figures == {"ua": 3.0}  # its holder has ended meanwhile
    states = sorted((t.user_attrs["key"], t.state.name) for t in other.study.get_trials())
    assert states == [("busy", "COMPLETE"), ("busy", "FAIL"), ("first", "COMPLETE"), ("orphan", "COMPLETE"), ("orphan", "FAIL")]


# ---------------------------------------------------------------------------- tuning shared by processes
@pytest.mark.parametrize(("plan", "kind"), [
    ({"method": "ft", "budget": 7, "n_sets": 2, "seed": 3, "fixed": {"step_size": 5}}, "sqlite"),  # the 7-point grid
    ({"method": "ft", "budget": 6, "n_sets": 2, "seed": 0, "fixed": {"step_size": 5}, "startup_trials": 2}, "journal"),  # TPE proposing twins
    ({"method": "salun", "budget": 8, "n_sets": 2, "seed": 5, "startup_trials": 3}, "sqlite"),  # TPE over a float axis
])
def test_two_processes_sharing_a_study_make_the_choices_of_one(tmp_path, plan, kind):
    """Grid slots and TPE startup slots run at once; a later TPE slot waits for the earlier ones, so the proposals, the
    duplicates, the values and the choice equal one process's (run_tuning), and no point is evaluated twice."""
    alone = run_tuning(plan_tuning(**plan), synthetic, tmp_path / "alone")
    url = f"sqlite:///{tmp_path}/shared.sqlite3" if kind == "sqlite" else f"journal://{tmp_path}/shared.log"
    open_storage_url(url)  # the storage exists before the workers start (the benchmark declares the run first)
    procs = [helper({"storage": url, "signals": str(tmp_path), "mode": "tune", "plan": plan, "delay": 0.05}) for _ in range(2)]
    finish(procs)
    study = optuna.load_study(study_name=plan_tuning(**plan).study_name, storage=open_storage_url(url))
    from lightning_unlearn.tuning import tuning_result

    shared = tuning_result(study, plan_tuning(**plan))
    assert shared.chosen == alone.chosen and shared.best_value == alone.best_value and shared.n_trials == alone.n_trials
    keep = ("slot", "state", "hparams", "value", "sets", "duplicate_of", "diverged")
    assert [{k: h[k] for k in keep} for h in shared.history] == [{k: h[k] for k in keep} for h in alone.history]
    calls = [json.dumps(c, sort_keys=True) for f in tmp_path.glob("tune-*.json") for c in json.loads(f.read_text())]
    assert len(calls) == len(set(calls)) == sum(len(h["sets"]) for h in alone.history if h["duplicate_of"] is None)


# ---------------------------------------------------------------------------- two benchmark workers on digits
@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The tiny run by one process: ``(results, root)``."""
    root = tmp_path_factory.mktemp("single")
    return run_experiment(tiny(root / "cache"), root / "out"), root


def _cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "lightning_unlearn.cli", *args], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _counted_once(url: str, study: str = RUNS_STUDY) -> None:
    """Every unit has one outcome, every tuning study exactly its budget's counted trials."""
    storage = open_storage_url(url)
    runs = optuna.load_study(study_name=study, storage=storage).get_trials()
    complete = [t.user_attrs["key"] for t in runs if t.state == TrialState.COMPLETE]
    assert len(complete) == len(set(complete))
    assert not [t for t in runs if t.state == TrialState.RUNNING]
    for name in ("ft/avg_gap", "salun/avg_gap"):
        trials = optuna.load_study(study_name=name if study == RUNS_STUDY else f"{study}/{name}", storage=storage).get_trials()
        counted = [t for t in trials if t.state == TrialState.COMPLETE or "diverged" in t.user_attrs]
        assert sorted(t.system_attrs["lightning_unlearn:slot"] for t in counted) == [0, 1, 2], name


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    """`lightning-unlearn benchmark --workers 2` on a fresh cache: ``(results, root)``."""
    root = tmp_path_factory.mktemp("two")
    proc = _cli("benchmark", *FLAGS, "--cache-dir", str(root / "cache"), "--out", str(root / "out"), "--workers", "2")
    assert "worker 0: [" in proc.stderr and "worker 1: [" in proc.stderr
    return json.loads((root / "out" / "results.json").read_text()), root


def test_two_workers_train_every_model_once_and_measure_what_one_process_measures(single, two_workers):
    res, root = two_workers
    assert comparable(res) == comparable(single[0])
    records = RunStore(default_storage_url(root / "out")).workers()
    assert len(records) == 2 and all(r["units_run"] > 0 for r in records.values())  # both worked
    files = sorted((root / "cache").glob("models/*.pt")) + sorted((root / "cache").glob("references/*/ref*.pt"))
    models = 1 + 3 * 2 + 2  # O + (F + K) R + the RMIA references
    assert len(files) == models and workers_summary(records)["models_trained"] == models  # trained exactly once, by one of the two
    assert res["run"]["workers"] == 2 and res["run"]["units_run"] == single[0]["run"]["units_run"]
    _counted_once(default_storage_url(root / "out"))


def test_the_report_of_the_storage_is_the_benchmarks_report(two_workers, tmp_path):
    res, root = two_workers
    _cli("report", "--storage", default_storage_url(root / "out"), "--out", str(tmp_path / "again"))
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert {k: v for k, v in again.items() if k not in ("run", "provenance")} == {k: v for k, v in res.items() if k not in ("run", "provenance")}

    def without_provenance(text: str) -> str:
        return text.split("## Provenance")[0]

    assert without_provenance((tmp_path / "again" / "report.md").read_text()) == without_provenance((root / "out" / "report.md").read_text())
    assert again["run"]["workers"] == 2 and again["run"]["models_trained"] == res["run"]["models_trained"]


def _wait_for_trial_of(url: str, pid: int, proc: subprocess.Popen, timeout: float = 600) -> None:
    """Until a tuning trial held by ``pid`` is running (its first set under way)."""
    storage = open_storage_url(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
            if summary.study_name.count("/") != 1:
                continue
            for t in optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(states=(TrialState.RUNNING,)):
                holder = Holder.from_json(t.system_attrs.get(HOLDER_KEY, ""))
                if holder is not None and holder.pid == pid and t.params:
                    return
        time.sleep(0.05)
    raise AssertionError("the worker never ran a tuning trial")


@contextlib.contextmanager
def _throttled(pid: int, run_s: float = 0.01, stop_s: float = 0.09):
    """Within the block, ``pid`` runs ``run_s`` of every ``run_s + stop_s`` seconds (SIGSTOP / SIGCONT from a thread);
    it is continued on exit. A claim held while stopped delays the others by ``stop_s`` at most."""
    done = threading.Event()

    def toggle() -> None:
        while not done.is_set():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
            done.wait(stop_s)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
            time.sleep(run_s)

    thread = threading.Thread(target=toggle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def _launcher(tmp_path: Path) -> dict[str, str]:
    """The environment of the example scripts: ``lightning-unlearn`` on the PATH runs this repository's code."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "lightning-unlearn").write_text(f"#!/bin/sh\nexec {sys.executable} -m lightning_unlearn.cli \"$@\"\n")
    (bin_dir / "lightning-unlearn").chmod(0o755)
    return {**ENV, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_a_slurm_worker_killed_in_a_trial_loses_nothing_and_counts_nothing_twice(single, tmp_path):
    """examples/slurm_workers.sh as array tasks 0 (benchmark) and 1 (worker) on a journal file; SIGKILL of task 1 in the
    middle of a tuning trial; task 1 started again; the run completes with the single process's numbers, every unit and
    every slot counted once, and every file of the cache loads."""
    env = {**_launcher(tmp_path), "SLURM_CPUS_PER_TASK": "1"}
    config = tmp_path / "run.yaml"
    config.write_text(_cli("benchmark", *FLAGS, "--print_config").stdout)
    out = tmp_path / "run"
    url = f"journal://{out}/run.log"

    def task(i: int) -> subprocess.Popen:
        return subprocess.Popen(["bash", str(ROOT / "examples" / "slurm_workers.sh"), str(config), str(out)], env={**env, "SLURM_ARRAY_TASK_ID": str(i)},
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    # the benchmark runs at a tenth of its speed (SIGSTOP/SIGCONT) until the worker holds a trial: otherwise the tiny run's
    # trials may all be done by the benchmark before the worker has read the declaration (it polls every 2 s), and nobody
    # is killed in a trial
    victim, bench = task(1), task(0)
    try:
        with _throttled(bench.pid):
            _wait_for_trial_of(url, victim.pid, victim)
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=60)
        again = task(1)
        _, err = again.communicate(timeout=900)
        assert again.returncode == 0, err[-3000:]
        _, err = bench.communicate(timeout=900)
        assert bench.returncode == 0, err[-3000:]
    finally:
        for p in (bench, victim):
            if p.poll() is None:
                p.kill()
                p.wait()
    res = json.loads((out / "results.json").read_text())
    assert comparable(res) == comparable(single[0])
    _counted_once(url)
    storage = open_storage_url(url)
    killed = [t for name in ("ft/avg_gap", "salun/avg_gap") for t in optuna.load_study(study_name=name, storage=storage).get_trials()
              if Holder.from_json(t.system_attrs.get(HOLDER_KEY, "")) and Holder.from_json(t.system_attrs[HOLDER_KEY]).pid == victim.pid
              and t.state == TrialState.FAIL]
    assert killed, "the killed worker's trial was not failed"
    # every file of the shared cache loads: a fresh run trains nothing and finds no damaged file
    from lightning_unlearn.pipeline.stages import Experiment

    exp = Experiment(tiny(out / "cache").validate(), RunStore(None))
    exp.train_models()
    assert exp.counts()["models_trained"] == 0 and not exp.cache.damaged


@pytest.mark.slow
def test_the_multi_gpu_example_on_two_cpu_workers(single, tmp_path):
    """examples/multi_gpu_workers.sh in its tiny mode: benchmark and one worker, the single process's numbers."""
    proc = subprocess.run(["bash", str(ROOT / "examples" / "multi_gpu_workers.sh"), "", str(tmp_path / "run")], env={**_launcher(tmp_path), "TINY": "1"},
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert comparable(json.loads((tmp_path / "run" / "results.json").read_text())) == comparable(single[0])
    assert len(RunStore(default_storage_url(tmp_path / "run")).workers()) == 2


# ---------------------------------------------------------------------------- the release before workers
def test_a_storage_written_before_workers_resumes_to_the_same_results(single, tmp_path):
    """tests/fixtures/main_storage.sqlite3: the tiny run of the release before workers, SIGKILLed in the middle of the
    tuning (a unit and a TPE trial left RUNNING without holder records). Its declaration is accepted, the trials it left
    are failed and rerun, and the results equal a fresh run's."""
    out = tmp_path / "out"
    register_storage(out)
    shutil.copy(FIXTURE, out / "study.sqlite3")
    before = optuna.load_study(study_name="runs", storage=default_storage_url(out)).get_trials()
    assert [t.state.name for t in before].count("RUNNING") == 1 and not any(HOLDER_KEY in t.system_attrs for t in before)
    res = run_experiment(tiny(single[1] / "cache"), out)
    assert comparable(res) == comparable(single[0]) and res["run"]["models_trained"] == 0 and 0 < res["run"]["units_run"] < single[0]["run"]["units_run"]
    _counted_once(default_storage_url(out))


# ---------------------------------------------------------------------------- pieces
def test_workers_get_one_gpu_each_round_robin_and_one_thread():
    envs = worker_environments(3, "auto", threads=2, gpus=["4", "7"])
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["4", "7", "4"] and {e["OMP_NUM_THREADS"] for e in envs} == {"2"}
    assert all("CUDA_VISIBLE_DEVICES" not in e for e in worker_environments(2, "cpu", gpus=["0"]))
    assert all("CUDA_VISIBLE_DEVICES" not in e for e in worker_environments(2, "auto", gpus=[]))


def test_bad_worker_input_is_one_line(tmp_path):
    from lightning_unlearn.pipeline import ConfigError

    with pytest.raises(ConfigError, match="workers must be a positive number"):
        run_experiment(tiny(tmp_path / "cache"), tmp_path / "out", workers=0)
    with pytest.raises(ConfigError, match="share the run's storage"):
        run_experiment(tiny(tmp_path / "cache"), workers=2)
    with pytest.raises(ConfigError, match="workers take one device each"):
        run_experiment(tiny(tmp_path / "cache").replace(strategy="ddp"), tmp_path / "out", workers=2)
    empty = subprocess.run([sys.executable, "-m", "lightning_unlearn.cli", "worker", "--storage", f"sqlite:///{tmp_path}/none.sqlite3", "--wait", "0"],
                           capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
    assert empty.returncode == 2 and "holds no benchmark run" in empty.stderr and len(empty.stderr.strip().splitlines()) == 1
    bad = subprocess.run([sys.executable, "-m", "lightning_unlearn.cli", "report", "--storage", f"sqlite:///{tmp_path}/s.sqlite3", "--out",
                          str(tmp_path / "r"), "--study", "a/b"], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
    assert bad.returncode == 2 and "--study must be a name without '/'" in bad.stderr
