"""Top-k singular values of ``M`` by warm subspace iteration and by block Krylov, each with Rayleigh-Ritz.

Both work on ``A = M^T M`` through :class:`~lightning_unlearn.spectral.operator.Operator` and
return Ritz values ``sigma_i = sqrt(lambda_i)`` sorted in descending order, the Ritz vectors
(rows, orthonormal) and the residuals ``||A x_i - lambda_i x_i||``.

Note on the reference (PowerQR, ``Ali-E/FastClip``): it iterates on ``I + M^T M`` and reads
``sigma_i = sqrt(|R_ii - 1|)`` from the thin QR of the block. ``torch.linalg.qr`` returns a negative
``R_ii`` for about half of the inputs, and the formula then reads ``sqrt(2 + sigma^2)`` (1.73 for a
true 1.0). The identity shift also slows convergence to the rate ``(1 + s2^2) / (1 + s1^2)``. Here
QR only orthonormalises; every value comes from a Rayleigh-Ritz projection, never from ``R``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from lightning_unlearn.spectral.operator import Operator


class Ritz(NamedTuple):
    """Result of an estimator.

    Attributes:
        sigma: ``(k,)`` Ritz singular values, descending.
        vectors: ``(k, n)`` orthonormal right singular vector estimates (rows), same order.
        residuals: ``(k,)`` ``||A v_i - sigma_i^2 v_i||`` with ``A = M^T M``.
    """

    sigma: torch.Tensor
    vectors: torch.Tensor
    residuals: torch.Tensor


def orthonormalize(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal rows spanning the rows of ``x`` ``(k, n)`` (thin QR; signs irrelevant)."""
    q, _ = torch.linalg.qr(x.T)
    return q.T


def rayleigh_ritz(q: torch.Tensor, aq: torch.Tensor, k: int, h: torch.Tensor | None = None) -> Ritz:
    """Top-``k`` Ritz pairs of ``A`` on the orthonormal rows ``q`` ``(m, n)`` given ``aq = A q`` (rows).

    ``H = q A q^T`` (symmetrised; pass ``h`` when it is already known), ``H = W diag(lambda) W^T``
    (solved in float64 on the CPU: ``H`` is small); the Ritz vectors are ``W^T q``.
    """
    if h is None:
        h = q @ aq.T
    h = 0.5 * (h + h.T)
    lam, w = torch.linalg.eigh(h.detach().double().cpu())
    order = torch.argsort(lam, descending=True)[:k]
    lam, w = lam[order].to(device=q.device, dtype=q.dtype), w[:, order].to(device=q.device, dtype=q.dtype)
    vecs = w.T @ q
    avecs = w.T @ aq
    res = torch.linalg.vector_norm(avecs - lam[:, None] * vecs, dim=1)
    return Ritz(torch.sqrt(lam.clamp_min(0)), vecs, res)


def subspace_iteration(op: Operator, v: torch.Tensor, iters: int) -> Ritz:
    """``iters`` subspace iterations ``V <- orth(A V)`` from the rows of ``v`` ``(k, n)``, then Rayleigh-Ritz.

    Cost: ``k * (iters + 1)`` probe passes (one forward plus one adjoint each). Converges at the
    rate ``(sigma_{k+1} / sigma_i)^2`` per iteration; used for warm tracking between clip events.
    """
    k = v.shape[0]
    q = orthonormalize(v)
    for _ in range(max(0, iters)):
        q = orthonormalize(op.matmul(q))
    return rayleigh_ritz(q, op.matmul(q), k)


def tracking_step(op: Operator, v: torch.Tensor) -> Ritz:
    """One warm subspace-iteration step for tracking, at the cost of a single product ``A V``.

    The values are the Rayleigh-Ritz values on ``span(v)``; the returned vectors are the next
    iterate ``orth(A x_i)`` of the Ritz vectors ``x_i`` (in the same order), so repeated calls
    progress like subspace iteration while each costs ``k`` probe passes. Residuals refer to the
    Ritz vectors on ``span(v)``.
    """
    q = orthonormalize(v)
    aq = op.matmul(q)
    r = rayleigh_ritz(q, aq, q.shape[0])
    h = q @ aq.T
    lam, w = torch.linalg.eigh((0.5 * (h + h.T)).double())
    w = w[:, torch.argsort(lam, descending=True)].to(q.dtype)
    return Ritz(r.sigma, orthonormalize(w.T @ aq), r.residuals)


def block_krylov(op: Operator, v: torch.Tensor, depth: int, *, k: int | None = None) -> Ritz:
    """Block Krylov ``[V, AV, ..., A^depth V]`` with full re-orthogonalisation, then Rayleigh-Ritz.

    Each new block is projected out of the basis by classical Gram-Schmidt, with a second pass
    when the projection removed most of a row's norm (the "twice is enough" rule of Kahan and
    Parlett: a second pass restores the orthogonality lost to cancellation, and is only needed
    then), and orthonormalised by a QR that drops directions already in the basis (so small
    spaces, where the basis would exceed ``n``, stay well-posed). Resolving a gap ``delta`` at the
    top of the spectrum takes about ``1 / sqrt(delta)`` steps, versus ``1 / delta`` for subspace
    iteration: the right tool just after a clip, when the top is a flat cluster at the target.

    The projected matrix ``H = Q A Q^T`` is assembled from the first Gram-Schmidt coefficients
    (row block ``j`` of ``H`` is ``(A q_j) Q^T``, which that pass computes anyway) and
    symmetrised, so Rayleigh-Ritz costs no extra ``m x m x n`` product; the basis and its
    products live in preallocated buffers (no re-concatenation per step).

    Args:
        op: the operator.
        v: ``(b, n)`` start block (rows).
        depth: number of multiplications by ``A`` beyond the start block.
        k: number of Ritz pairs returned (default ``b``).

    Cost: ``b * (depth + 1)`` probe passes; memory ``2 * b * (depth + 1) * n`` floats.
    """
    k = v.shape[0] if k is None else k
    b = v.shape[0]
    n = op.n
    # Breakdown: if the start block spans an (almost) invariant subspace of A, e.g. the warm
    # vectors right after a dense layer's exact rank-k clip, A V adds no new direction and the
    # Krylov space would stall there, blind to a singular value just outside it. Dropped rows
    # are replaced by random vectors from a fixed local generator (deterministic, never the global
    # RNG), so every block keeps ``b`` directions; Rayleigh-Ritz is valid on any orthonormal basis.
    gen = torch.Generator().manual_seed(0x5EC7)
    first = _orth_rows(v, _max_row_norm(v))
    cap = max(first.shape[0], min(b * (max(0, depth) + 1), n))
    basis = torch.empty(cap, n, dtype=first.dtype, device=first.device)
    products = torch.empty(cap, n, dtype=first.dtype, device=first.device)
    lower_h = torch.zeros(cap, cap, dtype=torch.float64, device=first.device)  # H = lower_h + lower_h^T
    s, m = 0, first.shape[0]  # the newest block is basis[s:m]
    basis[:m] = first
    for step in range(max(0, depth) + 1):
        w = op.matmul(basis[s:m])
        products[s:m] = w
        q = basis[:m]
        c = w @ q.T  # row block of H, (A q_j) Q^T over the blocks built so far: also the first Gram-Schmidt pass
        lower_h[s:m, :s] = c[:, :s].double()
        lower_h[s:m, s:m] = 0.25 * (c[:, s:m] + c[:, s:m].T).double()  # symmetric diagonal block, counted once in lower_h + lower_h^T
        if step == depth or m >= n:
            break
        new = _orth_rows(_project_out(w, q, c), _max_row_norm(w))
        missing = min(b - new.shape[0], n - m - new.shape[0], cap - m - new.shape[0])
        if missing > 0:
            fill = torch.randn(missing, n, generator=gen).to(device=w.device, dtype=w.dtype)
            qn = torch.cat([q, new])
            new = torch.cat([new, _orth_rows(_project_out(fill, qn, fill @ qn.T), _max_row_norm(fill))])
        r = min(new.shape[0], cap - m)
        if r == 0:
            break
        basis[m : m + r] = new[:r]
        s, m = m, m + r
    h = lower_h[:m, :m]
    return rayleigh_ritz(basis[:m], products[:m], min(k, m), h=h + h.T)


def _max_row_norm(w: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(w, dim=1).max().clamp_min(torch.finfo(w.dtype).tiny)


def _project_out(w: torch.Tensor, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``w`` minus its projection on the orthonormal rows ``q``, given ``c = w q^T``.

    Classical Gram-Schmidt; a second pass runs when a row kept less than ``1/sqrt(2)`` of its
    norm (cancellation: the first pass's result is then not orthogonal to ``q`` to working
    precision).
    """
    before = torch.linalg.vector_norm(w, dim=1)
    w = w - c @ q
    if bool((torch.linalg.vector_norm(w, dim=1) < 0.7071 * before).any()):
        w = w - (w @ q.T) @ q
    return w


def _orth_rows(w: torch.Tensor, norm0: torch.Tensor) -> torch.Tensor:
    """Orthonormal rows spanning the rows of ``w``; a direction whose ``|R_ii|`` falls below
    ``1e-5 * norm0`` (the block's largest row norm before projection) lies (numerically) in the
    span already built and is dropped."""
    qq, r = torch.linalg.qr(w.T)
    keep = torch.diagonal(r).abs() > 1e-5 * norm0
    if bool(keep.all()):
        return qq.T
    return qq.T[keep]

