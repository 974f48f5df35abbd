"""One builder per cache entry: the takeover rule by hand, then real processes racing, killed and taken over."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from lightning_unlearn.cache import ArtefactCache
from lightning_unlearn.cache_lock import STALE_AFTER_ENV, BuildLock, Holder, LockPolicy, LockView, ddp_job, judge, process_start, runs
from lightning_unlearn.fileio import temporaries_of

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("cache_lock_worker.py")
#: Waiters poll every 20 ms; a dead foreign holder is taken over after 0.6 s of silence.
TINY = {"stale_after": 0.6, "heartbeat": 0.1, "poll": 0.02}
#: Only the same-host rule can fire within a test (a silent lock would wait 5 minutes).
PATIENT = {"stale_after": 300.0, "heartbeat": 30.0, "poll": 0.02}
SETTINGS = {"role": "original", "seed": 0}


def dead_pid() -> int:
    """The pid of a process that has just ended (on Linux a pid is not reused this soon)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def here(pid: int, lock_ino: int, *, host: str | None = None, pid_started: int | None = None, token: str = "t") -> Holder:
    me = Holder.this_process(lock_ino)
    return Holder(host or me.host, me.pid_ns, pid, pid_started, time.time(), token, lock_ino)


# ---------------------------------------------------------------------------- the rule, by hand
ME = Holder("node-a", "pid:[1]", 10, 555, 0.0, "me", 0)


@pytest.mark.parametrize(
    ("holder", "beat", "lock_mtime", "alive", "stale", "phrase"),
    [
        (Holder("node-a", "pid:[1]", 77, 9, 0.0, "x", 5), 0.0, 0.0, True, False, "is running"),  # silent for 1000 s, but runs here
        (Holder("node-a", "pid:[1]", 77, 9, 0.0, "x", 5), 999.0, 999.0, False, True, "has ended"),
        (Holder("node-b", "pid:[1]", 77, 9, 0.0, "x", 5), 699.0, 0.0, False, True, "for 301 s"),
        (Holder("node-b", "pid:[1]", 77, 9, 0.0, "x", 5), 701.0, 0.0, False, False, "for 299 s"),
        (Holder("node-a", "pid:[2]", 77, 9, 0.0, "x", 5), 701.0, 0.0, False, False, "no heartbeat"),  # another container: not probed
        (None, None, 699.0, False, True, "without a holder record, 301 s old"),
        (None, None, 701.0, False, False, "299 s old"),
        (Holder("node-a", "pid:[1]", 77, 9, 0.0, "x", 4), 999.0, 701.0, False, False, "earlier lock"),  # a record of inode 4, lock is 5
        (Holder("node-a", "pid:[1]", 77, 9, 0.0, "x", 4), 999.0, 699.0, False, True, "earlier lock"),
    ],
)
def test_takeover_rule(holder, beat, lock_mtime, alive, stale, phrase):
    probed = []

    def probe(h):
        probed.append(h)
        return alive

    verdict = judge(LockView(5, lock_mtime, holder, beat), here=ME, now=1000.0, stale_after=300.0, alive=probe)
    assert verdict.stale is stale and phrase in verdict.reason, verdict
    same_host = holder is not None and holder.lock_ino == 5 and holder.host == "node-a" and holder.pid_ns == "pid:[1]"
    assert probed == ([holder] if same_host else [])  # another host's pid is never probed here


def test_runs_tells_live_dead_and_reused_pids():
    me = os.getpid()
    assert runs(Holder("h", "", me, process_start(me), 0.0, "t", 0))
    assert runs(Holder("h", "", me, None, 0.0, "t", 0))  # start time unknown: the pid decides
    assert not runs(Holder("h", "", dead_pid(), None, 0.0, "t", 0))
    if process_start(me) is not None:  # Linux: a pid now held by a process that started at another time was reused
        assert not runs(Holder("h", "", me, process_start(me) + 1, 0.0, "t", 0))


def test_holder_records_round_trip_and_malformed_ones_are_none():
    h = Holder.this_process(123)
    assert Holder.from_json(h.to_json()) == h and h.pid == os.getpid() and h.host == socket.gethostname()
    good = json.loads(h.to_json())
    for bad in ("", "{", "[]", json.dumps({**good, "pid": "12"}), json.dumps({**good, "extra": 1}), h.to_json()[:-5]):
        assert Holder.from_json(bad) is None, bad


def test_ddp_job_is_the_rendezvous_of_ranks_only(monkeypatch):
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.7")
    monkeypatch.setenv("MASTER_PORT", "29500")
    assert ddp_job() is None  # an exported rendezvous alone does not make a process a rank
    monkeypatch.setenv("LOCAL_RANK", "0")  # Lightning's launcher, rank 0 after its first fit
    assert ddp_job() == "10.0.0.7:29500"
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    assert ddp_job() == f"{socket.gethostname()}/127.0.0.1:29500"  # loopback: qualified by host


RANK0 = Holder("node-a", "pid:[1]", 100, 1, 0.0, "r0", 5, ppid=50, job="10.0.0.7:29500")


@pytest.mark.parametrize(
    ("other", "same"),
    [
        (Holder("node-b", "pid:[9]", 7, 1, 0.0, "x", 5, ppid=3, job="10.0.0.7:29500"), True),  # same rendezvous, another node
        (Holder("node-a", "pid:[1]", 101, 1, 0.0, "x", 5, ppid=100, job=None), True),  # its child (launched before it had a rendezvous)
        (Holder("node-a", "pid:[1]", 50, 1, 0.0, "x", 5, ppid=1, job=None), True),  # its parent
        (Holder("node-a", "pid:[1]", 102, 1, 0.0, "x", 5, ppid=50, job=None), False),  # a sibling without the rendezvous: independent
        (Holder("node-b", "pid:[1]", 50, 1, 0.0, "x", 5, ppid=1, job=None), False),  # pid 50 on another host is not its parent
        (Holder("node-a", "pid:[1]", 100, 1, 0.0, "x", 5, ppid=50, job="10.0.0.7:29500"), False),  # itself (another thread)
        (Holder("node-a", "pid:[1]", 7, 1, 0.0, "x", 5, ppid=3, job="10.0.0.7:29501"), False),  # another job
    ],
)
def test_same_job(other, same):
    assert RANK0.same_job(other) is same
    outside = Holder("node-a", "pid:[1]", 100, 1, 0.0, "r0", 5, ppid=50, job=None)
    assert not outside.same_job(other)  # a process outside a DDP job never joins anyone


def test_policy_defaults_validation_and_environment(monkeypatch):
    p = LockPolicy()
    assert (p.stale_after, p.heartbeat, p.poll) == (300.0, 30.0, 1.0)
    assert LockPolicy(stale_after=3).heartbeat == 0.3 and LockPolicy(stale_after=3).poll == 0.3
    with pytest.raises(ValueError, match="stale_after must be a positive.*-1"):
        LockPolicy(stale_after=-1)
    with pytest.raises(ValueError, match=r"heartbeat must be in \(0, stale_after / 3\] = \(0, 20\].*30"):
        LockPolicy(stale_after=60, heartbeat=30)
    with pytest.raises(ValueError, match="poll must be a positive.*0"):
        LockPolicy(poll=0)
    monkeypatch.setenv(STALE_AFTER_ENV, "90")
    assert LockPolicy.from_env() == LockPolicy(stale_after=90) and ArtefactCache("x", "models").lock_policy.stale_after == 90
    monkeypatch.setenv(STALE_AFTER_ENV, "soon")
    with pytest.raises(ValueError, match=r"LIGHTNING_UNLEARN_LOCK_TIMEOUT must be a positive number of seconds, got 'soon'"):
        LockPolicy.from_env()


# ---------------------------------------------------------------------------- one process
def test_the_holder_record_names_this_process_beats_and_goes_with_the_lock(tmp_path):
    lock = BuildLock(tmp_path / "k.lock", LockPolicy(stale_after=0.3, heartbeat=0.05, poll=0.01))
    with lock:
        record = Holder.from_json((tmp_path / "k.lock.json").read_text())
        assert record == lock.holder and record.pid == os.getpid() and record.lock_ino == (tmp_path / "k.lock").stat().st_ino
        first = (tmp_path / "k.lock.json").stat().st_mtime_ns
        time.sleep(0.3)
        assert (tmp_path / "k.lock.json").stat().st_mtime_ns > first  # the heartbeat touched it
    assert list(tmp_path.iterdir()) == []


def test_a_holder_whose_record_was_replaced_warns_and_leaves_the_new_record(tmp_path, caplog):
    lock = BuildLock(tmp_path / "k.lock", LockPolicy(stale_after=0.3, heartbeat=0.05, poll=0.01), what="models k")
    with caplog.at_level(logging.WARNING, logger="lightning_unlearn.cache_lock"):
        with lock:
            other = here(12345, lock.holder.lock_ino, host="node-b", token="successor")
            (tmp_path / "k.lock.json").write_text(other.to_json())
            time.sleep(0.3)
    assert caplog.text.count("took over its lock") == 1 and "models k" in caplog.text
    assert Holder.from_json((tmp_path / "k.lock.json").read_text()) == other  # not ours to remove


def test_threads_of_one_process_build_once(tmp_path):
    calls, out = [], {}

    def build():
        calls.append(1)
        time.sleep(0.5)
        return {"w": torch.randn(3)}, {}

    def work(i):
        out[i] = ArtefactCache(tmp_path, "models", lock_policy=LockPolicy(**TINY)).get_or_build(SETTINGS, build)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and sorted(e.from_cache for e in out.values()) == [False, True, True]
    assert all(torch.equal(e.value["w"], out[0].value["w"]) for e in out.values())
    assert [p.name for p in (tmp_path / "models").iterdir()] == [f"{out[0].key}.pt"]


# ---------------------------------------------------------------------------- hand-made stale locks
def _plant_lock(cache: ArtefactCache, holder_of=None, age: float = 0.0) -> Path:
    """An empty lock file (as no filelock release takes over by itself) with ``holder_of(lock_ino)``'s record, ``age`` seconds old."""
    key = cache.key(SETTINGS)
    lock = cache.lock_path(key)
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.touch()
    record = lock.with_name(lock.name + ".json")
    if holder_of is not None:
        record.write_text(holder_of(lock.stat().st_ino).to_json())
    then = time.time() - age
    for path in (lock, record):
        if path.exists():
            os.utime(path, (then, then))
    return record


def _within(seconds: float, fn):
    """``fn()``, which must return within ``seconds``: a lock never taken over fails the test instead of hanging it."""
    out: dict = {}
    thread = threading.Thread(target=lambda: out.setdefault("value", fn()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert "value" in out, f"still waiting after {seconds} s: the lock was not taken over"
    return out["value"]


def _built_value(cache: ArtefactCache):
    return _within(60, lambda: cache.get_or_build(SETTINGS, lambda: ({"w": torch.full((2,), 7.0)}, {})))


def test_a_record_of_a_dead_pid_on_this_host_is_taken_over(tmp_path, caplog):
    cache = ArtefactCache(tmp_path, "models", lock_policy=LockPolicy(**PATIENT))
    pid = dead_pid()
    _plant_lock(cache, lambda ino: here(pid, ino))
    with caplog.at_level(logging.WARNING, logger="lightning_unlearn.cache_lock"):
        entry = _built_value(cache)
    assert not entry.from_cache and torch.equal(entry.value["w"], torch.full((2,), 7.0))
    assert f"pid {pid} on host" in caplog.text and "has ended" in caplog.text
    assert [p.name for p in cache.folder.iterdir()] == [f"{entry.key}.pt"]


def test_an_old_foreign_record_is_taken_over(tmp_path, caplog):
    cache = ArtefactCache(tmp_path, "models", lock_policy=LockPolicy(**TINY))
    _plant_lock(cache, lambda ino: here(4242, ino, host="node-elsewhere"), age=5.0)
    with caplog.at_level(logging.WARNING, logger="lightning_unlearn.cache_lock"):
        entry = _built_value(cache)
    assert not entry.from_cache and "no heartbeat from pid 4242 on host 'node-elsewhere'" in caplog.text


def test_a_lock_without_a_record_is_taken_over_once_old(tmp_path, caplog):
    cache = ArtefactCache(tmp_path, "models", lock_policy=LockPolicy(**TINY))
    _plant_lock(cache, age=5.0)
    with caplog.at_level(logging.WARNING, logger="lightning_unlearn.cache_lock"):
        assert not _built_value(cache).from_cache
    assert "without a holder record" in caplog.text


def test_a_rank_of_the_holders_ddp_job_builds_with_it_without_lock_or_write(tmp_path, caplog, monkeypatch):
    """Waiting would deadlock the job's collective fit: the rank builds too, and leaves lock, record and writing to the holder."""
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.7")
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.setenv("LOCAL_RANK", "1")
    cache = ArtefactCache(tmp_path, "models", lock_policy=LockPolicy(**PATIENT))
    holder_of = lambda ino: Holder("node-b", "pid:[9]", 4242, None, time.time(), "r0", ino, 1, "10.0.0.7:29500")  # noqa: E731
    record = _plant_lock(cache, holder_of)
    leftover = cache.folder / f".{cache.key(SETTINGS)}.pt.abcdefgh.tmp"  # as if the holder were writing right now
    leftover.write_bytes(b"in progress")
    with caplog.at_level(logging.INFO, logger="lightning_unlearn.cache_lock"):
        entry = _built_value(cache)
    assert not entry.from_cache and torch.equal(entry.value["w"], torch.full((2,), 7.0)) and cache.built == [entry.key]
    assert "a rank of this job: building it together" in caplog.text
    assert not cache.path(entry.key).exists() and leftover.exists()  # the holder writes, and its file is left alone
    assert Holder.from_json(record.read_text()).token == "r0" and cache.lock_path(entry.key).exists()


def test_a_live_foreign_holder_is_waited_for_until_its_heartbeat_stops(tmp_path, caplog):
    """Touched every 0.1 s, a foreign record holds its lock for 2.5 s (2.5x stale_after); once silent, it is taken over."""
    cache = ArtefactCache(tmp_path, "models", lock_policy=LockPolicy(stale_after=1.0, heartbeat=0.1, poll=0.02))  # 10 beats of margin
    record = _plant_lock(cache, lambda ino: here(4242, ino, host="node-elsewhere"))
    beating, out = threading.Event(), {}
    beating.set()

    last_beat = []

    def heartbeat():
        while beating.is_set():
            os.utime(record)
            last_beat.append(time.time())
            time.sleep(0.1)

    calls = []

    def build():
        calls.append(time.time())
        return {"w": torch.ones(1)}, {}

    beat = threading.Thread(target=heartbeat)
    beat.start()
    caplog.set_level(logging.INFO, logger="lightning_unlearn.cache_lock")
    waiter = threading.Thread(target=lambda: out.setdefault("entry", cache.get_or_build(SETTINGS, build)), daemon=True)
    waiter.start()
    time.sleep(2.5)
    beating.clear()
    beat.join()
    assert not calls  # still waiting while the heartbeat went on
    waiter.join(timeout=30)
    assert not waiter.is_alive() and calls and calls[0] - last_beat[-1] >= 0.95  # taken over only after stale_after of silence
    waits = [r for r in caplog.records if "waiting for it" in r.getMessage()]
    assert len(waits) == 1 and waits[0].levelno == logging.INFO and "pid 4242 on host 'node-elsewhere'" in waits[0].getMessage()
    assert not out["entry"].from_cache


# ---------------------------------------------------------------------------- real processes
@pytest.fixture
def start(tmp_path):
    """``start(build=..., model=..., policy=..., half_write=...)`` runs tests/cache_lock_worker.py on ``tmp_path/cache``; none outlives the test."""
    shared = tmp_path / "shared"
    shared.mkdir()
    procs: list[subprocess.Popen] = []

    def run(*, build: str, model: str = "tensor", policy: dict = PATIENT, half_write: bool = False) -> subprocess.Popen:
        job = {"root": str(tmp_path / "cache"), "shared": str(shared), "settings": SETTINGS, "policy": policy}
        job |= {"build": build, "model": model, "half_write": half_write}
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        with open(shared / f"log-{len(procs)}.txt", "w") as log:
            procs.append(subprocess.Popen([sys.executable, str(WORKER), json.dumps(job)], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
        return procs[-1]

    yield run
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def _wait_for(path_glob: str, folder: Path, procs=(), timeout: float = 120.0) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(folder.glob(path_glob))
        if found:
            return found
        if any(p.poll() not in (None, 0) for p in procs):
            break
        time.sleep(0.05)
    logs = "\n".join(p.read_text()[-3000:] for p in folder.glob("log-*.txt"))
    raise AssertionError(f"no {path_glob} in {folder} after {timeout} s; worker logs:\n{logs}")


def _finish(procs, folder: Path, timeout: float = 300.0) -> dict[int, dict]:
    for p in procs:
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = "timeout"
        if rc != 0:
            logs = "\n".join(f.read_text()[-3000:] for f in folder.glob("log-*.txt"))
            raise AssertionError(f"worker {p.pid} ended with {rc}; logs:\n{logs}")
    return {p.pid: json.loads((folder / f"result-{p.pid}.json").read_text()) for p in procs}


def _calls(shared: Path) -> list[int]:
    return [int(line) for line in (shared / "calls").read_text().split()]


def test_two_processes_build_a_key_once_and_get_the_same_value(tmp_path, start):
    """The builder holds the lock until the other process has logged that it waits: then it stores, the other loads."""
    procs = [start(build="until-waited") for _ in range(2)]
    shared = tmp_path / "shared"
    results = _finish(procs, shared)
    builder = _calls(shared)
    assert len(builder) == 1  # the builder ran exactly once
    (waiter,) = set(results) - set(builder)
    assert results[builder[0]]["from_cache"] is False and results[builder[0]]["built"] and not results[builder[0]]["loaded"]
    assert results[waiter]["from_cache"] is True and results[waiter]["waited"] and results[waiter]["loaded"] and not results[waiter]["built"]
    assert results[waiter]["w"] == results[builder[0]]["w"] and results[waiter]["meta"] == {"pid": builder[0]}
    assert sorted(p.name for p in (tmp_path / "cache" / "models").iterdir()) == [f"{results[waiter]['loaded'][0]}.pt"]


def test_the_lock_of_a_killed_builder_is_taken_over_by_the_next_process(tmp_path, start):
    """SIGKILL mid-build; the next process gets in at once (filelock 4 may reclaim the marker itself, older releases need the record)."""
    shared = tmp_path / "shared"
    victim = start(build="hang")
    _wait_for("building-*", shared, [victim])
    cache = ArtefactCache(tmp_path / "cache", "models", lock_policy=LockPolicy(**PATIENT))
    key = cache.key(SETTINGS)
    holder = Holder.from_json(cache.lock_path(key).with_name(f"{key}.lock.json").read_text())
    assert holder.pid == victim.pid and holder.host == socket.gethostname()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    start = time.monotonic()
    entry = _built_value(cache)  # stale_after is 300 s: only the dead pid lets it in this soon
    assert time.monotonic() - start < 30 and not entry.from_cache and _calls(shared) == [victim.pid]
    assert [p.name for p in cache.folder.iterdir()] == [f"{key}.pt"]


def test_a_process_killed_while_writing_leaves_nothing_readable_and_the_next_builds(tmp_path, start, caplog):
    shared = tmp_path / "shared"
    victim = start(build="now", half_write=True)
    _wait_for("half-written", shared, [victim])
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    cache = ArtefactCache(tmp_path / "cache", "models", lock_policy=LockPolicy(**PATIENT))
    path = cache.path(cache.key(SETTINGS))
    (half,) = temporaries_of(path)  # the half-written file is a hidden temporary, never the entry
    assert not path.exists() and half.stat().st_size > 0
    assert cache.load(SETTINGS) is None and not cache.damaged
    with caplog.at_level(logging.INFO, logger="lightning_unlearn.cache"):
        entry = _built_value(cache)
    assert not entry.from_cache and torch.equal(cache.load(SETTINGS).value["w"], torch.full((2,), 7.0))
    assert f"removed {half.name}" in caplog.text and [p.name for p in cache.folder.iterdir()] == [path.name]


def test_two_processes_training_the_digits_original_train_it_once(tmp_path, start):
    """End to end with real training (one epoch of the digits small CNN): one process trains, the other waits and loads."""
    procs = [start(build="until-waited", model="digits") for _ in range(2)]
    shared = tmp_path / "shared"
    results = _finish(procs, shared)
    (trainer,) = _calls(shared)
    (loader,) = set(results) - {trainer}
    assert results[trainer]["built"] and not results[trainer]["loaded"]
    assert results[loader]["loaded"] == results[trainer]["built"] and not results[loader]["built"] and results[loader]["waited"]
    a, b = (torch.load(shared / f"weights-{pid}.pt", weights_only=True) for pid in (trainer, loader))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_without_waiting_a_live_builders_key_is_left_and_a_dead_ones_taken_over(tmp_path, start):
    """``no_waiting()``: a key another live process builds raises BuildBusyError at once (a worker trains another model
    meanwhile); once that process is killed, the same call takes its lock over and builds."""
    from lightning_unlearn.cache import BuildBusyError, build_count, no_waiting

    shared = tmp_path / "shared"
    victim = start(build="hang")
    _wait_for("building-*", shared, [victim])
    cache = ArtefactCache(tmp_path / "cache", "models", lock_policy=LockPolicy(**PATIENT))
    with no_waiting(), pytest.raises(BuildBusyError, match=f"is being built by pid {victim.pid} on host") as err:
        cache.get_or_build(SETTINGS, lambda: 1 / 0)
    assert err.value.holder.pid == victim.pid and not cache.built
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    before = build_count("models")
    with no_waiting():
        entry = _built_value(cache)
    assert not entry.from_cache and build_count("models") == before + 1 and cache.built == [entry.key]


def test_reference_models_nobody_else_builds_are_built_before_busy_is_raised(digits_dm, tmp_path, monkeypatch):
    """train_or_load_models in a no_waiting block: model 0 is busy elsewhere, model 1 is built, then BuildBusyError."""
    from lightning_unlearn.audit.model_cache import train_or_load_models
    from lightning_unlearn.cache import BuildBusyError, Entry

    cache = ArtefactCache(tmp_path, "models", lock_policy=LockPolicy(**PATIENT))
    asked = []

    def get_or_build(settings, build, restore):
        asked.append(settings["reference"])
        if settings["reference"] == 0:
            raise BuildBusyError("models k0", tmp_path / "k0.lock", None)
        return Entry("k1", settings, {}, torch.nn.Linear(1, 1), from_cache=False)

    monkeypatch.setattr(cache, "get_or_build", get_or_build)
    sets = [digits_dm.train_set(), digits_dm.train_set()]
    with pytest.raises(BuildBusyError, match="models k0 is being built by a process that wrote no holder record yet"):
        train_or_load_models(digits_dm, {"kind": "rmia-reference", "model": "small-cnn", "epochs": 1, "lr": 0.1, "schedule": "onecycle"}, sets,
                             [0, 1], cache=cache, trainer_kwargs={})
    assert asked == [0, 1]
