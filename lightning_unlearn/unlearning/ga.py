"""GA: gradient ascent on the forget set (Thudi et al., arXiv 2109.13398).

``baselines.md`` §4. The forget loss is ``-CE(F(x), y)`` with the true labels.

- D_F only: one shuffled pass over D_F per epoch.
- With D_R (the AMUN reference code's adaptation): a **descent pass over D_R** (+CE, fixed
  order by default as in that code; ``retain_shuffle=True`` shuffles it), then the ascent
  pass over D_F, in one epoch-level loader under a single optimizer.

No safeguard is added: GA can collapse (about 5% accuracy on D_F only at 10%, [P] Table 2).
"""

from __future__ import annotations

import torch.nn.functional as F

from lightning_unlearn.unlearning.base import UnlearningMethod, UnlearningRequest
from lightning_unlearn.unlearning.phases import FORGET, REMAIN, Phase, module_loader, tagged_concat
from lightning_unlearn.unlearning.rl import ALL_SETTINGS


def remain_then_forget(module, request: UnlearningRequest, *, retain_shuffle: bool):
    """Phases ``remain`` (D_R, when available) then ``forget`` (D_F, shuffled)."""
    bs, seed = request.batch_size, request.seed
    phases = []
    if request.remain is not None:
        phases.append(Phase("remain", tagged_concat([(request.remain, REMAIN)]), shuffle=retain_shuffle, batch_size=bs, seed=seed + 1))
    phases.append(Phase("forget", tagged_concat([(request.forget, FORGET)]), batch_size=bs, seed=seed))
    return module_loader(module, phases)


class GradientAscent(UnlearningMethod):
    """``L = +CE`` on remain batches, ``-CE`` on forget batches.

    Args:
        retain_shuffle: shuffle the D_R pass (default ``False``: fixed order, as [R]).
        **kwargs: see :class:`~lightning_unlearn.unlearning.UnlearningMethod`.
    """

    name = "ga"
    needs_whole_weights = False  # a plain loss on the model's own parameters: reads no whole weight tensor
    supported = ALL_SETTINGS
    tunable = {"lr": (0.05, 0.01, 0.005, 0.001, 1e-4, 1e-5)}

    def __init__(self, *, retain_shuffle: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.retain_shuffle = retain_shuffle

    def train_dataloader(self, module, request: UnlearningRequest):
        return remain_then_forget(module, request, retain_shuffle=self.retain_shuffle)

    def loss(self, module, batch, batch_idx: int):
        x, y, phase = batch[0], batch[1], batch[-1]
        ce = F.cross_entropy(module(self.inputs(module, x, batch_idx)), y)
        return -ce if phase == "forget" else ce
