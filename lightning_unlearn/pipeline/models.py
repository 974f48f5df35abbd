"""Training (or loading from the cache) the original and retrained models of a benchmark run.

Every model is trained by :func:`lightning_unlearn.training.train_classifier` (the library's one
training path, the one a user calls) and kept in the library's one cache
(:class:`lightning_unlearn.cache.ArtefactCache`, kind ``"models"``), keyed by the settings that
change its weights. Each function returns a :class:`TrainedModel`: the pixel-space classifier
(:class:`~lightning_unlearn.models.NormalizedClassifier`) in eval mode plus the metadata of its
cache entry (training seconds, FastClip norms). Every ``Trainer`` gets the config's
``accelerator``/``devices``/``strategy``/``precision``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lightning_unlearn.cache import ArtefactCache, state_dict_payload
from lightning_unlearn.data import IndexedTensorDataset, UnlearningDataModule
from lightning_unlearn.models import build_model
from lightning_unlearn.pipeline.config import BenchmarkConfig
from lightning_unlearn.training import ClassifierModule, train_classifier
from lightning_unlearn.unlearning import UnlearningMixin

log = logging.getLogger(__name__)


class UnlearnableClassifier(UnlearningMixin, ClassifierModule):
    """The benchmark's LightningModule: the plain classifier with the unlearning phase mixed in."""


@dataclass
class TrainedModel:
    """A trained classifier (eval mode, CPU or the trainer's device), its cache key, settings and metadata."""

    net: nn.Module
    meta: dict[str, Any]
    key: str
    from_cache: bool
    settings: dict[str, Any]

    @property
    def seconds(self) -> float:
        return float(self.meta.get("seconds", float("nan")))


def trainer_kwargs(config: BenchmarkConfig) -> dict[str, Any]:
    """The ``Trainer`` arguments passed through from the command line."""
    devices: Any = config.execution.devices
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    return {"accelerator": config.execution.accelerator, "devices": devices, "strategy": config.execution.strategy, "precision": config.execution.precision}


def data_device(config: BenchmarkConfig) -> torch.device:
    """Where ``device_data`` keeps the training set: the GPU when the accelerator uses one."""
    if config.execution.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", 0)
    return torch.device("cpu")


def new_net(config: BenchmarkConfig, dm: UnlearningDataModule) -> nn.Module:
    net = build_model(config.models.model, in_channels=dm.image_shape[0], num_classes=dm.num_classes, mean=dm.mean, std=dm.std, width=config.models.width)
    return net.to(memory_format=torch.channels_last) if config.execution.channels_last else net


def _fastclip_callbacks(config: BenchmarkConfig) -> list:
    if config.models.fastclip is None:
        return []
    from lightning_unlearn.callbacks import FastClip

    return [FastClip(max_norm=config.models.fastclip, every_n_steps=config.models.fastclip_every)]


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


def fit_classifier(config: BenchmarkConfig, dm: UnlearningDataModule, data: IndexedTensorDataset, *, seed: int) -> tuple[dict, dict]:
    """:func:`~lightning_unlearn.training.train_classifier` on ``data`` with the config's recipe and model seed ``seed``.

    Returns ``(state_dict of the NormalizedClassifier, {"seconds", "n_train", ["fastclip_norms"]})``.
    """
    callbacks = _fastclip_callbacks(config)
    tkw = trainer_kwargs(config)
    device = None
    if config.execution.device_data:
        device = data_device(config)
        tkw["devices"] = 1  # the device loader does not shard: one process
    start = time.perf_counter()
    module = train_classifier(
        dm, on=data, model=config.models.model, width=config.models.width, epochs=config.resolved_epochs, seed=seed, lr=config.resolved_lr,
        batch_size=config.models.batch_size,
        channels_last=config.execution.channels_last, data_device=device, callbacks=callbacks, **tkw,
    )
    seconds = time.perf_counter() - start
    meta: dict[str, Any] = {"seconds": seconds, "n_train": len(data)}
    norms = _fastclip_norms(callbacks, module)
    if norms is not None:
        meta["fastclip_norms"] = norms
    return state_dict_payload(module.model.state_dict()), meta


def _cached(config: BenchmarkConfig, dm: UnlearningDataModule, cache: ArtefactCache, key_settings: dict, data: IndexedTensorDataset, seed: int) -> TrainedModel:
    """Load the model of ``key_settings`` (verified: weights that do not fit the model class count as damage) or train it."""

    def restore(payload: dict) -> nn.Module:
        net = new_net(config, dm)
        net.load_state_dict(payload, strict=True)
        return net.eval()

    entry = cache.get_or_build(key_settings, lambda: fit_classifier(config, dm, data, seed=seed), restore)
    return TrainedModel(entry.value, entry.meta, entry.key, entry.from_cache, entry.settings)


def original_model(config: BenchmarkConfig, dm: UnlearningDataModule, cache: ArtefactCache, settings: dict, *, seed: int) -> TrainedModel:
    """The model trained on the whole training set with model seed ``seed`` (forget spec irrelevant)."""
    return _cached(config, dm, cache, {**settings, "role": "original", "seed": seed}, dm.train_set(), seed)


def retrained_model(config: BenchmarkConfig, dm: UnlearningDataModule, cache: ArtefactCache, settings: dict, *, seed: int) -> TrainedModel:
    """The model trained on ``dm``'s remain set only (the gold standard) with model seed ``seed``."""
    forget_seed = dm.seed if dm.forget_spec.kind == "random" else None
    key_settings = {**settings, "role": "retrain", "seed": seed, "forget": str(dm.forget_spec), "forget_seed": forget_seed}
    return _cached(config, dm, cache, key_settings, dm.remain_set(), seed)


# ---------------------------------------------------------------------------- the pool
def pool_dataset(dm: UnlearningDataModule) -> IndexedTensorDataset:
    """All pool points, train then test, in pool-index order."""
    pool = dm.pool
    assert pool is not None
    return IndexedTensorDataset(torch.cat([pool.train_x, pool.test_x]), torch.cat([pool.train_y, pool.test_y]), torch.cat([pool.train_index, pool.test_index]))
