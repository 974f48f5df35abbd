"""``IndexedSplits``: your own forget, remain and test sets, with pool indices by one rule.

The bridge from a user's data to everything the library reads by pool index: the unlearning
request (:meth:`lightning_unlearn.unlearning.UnlearningRequest.from_splits`), the audit metrics
(their ``update(logits, labels, index, split)``) and reference signals of your own reference
models (:func:`lightning_unlearn.inference.reference_signals`). The rule that numbers items
without an index is :mod:`lightning_unlearn.data.items`' (forget, then remain, then test, by
position).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from lightning_unlearn.data.items import PART_ORDER, index_parts

#: the split codes of the audit metrics (:data:`lightning_unlearn.metrics.SPLITS`), for the parts here
SPLIT_CODES = {"forget": 0, "remain": 1, "test": 2}


class _WithSplit(Dataset):
    """Items ``(x, y, index, split)`` of a dataset of ``(x, y, index)`` items, ``split`` one int64 code."""

    def __init__(self, dataset: Dataset, code: int) -> None:
        self.dataset, self.code = dataset, torch.tensor(code, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        x, y, index = self.dataset[i]
        return x, y, index, self.code


class IndexedSplits:
    """Your forget, remain and (optional) test sets as datasets of ``(x, y, index)`` items.

    Items without an index are numbered by position: forget ``0..n_F-1``, remain
    ``n_F..n_F+n_R-1``, test after them (:mod:`lightning_unlearn.data.items`); items that carry an
    index keep it. Every part is read and checked once, here: item form, ``x`` (a ``uint8`` or
    ``[0, 1]`` float tensor of one shape), labels in ``0..num_classes-1`` (stored ``int64``),
    disjoint indices.

    Args:
        forget: D_F: a ``Dataset`` or a ``DataLoader`` over one, items ``(x, y)``, ``(x, y, index)``
            or dicts (with ``keys``).
        remain: D_R (optional: the "D_F only" setting, or audits without it).
        test: D_T, data never trained on (optional; the audits' non-members).
        num_classes: K.
        keys: for dict items, which key holds ``x``, ``y`` (and ``index``), e.g.
            ``{"x": "image", "y": "label"}``.

    Attributes:
        forget, remain, test: datasets of ``(x, y, index)`` items (``None`` for a part not given).
        positional: part name -> first pool index, for the parts numbered by position.
        size: P, one more than the largest pool index (the width of reference-signal matrices).

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> s = IndexedSplits(TensorDataset(torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 1])),
        ...                   TensorDataset(torch.rand(6, 1, 8, 8), torch.zeros(6, dtype=torch.int32)),
        ...                   test=TensorDataset(torch.rand(5, 1, 8, 8), torch.ones(5, dtype=torch.long)), num_classes=3)
        >>> s.positional, s.size, s.index_of("test").tolist()
        ({'forget': 0, 'remain': 4, 'test': 10}, 15, [10, 11, 12, 13, 14])
    """

    def __init__(
        self,
        forget: Dataset | DataLoader,
        remain: Dataset | DataLoader | None = None,
        *,
        test: Dataset | DataLoader | None = None,
        num_classes: int,
        keys: Mapping[str, str] | None = None,
    ) -> None:
        indexed = index_parts({"forget": forget, "remain": remain, "test": test}, num_classes=num_classes, keys=keys)
        self.num_classes = num_classes
        forget_part = indexed.parts["forget"]
        assert forget_part is not None  # index_parts requires the forget set
        self.forget: Dataset = forget_part
        self.remain: Dataset | None = indexed.parts["remain"]
        self.test: Dataset | None = indexed.parts["test"]
        self.positional = indexed.positional
        self.x_shape = indexed.x_shape
        self.size = 1 + max(int(self.index_of(name).max()) for name in self.names)

    @property
    def names(self) -> tuple[str, ...]:
        """The parts given, in the order ``forget, remain, test``."""
        return tuple(name for name in PART_ORDER if getattr(self, name) is not None)

    def part(self, name: str) -> Dataset:
        """The dataset of part ``name`` (``"forget"``, ``"remain"`` or ``"test"``); raises ``ValueError`` for a part not given."""
        if name not in PART_ORDER:
            raise ValueError(f"unknown part {name!r}: expected one of {PART_ORDER}")
        data = getattr(self, name)
        if data is None:
            raise ValueError(f"no {name} set was given to IndexedSplits (given: {', '.join(self.names)})")
        return data

    def index_of(self, name: str) -> torch.Tensor:
        """``(n,)`` int64 pool indices of part ``name``, in item order."""
        return self.part(name).index  # both IndexedTensorDataset and IndexedView keep their index tensor

    def dataloader(self, name: str, *, batch_size: int = 256, **loader_kwargs: Any) -> DataLoader:
        """A fixed-order loader of part ``name``, batches ``(x, y, index)`` (e.g. one validation loader per split)."""
        return DataLoader(self.part(name), batch_size=batch_size, shuffle=False, **loader_kwargs)

    def audit_dataloader(self, names: Sequence[str] | None = None, *, batch_size: int = 256, **loader_kwargs: Any) -> DataLoader:
        """One fixed-order loader over several parts (default: every part given), batches ``(x, y, index, split)``.

        ``split`` is the ``(B,)`` int64 code of each sample's part (0 forget, 1 remain, 2 test:
        the codes of :data:`lightning_unlearn.metrics.SPLITS`), so an audit metric takes it
        straight from the batch: ``metric.update(logits, y, index, split)``. One validation
        loader means one logged key per metric (several loaders make Lightning log a metric per
        loader).
        """
        names = tuple(self.names if names is None else names)
        tagged = [_WithSplit(self.part(n), SPLIT_CODES[n]) for n in names]
        return DataLoader(ConcatDataset(tagged), batch_size=batch_size, shuffle=False, **loader_kwargs)

    def pool(self) -> Dataset:
        """Every part given, as one dataset of ``(x, y, index)`` items (forget, remain, test)."""
        return ConcatDataset([self.part(n) for n in self.names])


__all__ = ["SPLIT_CODES", "IndexedSplits"]
