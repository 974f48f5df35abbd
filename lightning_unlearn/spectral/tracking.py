"""Tracking the top singular values of many layers between clip events, one cheap warm step each.

Between events :class:`~lightning_unlearn.callbacks.FastClip` follows the norms for its logs (and
keeps the warm vectors of the next event current) with :func:`track_norms`: for a Krylov layer,
``settings.track_iters`` warm subspace-iteration steps from its vectors (``k`` probe passes each;
the Rayleigh-Ritz problems of all layers in a step are one batched call); for an exactly solved
layer, its exact spectrum. Fixed iteration counts, no host read: the caller reads all values in
one transfer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from lightning_unlearn.spectral.dense import exact_spectrum
from lightning_unlearn.spectral.estimators import rayleigh_ritz_many, tracking_basis, tracking_next
from lightning_unlearn.spectral.event import EventLayer, solver_kind
from lightning_unlearn.spectral.operator import Operator, full_precision
from lightning_unlearn.spectral.settings import ClipSettings


class Tracked(NamedTuple):
    """One layer after :func:`track_norms` (tensors on the layer's device).

    Attributes:
        sigma: ``(m,)`` top singular values, descending (``m = min(k, n)`` Ritz values of the last
            step's block for a Krylov layer; every exact value for an exactly solved one).
        vectors: ``(m, n)`` the next warm block of a Krylov layer; ``None`` for an exactly solved
            layer, whose events decompose it afresh.
    """

    sigma: torch.Tensor
    vectors: torch.Tensor | None


def track_norms(layers: Sequence[EventLayer], settings: ClipSettings, generator: torch.Generator) -> list[Tracked]:
    """Follow the top singular values of ``layers`` with ``max(1, settings.track_iters)`` warm steps.

    A Krylov layer (``layer.kind``, or :func:`~lightning_unlearn.spectral.solver_kind`) steps from
    its ``vectors`` (``min(k, n)`` random ones from ``generator`` when it has none, or ones of
    another shape): each step is ``V <- orth(A x_i)`` for the Ritz vectors ``x_i`` of
    ``span(V)``, and the values are the Ritz values on ``span(V)`` -- lower bounds of the true
    ones, converging at the subspace-iteration rate. An exactly solved layer returns its exact
    spectrum. Runs under ``no_grad`` in full float32 (TF32 off).

    Returns:
        One :class:`Tracked` per layer, in order.

    Example:
        >>> import torch
        >>> from lightning_unlearn.spectral import ClipSettings, EventLayer, linear_map, track_norms
        >>> lin = torch.nn.Linear(3, 3, bias=False)
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(torch.diag(torch.tensor([3.0, 2.0, 1.0])))
        >>> krylov = ClipSettings(dense_max_entries=0)  # no exact solve: warm steps from 3 random vectors
        >>> out = track_norms([EventLayer("fc", linear_map(lin), (3,))], krylov, torch.Generator().manual_seed(0))
        >>> [round(float(s), 4) for s in out[0].sigma], tuple(out[0].vectors.shape)  # the block spans the whole space
        ([3.0, 2.0, 1.0], (3, 3))
    """
    k = settings.k
    out: list[Tracked | None] = [None] * len(layers)
    with torch.no_grad(), full_precision():
        krylov = []  # (position, operator, warm block)
        for i, layer in enumerate(layers):
            op = Operator(layer.lmap, layer.input_shape)
            if (layer.kind or solver_kind(layer.lmap, layer.input_shape, settings, layer.tensor)) != "krylov":
                out[i] = Tracked(exact_spectrum(op, with_vectors=False).sigma, None)
                continue
            v = layer.vectors
            m = min(k, op.n)
            if v is None or tuple(v.shape) != (m, op.n):
                v = op.random_block(m, generator)
            krylov.append((i, op, v.to(op.device, torch.float32)))
        ritz = []
        for _ in range(max(1, settings.track_iters)):
            bases = [tracking_basis(op, v) for _, op, v in krylov]
            ritz = rayleigh_ritz_many(bases, [b.q.shape[0] for b in bases])
            krylov = [(i, op, tracking_next(b, r)) for (i, op, _), b, r in zip(krylov, bases, ritz)]
        for (i, _, v), r in zip(krylov, ritz):
            out[i] = Tracked(r.sigma.contiguous(), v.contiguous())
    return out  # type: ignore[return-value]
