"""ℓ1-sparse: fine-tuning on D_R with an ℓ1 penalty (Jia et al., NeurIPS 2023, arXiv 2304.04934).

Described in docs/methods/baselines.md, "ℓ1-sparse". ``L = CE(F(x), y) + α_e ||θ||_1`` on shuffled D_R batches, the norm over
**all** parameters (BatchNorm and biases included); weight decay stays on.

Schedules of α_e (``e`` the 0-based epoch, ``E`` the number of epochs):

- ``"linear"`` (default, the SalUn / Unlearn-Sparse code): ``α_e = α0 (1 - e / E')`` for
  ``e < E' = E - no_l1_epochs``, 0 afterwards;
- ``"amun_ref"`` (the AMUN reference code's undocumented quirk): after each epoch α is
  multiplied by ``2 - 2e/E`` and the factor compounds (1, 2, 3.6, 5.76, ... for E = 10).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from lightning_unlearn.search_space import FloatRange
from lightning_unlearn.unlearning.base import UnlearningMethod, UnlearningRequest
from lightning_unlearn.unlearning.batch import UnlearningBatch
from lightning_unlearn.unlearning.registry import register_method

L1Schedule = Literal["linear", "amun_ref"]


def l1_alpha(epoch: int, *, alpha0: float, epochs: int, schedule: L1Schedule = "linear", no_l1_epochs: int = 0) -> float:
    """α at 0-based ``epoch`` under ``schedule`` (see the module docstring)."""
    if schedule == "linear":
        horizon = epochs - no_l1_epochs
        return alpha0 * (1.0 - epoch / horizon) if epoch < horizon else 0.0
    if schedule == "amun_ref":
        a = alpha0
        for e in range(epoch):
            a *= 2.0 - 2.0 * e / epochs
        return a
    raise ValueError(f"unknown l1_schedule {schedule!r}: expected 'linear' or 'amun_ref'")


def l1_norm(module: torch.nn.Module) -> torch.Tensor:
    """``sum |θ|`` over every parameter of ``module``."""
    return sum(p.abs().sum() for p in module.parameters())


@register_method
class L1Sparse(UnlearningMethod):
    """``L = CE + α_e ||θ||_1`` on D_R.

    Args:
        alpha: α0 (default 5e-4, the AMUN reference default; tune on a log grid).
        l1_schedule: ``"linear"`` (default) or ``"amun_ref"``.
        no_l1_epochs: final epochs without the penalty (linear schedule; default 0).
    """

    name = "l1"
    needs_whole_weights = False  # a plain loss on the model's own parameters: reads no whole weight tensor
    supported = frozenset({("random", True), ("class", True)})
    # alpha0 on a log scale over the span of the earlier grid {1e-5, 1e-4, 5e-4, 1e-3}, around the
    # AMUN reference default 5e-4
    search_axes = {"alpha": FloatRange(1e-5, 1e-3, log=True)}

    def __init__(self, *, alpha: float = 5e-4, l1_schedule: L1Schedule = "linear", no_l1_epochs: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        if alpha < 0:
            raise ValueError(f"l1: alpha must be non-negative, got {alpha}")
        if l1_schedule not in ("linear", "amun_ref"):
            raise ValueError(f"unknown l1_schedule {l1_schedule!r}: expected 'linear' or 'amun_ref'")
        if not 0 <= no_l1_epochs < self.epochs:
            raise ValueError(f"l1: no_l1_epochs must be in [0, epochs={self.epochs}), got {no_l1_epochs}")
        self.alpha, self.l1_schedule, self.no_l1_epochs = alpha, l1_schedule, no_l1_epochs

    def current_alpha(self, epoch: int) -> float:
        return l1_alpha(epoch, alpha0=self.alpha, epochs=self.epochs, schedule=self.l1_schedule, no_l1_epochs=self.no_l1_epochs)

    def train_dataloader(self, module, request: UnlearningRequest):
        return self.make_loader(request.remain)

    def loss(self, module, batch: UnlearningBatch, batch_idx: int):
        ce = F.cross_entropy(module(self.inputs(module, batch.x, batch_idx)), batch.y)
        a = self.current_alpha(module.current_epoch)
        return ce + a * l1_norm(module) if a > 0 else ce
