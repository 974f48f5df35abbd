"""lightning_unlearn: machine unlearning and Lipschitz control for PyTorch Lightning.

Public names (imported lazily, so ``import lightning_unlearn`` stays light and has no side
effects: nothing is printed, downloaded or configured):

- data and training: :class:`UnlearningDataModule`, :class:`IndexedSplits` (your own data),
  :func:`build_model`, :class:`Normalize`, :class:`ClassifierModule`, :func:`train_classifier`;
- FastClip: :class:`FastClip` (callback), its event record :class:`ClipRecord`, the solver
  settings :class:`ClipSettings`, :func:`singular_values`, :func:`clip_`;
- unlearning: :class:`UnlearningMixin`, :class:`AMUNMixin`, :class:`TRWMixin`,
  :class:`UnlearningRequest`, :func:`unlearn`, ``METHODS``, :func:`register_method`,
  :class:`UnlearningBatch`, :func:`pgd_l2_search`;
- audits: :class:`RMIA`, :class:`ULiRA`, :class:`MIAEfficacy`, :class:`MIANN`, :class:`MIANNRetrain`,
  :class:`SymmetricKL` (``FADE``), :class:`UnlearningAccuracy`; their models: :func:`train_reference_models`,
  :func:`train_shadow_pairs`, :func:`reference_signals` (your own reference models);
- the main job: :class:`BenchmarkConfig`, :func:`run_experiment`;
- seeds: :func:`derive_seed` (every derived seed of the library).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "UnlearningDataModule": "lightning_unlearn.data",
    "IndexedSplits": "lightning_unlearn.data",
    "Normalize": "lightning_unlearn.models",
    "build_model": "lightning_unlearn.models",
    "ClassifierModule": "lightning_unlearn.training",
    "train_classifier": "lightning_unlearn.training",
    "FastClip": "lightning_unlearn.callbacks",
    "ClipRecord": "lightning_unlearn.callbacks",
    "ClipSettings": "lightning_unlearn.spectral",
    "singular_values": "lightning_unlearn.spectral",
    "clip_": "lightning_unlearn.spectral",
    "UnlearningMixin": "lightning_unlearn.unlearning",
    "AMUNMixin": "lightning_unlearn.unlearning",
    "TRWMixin": "lightning_unlearn.unlearning",
    "UnlearningRequest": "lightning_unlearn.unlearning",
    "unlearn": "lightning_unlearn.unlearning",
    "METHODS": "lightning_unlearn.unlearning",
    "register_method": "lightning_unlearn.unlearning",
    "UnlearningBatch": "lightning_unlearn.unlearning",
    "pgd_l2_search": "lightning_unlearn.attacks",
    "RMIA": "lightning_unlearn.metrics",
    "ULiRA": "lightning_unlearn.metrics",
    "MIAEfficacy": "lightning_unlearn.metrics",
    "MIANN": "lightning_unlearn.metrics",
    "MIANNRetrain": "lightning_unlearn.metrics",
    "SymmetricKL": "lightning_unlearn.metrics",
    "FADE": "lightning_unlearn.metrics",
    "UnlearningAccuracy": "lightning_unlearn.metrics",
    "train_reference_models": "lightning_unlearn.audit",
    "train_shadow_pairs": "lightning_unlearn.audit",
    "reference_signals": "lightning_unlearn.inference",
    "BenchmarkConfig": "lightning_unlearn.pipeline",
    "run_experiment": "lightning_unlearn.pipeline",
    "derive_seed": "lightning_unlearn.seeding",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lightning_unlearn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
