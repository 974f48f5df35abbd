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


def rayleigh_ritz(q: torch.Tensor, aq: torch.Tensor, k: int) -> Ritz:
    """Top-``k`` Ritz pairs of ``A`` on the orthonormal rows ``q`` ``(m, n)`` given ``aq = A q`` (rows).

    ``H = q A q^T`` (symmetrised), ``H = W diag(lambda) W^T``; the Ritz vectors are ``W^T q``.
    """
    h = q @ aq.T
    h = 0.5 * (h + h.T)
    lam, w = torch.linalg.eigh(h.double())
    order = torch.argsort(lam, descending=True)[:k]
    lam, w = lam[order].to(q.dtype), w[:, order].to(q.dtype)
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

    Each new block is projected out of the basis twice (classical Gram-Schmidt twice, which
    restores orthogonality lost to rounding), then orthonormalised by an SVD that drops directions
    already in the basis (so small spaces, where the basis would exceed ``n``, stay well-posed).
    Resolving a gap ``delta`` at the top of the spectrum takes about ``1 / sqrt(delta)`` steps,
    versus ``1 / delta`` for subspace iteration: the right tool just after a clip, when the top
    is a flat cluster at the target.

    Args:
        op: the operator.
        v: ``(b, n)`` start block (rows).
        depth: number of multiplications by ``A`` beyond the start block.
        k: number of Ritz pairs returned (default ``b``).

    Cost: ``b * (depth + 1)`` probe passes; memory ``b * (depth + 1) * n`` floats.
    """
    k = v.shape[0] if k is None else k
    b = v.shape[0]
    # Breakdown: if the start block spans an (almost) invariant subspace of A, e.g. the warm
    # vectors right after a dense layer's exact rank-k clip, A V adds no new direction and the
    # Krylov space would stall there, blind to a singular value just outside it. Dropped columns
    # are replaced by random vectors from a fixed local generator (deterministic, never the global
    # RNG), so every block keeps ``b`` directions; Rayleigh-Ritz is valid on any orthonormal basis.
    gen = torch.Generator().manual_seed(0x5EC7)
    basis = [_orth_block(v, None)]
    products: list[torch.Tensor] = []
    total = basis[0].shape[0]
    for _ in range(max(0, depth)):
        w = op.matmul(basis[-1])
        products.append(w)
        if total >= op.n:
            break
        q = torch.cat(basis)
        new = _orth_block(w, q)
        missing = min(b - new.shape[0], op.n - total - new.shape[0])
        if missing > 0:
            fill = torch.randn(missing, op.n, generator=gen).to(device=w.device, dtype=w.dtype)
            new = torch.cat([new, _orth_block(fill, torch.cat([q, new]) if new.shape[0] else q)])
        if new.shape[0] == 0:
            break
        basis.append(new)
        total += new.shape[0]
    if len(products) < len(basis):
        products.append(op.matmul(basis[-1]))
    return rayleigh_ritz(torch.cat(basis), torch.cat(products), min(k, total))


def _orth_block(w: torch.Tensor, q: torch.Tensor | None) -> torch.Tensor:
    """Orthonormal rows spanning ``w`` minus its projection on the orthonormal rows ``q``.

    Classical Gram-Schmidt twice against ``q``, then a thin QR of the block; a column whose
    ``|R_ii|`` falls below ``1e-5`` of the block's largest input norm lies (numerically) in the
    span already built and is dropped.
    """
    norm0 = torch.linalg.vector_norm(w, dim=1).max().clamp_min(torch.finfo(w.dtype).tiny)
    if q is not None:
        for _ in range(2):
            w = w - (w @ q.T) @ q
    qq, r = torch.linalg.qr(w.T)
    keep = torch.diagonal(r).abs() > 1e-5 * norm0
    if bool(keep.all()):
        return qq.T
    return qq.T[keep]
