"""U-LiRA's shadow models: originals, forget sets and retrained models, trained once and shared by every audited method.

Described in docs/metrics.md, section 8.2. For a data module ``dm`` and N shadow pairs:

1. **Target pool** T (:func:`ulira_target_pool`), the examples attacked:

   - random forgetting: the forget set D_F plus as many remain samples, drawn with
     ``torch.randperm`` from a generator seeded by ``derive_seed(dm.seed, "ulira-target-pool")``
     (so every forget set below has about the size of D_F, and D_F itself can be audited);
   - class forgetting: D_f, the forgotten classes' training images.

2. **Forget table** ``forget`` (N, |T|) bool (:func:`forget_table`), which shadow forgets which
   example: random forgetting, ``membership_matrix(N, |T|, seed=derive_seed(seed, "ulira-forget"))``
   (the construction of the RMIA references: every example of T is forgotten by **exactly** N/2
   shadows, each shadow forgets about |T|/2 examples); class forgetting, every shadow forgets all
   of T. The table is recorded in the cache and verified against its seed.

3. **Shadow pair** i: the original θ_i trained on the whole training set with the target's recipe
   and seed ``derive_seed(seed, "ulira-original", i)``, and the retrained θ_i^r trained on the
   training set minus F_i (its forget set) with seed ``derive_seed(seed, "ulira-retrain", i)``. Both
   are cached (:mod:`lightning_unlearn.audit.model_cache`); the originals do not depend on T, N or
   the forget table, so they are shared by every forget spec and grow with N.

Only the unlearning step depends on the audited method: :meth:`ShadowPairs.statistics` runs an
``unlearn_fn(original, forget_index) -> model`` on a copy of each original and returns the φ of
both worlds on each shadow's forget set, the input of :class:`~lightning_unlearn.metrics.ULiRA`.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_unlearn.audit.model_cache import (
    cached_table,
    model_recipe,
    open_model_cache,
    pool_fingerprint,
    train_or_load_models,
)
from lightning_unlearn.audit.references import membership_matrix
from lightning_unlearn.data.datamodule import UnlearningDataModule
from lightning_unlearn.data.datasets import IndexedTensorDataset
from lightning_unlearn.inference import predict_logits
from lightning_unlearn.metrics.functional.ulira import logit_confidence
from lightning_unlearn.seeding import derive_seed

log = logging.getLogger(__name__)

#: ``unlearn_fn(original, forget_index) -> unlearned``: unlearn the pool indices ``forget_index``
#: ((F,) int64) from ``original`` (a copy, which it may change in place) and return the model.
UnlearnFn = Callable[[nn.Module, torch.Tensor], nn.Module]


def ulira_target_pool(dm: UnlearningDataModule) -> torch.Tensor:
    """``(T,)`` int64 pool indices of the examples U-LiRA attacks, sorted (see the module docstring, step 1).

    Random forgetting: D_F and ``min(|D_F|, |D_R|)`` remain samples drawn with
    ``derive_seed(dm.seed, "ulira-target-pool")``; class forgetting: D_f.
    """
    dm.setup()
    train = dm.train_set()
    forget_pos = dm.split.forget
    if dm.is_class_forgetting:
        return torch.sort(train.index[forget_pos]).values
    remain_pos = dm.split.remain
    gen = torch.Generator().manual_seed(derive_seed(int(dm.seed), "ulira-target-pool"))
    extra = remain_pos[torch.randperm(len(remain_pos), generator=gen)[: len(forget_pos)]]
    return torch.sort(train.index[torch.cat([forget_pos, extra])]).values


def forget_table(num_shadows: int, pool_size: int, *, seed: int, class_forgetting: bool) -> torch.Tensor:
    """``(N, T)`` bool: shadow i forgets target-pool example t iff ``table[i, t]`` (module docstring, step 2).

    Raises:
        ValueError: N < 2 (a pooled variance needs 2 observations per world), N odd for random
            forgetting (each example is forgotten by exactly N/2 shadows), or an empty pool.
    """
    if int(num_shadows) != num_shadows or num_shadows < 2:
        raise ValueError(f"num_shadows must be an integer >= 2, got {num_shadows!r}")
    if int(pool_size) < 1:
        raise ValueError(f"the target pool is empty (pool_size {pool_size!r}): nothing to attack")
    if class_forgetting:
        return torch.ones(int(num_shadows), int(pool_size), dtype=torch.bool)
    if num_shadows % 2:
        raise ValueError(f"num_shadows must be even for random forgetting (each example forgotten by exactly N/2 shadows), got {num_shadows}")
    return membership_matrix(int(num_shadows), int(pool_size), seed=derive_seed(int(seed), "ulira-forget"))


def positions_in(pool_index: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Positions of pool indices ``index`` in ``pool_index`` (``(F,)`` int64); ``ValueError`` naming any that is absent."""
    index = torch.as_tensor(index).long().cpu()
    order = torch.argsort(pool_index)
    sorted_idx = pool_index[order]
    pos = torch.searchsorted(sorted_idx, index).clamp(max=len(sorted_idx) - 1)
    absent = sorted_idx[pos] != index
    if bool(absent.any()):
        raise ValueError(f"{int(absent.sum())} index(es) are not in the training pool, e.g. {index[absent][:5].tolist()}")
    return order[pos]


@dataclass
class ShadowPairs:
    """N shadow pairs (original, retrained without its forget set) over one training pool.

    Attributes:
        originals: N models trained on the whole training pool (eval mode, ``[0, 1]`` pixels).
        retrained: N models, model i trained on the pool minus F_i.
        forget: ``(N, T)`` bool forget table over ``target_index``.
        target_index: ``(T,)`` int64 pool indices of the target pool, sorted.
        pool: the training pool (``dm.train_set()``): the data of every forget set.
        config: the configuration that keys the cache (recipe, ``num_shadows``, ``seed``, ...).
        cache_path: the cache folder of the models (``None`` if caching was off).
        loaded_from_cache: how many of the 2N models were read from the cache rather than trained.
    """

    originals: list[nn.Module]
    retrained: list[nn.Module]
    forget: torch.Tensor
    target_index: torch.Tensor
    pool: IndexedTensorDataset
    config: dict[str, Any]
    cache_path: Path | None = None
    loaded_from_cache: int = 0

    @property
    def num_shadows(self) -> int:
        return len(self.originals)

    def forget_index(self, i: int) -> torch.Tensor:
        """``(F_i,)`` int64 pool indices that shadow ``i`` forgets."""
        return self.target_index[self.forget[i]]

    def logits(self, net: nn.Module, index: torch.Tensor, *, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits (F, K), labels (F,))`` of ``net`` on the pool samples with pool indices ``index``, in that order."""
        logits, labels, _ = predict_logits(net, self.pool.subset(positions_in(self.pool.index, index)), batch_size=batch_size)
        return logits, labels

    def phi(self, net: nn.Module, index: torch.Tensor, *, batch_size: int = 512) -> torch.Tensor:
        """``(F,)`` float64 φ (:func:`~lightning_unlearn.metrics.functional.logit_confidence`) of ``net`` on pool indices ``index``."""
        return logit_confidence(*self.logits(net, index, batch_size=batch_size))

    def statistics(
        self, unlearn_fn: UnlearnFn, *, size: int | None = None, batch_size: int = 512
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """φ of both worlds on each shadow's forget set: the input of :class:`~lightning_unlearn.metrics.ULiRA`.

        Shadow i's unlearned model is ``unlearn_fn(copy of originals[i], forget_index(i))`` (the
        cached originals are never changed); it is scored on F_i and released before the next one.
        ``lambda net, forget: net`` gives the originals themselves (no unlearning at all).

        Args:
            unlearn_fn: see :data:`UnlearnFn` (e.g. :func:`~lightning_unlearn.audit.method_unlearner`).
            size: P, the number of columns (default ``max pool index + 1``): make it cover every
                index you will audit (``ULiRA`` needs P > each audited index).
            batch_size: inference batch size.

        Returns:
            ``(unlearned (N, P), retrained (N, P))`` float64, ``nan`` where shadow i does not forget p.
        """
        size = int(size if size is not None else int(self.pool.index.max()) + 1)
        unlearned = torch.full((self.num_shadows, size), float("nan"), dtype=torch.float64)
        retrained = torch.full_like(unlearned, float("nan"))
        for i in range(self.num_shadows):
            index = self.forget_index(i)
            log.info("U-LiRA shadow %d/%d: unlearning %d examples", i + 1, self.num_shadows, len(index))
            net = unlearn_fn(copy.deepcopy(self.originals[i]), index.clone())
            unlearned[i, index] = self.phi(net, index, batch_size=batch_size)
            del net
            retrained[i, index] = self.phi(self.retrained[i], index, batch_size=batch_size)
        return unlearned, retrained


def train_shadow_pairs(
    dm: UnlearningDataModule,
    num_shadows: int = 8,
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
) -> ShadowPairs:
    """Train (or load from the cache) ``num_shadows`` U-LiRA shadow pairs for ``dm``'s forget spec.

    Costs 2N trainings once (N originals, shared by every forget spec, and N retrained models);
    every audited method then costs N unlearning runs (:meth:`ShadowPairs.statistics`). Use a
    second call with another ``seed`` for *target* pairs (:func:`~lightning_unlearn.audit.ulira_audit`):
    the target pool depends on ``dm`` only, so both calls attack the same examples.

    Args:
        dm: the data module (its training pool, forget spec, augmentation and batch size).
        num_shadows: N >= 2 (even for random forgetting). With fewer than 64 observations per
            example and world the fit pools the variance (``ULiRA(variance="auto")``); random
            forgetting gives N/2 per example, class forgetting N.
        model, epochs, lr, schedule, width, fastclip, fastclip_every: the target's recipe, as for
            :func:`~lightning_unlearn.audit.train_reference_models`.
        seed: seeds the forget table and every shadow (module docstring).
        cache_dir, use_cache: as for :func:`~lightning_unlearn.audit.train_reference_models`.
        trainer_kwargs: ``make_trainer`` options, used for each fit in turn.

    Returns:
        :class:`ShadowPairs`.
    """
    recipe = model_recipe(dm, model, epochs, lr, schedule, width=width, fastclip=fastclip, fastclip_every=fastclip_every)
    dm.setup()
    pool = dm.train_set()
    target_index = ulira_target_pool(dm)
    forget = forget_table(num_shadows, len(target_index), seed=seed, class_forgetting=dm.is_class_forgetting)
    n = int(num_shadows)
    target_fp = pool_fingerprint(pool.subset(positions_in(pool.index, target_index)))
    root, cache = open_model_cache(cache_dir, use_cache)
    if cache is not None:
        cached_table(root, {"kind": "ulira-forget", "pool": target_fp, "pool_size": len(target_index), "seed": int(seed)}, forget, target_index)
    orig_config = recipe | {"kind": "ulira-original", "pool": pool_fingerprint(pool), "seed": int(seed)}
    originals, loaded_o = train_or_load_models(
        dm, orig_config, [pool] * n, [derive_seed(int(seed), "ulira-original", i) for i in range(n)], cache=cache, trainer_kwargs=trainer_kwargs
    )
    keep = [torch.nonzero(~torch.isin(pool.index, target_index[forget[i]])).flatten() for i in range(n)]
    retrain_config = recipe | {"kind": "ulira-retrain", "pool": pool_fingerprint(pool), "target_pool": target_fp, "num_shadows": n, "seed": int(seed)}
    retrained, loaded_r = train_or_load_models(
        dm, retrain_config, [pool.subset(k) for k in keep], [derive_seed(int(seed), "ulira-retrain", i) for i in range(n)],
        cache=cache, trainer_kwargs=trainer_kwargs,
    )
    config = retrain_config | {"kind": "ulira-shadows", "forget_spec": str(dm.forget_spec), "data_seed": int(dm.seed)}
    return ShadowPairs(originals, retrained, forget, target_index, pool, config, cache.folder if cache else None, loaded_o + loaded_r)
