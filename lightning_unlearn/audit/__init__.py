"""The model-running side of the audits: reference models, U-LiRA shadow models, adversarial transfer.

The metrics themselves (:mod:`lightning_unlearn.metrics`) are plain tensor functions and torchmetrics
classes that take statistics; everything here trains, caches or runs models to produce those
statistics, through the library's one training path and its one artefact cache:

- RMIA / MIA-NN references: :func:`train_reference_models` (random halves of a pool),
  :func:`train_retrained_references` (retrained on D_R), :func:`reference_pool`,
  :func:`membership_matrix`, :class:`ReferenceModels` (docs/metrics.md, section 5.2);
- U-LiRA: :func:`train_shadow_pairs` (:class:`ShadowPairs`, :func:`ulira_target_pool`,
  :func:`forget_table`), :func:`method_unlearner` (:func:`forget_request`, :func:`unlearnable`), :func:`ulira_audit` (docs/metrics.md, section 8);
- :func:`adversarial_transfer`: how an AMUN adversarial set transfers to a model.
"""

from lightning_unlearn.audit.references import (
    ReferenceModels,
    membership_matrix,
    reference_pool,
    train_reference_models,
    train_retrained_references,
)
from lightning_unlearn.audit.shadows import ShadowPairs, UnlearnFn, forget_table, train_shadow_pairs, ulira_target_pool
from lightning_unlearn.audit.transfer import adversarial_transfer
from lightning_unlearn.audit.ulira import ULiRAAudit, forget_request, method_unlearner, ulira_audit, unlearnable

__all__ = [
    "ReferenceModels",
    "ShadowPairs",
    "ULiRAAudit",
    "UnlearnFn",
    "adversarial_transfer",
    "forget_request",
    "forget_table",
    "membership_matrix",
    "method_unlearner",
    "reference_pool",
    "train_reference_models",
    "train_retrained_references",
    "train_shadow_pairs",
    "ulira_audit",
    "ulira_target_pool",
    "unlearnable",
]
