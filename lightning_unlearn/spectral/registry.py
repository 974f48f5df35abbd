"""The linear map of a layer at a per-sample input shape, one registered function per layer type.

A layer ``L`` is *implicitly linear* when ``f(x) = L(x) - L(0)`` is linear in ``x``: subtracting
``L(0)`` removes the bias and, for eval-mode batch norm, the shift ``beta - gamma * mean / sqrt(var + eps)``.
Each registered function returns a :class:`LinearMap`: a pure function ``apply(tensors, x)`` that
computes ``f`` on a batch of probes from the named tensors it depends on (the layer's live
parameters and buffers). Estimators call it with detached float32 copies; ``clip_`` calls it with
a leaf copy of the one tensor it changes to get ``d sigma / d theta`` by autograd. No registered
function calls a module's ``forward`` on a batch-norm layer, so no running statistic is ever
written, and none changes the module's train/eval mode.

Users add layer types without editing this file::

    @register_spectral(MyLayer)
    def _my_layer(module: MyLayer) -> LinearMap:
        return LinearMap(apply=lambda t, x: my_linear_part(x, t["weight"]), tensors={"weight": module.weight}, clip_tensor="weight")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

Apply = Callable[[Mapping[str, torch.Tensor], torch.Tensor], torch.Tensor]


@dataclass
class LinearMap:
    """The linear part ``f(x) = L(x) - L(0)`` of a layer.

    Attributes:
        apply: ``apply(tensors, x)``: ``x`` of shape ``(B, *input_shape)`` -> ``f(x)`` of shape
            ``(B, *output_shape)``, linear in ``x`` and computed only from ``tensors``.
        tensors: the live tensors ``apply`` needs, by name (module parameters and buffers).
        clip_tensor: name of the tensor ``clip_`` changes by default (the kernel); ``f`` must be
            linear in it, so scaling it by ``s`` scales every singular value by ``|s|``.
            ``None`` when the layer has nothing to clip.
        closed_form: optional ``closed_form(tensors, input_shape)`` -> all singular values
            (any order), for layers whose spectrum is explicit (batch norm).
    """

    apply: Apply
    tensors: dict[str, torch.Tensor]
    clip_tensor: str | None = None
    closed_form: Callable[[Mapping[str, torch.Tensor], tuple[int, ...]], torch.Tensor] | None = field(default=None)


class UnsupportedLayerError(TypeError):
    """A module with no registered linear map (or one that is not implicitly linear as configured)."""


_REGISTRY: dict[type[nn.Module], Callable[[nn.Module], LinearMap]] = {}


def register_spectral(*module_types: type[nn.Module]) -> Callable:
    """Decorator registering ``fn(module) -> LinearMap`` for each of ``module_types``.

    Lookup walks the module's MRO, so a subclass of ``nn.Conv2d`` uses the ``nn.Conv2d`` entry
    unless it registers its own.
    """

    def decorator(fn: Callable[[nn.Module], LinearMap]) -> Callable[[nn.Module], LinearMap]:
        for t in module_types:
            _REGISTRY[t] = fn
        return fn

    return decorator


def is_supported(module: nn.Module) -> bool:
    """Whether a linear map is registered for ``type(module)`` (or one of its base classes)."""
    return any(t in _REGISTRY for t in type(module).__mro__)


def linear_map(module: nn.Module, *, name: str | None = None) -> LinearMap:
    """The registered :class:`LinearMap` of ``module``.

    Raises:
        UnsupportedLayerError: no entry is registered, or the layer is not implicitly linear in
            its configuration; the message names the module.
    """
    for t in type(module).__mro__:
        if t in _REGISTRY:
            return _REGISTRY[t](module)
    label = f"{name!r} ({type(module).__name__})" if name else type(module).__name__
    supported = ", ".join(sorted(t.__name__ for t in _REGISTRY))
    raise UnsupportedLayerError(
        f"module {label} is not a supported implicitly linear layer; supported types: {supported} "
        "(register more with lightning_unlearn.spectral.register_spectral)"
    )


# --------------------------------------------------------------------------- convolutions
@register_spectral(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def _conv(module: nn.Conv1d | nn.Conv2d | nn.Conv3d) -> LinearMap:
    # ``_conv_forward(x, w, None)`` is the convolution without bias, i.e. exactly L(x) - L(0), for
    # every stride, padding, dilation, groups and padding_mode (reflect/replicate/circular pads are
    # linear too). It is a pure function of (x, w): the module is not called and not changed.
    def apply(t: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return module._conv_forward(x, t["weight"], None)

    return LinearMap(apply=apply, tensors={"weight": module.weight}, clip_tensor="weight")


_CONV_T = {nn.ConvTranspose1d: F.conv_transpose1d, nn.ConvTranspose2d: F.conv_transpose2d, nn.ConvTranspose3d: F.conv_transpose3d}


@register_spectral(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
def _conv_transpose(module: nn.ConvTranspose1d | nn.ConvTranspose2d | nn.ConvTranspose3d) -> LinearMap:
    # The forward's ``output_size`` argument is not supported: the map uses the module's own
    # ``output_padding``, as a plain ``module(x)`` call does.
    fn = next(f for t, f in _CONV_T.items() if isinstance(module, t))
    if module.padding_mode != "zeros":
        raise UnsupportedLayerError(f"{type(module).__name__} with padding_mode={module.padding_mode!r} is not supported (only 'zeros')")

    def apply(t: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return fn(x, t["weight"], None, module.stride, module.padding, module.output_padding, module.groups, module.dilation)

    return LinearMap(apply=apply, tensors={"weight": module.weight}, clip_tensor="weight")


@register_spectral(nn.Linear)
def _linear(module: nn.Linear) -> LinearMap:
    return LinearMap(apply=lambda t, x: F.linear(x, t["weight"]), tensors={"weight": module.weight}, clip_tensor="weight")


# --------------------------------------------------------------------------- batch norm (eval)
def bn_scale(tensors: Mapping[str, torch.Tensor], eps: float) -> torch.Tensor:
    """Per-channel gain ``gamma / sqrt(running_var + eps)`` of an eval-mode batch norm, shape ``(C,)``."""
    return tensors["weight"] / torch.sqrt(tensors["running_var"] + eps)


@register_spectral(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
def _batch_norm(module: nn.modules.batchnorm._BatchNorm) -> LinearMap:
    # Eval-mode BN is the diagonal map x_c -> gamma_c / sqrt(rv_c + eps) * x_c (the shift is in L(0)).
    # It is computed here from gamma, running_var and eps and never by calling the BN forward,
    # which in train mode would write the probes' statistics into the running buffers.
    if module.running_var is None:
        raise UnsupportedLayerError(
            f"{type(module).__name__} without running statistics (track_running_stats=False) normalises by batch "
            "statistics and is not implicitly linear"
        )
    eps = float(module.eps)
    weight = module.weight if module.weight is not None else torch.ones_like(module.running_var)
    tensors = {"weight": weight, "running_var": module.running_var}

    def apply(t: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        # Per-sample input is (C,) or (C, *spatial); batched x has channels at dim 1.
        s = bn_scale(t, eps)
        return x * s.view(1, -1, *([1] * (x.dim() - 2)))

    def closed_form(t: Mapping[str, torch.Tensor], input_shape: tuple[int, ...]) -> torch.Tensor:
        spatial = 1
        for d in input_shape[1:]:
            spatial *= int(d)
        return bn_scale(t, eps).abs().repeat_interleave(spatial)

    return LinearMap(
        apply=apply, tensors=tensors, clip_tensor="weight" if module.weight is not None else None, closed_form=closed_form
    )


# --------------------------------------------------------------------------- compositions
@register_spectral(nn.Sequential)
def _sequential(module: nn.Sequential) -> LinearMap:
    # A composition of linear maps is linear: apply each child's map in order. Tensor names are
    # prefixed with the child's index ("0.weight", "1.running_var"), as in ``state_dict``; the
    # tensor clipped by default is the first child's kernel (never two tensors: scaling both
    # would scale the norm by s**2).
    maps: list[tuple[str, LinearMap]] = []
    for child_name, child in module.named_children():
        try:
            maps.append((child_name, linear_map(child)))
        except UnsupportedLayerError as err:
            raise UnsupportedLayerError(f"in nn.Sequential, child {child_name!r}: {err}") from err
    if not maps:
        raise UnsupportedLayerError("an empty nn.Sequential has no linear map to estimate")
    tensors = {f"{n}.{k}": v for n, m in maps for k, v in m.tensors.items()}
    clip = next((f"{n}.{m.clip_tensor}" for n, m in maps if m.clip_tensor is not None), None)

    def apply(t: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        for n, m in maps:
            x = m.apply({k: t[f"{n}.{k}"] for k in m.tensors}, x)
        return x

    return LinearMap(apply=apply, tensors=tensors, clip_tensor=clip)


@register_spectral(nn.Identity, nn.Flatten)
def _identity_like(module: nn.Module) -> LinearMap:
    if isinstance(module, nn.Flatten):
        start, end = module.start_dim, module.end_dim
        return LinearMap(apply=lambda t, x: torch.flatten(x, start, end), tensors={})
    return LinearMap(apply=lambda t, x: x, tensors={})
