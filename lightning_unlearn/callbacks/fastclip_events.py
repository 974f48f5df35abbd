"""``ClipRecord``: the public record of what one FastClip event did to one layer."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ClipRecord:
    """One layer at one clip event of :class:`~lightning_unlearn.callbacks.FastClip`.

    Attributes:
        step: the optimizer step after which the event ran (``trainer.global_step``, 1-based).
        layer: the layer's qualified name in the LightningModule (``"conv+bn"`` for a composition).
        norm_before: top singular value estimated when the event started (a warm estimate: a
            lower bound of the true norm, exact for exactly solved layers).
        norm_after: top singular value after the event (certified or exact when ``certified``).
        certified: whether ``norm_after`` is certified, so that the true norm is at most
            ``max_norm * (1 + tol)``: always in the default mode, only on certified events with
            ``certify_every > 1``.
        seconds: wall time of the whole event (all layers, the host read included), the same
            on every record of one event.
        event: 1-based index of the event in the run.
        steps: Gauss-Newton steps that moved this layer.
        prescaled: whether the kernel was first scaled (every tracked value was above the threshold).
        fallback: whether the exact scaling fallback was applied.
        exact: whether the layer was solved exactly (dense eigendecomposition) rather than by Krylov.
        scale: the factor the kernel was multiplied by (prescale times fallback; 1.0 when only
            Gauss-Newton steps, or nothing, changed it): the values the steps did not move shrank by it.
    """

    step: int
    layer: str
    norm_before: float
    norm_after: float
    certified: bool
    seconds: float
    event: int
    steps: int = 0
    prescaled: bool = False
    fallback: bool = False
    exact: bool = False
    scale: float = 1.0

    def as_dict(self) -> dict:
        """The record as a plain dict (for JSON)."""
        return asdict(self)
