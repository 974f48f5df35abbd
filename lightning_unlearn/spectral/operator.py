"""Products with ``M`` and ``M^T M`` for a :class:`LinearMap` at a fixed input shape, through autograd."""

from __future__ import annotations

import contextlib
from typing import Mapping

import torch

from lightning_unlearn.spectral.registry import LinearMap


def no_autocast(device_type: str):
    """Disable autocast for ``device_type`` (a no-op context where autocast is unavailable)."""
    try:
        return torch.autocast(device_type=device_type, enabled=False)
    except RuntimeError:  # pragma: no cover - device without autocast support
        return contextlib.nullcontext()


class Operator:
    """``M`` (the linear map of a layer at ``input_shape``) acting on flattened probe blocks.

    Probe blocks are ``(k, n)`` float32 matrices whose rows are vectors of the input space
    (``n = prod(input_shape)``). Products use detached float32 copies of the layer's tensors,
    taken once at construction (call :meth:`refresh` after the weights change), with autocast
    disabled, so the estimate is float32 whatever the training precision.

    ``M^T M X`` is the gradient of ``0.5 * ||f(X)||^2`` with respect to ``X``: one forward and
    one adjoint pass, with no hand-written adjoint. It is taken with ``torch.autograd.grad`` on
    ``X`` alone, so no parameter ``.grad`` is ever written.

    Args:
        lmap: the layer's :class:`LinearMap`.
        input_shape: per-sample input shape (no batch dimension).
    """

    def __init__(self, lmap: LinearMap, input_shape: tuple[int, ...]) -> None:
        self.lmap = lmap
        self.input_shape = tuple(int(d) for d in input_shape)
        self.n = 1
        for d in self.input_shape:
            self.n *= d
        dev = next((t.device for t in lmap.tensors.values()), torch.device("cpu"))
        self.device = dev
        self.refresh()

    def refresh(self) -> None:
        """Re-read the layer's tensors (after an in-place weight change)."""
        self.tensors: dict[str, torch.Tensor] = {k: v.detach().float() for k, v in self.lmap.tensors.items()}

    def forward(self, x: torch.Tensor, tensors: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """``M x`` for rows of ``x`` ``(k, n)`` -> ``(k, *output_shape)``."""
        with no_autocast(self.device.type):
            return self.lmap.apply(self.tensors if tensors is None else tensors, x.reshape(-1, *self.input_shape).float())

    def gram(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(M^T M x, M x)`` for rows of ``x`` ``(k, n)``: ``(k, n)`` and ``(k, *output_shape)``."""
        with torch.enable_grad():
            xg = x.detach().reshape(-1, *self.input_shape).float().requires_grad_(True)
            with no_autocast(self.device.type):
                y = self.lmap.apply(self.tensors, xg)
            (g,) = torch.autograd.grad(y, xg, grad_outputs=y.detach())
        return g.reshape(x.shape[0], -1), y.detach()

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """``M^T M x`` for rows of ``x`` ``(k, n)``."""
        return self.gram(x)[0]

    def random_block(self, k: int, generator: torch.Generator) -> torch.Tensor:
        """``k`` N(0, 1) probe vectors ``(k, n)`` drawn on CPU from ``generator``, moved to the layer's device."""
        return torch.randn(k, self.n, generator=generator, dtype=torch.float32).to(self.device)
