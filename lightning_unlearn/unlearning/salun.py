"""SalUn: random labelling restricted to the salient weights (Fan et al., ICLR 2024).

Described in docs/methods/baselines.md, "SalUn": RL (same data composition in each setting, ``label_mode`` and
``schedule`` as :class:`~lightning_unlearn.unlearning.rl.RandomLabel`) updating only the
entries selected by the saliency mask (:mod:`lightning_unlearn.unlearning.saliency`), which
is computed once per request on θ_o at the start of the fit.
"""

from __future__ import annotations

from lightning_unlearn.unlearning.registry import register_method
from lightning_unlearn.unlearning.rl import RandomLabel
from lightning_unlearn.unlearning.saliency import MaskMode, SaliencyFreeze, SaliencyMasked


@register_method
class SalUn(SaliencyMasked, RandomLabel):
    """RL with a gradient-saliency mask.

    Args:
        mask_ratio: r, the fraction of parameter entries updated (default 0.5; tune in 0.1..0.9).
        mask_mode: ``"freeze"`` (default, masked-out entries bit-identical) or ``"grad_only"``.
        **kwargs: see :class:`~lightning_unlearn.unlearning.rl.RandomLabel`.
    """

    name = "salun"
    needs_whole_weights = True  # the saliency mask ranks every parameter entry globally

    def __init__(self, *, mask_ratio: float = 0.5, mask_mode: MaskMode = "freeze", **kwargs) -> None:
        super().__init__(**kwargs)
        self.saliency = SaliencyFreeze(ratio=mask_ratio, mask_mode=mask_mode)
        self.mask_ratio, self.mask_mode = mask_ratio, mask_mode
