"""``UnlearningRequest``: what to forget, and which data an unlearning method may touch.

A request is built from a data module (:meth:`UnlearningRequest.from_datamodule`), from
:class:`~lightning_unlearn.data.IndexedSplits` (:meth:`UnlearningRequest.from_splits`), or
directly from your own datasets or loaders::

    UnlearningRequest(TensorDataset(x_f, y_f), TensorDataset(x_r, y_r), num_classes=10)

Every form is read and checked when the request is built (item form, pixels, labels, disjoint
indices; :mod:`lightning_unlearn.data.items`), and items without an index are numbered by the
library's one rule: the forget set from 0, the remain set after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from typing import Any, Literal

from torch.utils.data import DataLoader, Dataset

from lightning_unlearn.data.forget import check_forget_classes
from lightning_unlearn.data.items import index_parts
from lightning_unlearn.data.transforms import normalize_augmentation, resolve_augmentation

Kind = Literal["random", "class"]
SETTINGS: tuple[tuple[Kind, bool], ...] = (("random", True), ("random", False), ("class", True), ("class", False))


def describe_setting(kind: str, has_remain: bool) -> str:
    return f"{kind} forgetting {'with the remain set' if has_remain else 'with the forget set only'}"


@dataclass(frozen=True)
class UnlearningRequest:
    """What to forget, and which data the method may touch.

    Attributes:
        forget: the forget set D_F. Given as a ``Dataset`` or a ``DataLoader`` over one, with
            items ``(x, y)``, ``(x, y, index)`` or dicts (read through ``keys``); stored as a
            dataset of ``(x, y, index)`` items (labels ``int64``).
        remain: the remain set D_R in the same forms, or ``None`` when only D_F is available
            (the "D_F only" setting: the method then never touches remain data).
        num_classes: number of classes K.
        forget_classes: the forgotten classes for class forgetting; empty for random forgetting.
        augmentation: the unlearning phase's augmentation of D_F and D_R (``"crop_flip"``, or
            ``"none"`` / ``None`` for none; stored as ``"crop_flip"`` or ``None``); see
            :meth:`from_datamodule` for the reference recipe (``"auto"``).
        batch_size: the unlearning phase's batch size (default 128, as in the papers).
        seed: seeds every random choice of the method (label draws, shuffling), identically
            on every rank.
        keys: (constructor only) for dict items, which key holds ``x``, ``y`` and optionally
            ``index``, e.g. ``{"x": "image", "y": "label"}``.
        positional: the parts whose items carried no index, with the first pool index the rule
            gave them (``{"forget": 0, "remain": n_F}`` for plain ``(x, y)`` sets; empty when every
            item carried its own). Recorded in checkpoints with the request.

    Raises:
        TypeError, ValueError: when built, naming the set, the item and what is accepted: an
            item of another form, ``x`` that is not a ``uint8`` or ``[0, 1]`` float tensor,
            labels that are not integers in ``0..K-1``, indices shared by D_F and D_R, an empty
            forget set, bad ``forget_classes``, ``augmentation`` or ``batch_size``.

    Example:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> r = UnlearningRequest(TensorDataset(torch.rand(3, 1, 8, 8), torch.tensor([0, 1, 1])),
        ...                       TensorDataset(torch.rand(5, 1, 8, 8), torch.tensor([2, 0, 1, 1, 2], dtype=torch.int32)), num_classes=3)
        >>> r.positional, [int(i) for _, _, i in r.remain], r.remain[0][1].dtype
        ({'forget': 0, 'remain': 3}, [3, 4, 5, 6, 7], torch.int64)
    """

    forget: Dataset | DataLoader
    remain: Dataset | DataLoader | None
    num_classes: int
    forget_classes: tuple[int, ...] = ()
    augmentation: str | None = None
    batch_size: int = 128
    seed: int = 0
    keys: InitVar[Mapping[str, str] | None] = None
    positional: dict[str, int] = field(default_factory=dict)

    def __post_init__(self, keys: Mapping[str, str] | None) -> None:
        if self.forget is None:
            raise ValueError("an unlearning request needs a forget set; got None")
        indexed = index_parts({"forget": self.forget, "remain": self.remain}, num_classes=self.num_classes, keys=keys)
        object.__setattr__(self, "forget", indexed.parts["forget"])
        object.__setattr__(self, "remain", indexed.parts["remain"])
        # a request rebuilt from stored parts (dataclasses.replace) keeps the rule that first numbered them
        object.__setattr__(self, "positional", {**indexed.positional, **self.positional} if self.positional else indexed.positional)
        if self.forget_classes:
            object.__setattr__(self, "forget_classes", check_forget_classes(self.forget_classes, self.num_classes))
        object.__setattr__(self, "augmentation", normalize_augmentation(self.augmentation))
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")

    @property
    def kind(self) -> Kind:
        return "class" if self.forget_classes else "random"

    @property
    def has_remain(self) -> bool:
        return self.remain is not None

    def describe(self) -> str:
        """One line naming the setting and the sizes (used in error messages)."""
        sizes = f"{len(self.forget)} forget" + ("" if self.remain is None else f", {len(self.remain)} remain")
        classes = f", forget_classes={self.forget_classes}" if self.forget_classes else ""
        return f"{describe_setting(self.kind, self.has_remain)} ({sizes} samples{classes})"

    @classmethod
    def from_datamodule(
        cls,
        dm,
        *,
        use_remain: bool = True,
        batch_size: int | None = None,
        seed: int | None = None,
        augmentation: str | None = "auto",
    ) -> "UnlearningRequest":
        """The request of an :class:`~lightning_unlearn.data.UnlearningDataModule`'s forget spec.

        Args:
            dm: the data module (set up here if it is not yet).
            use_remain: give the method D_R (``False``: the "D_F only" setting).
            batch_size: the unlearning phase's batch size (default ``dm.batch_size``).
            seed: the request's seed (default ``dm.seed``).
            augmentation: the unlearning phase's augmentation of D_R and D_F, chosen
                independently of how the original model was trained (``dm.augmentation``):
                ``"auto"`` (default) is the reference recipe of the papers' code, crop+flip
                (random 32x32 crop of the 4-pixel zero-padded image, horizontal flip with
                probability 1/2) for RGB images of 32x32 or more and none otherwise (e.g.
                digits); ``"crop_flip"``; ``"none"`` / ``None``. Pass ``dm.augmentation`` to reuse
                the originals' recipe. Methods that add generated inputs (AMUN's adversarial
                set) leave those unaugmented unless they say otherwise.

        Raises:
            ValueError: an unknown ``augmentation``, naming it and the allowed ones.
        """
        dm.setup()
        return cls(
            forget=dm.forget_set(),
            remain=dm.remain_set() if use_remain else None,
            num_classes=dm.num_classes,
            forget_classes=dm.forget_spec.classes if dm.is_class_forgetting else (),
            augmentation=resolve_augmentation(augmentation, dm.image_shape),
            batch_size=batch_size or dm.batch_size,
            seed=dm.seed if seed is None else seed,
        )

    @classmethod
    def from_splits(
        cls,
        splits,
        *,
        use_remain: bool = True,
        forget_classes: tuple[int, ...] = (),
        augmentation: str | None = None,
        batch_size: int = 128,
        seed: int = 0,
    ) -> "UnlearningRequest":
        """The request of your own :class:`~lightning_unlearn.data.IndexedSplits` (same pool indices as its audits).

        Args:
            splits: the indexed forget / remain (/ test) sets.
            use_remain: give the method D_R (``False``, or no remain set: the "D_F only" setting).
            forget_classes: the forgotten classes for class forgetting (default: random forgetting).
            augmentation: ``"auto"`` (crop+flip for RGB images of 32x32 or more), ``"crop_flip"``,
                ``"none"`` / ``None`` (default).
            batch_size, seed: see the class.
        """
        return cls(
            forget=splits.forget,
            remain=splits.remain if use_remain else None,
            num_classes=splits.num_classes,
            forget_classes=tuple(forget_classes),
            augmentation=resolve_augmentation(augmentation, splits.x_shape) if augmentation == "auto" else augmentation,
            batch_size=batch_size,
            seed=seed,
            positional={k: v for k, v in splits.positional.items() if k == "forget" or (k == "remain" and use_remain)},
        )


def request_summary(request: UnlearningRequest) -> dict[str, Any]:
    """What identifies a request in a checkpoint: kind, set sizes, classes, seed, batch size, augmentation
    and (when items carried no index) the rule's first indices."""
    summary: dict[str, Any] = {
        "kind": request.kind,
        "n_forget": len(request.forget),
        "n_remain": None if request.remain is None else len(request.remain),
        "num_classes": request.num_classes,
        "forget_classes": list(request.forget_classes),
        "seed": request.seed,
        "batch_size": request.batch_size,
        "augmentation": request.augmentation,
    }
    if request.positional:
        summary["positional"] = dict(request.positional)
    return summary


__all__ = ["SETTINGS", "Kind", "UnlearningRequest", "describe_setting", "request_summary"]
