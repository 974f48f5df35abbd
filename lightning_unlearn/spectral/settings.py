"""``ClipSettings``: every knob of the clip solver in one validated, immutable object."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ClipSettings:
    """Solver settings of a clip event (:func:`~lightning_unlearn.spectral.clip_event`).

    A clip event on a layer with target ``c`` estimates its top singular values, moves the ones
    above ``c (1 + tol/2)`` down by block Gauss-Newton steps aimed at ``c (1 - headroom)``, and
    certifies the result with a deeper block Krylov run; the bound it then guarantees is
    ``sigma_1 <= c (1 + tol)``. The defaults were chosen on CIFAR-10 training
    (``benchmarks/fastclip_training.py --check-events``; docs/fastclip.md, sections 4 and 6).

    The fields up to ``init_depth`` shape one event (:func:`~lightning_unlearn.spectral.clip_event`,
    and so :func:`~lightning_unlearn.spectral.clip_`); ``fresh_every``, ``certify_every`` and
    ``track_iters`` shape a run of events and the tracking between them, and only
    :class:`~lightning_unlearn.callbacks.FastClip` reads them.

    Attributes:
        k: singular directions tracked per layer (the warm block; default 4).
        tol: relative tolerance of the bound (default 0.01).
        headroom: Gauss-Newton steps, the prescale and the fallback aim the values they move at
            ``c (1 - headroom)`` (``0 <= headroom < tol``; ``None``: ``tol / 2``). A top cluster
            pinned exactly at ``c`` keeps surfacing values just above ``c (1 + tol/2)`` as SGD
            rotates neighbouring directions in; a little headroom clears it in fewer steps.
        two_sided: also raise a top value below ``c (1 - tol/2)`` to ``c``.
        est_depth: block Krylov depth of the opening estimate and of re-estimates (default 1;
            0 is a Rayleigh-Ritz step on the warm vectors alone): it only aims the Gauss-Newton
            step, the certification decides.
        cert_depth: block Krylov depth of the certification (default 12). Resolving a value
            ``delta`` above the flat cluster left at ``c`` takes about ``1/sqrt(delta)`` steps.
        fresh: N(0, 1) vectors (normalised) appended to the warm block of every certification
            (``None``: ``k``): a direction SGD lifted from low in the spectrum has almost no
            component in the warm vectors, and a warm-only certification can miss it.
        max_steps: Gauss-Newton steps per event before the exact scaling fallback (default 1:
            one step, the certification, and for a layer it rejects the fallback, which scales
            the kernel by ``c (1 - headroom) / sigma_1`` of the certified estimate). With
            ``max_steps > 1`` a layer rejected by more than ``2 tol`` takes the other steps and a
            second certification first (one host read more per event): fewer rescaled layers,
            at about twice the cost of an event that needs them.
        prescale: when every tracked value exceeds ``c (1 + tol/2)`` (many values rose above
            ``c``), first scale the kernel by ``c (1 - headroom) / sigma_k``, exactly, then move the
            rest by Gauss-Newton (default ``False``: on CIFAR-10 SmallCNN training it shrank the
            kernels more than the fallback does and cost test accuracy, for no saving; see
            ``benchmarks/results/fastclip_training.md``).
        dense_max_entries: layers whose dense Jacobian (``in x out`` numbers; a Linear's weight)
            has at most this many entries, and whose smaller side is at most ``dense_max_rank``,
            are solved exactly (eigendecomposition of the smaller Gram matrix) instead of by
            Krylov (default ``2**18``).
        dense_max_rank: see ``dense_max_entries`` (default 256: the eigendecomposition costs
            ``O(rank^3)``, and up to about this rank it was cheaper than a certified Krylov event on a CPU).
        dense_k: at most this many singular values of an exactly solved layer move per
            Gauss-Newton step (default 32).
        init_depth: block Krylov depth of the opening estimate of a layer with no warm vectors
            (default 20: ``k (init_depth + 1)`` probe passes, once per layer and run).
        fresh_every: append the ``fresh`` random vectors to the certification of every this many
            events (default 1: every event; 0: never). The warm vectors span the directions
            clipped at the previous event; a direction that SGD lifted from lower in the
            spectrum has almost no component in them, and a warm-only certification can miss it
            (the cost of rarer fresh vectors is in docs/fastclip.md, section 4).
        certify_every: certify the first event and every this many after it (default 1: all).
            The others end with a warm re-estimate and a scaling on it: cheaper, uncertified
            (the true norm may exceed ``c (1 + tol)`` until the next certified event; each
            :class:`~lightning_unlearn.callbacks.ClipRecord` says which kind of event it was).
        track_iters: warm subspace-iteration steps per layer at each tracking call between
            events (default 1: ``k`` probe passes per layer; 0: no tracking, and no ``sigma``
            logged between events).
    """

    k: int = 4
    tol: float = 0.01
    headroom: float | None = None
    two_sided: bool = False
    est_depth: int = 1
    cert_depth: int = 12
    fresh: int | None = None
    max_steps: int = 1
    prescale: bool = False
    dense_max_entries: int = 2**18
    dense_max_rank: int = 256
    dense_k: int = 32
    init_depth: int = 20
    fresh_every: int = 1
    certify_every: int = 1
    track_iters: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k must be a positive int, got {self.k!r}")
        if not (isinstance(self.tol, (int, float)) and 0 < self.tol < 1):
            raise ValueError(f"tol must be in (0, 1), got {self.tol!r}")
        if self.headroom is not None and not (0.0 <= self.headroom < self.tol):
            raise ValueError(f"headroom must be in [0, tol={self.tol}), got {self.headroom!r}")
        if not isinstance(self.cert_depth, int) or self.cert_depth < 1:
            raise ValueError(f"cert_depth must be a positive int, got {self.cert_depth!r}")
        for name in ("est_depth", "max_steps", "dense_max_entries", "dense_max_rank", "init_depth", "fresh_every", "track_iters"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, int) or val < 0:
                raise ValueError(f"{name} must be a non-negative int, got {val!r}")
        if self.fresh is not None and (not isinstance(self.fresh, int) or self.fresh < 0):
            raise ValueError(f"fresh must be None or a non-negative int, got {self.fresh!r}")
        for name in ("dense_k", "certify_every"):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be a positive int, got {val!r}")

    @property
    def resolved_headroom(self) -> float:
        """``headroom``, with ``None`` resolved to ``tol / 2``."""
        return self.tol / 2 if self.headroom is None else float(self.headroom)

    @property
    def resolved_fresh(self) -> int:
        """``fresh``, with ``None`` resolved to ``k``."""
        return self.k if self.fresh is None else int(self.fresh)

    def certifies(self, event: int) -> bool:
        """Whether clip event ``event`` (1-based) of a run is certified: the first and every ``certify_every``-th after it."""
        return (event - 1) % self.certify_every == 0

    def adds_fresh(self, event: int) -> bool:
        """Whether clip event ``event`` (1-based) appends ``fresh`` random vectors to its certification (every ``fresh_every``-th)."""
        return self.fresh_every > 0 and event % self.fresh_every == 0

    def replace(self, **changes) -> "ClipSettings":
        """A copy with ``changes`` applied (validated); ``None`` values are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def validate_max_norm(max_norm: float) -> float:
    if isinstance(max_norm, bool) or not (isinstance(max_norm, (int, float)) and math.isfinite(max_norm) and max_norm > 0):
        raise ValueError(f"max_norm must be a positive finite number, got {max_norm!r}")
    return float(max_norm)
