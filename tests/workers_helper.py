"""A process for tests/test_workers.py: one party of a shared optuna storage, observed through files.

Run as ``python tests/workers_helper.py JOB_JSON``. The job names the ``storage`` URL, a folder
``signals`` (files the test reads), and the ``mode``:

- ``"lock"``: take the run's lock ``rounds`` times; each time read the file ``counter`` there,
  sleep ``hold`` seconds, write it back plus one (a lost update shows two holders at once);
- ``"die-holding"``: take the lock, write the file ``holding``, then kill itself with SIGKILL;
- ``"tune"``: work on the tuning study of ``plan`` (``plan_tuning`` keyword arguments) with the
  synthetic objective of tests/test_tuning_engine.py (``delay`` seconds per set) until it is done,
  taking trials with :func:`~lightning_unlearn.tuning.run_next_trial` as a benchmark worker does;
  writes ``tune-<pid>.json``: the (hparams, set) pairs it evaluated.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path


def main(job: dict) -> None:
    import optuna

    from lightning_unlearn.cache_lock import LockPolicy
    from lightning_unlearn.tuning import open_study, plan_tuning
    from lightning_unlearn.tuning.engine import next_trial, run_next_trial
    from lightning_unlearn.tuning.sharing import Claims, open_storage_url

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    signals = Path(job["signals"])
    storage = open_storage_url(job["storage"])
    claims = Claims(storage, lock_study="runs.lock", policy=LockPolicy(stale_after=300, heartbeat=30, poll=0.02), wait_s=0.02)
    if job["mode"] == "lock":
        for _ in range(job["rounds"]):
            with claims.lock():
                counter = signals / "counter"
                value = int(counter.read_text()) if counter.exists() else 0
                time.sleep(job["hold"])
                counter.write_text(str(value + 1))
    elif job["mode"] == "die-holding":
        with claims.lock():
            (signals / "holding").write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
    elif job["mode"] == "tune":
        sys.path.insert(0, str(Path(__file__).parent))
        from test_tuning_engine import synthetic

        plan = plan_tuning(**job["plan"])
        study = open_study(plan, storage=storage, repair=False)
        calls = []

        def evaluate(method, hp, k):
            calls.append([hp, k])
            time.sleep(job["delay"])
            return synthetic(method, hp, k)

        while True:
            if run_next_trial(plan, evaluate, study, claims):
                continue
            if next_trial(study, plan).done:
                break
            claims.wait()
        (signals / f"tune-{os.getpid()}.json").write_text(json.dumps(calls))
    claims.close()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
