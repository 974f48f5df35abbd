"""Reference models for RMIA (and MIA-NN): R models trained on random halves of a pool, cached on disk.

metrics.md §5.2. The pool is the data module's training pool, followed by its test pool
(``include_test=True``, AMUN's 60k pool on CIFAR-10). Sample p is IN for reference r iff
``membership[r, p]``; every sample is IN for exactly R/2 references, by AMUN's construction
(``helper.get_data``): ``U ~ Uniform(0, 1)^{R x P}`` from ``numpy.random.RandomState(seed)``,
``O = argsort(U, axis=0)``, ``membership = O < R/2``.

Each reference is trained with the same recipe as the target
(:func:`lightning_unlearn.training.train_classifier`: same model, epochs, learning rate, schedule,
augmentation) on its IN samples, with seed ``10_000 + 100 * seed + r``.

**Devices.** References are trained **one after another**, each by its own ``Trainer`` made from
``trainer_kwargs`` (``accelerator``, ``devices``, ``strategy``, ...): under ``strategy="ddp"`` each
reference is trained data-parallel on all devices in turn. Every finished reference is written to
the cache at once (atomically, ``os.replace``), so an interrupted run resumes where it stopped, and
several processes (e.g. one per GPU, each calling with the same configuration) can share the cache.

**Cache.** ``<cache_dir>/references/<hash>/`` with ``config.json`` (human-readable), ``membership.pt``,
``pool_index.pt`` and ``ref<r>.pt`` (the model's ``state_dict``), all read with
``torch.load(weights_only=True)``. ``<hash>`` is the SHA-256 of the configuration: data set, a
fingerprint of the pool (indices, labels, image shape), model, epochs, lr, schedule, R, seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_unlearn.data.datamodule import UnlearningDataModule
from lightning_unlearn.data.datasets import IndexedTensorDataset
from lightning_unlearn.data.pool import default_cache_dir
from lightning_unlearn.inference import predict_logits
from lightning_unlearn.metrics.rmia import Signal, compute_signal
from lightning_unlearn.models.factory import build_model
from lightning_unlearn.training.fit import DEFAULT_LR, default_epochs, train_classifier

log = logging.getLogger(__name__)

CACHE_VERSION = 1


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


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@dataclass
class ReferenceModels:
    """R trained reference models with their membership over the pool.

    Attributes:
        models: R models (``NormalizedClassifier``, eval mode), taking ``[0, 1]`` pixels.
        membership: ``(R, P)`` bool, IN/OUT per pool position.
        pool_index: ``(P,)`` int64 pool indices of the positions.
        config: the configuration that keys the cache.
        cache_path: the cache directory (``None`` if caching was off).
        loaded_from_cache: how many references were read from the cache rather than trained.
    """

    models: list[nn.Module]
    membership: torch.Tensor
    pool_index: torch.Tensor
    config: dict[str, Any]
    cache_path: Path | None = None
    loaded_from_cache: int = 0
    _index_size: int = field(default=0, repr=False)

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
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    **trainer_kwargs: Any,
) -> ReferenceModels:
    """Train (or load from the cache) ``num_refs`` reference models on random halves of the pool.

    Args:
        dm: the data module (its pool, augmentation and batch size are used; its forget split is not).
        num_refs: R, even (each sample IN for exactly R/2 references).
        model, epochs, lr, schedule: the target's recipe (defaults as in ``train_classifier``).
        seed: seeds the membership matrix and (through ``10_000 + 100 * seed + r``) each reference.
        include_test: pool = train + test (AMUN) or train only.
        cache_dir: default ``<default_cache_dir()>``; the models go to ``references/<hash>/``.
        use_cache: read and write the cache.
        trainer_kwargs: ``make_trainer`` options (``accelerator``, ``devices``, ``strategy``, ...),
            used for each reference's fit in turn.

    Returns:
        :class:`ReferenceModels`.
    """
    if not isinstance(model, str):
        raise ValueError(f"model must be a model name (so that cached weights can be rebuilt), got {type(model).__name__}")
    pool = reference_pool(dm, include_test=include_test)
    epochs = int(epochs if epochs is not None else default_epochs(dm.dataset, model))
    membership = membership_matrix(num_refs, len(pool), seed=seed)
    config = {
        "version": CACHE_VERSION,
        "dataset": str(dm.dataset),
        "pool": _fingerprint(pool),
        "pool_size": len(pool),
        "include_test": bool(include_test),
        "model": model,
        "epochs": epochs,
        "lr": float(lr if lr is not None else DEFAULT_LR.get(model, 0.05)),
        "schedule": schedule,
        "batch_size": dm.batch_size,
        "augmentation": dm.augmentation,
        "num_refs": int(num_refs),
        "seed": int(seed),
    }
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:20]
    path = Path(cache_dir or default_cache_dir()) / "references" / key if use_cache else None
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        if (path / "membership.pt").is_file():
            cached = torch.load(path / "membership.pt", weights_only=True)
            if not torch.equal(cached, membership):
                raise RuntimeError(f"cached membership in {path} differs from the recomputed one: remove the stale cache")
        else:
            _save_atomic(membership, path / "membership.pt")
            _save_atomic(pool.index.clone(), path / "pool_index.pt")

    models: list[nn.Module] = []
    loaded = 0
    for r in range(int(num_refs)):
        file = path / f"ref{r}.pt" if path is not None else None
        if file is not None and file.is_file():
            net = build_model(model, in_channels=dm.image_shape[0], num_classes=dm.num_classes, mean=dm.mean, std=dm.std)
            net.load_state_dict(torch.load(file, weights_only=True))
            loaded += 1
            log.info("reference %d/%d loaded from %s", r + 1, num_refs, file)
        else:
            members = torch.nonzero(membership[r]).flatten()
            log.info("training reference %d/%d on %d of %d pool samples", r + 1, num_refs, len(members), len(pool))
            module = train_classifier(
                dm, on=pool.subset(members), model=model, epochs=epochs, seed=10_000 + 100 * int(seed) + r,
                lr=config["lr"], schedule=schedule, **trainer_kwargs,
            )
            net = module.model
            if file is not None:
                _save_atomic({k: v.detach().cpu() for k, v in net.state_dict().items()}, file)
        models.append(net.eval())
    return ReferenceModels(models, membership, pool.index.clone(), config, path, loaded)
