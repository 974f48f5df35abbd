"""Which Lightning strategies hold whole weights on every rank, and a clear refusal where they do not."""

from __future__ import annotations

from typing import Any

SHARDED_STRATEGY_MARKERS = ("FSDP", "DeepSpeed", "ModelParallel")


def shards_parameters(strategy: Any) -> bool:
    """True for strategies that shard parameters across ranks (FSDP, DeepSpeed, model parallel)."""
    name = type(strategy).__name__
    return any(marker in name for marker in SHARDED_STRATEGY_MARKERS)


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
