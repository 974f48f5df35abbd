"""The sample pool: decoded uint8 images with global pool indices, cached on disk.

Pool indices are the one identity of a sample everywhere in the library (metrics,
reference models, de-duplication under DDP): training samples are numbered
``0..N_train-1`` in the source's order, test samples ``N_train..N_train+N_test-1``, where
``N_train`` is the size of the *full* source train split. Subsetting (``max_train``,
``max_test``) keeps these numbers.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch

from lightning_unlearn.cache import ArtefactCache, check_writable, default_cache_dir
from lightning_unlearn.data.sources import Source, channel_stats, load_source
from lightning_unlearn.seeding import derive_seed

log = logging.getLogger(__name__)


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


#: Part of a pool's cache key: 2 since the test subset is drawn with ``derive_seed(subset_seed, "test-subset")``.
POOL_VERSION = 2
POOL_FIELDS = ("name", "train_x", "train_y", "train_index", "test_x", "test_y", "test_index", "n_train_full", "classes", "mean", "std")


def pool_payload(pool: Pool) -> dict[str, Any]:
    """The cache payload of a pool: its tensors, and plain lists for the names and statistics."""
    return {**pool.__dict__, "classes": list(pool.classes), "mean": list(pool.mean), "std": list(pool.std)}


def restore_pool(payload: dict[str, Any]) -> Pool:
    """The :class:`Pool` of a cache payload, after checking every field's type and shape.

    Raises:
        ValueError: naming the first field that is missing or inconsistent (the file is then
            treated as damaged, removed and decoded again).
    """
    missing = [k for k in POOL_FIELDS if k not in payload]
    if missing:
        raise ValueError(f"pool fields missing: {', '.join(missing)}")
    pool = Pool(**{**{k: payload[k] for k in POOL_FIELDS}, "classes": tuple(payload["classes"]), "mean": tuple(payload["mean"]), "std": tuple(payload["std"])})
    for part in ("train", "test"):
        x, y, index = getattr(pool, f"{part}_x"), getattr(pool, f"{part}_y"), getattr(pool, f"{part}_index")
        if not all(isinstance(t, torch.Tensor) for t in (x, y, index)):
            raise ValueError(f"{part} arrays are not tensors")
        if x.dtype != torch.uint8 or x.ndim != 4:
            raise ValueError(f"{part}_x must be uint8 (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
        if y.dtype != torch.int64 or index.dtype != torch.int64 or y.shape != (len(x),) or index.shape != (len(x),):
            raise ValueError(f"{part}_y and {part}_index must be int64 ({len(x)},), got {y.dtype} {tuple(y.shape)} and {index.dtype} {tuple(index.shape)}")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(pool.classes)):
            raise ValueError(f"{part}_y holds labels outside 0..{len(pool.classes) - 1}")
    if pool.train_x.shape[1:] != pool.test_x.shape[1:]:
        raise ValueError(f"train and test images differ in shape: {tuple(pool.train_x.shape[1:])} vs {tuple(pool.test_x.shape[1:])}")
    if len(pool.mean) != pool.train_x.shape[1] or len(pool.std) != pool.train_x.shape[1]:
        raise ValueError(f"mean/std have {len(pool.mean)}/{len(pool.std)} entries for {pool.train_x.shape[1]} channels")
    return pool


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

    Subsets (``max_train``, ``max_test``) are stratified (:func:`stratified_subset`), the training
    subset drawn with ``subset_seed``, the test subset with ``derive_seed(subset_seed, "test-subset")``.

    The cache entry (:class:`lightning_unlearn.cache.ArtefactCache`, kind ``"pools"``) is keyed
    by the source's fingerprint and the subset arguments, so a changed tree or subset never
    reuses stale arrays; a damaged or foreign file is named in a warning, removed and decoded
    again. A second call starts in about a second.

    Raises:
        lightning_unlearn.cache.CacheNotWritableError: ``use_cache`` and the cache folder
            cannot be written (checked before decoding).
    """
    for name, value in (("max_train", max_train), ("max_test", max_test)):
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be a positive number of samples or None, got {value}")
    source: Source = load_source(dataset, root=root, download=download)
    settings = {"source": source.fingerprint, "max_train": max_train, "max_test": max_test, "subset_seed": subset_seed, "version": POOL_VERSION}
    if not use_cache:
        return _decode(source, max_train, max_test, subset_seed)
    cache = ArtefactCache(cache_dir or default_cache_dir(), "pools")
    hit = cache.load(settings, restore_pool)
    if hit is not None:
        log.info("loaded pool %s from cache %s", source.name, cache.path(hit.key))
        return hit.value
    check_writable(cache.folder)  # before the (possibly long) decoding
    return cache.get_or_build(settings, lambda: (pool_payload(_decode(source, max_train, max_test, subset_seed)), {}), restore_pool).value


def _decode(source: Source, max_train: int | None, max_test: int | None, subset_seed: int) -> Pool:
    train_pos = stratified_subset(source.train.labels, max_train, seed=subset_seed)
    test_pos = stratified_subset(source.test.labels, max_test, seed=derive_seed(subset_seed, "test-subset"))
    n_train_full = source.train.labels.numel()
    train_x = source.train.load(train_pos)
    test_x = source.test.load(test_pos)
    mean, std = channel_stats(source, train_x)
    return Pool(
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
