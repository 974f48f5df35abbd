"""A worker process for tests/test_cache_lock.py: one ``get_or_build`` on a shared cache, observed through files.

Run as ``python tests/cache_lock_worker.py JOB_JSON``. The job names the cache ``root``, a
``shared`` folder for signals, the ``settings`` (key), the ``policy`` (LockPolicy arguments) and:

- ``build``: ``"now"`` returns at once; ``"until-waited"`` holds the lock until another worker
  has logged that it waits for this model (a ``waiting-<pid>`` file; at most 60 s); ``"hang"``
  never returns;
- ``model``: ``"tensor"`` builds ``{"w": torch.randn(4)}``; ``"digits"`` trains the digits small
  CNN for one epoch (``train_classifier``), the benchmark's original model;
- ``half_write``: the save writes half of the file, signals ``half-written`` and hangs.

Signals in ``shared``: ``calls`` (one line per build started), ``building-<pid>``,
``waiting-<pid>``, and at the end ``result-<pid>.json`` (and ``weights-<pid>.pt`` for digits).
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time
from pathlib import Path


def main(job: dict) -> None:
    import torch

    import lightning_unlearn.cache as cache_module
    from lightning_unlearn.cache import ArtefactCache, state_dict_payload
    from lightning_unlearn.cache_lock import LockPolicy
    from lightning_unlearn.fileio import atomic_write

    torch.set_num_threads(1)
    shared = Path(job["shared"])
    pid = os.getpid()

    class Signal(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("models ") and "waiting for it" in record.getMessage():  # not the pool's lock
                (shared / f"waiting-{pid}").touch()

    logger = logging.getLogger("lightning_unlearn")
    logger.addHandler(Signal())
    logger.setLevel(logging.INFO)

    if job["model"] == "digits":
        from lightning_unlearn.data import UnlearningDataModule
        from lightning_unlearn.models.factory import build_model
        from lightning_unlearn.training import train_classifier

        dm = UnlearningDataModule("digits", forget="random:0.1", seed=0, cache_dir=job["root"])
        dm.setup()

        def make() -> tuple[dict, dict]:
            module = train_classifier(dm, epochs=1, seed=0)
            return state_dict_payload(module.model.state_dict()), {"pid": pid}

        def restore(payload: dict) -> torch.nn.Module:
            net = build_model("small-cnn", in_channels=dm.image_shape[0], num_classes=dm.num_classes, mean=dm.mean, std=dm.std)
            net.load_state_dict(payload, strict=True)
            return net
    else:

        def make() -> tuple[dict, dict]:
            return {"w": torch.randn(4)}, {"pid": pid}

        def restore(payload: dict) -> dict:
            return payload

    def build() -> tuple[dict, dict]:
        with open(shared / "calls", "a") as f:
            f.write(f"{pid}\n")
        (shared / f"building-{pid}").touch()
        made = make()
        if job["build"] == "until-waited":
            deadline = time.monotonic() + 60  # then a missing lock shows as two builds
            while not list(shared.glob("waiting-*")) and time.monotonic() < deadline:
                time.sleep(0.05)
        elif job["build"] == "hang":
            time.sleep(3600)
        return made

    if job.get("half_write"):

        def half_save(obj: object, path: os.PathLike) -> Path:
            def write(f: io.BufferedWriter) -> None:
                buf = io.BytesIO()
                torch.save(obj, buf)
                f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                f.flush()
                (shared / "half-written").touch()
                time.sleep(3600)

            return atomic_write(path, write)

        cache_module.atomic_save = half_save

    cache = ArtefactCache(job["root"], "models", lock_policy=LockPolicy(**job["policy"]))
    entry = cache.get_or_build(job["settings"], build, restore)
    result = {"from_cache": entry.from_cache, "meta": entry.meta, "built": cache.built, "loaded": cache.loaded, "waited": (shared / f"waiting-{pid}").exists()}
    if job["model"] == "digits":
        torch.save(entry.value.state_dict(), shared / f"weights-{pid}.pt")
    else:
        result["w"] = entry.value["w"].tolist()
    (shared / f"result-{pid}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
