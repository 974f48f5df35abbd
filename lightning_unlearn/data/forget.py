"""Forget specifications and the forget / remain split of a pool.

Spec strings:

- ``random:FRACTION``: a seeded uniform random subset of ``round(FRACTION * N_train)``
  training samples, ``0 < FRACTION < 1``.
- ``class:K`` or ``class:K1,K2``: every training sample of those classes; their test
  samples form the forget-class test set, the others the remain-class test set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch


def check_forget_classes(forget_classes: Sequence[int], num_classes: int) -> tuple[int, ...]:
    """The one validation of forget classes against ``K`` (data module, unlearning requests, TRW).

    Checks: at least one class, each in ``0..K-1``, no class twice, not all ``K`` of them.

    Returns:
        The classes as a tuple of ``int``, in the given order.

    Raises:
        ValueError: naming the bad value and the allowed range.
    """
    classes = tuple(int(k) for k in forget_classes)
    if not classes:
        raise ValueError("class forgetting needs at least one forget class; got none")
    bad = [k for k in classes if not 0 <= k < num_classes]
    if bad:
        raise ValueError(f"forget class {bad[0]} is out of range; allowed classes are 0..{num_classes - 1}")
    if len(set(classes)) != len(classes):
        twice = sorted({k for k in classes if classes.count(k) > 1})
        raise ValueError(f"forget classes must be distinct, got {list(classes)} (class {twice[0]} twice)")
    if len(classes) >= num_classes:
        raise ValueError(f"forgetting all {num_classes} classes leaves nothing to keep; forget at most {num_classes - 1} classes")
    return classes


@dataclass(frozen=True)
class ForgetSpec:
    """A parsed forget spec. ``kind`` is ``"random"`` (with ``fraction``) or ``"class"`` (with ``classes``)."""

    kind: Literal["random", "class"]
    fraction: float | None = None
    classes: tuple[int, ...] = ()

    @classmethod
    def parse(cls, spec: "str | ForgetSpec") -> "ForgetSpec":
        """Parse ``random:FRACTION`` or ``class:K[,K...]``.

        Raises:
            ValueError: naming the bad spec and the allowed forms (also a class given twice).
        """
        if isinstance(spec, ForgetSpec):
            return spec
        allowed = "expected 'random:FRACTION' with 0 < FRACTION < 1, or 'class:K' / 'class:K1,K2'"
        kind, sep, arg = str(spec).partition(":")
        if not sep or not arg:
            raise ValueError(f"bad forget spec {spec!r}: {allowed}")
        if kind == "random":
            try:
                fraction = float(arg)
            except ValueError:
                raise ValueError(f"bad forget spec {spec!r}: fraction {arg!r} is not a number; {allowed}") from None
            if not 0.0 < fraction < 1.0:
                raise ValueError(f"bad forget spec {spec!r}: fraction {fraction} is not in (0, 1); {allowed}")
            return cls("random", fraction=fraction)
        if kind == "class":
            try:
                given = [int(k) for k in arg.split(",")]
            except ValueError:
                raise ValueError(f"bad forget spec {spec!r}: class indices must be integers; {allowed}") from None
            repeated = sorted({k for k in given if given.count(k) > 1})
            if repeated:
                raise ValueError(f"bad forget spec {spec!r}: class {', '.join(map(str, repeated))} given more than once; name each class once")
            return cls("class", classes=tuple(sorted(given)))
        raise ValueError(f"bad forget spec {spec!r}: unknown kind {kind!r}; {allowed}")

    def __str__(self) -> str:
        if self.kind == "random":
            return f"random:{self.fraction:g}"
        return "class:" + ",".join(str(k) for k in self.classes)


@dataclass(frozen=True)
class ForgetSplit:
    """Positions (into the pool's train / test arrays) of each set.

    Attributes:
        forget, remain: positions into ``pool.train_*``; disjoint, together all of them.
        forget_class_test, remain_class_test: positions into ``pool.test_*`` (class
            forgetting; for random forgetting the first is empty and the second is all).
    """

    spec: ForgetSpec
    forget: torch.Tensor
    remain: torch.Tensor
    forget_class_test: torch.Tensor
    remain_class_test: torch.Tensor


def make_split(
    spec: "str | ForgetSpec", train_labels: torch.Tensor, test_labels: torch.Tensor, num_classes: int, *, seed: int = 0
) -> ForgetSplit:
    """Split the training set into forget and remain positions.

    ``random:`` draws ``round(fraction * N)`` positions with ``torch.randperm`` from a
    generator seeded by ``seed`` (the same on every rank and machine). ``class:`` is
    deterministic.

    Raises:
        ValueError: class out of ``[0, num_classes)``, every class forgotten, or an empty
            forget set.
    """
    spec = ForgetSpec.parse(spec)
    n = train_labels.numel()
    if spec.kind == "random":
        k = int(round(spec.fraction * n))
        if k == 0:
            raise ValueError(f"forget spec {str(spec)!r} selects no sample of the {n} training samples; use a larger fraction")
        if k >= n:
            raise ValueError(f"forget spec {str(spec)!r} selects all {n} training samples; use a fraction below {1 - 0.5 / n:.4f}")
        gen = torch.Generator().manual_seed(seed)
        forget = torch.randperm(n, generator=gen)[:k].sort().values
        is_forget = torch.zeros(n, dtype=torch.bool)
        is_forget[forget] = True
        return ForgetSplit(
            spec, forget, (~is_forget).nonzero().flatten(), torch.empty(0, dtype=torch.long), torch.arange(test_labels.numel())
        )
    try:
        check_forget_classes(spec.classes, num_classes)
    except ValueError as err:
        raise ValueError(f"forget spec {str(spec)!r}: {err}") from None
    classes = torch.tensor(spec.classes)
    in_train = torch.isin(train_labels, classes)
    if not bool(in_train.any()):
        raise ValueError(f"forget spec {str(spec)!r} selects no training sample: the classes are absent from the training set")
    in_test = torch.isin(test_labels, classes)
    return ForgetSplit(
        spec,
        in_train.nonzero().flatten(),
        (~in_train).nonzero().flatten(),
        in_test.nonzero().flatten(),
        (~in_test).nonzero().flatten(),
    )


def validate_indices(indices: torch.Tensor, n: int, *, what: str = "forget set") -> torch.Tensor:
    """Check user-given positions: non-empty, unique, in ``[0, n)``, fewer than ``n``.

    Returns them sorted as ``int64``.
    """
    indices = torch.as_tensor(indices, dtype=torch.long).flatten()
    if indices.numel() == 0:
        raise ValueError(f"the {what} is empty: give at least one index in [0, {n})")
    if indices.numel() >= n:
        raise ValueError(f"the {what} has {indices.numel()} samples but the training set only {n}: it must be a strict subset")
    lo, hi = int(indices.min()), int(indices.max())
    if lo < 0 or hi >= n:
        bad = lo if lo < 0 else hi
        raise ValueError(f"{what} index {bad} is out of range; allowed are 0..{n - 1}")
    if indices.unique().numel() != indices.numel():
        raise ValueError(f"the {what} holds duplicate indices")
    return indices.sort().values
