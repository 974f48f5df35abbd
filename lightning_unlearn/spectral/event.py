"""A clip event on many layers at once, with a fixed schedule and at most two host reads.

:func:`clip_event` brings every layer's operator norm to at most ``c (1 + tol)`` by the block
Gauss-Newton step of :mod:`~lightning_unlearn.spectral.clip`, in phases that run all layers before
moving on (so the Rayleigh-Ritz eigendecompositions of a phase are one batched call):

1. **Estimate**: block Krylov of ``est_depth`` from each layer's warm vectors (a cold layer uses
   ``init_depth`` from random vectors); small layers are decomposed exactly instead.
2. **Prescale** (optional, ``ClipSettings.prescale``, masked): a layer whose every tracked value
   exceeds ``c (1 + tol/2)`` has its kernel scaled by ``c (1 - headroom) / sigma_k`` first.
3. **Gauss-Newton** (masked): one step on the values above ``c (1 + tol/2)``; a layer with none is
   left bit-identical.
4. **Certify**: block Krylov of ``cert_depth`` from the warm vectors plus ``fresh`` normalised random
   vectors (exact for small layers).
5. With ``max_steps > 1``, **one decision read**: the layers the certification rejected by more
   than ``2 tol`` take the remaining steps and a second certification.
6. **Fallback** (masked): a layer still above ``c (1 + tol/2)`` has its kernel scaled by
   ``c (1 - headroom) / sigma_1`` of the certified estimate -- exact (``f`` is linear in the
   kernel), so the bound then holds.

Every iteration count is fixed, every per-layer decision inside a phase is a mask (``torch.where``,
no ``nonzero``, no ``.item()``), random vectors are drawn from the caller's generator on its device,
and all values to log come back in one transfer (:func:`outcomes_to_host`). An event therefore reads
the host once (twice with ``max_steps > 1``), whatever the number of layers.
With ``certify=False`` steps 4-6 are replaced by a re-estimate (with the fresh vectors) and a masked
scaling on it: cheaper, but the bound is then not certified, and the outcome says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from lightning_unlearn.spectral.dense import dense_shape, exact_spectrum
from lightning_unlearn.spectral.estimators import krylov_basis, rayleigh_ritz_many
from lightning_unlearn.spectral.gauss_newton import excess_mask, gauss_newton_delta
from lightning_unlearn.spectral.operator import Operator, full_precision
from lightning_unlearn.spectral.registry import LinearMap, UnsupportedLayerError
from lightning_unlearn.spectral.settings import ClipSettings


@dataclass
class EventLayer:
    """One layer of a clip event.

    Attributes:
        name: label for messages.
        lmap: the layer's :class:`~lightning_unlearn.spectral.LinearMap`.
        input_shape: per-sample input shape.
        vectors: ``(k, n)`` warm right singular vectors, or ``None`` for a cold start.
        tensor: the tensor to change (default ``lmap.clip_tensor``).
        kind: the solver, as :func:`solver_kind` returns it (``None``: decided here; callers that
            clip the same layer often cache it).
    """

    name: str
    lmap: LinearMap
    input_shape: tuple[int, ...]
    vectors: torch.Tensor | None = None
    tensor: str | None = None
    kind: str | None = None


class LayerOutcome(NamedTuple):
    """What an event did to one layer (tensors stay on the layer's device until :func:`outcomes_to_host`).

    Attributes:
        sigma: ``(k,)`` top singular values after the event, descending.
        vectors: ``(k, n)`` right singular vectors (the warm start of the next event).
        before: top singular value estimated when the event started (exact for exact layers).
        after: ``sigma[0]``.
        certified: whether ``after`` is certified (deep Krylov with fresh vectors, or exact).
        steps: Gauss-Newton steps that moved the layer.
        prescaled: whether the prescale was applied.
        fallback: whether the scaling fallback was applied.
        changed: whether the clipped tensor was written.
        exact: whether the layer was solved exactly (dense eigendecomposition).
        scale: the factor the kernel was multiplied by in all (prescale times fallback; 1 when
            only Gauss-Newton steps, or nothing, changed it): every singular value outside the
            ones the steps moved shrank by it.
    """

    sigma: torch.Tensor
    vectors: torch.Tensor
    before: torch.Tensor
    after: torch.Tensor
    certified: torch.Tensor
    steps: torch.Tensor
    prescaled: torch.Tensor
    fallback: torch.Tensor
    changed: torch.Tensor
    exact: bool
    scale: torch.Tensor


def to_host(t: torch.Tensor) -> list:
    """One explicit device-to-host transfer of ``t`` as (nested) Python numbers."""
    return t.detach().to("cpu", copy=True).tolist()


_COLUMNS = ("before", "after", "certified", "steps", "prescaled", "fallback", "changed", "scale")


def outcome_table(outcomes: Sequence[LayerOutcome]) -> torch.Tensor:
    """``(len(outcomes), 8)`` float64 on the layers' device: per layer ``before, after, certified, steps, prescaled, fallback, changed, scale``.

    No host read: :func:`outcome_rows` turns the table, once on the host, into dicts.
    """
    if not outcomes:
        return torch.zeros(0, len(_COLUMNS), dtype=torch.float64)
    dev = outcomes[0].before.device
    return torch.stack([torch.stack([getattr(o, c).to(dev, torch.float64).reshape(()) for c in _COLUMNS]) for o in outcomes])


def outcomes_to_host(outcomes: Sequence[LayerOutcome]) -> list[dict]:
    """Every logged number of every layer in one transfer: ``[{before, after, certified, steps, prescaled, fallback, changed, scale, exact}]``."""
    return outcome_rows(to_host(outcome_table(outcomes)), outcomes) if outcomes else []


def outcome_rows(rows: Sequence[Sequence[float]], outcomes: Sequence[LayerOutcome]) -> list[dict]:
    """The host rows of :func:`outcome_table` as dicts (flags as ``bool``, ``steps`` as ``int``, ``exact`` from ``outcomes``)."""
    out = []
    for o, row in zip(outcomes, rows):
        d = dict(zip(_COLUMNS, row))
        for c in ("certified", "prescaled", "fallback", "changed"):
            d[c] = bool(d[c])
        d["steps"] = int(d["steps"])
        d["exact"] = o.exact
        out.append(d)
    return out


# ----------------------------------------------------------------------------- solvers
class _Solver:
    """Per-layer state of an event: the operator, the current estimates and the flags."""

    exact = False

    def __init__(self, layer: EventLayer, settings: ClipSettings, max_norm: float, op: Operator) -> None:
        self.layer, self.name, self.s = layer, _clip_name(layer), settings
        self.op = op
        self.c = float(max_norm)
        self.thr = self.c * (1 + settings.tol / 2)
        self.target = self.c * (1 - settings.resolved_headroom)
        dev = self.op.device
        false = torch.zeros((), dtype=torch.bool, device=dev)
        self.steps = torch.zeros((), dtype=torch.int64, device=dev)
        self.prescaled, self.fallback, self.changed, self.certified = false, false, false, false
        self.scale = torch.ones((), device=dev)
        self.sigma = torch.zeros(0, device=dev)
        self.vectors = torch.zeros(0, self.op.n, device=dev)
        self.before = torch.zeros((), device=dev)

    # -- writes (masked: a false condition leaves the tensor bit-identical) --------------------
    def _write(self, cond: torch.Tensor, new: torch.Tensor) -> None:
        old = self.op.tensors[self.name]
        self.layer.lmap.write_(self.name, torch.where(cond, new, old))
        self.op.refresh()
        self.changed = self.changed | cond

    def _scale(self, cond: torch.Tensor, factor: torch.Tensor) -> None:
        cond = cond & torch.isfinite(factor) & (factor > 0)
        factor = torch.where(cond, factor, torch.ones_like(factor))
        self._write(cond, self.op.tensors[self.name] * factor)
        self.sigma = self.sigma * factor
        self.scale = self.scale * factor

    def prescale(self, k: int) -> None:
        top = self.sigma[: max(1, min(k, self.sigma.numel()))]
        cond = (top > self.thr).all() & (top.numel() > 0)
        self._scale(cond, self.target / top[-1])
        self.prescaled = self.prescaled | cond

    def fallback_scale(self) -> None:
        top = self.sigma[0]
        over = top > self.thr
        factor = torch.where(over, self.target / top, torch.ones_like(top))
        if self.s.two_sided:
            under = (~over) & (top < self.c * (1 - self.s.tol / 2)) & (top > 0)
            factor = torch.where(under, self.c / top, factor)
            over = over | under
        self._scale(over, factor)
        self.fallback = self.fallback | over

    def failing(self, far: bool = False) -> torch.Tensor:
        top = self.sigma[0]
        bad = top > (self.c * (1 + 2 * self.s.tol) if far else self.thr)
        if self.s.two_sided:
            bad = bad | ((top < self.c * (1 - self.s.tol / 2)) & (top > 0))
        return bad

    def gn_vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sigma, self.vectors

    def gn_step(self) -> None:
        sigma, vectors = self.gn_vectors()
        mask, excess = excess_mask(sigma, self.c, tol=self.s.tol, two_sided=self.s.two_sided, headroom=self.s.resolved_headroom)
        delta = gauss_newton_delta(self.op, self.name, vectors, excess, mask)
        moved = mask.any() & torch.isfinite(delta).all()
        self._write(moved, self.op.tensors[self.name] - delta)
        self.steps = self.steps + moved.to(self.steps.dtype)

    def outcome(self) -> LayerOutcome:
        k = self.s.k
        return LayerOutcome(self.sigma[:k], self.vectors[:k], self.before, self.sigma[0], self.certified, self.steps,
                            self.prescaled, self.fallback, self.changed, self.exact, self.scale)


class _KrylovSolver(_Solver):
    """Warm block Krylov estimates; certification by a deeper run with fresh vectors."""

    def start(self, generator: torch.Generator) -> bool:
        """Take the warm vectors (or draw random ones); returns whether the start is cold."""
        v = self.layer.vectors
        k = min(self.s.k, self.op.n)
        if v is None or tuple(v.shape) != (k, self.op.n):
            self.vectors = self.op.random_block(k, generator)
            return True
        v = v.to(self.op.device, torch.float32)
        self.vectors = torch.where(torch.isfinite(v), v, torch.zeros_like(v))  # a non-finite row is dropped as dependent
        return False

    def basis(self, depth: int, fresh: int = 0, generator: torch.Generator | None = None):
        v = self.vectors[: min(self.s.k, self.op.n)]
        if fresh:
            v = torch.cat([v, self.op.random_block(fresh, generator)])
        return krylov_basis(self.op, v, depth, keep_products=False)

    def receive(self, ritz) -> None:
        self.sigma, self.vectors = ritz.sigma, ritz.vectors


class _ExactSolver(_Solver):
    """Exact spectrum of the dense Jacobian; each estimate is a fresh eigendecomposition."""

    exact = True

    def start(self, generator: torch.Generator) -> bool:
        return False

    def refresh_exact(self, with_vectors: bool = True) -> None:
        spec = exact_spectrum(self.op, with_vectors=with_vectors, k=max(self.s.k, self.s.dense_k))
        self.sigma = spec.sigma
        if with_vectors:
            self.vectors = spec.vectors

    def gn_vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        kk = min(self.s.dense_k, self.sigma.numel())
        return self.sigma[:kk], self.vectors[:kk]

    def outcome(self) -> LayerOutcome:
        o = super().outcome()
        return o._replace(certified=torch.ones_like(o.certified))


class _MatrixSolver(_ExactSolver):
    """``nn.Linear``: the clipped tensor is the matrix, so one SVD update clips every value exactly.

    ``W <- W - sum_{i in A} (sigma_i - c') u_i v_i^T`` leaves the singular vectors and every other
    value unchanged and sets the moved ones to ``c'``: no re-estimate is needed afterwards.
    """

    def refresh_exact(self, with_vectors: bool = True) -> None:
        if self.sigma.numel() == 0:  # the SVD update keeps the vectors and sets the moved values: decompose once
            spec = exact_spectrum(self.op)
            self.sigma, self.vectors = spec.sigma, spec.vectors

    def gn_step(self) -> None:
        mask, excess = excess_mask(self.sigma, self.c, tol=self.s.tol, two_sided=self.s.two_sided, headroom=self.s.resolved_headroom)
        w = self.op.tensors[self.name]
        u = (self.vectors @ w.T) / self.sigma.clamp_min(1e-30)[:, None]  # u_i = W v_i / sigma_i
        delta = (u * excess[:, None]).T @ self.vectors
        moved = mask.any() & torch.isfinite(delta).all()
        self._write(moved, w - delta)
        self.sigma = torch.where(moved, self.sigma - excess, self.sigma)
        self.steps = self.steps + moved.to(self.steps.dtype)


def _clip_name(layer: EventLayer) -> str:
    name = layer.tensor or layer.lmap.clip_tensor
    if name is None or name not in layer.lmap.tensors:
        raise UnsupportedLayerError(
            f"layer {layer.name!r}: no tensor to clip: {name!r} (tensors: {', '.join(layer.lmap.tensors) or 'none'})"
        )
    return name


def solver_kind(lmap: LinearMap, input_shape: Sequence[int], settings: ClipSettings, tensor: str | None = None) -> str:
    """``"matrix"`` (a Linear: exact SVD update), ``"exact"`` (dense Jacobian) or ``"krylov"``.

    A layer is solved exactly when its dense Jacobian (or a Linear's weight) has at most
    ``settings.dense_max_entries`` entries and its smaller side at most ``settings.dense_max_rank``.
    """
    op = Operator(lmap, tuple(input_shape))
    rows, cols = dense_shape(op)
    if rows * cols > settings.dense_max_entries or min(rows, cols) > settings.dense_max_rank:
        return "krylov"
    if (tensor or lmap.clip_tensor) == lmap.clip_tensor and lmap.is_exact_matrix():
        return "matrix"
    return "exact"


_SOLVERS = {"matrix": None, "exact": None, "krylov": None}  # filled below


def _make_solver(layer: EventLayer, settings: ClipSettings, max_norm: float) -> _Solver:
    _clip_name(layer)
    kind = layer.kind or solver_kind(layer.lmap, layer.input_shape, settings, layer.tensor)
    return _SOLVERS[kind](layer, settings, max_norm, Operator(layer.lmap, layer.input_shape))


_SOLVERS.update(matrix=_MatrixSolver, exact=_ExactSolver, krylov=_KrylovSolver)


def _estimate(
    solvers: Sequence[_Solver], depths: Sequence[int], fresh: int, generator: torch.Generator, *, vectors: bool = True, wide: bool = True
) -> None:
    """One estimation phase: every Krylov layer's basis, one batched Rayleigh-Ritz, exact layers in place
    (``vectors=False``: exact layers refresh their values only, as a certification). Krylov layers
    keep ``k + fresh`` Ritz pairs (the next Gauss-Newton step may move them all), or ``k`` when
    not ``wide`` (no step follows: only the warm vectors are kept)."""
    kry = [(s, d) for s, d in zip(solvers, depths) if isinstance(s, _KrylovSolver)]
    bases = [s.basis(d, fresh, generator) for s, d in kry]
    for (s, _), r in zip(kry, rayleigh_ritz_many(bases, [s.s.k + (fresh if wide else 0) for s, _ in kry])):
        s.receive(r)
    for s in solvers:
        if isinstance(s, _ExactSolver):
            s.refresh_exact(with_vectors=vectors)


def clip_event(
    layers: Sequence[EventLayer],
    max_norm: float,
    settings: ClipSettings,
    generator: torch.Generator,
    *,
    certify: bool = True,
    fresh: bool = True,
) -> list[LayerOutcome]:
    """Clip every layer's top singular values to ``max_norm`` (see the module notes for the phases).

    Args:
        layers: the layers, with their warm vectors.
        max_norm: the target ``c``.
        settings: solver settings.
        generator: source of random vectors (on the layers' device, ideally).
        certify: certify the result (default); ``False`` ends with a warm re-estimate and a
            masked scaling on it, uncertified.
        fresh: append ``settings.fresh`` random vectors to the certification. A layer with no warm
            vectors opens with a Krylov run of depth ``settings.init_depth`` from random vectors.

    Returns:
        One :class:`LayerOutcome` per layer, in order. In the default mode every layer's true
        norm is then at most ``c (1 + tol)``: certified by a Krylov run whose top value is at most
        ``c (1 + tol/2)``, exact for small layers, or enforced by the exact scaling fallback.

    Host reads: one (which layers the first certification rejected), only when
    ``settings.max_steps > 1``; none with ``certify=False``.
    """
    s = settings
    with torch.no_grad(), full_precision():
        solvers = [_make_solver(layer, s, max_norm) for layer in layers]
        cold = [sv.start(generator) for sv in solvers]
        n_fresh = s.resolved_fresh if fresh else 0
        # Without a certification the estimates are all there is: they take the fresh vectors
        # and one more step, to see directions that rose from outside the warm block.
        open_fresh, est = (0, s.est_depth) if certify else (n_fresh, s.est_depth + 1)
        _estimate(solvers, [s.init_depth if c else est for c in cold], open_fresh, generator)
        for sv in solvers:
            sv.before = sv.sigma[0] if sv.sigma.numel() else sv.before
            if s.prescale and not isinstance(sv, _MatrixSolver):
                sv.prescale(sv.sigma.numel() if not sv.exact else s.dense_k)
        first = min(1, s.max_steps)
        if first:
            for sv in solvers:
                sv.gn_step()
        if not certify:
            _estimate(solvers, [est] * len(solvers), open_fresh, generator)
            for sv in solvers:
                sv.fallback_scale()
            return [sv.outcome() for sv in solvers]
        est = [s.est_depth] * len(solvers)
        cert = [s.cert_depth] * len(solvers)
        _estimate(solvers, cert, n_fresh, generator, vectors=False, wide=s.max_steps > first)
        active = list(solvers)
        rest = s.max_steps - first
        if rest > 0:
            # The one decision read: which layers take more Gauss-Newton steps: those whose
            # certified top value is more than 2 tol above c. A layer rejected by less is rescaled
            # at once (every value shrinks by a factor of at least (1 - headroom) / (1 + 2 tol)):
            # another step and its certification would cost as much as the whole first round.
            rejected = to_host(torch.stack([sv.failing(far=True) for sv in solvers]))
            active = [sv for sv, bad in zip(solvers, rejected) if bad]
            for sv, bad in zip(solvers, rejected):
                if not bad:
                    sv.fallback_scale()
            for sv in active:
                if isinstance(sv, _ExactSolver):
                    sv.refresh_exact()  # the certification kept values only; the steps need vectors
            for i in range(rest):
                for sv in active:
                    sv.gn_step()
                last = i == rest - 1
                _estimate(active, cert if last else est[: len(active)], n_fresh if last else 0, generator, vectors=not last)
        for sv in active:
            sv.fallback_scale()
        for sv in solvers:
            sv.certified = torch.ones_like(sv.certified)
        return [sv.outcome() for sv in solvers]
