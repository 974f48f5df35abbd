"""Membership-inference and unlearning audits: a functional core (:mod:`.functional`) and torchmetrics classes.

Every class records per-sample values with pool index and split tag, and its ``compute()``
gathers, de-duplicates by (split, index), sorts by index and calls the functional form, so it
gives the same value on one device or many (see :mod:`lightning_unlearn.metrics._base`).
"""

from lightning_unlearn.metrics import functional
from lightning_unlearn.metrics._base import SPLITS, IncompleteSplitsWarning
from lightning_unlearn.metrics.accuracy import UnlearningAccuracy
from lightning_unlearn.metrics.fade import FADE, SymmetricKL
from lightning_unlearn.metrics.mia_nn import MIANN, MIANNRetrain
from lightning_unlearn.metrics.references import (
    ReferenceModels,
    membership_matrix,
    reference_pool,
    train_reference_models,
    train_retrained_references,
)
from lightning_unlearn.metrics.rmia import RMIA
from lightning_unlearn.metrics.svc import MIAEfficacy
from lightning_unlearn.metrics.transfer import adversarial_transfer

__all__ = [
    "FADE",
    "IncompleteSplitsWarning",
    "MIANN",
    "MIANNRetrain",
    "RMIA",
    "SPLITS",
    "MIAEfficacy",
    "ReferenceModels",
    "SymmetricKL",
    "UnlearningAccuracy",
    "adversarial_transfer",
    "functional",
    "membership_matrix",
    "reference_pool",
    "train_reference_models",
    "train_retrained_references",
]
