"""Run U-LiRA end to end: an audited method's unlearning step on the shadows, and the attack on target pairs.

Described in docs/metrics.md, section 8. The shadows (:func:`~lightning_unlearn.audit.train_shadow_pairs`)
are trained once; per audited method:

1. :func:`method_unlearner` turns a registry method and its hyperparameters into an
   ``unlearn_fn(original, forget_index) -> model`` (or bring your own function);
2. :meth:`ShadowPairs.statistics` runs it on every shadow original: the φ of the two worlds;
3. :func:`ulira_audit` scores *target* pairs (a second, disjoint set of pairs) with them: each
   target pair's unlearned model and retrained model on the target's forget set, a balanced set of
   records, through :class:`~lightning_unlearn.metrics.ULiRA`.

To audit other models (e.g. a benchmark's own unlearned and retrained models on its D_F), build
``ULiRA(*shadows.statistics(unlearn_fn))`` and update it with their logits directly.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lightning_unlearn.audit.shadows import ShadowPairs, UnlearnFn, positions_in
from lightning_unlearn.data.datamodule import UnlearningDataModule
from lightning_unlearn.data.transforms import resolve_augmentation
from lightning_unlearn.inference import predict_logits
from lightning_unlearn.metrics.functional.ulira import MIN_STD, Variance
from lightning_unlearn.metrics.ulira import ULiRA
from lightning_unlearn.training import ClassifierModule, seed_everything
from lightning_unlearn.unlearning import UnlearningMixin, UnlearningRequest, get_method, unlearn


class _UnlearnableClassifier(UnlearningMixin, ClassifierModule):
    """The plain classifier with the unlearning phase mixed in (the module every shadow is unlearned in)."""


def forget_request(
    dm: UnlearningDataModule,
    forget_index: torch.Tensor,
    *,
    use_remain: bool = True,
    batch_size: int | None = None,
    augmentation: str | None = "auto",
    seed: int = 0,
) -> UnlearningRequest:
    """The :class:`~lightning_unlearn.unlearning.UnlearningRequest` of forgetting pool indices ``forget_index`` of ``dm``'s training pool.

    D_F = those samples, D_R = the rest of the training pool (``None`` with ``use_remain=False``);
    class forgetting keeps ``dm``'s forget classes; the other arguments as
    :meth:`UnlearningRequest.from_datamodule <lightning_unlearn.unlearning.UnlearningRequest.from_datamodule>`
    (the benchmark's request recipe).

    Raises:
        ValueError: an index that is not in the training pool, or an unknown ``augmentation``.
    """
    dm.setup()
    pool = dm.train_set()
    forget_pos = positions_in(pool.index, forget_index)
    keep = torch.ones(len(pool), dtype=torch.bool)
    keep[forget_pos] = False
    return UnlearningRequest(
        forget=pool.subset(forget_pos), remain=pool.subset(torch.nonzero(keep).flatten()) if use_remain else None, num_classes=dm.num_classes,
        forget_classes=dm.forget_spec.classes if dm.is_class_forgetting else (), augmentation=resolve_augmentation(augmentation, dm.image_shape),
        batch_size=batch_size or dm.batch_size, seed=int(seed),
    )


def unlearnable(original: torch.nn.Module, dm: UnlearningDataModule, *, seed: int = 0) -> UnlearningMixin:
    """``original`` wrapped in the LightningModule every audited unlearning runs in (the plain classifier with the unlearning phase)."""
    return _UnlearnableClassifier(original, num_classes=dm.num_classes, augmentation=dm.augmentation, aug_seed=int(seed))


def method_unlearner(
    dm: UnlearningDataModule,
    method: str,
    hyperparameters: dict[str, Any] | None = None,
    *,
    use_remain: bool = True,
    batch_size: int | None = None,
    augmentation: str | None = "auto",
    seed: int = 0,
    trainer_kwargs: dict[str, Any] | None = None,
) -> UnlearnFn:
    """An ``unlearn_fn(original, forget_index) -> model`` running a registry method, for :meth:`ShadowPairs.statistics`.

    Each call builds the request of ``forget_index`` (:func:`forget_request`: D_F = those samples,
    D_R = the rest of ``dm``'s training pool, or none with ``use_remain=False``; class forgetting
    keeps ``dm``'s forget classes), wraps ``original`` in a LightningModule with the unlearning
    mixin (:func:`unlearnable`), seeds everything with ``seed`` and runs
    :func:`~lightning_unlearn.unlearning.unlearn` with ``hyperparameters``. The same request recipe
    as the benchmark's: the same ``seed`` for every shadow, which differ by original and forget set.

    Args:
        dm: the data module the shadows were trained on.
        method: a registry name (``"ft"``, ``"amun"``, ``"trw"``, ...).
        hyperparameters: the method's hyperparameters (``lr``, ``epochs``, ...); checked here.
        use_remain: give the method D_R (``False``: the "D_F only" setting).
        batch_size: the unlearning batch size (default ``dm.batch_size``).
        augmentation: the unlearning phase's augmentation (as ``UnlearningRequest.from_datamodule``).
        seed: the request's seed and the global seed before each run.
        trainer_kwargs: ``Trainer`` arguments (``accelerator``, ``devices``, ...).

    Raises:
        ValueError: an unknown method name; TypeError: unknown hyperparameter names.
    """
    hp = dict(hyperparameters or {})
    get_method(method).from_hyperparameters(**hp)  # unknown names fail now, not after the shadows' training
    resolve_augmentation(augmentation, dm.image_shape)

    def unlearn_fn(original: torch.nn.Module, forget_index: torch.Tensor) -> torch.nn.Module:
        request = forget_request(dm, forget_index, use_remain=use_remain, batch_size=batch_size, augmentation=augmentation, seed=seed)
        module = unlearnable(original, dm, seed=seed)
        seed_everything(int(seed))
        unlearn(module, method, request, trainer_kwargs=trainer_kwargs, **hp)
        return module.model.eval()

    return unlearn_fn


@dataclass
class ULiRAAudit:
    """The outcome of :func:`ulira_audit`.

    Attributes:
        values: ``{"balanced_accuracy", "auc", "tpr@<fpr>" ...}`` in percent (``ULiRA.compute()``).
        scores: per-record ``index``, ``model``, ``unlearned``, ``score`` (Λ) of the target records.
        shadow_unlearned, shadow_retrained: the shadow statistics (``(N, P)``, reusable).
    """

    values: dict[str, float]
    scores: dict[str, torch.Tensor]
    shadow_unlearned: torch.Tensor
    shadow_retrained: torch.Tensor


def ulira_audit(
    shadows: ShadowPairs,
    targets: ShadowPairs,
    unlearn_fn: UnlearnFn,
    *,
    variance: Variance = "auto",
    min_std: float = MIN_STD,
    tpr_fprs: Sequence[float] = (0.01, 0.001),
    batch_size: int = 512,
) -> ULiRAAudit:
    """U-LiRA of one unlearning procedure: fit on ``shadows``, attack the pairs of ``targets``.

    Target pair j gives two audited models: ``unlearn_fn(copy of targets.originals[j], F_j)``
    (unlearned, model id 2j) and ``targets.retrained[j]`` (retrained, model id 2j + 1), each scored
    on F_j: a balanced set of records. ``shadows`` and ``targets`` must share the training pool and
    the target pool (two :func:`~lightning_unlearn.audit.train_shadow_pairs` calls on one data
    module, with different seeds).

    Raises:
        ValueError: the two sets of pairs attack different examples.
    """
    if not torch.equal(shadows.target_index, targets.target_index) or not torch.equal(shadows.pool.index, targets.pool.index):
        raise ValueError("shadows and targets attack different target pools: train both with train_shadow_pairs on the same data module")
    shadow_unlearned, shadow_retrained = shadows.statistics(unlearn_fn, batch_size=batch_size)
    metric = ULiRA(shadow_unlearned, shadow_retrained, variance=variance, min_std=min_std, tpr_fprs=tpr_fprs)
    for j in range(targets.num_shadows):
        index = targets.forget_index(j)
        data = targets.pool.subset(positions_in(targets.pool.index, index))
        unlearned = unlearn_fn(copy.deepcopy(targets.originals[j]), index.clone())
        for model_id, net, is_unlearned in ((2 * j, unlearned, True), (2 * j + 1, targets.retrained[j], False)):
            logits, labels, idx = predict_logits(net, data, batch_size=batch_size)
            metric.update(logits, labels, idx, unlearned=is_unlearned, model_id=model_id)
        del unlearned
    values = {k: float(v) for k, v in metric.compute().items()}
    return ULiRAAudit(values, metric.last_scores or {}, shadow_unlearned, shadow_retrained)
