"""Class similarity for TRW (library formulation, docs/methods/trw.md, section 1): plain functions.

The default estimator uses the rows of the classifier's final linear layer ``W`` ``(K, D)``
(bias ignored):

1. centre the rows, ``W~ = W - mean_k W_k`` (``center=True``): adding one vector to every row
   leaves every softmax unchanged, so the mean row carries no predictive information;
2. optionally project the rows onto the top-``d`` right singular vectors of ``W~`` (``pca_dim``);
3. ``cos_k = cos(w~_f, w~_k)``;
4. sharpen: ``s_k = exp(cos_k / tau) / sum_{j not forgotten} exp(cos_j / tau)`` for every
   class ``k`` that is not forgotten, ``s_k = 0`` on the forgotten classes (``tau = 0.1``).

The alternative ``"feature_centroids"`` replaces the rows by the mean penultimate feature of
each class (read by a forward hook on the final linear layer, or on a named module), then
applies the same steps 1-4.

Several forget classes ``F`` give one row of ``s`` per forget class: row ``i`` is the
similarity to ``F[i]``, sharpened over the classes outside ``F``. A forget-class input of class
``F[i]`` is tilted by row ``i``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_unlearn.data.forget import check_forget_classes
from lightning_unlearn.data.transforms import to_pixels
from lightning_unlearn.models.normalize import Normalizer, apply_normalizer

log = logging.getLogger(__name__)

SimilarityEstimator = Literal["logit_weights", "feature_centroids"]
SIMILARITY_ESTIMATORS = ("logit_weights", "feature_centroids")


def cosine_similarity_matrix(vectors: torch.Tensor, *, center: bool = True, pca_dim: int | None = None) -> torch.Tensor:
    """The raw class-similarity matrix: cosines between (centred, optionally projected) class vectors.

    Args:
        vectors: ``(K, D)`` one vector per class (final-layer rows or feature centroids).
        center: subtract the mean vector first (default ``True``).
        pca_dim: project onto the top-``d`` right singular vectors of the (centred) matrix,
            ``1 <= d <= K - 1`` with centring (its rank is at most ``K - 1``), ``<= min(K, D)``
            without; ``None`` (default) keeps all ``D`` dimensions.

    Returns:
        ``(K, K)`` symmetric matrix, entries in ``[-1, 1]``, ``float32`` on ``vectors``' device.
        A zero vector has cosine 0 with everything (its diagonal entry is 0 too).
    """
    if vectors.ndim != 2:
        raise ValueError(f"class vectors must be (K, D), got shape {tuple(vectors.shape)}")
    v = vectors.detach().double()
    k, d = v.shape
    if center:
        v = v - v.mean(dim=0, keepdim=True)
    if pca_dim is not None:
        limit = min(k - 1 if center else k, d)
        if not 1 <= pca_dim <= limit:
            raise ValueError(f"pca_dim must be in 1..{limit} for {k} classes of dimension {d} (center={center}), got {pca_dim}")
        # Right singular vectors of the (centred) class matrix; the projection keeps the
        # directions that separate the classes most.
        _, _, vh = torch.linalg.svd(v, full_matrices=False)
        v = v @ vh[:pca_dim].T
    norms = v.norm(dim=1, keepdim=True)
    unit = torch.where(norms > 1e-12, v / norms.clamp_min(1e-12), torch.zeros_like(v))
    cos = (unit @ unit.T).clamp(-1.0, 1.0)
    cos = 0.5 * (cos + cos.T)  # exact symmetry despite rounding
    return cos.float()


def sharpen_similarity(cosines: torch.Tensor, forget_classes: Sequence[int], *, tau: float = 0.1) -> torch.Tensor:
    """The sharpened similarity ``s``: a softmax with temperature over the classes kept.

    ``s[i, k] = exp(cos[f_i, k] / tau) / sum_{j not in F} exp(cos[f_i, j] / tau)`` for ``k`` not
    in ``F``, and ``s[i, k] = 0`` for ``k`` in ``F``.

    Args:
        cosines: ``(K, K)`` raw similarity matrix (:func:`cosine_similarity_matrix`).
        forget_classes: the forgotten classes ``F``.
        tau: temperature (default 0.1; small values amplify the small differences between the
            nearly equiangular class vectors of a trained classifier).

    Returns:
        ``(len(F), K)`` ``float32``; each row sums to one over the classes kept.
    """
    if cosines.ndim != 2 or cosines.shape[0] != cosines.shape[1]:
        raise ValueError(f"cosines must be a square (K, K) matrix, got shape {tuple(cosines.shape)}")
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau}")
    classes = check_forget_classes(forget_classes, cosines.shape[0])
    mask = forget_mask(classes, cosines.shape[0], device=cosines.device)
    scaled = cosines[list(classes)].double() / tau
    scaled = scaled.masked_fill(mask, float("-inf"))
    return torch.softmax(scaled, dim=1).float()


def forget_mask(forget_classes: Sequence[int], num_classes: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """``(K,)`` bool, ``True`` on the forgotten classes."""
    mask = torch.zeros(num_classes, dtype=torch.bool, device=device)
    mask[list(forget_classes)] = True
    return mask


def logit_weight_similarity(
    weight: torch.Tensor, forget_classes: Sequence[int], *, tau: float = 0.1, center: bool = True, pca_dim: int | None = None
) -> torch.Tensor:
    """``s`` from final-layer rows ``weight`` ``(K, D)`` (the default estimator, ``"logit_weights"``).

    Returns:
        ``(len(F), K)``: :func:`sharpen_similarity` of :func:`cosine_similarity_matrix`.
    """
    return sharpen_similarity(cosine_similarity_matrix(weight, center=center, pca_dim=pca_dim), forget_classes, tau=tau)


@torch.no_grad()
def feature_centroids(
    model: nn.Module,
    data: Dataset | DataLoader,
    num_classes: int,
    *,
    feature_module: nn.Module | None = None,
    max_per_class: int = 500,
    batch_size: int = 512,
    seed: int = 0,
    normalizer: Normalizer = None,
) -> torch.Tensor:
    """Mean penultimate feature per class over up to ``max_per_class`` inputs of each class.

    The features are read by a forward hook: the *input* of the model's final ``nn.Linear``
    (default), or the *output* of ``feature_module`` when given (for a model whose head is not
    an ``nn.Linear``). The model runs in eval mode (no BatchNorm update); its mode is restored.

    Args:
        model: takes ``[0, 1]`` pixels (``uint8`` inputs are converted), or ``normalizer(pixels)``.
        data: items ``(x, y, ...)``; a ``Dataset`` with a ``y`` tensor is subsampled per class
            with a seeded generator before any forward pass.
        num_classes: ``K``.

    Returns:
        ``(K, D)`` ``float32`` on the model's device; a class without inputs raises.
    """
    from lightning_unlearn.models.factory import final_linear

    if feature_module is None:
        _, head = final_linear(model)
        grab = "input"
    else:
        head, grab = feature_module, "output"
    device = next(model.parameters()).device
    if isinstance(data, Dataset) and hasattr(data, "y") and hasattr(data, "subset"):
        gen = torch.Generator().manual_seed(seed)
        keep = []
        for k in range(num_classes):
            pos = torch.nonzero(data.y == k).flatten()
            keep.append(pos[torch.randperm(len(pos), generator=gen)[:max_per_class]])
        data = data.subset(torch.cat(keep).sort().values)
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=batch_size, shuffle=False)
    captured: list[torch.Tensor] = []

    def hook(_module, args, output):
        feats = args[0] if grab == "input" else output
        captured.append(feats.detach().flatten(1).double())

    sums: torch.Tensor | None = None
    counts = torch.zeros(num_classes, dtype=torch.float64, device=device)
    handle = head.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        for batch in loader:
            x, y = batch[0].to(device), batch[1].to(device)
            room = (max_per_class - counts[y]).clamp_min(0)  # for loaders that were not subsampled
            captured.clear()
            model(apply_normalizer(normalizer, to_pixels(x)))
            feats = captured[-1]
            if sums is None:
                sums = torch.zeros(num_classes, feats.shape[1], dtype=torch.float64, device=device)
            for k in y.unique().tolist():
                sel = torch.nonzero(y == k).flatten()[: int(room[y == k][0].item())]
                sums[k] += feats[sel].sum(0)
                counts[k] += len(sel)
    finally:
        handle.remove()
        model.train(was_training)
    missing = [k for k in range(num_classes) if counts[k] == 0]
    if sums is None or missing:
        raise ValueError(f"feature centroids need inputs of every class; none for class(es) {missing or list(range(num_classes))}")
    return (sums / counts[:, None]).float()
