"""Transfer of AMUN's adversarial examples to a retrained model: P_retrain(y_adv | x_adv).

AMUN's analysis (*Not All Wrong is Bad: Using Adversarial Examples for Unlearning*, ICML 2025,
arXiv 2503.00917, Theorem 4.1) bounds the distance of the unlearned model to the retrained one
by a term that shrinks as the loss ``ℓ(f_θu(x_adv), y_adv)`` of the *retrained* model θ_u on the
adversarial pairs shrinks, i.e. as the adversarial examples built on the original model
**transfer** to a model that never saw the forget set; smoother (lower-Lipschitz) models are
argued to transfer better. This module measures that transfer from the retrained model's
logits at the adversarial inputs:

* ``prob``: ``mean_i p_θu(y_adv_i | x_adv_i)``, the mean probability the retrained model gives
  the adversarial label (``exp(-ℓ)`` averaged: higher means a smaller loss term);
* ``top1``: ``mean_i 1[argmax_k p_θu(k | x_adv_i) = y_adv_i]``, how often it *predicts* y_adv.

Both are percentages, like every audit value of :mod:`lightning_unlearn.metrics.functional`.
"""

from __future__ import annotations

import torch

from lightning_unlearn.metrics.functional._checks import as_tensor, check_finite, check_float, check_labels, check_ndim, check_nonempty


def transfer_rate(logits: torch.Tensor, adversarial_labels: torch.Tensor) -> dict[str, float]:
    """How well adversarial labels transfer to a model: mean ``p(y_adv | x_adv)`` and top-1 agreement, in percent.

    Args:
        logits: ``(N, C)`` float logits of the model (e.g. a retrained model, eval mode) at the
            adversarial inputs x_adv.
        adversarial_labels: ``(N,)`` the adversarial labels y_adv (the attacked model's wrong
            predictions, :attr:`~lightning_unlearn.unlearning.AdversarialSet.y`).

    Returns:
        ``{"prob": 100 * mean_i softmax(z_i)[y_adv_i], "top1": 100 * mean_i 1[argmax z_i = y_adv_i],
        "n": N}`` (``n`` as a float).

    Raises:
        ValueError: shapes, non-finite logits, labels outside ``[0, C)``, an empty set.

    Example:
        >>> p = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]])
        >>> out = transfer_rate(p.log(), torch.tensor([1, 2]))  # p = 0.5 and 0.3; argmax hits the first only
        >>> round(out["prob"], 4), out["top1"], out["n"]
        (40.0, 50.0, 2.0)
    """
    z = as_tensor(logits, "logits")
    check_float(z, "logits")
    check_ndim(z, 2, "logits", "(N, C)")
    check_nonempty(z, "logits")
    check_finite(z, "logits")
    y = check_labels(as_tensor(adversarial_labels, "adversarial_labels").to(z.device), z.shape[0], z.shape[1], "adversarial_labels")
    logp = torch.log_softmax(z.double(), dim=1).gather(1, y[:, None]).squeeze(1)
    prob = float(logp.exp().mean()) * 100.0
    top1 = float((z.argmax(1) == y).double().mean()) * 100.0
    return {"prob": prob, "top1": top1, "n": float(z.shape[0])}
