"""FT: fine-tune on the remain set with cross-entropy (Warnecke et al., arXiv 2108.11577).

Forgetting relies on catastrophic forgetting of D_F. Needs D_R: the reference code's
fallback to a random D_R subset in the D_F-only setting is not in the paper, so the
library refuses that setting (docs/methods/baselines.md, "FT").
"""

from __future__ import annotations

import torch.nn.functional as F

from lightning_unlearn.unlearning.base import UnlearningMethod, UnlearningRequest
from lightning_unlearn.unlearning.batch import UnlearningBatch
from lightning_unlearn.unlearning.registry import register_method


@register_method
class FineTune(UnlearningMethod):
    """``L = CE(F(x), y)`` over shuffled batches of D_R only."""

    name = "ft"
    needs_whole_weights = False  # a plain loss on the model's own parameters: reads no whole weight tensor
    supported = frozenset({("random", True), ("class", True)})

    def train_dataloader(self, module, request: UnlearningRequest):
        return self.make_loader(request.remain)

    def loss(self, module, batch: UnlearningBatch, batch_idx: int):
        return F.cross_entropy(module(self.inputs(module, batch.x, batch_idx)), batch.y)
