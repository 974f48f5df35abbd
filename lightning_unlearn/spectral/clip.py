"""Clipping the top singular values of a layer to a target: the decision and the Gauss-Newton step.

With ``theta`` the clipped tensor (the kernel by default), ``f_theta`` linear in ``theta``, and the
values to move ``A = {i : sigma_i > c (1 + tol/2)}``:

    g_i = d/dtheta <u_i, f_theta(v_i)>      (= d sigma_i / d theta for a simple singular value)
    (G G^T + eps I) alpha = sigma_A - c',   theta <- theta - sum_i alpha_i g_i

with ``c' = c (1 - headroom)``. For dense layers ``g_i = u_i v_i^T`` and ``G G^T = I``: one step is the
exact rank-|A| clip. For convolutions the Newton step ``(sigma - c') / ||g||^2`` corrects for the
weight-sharing projection that the reference's fixed-step gradient descent ignores (which stalls
about 7% above the target).

The decision (which values move, by how much) is the pure :func:`excess_mask`; the update is
computed by the pure :func:`gauss_newton_delta`. Both work on fixed-size blocks with masks (no
``nonzero``, no host read), so a whole clip event can run on a GPU without synchronising. The
event itself -- estimates, steps, certification, fallback -- is
:func:`~lightning_unlearn.spectral.event.clip_event`; :func:`clip_` and :func:`clip_layer` run it
on one layer.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import nn

from lightning_unlearn.spectral.operator import Operator
from lightning_unlearn.spectral.registry import LinearMap, linear_map
from lightning_unlearn.spectral.settings import ClipSettings, validate_max_norm
from lightning_unlearn.spectral.svd import _validate_shape


class ClipResult(NamedTuple):
    """Outcome of :func:`clip_layer`.

    Attributes:
        sigma: ``(k,)`` top singular values after the event, descending (certified, or exact).
        vectors: ``(k, n)`` right singular vectors (warm start for the next event).
        steps: Gauss-Newton steps that moved the layer.
        fallbacks: 1 if the exact scaling fallback was applied, else 0.
        changed: whether the clipped tensor was written.
        before: top singular value estimated at the start of the event.
        certified: whether the final value is certified (or exact).
    """

    sigma: torch.Tensor
    vectors: torch.Tensor
    steps: int
    fallbacks: int
    changed: bool
    before: float = float("nan")
    certified: bool = True


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


def clip_layer(
    lmap: LinearMap,
    input_shape: Sequence[int],
    max_norm: float,
    v0: torch.Tensor | None = None,
    *,
    generator: torch.Generator | None = None,
    tol: float | None = None,
    two_sided: bool | None = None,
    tensor: str | None = None,
    est_depth: int | None = None,
    cert_depth: int | None = None,
    max_steps: int | None = None,
    fresh: bool = True,
    headroom: float | None = None,
    settings: ClipSettings | None = None,
) -> ClipResult:
    """One clip event on ``lmap`` from the warm vectors ``v0`` ``(k, n)``.

    Runs :func:`~lightning_unlearn.spectral.event.clip_event` on this one layer: a warm estimate,
    a prescale when every tracked value is above ``c (1 + tol/2)``, block Gauss-Newton steps on
    the excess values, a certification by a deeper block Krylov run (with fresh random vectors
    if ``fresh``), more steps for a rejected layer, then the exact scaling fallback. Small layers
    (see ``ClipSettings.dense_max_entries``) are solved exactly instead.

    Args:
        lmap: the layer's map (from :func:`~lightning_unlearn.spectral.linear_map`).
        input_shape: per-sample input shape.
        max_norm: target ``c > 0``.
        v0: ``(k, n)`` warm vectors (``None``: random, with a deeper opening estimate).
        generator: source of fresh vectors (default: a CPU generator seeded 0).
        settings: solver settings (default: :class:`ClipSettings` with ``headroom=0``, the
            smallest change); the keyword arguments ``tol``, ``two_sided``, ``est_depth``,
            ``cert_depth``, ``max_steps`` and ``headroom`` override its fields when given.
        tensor: name of the tensor to change, as in :class:`LinearMap.tensors`.
        fresh: append fresh random vectors to the certification.

    Returns:
        :class:`ClipResult`.
    """
    from lightning_unlearn.spectral.event import EventLayer, clip_event

    s = (settings or ClipSettings(headroom=0.0)).replace(tol=tol, two_sided=two_sided, est_depth=est_depth, cert_depth=cert_depth,
                                            max_steps=max_steps, headroom=headroom)
    if v0 is not None:
        s = s.replace(k=int(v0.shape[0]))
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    layer = EventLayer(name="layer", lmap=lmap, input_shape=tuple(int(d) for d in input_shape), vectors=v0, tensor=tensor)
    out = clip_event([layer], validate_max_norm(max_norm), s, gen, fresh=fresh)[0]
    return ClipResult(
        out.sigma, out.vectors, int(out.steps), int(bool(out.fallback)), bool(out.changed), float(out.before), bool(out.certified)
    )


def clip_(
    module: nn.Module,
    input_shape: Sequence[int],
    max_norm: float,
    *,
    k: int | None = None,
    tol: float | None = None,
    two_sided: bool | None = None,
    tensor: str | None = None,
    est_depth: int | None = None,
    cert_depth: int | None = None,
    max_steps: int | None = None,
    generator: torch.Generator | None = None,
    settings: ClipSettings | None = None,
) -> torch.Tensor:
    """Clip the top singular value of ``x -> module(x) - module(0)`` at ``input_shape`` to ``max_norm``, in place.

    After the call the true operator norm is at most ``max_norm * (1 + tol)`` (certified by a
    Krylov run whose top Ritz value is at most ``max_norm * (1 + tol/2)``, or exact for small
    layers); the weights change as little as the block Gauss-Newton step on the excess singular
    values allows (for a dense layer it is exactly the clip ``W - sum_i (sigma_i - c') u_i v_i^T``).
    A norm already below ``max_norm`` is left alone (bit-identical) unless ``two_sided=True``, which
    raises it into ``[c (1 - tol), c (1 + tol)]``. Only the clipped tensor changes (the kernel; for
    an ``nn.Sequential`` its first kernel, or ``tensor``), never biases, BN running statistics,
    ``.grad`` or the train/eval mode.

    Args:
        module: a registered layer or ``nn.Sequential`` of them (e.g. ``Sequential(conv, bn)``,
            where BN acts with its eval-mode gain ``gamma / sqrt(running_var + eps)``).
        input_shape: per-sample input shape (no batch dimension).
        max_norm: target ``c > 0``.
        k: number of singular directions tracked (block size; default 4).
        tol: relative tolerance (default 0.01).
        two_sided: also raise a norm below ``c (1 - tol/2)`` (default ``False``).
        tensor: name of the tensor to change, as in :class:`LinearMap.tensors` (``"weight"``;
            in a ``Sequential``, ``"0.weight"`` or ``"1.weight"`` for the BN gain).
        est_depth, cert_depth, max_steps: see ``settings``; ``k``, ``tol``, ``two_sided`` and these
            override its fields when given.
        generator: source of the random start (default seeded 0).
        settings: :class:`~lightning_unlearn.spectral.ClipSettings` (default: its defaults, with
            ``headroom=0``: a one-off clip aims at ``c`` itself).

    Returns:
        0-dim float32 tensor: the new (certified) top singular value.

    Raises:
        ValueError: bad ``max_norm``, ``tol`` or ``k``.
        UnsupportedLayerError: the module is not supported or has no tensor to clip.

    Example:
        >>> import torch
        >>> from lightning_unlearn.spectral import clip_, singular_values
        >>> lin = torch.nn.Linear(4, 4)
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(torch.diag(torch.tensor([3.0, 2.0, 0.5, 0.1])))
        >>> round(float(clip_(lin, (4,), 1.0)), 4)
        1.0
        >>> [round(float(s), 4) for s in singular_values(lin, (4,), k=4)]
        [1.0, 1.0, 0.5, 0.1]
    """
    validate_max_norm(max_norm)
    s = (settings or ClipSettings(headroom=0.0)).replace(k=k, tol=tol, two_sided=two_sided, est_depth=est_depth,
                                                           cert_depth=cert_depth, max_steps=max_steps)
    shape = _validate_shape(input_shape)
    lmap = linear_map(module)
    res = clip_layer(lmap, shape, max_norm, None, generator=generator, tensor=tensor, settings=s, fresh=True)
    return res.sigma[0].detach()
