"""Batch norm outside compositions: its gain (what FastClip logs under ``bn="free"``) and the gain clamp (``bn="clamp"``).

An eval-mode batch norm is the diagonal map ``x_c -> gamma_c / sqrt(rv_c + eps) * x_c`` (its shift
is no part of the linear map), so its operator norm is the largest ``|gamma_c| / sqrt(rv_c + eps)``
(:func:`bn_gain`). Clamping every ``gamma_c`` to ``+-c sqrt(rv_c + eps)`` bounds it by ``c`` exactly
(:func:`clamp_bn_gain_`; Gouk et al., *Regularisation of neural networks by enforcing Lipschitz
continuity*, Machine Learning 2021). Both read ``gamma``, ``running_var`` and ``eps`` only, never the
module's forward, so no running statistic is ever written.
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_unlearn.spectral.registry import bn_scale

BatchNorm = nn.modules.batchnorm._BatchNorm


def bn_gain(bn: BatchNorm) -> torch.Tensor:
    """``max_c |gamma_c| / sqrt(running_var_c + eps)``: the eval-mode operator norm, a 0-dim float32 tensor on ``bn``'s device.

    Example:
        >>> import torch
        >>> bn = torch.nn.BatchNorm1d(2, eps=0.0)
        >>> _ = bn.weight.data.copy_(torch.tensor([1.0, -3.0])); _ = bn.running_var.fill_(4.0)
        >>> float(bn_gain(bn))
        1.5
    """
    return bn_scale({"weight": bn.weight.detach().float(), "running_var": bn.running_var.float()}, float(bn.eps)).abs().max()


def clamp_bn_gain_(bn: BatchNorm, max_norm: float) -> None:
    """Set ``gamma_c <- clamp(gamma_c, -c sqrt(rv_c + eps), c sqrt(rv_c + eps))`` in place, so that :func:`bn_gain` ``<= c``.

    Channels already within the bound keep their ``gamma`` bit for bit; ``running_var``, the bias
    and the running mean are not touched.

    Example:
        >>> import torch
        >>> bn = torch.nn.BatchNorm1d(2, eps=0.0)
        >>> _ = bn.weight.data.copy_(torch.tensor([1.0, -3.0])); _ = bn.running_var.fill_(4.0)
        >>> clamp_bn_gain_(bn, 1.0)
        >>> bn.weight.tolist()
        [1.0, -2.0]
    """
    with torch.no_grad():
        bound = max_norm * torch.sqrt(bn.running_var.float() + bn.eps)
        bn.weight.copy_(torch.maximum(torch.minimum(bn.weight.float(), bound), -bound).to(bn.weight.dtype))
