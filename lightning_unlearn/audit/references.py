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

**Cache.** The library's one cache (:mod:`lightning_unlearn.cache`), through
:mod:`lightning_unlearn.audit.model_cache`: each reference model is a ``"models"`` entry keyed by its
recipe, the pool's fingerprint, its training set (the IN samples) and its seed; the membership
table a ``"membership"`` entry keyed by R, the pool and the seed. Every entry is verified on load
(format, shapes, the settings stored inside against the key) and a damaged one is removed and
rebuilt; an unwritable cache folder is reported before any training.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_unlearn.audit.model_cache import (
    cached_table,
    model_recipe,
    open_model_cache,
    pool_fingerprint,
    train_or_load_models,
)
from lightning_unlearn.data.datamodule import UnlearningDataModule
from lightning_unlearn.data.datasets import IndexedTensorDataset
from lightning_unlearn.inference import predict_logits
from lightning_unlearn.metrics.rmia import Signal, compute_signal
from lightning_unlearn.seeding import derive_seed


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
    root, models_cache = open_model_cache(cache_dir, use_cache)
    if models_cache is not None:
        table_key = {k: config[k] for k in ("kind", "pool", "pool_size", "seed") if k in config}
        cached_table(root, table_key, membership, pool.index)
    if train_sets is None:
        train_sets = [pool.subset(torch.nonzero(membership[r]).flatten()) for r in range(len(seeds))]
    models, loaded = train_or_load_models(dm, config, train_sets, seeds, cache=models_cache, trainer_kwargs=trainer_kwargs)
    return ReferenceModels(models, membership, pool.index.clone(), config, models_cache.folder if models_cache else None, loaded)


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
    config = model_recipe(dm, model, epochs, lr, schedule, width=width, fastclip=fastclip, fastclip_every=fastclip_every)
    pool = reference_pool(dm, include_test=include_test)
    membership = membership_matrix(num_refs, len(pool), seed=seed)
    config.update(kind="rmia-halves", pool=pool_fingerprint(pool), pool_size=len(pool), include_test=bool(include_test),
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
    config = model_recipe(dm, model, epochs, lr, schedule, width=width, fastclip=fastclip, fastclip_every=fastclip_every)
    pool = reference_pool(dm, include_test=False)
    remain = dm.remain_set()
    membership = torch.isin(pool.index, remain.index)[None, :].expand(int(num_models), -1).clone()
    config.update(kind="retrain", pool=pool_fingerprint(pool), remain=pool_fingerprint(remain), num_models=int(num_models), seed=int(seed))
    seeds = [int(seed) + r for r in range(int(num_models))]
    return _train_or_load(
        dm, pool, membership, config, seeds, train_sets=[remain] * int(num_models),
        cache_dir=cache_dir, use_cache=use_cache, trainer_kwargs=trainer_kwargs,
    )
