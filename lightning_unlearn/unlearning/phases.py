"""Epoch-level loaders of the unlearning methods: tagged sources, rank sharding, two-phase epochs.

Every method batch is an :class:`~lightning_unlearn.unlearning.UnlearningBatch` ``(x, y, index, source, phase)``:

- ``x`` ``(B, C, H, W)`` pixels (``uint8``, or ``float32`` in ``[0, 1]`` when a part holds
  generated images such as adversarial examples), ``y`` ``(B,)`` labels, ``index`` ``(B,)``
  pool indices;
- ``source`` ``(B,)`` ``int64``: :data:`REMAIN`, :data:`FORGET` or :data:`ADVERSARIAL`, the
  part each sample came from (mixed parts share one shuffled stream);
- ``phase``: a ``str`` tag of the pass the batch belongs to (``"remain"``, ``"forget"``,
  ``"max"``, ``"min"``, ``"mixed"``), the same for the whole batch.

Two-phase epochs (GA and BS with D_R, SCRUB; ``baselines.md`` §0) are one loader that yields
every batch of phase 1, then every batch of phase 2, under a single optimizer. Each phase is
sharded across ranks by its own :class:`ShardedEpochSampler` (padded like
``DistributedSampler``), so every rank runs the same number of batches in each phase and the
phases stay aligned under DDP. Lightning does not re-wrap these loaders (they are not
``DataLoader`` instances), so the sharding is exactly the one described here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler

from lightning_unlearn.data.transforms import to_pixels
from lightning_unlearn.unlearning.batch import UnlearningBatch, collate_unlearning_batch

REMAIN, FORGET, ADVERSARIAL = 0, 1, 2
SOURCE_NAMES = {REMAIN: "remain", FORGET: "forget", ADVERSARIAL: "adversarial"}


class Tagged(Dataset):
    """Items ``(x, y, index, source)`` of a dataset of ``(x, y, index)`` items.

    Args:
        dataset: items ``(x, y, index)``.
        source: :data:`REMAIN`, :data:`FORGET` or :data:`ADVERSARIAL`.
        float_pixels: convert ``x`` to ``float32`` in ``[0, 1]`` (needed when the part is
            concatenated with ``float32`` images, so that batches collate to one dtype).
    """

    def __init__(self, dataset: Dataset, source: int, *, float_pixels: bool = False) -> None:
        if source not in SOURCE_NAMES:
            raise ValueError(f"unknown source {source!r}: expected one of {sorted(SOURCE_NAMES)}")
        self.dataset, self.source, self.float_pixels = dataset, source, float_pixels

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        x, y, index = self.dataset[i][:3]
        if self.float_pixels:
            x = to_pixels(torch.as_tensor(x))
        return x, y, index, torch.tensor(self.source, dtype=torch.long)


def tagged_concat(parts: Sequence[tuple[Dataset, int]], *, float_pixels: bool = False) -> Dataset:
    """One dataset over ``parts`` (``(dataset, source)`` pairs), each item tagged with its source."""
    tagged = [Tagged(ds, src, float_pixels=float_pixels) for ds, src in parts]
    return tagged[0] if len(tagged) == 1 else ConcatDataset(tagged)


class ShardedEpochSampler(Sampler[int]):
    """This rank's share of an order that depends only on ``(seed, epoch)``.

    The order is ``randperm(n)`` from a generator seeded with ``seed * 100_003 + epoch`` (the
    order of :class:`~lightning_unlearn.data.datasets.EpochSeededRandomSampler`), or
    ``0..n-1`` when ``shuffle=False``. It is padded by wrapping around to a multiple of
    ``world_size`` and rank ``r`` takes positions ``r, r + W, ...``, as
    ``DistributedSampler`` does, so every rank gets ``ceil(n / W)`` items.
    """

    def __init__(self, n: int, *, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1) -> None:
        if n <= 0:
            raise ValueError(f"cannot sample from an empty dataset (n={n})")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is out of range for world_size {world_size}")
        self.n, self.seed, self.shuffle, self.rank, self.world_size, self.epoch = n, seed, shuffle, rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.n / self.world_size)

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        else:
            order = torch.arange(self.n)
        total = len(self) * self.world_size
        if total > self.n:
            order = torch.cat([order, order.repeat(math.ceil(total / self.n))[: total - self.n]])
        return iter(order[self.rank : total : self.world_size].tolist())


@dataclass
class Phase:
    """One pass of an epoch.

    Attributes:
        tag: the phase tag carried by each of its batches.
        dataset: items ``(x, y, index, source)`` (see :class:`Tagged`).
        shuffle: shuffle per epoch (else fixed order).
        batch_size: batch size per rank.
        seed: seed of the shuffling.
        until_epoch: the phase runs only in epochs ``e < until_epoch`` (``None``: always).
    """

    tag: str
    dataset: Dataset
    shuffle: bool = True
    batch_size: int = 128
    seed: int = 0
    until_epoch: int | None = None


class PhasedLoader:
    """Yields every batch of each active phase in turn, each an :class:`UnlearningBatch` with its ``phase``.

    Args:
        phases: the passes of one epoch, in order.
        epoch_fn: returns the current epoch (the module's ``current_epoch``); read when an
            epoch's iteration starts, for shuffling and for ``until_epoch``.
        rank, world_size: this process's rank and the number of processes.
    """

    def __init__(self, phases: Sequence[Phase], *, epoch_fn: Callable[[], int] = lambda: 0, rank: int = 0, world_size: int = 1) -> None:
        if not phases:
            raise ValueError("a phased loader needs at least one phase")
        self.phases = list(phases)
        self.epoch_fn, self.rank, self.world_size = epoch_fn, rank, world_size
        self.loaders = [
            DataLoader(
                p.dataset,
                batch_size=p.batch_size,
                sampler=ShardedEpochSampler(len(p.dataset), seed=p.seed, shuffle=p.shuffle, rank=rank, world_size=world_size),
                collate_fn=collate_unlearning_batch,
            )
            for p in self.phases
        ]

    def active(self, epoch: int | None = None) -> list[int]:
        """Positions of the phases that run in ``epoch`` (default: the current one)."""
        e = self.epoch_fn() if epoch is None else epoch
        return [i for i, p in enumerate(self.phases) if p.until_epoch is None or e < p.until_epoch]

    def __len__(self) -> int:
        return sum(len(self.loaders[i]) for i in self.active())

    def __iter__(self) -> Iterator[UnlearningBatch]:
        epoch = self.epoch_fn()
        for i in self.active(epoch):
            loader, tag = self.loaders[i], self.phases[i].tag
            loader.sampler.set_epoch(epoch)
            for batch in loader:
                yield batch._replace(phase=tag)


def module_loader(module, phases: Sequence[Phase]) -> PhasedLoader:
    """A :class:`PhasedLoader` for ``module``'s trainer (rank, world size, current epoch)."""
    trainer = module._trainer
    rank = trainer.global_rank if trainer is not None else 0
    world = trainer.world_size if trainer is not None else 1
    return PhasedLoader(phases, epoch_fn=lambda: module.current_epoch if module._trainer is not None else 0, rank=rank, world_size=world)
