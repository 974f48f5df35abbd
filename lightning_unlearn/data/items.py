"""A user's own data as ``(x, y, index)`` items: accepted item forms, validation, and the pool-index rule.

The library's methods and audits read items ``(x, y, index)``: an image, its class and its
**pool index** (the number that identifies the sample, see :mod:`lightning_unlearn.data.pool`).
Data of your own can come in any of these forms:

- a ``Dataset`` (map-style) or a ``DataLoader`` over one (the loader stands for its dataset: the
  method batches, shuffles and shards by itself, so a loader with its own ``collate_fn`` is
  refused rather than silently bypassed);
- items ``(x, y)`` or ``(x, y, index)`` (tuples or lists; a ``TensorDataset`` of two or three
  tensors is read without a Python loop);
- dict items, read through ``keys={"x": "image", "y": "label"}`` (add ``"index": ...`` when a key
  holds the sample's index).

``x`` is a tensor, ``uint8`` or floating point with values in ``[0, 1]`` (pixels; a model that
expects standardised inputs gets them through a method's ``normalizer``); every ``x`` of a set
has one shape and dtype. ``y`` is an integer class in ``0..K-1`` (any integer dtype; stored as
``int64``). ``index`` is a non-negative integer, unique across every set of one request.

**The index rule.** Items without an index get one by position: the parts are numbered one
after another in a fixed order (forget, remain, then test), so sample ``i`` of the forget set
gets pool index ``i``, sample ``j`` of the remain set ``n_F + j``, sample ``k`` of the test set
``n_F + n_R + k``. The first index of each part numbered this way is recorded
(:attr:`IndexedParts.positional`). Parts whose items carry their own index keep it. Every check
reads each part once, when the request (or :class:`~lightning_unlearn.data.IndexedSplits`) is
built, and raises ``ValueError`` / ``TypeError`` naming the set, the item and the accepted forms.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset, default_collate

from lightning_unlearn.data.datasets import IndexedTensorDataset

#: what the error messages quote as the accepted item forms
ACCEPTED_FORMS = (
    "items (x, y) or (x, y, index) (tuples or lists), or dict items read through keys={'x': ..., 'y': ...} "
    "(plus 'index': ... when a key holds the sample's index); x a uint8 or float tensor of pixels in [0, 1], "
    "y an integer class"
)
#: the order in which parts without their own indices are numbered
PART_ORDER = ("forget", "remain", "test")
_KEY_NAMES = ("x", "y", "index")


def check_keys(keys: Mapping[str, str] | None) -> dict[str, str] | None:
    """Validate a key mapping for dict items: ``"x"`` and ``"y"`` required, ``"index"`` optional, nothing else."""
    if keys is None:
        return None
    keys = dict(keys)
    unknown = sorted(set(keys) - set(_KEY_NAMES))
    missing = [k for k in ("x", "y") if k not in keys]
    if unknown or missing:
        raise ValueError(
            f"keys maps the fields x, y (and optionally index) to the keys of your dict items, e.g. keys={{'x': 'image', 'y': 'label'}}; "
            f"got {keys!r}" + (f" (unknown field(s) {unknown})" if unknown else "") + (f" (missing {missing})" if missing else "")
        )
    return keys


def as_map_dataset(data: Any, what: str) -> Dataset:
    """``data`` as a map-style dataset: a ``Dataset`` itself, or a ``DataLoader``'s ``dataset``.

    Raises:
        TypeError: neither; an iterable-style dataset; a loader with its own ``collate_fn``.
    """
    if isinstance(data, DataLoader):
        if data.collate_fn is not default_collate:
            raise TypeError(
                f"the {what} set's DataLoader has its own collate_fn ({getattr(data.collate_fn, '__name__', data.collate_fn)!r}); "
                "the unlearning method batches the items itself and would bypass it: pass the dataset, with items in one of the "
                f"accepted forms ({ACCEPTED_FORMS})"
            )
        data = data.dataset
    if isinstance(data, torch.utils.data.IterableDataset) or not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
        raise TypeError(f"the {what} set must be a map-style Dataset (with __len__ and __getitem__) or a DataLoader over one, got {type(data).__name__}")
    return data


@dataclass
class ReadPart:
    """What reading one part found: its labels, its own indices (``None`` without), and its ``x`` layout."""

    labels: torch.Tensor
    index: torch.Tensor | None
    x_shape: tuple[int, ...]
    x_dtype: torch.dtype


def _where(what: str, position: int | None) -> str:
    return f"the {what} set" if position is None else f"item {position} of the {what} set"


def _split_item(item: Any, keys: dict[str, str] | None, what: str, position: int) -> tuple[Any, Any, Any]:
    """``(x, y, index or None)`` of one item, per the accepted forms."""
    if isinstance(item, Mapping):
        if keys is None:
            raise TypeError(
                f"{_where(what, position)} is a dict with keys {sorted(map(str, item))}: say which key holds what with "
                "keys={'x': ..., 'y': ...} (and 'index': ... if one holds the sample's index)"
            )
        missing = [keys[k] for k in keys if keys[k] not in item]
        if missing:
            raise KeyError(f"{_where(what, position)} has no key(s) {missing} named in keys={keys!r}; its keys are {sorted(map(str, item))}")
        return item[keys["x"]], item[keys["y"]], item[keys["index"]] if "index" in keys else None
    if keys is not None:
        raise TypeError(f"keys={keys!r} reads dict items, but {_where(what, position)} is a {type(item).__name__}")
    if isinstance(item, (tuple, list)) and len(item) in (2, 3):
        return item[0], item[1], item[2] if len(item) == 3 else None
    size = f" of length {len(item)}" if isinstance(item, (tuple, list)) else ""
    raise TypeError(f"{_where(what, position)} is a {type(item).__name__}{size}; accepted: {ACCEPTED_FORMS}")


def _as_integer(value: Any, field: str, what: str, position: int) -> int:
    t = torch.as_tensor(value) if not isinstance(value, torch.Tensor) else value
    if t.numel() != 1 or t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        shown = value if t.numel() == 1 else f"a tensor of shape {tuple(t.shape)}"
        raise TypeError(f"{_where(what, position)} has {field} {shown!r} ({t.dtype}); {field} must be one integer")
    return int(t.item())


def _check_pixels(x: Any, what: str, position: int | None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"x of {_where(what, position)} is a {type(x).__name__}, not a tensor: convert it in your dataset "
            "(torchvision.transforms.functional.pil_to_tensor for uint8, to_tensor for [0, 1] floats, or torch.as_tensor)"
        )
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise TypeError(f"x of {_where(what, position)} has dtype {x.dtype}; x must be uint8 pixels or floats in [0, 1]")
    return x


def check_pixel_range(low: float, high: float, what: str) -> None:
    """Float pixels must lie in ``[0, 1]``; the message gives the one-line fix for standardised data."""
    if low < -1e-6 or high > 1 + 1e-6:
        raise ValueError(
            f"the {what} set's x values lie in [{low:.3g}, {high:.3g}], outside [0, 1]: the unlearning methods take pixels in [0, 1] "
            "(attacks search in that box). If your dataset standardises its images, drop that step from the dataset and give the "
            "method the same transform, e.g. start_unlearning(method, request, normalizer=Normalize(mean, std)) "
            "(lightning_unlearn.models.Normalize): every forward of the method (attack and fine-tuning alike) then applies it"
        )


def _tensor_columns(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None:
    """``(x, y, index or None)`` of a tensor-backed dataset, without reading items one by one."""
    if isinstance(dataset, IndexedTensorDataset):
        return dataset.x, dataset.y, dataset.index
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) in (2, 3):
        t = dataset.tensors
        return t[0], t[1], t[2] if len(t) == 3 else None
    return None


def _check_labels(labels: torch.Tensor, num_classes: int, what: str) -> torch.Tensor:
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"the {what} set's labels have dtype {labels.dtype}; labels must be integer classes 0..{num_classes - 1}")
    labels = labels.long().reshape(-1)
    if labels.numel():
        bad = torch.nonzero((labels < 0) | (labels >= num_classes)).flatten()
        if bad.numel():
            i = int(bad[0])
            raise ValueError(f"item {i} of the {what} set has label {int(labels[i])}, outside the classes 0..{num_classes - 1} (num_classes={num_classes})")
    return labels


def _check_own_index(index: torch.Tensor, what: str) -> torch.Tensor:
    if index.dtype == torch.bool or index.is_floating_point():
        raise TypeError(f"the {what} set's indices have dtype {index.dtype}; indices must be non-negative integers")
    index = index.long().reshape(-1)
    if index.numel() and int(index.min()) < 0:
        raise ValueError(f"the {what} set has a negative index ({int(index.min())}); indices must be non-negative integers")
    uniq, counts = torch.unique(index, return_counts=True)
    if bool((counts > 1).any()):
        raise ValueError(f"the {what} set holds index {int(uniq[counts > 1][0])} more than once; every sample needs its own index")
    return index


def read_part(dataset: Dataset, *, what: str, num_classes: int, keys: dict[str, str] | None = None) -> ReadPart:
    """Read every item of ``dataset`` once and check it (see the module docstring for the rules).

    Raises:
        TypeError: an item of another form, ``x`` not a pixel tensor, a non-integer label or index.
        ValueError: a label outside ``0..num_classes-1``, float pixels outside ``[0, 1]``, ``x`` of
            varying shape or dtype, a negative or repeated index.
    """
    columns = None if keys is not None else _tensor_columns(dataset)
    if columns is not None:
        x, y, index = columns
        _check_pixels(x, what, None)
        if len(y) != len(x) or (index is not None and len(index) != len(x)):
            raise ValueError(f"the {what} set's tensors have different lengths")
        if x.is_floating_point() and x.numel():
            check_pixel_range(float(x.min()), float(x.max()), what)
        labels = _check_labels(torch.as_tensor(y), num_classes, what)
        own = None if index is None else _check_own_index(torch.as_tensor(index), what)
        return ReadPart(labels, own, tuple(x.shape[1:]), x.dtype)
    labels_, index_, shape, dtype, low, high, has_index = [], [], None, None, 0.0, 1.0, False
    for i in range(len(dataset)):
        x, y, idx = _split_item(dataset[i], keys, what, i)
        x = _check_pixels(x, what, i)
        if shape is None:
            shape, dtype = tuple(x.shape), x.dtype
        elif tuple(x.shape) != shape or x.dtype != dtype:
            raise ValueError(f"item {i} of the {what} set has x of shape {tuple(x.shape)} and dtype {x.dtype}, item 0 {shape} and {dtype}: all must agree")
        if x.is_floating_point() and x.numel():
            low, high = min(low, float(x.min())), max(high, float(x.max()))
        labels_.append(_as_integer(y, "label", what, i))
        if i == 0:
            has_index = idx is not None
        elif (idx is not None) != has_index:
            raise TypeError(f"item {i} of the {what} set {'has' if has_index is False else 'lacks'} an index and item 0 {'has' if has_index else 'lacks'} one")
        if idx is not None:
            index_.append(_as_integer(idx, "index", what, i))
    check_pixel_range(low, high, what)
    labels = _check_labels(torch.tensor(labels_, dtype=torch.long), num_classes, what)
    own = _check_own_index(torch.tensor(index_, dtype=torch.long), what) if index_ else None
    return ReadPart(labels, own, shape or (), dtype or torch.float32)


class IndexedView(Dataset):
    """Items ``(x, y, index)`` of a user's dataset: ``y`` as ``int64``, ``index`` from ``index`` (one per item).

    Args:
        dataset: the user's map-style dataset (items in an accepted form).
        index: ``(N,)`` int64 pool indices, the item's own or assigned by position.
        keys: the key mapping of dict items.
    """

    def __init__(self, dataset: Dataset, index: torch.Tensor, *, keys: dict[str, str] | None = None, what: str = "given") -> None:
        if len(index) != len(dataset):
            raise ValueError(f"index must have one entry per item ({len(dataset)}), got {len(index)}")
        self.dataset, self.index, self.keys, self.what = dataset, index.long(), keys, what

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        x, y, _ = _split_item(self.dataset[i], self.keys, self.what, i)
        return x, torch.as_tensor(y).long().reshape(()), self.index[i]


@dataclass
class IndexedParts:
    """Parts of one request (or split set) as datasets of ``(x, y, index)`` items, with the rule that indexed them.

    Attributes:
        parts: part name -> dataset of ``(x, y, index)`` (``None`` for a part not given).
        positional: part name -> first pool index, for the parts numbered by position (see the
            module docstring); parts whose items carried their own index are absent.
        sizes: part name -> number of samples.
        x_shape: the shape of one ``x`` (the same in every part).
    """

    parts: dict[str, Dataset | None]
    positional: dict[str, int]
    sizes: dict[str, int]
    x_shape: tuple[int, ...]


def index_parts(data: Mapping[str, Any], *, num_classes: int, keys: Mapping[str, str] | None = None) -> IndexedParts:
    """Read, check and index the parts of ``data`` (names from :data:`PART_ORDER`, ``None`` for absent parts).

    Parts without their own indices are numbered by position in :data:`PART_ORDER`, each after
    the sizes of every earlier part given (the module docstring's rule). All parts must agree on
    ``x``'s shape and dtype and hold disjoint indices.

    Raises:
        TypeError, ValueError: see :func:`read_part`; also overlapping indices across parts.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> p = index_parts({"forget": TensorDataset(torch.rand(2, 1, 4, 4), torch.tensor([0, 1])),
        ...                  "remain": TensorDataset(torch.rand(3, 1, 4, 4), torch.tensor([1, 2, 2]))}, num_classes=3)
        >>> p.positional, [int(i) for _, _, i in p.parts["remain"]]
        ({'forget': 0, 'remain': 2}, [2, 3, 4])
    """
    keys = check_keys(keys)
    unknown = sorted(set(data) - set(PART_ORDER))
    if unknown:
        raise ValueError(f"unknown part(s) {unknown}: expected names among {PART_ORDER}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    parts: dict[str, Dataset | None] = {}
    positional: dict[str, int] = {}
    sizes: dict[str, int] = {}
    seen: dict[str, torch.Tensor] = {}
    layout: tuple[str, tuple[int, ...], torch.dtype] | None = None
    offset = 0
    for name in PART_ORDER:
        if data.get(name) is None:
            parts[name] = None
            continue
        dataset = as_map_dataset(data[name], name)
        if len(dataset) == 0:
            raise ValueError(f"the {name} set is empty")
        read = read_part(dataset, what=name, num_classes=num_classes, keys=keys)
        if layout is None:
            layout = (name, read.x_shape, read.x_dtype)
        elif (read.x_shape, read.x_dtype) != layout[1:]:
            raise ValueError(
                f"the {name} set's x has shape {read.x_shape} and dtype {read.x_dtype}, the {layout[0]} set's {layout[1]} and {layout[2]}: "
                "all sets must agree"
            )
        index = read.index
        if index is None:
            positional[name] = offset
            index = torch.arange(offset, offset + len(dataset), dtype=torch.long)
        for other, other_index in seen.items():
            common = torch.isin(index, other_index)
            if bool(common.any()):
                rule = " (numbered by position: give every set its own indices, or none)" if name in positional or other in positional else ""
                raise ValueError(f"index {int(index[common][0])} is both in the {other} set and in the {name} set{rule}; the sets must be disjoint")
        seen[name], sizes[name] = index, len(dataset)
        offset += len(dataset)
        columns = None if keys is not None else _tensor_columns(dataset)
        if columns is not None:
            parts[name] = IndexedTensorDataset(columns[0], read.labels, index)
        else:
            parts[name] = IndexedView(dataset, index, keys=keys, what=name)
    if layout is None:
        raise ValueError("no data given: a forget set is required")
    return IndexedParts(parts, positional, sizes, layout[1])


__all__ = ["ACCEPTED_FORMS", "PART_ORDER", "IndexedParts", "IndexedView", "as_map_dataset", "check_keys", "index_parts", "read_part"]
