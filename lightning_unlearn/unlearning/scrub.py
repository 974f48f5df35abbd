"""SCRUB: max-min distillation away from the teacher on D_F (Kurmanji et al., NeurIPS 2023).

Described in docs/methods/baselines.md, "SCRUB" (formulation checked against the authors' code, not the paper text).
Teacher T: a frozen copy of θ_o (eval mode); student S: the module (train mode).
``d(x) = tau^2 * mean_batch sum_k p_T,k log(p_T,k / p_S,k)``, ``p = softmax(logits / tau)``
(RepDistiller's ``DistillKL``). Objective
``min_S alpha E_DR[d] + gamma E_DR[CE(S(x), y)] - E_DF[d]``, optimised alternately per epoch:

1. max-step, only in epochs ``e < msteps`` (exactly ``msteps`` of them): a pass over D_F
   minimising ``-d(x)``;
2. min-step: a pass over D_R minimising ``alpha d(x) + gamma CE``.

Defaults: the "large-scale CIFAR-10" recipe (SGD momentum 0.9, lr 5e-4, wd 5e-4, tau 4,
msteps 2, 3 epochs, gamma 0.99, alpha 0.001, forget batch 32, lr x0.1 at epochs 5, 8, 9);
uncertain, treat as grid starting points. With ``step_size`` given, the lr follows StepLR
instead, like every other method's. Needs D_R.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from lightning_unlearn.search_space import Categorical
from lightning_unlearn.training.module import build_optimizer
from lightning_unlearn.unlearning.base import UnlearningMethod, UnlearningRequest, frozen_snapshot, snapshot_with_weights, weights_of
from lightning_unlearn.unlearning.batch import UnlearningBatch
from lightning_unlearn.unlearning.phases import FORGET, REMAIN, Phase, module_loader, tagged_concat
from lightning_unlearn.unlearning.registry import register_method


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """``tau^2 * KL(softmax(t/tau) || softmax(s/tau))``, summed over classes, averaged over the batch."""
    log_ps = F.log_softmax(student_logits / tau, dim=1)
    pt = F.softmax(teacher_logits / tau, dim=1)
    return F.kl_div(log_ps, pt, reduction="sum") * tau**2 / student_logits.shape[0]


@register_method
class SCRUB(UnlearningMethod):
    """Alternating max (D_F) / min (D_R) distillation.

    Args:
        alpha: weight of the KL term on D_R (default 0.001).
        gamma_ce: weight of the CE term on D_R (default 0.99).
        tau: temperature (default 4).
        msteps: number of epochs with a max-step (default 2).
        forget_batch_size: batch size of the max-step (default 32).
        decay_epochs: epochs at which the lr is multiplied by ``gamma`` (default (5, 8, 9)); not
            used when ``step_size`` is given (then StepLR(``step_size``, ``gamma``), the schedule
            every method is tuned over).
        **kwargs: lr (default 5e-4), epochs (default 3), ... of
            :class:`~lightning_unlearn.unlearning.UnlearningMethod`.
    """

    name = "scrub"
    supported = frozenset({("random", True), ("class", True)})
    # the max-steps: the authors' recipes use 2 (large scale) and 3 (small scale)
    search_axes = {"msteps": Categorical((1, 2, 3))}

    def __init__(
        self,
        *,
        alpha: float = 0.001,
        gamma_ce: float = 0.99,
        tau: float = 4.0,
        msteps: int = 2,
        forget_batch_size: int = 32,
        decay_epochs: Sequence[int] = (5, 8, 9),
        lr: float = 5e-4,
        epochs: int = 3,
        **kwargs,
    ) -> None:
        super().__init__(lr=lr, epochs=epochs, **kwargs)
        if tau <= 0:
            raise ValueError(f"scrub: tau must be positive, got {tau}")
        if msteps < 0:
            raise ValueError(f"scrub: msteps must be >= 0, got {msteps}")
        if forget_batch_size <= 0:
            raise ValueError(f"scrub: forget_batch_size must be positive, got {forget_batch_size}")
        self.alpha, self.gamma_ce, self.tau, self.msteps = alpha, gamma_ce, tau, msteps
        self.forget_batch_size, self.decay_epochs = forget_batch_size, tuple(decay_epochs)
        self._teacher = None

    def setup(self, module, request: UnlearningRequest) -> None:
        self._teacher = frozen_snapshot(module)

    def fit_state(self) -> dict[str, Any]:
        """The teacher θ_o's weights (the module's have moved on by the time of a checkpoint)."""
        return {**super().fit_state(), "teacher": weights_of(self._teacher)}

    def restore(self, module, request: UnlearningRequest, state: dict[str, Any]) -> None:
        super().restore(module, request, state)
        self._teacher = snapshot_with_weights(module, state["teacher"])

    def train_dataloader(self, module, request: UnlearningRequest):
        phases = [
            Phase("max", tagged_concat([(request.forget, FORGET)]), batch_size=self.forget_batch_size, seed=self.stream_seed("main"), until_epoch=self.msteps),
            Phase("min", tagged_concat([(request.remain, REMAIN)]), batch_size=request.batch_size, seed=self.stream_seed("remain")),
        ]
        return module_loader(module, phases)

    def configure_optimizers(self, module):
        if self.step_size is not None:  # the shared tuning schedule: StepLR(step_size, gamma) replaces the milestones
            return super().configure_optimizers(module)
        opt = build_optimizer(self.parameters_to_optimize(module), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(self.decay_epochs), gamma=self.gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    def loss(self, module, batch: UnlearningBatch, batch_idx: int):
        x, y, phase = self.inputs(module, batch.x, batch_idx), batch.y, batch.phase
        s = module(x)
        with torch.no_grad():
            t = self._teacher(x)
        d = distill_kl(s, t, self.tau)
        if phase == "max":
            return -d
        return self.alpha * d + self.gamma_ce * F.cross_entropy(s, y)

    def teardown(self, module) -> None:
        self._teacher = None
