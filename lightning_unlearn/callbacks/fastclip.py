"""``FastClip``: keep the spectral norm of every chosen layer at most ``max_norm`` during training.

A thin Lightning wrapper around :mod:`lightning_unlearn.spectral`: it owns the per-layer warm
vectors, the schedule, the checkpoint state, logging and the DDP broadcast; the maths (the clip
event on all layers at once) is :func:`lightning_unlearn.spectral.clip_event`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torch.nn.utils import parametrize
from typing_extensions import override

from lightning_unlearn.callbacks.fastclip_events import ClipRecord
from lightning_unlearn.spectral.dense import exact_spectrum
from lightning_unlearn.spectral.estimators import rayleigh_ritz_many, tracking_basis, tracking_next
from lightning_unlearn.spectral.event import EventLayer, clip_event, outcomes_to_host, solver_kind, to_host
from lightning_unlearn.spectral.operator import Operator, full_precision
from lightning_unlearn.spectral.registry import LinearMap, UnsupportedLayerError, bn_scale, linear_map
from lightning_unlearn.spectral.settings import ClipSettings, validate_max_norm
from lightning_unlearn.strategies import require_whole_weights

log = logging.getLogger(__name__)

BNMode = Literal["free", "compose", "clamp"]
BN_MODES = ("free", "compose", "clamp")
OnUnsupported = Literal["raise", "skip"]
STATE_VERSION = 1
DEFAULT_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)


@dataclass
class LayerState:
    """Resumable per-layer solver state (kept on CPU in checkpoints).

    Attributes:
        input_shape: per-sample input shape the operator is taken at (``None`` until seen).
        vectors: ``(k, n)`` warm right singular vectors (``None`` until the first event).
        sigma: ``(k,)`` last estimates, descending.
        fallbacks: how many clip events needed the kernel-scaling fallback.
    """

    input_shape: tuple[int, ...] | None = None
    vectors: torch.Tensor | None = None
    sigma: torch.Tensor | None = None
    fallbacks: int = 0


@dataclass
class _Layer:
    lmap: LinearMap
    shape_module: nn.Module  # the module whose input shape defines the operator
    state: LayerState = field(default_factory=LayerState)
    kind: str | None = None  # solver kind at the current input shape ("matrix", "exact", "krylov")


class FastClip(Callback):
    """Clip the true operator norm of Conv / Linear layers (at their real input size) to ``max_norm``.

    Every ``every_n_steps`` optimizer steps (:meth:`should_clip`) one clip event runs on all
    layers at once (:func:`lightning_unlearn.spectral.clip_event`): a warm block Krylov estimate,
    a block Gauss-Newton step on the values above ``max_norm (1 + tol/2)``, a certification by a
    deeper block Krylov run with fresh random vectors and, for a layer it rejects, an exact
    scaling of the kernel by ``max_norm (1 - headroom) / sigma_1`` (the fallback; with
    ``settings.max_steps > 1`` a layer rejected by far takes more steps first). After every
    event each layer's true norm is at most ``max_norm * (1 + tol)``. Small layers (every small
    ``nn.Linear``, and layers whose dense Jacobian is small, see ``ClipSettings.dense_max_entries``)
    are solved exactly. A layer whose norm is below ``max_norm`` is left bit-identical; the
    Gauss-Newton step moves only the values above it, the fallback rescales the whole kernel (by
    the remaining excess only: the records say by how much).

    GPU-ready: an event reads the host once whatever the number of layers (one transfer of the
    logged values; twice with ``max_steps > 1``), its iteration counts are fixed and its
    per-layer decisions are masks, random vectors come from a generator on the model's device,
    the Rayleigh-Ritz eigendecompositions of a phase are one batched call, and probes run in full
    float32 (TF32 off while it runs, restored after).

    Each event appends one :class:`~lightning_unlearn.callbacks.ClipRecord` per layer to
    :attr:`records` (step, layer, norm before and after, certified, seconds, ...), and logs
    ``spectral/<name>/clipped`` (and ``spectral/<name>/sigma``) to the trainer's loggers. Between
    events, at the trainer's logging cadence (:meth:`should_track`), one cheap warm step per
    layer tracks ``spectral/<name>/sigma``. :attr:`history` keeps ``(step, layer, kind, value)``
    tuples of everything logged. Weights change in place under ``no_grad``; the model class, its
    ``state_dict`` keys, BN running statistics, optimizer state and ``.grad`` are untouched.

    Layers: every Conv1d/2d/3d, ConvTranspose1d/2d/3d and Linear of the LightningModule, or the
    names in ``modules``, or whatever :meth:`filter_modules` returns. Every other module holding
    parameters of its own (a custom module with a ``weight``, an LSTM, LayerNorm; batch norm
    aside, see ``bn``) is unsupported: logged once and skipped (``on_unsupported="skip"``) or an
    error (``"raise"``). A subclass that overrides ``forward`` of a supported type is unsupported
    unless registered (:func:`~lightning_unlearn.spectral.register_spectral`); a parametrized weight
    is clipped through its parametrization when that can represent the clipped weight
    (``weight_norm``), else the layer is unsupported. Input shapes come from a forward pre-hook
    on the first training forward (or ``input_shapes``); a later change of shape re-initialises
    that layer's vectors with a warning.

    Batch norm (``bn``): ``"free"`` (default) leaves BN alone and logs its gain
    ``max|gamma| / sqrt(running_var + eps)`` as ``spectral/<bn>/gain``; ``"compose"`` also clips
    each ``(conv, bn)`` pair of :meth:`bn_pairs` (never guessed from module order) as
    ``conv -> BN(eval)`` through the kernel, after clipping the conv itself; ``"clamp"`` sets
    ``gamma_i <- clamp(gamma_i, +-c sqrt(rv_i + eps))`` on every BatchNorm at each event (Gouk).

    Modes: by default every event is certified. With ``certify_every=K`` only the first event and
    every ``K``-th after it are; the others end with a warm re-estimate and a scaling on it
    (uncertified: the true norm may then exceed the bound until the next certified event; each
    :class:`ClipRecord` says which). Measured on CIFAR-10 SmallCNN training clipped every 10 steps
    with ``certify_every=5``: true norms up to 1.12 ``max_norm`` after uncertified events, which cost
    about 0.6 of a certified one (``benchmarks/results/fastclip_training.md``).

    DDP: every rank computes the event, then rank 0's clipped tensors and vectors are broadcast
    (seeding alone does not survive non-deterministic GPU kernels), so all ranks hold bit-identical
    weights. FSDP and DeepSpeed shard parameters: :meth:`setup` raises.

    List this callback before any weight-averaging callback (callbacks run in list order).

    Args:
        max_norm: target ``c > 0`` (default 1.0).
        every_n_steps: clip every this many optimizer steps (default 100).
        warmup_steps: no clipping during the first ``warmup_steps`` optimizer steps.
        warmup_iters: Krylov depth of the opening estimate of a layer with no warm vectors yet
            (default 20).
        track_iters: warm tracking steps per tracking call (1; 0 disables tracking and its
            logging between events); tracking calls are chosen by :meth:`should_track`.
        settings: the solver settings (:class:`~lightning_unlearn.spectral.ClipSettings`: depths,
            ``k``, tolerances, headroom, fresh vectors, exact-solve threshold). The keyword
            arguments ``k``, ``tol``, ``two_sided``, ``est_depth``, ``cert_depth``, ``max_steps`` and
            ``headroom`` override its fields when given (``None``: the settings' value).
        k, tol, two_sided, est_depth, cert_depth, max_steps, headroom: see ``settings``.
        bn: ``"free"``, ``"compose"`` or ``"clamp"``.
        bn_pairs: ``(conv_name, bn_name)`` pairs for ``bn="compose"`` (or override :meth:`bn_pairs`).
        modules: qualified names (in the LightningModule) of the layers to clip; unsupported
            ones raise.
        input_shapes: ``{name: per-sample shape}`` overriding the recorded shapes.
        on_unsupported: for discovered (not named) modules that cannot be clipped: ``"skip"``
            with a note logged once per layer (default) or ``"raise"``.
        fresh_every: append ``settings.fresh`` fresh random vectors to the certification every
            this many events (default 1: every event; 0 never). The warm vectors span the
            directions clipped at the previous event; a direction that SGD lifted from lower in
            the spectrum has almost no component in them, and a warm-only certification can
            miss it (measured: true norms up to 1.0145 c after CIFAR-10 events with fresh
            vectors every 10th event only).
        certify_every: certify every this many events (default 1: all; see Modes).
        seed: seed of the callback's generator (created on the model's device).

    Example::

        trainer = pl.Trainer(callbacks=[FastClip(max_norm=1.0, every_n_steps=100)])
    """

    def __init__(
        self,
        max_norm: float = 1.0,
        every_n_steps: int = 100,
        *,
        warmup_steps: int = 0,
        warmup_iters: int = 20,
        track_iters: int = 1,
        k: int | None = None,
        tol: float | None = None,
        two_sided: bool | None = None,
        bn: BNMode = "free",
        bn_pairs: Sequence[tuple[str, str]] | None = None,
        modules: Sequence[str] | None = None,
        input_shapes: Mapping[str, Sequence[int]] | None = None,
        on_unsupported: OnUnsupported = "skip",
        est_depth: int | None = None,
        cert_depth: int | None = None,
        max_steps: int | None = None,
        fresh_every: int = 1,
        seed: int = 0,
        headroom: float | None = None,
        settings: ClipSettings | None = None,
        certify_every: int = 1,
    ) -> None:
        self.max_norm = validate_max_norm(max_norm)
        if settings is not None and not isinstance(settings, ClipSettings):
            raise TypeError(f"settings must be a ClipSettings, got {type(settings).__name__}")
        self.settings = (settings or ClipSettings()).replace(
            k=k, tol=tol, two_sided=two_sided, est_depth=est_depth, cert_depth=cert_depth, max_steps=max_steps, headroom=headroom
        )
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"every_n_steps must be a positive int, got {every_n_steps!r}")
        for nm, val in (("warmup_steps", warmup_steps), ("warmup_iters", warmup_iters), ("track_iters", track_iters), ("fresh_every", fresh_every)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 0:
                raise ValueError(f"{nm} must be a non-negative int, got {val!r}")
        if isinstance(certify_every, bool) or not isinstance(certify_every, int) or certify_every < 1:
            raise ValueError(f"certify_every must be a positive int, got {certify_every!r}")
        if bn not in BN_MODES:
            raise ValueError(f"unknown bn mode {bn!r}: expected one of {', '.join(BN_MODES)}")
        if on_unsupported not in ("raise", "skip"):
            raise ValueError(f"on_unsupported must be 'raise' or 'skip', got {on_unsupported!r}")
        self.every_n_steps = every_n_steps
        self.warmup_steps, self.warmup_iters, self.track_iters = warmup_steps, warmup_iters, track_iters
        self.fresh_every, self.certify_every = fresh_every, certify_every
        self.bn = bn
        self._bn_pairs = [tuple(p) for p in bn_pairs] if bn_pairs is not None else None
        self.modules = list(modules) if modules is not None else None
        self.input_shapes = {n: tuple(int(d) for d in s) for n, s in (input_shapes or {}).items()}
        self.on_unsupported = on_unsupported
        self.seed = seed
        self.records: list[ClipRecord] = []  # one per layer per event; not checkpointed
        self.history: list[tuple[int, str, str, float]] = []  # (step, layer, "sigma"|"clipped"|"gain", value); not checkpointed
        self._generator = torch.Generator().manual_seed(seed)
        self._pending_rng: torch.Tensor | None = None
        self._last_step = 0
        self._events = 0
        self._layers: dict[str, _Layer] = {}
        self._states: dict[str, LayerState] = {}
        self._bn_modules: dict[str, nn.modules.batchnorm._BatchNorm] = {}
        self._hooks: list[Any] = []
        self._warned: set[str] = set()
        self._noted_skips: set[str] = set()
        self._track_every = 50

    # ------------------------------------------------------------------ settings, read-only views
    @property
    def k(self) -> int:
        return self.settings.k

    @property
    def tol(self) -> float:
        return self.settings.tol

    @property
    def two_sided(self) -> bool:
        return self.settings.two_sided

    @property
    def headroom(self) -> float:
        return self.settings.resolved_headroom

    @property
    def num_events(self) -> int:
        """Clip events run so far (restored from checkpoints)."""
        return self._events

    @property
    def layer_shapes(self) -> dict[str, tuple[int, ...] | None]:
        """``{layer name: per-sample input shape}`` of every clipped layer (``None`` before its first training forward)."""
        return {name: layer.state.input_shape for name, layer in self._layers.items()}

    # ------------------------------------------------------------------ override points
    def should_clip(self, step_idx: int) -> bool:
        """Whether to clip after optimizer step ``step_idx`` (0-based). Override for other schedules."""
        return (step_idx + 1) % self.every_n_steps == 0 and step_idx + 1 > self.warmup_steps

    def should_track(self, step_idx: int) -> bool:
        """Whether to run the ``track_iters`` tracking steps (and log) after step ``step_idx``.

        Default: at the trainer's logging cadence (``Trainer(log_every_n_steps=...)``, Lightning's
        default 50), when the logged value is actually written. Tracking only feeds the logs and
        the warm start of the next event, which opens with its own estimate, so tracking every
        step (override to ``return True``) buys little and costs ``k`` probe passes per layer.
        """
        return (step_idx + 1) % self._track_every == 0

    def filter_modules(self, model: nn.Module) -> dict[str, nn.Module]:
        """The layers to clip, by qualified name in ``model`` (the LightningModule).

        Default: the names in ``modules`` if given, else every Conv1d/2d/3d, ConvTranspose1d/2d/3d
        and Linear, and every other module holding parameters of its own except batch norm (which
        ``bn`` handles) and parametrization containers: those are unsupported unless registered,
        and are skipped with a note or raise, per ``on_unsupported``. Override to choose others.
        """
        if self.modules is not None:
            return {n: model.get_submodule(n) for n in self.modules}
        out = {}
        for n, m in model.named_modules():
            if ".parametrizations." in f".{n}." or isinstance(m, parametrize.ParametrizationList):
                continue
            if isinstance(m, DEFAULT_TYPES) or (
                not isinstance(m, nn.modules.batchnorm._BatchNorm) and any(True for _ in m.parameters(recurse=False))
            ):
                out[n] = m
        return out

    def bn_pairs(self, model: nn.Module) -> list[tuple[str, str]]:
        """``(conv_name, bn_name)`` pairs clipped as compositions when ``bn="compose"``.

        Default: the ``bn_pairs`` argument. Pairs are never guessed from module order (a BN need
        not follow the conv it is listed after); override to derive them from your architecture.
        """
        return list(self._bn_pairs or [])

    # ------------------------------------------------------------------ state
    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(max_norm=self.max_norm)

    @override
    def state_dict(self) -> dict[str, Any]:
        layers = {}
        for name, st in self._states.items():
            layers[name] = {
                "input_shape": list(st.input_shape) if st.input_shape is not None else None,
                "vectors": st.vectors.detach().cpu().clone() if st.vectors is not None else None,
                "sigma": st.sigma.detach().cpu().clone() if st.sigma is not None else None,
                "fallbacks": st.fallbacks,
            }
        rng = self._pending_rng if self._pending_rng is not None else self._generator.get_state()
        return {"version": STATE_VERSION, "last_step": self._last_step, "events": self._events, "rng_state": rng, "layers": layers}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        version = state_dict.get("version")
        if version != STATE_VERSION:
            raise ValueError(f"FastClip state version {version!r} is not supported (expected {STATE_VERSION})")
        self._last_step = int(state_dict["last_step"])
        self._events = int(state_dict["events"])
        self._set_rng(state_dict["rng_state"])
        for name, s in state_dict["layers"].items():
            st = LayerState(
                input_shape=tuple(s["input_shape"]) if s["input_shape"] is not None else None,
                vectors=s["vectors"], sigma=s["sigma"], fallbacks=int(s["fallbacks"]),
            )
            self._states[name] = st
            if name in self._layers:
                self._layers[name].state = st

    def _set_rng(self, state: torch.Tensor) -> None:
        try:
            self._generator.set_state(state)
            self._pending_rng = None
        except RuntimeError:  # a state saved by a generator of another device type: applied in setup, or reseeded
            self._pending_rng = state

    # ------------------------------------------------------------------ setup
    @override
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        if stage != "fit":
            return
        require_whole_weights(trainer.strategy, "FastClip")
        self._track_every = max(1, int(getattr(trainer, "log_every_n_steps", 50) or 50))
        self._discover(pl_module)

    def _use_device(self, device: torch.device) -> None:
        # Random vectors are drawn on the model's device (no host-to-device copy per event), from
        # the callback's own generator, never the global RNG. It moves there at the first event
        # (at setup the model may not be on its device yet); a state saved by a generator of
        # that device type (a resumed run) is restored.
        if self._generator.device == device or (device.type == "cpu" and self._generator.device.type == "cpu"):
            return
        new = torch.Generator(device=device).manual_seed(self.seed)
        if self._pending_rng is not None:
            try:
                new.set_state(self._pending_rng)
            except RuntimeError:
                rank_zero_warn("FastClip: the saved random state belongs to another device type; reseeded from `seed`")
            self._pending_rng = None
        self._generator = new

    def _discover(self, model: nn.Module) -> None:
        self._remove_hooks()
        self._layers.clear()
        chosen = self.filter_modules(model)
        named = self.modules is not None
        for name, module in chosen.items():
            try:
                lmap = linear_map(module, name=name)
                if lmap.clip_tensor is None:
                    raise UnsupportedLayerError(f"module {name!r} ({type(module).__name__}) has no tensor to clip")
            except UnsupportedLayerError as err:
                if named or self.on_unsupported == "raise":
                    raise UnsupportedLayerError(f"FastClip: {err}") from err
                if name not in self._noted_skips:
                    self._noted_skips.add(name)
                    log.info("FastClip: layer %r skipped: %s", name, err)
                continue
            self._add_layer(name, lmap, module)
        if self.bn == "compose":
            pairs = self.bn_pairs(model)
            if not pairs:
                raise ValueError("bn='compose' needs (conv_name, bn_name) pairs: pass bn_pairs=... or override bn_pairs(model)")
            for conv_name, bn_name in pairs:
                conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
                if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
                    raise ValueError(f"bn_pairs: {bn_name!r} is a {type(bn).__name__}, not a BatchNorm")
                self._add_layer(f"{conv_name}+{bn_name}", linear_map(nn.Sequential(conv, bn)), conv)
        self._bn_modules = {
            n: m for n, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_var is not None and m.weight is not None
        }

    def _add_layer(self, name: str, lmap: LinearMap, shape_module: nn.Module) -> None:
        state = self._states.setdefault(name, LayerState())
        if name in self.input_shapes:
            state.input_shape = self.input_shapes[name]
        self._layers[name] = _Layer(lmap=lmap, shape_module=shape_module, state=state)
        self._hooks.append(shape_module.register_forward_pre_hook(self._make_shape_hook(name)))

    def _make_shape_hook(self, name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            if not module.training or not args or not isinstance(args[0], torch.Tensor) or name in self.input_shapes:
                return
            layer = self._layers.get(name)
            if layer is None:
                return
            state = layer.state
            shape = tuple(args[0].shape[1:])
            if state.input_shape is None:
                state.input_shape = shape
            elif state.input_shape != shape:
                if name not in self._warned:
                    rank_zero_warn(f"FastClip: input shape of {name!r} changed from {state.input_shape} to {shape}; re-initialising its vectors")
                    self._warned.add(name)
                state.input_shape, state.vectors, state.sigma = shape, None, None
                layer.kind = None

        return hook

    def _remove_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    @override
    def teardown(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        if stage == "fit":
            self._remove_hooks()

    # ------------------------------------------------------------------ schedule
    @override
    def on_train_batch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", outputs: Any, batch: Any, batch_idx: int) -> None:
        # Lightning has no after-optimizer-step callback hook (Lightning-AI/pytorch-lightning#11688), so we act
        # here, after every batch, but only when trainer.global_step (the number of optimizer
        # steps taken so far, 1 after the first) has moved past the last step we handled. With
        # accumulate_grad_batches=N the global step advances once every N batches, so this runs
        # exactly once per optimizer step and never between the micro-batches of one step. The
        # counter starts at 0: the first action comes after the first optimizer step (N batches),
        # never before any update. Same guard as lightning's WeightAveraging callback.
        if trainer.global_step <= self._last_step:
            return
        self._last_step = trainer.global_step
        step_idx = trainer.global_step - 1
        clip = self.should_clip(step_idx)
        if not clip and (self.track_iters == 0 or not self.should_track(step_idx)):
            return
        with torch.no_grad():
            self._use_device(pl_module.device)
            if clip:
                self._run_event(trainer, step_idx)
            else:
                self._run_tracking(trainer, step_idx)

    def _ready_layers(self) -> list[tuple[str, _Layer]]:
        ready = []
        for name, layer in self._layers.items():
            if layer.state.input_shape is None:
                if name not in self._warned:
                    rank_zero_warn(f"FastClip: layer {name!r} saw no training forward yet; not clipped")
                    self._warned.add(name)
                continue
            if layer.kind is None:
                layer.kind = solver_kind(layer.lmap, layer.state.input_shape, self.settings)
            ready.append((name, layer))
        return ready

    def _run_event(self, trainer: "pl.Trainer", step_idx: int) -> None:
        t0 = time.perf_counter()
        self._events += 1
        fresh = self.fresh_every > 0 and self._events % self.fresh_every == 0
        certify = (self._events - 1) % self.certify_every == 0
        if self.bn == "clamp":
            for bn in self._bn_modules.values():
                bound = self.max_norm * torch.sqrt(bn.running_var.float() + bn.eps)
                bn.weight.copy_(torch.maximum(torch.minimum(bn.weight.float(), bound), -bound).to(bn.weight.dtype))
        ready = self._ready_layers()
        layers = [
            EventLayer(name=name, lmap=layer.lmap, input_shape=layer.state.input_shape, vectors=layer.state.vectors, kind=layer.kind)
            for name, layer in ready
        ]
        outcomes = clip_event(layers, self.max_norm, self.settings, self._generator, certify=certify, fresh=fresh,
                              init_depth=self.warmup_iters)
        for (_name, layer), out in zip(ready, outcomes):
            layer.state.vectors, layer.state.sigma = out.vectors.contiguous(), out.sigma.contiguous()
        self._broadcast([layer for _, layer in ready])
        values = outcomes_to_host(outcomes)  # the event's one transfer of logged values
        seconds = time.perf_counter() - t0
        step = step_idx + 1
        entries = []
        for (name, layer), v in zip(ready, values):
            if v["fallback"]:
                layer.state.fallbacks += 1
                log.info("FastClip: layer %r used the scaling fallback (%d so far)", name, layer.state.fallbacks)
            self.records.append(ClipRecord(
                step=step, layer=name, norm_before=v["before"], norm_after=v["after"], certified=v["certified"], seconds=seconds,
                event=self._events, steps=v["steps"], prescaled=v["prescaled"], fallback=v["fallback"], exact=v["exact"],
                scale=v["scale"],
            ))
            entries += [(name, "sigma", v["after"]), (name, "clipped", v["after"])]
        self._log(trainer, step, entries)

    def _run_tracking(self, trainer: "pl.Trainer", step_idx: int) -> None:
        ready = self._ready_layers()
        tops: list[torch.Tensor] = []
        names: list[str] = []
        with full_precision():
            kry = []
            for name, layer in ready:
                op = Operator(layer.lmap, layer.state.input_shape)
                st = layer.state
                if layer.kind != "krylov":
                    tops.append(exact_spectrum(op, with_vectors=False).sigma[0])
                    names.append(name)
                    continue
                v = st.vectors
                if v is None or tuple(v.shape) != (min(self.settings.k, op.n), op.n):
                    v = op.random_block(min(self.settings.k, op.n), self._generator)
                kry.append((name, layer, op, v.to(op.device)))
            for _ in range(max(1, self.track_iters)):
                bases = [tracking_basis(op, v) for _, _, op, v in kry]
                ritz = rayleigh_ritz_many(bases, [b.q.shape[0] for b in bases])
                kry = [(n, lay, op, tracking_next(b, r)) for (n, lay, op, _), b, r in zip(kry, bases, ritz)]
            for (name, layer, _, v), r in zip(kry, ritz if kry else []):
                layer.state.vectors, layer.state.sigma = v.contiguous(), r.sigma.contiguous()
                tops.append(r.sigma[0])
                names.append(name)
        gains = []
        if self.bn == "free":
            for bn in self._bn_modules.values():
                gains.append(bn_scale({"weight": bn.weight.detach().float(), "running_var": bn.running_var.float()}, float(bn.eps)).abs().max())
        values = to_host(torch.stack([t.float().reshape(()) for t in tops + gains])) if tops or gains else []
        entries = [(n, "sigma", val) for n, val in zip(names, values)]
        entries += [(n, "gain", val) for n, val in zip(self._bn_modules, values[len(names):])]
        self._log(trainer, step_idx + 1, entries)

    def _broadcast(self, layers: list[_Layer]) -> None:
        # Under DDP every rank ran the same event, but GPU kernels are not bit-deterministic, so
        # the results may differ in the last bits. Rank 0's clipped tensors, BN gains (clamp) and
        # vectors are sent to every rank; every rank makes the same calls in the same order (all
        # layers, changed or not), as collectives require.
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return
        tensors: list[torch.Tensor] = []
        for layer in layers:
            if layer.lmap.clip_tensor is not None:
                tensors += layer.lmap.live_tensors(layer.lmap.clip_tensor)
            if layer.state.vectors is not None:
                tensors += [layer.state.vectors, layer.state.sigma]
        if self.bn == "clamp":
            tensors += [bn.weight for bn in self._bn_modules.values()]
        for t in tensors:
            dist.broadcast(t.data, src=0)

    def _log(self, trainer: "pl.Trainer", step: int, entries: list[tuple[str, str, float]]) -> None:
        # Values were gathered in one transfer; writing plain floats to the loggers directly (not
        # through LightningModule.log, which would turn each into a device tensor and read it back)
        # keeps logging free of further host synchronisation.
        metrics = {}
        for layer, kind, value in entries:
            self.history.append((step, layer, kind, value))
            metrics[f"spectral/{layer}/{kind}"] = value
        if metrics and trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)
