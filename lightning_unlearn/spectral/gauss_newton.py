"""The clip decision and the Gauss-Newton step on a layer's top singular values (pure functions).

With ``theta`` the clipped tensor (the kernel by default), ``f_theta`` linear in ``theta``, and the
values to move ``A = {i : sigma_i > c (1 + tol/2)}``:

    g_i = d/dtheta <u_i, f_theta(v_i)>      (= d sigma_i / d theta for a simple singular value)
    (G G^T + eps I) alpha = sigma_A - c',   theta <- theta - sum_i alpha_i g_i

with ``c' = c (1 - headroom)``. For dense layers ``g_i = u_i v_i^T`` and ``G G^T = I``: one step is the
exact rank-|A| clip. For convolutions the Newton step ``(sigma - c') / ||g||^2`` corrects for the
weight-sharing projection that a fixed-step gradient descent ignores (which stalls above the target:
docs/fastclip.md, section 4).

The decision (which values move, by how much) is :func:`excess_mask`; the update is
:func:`gauss_newton_delta`. Both work on fixed-size blocks with masks (no ``nonzero``, no host
read), so a whole clip event (:func:`~lightning_unlearn.spectral.event.clip_event`) can run on a
GPU without synchronising.
"""

from __future__ import annotations

import torch

from lightning_unlearn.spectral.operator import Operator


def excess_mask(
    sigma: torch.Tensor, max_norm: float, *, tol: float = 0.01, two_sided: bool = False, headroom: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which singular values to move, and by how much, as masks (a pure decision function).

    One-sided: every ``sigma_i > c (1 + tol/2)`` moves by ``sigma_i - c (1 - headroom)`` (the half
    tolerance leaves room for the estimate). Two-sided: if none exceeds and
    ``0 < sigma_1 < c (1 - tol/2)``, the top one moves by ``sigma_1 - c`` (negative: raised).
    Non-finite values never move.

    Args:
        sigma: ``(..., k)`` descending estimates.
        max_norm: the target ``c``.

    Returns:
        ``(mask, excess)``, both shaped like ``sigma``; ``excess`` is 0 where ``mask`` is false.
    """
    c = float(max_norm)
    finite = torch.isfinite(sigma)
    over = finite & (sigma > c * (1 + tol / 2))
    excess = torch.where(over, sigma - c * (1 - headroom), torch.zeros_like(sigma))
    if not two_sided:
        return over, excess
    top = sigma[..., :1]
    lift_top = (~over.any(-1, keepdim=True)) & finite[..., :1] & (top < c * (1 - tol / 2)) & (top > 0)
    lift = torch.zeros_like(over)
    lift[..., :1] = lift_top
    return over | lift, torch.where(lift, sigma - c, excess)


def excess_singular_values(
    sigma: torch.Tensor, max_norm: float, *, tol: float = 0.01, two_sided: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The positions and excesses of :func:`excess_mask` (no headroom) as index tensors.

    Returns:
        ``(indices, excess)``: long ``(a,)`` positions into ``sigma`` ``(k,)`` and ``sigma[indices] - c``.
    """
    mask, _ = excess_mask(sigma, max_norm, tol=tol, two_sided=two_sided)
    idx = torch.nonzero(mask).flatten()
    return idx, sigma[idx] - max_norm


def per_vector_gradients(op: Operator, name: str, vectors: torch.Tensor) -> torch.Tensor:
    """``G``: row ``i`` is ``d/dtheta <u_i, f_theta(v_i)>`` with ``u_i = f(v_i) / ||f(v_i)||``, shape ``(a, numel(theta))``.

    Computed for all rows at once: by the map's ``vector_grads`` closed form when it has one
    (Conv1d/Conv2d), else with ``torch.func`` (a vmapped gradient), falling back to one autograd
    call per row for a map that ``vmap`` cannot batch. For an ``nn.Linear`` (the clipped tensor
    is the matrix) the rows are ``u_i v_i^T``.
    """
    theta = op.tensors[name]
    y_shaped = op.forward(vectors)
    y = y_shaped.flatten(1)
    u = y / torch.linalg.vector_norm(y, dim=1, keepdim=True).clamp_min(1e-30)
    if op.lmap.is_exact_matrix() and name == op.lmap.clip_tensor:
        return (u[:, :, None] * vectors[:, None, :]).reshape(vectors.shape[0], -1)
    if op.lmap.vector_grads is not None and name == op.lmap.clip_tensor:
        v = vectors.reshape(-1, *op.input_shape)
        return op.lmap.vector_grads(op.tensors, v, u.reshape(y_shaped.shape)).reshape(vectors.shape[0], -1)
    others = {k: v for k, v in op.tensors.items() if k != name}

    def score(th: torch.Tensor, v: torch.Tensor, uu: torch.Tensor) -> torch.Tensor:
        return (uu * op.forward(v[None], {**others, name: th}).flatten()).sum()

    try:
        g = torch.func.vmap(torch.func.grad(score), in_dims=(None, 0, 0))(theta, vectors, u)
    except Exception:  # noqa: BLE001 - a user map vmap cannot batch: one autograd call per row instead
        rows = []
        with torch.enable_grad():
            th = theta.detach().clone().requires_grad_(True)
            yy = op.forward(vectors, {**others, name: th}).flatten(1)
            s = (u * yy).sum(1)
            for i in range(s.numel()):
                rows.append(torch.autograd.grad(s[i], th, retain_graph=i + 1 < s.numel())[0])
        g = torch.stack(rows)
    return g.reshape(vectors.shape[0], -1)


def gauss_newton_delta(
    op: Operator, name: str, vectors: torch.Tensor, excess: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The block Gauss-Newton change ``sum_i alpha_i g_i`` of tensor ``name`` (not applied).

    Rows outside ``mask`` get ``alpha_i = 0`` (their equations are replaced by ``alpha_i = 0``), so
    the block keeps a fixed size; with an empty mask the change is exactly zero.

    Args:
        op: the operator (its float32 copies of the layer's tensors are the linearisation point).
        name: the tensor to change (``f`` must be linear in it).
        vectors: ``(a, n)`` right singular vectors ``v_i``.
        excess: ``(a,)`` how much each ``sigma_i`` should move (``sigma_i - target``).
        mask: ``(a,)`` bool, the values that move (default: ``excess != 0``).

    Returns:
        A float32 tensor shaped like ``op.tensors[name]``, to subtract from it.
    """
    mask = excess != 0 if mask is None else mask
    g = per_vector_gradients(op, name, vectors)
    mm = mask.to(torch.float64)
    ggt = (g @ g.T).double() * mm[:, None] * mm[None, :] + torch.diag(1.0 - mm)
    eps = 1e-12 * torch.diagonal(ggt).sum() + 1e-300
    eye = torch.eye(ggt.shape[0], dtype=ggt.dtype, device=ggt.device)
    alpha, _ = torch.linalg.solve_ex(ggt + eps * eye, (excess.double() * mm)[:, None])
    alpha = torch.nan_to_num(alpha[:, 0] * mm, nan=0.0, posinf=0.0, neginf=0.0)
    return (alpha.to(g.dtype) @ g).reshape(op.tensors[name].shape)
