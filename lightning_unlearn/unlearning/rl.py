"""RL: random labels on the forget set (Golatkar et al., CVPR 2020, in SalUn's and AMUN's form).

Described in docs/methods/baselines.md, "RL". Every forget sample gets a label y' drawn uniformly from
``{0..K-1} \\ {y}`` (``label_mode="wrong"``, default; ``"any"`` draws from all K classes as
the SalUn code does), **redrawn on every access**: the draw is a hash of
``(seed, epoch, dataset index)``, so it does not depend on the world size, the batch
composition or the number of workers, and every DDP rank draws the same label for a sample.

With D_R the forget samples (relabelled) and the remain samples (true labels) are one
shuffled stream (``schedule="mixed"``, default); ``schedule="sequential"`` runs a forget pass
then a remain pass per epoch (the SalUn code's variant). Without D_R: RL(D_F) alone.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from lightning_unlearn.unlearning.base import UnlearningMethod, UnlearningRequest
from lightning_unlearn.unlearning.batch import UnlearningBatch
from lightning_unlearn.unlearning.phases import FORGET, REMAIN, Phase, module_loader, tagged_concat
from lightning_unlearn.unlearning.registry import register_method

LabelMode = Literal["wrong", "any"]
RLSchedule = Literal["mixed", "sequential"]
ALL_SETTINGS = frozenset({("random", True), ("random", False), ("class", True), ("class", False)})

_MASK64 = (1 << 64) - 1


def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def draw_labels(
    y: torch.Tensor, index: torch.Tensor, *, seed: int, epoch: int, num_classes: int, mode: LabelMode = "wrong"
) -> torch.Tensor:
    """Random labels keyed by ``(seed, epoch, index)``.

    Args:
        y: ``(B,)`` true labels.
        index: ``(B,)`` dataset (pool) indices.
        mode: ``"wrong"``: uniform over the K-1 classes other than ``y``; ``"any"``: uniform
            over all K classes.

    Returns:
        ``(B,)`` ``int64`` labels on ``y``'s device.
    """
    if mode not in ("wrong", "any"):
        raise ValueError(f"unknown label_mode {mode!r}: expected 'wrong' or 'any'")
    out = []
    for yi, ii in zip(y.tolist(), index.tolist()):
        u = _splitmix64(_splitmix64(_splitmix64(seed & _MASK64) ^ (epoch & _MASK64)) ^ (ii & _MASK64))
        if mode == "any":
            out.append(u % num_classes)
        else:
            r = u % (num_classes - 1)
            out.append(r if r < yi else r + 1)
    return torch.tensor(out, dtype=torch.long, device=y.device)


@register_method
class RandomLabel(UnlearningMethod):
    """``L = CE(F(x), y')`` with y' random for forget samples and y for remain samples.

    Args:
        label_mode: ``"wrong"`` (default, y' != y) or ``"any"``.
        schedule: ``"mixed"`` (default: one shuffled stream over D_R ∪ RL(D_F)) or
            ``"sequential"`` (a forget pass, then a remain pass).
        **kwargs: see :class:`~lightning_unlearn.unlearning.UnlearningMethod`.
    """

    name = "rl"
    needs_whole_weights = False  # a plain loss on the model's own parameters: reads no whole weight tensor
    supported = ALL_SETTINGS

    def __init__(self, *, label_mode: LabelMode = "wrong", schedule: RLSchedule = "mixed", **kwargs) -> None:
        super().__init__(**kwargs)
        if label_mode not in ("wrong", "any"):
            raise ValueError(f"unknown label_mode {label_mode!r}: expected 'wrong' or 'any'")
        if schedule not in ("mixed", "sequential"):
            raise ValueError(f"unknown schedule {schedule!r}: expected 'mixed' or 'sequential'")
        self.label_mode, self.schedule = label_mode, schedule

    def train_dataloader(self, module, request: UnlearningRequest):
        bs, seed = request.batch_size, self.stream_seed
        if request.remain is None:
            phases = [Phase("forget", tagged_concat([(request.forget, FORGET)]), batch_size=bs, seed=seed("main"))]
        elif self.schedule == "mixed":
            phases = [Phase("mixed", tagged_concat([(request.remain, REMAIN), (request.forget, FORGET)]), batch_size=bs, seed=seed("main"))]
        else:
            phases = [
                Phase("forget", tagged_concat([(request.forget, FORGET)]), batch_size=bs, seed=seed("main")),
                Phase("remain", tagged_concat([(request.remain, REMAIN)]), batch_size=bs, seed=seed("remain")),
            ]
        return module_loader(module, phases)

    def targets(self, module, batch: UnlearningBatch) -> torch.Tensor:
        """The training labels of a batch: random for forget samples (``batch.source``), true otherwise."""
        assert self.request is not None
        if batch.source is None:
            raise ValueError("random labelling needs batches tagged with their source (batch.source); got an untagged batch")
        drawn = draw_labels(
            batch.y, batch.index, seed=self.request.seed, epoch=module.current_epoch, num_classes=self.request.num_classes, mode=self.label_mode
        )
        return torch.where(batch.source == FORGET, drawn, batch.y)

    def loss(self, module, batch: UnlearningBatch, batch_idx: int):
        return F.cross_entropy(module(self.inputs(module, batch.x, batch_idx)), self.targets(module, batch))
