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

import numpy as np
import torch
from torch import nn

from lightning_unlearn.data import IndexedTensorDataset, UnlearningDataModule
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
    return {"accelerator": config.accelerator, "devices": devices, "strategy": config.strategy}


def new_net(config: BenchmarkConfig, dm: UnlearningDataModule) -> nn.Module:
    return build_model(config.model, in_channels=dm.image_shape[0], num_classes=dm.num_classes, mean=dm.mean, std=dm.std)


def _fastclip_callbacks(config: BenchmarkConfig) -> list:
    if config.fastclip is None:
        return []
    from lightning_unlearn.callbacks import FastClip  # lands with the FastClip issue

    return [FastClip(max_norm=config.fastclip, every_n_steps=config.fastclip_every)]


def _fastclip_norms(callbacks: list) -> dict[str, list[float]] | None:
    """Per-layer spectral norms recorded by a FastClip callback, if it exposes them."""
    for cb in callbacks:
        for attr in ("norm_history", "history", "norms"):
            hist = getattr(cb, attr, None)
            if isinstance(hist, dict) and hist:
                return {str(k): [float(v) for v in (vals if isinstance(vals, (list, tuple)) else [vals])] for k, vals in hist.items()}
    return None


def fit_classifier(config: BenchmarkConfig, dm: UnlearningDataModule, data: IndexedTensorDataset, *, seed: int, seed_offset: int) -> tuple[dict, dict]:
    """Train a fresh seeded classifier on ``data`` with the config's recipe.

    Returns ``(state_dict of the NormalizedClassifier, {"seconds", "fastclip_norms"})``.
    """
    seed_everything(seed)
    net = new_net(config, dm)
    module = ClassifierModule(net, num_classes=dm.num_classes, lr=config.resolved_lr, augmentation=dm.augmentation, aug_seed=seed)
    loader = dm.make_loader(data, shuffle=True, batch_size=config.batch_size, seed_offset=seed_offset)
    callbacks = _fastclip_callbacks(config)
    trainer = make_trainer(max_epochs=config.resolved_epochs, callbacks=callbacks, **trainer_kwargs(config))
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    seconds = time.perf_counter() - start
    meta: dict[str, Any] = {"seconds": seconds, "n_train": len(data)}
    norms = _fastclip_norms(callbacks)
    if norms is not None:
        meta["fastclip_norms"] = norms
    return module.model.state_dict(), meta


def _restore(config: BenchmarkConfig, dm: UnlearningDataModule, entry) -> TrainedModel:
    net = new_net(config, dm)
    net.load_state_dict(entry.state_dict)
    return TrainedModel(net.eval(), entry.meta, entry.key, entry.from_cache)


def original_model(config: BenchmarkConfig, dm: UnlearningDataModule, cache: ModelCache, settings: dict, *, seed: int) -> TrainedModel:
    """The model trained on the whole training set with model seed ``seed`` (forget spec irrelevant)."""
    key_settings = {**settings, "role": "original", "seed": seed}
    entry = cache.get_or_train(key_settings, lambda: fit_classifier(config, dm, dm.train_set(), seed=seed, seed_offset=7919 * seed - dm.seed))
    return _restore(config, dm, entry)


def retrained_model(config: BenchmarkConfig, dm: UnlearningDataModule, cache: ModelCache, settings: dict, *, seed: int) -> TrainedModel:
    """The model trained on ``dm``'s remain set only (the gold standard) with model seed ``seed``."""
    key_settings = {**settings, "role": "retrain", "seed": seed, "forget": str(dm.forget_spec), "forget_seed": dm.seed if dm.forget_spec.kind == "random" else None}
    entry = cache.get_or_train(key_settings, lambda: fit_classifier(config, dm, dm.remain_set(), seed=seed, seed_offset=7919 * seed - dm.seed))
    return _restore(config, dm, entry)


# ---------------------------------------------------------------------------- RMIA references
def reference_membership(k: int, n: int, *, seed: int = 0) -> torch.Tensor:
    """Boolean ``(k, n)``: each pool point IN for exactly ``k/2`` reference models.

    The recipe of ``Ali-E/AMUN`` ``helper.get_data`` (``metrics.md`` §5.2): uniforms
    ``U ~ (k, n)`` from a numpy generator seeded with ``seed``, ``O = argsort(U, axis=0)``,
    ``M = O < k/2``.
    """
    if k < 2 or k % 2:
        raise ValueError(f"the number of reference models must be even and >= 2, got {k}")
    u = np.random.RandomState(seed).uniform(0, 1, size=(k, n))
    return torch.from_numpy(np.argsort(u, axis=0) < k // 2)


def pool_dataset(dm: UnlearningDataModule) -> IndexedTensorDataset:
    """All pool points, train then test, in pool-index order."""
    pool = dm.pool
    assert pool is not None
    return IndexedTensorDataset(torch.cat([pool.train_x, pool.test_x]), torch.cat([pool.train_y, pool.test_y]), torch.cat([pool.train_index, pool.test_index]))


def reference_models(config: BenchmarkConfig, dm: UnlearningDataModule, cache: ModelCache, settings: dict, *, on_trained=None) -> tuple[list[TrainedModel], torch.Tensor]:
    """``config.rmia_references`` models, each trained on a random half of the pool (train + test).

    Returns the models and the membership matrix ``(K, N_pool)`` over :func:`pool_dataset` order.
    Reference ``j`` has model seed ``10_000 + j``. ``on_trained()`` is called after each model.
    """
    k = config.rmia_references
    data = pool_dataset(dm)
    membership = reference_membership(k, len(data), seed=0)
    models = []
    for j in range(k):
        key_settings = {**settings, "role": "reference", "index": j, "k": k, "membership_seed": 0}
        part = data.subset(membership[j].nonzero().flatten())
        entry = cache.get_or_train(key_settings, lambda: fit_classifier(config, dm, part, seed=10_000 + j, seed_offset=0))
        models.append(_restore(config, dm, entry))
        if on_trained is not None:
            on_trained()
    return models, membership
