"""Train or load the audit's models (RMIA / MIA-NN references, U-LiRA shadows) through the artefact cache.

Every model of an audit is trained by :func:`lightning_unlearn.training.train_classifier` (the
library's one training path) with the *target's recipe* (:func:`model_recipe`) and kept in the
library's one cache (:mod:`lightning_unlearn.cache`):

- each model is a ``"models"`` entry keyed by the recipe, the audit's configuration, its position
  in its set, its seed, a fingerprint of its training set and the Trainer settings that change
  weights (:func:`train_or_load_models`);
- each table saying which model saw which sample (RMIA's membership, U-LiRA's forget sets) is a
  ``"membership"`` entry, verified against the table recomputed from its seed (:func:`cached_table`).

Models are trained **one after another**, each by its own ``Trainer`` made from
``trainer_kwargs`` (under ``strategy="ddp"`` each is trained data-parallel on all devices in turn).
Every finished model is written at once (atomically), so an interrupted run resumes where it
stopped and a later call with the same configuration loads it instead of training it. An
unwritable cache folder is reported before any training.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_unlearn.cache import ArtefactCache, BuildBusyError, check_writable, default_cache_dir, state_dict_payload
from lightning_unlearn.data.datamodule import UnlearningDataModule
from lightning_unlearn.data.datasets import IndexedTensorDataset
from lightning_unlearn.models.factory import build_model
from lightning_unlearn.training.fit import DEFAULT_LR, TRAINING_RECIPE_VERSION, default_epochs, train_classifier

log = logging.getLogger(__name__)

#: Part of every audit model's recipe (and so of its cache key); bump it when the audit's training changes.
CACHE_VERSION = 2


def pool_fingerprint(pool: IndexedTensorDataset) -> str:
    """16 hex digits of SHA-256 over the pool's indices, labels and image shape: which samples a set holds."""
    h = hashlib.sha256()
    h.update(pool.index.numpy().tobytes())
    h.update(pool.y.numpy().tobytes())
    h.update(str(tuple(pool.x.shape)).encode())
    return h.hexdigest()[:16]


def model_recipe(
    dm: UnlearningDataModule,
    model: str,
    epochs: int | None,
    lr: float | None,
    schedule: str,
    *,
    width: int | None = None,
    fastclip: float | None = None,
    fastclip_every: int = 10,
) -> dict[str, Any]:
    """The training recipe of every audit model (part of each one's cache key): the target's recipe.

    ``width`` and the FastClip settings enter the recipe only when set, so models of the default
    recipe keep the keys they had before these options existed.

    Raises:
        ValueError: ``model`` is not a name (cached weights could not be rebuilt), or a FastClip
            setting is not positive.
    """
    if not isinstance(model, str):
        raise ValueError(f"model must be a model name (so that cached weights can be rebuilt), got {type(model).__name__}")
    if fastclip is not None and (fastclip <= 0 or fastclip_every <= 0):
        raise ValueError(f"fastclip must be a positive max_norm and fastclip_every a positive number of steps, got {fastclip!r} and {fastclip_every!r}")
    extra: dict[str, Any] = {}
    if width is not None:
        extra["width"] = int(width)
    if fastclip is not None:
        extra.update(fastclip=float(fastclip), fastclip_every=int(fastclip_every))
    return extra | {
        "version": CACHE_VERSION,
        "recipe_version": TRAINING_RECIPE_VERSION,
        "dataset": str(dm.dataset),
        "model": model,
        "epochs": int(epochs if epochs is not None else default_epochs(dm.dataset, model)),
        "lr": float(lr if lr is not None else DEFAULT_LR.get(model, 0.05)),
        "schedule": schedule,
        "batch_size": dm.batch_size,
        "augmentation": dm.augmentation,
    }


def trainer_settings(trainer_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The Trainer arguments that can change trained weights (part of a model's cache key)."""
    return {k: trainer_kwargs[k] for k in ("accelerator", "devices", "strategy", "precision") if k in trainer_kwargs}


def fastclip_callbacks(config: dict[str, Any]) -> list:
    """A fresh FastClip callback for one fit when the recipe clips (``config["fastclip"]``), else none."""
    if config.get("fastclip") is None:
        return []
    from lightning_unlearn.callbacks import FastClip

    return [FastClip(max_norm=config["fastclip"], every_n_steps=config["fastclip_every"])]


def model_restore(dm: UnlearningDataModule, model: str, width: int | None = None) -> Callable[[dict[str, Any]], nn.Module]:
    """Rebuild a cached model: ``build_model`` for ``dm``'s images and classes, weights loaded with ``strict=True``."""

    def restore(payload: dict[str, Any]) -> nn.Module:
        net = build_model(model, in_channels=dm.image_shape[0], num_classes=dm.num_classes, mean=dm.mean, std=dm.std, width=width)
        net.load_state_dict(payload, strict=True)  # RuntimeError on a missing, extra or misshapen tensor
        return net

    return restore


def open_model_cache(cache_dir: str | os.PathLike | None, use_cache: bool) -> tuple[Path, ArtefactCache | None]:
    """``(cache root, the "models" cache or None)``; with ``use_cache`` both folders are probed for writing first."""
    root = Path(cache_dir or default_cache_dir())
    if not use_cache:
        return root, None
    for kind in ("models", "membership"):
        check_writable(root / kind)  # before any training
    return root, ArtefactCache(root, "models")


def _table_restore(expected: torch.Tensor, index: torch.Tensor) -> Callable[[dict[str, Any]], torch.Tensor]:
    """Check a cached table: bool of the expected shape, over the expected indices, equal to the recomputed table."""

    def restore(payload: dict[str, Any]) -> torch.Tensor:
        m, idx = payload["membership"], payload["pool_index"]
        if not isinstance(m, torch.Tensor) or m.dtype != torch.bool or m.shape != expected.shape:
            raise ValueError(
                f"membership must be a bool tensor of shape {tuple(expected.shape)}, got {getattr(m, 'dtype', type(m))} {tuple(getattr(m, 'shape', ()))}"
            )
        if not isinstance(idx, torch.Tensor) or not torch.equal(idx, index):
            raise ValueError("its pool indices are not this pool's")
        if not torch.equal(m, expected):
            raise ValueError("its membership differs from the one recomputed from the seed")
        return m

    return restore


def cached_table(root: Path, settings: dict[str, Any], table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Record the ``(M, P)`` bool ``table`` over pool ``index`` as a ``"membership"`` entry (verified when it exists).

    The entry is keyed by ``settings`` plus the table's shape; a stored table that differs from
    ``table`` (recomputed from its seed by the caller) is damage: it is named, removed and rewritten.
    """
    entry = ArtefactCache(root, "membership").get_or_build(
        settings | {"shape": list(table.shape)},
        lambda: ({"membership": table.clone(), "pool_index": index.clone()}, {}),
        _table_restore(table, index),
    )
    return entry.value


def train_or_load_models(
    dm: UnlearningDataModule,
    config: dict[str, Any],
    train_sets: Sequence[IndexedTensorDataset],
    seeds: Sequence[int],
    *,
    cache: ArtefactCache | None,
    trainer_kwargs: dict[str, Any],
) -> tuple[list[nn.Module], int]:
    """Train model r on ``train_sets[r]`` with seed ``seeds[r]`` and ``config``'s recipe, or load it from ``cache``.

    Each model's key is ``config`` plus ``role`` (``config["kind"]``), ``reference`` (its position r),
    ``seed``, ``train_set`` (:func:`pool_fingerprint`) and :func:`trainer_settings`.

    Returns:
        ``(models in eval mode, how many came from the cache)``.

    Raises:
        BuildBusyError: inside :func:`lightning_unlearn.cache.no_waiting`, another live process is
            building one of the models; every model nobody else was building is built (and
            stored) first, so that workers sharing the cache train different models at once.
    """
    model, width = config["model"], config.get("width")
    restore = model_restore(dm, model, width)
    models: list[nn.Module] = []
    loaded = 0
    busy: BuildBusyError | None = None
    for r, (data, seed_r) in enumerate(zip(train_sets, seeds, strict=True)):

        def train(data=data, r=r, seed_r=seed_r) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
            log.info("training %s model %d/%d on %d samples", config["kind"], r + 1, len(seeds), len(data))
            rest = {k: v for k, v in trainer_kwargs.items() if k != "callbacks"}
            module = train_classifier(
                dm, on=data, model=model, width=width, epochs=config["epochs"], seed=int(seed_r), lr=config["lr"],
                schedule=config["schedule"], callbacks=fastclip_callbacks(config) + list(trainer_kwargs.get("callbacks") or []), **rest,
            )
            return state_dict_payload(module.model.state_dict()), {"n_train": len(data)}

        if cache is None:
            net = restore(train()[0])
        else:
            settings = {**config, "role": config["kind"], "reference": r, "seed": int(seed_r), "train_set": pool_fingerprint(data),
                        **trainer_settings(trainer_kwargs)}
            try:
                entry = cache.get_or_build(settings, train, restore)
            except BuildBusyError as err:
                busy = busy or err
                continue
            net, loaded = entry.value, loaded + int(entry.from_cache)
        models.append(net.eval())
    if busy is not None:
        raise busy
    return models, loaded
