"""Which Lightning strategies hold whole weights on every rank, and a clear refusal where they do not.

A strategy shards parameters when it is an instance of one of :data:`SHARDING_STRATEGIES`:
Lightning's ``FSDPStrategy``, ``DeepSpeedStrategy`` and ``ModelParallelStrategy`` (and their
subclasses), each imported only if the installed Lightning has it. ``DeepSpeedStrategy``
derives from ``DDPStrategy``, so the check is by type, never by the strategy's name: a user's
own ``DDPStrategy`` subclass holds whole weights, a subclass of ``FSDPStrategy`` does not.
"""

from __future__ import annotations

import importlib
from typing import Any

_SHARDING_CLASS_PATHS = (
    ("lightning.pytorch.strategies", "FSDPStrategy"),
    ("lightning.pytorch.strategies", "DeepSpeedStrategy"),
    ("lightning.pytorch.strategies", "ModelParallelStrategy"),
)


def _import_sharding_strategies() -> tuple[type, ...]:
    """The sharding strategy classes the installed Lightning provides (an older Lightning may lack one)."""
    found = []
    for module_name, class_name in _SHARDING_CLASS_PATHS:
        try:
            found.append(getattr(importlib.import_module(module_name), class_name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


#: the Lightning strategy classes that shard parameters across ranks
SHARDING_STRATEGIES: tuple[type, ...] = _import_sharding_strategies()


def shards_parameters(strategy: Any) -> bool:
    """True for an instance of a strategy that shards parameters across ranks (FSDP, DeepSpeed, model parallel).

    Example:
        >>> from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy
        >>> shards_parameters(FSDPStrategy()), shards_parameters(DDPStrategy())
        (True, False)
    """
    return isinstance(strategy, SHARDING_STRATEGIES)


def require_whole_weights(strategy: Any, what: str) -> None:
    """Raise ``RuntimeError`` naming ``what`` and the strategy when ``strategy`` shards parameters.

    FastClip, AMUN's attack, saliency masks, frozen snapshots and class similarities all read
    whole weight tensors; under a sharding strategy each rank holds a slice only.
    """
    if shards_parameters(strategy):
        raise RuntimeError(
            f"{what} needs whole (unsharded) weights on every rank, but strategy {type(strategy).__name__} shards parameters; "
            "use strategy='ddp' (or 'ddp_spawn')"
        )
