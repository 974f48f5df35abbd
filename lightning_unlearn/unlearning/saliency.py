"""The SalUn gradient-saliency mask, computed once per request; serves SalUn and AMUN+SalUn.

Fan et al., ICLR 2024, arXiv 2310.12508; described in docs/methods/baselines.md, "SalUn", and
docs/methods/amun.md, section 6:

1. at θ_o, in eval mode, accumulate ``g = sum over D_F batches (batch 128, no augmentation)
   of grad_θ CE(F(x), y)`` (batch-mean CE, as the reference codes); weights are never updated
   (gradients come from ``torch.autograd.grad``, no optimizer is involved, no ``.grad`` is
   written);
2. rank ``|g|`` **globally** over all trainable parameters (BatchNorm affine and biases
   included);
3. ``mask = 1`` for the top ``floor(r * P)`` entries, ``P`` the number of trainable entries
   (the largest ``|g|``; a stored revision of the SalUn code selected the smallest).

Freeze semantics (:class:`SaliencyFreeze`): the default ``mask_mode="freeze"`` keeps masked-out
entries bit-identical to θ_o: gradients are masked before the step and, after each step, the
masked-out entries are restored to θ_o and their momentum cleared (the SalUn code's
approach), which also cancels weight decay on them. ``mask_mode="grad_only"`` multiplies
gradients by the mask only, so weight decay and momentum still move masked-out weights (the
AMUN reference code). BatchNorm running statistics update in both modes.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_unlearn.data.transforms import to_pixels
from lightning_unlearn.models.normalize import Normalizer, apply_normalizer
from lightning_unlearn.search_space import FloatRange
from lightning_unlearn.unlearning.base import world_of

MaskMode = Literal["freeze", "grad_only"]


def _model_state(model: nn.Module) -> dict[nn.Module, bool]:
    return {m: m.training for m in model.modules()}


def saliency_scores(
    model: nn.Module, forget: Dataset, *, batch_size: int = 128, device: torch.device | None = None, normalizer: Normalizer = None
) -> dict[str, torch.Tensor]:
    """``|sum over D_F batches of grad_θ CE|`` per trainable parameter, in eval mode (the model sees ``normalizer(pixels)``).

    Returns a dict parameter name -> ``float32`` tensor of the parameter's shape. The model's
    parameters, their ``.grad`` and each submodule's train/eval mode are left as they were.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no trainable parameter to rank")
    device = device or named[0][1].device
    modes = _model_state(model)
    model.eval()
    total = [torch.zeros_like(p, dtype=torch.float32) for _, p in named]
    try:
        with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device.type, enabled=False):
            for batch in DataLoader(forget, batch_size=batch_size, shuffle=False):
                x, y = apply_normalizer(normalizer, to_pixels(batch[0].to(device))), batch[1].to(device)
                grads = torch.autograd.grad(F.cross_entropy(model(x), y), [p for _, p in named])
                for t, g in zip(total, grads):
                    t.add_(g.float())
    finally:
        for m, mode in modes.items():
            m.train(mode)
    return {n: t.abs() for (n, _), t in zip(named, total)}


def top_fraction_mask(scores: dict[str, torch.Tensor], ratio: float) -> dict[str, torch.Tensor]:
    """``bool`` masks selecting the ``floor(ratio * P)`` largest scores, ranked globally.

    Ties at the threshold are broken by ``torch.topk`` so that exactly ``floor(ratio * P)``
    entries are selected.
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"mask ratio must be in (0, 1], got {ratio}")
    flat = torch.cat([s.flatten() for s in scores.values()])
    k = math.floor(ratio * flat.numel())
    keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    if k > 0:
        keep[torch.topk(flat, k, sorted=False).indices] = True
    out, start = {}, 0
    for name, s in scores.items():
        out[name] = keep[start : start + s.numel()].view_as(s)
        start += s.numel()
    return out


def saliency_mask(
    model: nn.Module, forget: Dataset, *, ratio: float = 0.5, batch_size: int = 128, normalizer: Normalizer = None
) -> dict[str, torch.Tensor]:
    """The SalUn mask of ``model`` for the forget set: parameter name -> ``bool`` tensor."""
    return top_fraction_mask(saliency_scores(model, forget, batch_size=batch_size, normalizer=normalizer), ratio)


class SaliencyFreeze:
    """Applies a saliency mask to the updates of a module during an unlearning fit.

    Args:
        ratio: the mask ratio r (default 0.5).
        mask_mode: ``"freeze"`` (default: masked-out entries bit-identical to θ_o) or
            ``"grad_only"`` (gradients masked only).
    """

    def __init__(self, *, ratio: float = 0.5, mask_mode: MaskMode = "freeze") -> None:
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"mask ratio must be in (0, 1], got {ratio}")
        if mask_mode not in ("freeze", "grad_only"):
            raise ValueError(f"unknown mask_mode {mask_mode!r}: expected 'freeze' or 'grad_only'")
        self.ratio, self.mask_mode = ratio, mask_mode
        self.mask: dict[str, torch.Tensor] | None = None
        self._orig: dict[str, torch.Tensor] = {}

    def setup(self, module, forget: Dataset, *, batch_size: int = 128, normalizer: Normalizer = None) -> None:
        """Compute the mask at the current weights (θ_o); rank 0's mask is broadcast under DDP."""
        mask = saliency_mask(module, forget, ratio=self.ratio, batch_size=batch_size, normalizer=normalizer)
        if world_of(module)[1] > 1:
            mask = module.trainer.strategy.broadcast({k: v.cpu() for k, v in mask.items()}, src=0)
        params = dict(module.named_parameters())
        self.mask = {k: v.to(params[k].device) for k, v in mask.items()}
        self._orig = {k: params[k].detach().clone() for k in self.mask} if self.mask_mode == "freeze" else {}

    def state_dict(self) -> dict[str, Any]:
        """The mask and, under ``"freeze"``, θ_o's values of the masked parameters (CPU tensors)."""
        assert self.mask is not None, "SaliencyFreeze.setup() must run first"
        return {
            "ratio": self.ratio,
            "mask_mode": self.mask_mode,
            "mask": {k: v.detach().cpu() for k, v in self.mask.items()},
            "orig": {k: v.detach().cpu() for k, v in self._orig.items()},
        }

    def load_state_dict(self, module, state: dict[str, Any]) -> None:
        """Put back a saved mask (instead of :meth:`setup`, which would rank the current, moved weights)."""
        params = dict(module.named_parameters())
        bad = [k for k, v in state["mask"].items() if k not in params or tuple(v.shape) != tuple(params[k].shape)]
        if bad:
            raise ValueError(f"the saved saliency mask does not fit this model: parameter(s) {', '.join(bad[:5])}")
        if state["mask_mode"] != self.mask_mode:
            raise ValueError(f"the saved saliency mask was made for mask_mode {state['mask_mode']!r}, not {self.mask_mode!r}")
        self.mask = {k: v.to(params[k].device) for k, v in state["mask"].items()}
        self._orig = {k: v.to(params[k].device) for k, v in state["orig"].items()}

    def before_step(self, module) -> None:
        """Multiply each gradient by its mask (call in ``on_before_optimizer_step``)."""
        assert self.mask is not None, "SaliencyFreeze.setup() must run first"
        for name, p in module.named_parameters():
            if p.grad is not None and name in self.mask:
                p.grad.mul_(self.mask[name])

    @torch.no_grad()
    def after_step(self, module, optimizers) -> None:
        """Under ``"freeze"``, restore masked-out entries to θ_o and clear their momentum.

        Called right after every optimizer step (``optimizer_step`` of the unlearning mixin),
        so a checkpoint taken at the end of that batch already holds the restored weights.
        """
        if self.mask_mode != "freeze" or self.mask is None:
            return
        for name, p in module.named_parameters():
            m = self.mask.get(name)
            if m is None:
                continue
            p.copy_(torch.where(m, p, self._orig[name]))
            for opt in optimizers:
                buf = opt.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    buf.mul_(m)

    def teardown(self) -> None:
        self._orig = {}


class SaliencyMasked:
    """Method mixin: only the salient entries train (SalUn, AMUN+SalUn). Mix it in first.

    The subclass sets ``self.saliency = SaliencyFreeze(...)`` in its constructor. The mask is
    computed once on θ_o over D_F at the start of the fit (after the method's own setup, which
    never changes the weights), applied before every optimizer step and, under the true
    freeze, restored right after it; every hook also runs the method's own. The mask and θ_o's
    masked-out values are part of the method's checkpoint state.
    """

    saliency: SaliencyFreeze
    #: the mask ratio r is tuned in [0.1, 0.9]: the range of SalUn's own mask ratios and of the
    #: library's earlier grid {0.1, 0.3, ..., 0.9}; the AMUN reference code fixes r = 0.5
    search_axes = {"mask_ratio": FloatRange(0.1, 0.9)}
    normalizer: Normalizer  # the method's (UnlearningMethod)

    def setup(self, module, request) -> None:
        super().setup(module, request)  # type: ignore[misc]
        self.saliency.setup(module, request.forget, batch_size=request.batch_size, normalizer=self.normalizer)

    def fit_state(self) -> dict[str, Any]:
        return {**super().fit_state(), "saliency": self.saliency.state_dict()}  # type: ignore[misc]

    def restore(self, module, request, state: dict[str, Any]) -> None:
        super().restore(module, request, state)  # type: ignore[misc]
        self.saliency.load_state_dict(module, state["saliency"])

    def on_before_optimizer_step(self, module, optimizer) -> None:
        super().on_before_optimizer_step(module, optimizer)  # type: ignore[misc]
        self.saliency.before_step(module)

    def on_after_optimizer_step(self, module, optimizer) -> None:
        super().on_after_optimizer_step(module, optimizer)  # type: ignore[misc]
        self.saliency.after_step(module, [optimizer])

    def teardown(self, module) -> None:
        super().teardown(module)  # type: ignore[misc]
        self.saliency.teardown()
