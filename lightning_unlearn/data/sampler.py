"""The one sampler of every training loader: an order from ``(seed, epoch)``, sharded across ranks, resumable mid-epoch.

Every shuffled loader of the library (the data module's, the unlearning methods', the phased
loaders of two-pass methods and :class:`~lightning_unlearn.data.DeviceTensorLoader`) draws its
order from :func:`epoch_order`:

1. the epoch's order is ``randperm(n)`` from a generator seeded with ``seed * 100_003 + epoch``
   (``0..n-1`` when ``shuffle=False``), so it depends on nothing but ``(seed, epoch)``;
2. under several processes it is padded by wrapping around to a multiple of ``world_size`` and
   rank ``r`` takes the positions ``r, r + W, r + 2W, ...``, exactly as
   ``torch.utils.data.DistributedSampler`` pads and shards, so every rank gets
   ``ceil(n / W)`` items and the same number of batches.

Lightning calls ``set_epoch`` on it at every epoch start, so a run resumed from an epoch
checkpoint replays the uninterrupted run's order. For a checkpoint taken *inside* an epoch the
loaders (:class:`ResumableDataLoader`, :class:`~lightning_unlearn.data.DeviceTensorLoader`,
the unlearning phases' loader) expose ``state_dict`` / ``load_state_dict`` (Lightning's
stateful-loader protocol): the epoch and the number of positions already consumed. Lightning
saves that state in the checkpoint and loads it before the resumed epoch starts; the next
iteration then skips the consumed positions, so the resumed epoch yields exactly the batches
the interrupted one had not yet yielded.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

STATE_VERSION = 1

__all__ = ["ResumableDataLoader", "ShardedEpochSampler", "epoch_order", "restore_loader_positions"]


def epoch_order(n: int, *, seed: int, epoch: int, shuffle: bool = True, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """Rank ``rank``'s positions of epoch ``epoch``: ``(ceil(n / world_size),)`` ``int64`` in ``[0, n)``.

    The order is ``torch.randperm(n)`` from a generator seeded with ``seed * 100_003 + epoch``
    (``arange(n)`` when ``not shuffle``), padded by repeating its start to ``ceil(n / W) * W``
    items and strided by ``world_size`` from ``rank`` (``DistributedSampler``'s padding).

    Example:
        >>> epoch_order(5, seed=0, epoch=0, shuffle=False, rank=1, world_size=2).tolist()
        [1, 3, 0]
    """
    if n <= 0:
        raise ValueError(f"cannot sample from an empty dataset (n={n})")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is out of range for world_size {world_size}")
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    else:
        order = torch.arange(n)
    total = math.ceil(n / world_size) * world_size
    if total > n:
        order = torch.cat([order, order.repeat(math.ceil((total - n) / n))[: total - n]])
    return order[rank:total:world_size]


def _process_group() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ShardedEpochSampler(DistributedSampler):
    """This rank's share of an order that depends only on ``(seed, epoch)`` (:func:`epoch_order`).

    Args:
        n: dataset length.
        seed: seed of the order (default 0).
        shuffle: a new permutation each epoch (default) or ``0..n-1``.
        rank, world_size: this process's shard. Default ``None``: read from ``torch.distributed``
            when the sampler is iterated or measured (rank 0 of 1 without a process group), so a
            sampler built before Lightning starts the processes still shards correctly.

    It *is* a ``DistributedSampler`` so that Lightning, which wraps any other sampler of a
    ``DataLoader`` in its own shuffling ``DistributedSamplerWrapper`` under DDP, leaves it (and
    the loader) as they are: sharding happens here, in one place. ``DistributedSampler.__init__``
    is not called (it needs a process group at construction); the attributes Lightning and
    torch read (``num_replicas``, ``rank``, ``num_samples``, ``total_size``, ``epoch``,
    ``shuffle``, ``seed``, ``drop_last``) are provided.

    Resuming: :meth:`state_dict` gives ``{"version", "epoch", "position", "n", "seed",
    "shuffle", "world_size"}`` (``position``: items of the current epoch handed out so far);
    :meth:`load_state_dict` makes the next iteration of that epoch start at ``position``.
    Loaders that prefetch report the *consumed* position instead (:class:`ResumableDataLoader`).

    Example:
        >>> s = ShardedEpochSampler(6, seed=1, rank=0, world_size=2)
        >>> s.set_epoch(3)
        >>> len(s), sorted(list(s) + list(ShardedEpochSampler(6, seed=1, rank=1, world_size=2, epoch=3)))
        (3, [0, 1, 2, 3, 4, 5])
    """

    def __init__(
        self, n: int, seed: int = 0, *, shuffle: bool = True, rank: int | None = None, world_size: int | None = None, epoch: int = 0
    ) -> None:
        if n <= 0:
            raise ValueError(f"cannot sample from an empty dataset (n={n})")
        if (rank is None) != (world_size is None):
            raise ValueError(f"give both rank and world_size or neither, got rank={rank}, world_size={world_size}")
        if world_size is not None and not 0 <= rank < world_size:  # type: ignore[operator]
            raise ValueError(f"rank {rank} is out of range for world_size {world_size}")
        self.n, self.seed, self.shuffle, self.epoch, self.drop_last = int(n), int(seed), bool(shuffle), int(epoch), False
        self._fixed = None if rank is None else (int(rank), int(world_size))  # type: ignore[arg-type]
        self._resume: tuple[int, int] | None = None  # (epoch, position) of a loaded state
        self._handed = 0

    # ------------------------------------------------------------------ shard
    def shard(self) -> tuple[int, int]:
        """``(rank, world_size)`` of this sampler (fixed, or from the process group now)."""
        return self._fixed if self._fixed is not None else _process_group()

    @property
    def rank(self) -> int:  # type: ignore[override]
        return self.shard()[0]

    @property
    def num_replicas(self) -> int:  # type: ignore[override]
        return self.shard()[1]

    @property
    def num_samples(self) -> int:  # type: ignore[override]
        return math.ceil(self.n / self.num_replicas)

    @property
    def total_size(self) -> int:  # type: ignore[override]
        return self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def order(self) -> torch.Tensor:
        """This rank's positions of the current epoch, ``(len(self),)`` ``int64``."""
        rank, world = self.shard()
        return epoch_order(self.n, seed=self.seed, epoch=self.epoch, shuffle=self.shuffle, rank=rank, world_size=world)

    # ------------------------------------------------------------------ resume
    def pending_position(self) -> int:
        """Where the next iteration starts: a loaded position of the current epoch, else 0."""
        if self._resume is None or self._resume[0] != self.epoch:
            return 0
        return self._resume[1]

    def take_pending_position(self) -> int:
        """:meth:`pending_position`, then forget the loaded state (it applies to one iteration)."""
        start = self.pending_position()
        self._resume = None
        return start

    def __iter__(self) -> Iterator[int]:
        order = self.order()
        start = self.take_pending_position()
        self._handed = start
        for i in order[start:].tolist():
            self._handed += 1
            yield i

    def state_dict(self, position: int | None = None) -> dict[str, Any]:
        """The resumable state; ``position`` overrides the count of items handed out (a loader's consumed count)."""
        return {
            "version": STATE_VERSION,
            "epoch": self.epoch,
            "position": min(self._handed if position is None else int(position), len(self)),
            "n": self.n,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "world_size": self.num_replicas,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Make the next iteration of ``state["epoch"]`` start at ``state["position"]``.

        Raises:
            ValueError: another state version, or a state saved over other data (length,
                seed, shuffling) or another number of processes: the position would then
                point at other samples.
        """
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported sampler state version {state.get('version')!r}; expected {STATE_VERSION}")
        mine = {"n": self.n, "seed": self.seed, "shuffle": self.shuffle, "world_size": self.num_replicas}
        differ = {k: (state.get(k), v) for k, v in mine.items() if state.get(k) != v}
        if differ:
            what = ", ".join(f"{k} {a!r} in the checkpoint but {b!r} now" for k, (a, b) in differ.items())
            raise ValueError(f"cannot resume this loader mid-epoch: it was saved over other data or processes ({what})")
        position = int(state["position"])
        if not 0 <= position <= len(self):
            raise ValueError(f"sampler position {position} is outside this rank's epoch of {len(self)} items")
        self._resume = (int(state["epoch"]), position)


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over a :class:`ShardedEpochSampler` that Lightning can checkpoint mid-epoch.

    It counts the batches it has *yielded* in the current epoch (workers may have prefetched
    more from the sampler) and reports them through ``state_dict()`` (the sampler's state with
    ``position = batches * batch_size``); ``load_state_dict`` makes the next iteration of the
    saved epoch skip those positions without loading them. Lightning saves and restores this
    state by itself (it treats any train loader with ``state_dict``/``load_state_dict`` as
    resumable). Construct it like a ``DataLoader`` with ``sampler=ShardedEpochSampler(...)``
    and ``drop_last=False``.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> loader = ResumableDataLoader(TensorDataset(torch.arange(10)), batch_size=4, sampler=ShardedEpochSampler(10, shuffle=False))
        >>> it = iter(loader); _ = next(it)
        >>> state = loader.state_dict()
        >>> state["position"]
        4
        >>> resumed = ResumableDataLoader(TensorDataset(torch.arange(10)), batch_size=4, sampler=ShardedEpochSampler(10, shuffle=False))
        >>> resumed.load_state_dict(state)
        >>> [b[0].tolist() for b in resumed]
        [[4, 5, 6, 7], [8, 9]]
    """

    def _epoch_sampler(self) -> ShardedEpochSampler | None:
        s = self.sampler
        return s if isinstance(s, ShardedEpochSampler) and self.batch_size is not None and not self.drop_last else None

    def __iter__(self):  # type: ignore[override]
        sampler = self._epoch_sampler()
        self._yielded = 0 if sampler is None else sampler.pending_position() // self.batch_size  # type: ignore[operator]
        for batch in super().__iter__():
            self._yielded += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        sampler = self._epoch_sampler()
        if sampler is None:
            raise TypeError("ResumableDataLoader needs sampler=ShardedEpochSampler(...), a batch_size and drop_last=False to save its position")
        return sampler.state_dict(position=getattr(self, "_yielded", 0) * self.batch_size)  # type: ignore[operator]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        sampler = self._epoch_sampler()
        if sampler is None:
            raise TypeError("ResumableDataLoader needs sampler=ShardedEpochSampler(...), a batch_size and drop_last=False to resume")
        if int(state.get("position", 0)) % self.batch_size and int(state.get("position", 0)) != len(sampler):  # type: ignore[operator]
            raise ValueError(f"loader position {state.get('position')} is not a whole number of batches of {self.batch_size}")
        sampler.load_state_dict(state)


def restore_loader_positions(trainer: Any) -> None:
    """Hand a resumed fit's saved loader positions to its train loaders, if Lightning has not.

    Lightning (2.x) loads the positions saved in a mid-epoch checkpoint only when it builds the
    train loaders *after* restoring the checkpoint. A module whose ``configure_optimizers``
    reads ``trainer.estimated_stepping_batches`` (e.g. for a one-cycle schedule) makes it build
    them earlier, and the positions would be silently dropped: the resumed epoch would start
    from its first batch again. Call this from ``on_train_start`` (the loaders have not yielded
    a batch yet); it does nothing when there is nothing left to load.
    """
    fit_loop = getattr(trainer, "fit_loop", None)
    if fit_loop is None or not getattr(fit_loop, "_combined_loader_states_to_load", None):
        return
    fit_loop._load_combined_loader_states()
