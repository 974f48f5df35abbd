"""Plain tensor functions for unlearning audits (no state; the ``Metric`` classes wrap them).

Units: every audit value returned here (accuracies, MIA-efficacy, AUC, TPR, MIA-NN, Avg. Gap)
is a **percentage in [0, 100]**; rates given as *arguments* (``fpr=0.01``) are
fractions. RMIA scores are per-sample fractions in [0, 1]; U-LiRA scores are log likelihood ratios; symmetric
KL / FADE are in nats.
"""

from lightning_unlearn.metrics.functional.fade import fade, fade_noise_floor, symmetric_kl, symmetric_kl_terms
from lightning_unlearn.metrics.functional.gap import avg_gap
from lightning_unlearn.metrics.functional.mia_nn import (
    RetrainDiscriminator,
    fit_retrain_discriminator,
    make_discriminator,
    mia_nn,
    mia_nn_features,
    mia_nn_neighbors,
    mia_nn_retrain,
    retrain_protocol_features,
)
from lightning_unlearn.metrics.functional.rmia import reference_mean, rmia_ratios, rmia_scores, rmia_scores_bruteforce
from lightning_unlearn.metrics.functional.roc import LowFPRVarianceWarning, roc_auc, tpr_at_fpr
from lightning_unlearn.metrics.functional.signals import (
    FlooredSignalWarning,
    floor_signals,
    softmax_signal,
    taylor_softmax_signal,
)
from lightning_unlearn.metrics.functional.svc import (
    FEATURES,
    entropy,
    mia_efficacy,
    mia_features,
    modified_entropy,
    select_shadow_members,
)
from lightning_unlearn.metrics.functional.transfer import transfer_rate
from lightning_unlearn.metrics.functional.ulira import ULiRAFit, logit_confidence, ulira, ulira_fit, ulira_scores

__all__ = [
    "FEATURES",
    "FlooredSignalWarning",
    "LowFPRVarianceWarning",
    "RetrainDiscriminator",
    "ULiRAFit",
    "avg_gap",
    "entropy",
    "fade",
    "fade_noise_floor",
    "fit_retrain_discriminator",
    "logit_confidence",
    "floor_signals",
    "make_discriminator",
    "mia_efficacy",
    "mia_features",
    "mia_nn",
    "mia_nn_features",
    "mia_nn_neighbors",
    "mia_nn_retrain",
    "modified_entropy",
    "reference_mean",
    "retrain_protocol_features",
    "rmia_ratios",
    "rmia_scores",
    "rmia_scores_bruteforce",
    "roc_auc",
    "select_shadow_members",
    "softmax_signal",
    "symmetric_kl",
    "symmetric_kl_terms",
    "taylor_softmax_signal",
    "tpr_at_fpr",
    "transfer_rate",
    "ulira",
    "ulira_fit",
    "ulira_scores",
]
