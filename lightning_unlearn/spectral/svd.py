"""``singular_values``: top-k singular values of a layer's linear part at an input shape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from lightning_unlearn.spectral.estimators import Ritz, block_krylov, subspace_iteration
from lightning_unlearn.spectral.operator import Operator, full_precision
from lightning_unlearn.spectral.registry import linear_map

Method = Literal["auto", "exact", "krylov", "subspace"]
METHODS = ("auto", "exact", "krylov", "subspace")
EXACT_MAX_ENTRIES = 2**18  # "auto" solves a layer exactly when its dense Jacobian has at most this many entries


def _validate_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d <= 0 for d in shape):
        raise ValueError(f"input_shape must be a non-empty per-sample shape of positive sizes (no batch dimension), got {tuple(input_shape)}")
    return shape


def estimate(
    op: Operator,
    k: int,
    *,
    method: Literal["krylov", "subspace"] = "krylov",
    v0: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    block_size: int | None = None,
    depth: int = 20,
    iters: int = 100,
    rtol: float = 1e-4,
    max_restarts: int = 20,
) -> Ritz:
    """Top-``k`` Ritz triplets of ``op`` (restarted until the residuals pass ``rtol``).

    ``krylov``: restarted block Krylov of ``depth`` from ``v0`` (or ``block_size`` random vectors),
    until every returned pair satisfies ``||A v - lambda v|| <= rtol * lambda_1`` or
    ``max_restarts`` restarts were made. ``subspace``: ``iters`` subspace iterations.
    """
    b = max(k, block_size or max(2 * k, 4))
    b = min(b, op.n)
    if v0 is None:
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        v0 = op.random_block(b, gen)
    if method == "subspace":
        r = subspace_iteration(op, v0, iters)
        return Ritz(r.sigma[:k], r.vectors[:k], r.residuals[:k])
    r = block_krylov(op, v0, depth)
    for _ in range(max_restarts):
        lam1 = r.sigma[0] ** 2
        if bool((r.residuals[:k] <= rtol * lam1.clamp_min(1e-30)).all()):
            break
        r = block_krylov(op, r.vectors, depth)
    return Ritz(r.sigma[:k], r.vectors[:k], r.residuals[:k])


def singular_values(
    module: nn.Module,
    input_shape: Sequence[int],
    k: int = 1,
    *,
    method: Method = "auto",
    depth: int = 20,
    iters: int = 100,
    rtol: float = 1e-4,
    block_size: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Top-``k`` singular values of the linear part ``x -> module(x) - module(0)`` at ``input_shape``.

    The operator is the true one at the true resolution (padding and boundaries included; no FFT
    or circulant assumption). Products with ``M^T M`` go through autograd (a forward and an
    adjoint pass per probe vector) in float32 with autocast disabled; the module's weights,
    buffers, ``.grad`` and train/eval mode are left untouched. Batch norm is evaluated in closed
    form from ``gamma``, ``running_var`` and ``eps`` (eval-mode semantics), never by calling it.

    Args:
        module: a registered layer (Conv1d/2d/3d, ConvTranspose1d/2d/3d, Linear,
            BatchNorm1d/2d/3d, or an ``nn.Sequential`` of these).
        input_shape: per-sample input shape, no batch dimension (e.g. ``(C, H, W)``).
        k: number of singular values.
        method: ``"auto"`` (default: ``"exact"`` when the dense Jacobian has at most ``2**18``
            entries and a side of at most 512, e.g. every small Linear, else ``"krylov"``), ``"exact"`` (eigendecomposition
            of the dense Jacobian's Gram matrix), ``"krylov"`` (restarted block Krylov with
            Rayleigh-Ritz) or ``"subspace"`` (``iters`` subspace iterations with Rayleigh-Ritz).
        depth: Krylov depth per restart.
        iters: subspace iterations.
        rtol: Krylov stops when every residual ``||A v - lambda v|| <= rtol * sigma_1^2``.
        block_size: probe block size (default ``max(2k, 4)``).
        generator: source of the random start (default: a fresh generator seeded 0, so the
            result is deterministic).

    Returns:
        ``(k,)`` float32 tensor, descending (fewer if the input space has fewer dimensions).

    Raises:
        UnsupportedLayerError: the module (or a child of a ``Sequential``) is not supported.
        ValueError: bad ``k``, ``method`` or ``input_shape``.

    Example:
        >>> import torch
        >>> from lightning_unlearn.spectral import singular_values
        >>> lin = torch.nn.Linear(3, 2, bias=True)
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(torch.tensor([[3.0, 0, 0], [0, 2.0, 0]]))
        >>> [round(float(s), 4) for s in singular_values(lin, (3,), k=2)]
        [3.0, 2.0]
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: expected one of {', '.join(METHODS)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    shape = _validate_shape(input_shape)
    lmap = linear_map(module)
    if lmap.closed_form is not None:
        with torch.no_grad():
            s = lmap.closed_form({n: t.float() for n, t in lmap.values().items()}, shape)
        return torch.sort(s, descending=True).values[:k]
    op = Operator(lmap, shape)
    with torch.no_grad(), full_precision():
        if method == "auto":
            from lightning_unlearn.spectral.dense import dense_shape

            rows, cols = dense_shape(op)
            method = "exact" if rows * cols <= EXACT_MAX_ENTRIES and min(rows, cols) <= 512 else "krylov"
        if method == "exact":
            from lightning_unlearn.spectral.dense import exact_spectrum

            return exact_spectrum(op, with_vectors=False).sigma[:k].detach()
        r = estimate(op, k, method=method, generator=generator, block_size=block_size, depth=depth, iters=iters, rtol=rtol)
    return r.sigma.detach()
