"""Run a model over an AMUN adversarial set and measure the transfer of its labels.

The measurement itself is :func:`lightning_unlearn.metrics.functional.transfer_rate` (plain
tensors); this module runs the model, so it lives with the audit's other model-running code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from lightning_unlearn.inference import predict_logits
from lightning_unlearn.metrics.functional.transfer import transfer_rate

if TYPE_CHECKING:
    from lightning_unlearn.unlearning.adversarial import AdversarialSet


def adversarial_transfer(
    model: nn.Module, adversarial_set: "AdversarialSet", *, perturbed_only: bool = False, batch_size: int = 512
) -> dict[str, float]:
    """:func:`~lightning_unlearn.metrics.functional.transfer_rate` of ``model`` on an adversarial set D_A.

    Args:
        model: a pixel-space classifier (``[0, 1]`` pixels -> logits), typically a model retrained
            without the forget set; run in eval mode, fp32 (:func:`~lightning_unlearn.inference.predict_logits`).
        adversarial_set: D_A built on the original model (:func:`~lightning_unlearn.unlearning.build_adversarial_set`).
        perturbed_only: leave out the rows with ``delta == 0`` (forget samples the original model
            already misclassified, whose x_adv is x itself).

    Returns:
        ``{"prob", "top1", "n"}`` as :func:`transfer_rate` (percent), over the rows kept.
    """
    keep = adversarial_set.delta > 0 if perturbed_only else torch.ones(len(adversarial_set), dtype=torch.bool)
    if not bool(keep.any()):
        raise ValueError("the adversarial set has no row to measure (empty, or no perturbed row with perturbed_only=True)")
    data = adversarial_set.dataset()
    logits, y_adv, _ = predict_logits(model, data, batch_size=batch_size)
    return transfer_rate(logits[keep], y_adv[keep])
