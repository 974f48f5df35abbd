"""``ModelCache``: trained weights on disk, keyed by a hash of every setting that made them.

A model's key is ``sha256`` of the JSON of its settings (data fingerprint and subset, model,
recipe, seed, role, forget spec, ...; see :func:`lightning_unlearn.pipeline.config.training_settings`)
plus :data:`CACHE_VERSION`. Two runs that would train the same weights share the file; any
changed setting gives another key, so a stale model is never reused.

Files are written atomically (a temporary file in the same folder, then ``os.replace``), so an
interrupted run leaves either a complete entry or none, and loaded with
``torch.load(weights_only=True)``. Each entry is ``<key>.pt`` (``{"state_dict", "meta"}``)
with the settings and the training time in ``meta``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

log = logging.getLogger(__name__)

CACHE_VERSION = "pipeline-models-v1"


def cache_key(settings: dict[str, Any]) -> str:
    """The hex key of a settings dict (order-independent; values must be JSON-serialisable)."""
    blob = json.dumps({"version": CACHE_VERSION, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


@dataclass
class CacheEntry:
    """A cached model: its ``state_dict``, the settings it was trained with and extra metadata."""

    key: str
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any]
    from_cache: bool


@dataclass
class ModelCache:
    """Trained-model store under ``root`` (created on first write).

    Attributes:
        root: the folder of ``<key>.pt`` files.
        trained: keys trained (not loaded) by this object, in order (used by tests and the
            progress report).
        loaded: keys loaded from disk by this object.
    """

    root: Path
    trained: list[str] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def load(self, key: str) -> CacheEntry | None:
        """The entry under ``key``, or ``None`` (also for an unreadable file, which is then ignored)."""
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            blob = torch.load(p, map_location="cpu", weights_only=True)
            state, meta = blob["state_dict"], json.loads(blob["meta"])
        except Exception as err:  # a corrupt or foreign file: retrain rather than fail
            log.warning("ignoring unreadable cache entry %s: %s", p, err)
            return None
        self.loaded.append(key)
        return CacheEntry(key, state, meta, from_cache=True)

    def save(self, key: str, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
        """Write atomically; concurrent writers of the same key leave one complete file."""
        self.root.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in state_dict.items()}
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=self.root)
        os.close(fd)
        try:
            torch.save({"state_dict": state, "meta": json.dumps(meta, sort_keys=True, default=str)}, tmp)
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache may be shared
            os.replace(tmp, self.path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.path(key)

    def get_or_train(
        self, settings: dict[str, Any], train: Callable[[], tuple[dict[str, torch.Tensor], dict[str, Any]]]
    ) -> CacheEntry:
        """Load the model of ``settings``, or call ``train() -> (state_dict, extra_meta)`` and store it.

        ``meta`` of the entry holds ``settings`` and ``extra_meta`` (e.g. ``seconds``).
        """
        key = cache_key(settings)
        hit = self.load(key)
        if hit is not None:
            log.info("model %s loaded from cache", key)
            return hit
        state, extra = train()
        meta = {"settings": settings, **extra}
        self.save(key, state, meta)
        self.trained.append(key)
        return CacheEntry(key, {k: v.detach().cpu() for k, v in state.items()}, json.loads(json.dumps(meta, default=str)), from_cache=False)
