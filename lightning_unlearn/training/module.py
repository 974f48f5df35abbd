"""``ClassifierModule``: the plain LightningModule that trains original and retrained models."""

from __future__ import annotations

from typing import Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from lightning_unlearn.data.sampler import restore_loader_positions
from lightning_unlearn.data.transforms import augment, batch_generator, normalize_augmentation, to_pixels

Schedule = Literal["onecycle", "step", "cosine", "constant"]
SCHEDULES = ("onecycle", "step", "cosine", "constant")


def build_optimizer(
    params,
    *,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
) -> torch.optim.SGD:
    """SGD with momentum and weight decay, the recipe of every model in the papers."""
    if lr <= 0:
        raise ValueError(f"learning rate must be positive, got {lr}")
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: Schedule, *, total_steps: int, steps_per_epoch: int, step_size: int | None, gamma: float
) -> dict | None:
    """A Lightning ``lr_scheduler`` config: one-cycle and cosine step per batch, StepLR per epoch."""
    if schedule == "constant":
        return None
    if schedule == "onecycle":
        total = max(1, total_steps)
        # torch's OneCycleLR divides by zero when pct_start * total_steps == 1 (a one-step warm-up
        # phase, e.g. 4 steps in all); any other split of such a tiny run is as good
        pct_start = 0.3 if abs(0.25 * total - 1.0) < 1e-9 else 0.25
        sched = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total, pct_start=pct_start)
        return {"scheduler": sched, "interval": "step"}
    if schedule == "cosine":
        return {"scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps)), "interval": "step"}
    if schedule == "step":
        if step_size is None or step_size <= 0:
            raise ValueError(f"schedule 'step' needs a positive step_size (epochs), got {step_size}")
        return {"scheduler": torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma), "interval": "epoch"}
    raise ValueError(f"unknown schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")


class ClassifierModule(pl.LightningModule):
    """Cross-entropy training of any pixel-space classifier ``model`` (``[0, 1]`` pixels -> logits).

    Batches are ``(x, y, index)`` as served by :class:`~lightning_unlearn.data.UnlearningDataModule`;
    ``x`` may be ``uint8``. Inputs are converted and augmented on the module's device, with
    randomness drawn from a generator keyed by ``(aug_seed, epoch, batch_idx, rank)``, so a
    resumed run sees the same augmentations as an uninterrupted one.

    Args:
        model: the classifier (e.g. :func:`~lightning_unlearn.models.build_model`).
        num_classes: number of classes, for the accuracy metrics.
        lr: peak learning rate (default 0.1); SGD, ``momentum`` 0.9, ``weight_decay`` 5e-4.
        schedule: ``"onecycle"`` (default), ``"step"`` (StepLR every ``step_size`` epochs by
            ``gamma``), ``"cosine"`` or ``"constant"``.
        augmentation: ``"crop_flip"``, or ``"none"`` / ``None`` (no augmentation).
        aug_seed: seed of the augmentation randomness.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        num_classes: int,
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        schedule: Schedule = "onecycle",
        step_size: int | None = None,
        gamma: float = 0.1,
        augmentation: str | None = None,
        aug_seed: int = 0,
    ) -> None:
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
        augmentation = normalize_augmentation(augmentation)
        self.save_hyperparameters(ignore=["model"])
        self.model = model
        self.num_classes = num_classes
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.schedule, self.step_size, self.gamma = schedule, step_size, gamma
        self.augmentation, self.aug_seed = augmentation, aug_seed
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    # ------------------------------------------------------------------ inputs
    def augmentation_generator(self, batch_idx: int, device: torch.device) -> torch.Generator:
        """A generator keyed by ``(aug_seed, epoch, batch_idx, rank)`` on ``device``."""
        return batch_generator(self.aug_seed, self.current_epoch, batch_idx, self.global_rank, device)

    def prepare_inputs(self, x: torch.Tensor, *, train: bool, batch_idx: int = 0, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``uint8``/float pixels -> float ``[0, 1]``; augmented when ``train`` (only where ``mask``)."""
        x = to_pixels(x)
        if train and self.augmentation is not None:
            x = augment(x, self.augmentation, generator=self.augmentation_generator(batch_idx, x.device), mask=mask)
        return x

    # ------------------------------------------------------------------ steps
    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch[0], batch[1]
        logits = self(self.prepare_inputs(x, train=True, batch_idx=batch_idx))
        loss = F.cross_entropy(logits, y)
        self.train_acc(logits.detach(), y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch[0], batch[1]
        logits = self(self.prepare_inputs(x, train=False))
        self.val_acc(logits, y)
        self.log("val/acc", self.val_acc, on_step=False, on_epoch=True, prog_bar=True)

    def test_step(self, batch, batch_idx: int) -> None:
        x, y = batch[0], batch[1]
        logits = self(self.prepare_inputs(x, train=False))
        self.test_acc(logits, y)
        self.log("test/acc", self.test_acc, on_step=False, on_epoch=True)

    def on_train_start(self) -> None:
        # configure_optimizers reads estimated_stepping_batches, which makes Lightning build the
        # train loader before it restores a checkpoint: hand the loader its saved mid-epoch position
        restore_loader_positions(self.trainer)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        opt = build_optimizer(self.parameters(), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        total = int(self.trainer.estimated_stepping_batches)
        per_epoch = max(1, total // max(1, self.trainer.max_epochs or 1))
        sched = build_scheduler(opt, self.schedule, total_steps=total, steps_per_epoch=per_epoch, step_size=self.step_size, gamma=self.gamma)
        return opt if sched is None else {"optimizer": opt, "lr_scheduler": sched}
