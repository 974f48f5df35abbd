"""GA: gradient ascent on the forget set (Thudi et al., arXiv 2109.13398).

Described in docs/methods/baselines.md, "GA". The forget loss is ``-CE(F(x), y)`` with the true labels.

- D_F only: one shuffled pass over D_F per epoch.
- With D_R (the AMUN reference code's adaptation): a **descent pass over D_R** (+CE, fixed
  order by default as in that code; ``retain_shuffle=True`` shuffles it), then the ascent
  pass over D_F, in one epoch-level loader under a single optimizer.

No safeguard is added: GA can collapse (about 5% accuracy on D_F only at 10%, [P] Table 2).
"""

from __future__ import annotations

import torch.nn.functional as F

from lightning_unlearn.unlearning.base import UnlearningMethod, UnlearningRequest
from lightning_unlearn.unlearning.batch import UnlearningBatch
from lightning_unlearn.unlearning.phases import FORGET, REMAIN, Phase, module_loader, tagged_concat
from lightning_unlearn.unlearning.registry import register_method
from lightning_unlearn.unlearning.rl import ALL_SETTINGS


def remain_then_forget(method: UnlearningMethod, module, request: UnlearningRequest, *, retain_shuffle: bool):
    """Phases ``remain`` (D_R, when available) then ``forget`` (D_F, shuffled), seeded by ``method.stream_seed``."""
    bs = request.batch_size
    phases = []
    if request.remain is not None:
        phases.append(Phase("remain", tagged_concat([(request.remain, REMAIN)]), shuffle=retain_shuffle, batch_size=bs, seed=method.stream_seed("remain")))
    phases.append(Phase("forget", tagged_concat([(request.forget, FORGET)]), batch_size=bs, seed=method.stream_seed("main")))
    return module_loader(module, phases)


@register_method
class GradientAscent(UnlearningMethod):
    """``L = +CE`` on remain batches, ``-CE`` on forget batches.

    Args:
        retain_shuffle: shuffle the D_R pass (default ``False``: fixed order, as [R]).
        **kwargs: see :class:`~lightning_unlearn.unlearning.UnlearningMethod`.
    """

    name = "ga"
    needs_whole_weights = False  # a plain loss on the model's own parameters: reads no whole weight tensor
    supported = ALL_SETTINGS

    def __init__(self, *, retain_shuffle: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.retain_shuffle = retain_shuffle

    def train_dataloader(self, module, request: UnlearningRequest):
        return remain_then_forget(self, module, request, retain_shuffle=self.retain_shuffle)

    def loss(self, module, batch: UnlearningBatch, batch_idx: int):
        ce = F.cross_entropy(module(self.inputs(module, batch.x, batch_idx)), batch.y)
        return -ce if batch.phase == "forget" else ce
