"""The unlearning phase: requests, the mixin, the method registry and every method."""

from lightning_unlearn.unlearning.base import (
    SETTINGS,
    UnlearningMethod,
    UnlearningMixin,
    UnlearningRequest,
    frozen_snapshot,
    unlearn,
)
from lightning_unlearn.unlearning.adversarial import AdversarialSet, build_adversarial_set
from lightning_unlearn.unlearning.amun import AMUN, AdvOnly, AMUNMixin, AMUNSalUn
from lightning_unlearn.unlearning.bs import BoundaryShrink
from lightning_unlearn.unlearning.ft import FineTune
from lightning_unlearn.unlearning.ga import GradientAscent
from lightning_unlearn.unlearning.l1 import L1Sparse
from lightning_unlearn.unlearning.rl import RandomLabel
from lightning_unlearn.unlearning.salun import SalUn
from lightning_unlearn.unlearning.saliency import SaliencyFreeze, saliency_mask
from lightning_unlearn.unlearning.scrub import SCRUB
from lightning_unlearn.unlearning.trw import TRW, TRWMixin
from lightning_unlearn.unlearning.registry import METHODS, get_method, methods_for, register_method

__all__ = [
    "AMUN",
    "AMUNMixin",
    "AMUNSalUn",
    "AdvOnly",
    "AdversarialSet",
    "build_adversarial_set",
    "METHODS",
    "SETTINGS",
    "BoundaryShrink",
    "TRW",
    "TRWMixin",
    "FineTune",
    "GradientAscent",
    "L1Sparse",
    "RandomLabel",
    "SCRUB",
    "SalUn",
    "SaliencyFreeze",
    "UnlearningMethod",
    "UnlearningMixin",
    "UnlearningRequest",
    "frozen_snapshot",
    "get_method",
    "methods_for",
    "register_method",
    "saliency_mask",
    "unlearn",
]
