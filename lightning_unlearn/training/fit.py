"""Seeded training of the original and the retrained model."""

from __future__ import annotations

import inspect
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch import nn

from lightning_unlearn.data.datamodule import UnlearningDataModule
from lightning_unlearn.data.datasets import IndexedTensorDataset
from lightning_unlearn.data.device_loader import DeviceTensorLoader
from lightning_unlearn.models.factory import build_model
from lightning_unlearn.seeding import derive_seed
from lightning_unlearn.training.module import ClassifierModule, Schedule

# Training length and peak learning rate per (data set kind, model), used when not given.
DEFAULT_EPOCHS = {("digits", "small-cnn"): 15, ("small-image", "small-cnn"): 30, ("small-image", "resnet18"): 40}
DEFAULT_LR = {"small-cnn": 0.05, "resnet18": 0.1}
#: Changes whenever :func:`train_classifier` gives other weights for the same arguments; part of
#: every cached model's key. 2: the data order is drawn from ``derive_seed(seed, "data-order")``.
TRAINING_RECIPE_VERSION = 2


def default_epochs(dataset: str, model: str) -> int:
    """Defaults suited to each data set and model (recorded in every results config)."""
    kind = "digits" if dataset == "digits" else "small-image"
    return DEFAULT_EPOCHS.get((kind, model), 30)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all ranks alike) without printing."""
    kwargs = {"workers": True}
    if "verbose" in inspect.signature(pl.seed_everything).parameters:
        kwargs["verbose"] = False
    pl.seed_everything(seed, **kwargs)


#: the library's defaults for every ``Trainer`` it makes (quiet, no logger, no checkpoints); any of them
#: can be overridden by the caller's keyword arguments
TRAINER_DEFAULTS: dict[str, Any] = {
    "accelerator": "auto",
    "devices": "auto",
    "strategy": "auto",
    "logger": False,
    "enable_progress_bar": False,
    "enable_checkpointing": False,
    "enable_model_summary": False,
    "num_sanity_val_steps": 0,
}


def make_trainer(*, max_epochs: int, callbacks: list | None = None, **kwargs: Any) -> pl.Trainer:
    """A quiet ``Trainer``: :data:`TRAINER_DEFAULTS`, overridden by any ``Trainer`` argument given.

    Every keyword argument goes to ``lightning.pytorch.Trainer``; where it names a default
    (``enable_model_summary=True``, ``num_sanity_val_steps=2``, ``logger=CSVLogger(...)``, ...)
    the caller's value wins.

    Example:
        >>> make_trainer(max_epochs=1, enable_model_summary=True, accelerator="cpu").max_epochs
        1
    """
    return pl.Trainer(max_epochs=max_epochs, callbacks=callbacks or [], **{**TRAINER_DEFAULTS, **kwargs})


def data_order_seed(seed: int) -> int:
    """The seed of the shuffling of a model's training set: ``derive_seed(seed, "data-order")``.

    It depends on the model seed only: two models with the same seed see their data in the same
    order, whatever data module (forget set, replicate) they were trained from, and the order
    and the initialisation are independent streams.
    """
    return derive_seed(int(seed), "data-order")


def train_classifier(
    dm: UnlearningDataModule,
    *,
    on: Literal["train", "remain"] | IndexedTensorDataset = "train",
    model: str | nn.Module = "small-cnn",
    width: int | None = None,
    epochs: int | None = None,
    seed: int = 0,
    lr: float | None = None,
    schedule: Schedule = "onecycle",
    batch_size: int | None = None,
    channels_last: bool = False,
    data_device: str | torch.device | None = None,
    callbacks: list | None = None,
    validate: bool = False,
    trainer: pl.Trainer | None = None,
    **trainer_kwargs: Any,
) -> ClassifierModule:
    """Train a classifier from a fresh, seeded initialisation on the train set or the remain set.

    ``on="train"`` gives the *original* model, ``on="remain"`` the *retrained* model, the
    gold standard every unlearning method is measured against. ``on`` may also be any
    :class:`IndexedTensorDataset` (e.g. a random half of the pool for an RMIA reference model),
    trained with the same recipe. This is the one training path of the library: the
    benchmark's original, retrained and reference models all come from here.

    Seeds: ``seed`` fixes the initialisation (``seed_everything(seed)``) and the augmentation
    (``aug_seed=seed``); the data order is drawn from :func:`data_order_seed` of ``seed``
    only, not from ``dm.seed``. On CPU two calls with the same arguments give bit-identical
    weights.

    Args:
        dm: the data module (its forget spec decides the remain set).
        on: ``"train"``, ``"remain"`` or a dataset of ``(x, y, index)`` items.
        model: a name (``small-cnn``, ``resnet18``) or an ``nn.Module`` that takes ``[0, 1]`` pixels.
        width: the small CNN's width (:func:`~lightning_unlearn.models.build_model`; ``None``:
            its default, 16); only with a model given by name.
        epochs: default from :func:`default_epochs`.
        seed: the model seed (see above).
        lr: peak learning rate, default 0.05 (small CNN) or 0.1 (ResNet-18).
        schedule: ``"onecycle"`` (default), ``"step"``, ``"cosine"`` or ``"constant"``.
        batch_size: default ``dm.batch_size``.
        channels_last: channels-last memory format for a model built by name (GPU speed).
        data_device: keep the training set on this device and batch it there
            (:class:`~lightning_unlearn.data.DeviceTensorLoader`: the same order as the default
            loader; one process only); default ``None``: a ``DataLoader``.
        callbacks: Lightning callbacks of the fit (e.g. :class:`~lightning_unlearn.FastClip`).
        validate: also run the test-set validation loop each epoch.
        trainer: a ready ``Trainer``; otherwise one is made from ``trainer_kwargs``
            (``accelerator``, ``devices``, ``strategy``, ``precision``, ...).

    Returns:
        The trained :class:`ClassifierModule`, in eval mode.

    Raises:
        ValueError: a bad ``on``; ``trainer`` together with ``trainer_kwargs`` or ``callbacks``;
            ``width`` with a model object (or for ResNet-18).
    """
    if not isinstance(on, IndexedTensorDataset) and on not in ("train", "remain"):
        raise ValueError(f"on must be 'train', 'remain' or an IndexedTensorDataset, got {on!r}")
    if trainer is not None and (trainer_kwargs or callbacks):
        given = sorted(trainer_kwargs) + (["callbacks"] if callbacks else [])
        raise ValueError(f"give either a ready trainer or Trainer arguments, not both: got trainer and {', '.join(given)}")
    if width is not None and not isinstance(model, str):
        raise ValueError(f"width applies to a model built by name; got width={width!r} with a {type(model).__name__} object")
    dm.setup()
    name = model if isinstance(model, str) else "custom"
    epochs = epochs if epochs is not None else default_epochs(dm.dataset, name)
    seed_everything(seed)
    net = model if isinstance(model, nn.Module) else build_model(
        model, in_channels=dm.image_shape[0], num_classes=dm.num_classes, mean=dm.mean, std=dm.std, width=width
    )
    if channels_last and isinstance(model, str):
        net = net.to(memory_format=torch.channels_last)
    module = ClassifierModule(
        net,
        num_classes=dm.num_classes,
        lr=lr if lr is not None else DEFAULT_LR.get(name, 0.05),
        schedule=schedule,
        augmentation=dm.augmentation,
        aug_seed=seed,
    )
    if isinstance(on, IndexedTensorDataset):
        data = on
    else:
        data = dm.train_set() if on == "train" else dm.remain_set()
    order = data_order_seed(seed)
    batch_size = batch_size or dm.batch_size
    if data_device is not None:
        train_loader = DeviceTensorLoader(data, batch_size=batch_size, device=data_device, shuffle=True, seed=order)
    else:
        train_loader = dm.make_loader(data, shuffle=True, batch_size=batch_size, seed=order)
    trainer = trainer or make_trainer(max_epochs=epochs, callbacks=callbacks, **trainer_kwargs)
    trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=dm.val_dataloader() if validate else None)
    return module.eval()
