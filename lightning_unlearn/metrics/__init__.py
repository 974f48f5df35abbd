"""Membership-inference and unlearning audits: a functional core (:mod:`.functional`) and torchmetrics classes.

Every class records per-sample values with pool index and split tag, and its ``compute()``
gathers, de-duplicates by (split, index), sorts by index and calls the functional form, so it
gives the same value on one device or many (see :mod:`lightning_unlearn.metrics._base`).
"""

from lightning_unlearn.metrics import functional
from lightning_unlearn.metrics._base import SPLITS
from lightning_unlearn.metrics.accuracy import UnlearningAccuracy
from lightning_unlearn.metrics.fade import FADE, SymmetricKL
from lightning_unlearn.metrics.mia_nn import MIANN
from lightning_unlearn.metrics.rmia import RMIA
from lightning_unlearn.metrics.svc import MIAEfficacy

__all__ = ["FADE", "MIANN", "RMIA", "SPLITS", "MIAEfficacy", "SymmetricKL", "UnlearningAccuracy", "functional"]
