"""BS: Boundary Shrink (Chen et al., CVPR 2023, arXiv 2303.11570).

Described in docs/methods/baselines.md, "BS". A frozen copy F~ of the model (eval mode) is made once from θ_o
(``refresh_copy_each_epoch=True`` re-copies it at the start of every epoch's forget pass, as
the AMUN reference code does). For each forget batch:

1. FGSM on F~ with the true label: ``x~ = clamp(x + 0.1 * sign(grad_x CE(F~(x), y)), 0, 1)``,
   quantised to 1/255 (``x~ = round(255 x~) / 255``); the L-inf bound 0.1 is in pixel units;
2. neighbour label ``y_nb = argmax F~(x~)`` (may equal y when FGSM fails; not filtered);
3. train F (train mode) with ``CE(F(x), y_nb)`` on the clean (augmented) x.

With D_R a descent pass over D_R (+CE) comes first, as for GA.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from lightning_unlearn.models.normalize import Normalizer, apply_normalizer
from lightning_unlearn.unlearning.base import UnlearningMethod, UnlearningRequest, frozen_snapshot, snapshot_with_weights, weights_of
from lightning_unlearn.unlearning.batch import UnlearningBatch
from lightning_unlearn.unlearning.ga import remain_then_forget
from lightning_unlearn.unlearning.registry import register_method
from lightning_unlearn.unlearning.rl import ALL_SETTINGS


def fgsm_neighbour_labels(model, x: torch.Tensor, y: torch.Tensor, *, bound: float = 0.1, normalizer: Normalizer = None) -> torch.Tensor:
    """``argmax model(quantise(clamp(x + bound * sign(grad_x CE(model(x), y)), 0, 1)))``.

    ``model`` is used as is (callers pass a frozen eval-mode copy); only the input gradient
    is taken (``torch.autograd.grad``), so no parameter ``.grad`` is written. ``x``: ``(B, C,
    H, W)`` float pixels; the step, clamp and quantisation are in pixel space, and the model
    sees ``normalizer(pixels)`` when one is given. Returns ``(B,)`` ``int64`` labels.
    """
    with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
        xr = x.detach().float().requires_grad_(True)
        g = torch.autograd.grad(F.cross_entropy(model(apply_normalizer(normalizer, xr)), y, reduction="sum"), xr)[0]
    x_nb = torch.clamp(x.detach().float() + bound * g.sign(), 0.0, 1.0)
    x_nb = torch.round(x_nb * 255.0) / 255.0
    with torch.no_grad():
        return model(apply_normalizer(normalizer, x_nb)).argmax(dim=1)


@register_method
class BoundaryShrink(UnlearningMethod):
    """``L = CE(F(x), y_nb)`` on forget batches, ``+CE(F(x), y)`` on remain batches.

    Args:
        bound: FGSM L-inf step in pixel units (default 0.1).
        refresh_copy_each_epoch: re-copy F~ at each epoch's forget pass ([R]); default
            ``False`` (copied once from θ_o, as the BS paper and SalUn code).
        retain_shuffle: shuffle the D_R pass (default ``False``, fixed order as [R]).
    """

    name = "bs"
    supported = ALL_SETTINGS

    def __init__(self, *, bound: float = 0.1, refresh_copy_each_epoch: bool = False, retain_shuffle: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        if bound <= 0:
            raise ValueError(f"bs: bound must be positive, got {bound}")
        self.bound, self.refresh_copy_each_epoch, self.retain_shuffle = bound, refresh_copy_each_epoch, retain_shuffle
        self._copy = None
        self._copy_epoch = -1

    def setup(self, module, request: UnlearningRequest) -> None:
        self._copy, self._copy_epoch = frozen_snapshot(module), 0

    def fit_state(self) -> dict[str, Any]:
        """The frozen copy F~ in use and the epoch it was taken in."""
        return {**super().fit_state(), "copy": weights_of(self._copy), "copy_epoch": self._copy_epoch}

    def restore(self, module, request: UnlearningRequest, state: dict[str, Any]) -> None:
        super().restore(module, request, state)
        self._copy, self._copy_epoch = snapshot_with_weights(module, state["copy"]), int(state["copy_epoch"])

    def train_dataloader(self, module, request: UnlearningRequest):
        return remain_then_forget(self, module, request, retain_shuffle=self.retain_shuffle)

    def loss(self, module, batch: UnlearningBatch, batch_idx: int):
        x, y = self.pixels(module, batch.x, batch_idx), batch.y
        if batch.phase == "forget":
            if self.refresh_copy_each_epoch and self._copy_epoch != module.current_epoch:
                self._copy, self._copy_epoch = frozen_snapshot(module), module.current_epoch
            y = fgsm_neighbour_labels(self._copy, x, y, bound=self.bound, normalizer=self.normalizer)
        return F.cross_entropy(module(self.normalize(x)), y)

    def teardown(self, module) -> None:
        self._copy = None
