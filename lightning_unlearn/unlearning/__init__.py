"""The unlearning phase: requests, the mixin, the method registry and every method."""

from lightning_unlearn.unlearning.base import (
    SETTINGS,
    UnlearningMethod,
    UnlearningMixin,
    UnlearningRequest,
    frozen_snapshot,
    unlearn,
)
from lightning_unlearn.unlearning.ft import FineTune
from lightning_unlearn.unlearning.trw import TRW, TRWMixin
from lightning_unlearn.unlearning.registry import METHODS, get_method, methods_for, register_method

__all__ = [
    "METHODS",
    "SETTINGS",
    "TRW",
    "TRWMixin",
    "FineTune",
    "UnlearningMethod",
    "UnlearningMixin",
    "UnlearningRequest",
    "frozen_snapshot",
    "get_method",
    "methods_for",
    "register_method",
    "unlearn",
]
