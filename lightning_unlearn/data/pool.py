"""The sample pool: decoded uint8 images with global pool indices, cached on disk.

Pool indices are the one identity of a sample everywhere in the library (metrics,
reference models, de-duplication under DDP): training samples are numbered
``0..N_train-1`` in the source's order, test samples ``N_train..N_train+N_test-1``, where
``N_train`` is the size of the *full* source train split. Subsetting (``max_train``,
``max_test``) keeps these numbers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from lightning_unlearn.data.sources import Source, channel_stats, load_source

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$LIGHTNING_UNLEARN_CACHE``, else ``$XDG_CACHE_HOME/lightning_unlearn``, else ``~/.cache/lightning_unlearn``."""
    env = os.environ.get("LIGHTNING_UNLEARN_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lightning_unlearn"


@dataclass
class Pool:
    """Decoded train and test images of a source, with their global pool indices.

    Attributes:
        train_x, test_x: ``uint8`` ``(N, C, H, W)``.
        train_y, test_y: ``int64`` ``(N,)``.
        train_index, test_index: ``int64`` pool indices ``(N,)``, sorted ascending.
        n_train_full: size of the full source train split (the offset of test indices).
        classes: class names; ``mean``/``std``: per-channel statistics in [0, 1] units.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    train_index: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    test_index: torch.Tensor
    n_train_full: int
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]


def stratified_subset(labels: torch.Tensor, size: int | None, *, seed: int = 0) -> torch.Tensor:
    """Sorted positions of a stratified random subset of ``size`` samples (all when ``None``).

    Each class keeps its share ``n_c * size / N`` (largest remainders get the rounding), drawn
    with a ``torch.Generator`` seeded by ``seed``.
    """
    n = labels.numel()
    if size is None or size >= n:
        return torch.arange(n)
    if size <= 0:
        raise ValueError(f"subset size must be positive, got {size}")
    gen = torch.Generator().manual_seed(seed)
    classes, counts = labels.unique(return_counts=True)
    exact = counts.double() * size / n
    quota = exact.floor().long()
    short = size - int(quota.sum())
    if short > 0:
        order = torch.argsort(exact - quota.double(), descending=True, stable=True)
        quota[order[:short]] += 1
    chosen = []
    for cls, q in zip(classes.tolist(), quota.tolist()):
        members = (labels == cls).nonzero().flatten()
        chosen.append(members[torch.randperm(members.numel(), generator=gen)[:q]])
    return torch.cat(chosen).sort().values


def load_pool(
    dataset: str = "digits",
    *,
    root: str | os.PathLike | None = None,
    download: bool = False,
    max_train: int | None = None,
    max_test: int | None = None,
    subset_seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> Pool:
    """Decode (or load from the cache) the pool of a data set.

    The cache file is keyed by the source's fingerprint and the subset arguments, so a
    changed tree or subset never reuses stale arrays. A second call starts in about a second.
    """
    for name, value in (("max_train", max_train), ("max_test", max_test)):
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be a positive number of samples or None, got {value}")
    source: Source = load_source(dataset, root=root, download=download)
    key = json.dumps([source.fingerprint, max_train, max_test, subset_seed, "pool-v1"])
    path = Path(cache_dir or default_cache_dir()) / "pools" / (hashlib.sha256(key.encode()).hexdigest()[:20] + ".pt")
    if use_cache and path.is_file():
        blob = torch.load(path, weights_only=True)
        log.info("loaded pool %s from cache %s", source.name, path)
        return Pool(**{**blob, "classes": tuple(blob["classes"]), "mean": tuple(blob["mean"]), "std": tuple(blob["std"])})

    train_pos = stratified_subset(source.train.labels, max_train, seed=subset_seed)
    test_pos = stratified_subset(source.test.labels, max_test, seed=subset_seed + 1)
    n_train_full = source.train.labels.numel()
    train_x = source.train.load(train_pos)
    test_x = source.test.load(test_pos)
    mean, std = channel_stats(source, train_x)
    pool = Pool(
        name=source.name,
        train_x=train_x.contiguous(),
        train_y=source.train.labels[train_pos].clone(),
        train_index=train_pos.clone(),
        test_x=test_x.contiguous(),
        test_y=source.test.labels[test_pos].clone(),
        test_index=test_pos + n_train_full,
        n_train_full=n_train_full,
        classes=source.classes,
        mean=mean,
        std=std,
    )
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({**pool.__dict__, "classes": list(pool.classes), "mean": list(mean), "std": list(std)}, tmp)
        os.replace(tmp, path)  # atomic: concurrent ranks never read half a file
    return pool
