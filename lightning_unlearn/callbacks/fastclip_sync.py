"""FastClip's one host read per event, and under DDP rank 0's event results on every rank, bit for bit.

Every DDP rank runs the same clip event, but GPU kernels are not bit-deterministic (seeding alone
does not survive them), so the ranks' results may differ in the last bits, and DDP's
``broadcast_buffers`` does not cover parameters. :func:`share_event` makes rank 0's results
everyone's: its clipped tensors, warm vectors and values and the table of logged numbers travel as
one byte buffer (:func:`pack`), read to the host once -- the event's one host read, which a single
process spends on the table alone -- and sent by ``trainer.strategy.broadcast`` (which pickles it).
The other ranks copy it into their tensors in place (:func:`unpack_`), and every rank logs rank 0's
numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning.pytorch as pl
import torch


def pack(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """The bytes of ``tensors``, concatenated: a 1-D ``uint8`` tensor on their (common) device.

    Bit-exact for every dtype (the bytes are viewed, not converted); :func:`unpack_` reverses it.
    """
    if not tensors:
        return torch.zeros(0, dtype=torch.uint8)
    return torch.cat([t.detach().contiguous().reshape(-1).view(torch.uint8) for t in tensors])


def unpack_(flat: torch.Tensor, tensors: Sequence[torch.Tensor]) -> None:
    """Copy the bytes of :func:`pack` back into ``tensors`` (same shapes and dtypes, in order; a prefix is allowed), in place.

    Raises:
        ValueError: ``flat`` holds fewer bytes than ``tensors`` need.
    """
    need = sum(t.numel() * t.element_size() for t in tensors)
    if flat.numel() < need:
        raise ValueError(f"packed buffer of {flat.numel()} bytes, but the tensors need {need}")
    offset = 0
    with torch.no_grad():
        for t in tensors:
            n = t.numel() * t.element_size()
            # clone: the slice starts at offset 0 of its own storage, as view(dtype) requires
            t.copy_(flat[offset : offset + n].clone().view(t.dtype).reshape(t.shape))
            offset += n


def share_event(trainer: "pl.Trainer", table: torch.Tensor, tensors: Sequence[torch.Tensor]) -> list[list[float]]:
    """The host rows of ``table`` (rank 0's under DDP); under DDP, rank 0's ``tensors`` copied into every rank's.

    Args:
        trainer: the running trainer (``world_size``, ``is_global_zero``, ``strategy``).
        table: ``(layers, columns)`` logged numbers of the event, on the device.
        tensors: what the event changed and every rank must hold identically (clipped tensors,
            warm vectors, values), the same shapes in the same order on every rank.

    Host reads: one on rank 0 (the table alone in a single process; table and tensors under DDP),
    none on the other ranks.
    """
    if trainer.world_size <= 1:
        return table.detach().to("cpu", copy=True).tolist()
    rows = torch.empty(table.shape, dtype=table.dtype)
    if trainer.is_global_zero:
        flat = pack([table, *tensors]).to("cpu", copy=True)
        flat = trainer.strategy.broadcast(flat, src=0)
        unpack_(flat, [rows])
    else:
        flat = trainer.strategy.broadcast(None, src=0)
        unpack_(flat, [rows, *tensors])
    return rows.tolist()
