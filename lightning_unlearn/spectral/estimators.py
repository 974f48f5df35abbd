"""Top-k singular values of ``M`` by block Krylov and by subspace iteration, each with Rayleigh-Ritz.

Both work on ``A = M^T M`` through :class:`~lightning_unlearn.spectral.operator.Operator` and
return Ritz values ``sigma_i = sqrt(lambda_i)`` sorted in descending order, the Ritz vectors
(rows, unit norm) and the residuals ``||A x_i - lambda_i x_i||``.

**Never above the spectrum.** A Ritz value is the Rayleigh quotient ``x^T A x / x^T x`` of a
vector of the basis' span, so it can never exceed ``lambda_1`` -- provided the projected
problem is formed for the basis actually stored. When a basis loses orthogonality (rank
deficiency: a start block larger than the operator's dimension, a Krylov space that fills the
whole space, an invariant subspace) and the projection assumes orthonormal rows anyway,
"Ritz values" above ``sigma_1`` appear. Here:

- the number of Krylov blocks is capped so the basis never has more rows than the operator's
  dimension, and a start block is cut to that dimension;
- each new block is projected out of the basis twice (classical Gram-Schmidt, "twice is
  enough"), rows that kept less than ``1e-4`` of their norm are zeroed (masks, no
  data-dependent shapes), and the block is orthonormalised by Cholesky-QR twice;
- Rayleigh-Ritz solves the *generalised* problem ``H c = lambda S c`` with ``H = Q A Q^T`` and
  the basis' own Gram matrix ``S = Q Q^T``: a Cholesky factor of ``S`` whitens the basis, and
  rows that depend on earlier ones (pivot below 0.1) are dropped first. Whatever is left of a
  loss of orthogonality is then accounted for, not mistaken for spectrum.

**No host synchronisation.** Iteration counts are fixed, decisions are masks, and the only
LAPACK calls that check an error flag (``eigh``) are batched over all layers of a phase by
:func:`rayleigh_ritz_many`; ``cholesky_ex`` and triangular solves do not check.

Note on the reference (PowerQR, ``Ali-E/FastClip``): it iterates on ``I + M^T M`` and reads
``sigma_i = sqrt(|R_ii - 1|)`` from the thin QR of the block. ``torch.linalg.qr`` returns a negative
``R_ii`` for about half of the inputs, and the formula then reads ``sqrt(2 + sigma^2)`` (1.73 for a
true 1.0). The identity shift also slows convergence to the rate ``(1 + s2^2) / (1 + s1^2)``. Here
no value is read from a QR factor; every value comes from a Rayleigh-Ritz projection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from lightning_unlearn.spectral.operator import Operator

_DROP_ROW = 1e-4  # a projected row keeping less than this fraction of its norm lies in the span already built
_DROP_PIVOT = 0.1  # a basis row whose distance to the span of the rows before it is below sqrt(0.1) is dropped


class Ritz(NamedTuple):
    """Result of an estimator.

    Attributes:
        sigma: ``(k,)`` Ritz singular values, descending.
        vectors: ``(k, n)`` right singular vector estimates (rows, unit norm; a zero row where
            the basis had fewer than ``k`` independent directions), same order.
        residuals: ``(k,)`` ``||A v_i - sigma_i^2 v_i||`` with ``A = M^T M``.
    """

    sigma: torch.Tensor
    vectors: torch.Tensor
    residuals: torch.Tensor


class KrylovBasis(NamedTuple):
    """A basis of ``m`` rows and what Rayleigh-Ritz needs from it.

    Attributes:
        q: ``(m, n)`` basis rows (unit or zero).
        aq: ``(m, n)`` the rows ``A q_i``, or ``None`` when not kept (then no residuals).
        h: ``(m, m)`` float64 ``Q A Q^T``, symmetric (for a block Lanczos basis, the block
            tridiagonal projection of the three-term recurrence).
        s: ``(m, m)`` float64 ``Q Q^T``, or ``None`` for a basis orthonormal by construction
            (then only its zero rows are accounted for).
    """

    q: torch.Tensor
    aq: torch.Tensor | None
    h: torch.Tensor
    s: torch.Tensor | None = None


# ----------------------------------------------------------------------------- orthonormalisation
def _cholqr(
    w: torch.Tensor, keep: torch.Tensor, *, pivot: float = 1e-4, min_norm: torch.Tensor | float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``w`` ``(b, n)`` orthonormalised by Cholesky-QR; rows not kept come out zero.

    The Gram matrix is scaled to a unit diagonal and factorised in float64. A first
    ``cholesky_ex`` (no error check, no host read) finds the rows that depend on earlier rows of
    the block: a pivot ``L_ii^2`` below ``pivot`` (``1e-4``: the row keeps less than 1% of its
    norm outside the span of the rows before it; a ``1e-6`` shift keeps that first factorisation
    definite, above the float32 rounding of the Gram matrix). Those are masked out before the
    factorisation used, so every row that comes out is either zero or a unit vector. The
    triangular factor is inverted once (``b x b``) and applied as a matrix product.

    Rows whose norm is at most ``min_norm`` (a number or one per row) are not kept either.

    Returns:
        ``(rows, keep)``: the orthonormalised rows and the mask of the rows kept.
    """
    g = (w @ w.T).double()
    # (a Python number stays a scalar operand: turning it into a device tensor would be a host-to-device copy)
    keep = keep & (g.diagonal() > (min_norm * min_norm if isinstance(min_norm, (int, float)) else min_norm.square()))
    d = torch.where(keep, g.diagonal().clamp_min(1e-300).rsqrt(), 0.0)  # zero for rows not kept
    chol, _ = torch.linalg.cholesky_ex(g * torch.outer(d, d) + torch.where(keep, 1e-6, 1.0).diag())
    keep = keep & (chol.diagonal().square() > pivot)
    d = torch.where(keep, d, 0.0)
    chol, _ = torch.linalg.cholesky_ex(g * torch.outer(d, d) + (~keep).double().diag())
    # L^{-1} diag(d): a row not kept has an identity row in L and d_i = 0, so it comes out zero
    inv = torch.linalg.solve_triangular(chol, d.diag(), upper=False)
    return inv.to(w.dtype) @ w, keep


def _orth_block(w: torch.Tensor, qs: Sequence[torch.Tensor] = (), cs: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """Orthonormal rows spanning the part of ``w`` ``(b, n)`` outside the rows of the blocks ``qs``.

    Block classical Gram-Schmidt with re-orthogonalisation (BCGS2): project out of every block
    of ``qs`` (with ``cs[i] = w qs[i]^T`` when already known: block Krylov computes them for
    ``H``), zero the rows that kept less than ``1e-4`` of their norm, orthonormalise the block by
    rank-revealing Cholesky-QR; then project and orthonormalise once more ("twice is enough").
    """
    ref = torch.linalg.vector_norm(w, dim=1).double()
    for i, q in enumerate(qs):
        w = torch.addmm(w, cs[i] if cs is not None else w @ q.T, q, alpha=-1)
    y, keep = _cholqr(w, torch.ones_like(ref, dtype=torch.bool), min_norm=_DROP_ROW * ref)
    # Second pass. The rows are unit now; one that loses half its norm to the projection was
    # rounding noise of a dependent row, amplified by the normalisation: drop it.
    for q in qs:
        y = torch.addmm(y, y @ q.T, q, alpha=-1)
    return _cholqr(y, keep, pivot=0.1, min_norm=0.5)[0]


def orthonormalize(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal rows spanning the rows of ``x`` ``(k, n)`` (dependent rows come out zero)."""
    return _orth_block(x)


# ----------------------------------------------------------------------------- Rayleigh-Ritz
def _pad(t: torch.Tensor, m: int) -> torch.Tensor:
    p = m - t.shape[-1]
    return torch.nn.functional.pad(t, (0, p, 0, p)) if p else t


def rayleigh_ritz_many(bases: Sequence[KrylovBasis], ks: Sequence[int] | int) -> list[Ritz]:
    """Top-``k`` Ritz triplets on each basis, with one batched ``eigh`` for all of them.

    A basis orthonormal by construction (``s=None``: block Krylov, tracking) only has its zero
    rows accounted for. Otherwise, for basis ``Q`` with ``H = Q A Q^T`` and ``S = Q Q^T``
    (float64): rows whose squared distance to
    the span of the rows before them (the pivots of a Cholesky factor of ``S``) is below 0.1 are
    dropped, ``S = L L^T`` on the rest, ``L^{-1} H L^{-T} = Y diag(lambda) Y^T``, and the Ritz
    vectors are ``(L^{-T} Y)^T Q``: unit vectors of ``span(Q)`` whose Rayleigh quotients are the
    ``lambda`` (so never above ``lambda_1(A)``, whatever ``Q``'s orthogonality). Bases of
    different sizes are zero-padded (padded rows are dropped like dependent ones).
    """
    if isinstance(ks, int):
        ks = [ks] * len(bases)
    if not bases:
        return []
    m = max(b.q.shape[0] for b in bases)
    h = torch.stack([_pad(b.h, m) for b in bases])
    if all(b.s is None for b in bases):
        # Bases orthonormal by construction (Krylov, tracking): S is diagonal, 1 on the kept rows
        # and 0 on the dropped ones, and the generalised problem is a diagonal rescaling.
        d = torch.stack([torch.nn.functional.pad((b.q * b.q).sum(1).double(), (0, m - b.q.shape[0])) for b in bases])
        live = (d > 0.25) & (d < 4.0)
        dinv = torch.where(live, d.clamp_min(1e-300).rsqrt(), 0.0)
        hr = h * dinv[:, :, None] * dinv[:, None, :]
        lam, y = torch.linalg.eigh(0.5 * (hr + hr.transpose(1, 2)))  # ascending; the one LAPACK call with an error check
        coefs = [dinv[i, : b.q.shape[0], None] * y[i, : b.q.shape[0], -min(k, b.q.shape[0]) :].flip(1) for i, (b, k) in enumerate(zip(bases, ks))]
    else:
        s = torch.stack([_pad(b.s if b.s is not None else torch.diag((b.q * b.q).sum(1).double()), m) for b in bases])
        eye = torch.eye(m, dtype=s.dtype, device=s.device)
        diag = s.diagonal(dim1=1, dim2=2)
        zero = (diag < 0.25) | (diag > 4.0)  # zero rows (masked, padded); basis rows are unit otherwise
        live = (~zero).double()
        s1 = s * live[:, :, None] * live[:, None, :] + torch.diag_embed(zero.double())
        l1, _ = torch.linalg.cholesky_ex(s1 + 1e-12 * eye)
        drop = zero | (l1.diagonal(dim1=1, dim2=2) ** 2 < _DROP_PIVOT)
        live = (~drop).double()
        s2 = s * live[:, :, None] * live[:, None, :] + torch.diag_embed(drop.double())
        l2, _ = torch.linalg.cholesky_ex(s2)
        h2 = h * live[:, :, None] * live[:, None, :]
        x = torch.linalg.solve_triangular(l2, h2, upper=False)  # L^{-1} H
        hr = torch.linalg.solve_triangular(l2, x.transpose(1, 2), upper=False)  # L^{-1} (L^{-1} H)^T = L^{-1} H L^{-T}
        lam, y = torch.linalg.eigh(0.5 * (hr + hr.transpose(1, 2)))  # ascending; the one LAPACK call with an error check
        coefs = []
        for i, (b, k) in enumerate(zip(bases, ks)):
            mi, kk = b.q.shape[0], min(k, b.q.shape[0])
            coef = torch.linalg.solve_triangular(l2[i].T, y[i, :, -kk:].flip(1), upper=True)  # L^{-T} Y
            coefs.append((coef * live[i, :, None])[:mi])  # a dropped row never enters a Ritz vector
    out = []
    for i, (b, coef) in enumerate(zip(bases, coefs)):
        lam_k = lam[i, -coef.shape[1] :].flip(0)
        cf = coef.to(b.q.dtype)
        vecs = cf.T @ b.q
        lam_f = lam_k.to(b.q.dtype)
        if b.aq is not None:
            res = torch.linalg.vector_norm(cf.T @ b.aq - lam_f[:, None] * vecs, dim=1)
        else:
            res = torch.full_like(lam_f, float("nan"))
        out.append(Ritz(torch.sqrt(lam_f.clamp_min(0)), vecs, res))
    return out


def rayleigh_ritz(q: torch.Tensor, aq: torch.Tensor, k: int, h: torch.Tensor | None = None) -> Ritz:
    """Top-``k`` Ritz triplets of ``A`` on the rows ``q`` ``(m, n)`` given ``aq = A q`` (rows).

    ``H = q A q^T`` (symmetrised; pass ``h`` when it is already known). ``q`` need not be
    orthonormal: its Gram matrix is formed and accounted for (see :func:`rayleigh_ritz_many`).
    """
    if h is None:
        h = (q @ aq.T).double()
    h = 0.5 * (h + h.T)
    return rayleigh_ritz_many([KrylovBasis(q, aq, h, (q @ q.T).double())], k)[0]


# ----------------------------------------------------------------------------- block Krylov
def krylov_steps(n: int, b: int, depth: int) -> int:
    """Blocks beyond the first: ``min(depth, ceil(n / b))`` (at least 0).

    ``ceil(n / b) - 1`` more blocks could span dimension ``n``; one spare block covers a start
    block with dependent rows. Rows beyond the dimension are dependent, and dropped.
    """
    return max(0, min(int(depth), -(-n // max(1, b))))


def krylov_basis(op: Operator, v: torch.Tensor, depth: int, *, reorth: str = "auto", keep_products: bool = True) -> KrylovBasis:
    """The block Krylov basis ``[V, AV, ..., A^d V]`` orthonormalised, with ``A Q`` and ``H = Q A Q^T``.

    ``d = min(depth, ceil(n / b))``: the basis stops growing once it can span the operator's
    dimension ``n`` (a start block with more than ``n`` rows is cut to ``n``); rows beyond the
    dimension are dependent, and dropped (zero rows).

    ``reorth="local"`` is block Lanczos with local re-orthogonalisation: each new block is
    orthogonalised (twice) against the previous two blocks only, the three-term recurrence, and
    ``H`` is the block tridiagonal matrix of the recurrence's coefficients. Its cost per step is
    ``O(b^2 n)``; lost global orthogonality only duplicates converged Ritz values (Paige's theory
    of finite-precision Lanczos), it never lifts one above ``lambda_1`` by more than rounding.
    ``reorth="full"`` orthogonalises against the whole basis (``O(m b n)`` per step) and fills
    ``H`` completely. Both take ``H``'s entries from the first Gram-Schmidt coefficients (row
    block ``j`` of ``H`` is ``(A q_j) Q^T``, computed anyway).
    ``reorth="auto"`` (default) is ``"local"`` when the basis is small next to the operator
    (``m <= n / 4``) and ``"full"`` otherwise: in a small space the Krylov blocks deflate (lose
    rank), and the recurrence alone would then miss couplings that the full projection keeps.

    ``keep_products=False`` does not store ``A Q`` (the Ritz pairs then come without residuals).

    Cost: ``b (d + 1)`` probe passes; memory ``2 b (d + 1) n`` floats (half without products).
    """
    if reorth not in ("auto", "local", "full"):
        raise ValueError(f"reorth must be 'auto', 'local' or 'full', got {reorth!r}")
    v = v[: op.n].to(op.device, torch.float32)
    b, n = v.shape
    steps = krylov_steps(n, b, depth)
    m = b * (steps + 1)
    if reorth == "auto":
        reorth = "local" if 4 * m <= n else "full"
    q = v.new_empty(m, n)
    aq = v.new_empty(m, n) if keep_products else None
    lower = torch.zeros(m, m, dtype=torch.float64, device=v.device)
    q[:b] = _orth_block(v)
    for j in range(steps + 1):
        lo, hi = j * b, (j + 1) * b
        w = op.matmul(q[lo:hi])
        if aq is not None:
            aq[lo:hi] = w
        # the blocks this step projects against, as contiguous row ranges ending with the current block
        spans = [(0, hi)] if reorth == "full" else [(max(0, lo - b), hi)]
        cs = [w @ q[a:z].T for a, z in spans]  # (A q_j) q^T: entries of H, and the first Gram-Schmidt pass
        for (a, _z), c in zip(spans, cs):
            if a < lo:
                lower[lo:hi, a:lo] = c[:, : lo - a].double()
        d = cs[-1][:, lo - spans[-1][0] :]
        lower[lo:hi, lo:hi] = 0.25 * (d + d.T).double()  # counted twice in lower + lower^T
        if j < steps:
            q[hi : hi + b] = _orth_block(w, [q[a:z] for a, z in spans], cs)
    return KrylovBasis(q, aq, lower + lower.T)


def block_krylov(op: Operator, v: torch.Tensor, depth: int, *, k: int | None = None, reorth: str = "auto") -> Ritz:
    """Block Krylov ``[V, AV, ..., A^depth V]`` with full re-orthogonalisation, then Rayleigh-Ritz.

    Resolving a gap ``delta`` at the top of the spectrum takes about ``1 / sqrt(delta)`` steps,
    versus ``1 / delta`` for subspace iteration: the right tool just after a clip, when the top is
    a flat cluster at the target. Never returns a value above ``sigma_1`` (beyond rounding),
    for any start block and depth (see the module notes).

    Args:
        op: the operator.
        v: ``(b, n)`` start block (rows; any norms, dependent rows allowed).
        depth: number of multiplications by ``A`` beyond the start block (capped so the basis
            fits in the operator's dimension).
        k: number of Ritz pairs returned (default ``b``).
        reorth: ``"auto"`` (default), ``"local"`` (block Lanczos) or ``"full"`` (see :func:`krylov_basis`).

    Cost: ``b * (depth + 1)`` probe passes; memory ``2 * b * (depth + 1) * n`` floats.
    """
    basis = krylov_basis(op, v, depth, reorth=reorth)
    return rayleigh_ritz_many([basis], v.shape[0] if k is None else k)[0]


# ----------------------------------------------------------------------------- subspace iteration
def subspace_iteration(op: Operator, v: torch.Tensor, iters: int) -> Ritz:
    """``iters`` subspace iterations ``V <- orth(A V)`` from the rows of ``v`` ``(k, n)``, then Rayleigh-Ritz.

    Cost: ``k * (iters + 1)`` probe passes (one forward plus one adjoint each). Converges at the
    rate ``(sigma_{k+1} / sigma_i)^2`` per iteration.
    """
    k = v.shape[0]
    q = orthonormalize(v[: op.n].to(op.device, torch.float32))
    for _ in range(max(0, iters)):
        q = orthonormalize(op.matmul(q))
    return rayleigh_ritz(q, op.matmul(q), k)


def tracking_basis(op: Operator, v: torch.Tensor) -> KrylovBasis:
    """The one-block basis ``orth(v)`` with ``A Q`` (one product): the input of a tracking step."""
    q = orthonormalize(v[: op.n].to(op.device, torch.float32))
    aq = op.matmul(q)
    return KrylovBasis(q, aq, (q @ aq.T).double())


def tracking_next(basis: KrylovBasis, ritz: Ritz) -> torch.Tensor:
    """The next warm block ``orth(A x_i)`` of a tracking step's Ritz vectors ``x_i`` (same order)."""
    q, aq = basis.q, basis.aq
    # A x_i for x_i = c_i^T Q is c_i^T (A Q): recover c from the (orthonormal) basis.
    coef = ritz.vectors @ q.T
    return orthonormalize(coef @ aq)


def tracking_step(op: Operator, v: torch.Tensor) -> Ritz:
    """One warm subspace-iteration step for tracking, at the cost of a single product ``A V``.

    The values are the Rayleigh-Ritz values on ``span(v)``; the returned vectors are the next
    iterate ``orth(A x_i)`` of the Ritz vectors ``x_i`` (in the same order), so repeated calls
    progress like subspace iteration while each costs ``k`` probe passes. Residuals refer to the
    Ritz vectors on ``span(v)``.
    """
    basis = tracking_basis(op, v)
    r = rayleigh_ritz_many([basis], basis.q.shape[0])[0]
    return Ritz(r.sigma, tracking_next(basis, r), r.residuals)
