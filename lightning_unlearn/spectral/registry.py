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

The map must be the one the module computes. :func:`linear_map` therefore refuses a subclass
that overrides ``forward`` (``class Scaled(nn.Linear)`` returning ``3 * W x`` is not the map of
``nn.Linear``) unless the subclass is registered itself, and it reads and writes parametrized
weights through their parametrization (see :class:`TensorSlot`): a ``weight_norm``-parametrized
layer computes ``g * v / ||v||``, and writing ``weight`` must go through ``(g, v)``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

Apply = Callable[[Mapping[str, torch.Tensor], torch.Tensor], torch.Tensor]


class UnsupportedLayerError(TypeError):
    """A module with no registered linear map (or one that is not implicitly linear as configured)."""


class TensorSlot:
    """A tensor of a :class:`LinearMap` that is computed from the module's parameters.

    Plain entries of ``LinearMap.tensors`` are live parameters or buffers, read by ``detach()``
    and written in place. A slot stands for a weight that a parametrization computes (e.g.
    ``torch.nn.utils.parametrizations.weight_norm``, where ``weight = g * v / ||v||``): reading it
    evaluates the parametrization, writing it stores the originals given by the
    parametrization's ``right_inverse``, in place (the parameter objects, and so the optimizer's
    references to them, stay the same).
    """

    def __init__(self, module: nn.Module, attr: str, *, legacy_hook=None) -> None:
        self.module = module
        self.attr = attr
        self._legacy = legacy_hook  # torch.nn.utils.weight_norm's pre-forward hook object, if that is the mechanism

    def get(self) -> torch.Tensor:
        """The weight the module computes now (detached)."""
        with torch.no_grad():
            if self._legacy is not None:
                return self._legacy.compute_weight(self.module).detach()
            return getattr(self.module, self.attr).detach()

    def originals(self) -> list[torch.Tensor]:
        """The live tensors that :meth:`set_` writes."""
        if self._legacy is not None:
            return [getattr(self.module, self.attr + "_g"), getattr(self.module, self.attr + "_v")]
        plist = self.module.parametrizations[self.attr]
        if plist.is_tensor:
            return [plist.original]
        return [getattr(plist, f"original{i}") for i in range(plist.ntensors)]

    def set_(self, value: torch.Tensor) -> None:
        """Make the computed weight equal ``value`` by writing the originals in place."""
        with torch.no_grad():
            if self._legacy is not None:
                g, v = self.originals()
                v.copy_(value)
                g.copy_(torch.norm_except_dim(value, 2, self._legacy.dim))
                setattr(self.module, self.attr, self._legacy.compute_weight(self.module))
                return
            plist = self.module.parametrizations[self.attr]
            new = value
            for p in reversed(plist):  # the inverse registration order, as ParametrizationList.right_inverse
                new = p.right_inverse(new)
            news = [new] if plist.is_tensor else list(new)
            for dest, src in zip(self.originals(), news):
                dest.copy_(src)


@dataclass
class LinearMap:
    """The linear part ``f(x) = L(x) - L(0)`` of a layer.

    Attributes:
        apply: ``apply(tensors, x)``: ``x`` of shape ``(B, *input_shape)`` -> ``f(x)`` of shape
            ``(B, *output_shape)``, linear in ``x`` and computed only from ``tensors``.
        tensors: what ``apply`` needs, by name: live module parameters and buffers, or
            :class:`TensorSlot` entries for parametrized weights (filled in by :func:`linear_map`).
        clip_tensor: name of the tensor ``clip_`` changes by default (the kernel); ``f`` must be
            linear in it, so scaling it by ``s`` scales every singular value by ``|s|``.
            ``None`` when the layer has nothing to clip.
        closed_form: optional ``closed_form(tensors, input_shape)`` -> all singular values
            (any order), for layers whose spectrum is explicit (batch norm).
        matrix: optional ``matrix(tensors)`` -> a 2-D ``(out, in)`` matrix with the same nonzero
            singular values as ``f`` at every input shape (``nn.Linear``: the weight, since a
            Linear acting on ``(..., in)`` is ``I (x) W``). Exact solvers use it instead of the
            dense Jacobian; when it returns ``tensors[clip_tensor]`` itself, one exact SVD update
            clips the layer.
        vector_grads: optional ``vector_grads(tensors, v, u)`` -> ``(a, *shape of the clip tensor)``,
            row ``i`` the gradient of ``<u_i, f(v_i)>`` with respect to the clip tensor, for ``v``
            ``(a, *input_shape)`` and ``u`` ``(a, *output_shape)``: a closed form that the
            Gauss-Newton step uses instead of a vmapped autograd gradient (a Conv2d's is a batched
            product of ``u`` with the unfolded ``v``, several times faster on CPU).
    """

    apply: Apply
    tensors: dict[str, torch.Tensor | TensorSlot]
    clip_tensor: str | None = None
    closed_form: Callable[[Mapping[str, torch.Tensor], tuple[int, ...]], torch.Tensor] | None = field(default=None)
    matrix: Callable[[Mapping[str, torch.Tensor]], torch.Tensor] | None = field(default=None)
    vector_grads: Callable[[Mapping[str, torch.Tensor], torch.Tensor, torch.Tensor], torch.Tensor] | None = field(default=None)

    def values(self) -> dict[str, torch.Tensor]:
        """The current value of every tensor, detached (slots evaluated)."""
        return {k: (v.get() if isinstance(v, TensorSlot) else v.detach()) for k, v in self.tensors.items()}

    def value(self, name: str) -> torch.Tensor:
        v = self.tensors[name]
        return v.get() if isinstance(v, TensorSlot) else v.detach()

    def write_(self, name: str, new: torch.Tensor) -> None:
        """Set tensor ``name`` to ``new`` in place (through its parametrization for a slot)."""
        with torch.no_grad():
            t = self.tensors[name]
            if isinstance(t, TensorSlot):
                t.set_(new.to(dtype=t.get().dtype))
            else:
                t.copy_(new)

    def live_tensors(self, name: str) -> list[torch.Tensor]:
        """The module tensors that :meth:`write_` changes for ``name`` (what a DDP broadcast must send)."""
        t = self.tensors[name]
        return t.originals() if isinstance(t, TensorSlot) else [t]

    def is_exact_matrix(self) -> bool:
        """Whether ``matrix`` is the clipped tensor itself (so an SVD update clips exactly)."""
        return self.matrix is not None and self.clip_tensor is not None and getattr(self.matrix, "is_clip_tensor", False)


_REGISTRY: dict[type[nn.Module], Callable[[nn.Module], LinearMap]] = {}


def register_spectral(*module_types: type[nn.Module]) -> Callable:
    """Decorator registering ``fn(module) -> LinearMap`` for each of ``module_types``.

    Lookup walks the module's MRO, so a subclass of ``nn.Conv2d`` uses the ``nn.Conv2d`` entry
    unless it registers its own, provided it does not override ``forward`` (a subclass that
    does computes a different map, and must be registered to be supported).
    """

    def decorator(fn: Callable[[nn.Module], LinearMap]) -> Callable[[nn.Module], LinearMap]:
        for t in module_types:
            _REGISTRY[t] = fn
        return fn

    return decorator


def _label(module: nn.Module, name: str | None) -> str:
    cls = parametrize.type_before_parametrizations(module).__name__
    return f"{name!r} ({cls})" if name else cls


def _registered_entry(module: nn.Module, name: str | None) -> Callable[[nn.Module], LinearMap]:
    cls = parametrize.type_before_parametrizations(module)
    for t in cls.__mro__:
        if t in _REGISTRY:
            # A subclass that overrides forward (anywhere between its own class and the registered
            # base) computes something else than the base's map: never borrow the base's entry.
            for sub in cls.__mro__[: cls.__mro__.index(t)]:
                if "forward" in sub.__dict__:
                    raise UnsupportedLayerError(
                        f"module {_label(module, name)} overrides forward of the registered {t.__name__} (in {sub.__name__}), "
                        f"so its map is not {t.__name__}'s; register one with "
                        f"lightning_unlearn.spectral.register_spectral({cls.__name__})"
                    )
            return _REGISTRY[t]
    supported = ", ".join(sorted(t.__name__ for t in _REGISTRY))
    raise UnsupportedLayerError(
        f"module {_label(module, name)} is not a supported implicitly linear layer; supported types: {supported} "
        "(register more with lightning_unlearn.spectral.register_spectral)"
    )


def _legacy_hooks(module: nn.Module) -> dict[str, object]:
    """``{tensor name: hook}`` for the pre-forward-hook reparametrizations of ``torch.nn.utils``."""
    out = {}
    for hook in module._forward_pre_hooks.values():
        if hasattr(hook, "name") and hasattr(hook, "compute_weight"):
            out[hook.name] = hook
    return out


def _roundtrips(module: nn.Module, make_slot: Callable[[nn.Module], TensorSlot]) -> bool:
    """Whether writing a weight through the parametrization reproduces it (on a copy of the module).

    Checked with a rescaled weight and a rank-one perturbation: ``weight_norm`` passes (its
    ``right_inverse`` is exact), ``spectral_norm`` and ``orthogonal`` do not (their forward
    renormalises whatever is stored, so a clipped weight cannot be represented).
    """
    twin = copy.deepcopy(module)
    slot = make_slot(twin)
    w = slot.get().float()
    if w.numel() == 0:
        return True
    g = torch.Generator().manual_seed(0)
    a = torch.randn(w.shape[0], generator=g).to(w.device)
    b = torch.randn(w[0].numel(), generator=g).to(w.device)
    bump = (a[:, None] * b[None, :]).reshape(w.shape) * (w.norm() / max(1.0, float(a.norm() * b.norm())))
    for target in (0.5 * w, w + 0.3 * bump):
        slot.set_(target)
        back = slot.get().float()
        if not torch.allclose(back, target, rtol=1e-4, atol=1e-6 * float(target.abs().max().clamp_min(1e-30))):
            return False
    return True


def _build(module: nn.Module, fn: Callable[[nn.Module], LinearMap], name: str | None) -> LinearMap:
    legacy = _legacy_hooks(module)
    plist = module.parametrizations if parametrize.is_parametrized(module) else {}
    if not legacy and not plist:
        return fn(module)
    # Inside one ``cached()`` context every read of a parametrized attribute returns the same
    # tensor object, so the entries of the registered map can be matched to their attribute.
    with parametrize.cached():
        lmap = fn(module)
        current = {attr: getattr(module, attr) for attr in list(plist) + list(legacy)}
        matched = {key: next((a for a, v in current.items() if v is t), None) for key, t in lmap.tensors.items()}
    tensors = dict(lmap.tensors)
    for key, attr in matched.items():
        if attr is None:
            continue
        if attr in legacy and not hasattr(module, attr + "_g"):
            raise UnsupportedLayerError(
                f"module {_label(module, name)}: {attr!r} is computed by {type(legacy[attr]).__name__} (a torch.nn.utils "
                "hook that renormalises the stored weight), so a clipped weight cannot be written; remove it or do not clip this layer"
            )
        if attr in legacy:
            # torch.nn.utils.weight_norm: weight = g * v / ||v||, written exactly as v = W, g = ||W||
            # (such a module cannot be deep-copied for the check below once it has run forward)
            tensors[key] = TensorSlot(module, attr, legacy_hook=legacy[attr])
            continue
        make = lambda m, a=attr: TensorSlot(m, a)  # noqa: E731
        if not _roundtrips(module, make):
            kinds = ", ".join(type(p).__name__ for p in plist[attr])
            raise UnsupportedLayerError(
                f"module {_label(module, name)}: {attr!r} is parametrized by {kinds}, whose right_inverse does not "
                "reproduce a clipped weight (its forward renormalises what is stored), so it cannot be clipped; "
                "weight_norm is supported"
            )
        tensors[key] = make(module)
    return LinearMap(apply=lmap.apply, tensors=tensors, clip_tensor=lmap.clip_tensor, closed_form=lmap.closed_form,
                     matrix=lmap.matrix, vector_grads=lmap.vector_grads)


def is_supported(module: nn.Module) -> bool:
    """Whether :func:`linear_map` can build the module's map (registered type, no foreign ``forward``, writable weights)."""
    try:
        linear_map(module)
    except UnsupportedLayerError:
        return False
    return True


def linear_map(module: nn.Module, *, name: str | None = None) -> LinearMap:
    """The registered :class:`LinearMap` of ``module``.

    Parametrized weights (``torch.nn.utils.parametrize``, or the older ``torch.nn.utils.weight_norm``
    hook) are read through their parametrization and written through its ``right_inverse``,
    when that reproduces any weight written (``weight_norm``); otherwise the layer is refused.

    Raises:
        UnsupportedLayerError: no entry is registered for the module's type, the module
            overrides ``forward`` of a registered base class, its weight is parametrized in a way
            that cannot be written, or the layer is not implicitly linear in its configuration;
            the message names the module.
    """
    return _build(module, _registered_entry(module, name), name)


# --------------------------------------------------------------------------- convolutions
@register_spectral(nn.Conv1d, nn.Conv2d, nn.Conv3d)
def _conv(module: nn.Conv1d | nn.Conv2d | nn.Conv3d) -> LinearMap:
    # ``_conv_forward(x, w, None)`` is the convolution without bias, i.e. exactly L(x) - L(0), for
    # every stride, padding, dilation, groups and padding_mode (reflect/replicate/circular pads are
    # linear too). It is a pure function of (x, w): the module is not called and not changed.
    def apply(t: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return module._conv_forward(x, t["weight"], None)

    grads = _conv2d_vector_grads(module) if isinstance(module, (nn.Conv1d, nn.Conv2d)) and not isinstance(module.padding, str) else None
    return LinearMap(apply=apply, tensors={"weight": module.weight}, clip_tensor="weight", vector_grads=grads)


def _conv2d_vector_grads(module: nn.Conv1d | nn.Conv2d):
    """``d <u_i, conv(v_i, W)> / dW`` for every row at once: ``u_i`` times the unfolded ``v_i`` (per group).

    A Conv1d is a Conv2d of height 1. Non-zero padding modes pad ``v`` first, as the forward does.
    """
    one_d = isinstance(module, nn.Conv1d)
    lift = (lambda p: (1, *p)) if one_d else (lambda p: tuple(p))
    kernel, stride, dilation = lift(module.kernel_size), lift(module.stride), lift(module.dilation)
    padding = (0, 0) if module.padding_mode != "zeros" else (lift(module.padding) if not one_d else (0, module.padding[0]))
    groups = module.groups

    def grads(t: Mapping[str, torch.Tensor], v: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        if module.padding_mode != "zeros":
            v = F.pad(v, module._reversed_padding_repeated_twice, mode=module.padding_mode)
        if one_d:
            v, u = v.unsqueeze(2), u.unsqueeze(2)
        a = v.shape[0]
        cols = F.unfold(v, kernel, dilation=dilation, padding=padding, stride=stride)  # (a, C_in k, L)
        cols = cols.reshape(a, groups, -1, cols.shape[-1])
        out = u.reshape(a, groups, -1, cols.shape[-1])  # (a, G, C_out / G, L)
        return torch.matmul(out, cols.transpose(2, 3)).reshape(a, *t["weight"].shape)

    return grads


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


def _weight_matrix(t: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return t["weight"]


_weight_matrix.is_clip_tensor = True  # type: ignore[attr-defined]


@register_spectral(nn.Linear)
def _linear(module: nn.Linear) -> LinearMap:
    # On inputs (..., in_features) a Linear acts as I (x) W: its singular values are W's, repeated.
    return LinearMap(
        apply=lambda t, x: F.linear(x, t["weight"]), tensors={"weight": module.weight}, clip_tensor="weight", matrix=_weight_matrix
    )


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
