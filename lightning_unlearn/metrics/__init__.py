"""Membership-inference and unlearning audits: a functional core (:mod:`.functional`) and torchmetrics classes.

Every class records per-sample values with pool index and split tag, and its ``compute()``
gathers, de-duplicates by (split, index), sorts by index and calls the functional form, so it
gives the same value on one device or many (see :mod:`lightning_unlearn.metrics._base`).

This package is a **leaf**: it imports torch, torchmetrics, numpy and scikit-learn, and of this
library only the leaf modules :mod:`lightning_unlearn.seeding` and :mod:`lightning_unlearn.stats`
(never data, models, training, unlearning or the pipeline). Everything that trains or runs models
for an audit (RMIA / MIA-NN reference models, U-LiRA shadow models, the adversarial transfer) lives
in :mod:`lightning_unlearn.audit`; ``tests/test_layers.py`` holds the whole import contract.
"""

from lightning_unlearn.metrics import functional
from lightning_unlearn.metrics._base import SPLITS, IncompleteSplitsWarning
from lightning_unlearn.metrics.accuracy import UnlearningAccuracy
from lightning_unlearn.metrics.fade import FADE, SymmetricKL
from lightning_unlearn.metrics.mia_nn import MIANN, MIANNRetrain
from lightning_unlearn.metrics.rmia import RMIA
from lightning_unlearn.metrics.svc import MIAEfficacy
from lightning_unlearn.metrics.ulira import ULiRA

__all__ = [
    "FADE",
    "IncompleteSplitsWarning",
    "MIANN",
    "MIANNRetrain",
    "RMIA",
    "SPLITS",
    "MIAEfficacy",
    "SymmetricKL",
    "ULiRA",
    "UnlearningAccuracy",
    "functional",
]
