"""Exact spectra of small layers: the dense Jacobian (or a Linear's weight) and its eigendecomposition.

For a layer whose Jacobian ``J`` (``n_out x n``) is small, forming it costs ``n`` probes at once
(``M`` applied to the identity) and the eigendecomposition of ``J^T J`` or ``J J^T`` (the smaller
one, ``r = min(n, n_out)``) gives every singular triplet exactly. For ``nn.Linear`` the matrix is
the weight itself. No estimate, no certification: exact by construction.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from lightning_unlearn.spectral.operator import Operator


class Spectrum(NamedTuple):
    """Singular values and right singular vectors of a layer, descending.

    Attributes:
        sigma: ``(r,)`` singular values.
        vectors: ``(r, n)`` right singular vectors (rows, unit norm; zero for a zero value of a
            wide Jacobian).
        left: ``(r, n_out)`` left singular vectors (rows) when known, else ``None``.
    """

    sigma: torch.Tensor
    vectors: torch.Tensor
    left: torch.Tensor | None


def dense_shape(op: Operator) -> tuple[int, int]:
    """``(n_out, n)``: the shape of the layer's dense Jacobian (a Linear's weight shape)."""
    if op.lmap.matrix is not None:
        return tuple(op.lmap.matrix(op.tensors).shape)
    return op.n_out, op.n


def dense_entries(op: Operator) -> int:
    """Number of entries of the layer's dense Jacobian (``n * n_out``; a Linear's weight size)."""
    rows, cols = dense_shape(op)
    return rows * cols


def exact_spectrum(op: Operator, *, with_vectors: bool = True, k: int | None = None) -> Spectrum:
    """Every singular value (and the top ``k`` right singular vectors, default all) of ``M``, descending.

    The Gram matrix of the smaller side is formed in float32 (the probes' precision) and
    decomposed by ``eigh`` (``eigvalsh`` without vectors), in float64 up to side 128 and in
    float32 above (cheaper, at the probes' float32 precision). For a tall ``J``
    (``n_out >= n``) the eigenvectors of ``J^T J`` are the right singular vectors; for a wide one
    the eigenvectors ``u_i`` of ``J J^T`` give ``v_i = J^T u_i / sigma_i``.
    """
    jt = op.jacobian_t()  # (n, n_out)
    tall = jt.shape[1] >= jt.shape[0]
    gram = (jt @ jt.T) if tall else (jt.T @ jt)
    gram = gram.double() if gram.shape[0] <= 128 else gram
    if not with_vectors:
        lam = torch.linalg.eigvalsh(gram).flip(0)
        return Spectrum(torch.sqrt(lam.clamp_min(0)).float(), jt.new_zeros(0, jt.shape[0]), None)
    lam, z = torch.linalg.eigh(gram)
    lam = lam.flip(0)
    z = z.flip(1)[:, : (z.shape[1] if k is None else k)]
    sigma = torch.sqrt(lam.clamp_min(0)).float()
    z = z.float()
    if tall:
        return Spectrum(sigma, z.T.contiguous(), None)
    v = z.T @ jt.T  # rows u_i^T J = sigma_i v_i^T
    sk = sigma[: v.shape[0]]
    v = v / sk.clamp_min(1e-30)[:, None]
    v = torch.where((sk > 0)[:, None], v, torch.zeros_like(v))
    return Spectrum(sigma, v, z.T.contiguous())
