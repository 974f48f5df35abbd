"""``HostReadCounter``: count the host synchronisations a block of tensor code would cause on a GPU.

Runs anywhere (on CPU too) as a ``TorchDispatchMode`` that sees every ATen op. A *host read* is
an op after which the host must wait for the device:

- ``aten::_local_scalar_dense`` (``.item()``, ``float(t)``, ``bool(t)``, ``if t:``);
- a copy to the CPU (``aten::_to_copy`` / ``aten::copy_`` into a CPU tensor from another device,
  or an explicit same-dtype ``.to("cpu", copy=True)``, the form the library's own transfers take so
  that they are counted on a CPU as well);
- ops whose output size depends on the data (``nonzero``, ``masked_select``, ``unique``, ...) and
  ``aten::_linalg_check_errors`` (the error check of ``torch.linalg.solve``, ``cholesky``, ...).

LAPACK-backed decompositions (``eigh``, ``svd``) check an error flag inside the op, which also
synchronises on CUDA but is invisible at the dispatch level: they are counted separately as
``lapack_calls``.

Example:
    >>> import torch
    >>> from lightning_unlearn.spectral.host_reads import HostReadCounter
    >>> x = torch.ones(3)
    >>> with HostReadCounter() as c:
    ...     y = (x * 2).sum()
    ...     _ = float(y)
    >>> c.reads
    1
"""

from __future__ import annotations

import collections

import torch
from torch.utils._python_dispatch import TorchDispatchMode

_SYNC_OPS = {
    "aten::_local_scalar_dense",
    "aten::nonzero",
    "aten::nonzero_static",
    "aten::masked_select",
    "aten::unique_dim",
    "aten::_unique",
    "aten::_unique2",
    "aten::unique_consecutive",
    "aten::_linalg_check_errors",
    "aten::repeat_interleave",
}
_LAPACK_OPS = {"aten::_linalg_eigh", "aten::_linalg_svd", "aten::linalg_eig", "aten::linalg_eigvals", "aten::_linalg_eigvals"}


def _is_host_copy(name: str, args: tuple, kwargs: dict) -> bool:
    if name == "aten::_to_copy":
        src = args[0]
        dev = kwargs.get("device")
        if dev is None or torch.device(dev).type != "cpu" or not isinstance(src, torch.Tensor):
            return False
        if src.device.type != "cpu":
            return True
        dtype = kwargs.get("dtype")
        return dtype is None or dtype == src.dtype  # an explicit same-dtype copy to the CPU: a transfer
    if name == "aten::copy_":
        dst, src = args[0], args[1]
        return isinstance(src, torch.Tensor) and dst.device.type == "cpu" and src.device.type != "cpu"
    return False


class HostReadCounter(TorchDispatchMode):
    """Counts ops, host reads and LAPACK calls of the code run inside ``with HostReadCounter():``.

    Attributes:
        ops: ATen ops dispatched.
        reads: host reads (see the module notes).
        lapack_calls: ``eigh``/``svd``/``eig`` calls.
        by_op: ``{op name: count}`` of the reads.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0
        self.reads = 0
        self.lapack_calls = 0
        self.by_op: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func._schema.name
        self.ops += 1
        if name in _SYNC_OPS or _is_host_copy(name, args, kwargs):
            self.reads += 1
            self.by_op[name] += 1
        if name in _LAPACK_OPS:
            self.lapack_calls += 1
        return func(*args, **kwargs)
