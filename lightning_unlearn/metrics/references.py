"""Reference models for RMIA (and MIA-NN): R models trained on random halves of a pool, cached on disk.

Described in docs/metrics.md, section 5.2. The pool is the data module's training pool, followed by its test pool
(``include_test=True``, AMUN's 60k pool on CIFAR-10). Sample p is IN for reference r iff
``membership[r, p]``; every sample is IN for exactly R/2 references, by AMUN's construction
(``helper.get_data``): ``U ~ Uniform(0, 1)^{R x P}`` from ``numpy.random.RandomState(seed)``,
``O = argsort(U, axis=0)``, ``membership = O < R/2``.

Each reference is trained with the same recipe as the target
(:func:`lightning_unlearn.training.train_classifier`, the library's one training path: same
model, epochs, learning rate, schedule, augmentation) on its IN samples, with model seed
``derive_seed(seed, "rmia-reference", r)`` (:func:`lightning_unlearn.seeding.derive_seed`).

**Devices.** References are trained **one after another**, each by its own ``Trainer`` made from
``trainer_kwargs`` (``accelerator``, ``devices``, ``strategy``, ...): under ``strategy="ddp"`` each
reference is trained data-parallel on all devices in turn. Every finished reference is written to
the cache at once (atomically), so an interrupted run resumes where it stopped and a later call
(or another process) with the same configuration loads it instead of training it.

:func:`train_retrained_references` uses the same loop and cache for models retrained on D_R only
(``train_classifier(dm, on="remain", seed=s)``), the references of MIA-NN, Avg. Gap and FADE.

**Cache.** The library's one cache (:mod:`lightning_unlearn.cache`): each reference model is a
``"models"`` entry keyed by its recipe, the pool's fingerprint, its training set (the IN samples)
and its seed; the membership table a ``"membership"`` entry keyed by R, the pool and the seed.
Every entry is verified on load (format, shapes, the settings stored inside against the key) and
a damaged one is removed and rebuilt; an unwritable cache folder is reported before any training.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_unlearn.cache import ArtefactCache, check_writable, default_cache_dir, state_dict_payload
from lightning_unlearn.data.datamodule import UnlearningDataModule
from lightning_unlearn.data.datasets import IndexedTensorDataset
from lightning_unlearn.inference import predict_logits
from lightning_unlearn.metrics.rmia import Signal, compute_signal
from lightning_unlearn.models.factory import build_model
from lightning_unlearn.seeding import derive_seed
from lightning_unlearn.training.fit import DEFAULT_LR, TRAINING_RECIPE_VERSION, default_epochs, train_classifier

log = logging.getLogger(__name__)

CACHE_VERSION = 2


def membership_matrix(num_refs: int, num_samples: int, *, seed: int = 0) -> torch.Tensor:
    """``(R, P)`` bool: IN/OUT of each pool sample for each reference, each sample IN for exactly R/2.

    AMUN ``helper.get_data``: ``U = RandomState(seed).uniform(0, 1, (R, P))``,
    ``membership = argsort(U, axis=0) < R / 2``. Each column of the argsort is a permutation of
    ``0 .. R-1``, so exactly R/2 entries per sample are True.

    Raises:
        ValueError: R odd or < 2, P < 1.
    """
    if int(num_refs) != num_refs or num_refs < 2 or num_refs % 2:
        raise ValueError(f"num_refs must be an even integer >= 2 (each sample IN for exactly R/2), got {num_refs!r}")
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples!r}")
    u = np.random.RandomState(int(seed)).uniform(0, 1, size=(int(num_refs), int(num_samples)))
    return torch.from_numpy(u.argsort(0) < num_refs // 2)


def reference_pool(dm: UnlearningDataModule, *, include_test: bool = True) -> IndexedTensorDataset:
    """The pool the references split: the training pool, then (``include_test``) the test pool."""
    dm.setup()
    p = dm.pool
    if not include_test:
        return IndexedTensorDataset(p.train_x, p.train_y, p.train_index)
    return IndexedTensorDataset(
        torch.cat([p.train_x, p.test_x]), torch.cat([p.train_y, p.test_y]), torch.cat([p.train_index, p.test_index])
    )


def _fingerprint(pool: IndexedTensorDataset) -> str:
    h = hashlib.sha256()
    h.update(pool.index.numpy().tobytes())
    h.update(pool.y.numpy().tobytes())
    h.update(str(tuple(pool.x.shape)).encode())
    return h.hexdigest()[:16]


@dataclass
class ReferenceModels:
    """R trained reference models with their membership over the pool.

    Attributes:
        models: R models (``NormalizedClassifier``, eval mode), taking ``[0, 1]`` pixels.
        membership: ``(R, P)`` bool, IN/OUT per pool position.
        pool_index: ``(P,)`` int64 pool indices of the positions.
        config: the configuration that keys the cache.
        cache_path: the cache folder of the models (``None`` if caching was off).
        loaded_from_cache: how many references were read from the cache rather than trained.
    """

    models: list[nn.Module]
    membership: torch.Tensor
    pool_index: torch.Tensor
    config: dict[str, Any]
    cache_path: Path | None = None
    loaded_from_cache: int = 0

    @property
    def num_refs(self) -> int:
        return len(self.models)

    def logits(self, data: Dataset | DataLoader, *, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logits (R, N, K), labels (N,), index (N,))`` of every reference on ``data`` (eval mode, fp32, data order)."""
        outs = [predict_logits(m, data, batch_size=batch_size) for m in self.models]
        return torch.stack([o[0] for o in outs]), outs[0][1], outs[0][2]

    def signals(self, data: Dataset | DataLoader, *, signal: Signal = "softmax", **signal_kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(signals (R, N), index (N,))``: Pr(x | θ_r) of each reference on ``data`` (see :func:`..rmia.compute_signal`)."""
        logits, labels, index = self.logits(data)
        return compute_signal(logits, labels, signal, **signal_kwargs), index

    def membership_of(self, index: torch.Tensor) -> torch.Tensor:
        """``(R, N)`` bool membership of the given pool indices (False for indices outside the pool)."""
        index = torch.as_tensor(index).long()
        order = torch.argsort(self.pool_index)
        sorted_idx = self.pool_index[order]
        pos = torch.searchsorted(sorted_idx, index).clamp(max=len(sorted_idx) - 1)
        found = sorted_idx[pos] == index
        out = self.membership[:, order[pos]]
        return out & found[None, :]

    def signals_by_index(
        self, data: Dataset | DataLoader, *, signal: Signal = "softmax", size: int | None = None, **signal_kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense ``(R, size)`` signals and membership indexed by **pool index**, the input of :class:`~lightning_unlearn.metrics.RMIA`.

        Entries for indices not in ``data`` are ``nan`` (signals) / False (membership).
        ``size`` defaults to ``max index + 1``.
        """
        sig, index = self.signals(data, signal=signal, **signal_kwargs)
        size = int(size if size is not None else int(index.max()) + 1)
        dense = torch.full((self.num_refs, size), float("nan"), dtype=sig.dtype)
        dense[:, index] = sig
        member = torch.zeros((self.num_refs, size), dtype=torch.bool)
        member[:, index] = self.membership_of(index)
        return dense, member


def _membership_restore(expected: torch.Tensor, pool_index: torch.Tensor):
    """Check a cached membership table: bool ``(R, P)``, the pool's indices, equal to the recomputed table."""

    def restore(payload: dict[str, Any]) -> torch.Tensor:
        m, idx = payload["membership"], payload["pool_index"]
        if not isinstance(m, torch.Tensor) or m.dtype != torch.bool or m.shape != expected.shape:
            raise ValueError(
                f"membership must be a bool tensor of shape {tuple(expected.shape)}, got {getattr(m, 'dtype', type(m))} {tuple(getattr(m, 'shape', ()))}"
            )
        if not isinstance(idx, torch.Tensor) or not torch.equal(idx, pool_index):
            raise ValueError("its pool indices are not this pool's")
        if not torch.equal(m, expected):
            raise ValueError("its membership differs from the one recomputed from the seed")
        return m

    return restore


def _model_restore(dm: UnlearningDataModule, model: str, width: int | None = None):
    def restore(payload: dict[str, Any]) -> nn.Module:
        net = build_model(model, in_channels=dm.image_shape[0], num_classes=dm.num_classes, mean=dm.mean, std=dm.std, width=width)
        net.load_state_dict(payload, strict=True)  # RuntimeError on a missing, extra or misshapen tensor
        return net

    return restore


def _trainer_settings(trainer_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The Trainer arguments that can change trained weights (part of a reference's cache key)."""
    return {k: trainer_kwargs[k] for k in ("accelerator", "devices", "strategy", "precision") if k in trainer_kwargs}


def _train_or_load(
    dm: UnlearningDataModule,
    pool: IndexedTensorDataset,
    membership: torch.Tensor,
    config: dict[str, Any],
    seeds: Sequence[int],
    *,
    train_sets: Sequence[IndexedTensorDataset] | None = None,
    cache_dir: str | os.PathLike | None,
    use_cache: bool,
    trainer_kwargs: dict[str, Any],
) -> ReferenceModels:
    """Train model r on ``train_sets[r]`` (default ``pool.subset(membership[r])``) with seed ``seeds[r]``, or load it from the cache."""
    root = Path(cache_dir or default_cache_dir())
    models_cache = ArtefactCache(root, "models") if use_cache else None
    if use_cache:
        for kind in ("models", "membership"):
            check_writable(root / kind)  # before any training
        table = ArtefactCache(root, "membership")
        table.get_or_build(
            {k: config[k] for k in ("kind", "pool", "pool_size", "seed") if k in config} | {"shape": list(membership.shape)},
            lambda: ({"membership": membership.clone(), "pool_index": pool.index.clone()}, {}),
            _membership_restore(membership, pool.index),
        )
    model, width = config["model"], config.get("width")
    restore = _model_restore(dm, model, width)
    models: list[nn.Module] = []
    loaded = 0
    for r, seed_r in enumerate(seeds):
        data = train_sets[r] if train_sets is not None else pool.subset(torch.nonzero(membership[r]).flatten())

        def train(data=data, r=r, seed_r=seed_r) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
            log.info("training reference %d/%d on %d of %d pool samples", r + 1, len(seeds), len(data), len(pool))
            rest = {k: v for k, v in trainer_kwargs.items() if k != "callbacks"}
            module = train_classifier(
                dm, on=data, model=model, width=width, epochs=config["epochs"], seed=int(seed_r), lr=config["lr"],
                schedule=config["schedule"], callbacks=_fastclip_callbacks(config) + list(trainer_kwargs.get("callbacks") or []), **rest,
            )
            return state_dict_payload(module.model.state_dict()), {"n_train": len(data)}

        if models_cache is None:
            net = restore(train()[0])
        else:
            settings = {**config, "role": config["kind"], "reference": r, "seed": int(seed_r), "train_set": _fingerprint(data),
                        **_trainer_settings(trainer_kwargs)}
            entry = models_cache.get_or_build(settings, train, restore)
            net, loaded = entry.value, loaded + int(entry.from_cache)
        models.append(net.eval())
    return ReferenceModels(models, membership, pool.index.clone(), config, models_cache.folder if models_cache else None, loaded)


def _fastclip_callbacks(config: dict[str, Any]) -> list:
    """A fresh FastClip callback for one fit when the recipe clips (``config["fastclip"]``), else none."""
    if config.get("fastclip") is None:
        return []
    from lightning_unlearn.callbacks import FastClip

    return [FastClip(max_norm=config["fastclip"], every_n_steps=config["fastclip_every"])]


def _recipe(
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
    """The training recipe of every reference model (part of each one's cache key).

    ``width`` and the FastClip settings enter the recipe only when set, so models of the default
    recipe keep the keys they had before these options existed.
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


def train_reference_models(
    dm: UnlearningDataModule,
    num_refs: int = 2,
    *,
    model: str = "small-cnn",
    epochs: int | None = None,
    seed: int = 0,
    lr: float | None = None,
    schedule: str = "onecycle",
    include_test: bool = True,
    width: int | None = None,
    fastclip: float | None = None,
    fastclip_every: int = 10,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    **trainer_kwargs: Any,
) -> ReferenceModels:
    """Train (or load from the cache) ``num_refs`` RMIA reference models on random halves of the pool.

    Args:
        dm: the data module (its pool, augmentation and batch size are used; its forget split is not).
        num_refs: R, even (each sample IN for exactly R/2 references).
        model, epochs, lr, schedule: the target's recipe (defaults as in ``train_classifier``).
        width: the small CNN's width (``None``: its default), as the target's.
        fastclip, fastclip_every: train every reference with FastClip (``max_norm``,
            ``every_n_steps``; a fresh callback per fit), as the target was (``None``: no clipping).
        seed: seeds the membership matrix and (through ``derive_seed(seed, "rmia-reference", r)``) each reference.
        include_test: pool = train + test (AMUN) or train only.
        cache_dir: default ``<default_cache_dir()>``; the models go to ``references/<hash>/``.
        use_cache: read and write the cache.
        trainer_kwargs: ``make_trainer`` options (``accelerator``, ``devices``, ``strategy``, ...),
            used for each reference's fit in turn.

    Returns:
        :class:`ReferenceModels`.
    """
    config = _recipe(dm, model, epochs, lr, schedule, width=width, fastclip=fastclip, fastclip_every=fastclip_every)
    pool = reference_pool(dm, include_test=include_test)
    membership = membership_matrix(num_refs, len(pool), seed=seed)
    config.update(kind="rmia-halves", pool=_fingerprint(pool), pool_size=len(pool), include_test=bool(include_test),
                  num_refs=int(num_refs), seed=int(seed))
    seeds = [derive_seed(int(seed), "rmia-reference", r) for r in range(int(num_refs))]
    return _train_or_load(dm, pool, membership, config, seeds, cache_dir=cache_dir, use_cache=use_cache, trainer_kwargs=trainer_kwargs)


def train_retrained_references(
    dm: UnlearningDataModule,
    num_models: int = 3,
    *,
    model: str = "small-cnn",
    epochs: int | None = None,
    seed: int = 0,
    lr: float | None = None,
    schedule: str = "onecycle",
    width: int | None = None,
    fastclip: float | None = None,
    fastclip_every: int = 10,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    **trainer_kwargs: Any,
) -> ReferenceModels:
    """Models retrained from scratch on the remain set D_R only, with seeds ``seed .. seed + num_models - 1``.

    The references of MIA-NN (neighbour classes, retrain score; docs/metrics.md, section 6) and of
    Avg. Gap / FADE: exactly ``train_classifier(dm, on="remain", seed=s)``, cached like
    :func:`train_reference_models` (keyed by the remain set's indices too; ``width`` and
    ``fastclip`` as there). ``membership`` marks the remain samples of the training pool.
    """
    if int(num_models) < 1:
        raise ValueError(f"num_models must be >= 1, got {num_models!r}")
    config = _recipe(dm, model, epochs, lr, schedule, width=width, fastclip=fastclip, fastclip_every=fastclip_every)
    pool = reference_pool(dm, include_test=False)
    remain = dm.remain_set()
    membership = torch.isin(pool.index, remain.index)[None, :].expand(int(num_models), -1).clone()
    config.update(kind="retrain", pool=_fingerprint(pool), remain=_fingerprint(remain), num_models=int(num_models), seed=int(seed))
    seeds = [int(seed) + r for r in range(int(num_models))]
    return _train_or_load(
        dm, pool, membership, config, seeds, train_sets=[remain] * int(num_models),
        cache_dir=cache_dir, use_cache=use_cache, trainer_kwargs=trainer_kwargs,
    )
