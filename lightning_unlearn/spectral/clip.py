"""Clipping the top singular values of one layer to a target (:func:`clip_`, :func:`clip_layer`).

The decision and the Gauss-Newton step are the pure functions of
:mod:`lightning_unlearn.spectral.gauss_newton`; the event itself -- estimates, steps,
certification, fallback -- is :func:`~lightning_unlearn.spectral.event.clip_event`, which
:func:`clip_` and :func:`clip_layer` run on one layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from lightning_unlearn.spectral.event import EventLayer, clip_event
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
