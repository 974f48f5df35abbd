"""Where numbers come from: a one-line description of the compute device, for results files."""

from __future__ import annotations

import os
import platform

import torch


def device_name(accelerator: str = "auto") -> str:
    """The CUDA card's name, or ``"CPU (<processor>, <cores> cores visible, <threads> torch threads)"``.

    Args:
        accelerator: ``"cpu"`` describes the CPU even where a GPU is present (a run pinned to
            the CPU); anything else describes GPU 0 when CUDA is available.
    """
    if accelerator != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, {torch.get_num_threads()} torch threads)"
