"""Training (or loading from the cache) the original, retrained and reference models.

Each function returns a :class:`TrainedModel`: the pixel-space classifier
(:class:`~lightning_unlearn.models.NormalizedClassifier`) in eval mode plus the metadata of its
cache entry (training seconds, FastClip norms). Every ``Trainer`` gets the config's
``accelerator``/``devices``/``strategy``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lightning_unlearn.data import DeviceTensorLoader, IndexedTensorDataset, UnlearningDataModule
from lightning_unlearn.models import build_model
from lightning_unlearn.pipeline.cache import ModelCache
from lightning_unlearn.pipeline.config import BenchmarkConfig
from lightning_unlearn.training import ClassifierModule, make_trainer, seed_everything
from lightning_unlearn.unlearning import UnlearningMixin

log = logging.getLogger(__name__)


class UnlearnableClassifier(UnlearningMixin, ClassifierModule):
    """The benchmark's LightningModule: the plain classifier with the unlearning phase mixed in."""


@dataclass
class TrainedModel:
    """A trained classifier (eval mode, CPU or the trainer's device) and its cache metadata."""

    net: nn.Module
    meta: dict[str, Any]
    key: str
    from_cache: bool

    @property
    def seconds(self) -> float:
        return float(self.meta.get("seconds", float("nan")))


def trainer_kwargs(config: BenchmarkConfig) -> dict[str, Any]:
    """The ``Trainer`` arguments passed through from the command line."""
    devices: Any = config.devices
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    return {"accelerator": config.accelerator, "devices": devices, "strategy": config.strategy, "precision": config.precision}


def data_device(config: BenchmarkConfig) -> torch.device:
    """Where ``device_data`` keeps the training set: the GPU when the accelerator uses one."""
    if config.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", 0)
    return torch.device("cpu")


def new_net(config: BenchmarkConfig, dm: UnlearningDataModule) -> nn.Module:
    net = build_model(config.model, in_channels=dm.image_shape[0], num_classes=dm.num_classes, mean=dm.mean, std=dm.std)
    return net.to(memory_format=torch.channels_last) if config.channels_last else net


def _fastclip_callbacks(config: BenchmarkConfig) -> list:
    if config.fastclip is None:
        return []
    from lightning_unlearn.callbacks import FastClip  # lands with the FastClip issue

    return [FastClip(max_norm=config.fastclip, every_n_steps=config.fastclip_every)]


def _fastclip_norms(callbacks: list, module: nn.Module) -> dict[str, list[list[float]]] | None:
    """Per-layer ``[[step, sigma], ...]`` recorded by FastClip (its ``history`` of ``(step, layer, kind, value)``),
    layers in the model's module order."""
    out: dict[str, list[list[float]]] = {}
    for cb in callbacks:
        for step, layer, kind, value in getattr(cb, "history", []):
            if kind == "sigma":
                out.setdefault(str(layer), []).append([int(step), float(value)])
    order = {name: i for i, (name, _) in enumerate(module.named_modules())}
    return {k: out[k] for k in sorted(out, key=lambda k: order.get(k, len(order)))} or None


def fit_classifier(config: BenchmarkConfig, dm: UnlearningDataModule, data: IndexedTensorDataset, *, seed: int, seed_offset: int) -> tuple[dict, dict]:
    """Train a fresh seeded classifier on ``data`` with the config's recipe.

    Returns ``(state_dict of the NormalizedClassifier, {"seconds", "fastclip_norms"})``.
    """
    seed_everything(seed)
    net = new_net(config, dm)
    module = ClassifierModule(net, num_classes=dm.num_classes, lr=config.resolved_lr, augmentation=dm.augmentation, aug_seed=seed)
    if config.device_data:  # same order as dm.make_loader: both draw from (dm.seed + seed_offset, epoch)
        loader = DeviceTensorLoader(data, batch_size=config.batch_size, device=data_device(config), shuffle=True, seed=dm.seed + seed_offset)
    else:
        loader = dm.make_loader(data, shuffle=True, batch_size=config.batch_size, seed_offset=seed_offset)
    callbacks = _fastclip_callbacks(config)
    tkw = trainer_kwargs(config)
    if config.device_data:
        tkw["devices"] = 1  # the device loader does not shard: one process
    trainer = make_trainer(max_epochs=config.resolved_epochs, callbacks=callbacks, **tkw)
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    seconds = time.perf_counter() - start
    meta: dict[str, Any] = {"seconds": seconds, "n_train": len(data)}
    norms = _fastclip_norms(callbacks, module)
    if norms is not None:
        meta["fastclip_norms"] = norms
    return module.model.state_dict(), meta


def _restore(config: BenchmarkConfig, dm: UnlearningDataModule, entry) -> TrainedModel:
    net = new_net(config, dm)
    net.load_state_dict(entry.state_dict)
    return TrainedModel(net.eval(), entry.meta, entry.key, entry.from_cache)


def _cached(config: BenchmarkConfig, dm: UnlearningDataModule, cache: ModelCache, key_settings: dict, train) -> TrainedModel:
    """Load or train; an entry whose weights no longer fit the model class (the library changed) is retrained."""
    entry = cache.get_or_train(key_settings, train)
    try:
        return _restore(config, dm, entry)
    except RuntimeError as err:
        if not entry.from_cache:
            raise
        log.warning("cached model %s does not fit %s any more (%s); retraining", entry.key, config.model, str(err).splitlines()[0])
        cache.path(entry.key).unlink(missing_ok=True)
        return _restore(config, dm, cache.get_or_train(key_settings, train))


def original_model(config: BenchmarkConfig, dm: UnlearningDataModule, cache: ModelCache, settings: dict, *, seed: int) -> TrainedModel:
    """The model trained on the whole training set with model seed ``seed`` (forget spec irrelevant)."""
    key_settings = {**settings, "role": "original", "seed": seed}
    return _cached(config, dm, cache, key_settings, lambda: fit_classifier(config, dm, dm.train_set(), seed=seed, seed_offset=7919 * seed - dm.seed))


def retrained_model(config: BenchmarkConfig, dm: UnlearningDataModule, cache: ModelCache, settings: dict, *, seed: int) -> TrainedModel:
    """The model trained on ``dm``'s remain set only (the gold standard) with model seed ``seed``."""
    key_settings = {**settings, "role": "retrain", "seed": seed, "forget": str(dm.forget_spec), "forget_seed": dm.seed if dm.forget_spec.kind == "random" else None}
    return _cached(config, dm, cache, key_settings, lambda: fit_classifier(config, dm, dm.remain_set(), seed=seed, seed_offset=7919 * seed - dm.seed))


# ---------------------------------------------------------------------------- the pool
def pool_dataset(dm: UnlearningDataModule) -> IndexedTensorDataset:
    """All pool points, train then test, in pool-index order."""
    pool = dm.pool
    assert pool is not None
    return IndexedTensorDataset(torch.cat([pool.train_x, pool.test_x]), torch.cat([pool.train_y, pool.test_y]), torch.cat([pool.train_index, pool.test_index]))
