"""``METHODS``: the one way in for every unlearning method, by name.

Names (the contract of the main job and users): ``ft, rl, ga, bs, l1, salun, scrub, amun,
amun-salun, adv-only, trw``. Each class says which settings it supports through
``supports(kind, has_remain)``.
"""

from __future__ import annotations

from lightning_unlearn.unlearning.base import UnlearningMethod
from lightning_unlearn.unlearning.amun import AMUN, AdvOnly, AMUNSalUn
from lightning_unlearn.unlearning.bs import BoundaryShrink
from lightning_unlearn.unlearning.ft import FineTune
from lightning_unlearn.unlearning.ga import GradientAscent
from lightning_unlearn.unlearning.l1 import L1Sparse
from lightning_unlearn.unlearning.rl import RandomLabel
from lightning_unlearn.unlearning.salun import SalUn
from lightning_unlearn.unlearning.scrub import SCRUB
from lightning_unlearn.unlearning.trw import TRW

METHODS: dict[str, type[UnlearningMethod]] = {
    "ft": FineTune,
    "rl": RandomLabel,
    "ga": GradientAscent,
    "bs": BoundaryShrink,
    "l1": L1Sparse,
    "salun": SalUn,
    "scrub": SCRUB,
    "amun": AMUN,
    "amun-salun": AMUNSalUn,
    "adv-only": AdvOnly,
    "trw": TRW,
}


def register_method(cls: type[UnlearningMethod]) -> type[UnlearningMethod]:
    """Add a method class under ``cls.name`` (usable as a decorator)."""
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[UnlearningMethod]:
    """The class registered under ``name``; raises ``ValueError`` listing the known names."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown unlearning method {name!r}: expected one of {', '.join(METHODS)}") from None


def methods_for(kind: str, has_remain: bool) -> list[str]:
    """Names of the registered methods that apply to a setting, in registry order."""
    return [n for n, cls in METHODS.items() if cls.supports(kind, has_remain)]
