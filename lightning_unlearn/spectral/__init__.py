"""Spectral norms of implicitly linear layers and clipping them to a target (FastClip's functional core).

Public API: :func:`singular_values`, :func:`clip_`, the per-layer registry
(:func:`register_spectral`, :class:`LinearMap`, :func:`linear_map`) and the estimators.
"""

from lightning_unlearn.spectral.clip import ClipResult, clip_, clip_layer, excess_singular_values, gauss_newton_delta
from lightning_unlearn.spectral.estimators import Ritz, block_krylov, rayleigh_ritz, subspace_iteration
from lightning_unlearn.spectral.operator import Operator
from lightning_unlearn.spectral.registry import (
    LinearMap,
    UnsupportedLayerError,
    bn_scale,
    is_supported,
    linear_map,
    register_spectral,
)
from lightning_unlearn.spectral.svd import singular_values

__all__ = [
    "ClipResult",
    "LinearMap",
    "Operator",
    "Ritz",
    "UnsupportedLayerError",
    "block_krylov",
    "bn_scale",
    "clip_",
    "clip_layer",
    "excess_singular_values",
    "gauss_newton_delta",
    "is_supported",
    "linear_map",
    "rayleigh_ritz",
    "register_spectral",
    "singular_values",
    "subspace_iteration",
]
