"""Products with ``M`` and ``M^T M`` for a :class:`LinearMap` at a fixed input shape, through autograd."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping

import torch

from lightning_unlearn.spectral.registry import LinearMap


def no_autocast(device_type: str):
    """Disable autocast for ``device_type`` (a no-op context where autocast is unavailable)."""
    try:
        return torch.autocast(device_type=device_type, enabled=False)
    except RuntimeError:  # pragma: no cover - device without autocast support
        return contextlib.nullcontext()


@contextlib.contextmanager
def full_precision() -> Iterator[None]:
    """Run the enclosed probes in true float32: TF32 off for matmuls and cuDNN, restored after.

    cuDNN allows TF32 convolutions by default on Ampere and later GPUs, which would compute the
    "exact" operator norms at about 1e-3 relative precision. Nothing changes on a CPU.
    """
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn


def _numel(shape: tuple[int, ...]) -> int:
    return int(math.prod(shape))


class Operator:
    """``M`` (the linear map of a layer at ``input_shape``) acting on flattened probe blocks.

    Probe blocks are ``(b, n)`` float32 matrices whose rows are vectors of the input space
    (``n = prod(input_shape)``). Products use detached float32 copies of the layer's tensors
    (aliases for float32 parameters), taken at construction and by :meth:`refresh` (call it after
    the weights change), with autocast disabled, so the estimate is float32 whatever the
    training precision.

    ``M^T M X`` is the gradient of ``0.5 * ||f(X)||^2`` with respect to ``X``: one forward and
    one adjoint pass, with no hand-written adjoint. It is taken with ``torch.autograd.grad`` on
    ``X`` alone, so no parameter ``.grad`` is ever written.

    For a map with an explicit ``matrix`` (``nn.Linear``), the operator acts on the matrix's
    input space instead (``n = in_features``), which has the same nonzero singular values at
    every input shape.

    Args:
        lmap: the layer's :class:`LinearMap`.
        input_shape: per-sample input shape (no batch dimension).
    """

    def __init__(self, lmap: LinearMap, input_shape: tuple[int, ...]) -> None:
        self.lmap = lmap
        self.refresh()
        if lmap.matrix is not None:
            self.input_shape = (int(lmap.matrix(self.tensors).shape[1]),)
        else:
            self.input_shape = tuple(int(d) for d in input_shape)
        self.n = _numel(self.input_shape)
        dev = next((t.device for t in self.tensors.values()), torch.device("cpu"))
        self.device = dev
        self._n_out: int | None = None

    def refresh(self) -> None:
        """Re-read the layer's tensors (after an in-place weight change)."""
        self.tensors: dict[str, torch.Tensor] = {k: v.float() for k, v in self.lmap.values().items()}

    @property
    def n_out(self) -> int:
        """Number of output entries per probe (one forward of a zero probe, computed once)."""
        if self._n_out is None:
            with torch.no_grad():
                self._n_out = int(self.forward(torch.zeros(1, self.n, device=self.device)).numel())
        return self._n_out

    def forward(self, x: torch.Tensor, tensors: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """``M x`` for rows of ``x`` ``(b, n)`` -> ``(b, *output_shape)``."""
        t = self.tensors if tensors is None else tensors
        with no_autocast(self.device.type):
            if self.lmap.matrix is not None:
                return x.float() @ self.lmap.matrix(t).T
            return self.lmap.apply(t, x.reshape(-1, *self.input_shape).float())

    def gram(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(M^T M x, M x)`` for rows of ``x`` ``(b, n)``: ``(b, n)`` and ``(b, *output_shape)``."""
        if self.lmap.matrix is not None:
            w = self.lmap.matrix(self.tensors)
            y = x.float() @ w.T
            return y @ w, y
        with torch.enable_grad():
            xg = x.detach().reshape(-1, *self.input_shape).float().requires_grad_(True)
            with no_autocast(self.device.type):
                y = self.lmap.apply(self.tensors, xg)
            (g,) = torch.autograd.grad(y, xg, grad_outputs=y.detach())
        return g.reshape(x.shape[0], -1), y.detach()

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """``M^T M x`` for rows of ``x`` ``(b, n)``."""
        return self.gram(x)[0]

    def random_block(self, k: int, generator: torch.Generator) -> torch.Tensor:
        """``k`` unit vectors ``(k, n)``, normalised N(0, 1) draws from ``generator``.

        Drawn on the generator's device (the callback keeps one on the model's device, so no
        host-to-device copy is needed) and moved to the layer's device if that differs.
        """
        gdev = generator.device
        x = torch.randn(k, self.n, generator=generator, dtype=torch.float32, device=gdev)
        x = x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-30)
        return x if x.device == self.device else x.to(self.device)

    def jacobian_t(self) -> torch.Tensor:
        """The dense ``(n, n_out)`` matrix ``M^T`` (rows: ``M e_j``), from ``n`` probes at once."""
        if self.lmap.matrix is not None:
            return self.lmap.matrix(self.tensors).T
        eye = torch.eye(self.n, device=self.device, dtype=torch.float32)
        with torch.no_grad():
            return self.forward(eye).reshape(self.n, -1)
