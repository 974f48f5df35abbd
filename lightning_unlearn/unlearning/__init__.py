"""The unlearning phase: requests, the mixin, the method registry and every method.

Importing this package imports every method module below; each registers its classes with
:func:`register_method` as it is defined, so ``METHODS`` holds them in this order (the order of
the benchmark's rows): ``ft, rl, ga, bs, l1, salun, scrub, amun, amun-salun, adv-only, trw, trw-concat``.
"""

# Not sorted: the method modules below register their classes on import, in this order.
# isort: off
from lightning_unlearn.unlearning.registry import METHODS, get_method, methods_for, register_method
from lightning_unlearn.unlearning.batch import UnlearningBatch, as_unlearning_batch, collate_unlearning_batch
from lightning_unlearn.unlearning.request import SETTINGS, UnlearningRequest
from lightning_unlearn.unlearning.base import (
    UnlearningMethod,
    UnlearningMixin,
    frozen_snapshot,
    unlearn,
)

# the method modules, in registry order (each registers its classes on import)
from lightning_unlearn.unlearning.ft import FineTune
from lightning_unlearn.unlearning.rl import RandomLabel
from lightning_unlearn.unlearning.ga import GradientAscent
from lightning_unlearn.unlearning.bs import BoundaryShrink
from lightning_unlearn.unlearning.l1 import L1Sparse
from lightning_unlearn.unlearning.salun import SalUn
from lightning_unlearn.unlearning.scrub import SCRUB
from lightning_unlearn.unlearning.amun import AMUN, AMUNMixin, AMUNSalUn, AdvOnly
from lightning_unlearn.unlearning.trw import TRW, TRWConcat, TRWMixin

from lightning_unlearn.unlearning.adversarial import AdversarialSet, build_adversarial_set
from lightning_unlearn.unlearning.saliency import SaliencyFreeze, saliency_mask
# isort: on

__all__ = [
    "AMUN",
    "AMUNMixin",
    "AMUNSalUn",
    "AdvOnly",
    "AdversarialSet",
    "BoundaryShrink",
    "FineTune",
    "GradientAscent",
    "L1Sparse",
    "METHODS",
    "RandomLabel",
    "SCRUB",
    "SETTINGS",
    "SaliencyFreeze",
    "SalUn",
    "TRW",
    "TRWConcat",
    "TRWMixin",
    "UnlearningBatch",
    "UnlearningMethod",
    "UnlearningMixin",
    "UnlearningRequest",
    "as_unlearning_batch",
    "build_adversarial_set",
    "collate_unlearning_batch",
    "frozen_snapshot",
    "get_method",
    "methods_for",
    "register_method",
    "saliency_mask",
    "unlearn",
]
