"""Epoch-level loaders of the unlearning methods: tagged sources, rank sharding, two-phase epochs.

Every method batch is an :class:`~lightning_unlearn.unlearning.UnlearningBatch` ``(x, y, index, source, phase)``:

- ``x`` ``(B, C, H, W)`` pixels (``uint8``, or ``float32`` in ``[0, 1]`` when a part holds
  generated images such as adversarial examples), ``y`` ``(B,)`` labels, ``index`` ``(B,)``
  pool indices;
- ``source`` ``(B,)`` ``int64``: :data:`REMAIN`, :data:`FORGET` or :data:`ADVERSARIAL`, the
  part each sample came from (mixed parts share one shuffled stream);
- ``phase``: a ``str`` tag of the pass the batch belongs to (``"remain"``, ``"forget"``,
  ``"max"``, ``"min"``, ``"mixed"``), the same for the whole batch.

Two-phase epochs (GA and BS with D_R, SCRUB; docs/methods/baselines.md, "Common protocol") are one loader that yields
every batch of phase 1, then every batch of phase 2, under a single optimizer. Each phase is
sharded across ranks by its own :class:`~lightning_unlearn.data.ShardedEpochSampler` (padded
like ``DistributedSampler``), so every rank runs the same number of batches in each phase and
the phases stay aligned under DDP. Lightning does not re-wrap these loaders (they are not
``DataLoader`` instances), so the sharding is exactly the one described here.

A :class:`PhasedLoader` is resumable mid-epoch (Lightning's stateful-loader protocol): its
``state_dict()`` holds the epoch and the number of batches already yielded across its phases,
and after ``load_state_dict`` the next iteration of that epoch skips them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import ConcatDataset, Dataset

from lightning_unlearn.data.sampler import ResumableDataLoader, ShardedEpochSampler
from lightning_unlearn.data.transforms import to_pixels
from lightning_unlearn.unlearning.base import world_of
from lightning_unlearn.unlearning.batch import UnlearningBatch, collate_unlearning_batch

STATE_VERSION = 1

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
            ResumableDataLoader(
                p.dataset,
                batch_size=p.batch_size,
                sampler=ShardedEpochSampler(len(p.dataset), p.seed, shuffle=p.shuffle, rank=rank, world_size=world_size),
                collate_fn=collate_unlearning_batch,
            )
            for p in self.phases
        ]
        self._yielded = 0
        self._resume: tuple[int, int] | None = None  # (epoch, batches) of a loaded state

    def active(self, epoch: int | None = None) -> list[int]:
        """Positions of the phases that run in ``epoch`` (default: the current one)."""
        e = self.epoch_fn() if epoch is None else epoch
        return [i for i, p in enumerate(self.phases) if p.until_epoch is None or e < p.until_epoch]

    def __len__(self) -> int:
        return sum(len(self.loaders[i]) for i in self.active())

    def __iter__(self) -> Iterator[UnlearningBatch]:
        epoch = self.epoch_fn()
        skip = 0
        if self._resume is not None and self._resume[0] == epoch:
            skip = self._resume[1]
        self._resume = None
        self._yielded = skip
        for i in self.active(epoch):
            loader, tag = self.loaders[i], self.phases[i].tag
            loader.sampler.set_epoch(epoch)
            if skip >= len(loader):  # the whole phase was yielded before the checkpoint
                skip -= len(loader)
                continue
            if skip:
                loader.load_state_dict(loader.sampler.state_dict(position=skip * loader.batch_size))
                skip = 0
            for batch in loader:
                self._yielded += 1
                yield batch._replace(phase=tag)

    def state_dict(self) -> dict[str, Any]:
        """``{"version", "epoch", "batches", "lengths"}``: batches yielded in the epoch, and each active phase's length."""
        epoch = self.epoch_fn()
        return {"version": STATE_VERSION, "epoch": epoch, "batches": self._yielded, "lengths": [len(self.loaders[i]) for i in self.active(epoch)]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Make the next iteration of ``state["epoch"]`` skip ``state["batches"]`` batches.

        Raises:
            ValueError: another version, or phases of other lengths (other data, batch sizes or
                number of processes) than when the state was saved.
        """
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported phased-loader state version {state.get('version')!r}; expected {STATE_VERSION}")
        lengths = [len(self.loaders[i]) for i in self.active(int(state["epoch"]))]
        if list(state["lengths"]) != lengths:
            raise ValueError(
                f"cannot resume the unlearning loader mid-epoch: its phases had {list(state['lengths'])} batches when saved "
                f"and have {lengths} now (other data, batch size or number of processes)"
            )
        self._resume = (int(state["epoch"]), int(state["batches"]))


def module_loader(module, phases: Sequence[Phase]) -> PhasedLoader:
    """A :class:`PhasedLoader` for ``module``'s trainer (rank, world size, current epoch)."""
    rank, world = world_of(module)
    return PhasedLoader(phases, epoch_fn=lambda: module.current_epoch, rank=rank, world_size=world)
