"""Shared machinery of the audit metrics: split tags, per-sample ``cat`` states, de-duplication.

Every audit metric records per-sample values with their **pool index** and **split tag** as list
states reduced by concatenation (docs/metrics.md, section 9). ``compute()`` then runs, in this order:
sync (torchmetrics gathers the states of all ranks, rank-major), **de-duplicate by
(split, index)** (``DistributedSampler`` pads each rank to ``ceil(N / W)`` samples by repeating
the first indices), **sort by index** (gather order is not data order), then the functional form.
Every rank therefore runs the same deterministic computation on the same sorted data, and sklearn
fits agree across ranks (docs/metrics.md, section 9).

torchmetrics habits (docs/metrics.md, section 10): ``metric(...)`` (``forward``) records the batch
as ``update`` does and returns ``None`` (an audit has no per-batch value); ``compute()`` returns
tensors in the metric's dtype (``float32`` unless ``metric.set_dtype(torch.float64)``); a
warning raised while computing (a low-FPR variance warning, floored signals, ...) is shown once
per metric object, not at every epoch.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

#: Split tags stored in the ``split`` state.
SPLITS: dict[str, int] = {"forget": 0, "remain": 1, "test": 2, "forget_class_test": 3, "remain_class_test": 4}
_N_TAGS = 8


def split_code(split: str | int | torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    """The ``(n,)`` int64 split tags of a batch: a name from :data:`SPLITS`, a code, or a tensor of codes."""
    if isinstance(split, str):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
        return torch.full((n,), SPLITS[split], dtype=torch.long, device=device)
    t = torch.as_tensor(split, device=device).long()
    t = t.expand(n) if t.ndim == 0 else t
    if t.shape != (n,):
        raise ValueError(f"split must be a name, a code or an ({n},) tensor of codes, got shape {tuple(t.shape)}")
    if n and (t.min().item() < 0 or t.max().item() >= _N_TAGS):
        raise ValueError(f"split codes must lie in [0, {_N_TAGS}), got values in [{t.min().item()}, {t.max().item()}]")
    return t


def check_index(index: torch.Tensor, n: int) -> torch.Tensor:
    index = torch.as_tensor(index)
    if index.is_floating_point() or index.shape != (n,):
        raise ValueError(f"index must be an integer tensor of shape ({n},), got {index.dtype} {tuple(index.shape)}")
    if n and index.min().item() < 0:
        raise ValueError(f"index must hold non-negative pool indices, got minimum {index.min().item()}")
    return index.long()


def dedupe_sort(index: torch.Tensor, split: torch.Tensor) -> torch.Tensor:
    """Positions that keep the first record of each (split, index) pair, in increasing (index, split) order.

    Args:
        index: ``(N,)`` int64 pool indices; split: ``(N,)`` int64 tags in ``[0, 8)``.

    Returns:
        ``(U,)`` int64 positions into the gathered records.
    """
    key = index.long() * _N_TAGS + split.long()
    uniq, inverse = torch.unique(key, sorted=True, return_inverse=True)
    first = torch.full((uniq.numel(),), key.numel(), dtype=torch.long, device=key.device)
    first.scatter_reduce_(0, inverse, torch.arange(key.numel(), device=key.device), reduce="amin")
    return first


def assert_same_on_all_ranks(values: torch.Tensor, what: str) -> None:
    """Debug check (docs/metrics.md, section 9): all-reduce ``values`` with MIN and MAX and require equality."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    v = values.detach().double().reshape(-1).clone()
    lo, hi = v.clone(), v.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    if not torch.equal(lo.nan_to_num(-1.0), hi.nan_to_num(-1.0)):
        raise RuntimeError(f"{what} differs across ranks: min {lo.tolist()} vs max {hi.tolist()}")


class IncompleteSplitsWarning(UserWarning):
    """A metric was computed before every split it needs was recorded; its value is ``nan``."""


def split_name(code: int) -> str:
    """The name of a split code of :data:`SPLITS` (or ``"split <code>"`` for a custom code)."""
    names = {v: k for k, v in SPLITS.items()}
    return repr(names[code]) if code in names else f"split {code}"


class IndexedRecords(Metric):
    """Base of the audit metrics: list states ``index`` and ``split`` plus named per-sample states.

    Subclasses call :meth:`_add_record_states` with their value states, append in ``update`` via
    :meth:`_append`, and read de-duplicated, index-sorted records in ``compute`` via
    :meth:`_records`. Labels recorded for the same (split, index) on several ranks must agree.

    Class attributes:
        agreeing_states: value states whose repeated records of one (split, index) must agree
            (within ``rtol=1e-4, atol=1e-6``: ``DistributedSampler`` padding repeats a sample,
            evaluated in another batch); a conflict is an error naming the index and split.
        one_split_per_index: a pool index may be recorded under one split only.
    """

    is_differentiable: bool = False
    higher_is_better: bool | None = None
    full_state_update: bool = False
    agreeing_states: tuple[str, ...] = ()
    one_split_per_index: bool = False

    def __init__(self, *, check_ranks_agree: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check_ranks_agree = bool(check_ranks_agree)
        self._value_states: tuple[str, ...] = ()
        self._warned: set[type[Warning]] = set()
        self.add_state("index", default=[], dist_reduce_fx="cat")
        self.add_state("split", default=[], dist_reduce_fx="cat")

    def forward(self, *args: Any, **kwargs: Any) -> None:
        """``metric(...)``: record the batch exactly as :meth:`update` does, and return ``None``.

        An audit is a statistic of the whole population of recorded samples (an SVC fitted on
        members and non-members, RMIA scores against every other sample), so one batch has no
        value of its own; ``compute()`` gives the value over everything recorded. Logging the
        metric object (``self.log(name, metric)``) logs that value at the epoch's end.
        """
        self.update(*args, **kwargs)
        self._forward_cache = None

    @contextlib.contextmanager
    def _warnings_once(self) -> Iterator[None]:
        """Show each category of warning raised inside the block once per metric object (not at every compute)."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for w in caught:
            if w.category in self._warned:
                continue
            self._warned.add(w.category)
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    def _as_tensor(self, value: float) -> torch.Tensor:
        """``value`` as a 0-dim tensor in the metric's dtype (``float32`` unless ``set_dtype``), on its device."""
        return torch.tensor(float(value), dtype=self.dtype, device=self.device)

    def _as_tensors(self, values: Mapping[str, float]) -> dict[str, torch.Tensor]:
        """Each value of ``values`` as :meth:`_as_tensor`."""
        return {k: self._as_tensor(v) for k, v in values.items()}

    def _add_record_states(self, names: Sequence[str]) -> None:
        for name in names:
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self._value_states = tuple(names)

    def _append(self, index: torch.Tensor, split: torch.Tensor, **values: torch.Tensor) -> None:
        self.index.append(index.to(self.device))
        self.split.append(split.to(self.device))
        for name, v in values.items():
            getattr(self, name).append(v.detach().to(self.device))

    def _records(self) -> dict[str, torch.Tensor]:
        """The gathered records: de-duplicated by (split, index), sorted by index; keys ``index``, ``split`` and the value states."""
        # before sync the states are lists of batches; after sync, one gathered tensor
        if isinstance(self.index, list) and len(self.index) == 0:
            raise ValueError(f"{type(self).__name__}.compute() called before any update (no samples recorded)")
        index = dim_zero_cat(self.index).long()
        if index.numel() == 0:
            raise ValueError(f"{type(self).__name__}.compute(): no samples were recorded on any rank")
        split = dim_zero_cat(self.split).long()
        keep = dedupe_sort(index, split)
        _, inverse = torch.unique(index * _N_TAGS + split, sorted=True, return_inverse=True)
        out = {"index": index[keep], "split": split[keep]}
        for name in self._value_states:
            v = dim_zero_cat(getattr(self, name))
            if name == "labels":
                v = v.long()
                if not torch.equal(v[keep][inverse], v):
                    raise ValueError("records with the same (split, index) carry different labels: indices must identify samples")
            if name in self.agreeing_states:
                self._check_agreement(name, v, keep, inverse, index, split)
            out[name] = v[keep]
        if self.one_split_per_index:
            self._check_one_split(out["index"], out["split"])
        return out

    def _check_agreement(self, name: str, v: torch.Tensor, keep, inverse, index, split) -> None:
        """Raise if two records of one (split, index) differ in ``name`` beyond float noise."""
        first = v[keep][inverse]
        if v.is_floating_point():
            same = torch.isclose(v, first, rtol=1e-4, atol=1e-6, equal_nan=True)
        else:
            same = v == first
        same = same.reshape(len(v), -1).all(dim=1)
        if bool(same.all()):
            return
        bad = int(torch.nonzero(~same)[0])
        rows = f"{first[bad].flatten()[:4].tolist()} and {v[bad].flatten()[:4].tolist()}"
        raise ValueError(
            f"{type(self).__name__}: pool index {int(index[bad])} was recorded twice under split {split_name(int(split[bad]))} "
            f"with different {name} ({rows}): a sample may be recorded again only with the same values (as DDP padding does)"
        )

    def _check_one_split(self, index: torch.Tensor, split: torch.Tensor) -> None:
        """Raise if a pool index carries two splits (``index`` sorted, one record per (split, index))."""
        twice = torch.nonzero(index[1:] == index[:-1]).flatten()
        if twice.numel() == 0:
            return
        i = int(twice[0])
        raise ValueError(
            f"{type(self).__name__}: pool index {int(index[i])} was recorded under two splits, {split_name(int(split[i]))} and "
            f"{split_name(int(split[i + 1]))}; each sample belongs to one split (check the indices passed to update)"
        )

    def _check_ranks(self, values: torch.Tensor) -> None:
        if self.check_ranks_agree:
            assert_same_on_all_ranks(values, f"{type(self).__name__}.compute()")
