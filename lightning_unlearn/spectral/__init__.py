"""Spectral norms of implicitly linear layers and clipping them to a target (FastClip's functional core).

Public API: :func:`singular_values`, :func:`clip_`, the per-layer registry
(:func:`register_spectral`, :class:`LinearMap`, :func:`linear_map`), the solver settings
(:class:`ClipSettings`), the multi-layer clip event (:func:`clip_event`), tracking between events
(:func:`track_norms`), batch-norm gains (:func:`bn_gain`, :func:`clamp_bn_gain_`), the estimators, and
:class:`HostReadCounter` (host synchronisations of a block of tensor code, countable on CPU).
"""

from lightning_unlearn.spectral.batchnorm import bn_gain, clamp_bn_gain_
from lightning_unlearn.spectral.clip import ClipResult, clip_, clip_layer
from lightning_unlearn.spectral.estimators import Ritz, block_krylov, rayleigh_ritz, subspace_iteration
from lightning_unlearn.spectral.event import EventLayer, LayerOutcome, clip_event, outcomes_to_host, solver_kind
from lightning_unlearn.spectral.gauss_newton import excess_mask, excess_singular_values, gauss_newton_delta
from lightning_unlearn.spectral.host_reads import HostReadCounter
from lightning_unlearn.spectral.operator import Operator, full_precision
from lightning_unlearn.spectral.registry import (
    LinearMap,
    TensorSlot,
    UnsupportedLayerError,
    bn_scale,
    is_supported,
    linear_map,
    register_spectral,
)
from lightning_unlearn.spectral.settings import ClipSettings
from lightning_unlearn.spectral.svd import singular_values
from lightning_unlearn.spectral.tracking import Tracked, track_norms

__all__ = [
    "ClipResult",
    "ClipSettings",
    "EventLayer",
    "HostReadCounter",
    "LayerOutcome",
    "LinearMap",
    "Operator",
    "Ritz",
    "TensorSlot",
    "Tracked",
    "UnsupportedLayerError",
    "block_krylov",
    "bn_gain",
    "bn_scale",
    "clamp_bn_gain_",
    "clip_",
    "clip_event",
    "clip_layer",
    "excess_mask",
    "excess_singular_values",
    "full_precision",
    "gauss_newton_delta",
    "is_supported",
    "linear_map",
    "outcomes_to_host",
    "rayleigh_ritz",
    "register_spectral",
    "singular_values",
    "solver_kind",
    "subspace_iteration",
    "track_norms",
]
