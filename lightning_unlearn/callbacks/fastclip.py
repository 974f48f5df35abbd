"""``FastClip``: keep the spectral norm of every chosen layer at most ``max_norm`` during training.

A thin Lightning wrapper around :mod:`lightning_unlearn.spectral`: it chooses the layers, records
their input shapes, owns their warm vectors, the schedule, the checkpoint state, the logging and
the DDP broadcast. Every number comes from the functional core: a clip event on all layers at once
is :func:`~lightning_unlearn.spectral.clip_event`, the tracking between events
:func:`~lightning_unlearn.spectral.track_norms`, batch-norm gains
:func:`~lightning_unlearn.spectral.bn_gain` and :func:`~lightning_unlearn.spectral.clamp_bn_gain_`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from torch.nn.utils import parametrize
from typing_extensions import override

from lightning_unlearn.callbacks.fastclip_events import ClipRecord
from lightning_unlearn.callbacks.fastclip_sync import share_event
from lightning_unlearn.spectral.batchnorm import bn_gain, clamp_bn_gain_
from lightning_unlearn.spectral.event import EventLayer, clip_event, outcome_rows, outcome_table, solver_kind, to_host
from lightning_unlearn.spectral.registry import LinearMap, UnsupportedLayerError, linear_map
from lightning_unlearn.spectral.settings import ClipSettings, validate_max_norm
from lightning_unlearn.spectral.tracking import track_norms
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

    **Default schedule**: one clip event after optimizer steps 100, 200, 300, ...
    (``every_n_steps=100``; :meth:`should_clip`), on all layers at once, every event certified: after
    it each layer's true norm is at most ``max_norm * (1 + tol)``, ``tol = 0.01``. Between events,
    at the trainer's logging cadence (``Trainer(log_every_n_steps=...)``, default 50;
    :meth:`should_track`), one cheap warm step per layer tracks its norm for the logs.

    An event (:func:`~lightning_unlearn.spectral.clip_event`) estimates each layer's top singular
    values from its warm vectors, moves the ones above ``max_norm`` by a block Gauss-Newton step,
    certifies the result with a deeper block Krylov run with fresh random vectors, and scales the
    kernel of a layer the certification rejects (the fallback); small layers are solved exactly.
    A layer below ``max_norm`` is left bit-identical. Every solver knob (depths, ``k``, ``tol``,
    the opening depth, how often fresh vectors enter, ``certify_every`` for a faster uncertified
    mode, the tracking steps) is a field of ``settings``
    (:class:`~lightning_unlearn.spectral.ClipSettings`). GPU-ready: an event reads the host once
    whatever the number of layers (twice with ``settings.max_steps > 1``).

    **Records and logs.** Each event appends one :class:`~lightning_unlearn.callbacks.ClipRecord` per
    layer to :attr:`records`. The values ``spectral/<layer>/sigma`` (tracked, and after each event),
    ``spectral/<layer>/clipped`` (after each event) and ``spectral/<bn>/gain`` (``bn="free"``) go to
    the trainer's loggers at the step they describe and to ``trainer.callback_metrics``, so that
    ``ModelCheckpoint(monitor=...)`` and ``EarlyStopping(monitor=...)`` can watch a layer's norm.
    :attr:`history` keeps ``(step, layer, kind, value)`` tuples of everything logged. Weights
    change in place under ``no_grad``; the model class, its ``state_dict`` keys, BN running
    statistics, optimizer state and ``.grad`` are untouched.

    **Layers.** Every Conv1d/2d/3d, ConvTranspose1d/2d/3d and Linear of the LightningModule (or the
    names in ``include``, or what :meth:`filter_modules` returns), less the names in ``exclude``.
    Not covered: every other module holding parameters of its own (a custom module with a
    ``weight``, an LSTM, LayerNorm; batch norm aside, see ``bn``), a subclass of a supported type
    that overrides ``forward`` (unless registered with
    :func:`~lightning_unlearn.spectral.register_spectral`) and a parametrized weight whose
    parametrization cannot represent a clipped weight. Each is named once in a WARNING (logger
    ``lightning_unlearn.callbacks.fastclip``) and left unclipped (``on_unsupported="skip"``), or
    raises :class:`~lightning_unlearn.spectral.UnsupportedLayerError` at setup
    (``on_unsupported="raise"``, and always for a name in ``include``); ``exclude`` silences it.
    Input shapes come from a forward pre-hook on the first training forward (or ``input_shapes``);
    a later change of shape re-initialises that layer's vectors with a warning.

    **Batch norm** (``bn``): ``"free"`` (default) leaves BN alone and logs its gain; ``"compose"``
    also clips each ``(conv, bn)`` pair of :meth:`bn_pairs` (never guessed from module order) as
    ``conv -> BN(eval)`` through the kernel; ``"clamp"`` clamps every BN's gain to ``max_norm`` at
    each event (Gouk et al.).

    **DDP**: every rank computes the event, then rank 0's clipped tensors, vectors and logged values
    reach every rank in one ``trainer.strategy.broadcast``, so all ranks hold bit-identical weights
    and log the same numbers. FSDP and DeepSpeed shard parameters: :meth:`setup` raises.

    List this callback before any weight-averaging callback (callbacks run in list order).
    docs/fastclip.md has the maths, the guarantees and the measured costs.

    Args:
        max_norm: target ``c > 0`` (default 1.0).
        every_n_steps: clip after every this many optimizer steps (default 100).
        warmup_steps: no clipping during the first ``warmup_steps`` optimizer steps (default 0).
        include: qualified names (in the LightningModule) of the layers to clip, instead of every
            supported one; a name that cannot be clipped raises.
        exclude: qualified names of modules never clipped, with everything under them (also
            batch norms from ``bn``); each must exist.
        on_unsupported: for discovered modules that cannot be clipped: ``"skip"`` with one
            WARNING per layer (default) or ``"raise"``.
        settings: the solver settings (default ``ClipSettings()``).
        bn: ``"free"``, ``"compose"`` or ``"clamp"``.
        bn_pairs: ``(conv_name, bn_name)`` pairs for ``bn="compose"`` (or override :meth:`bn_pairs`).
        input_shapes: ``{name: per-sample shape}`` overriding the recorded shapes.
        seed: seed of the callback's generator (created on the model's device).

    Example::

        trainer = pl.Trainer(callbacks=[FastClip(max_norm=1.0, every_n_steps=100)])
        # a faster, weaker mode and no tracking: FastClip(settings=ClipSettings(certify_every=5, track_iters=0))
    """

    def __init__(
        self,
        max_norm: float = 1.0,
        every_n_steps: int = 100,
        *,
        warmup_steps: int = 0,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        on_unsupported: OnUnsupported = "skip",
        settings: ClipSettings | None = None,
        bn: BNMode = "free",
        bn_pairs: Sequence[tuple[str, str]] | None = None,
        input_shapes: Mapping[str, Sequence[int]] | None = None,
        seed: int = 0,
    ) -> None:
        self.max_norm = validate_max_norm(max_norm)
        if settings is not None and not isinstance(settings, ClipSettings):
            raise TypeError(f"settings must be a ClipSettings, got {type(settings).__name__}")
        for name, val, low in (("every_n_steps", every_n_steps, 1), ("warmup_steps", warmup_steps, 0)):
            if isinstance(val, bool) or not isinstance(val, int) or val < low:
                raise ValueError(f"{name} must be {'a positive' if low else 'a non-negative'} int, got {val!r}")
        if bn not in BN_MODES:
            raise ValueError(f"unknown bn mode {bn!r}: expected one of {', '.join(BN_MODES)}")
        if on_unsupported not in ("raise", "skip"):
            raise ValueError(f"on_unsupported must be 'raise' or 'skip', got {on_unsupported!r}")
        for name, names in (("include", include), ("exclude", exclude)):
            if isinstance(names, str) or (names is not None and not all(isinstance(n, str) for n in names)):
                raise TypeError(f"{name} must be a sequence of module names, got {names!r}")
        self.settings = settings or ClipSettings()
        self.every_n_steps, self.warmup_steps = every_n_steps, warmup_steps
        self.include = list(include) if include is not None else None
        self.exclude = list(exclude)
        self.on_unsupported = on_unsupported
        self.bn = bn
        self._bn_pairs = [tuple(p) for p in bn_pairs] if bn_pairs is not None else None
        self.input_shapes = {n: tuple(int(d) for d in s) for n, s in (input_shapes or {}).items()}
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
        """Whether to clip after optimizer step ``step_idx`` (0-based). Override for other schedules.

        Default: after every ``every_n_steps``-th step (the ``every_n_steps``-th, the
        ``2 every_n_steps``-th, ...) once more than ``warmup_steps`` steps were taken.
        """
        return (step_idx + 1) % self.every_n_steps == 0 and step_idx + 1 > self.warmup_steps

    def should_track(self, step_idx: int) -> bool:
        """Whether to run the ``settings.track_iters`` tracking steps (and log) after step ``step_idx``.

        Default: at the trainer's logging cadence (``Trainer(log_every_n_steps=...)``, Lightning's
        default 50), when the logged value is actually written. Tracking only feeds the logs and
        the warm start of the next event, which opens with its own estimate, so tracking every
        step (override to ``return True``) buys little and costs ``k`` probe passes per layer.
        """
        return (step_idx + 1) % self._track_every == 0

    def filter_modules(self, model: nn.Module) -> dict[str, nn.Module]:
        """The layers to clip, by qualified name in ``model`` (the LightningModule).

        Default: the names in ``include`` if given, else every Conv1d/2d/3d, ConvTranspose1d/2d/3d
        and Linear, and every other module holding parameters of its own except batch norm (which
        ``bn`` handles) and parametrization containers: those are unsupported unless registered,
        and are skipped with a warning or raise, per ``on_unsupported``. Modules under a name in
        ``exclude`` are left out. Override to choose others.
        """
        if self.include is not None:
            return {n: model.get_submodule(n) for n in self.include if not self._excluded(n)}
        out = {}
        for n, m in model.named_modules():
            if self._excluded(n) or ".parametrizations." in f".{n}." or isinstance(m, parametrize.ParametrizationList):
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

    def _excluded(self, name: str) -> bool:
        return any(name == e or name.startswith(e + ".") for e in self.exclude)

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
        self._discover(pl_module, report=trainer.is_global_zero)
        rank_zero_info(self._schedule_line())

    def _schedule_line(self) -> str:
        """What this callback does in the current fit, in one line (shown once at fit start, with Lightning's own lines)."""
        s = self.settings
        first = (self.warmup_steps // self.every_n_steps + 1) * self.every_n_steps
        certified = "every event certified" if s.certify_every == 1 else f"one event in {s.certify_every} certified"
        tracking = f"norms tracked every {self._track_every} steps" if s.track_iters else "no tracking between events"
        return (f"FastClip: {len(self._layers)} layers clipped to max_norm={self.max_norm:g} after every {self.every_n_steps} "
                f"optimizer steps (the first after step {first}), {certified} (bound max_norm * {1 + s.tol:g}); {tracking}")

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

    def _discover(self, model: nn.Module, *, report: bool) -> None:
        self._remove_hooks()
        self._layers.clear()
        for name in self.exclude:
            try:
                model.get_submodule(name)
            except AttributeError:
                raise ValueError(f"FastClip(exclude=...): no module {name!r} in {type(model).__name__}") from None
        named = self.include is not None
        for name, module in self.filter_modules(model).items():
            try:
                lmap = linear_map(module, name=name)
                if lmap.clip_tensor is None:
                    raise UnsupportedLayerError(f"module {name!r} ({type(module).__name__}) has no tensor to clip")
            except UnsupportedLayerError as err:
                if named or self.on_unsupported == "raise":
                    raise UnsupportedLayerError(f"FastClip: {err}") from err
                if report and name not in self._noted_skips:
                    self._noted_skips.add(name)
                    log.warning("FastClip: layer %r skipped, its norm is not controlled: %s (exclude=[%r] silences this)", name, err, name)
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
            and not self._excluded(n)
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
        if not clip and (self.settings.track_iters == 0 or not self.should_track(step_idx)):
            return
        with torch.no_grad():
            self._use_device(pl_module.device)
            if clip:
                self._run_event(trainer, pl_module, step_idx)
            else:
                self._run_tracking(trainer, pl_module, step_idx)

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

    @staticmethod
    def _event_layer(name: str, layer: _Layer) -> EventLayer:
        return EventLayer(name=name, lmap=layer.lmap, input_shape=layer.state.input_shape, vectors=layer.state.vectors, kind=layer.kind)

    def _run_event(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", step_idx: int) -> None:
        t0 = time.perf_counter()
        self._events += 1
        s = self.settings
        if self.bn == "clamp":
            for bn in self._bn_modules.values():
                clamp_bn_gain_(bn, self.max_norm)
        ready = self._ready_layers()
        outcomes = clip_event([self._event_layer(n, layer) for n, layer in ready], self.max_norm, s, self._generator,
                              certify=s.certifies(self._events), fresh=s.adds_fresh(self._events))
        synced: list[torch.Tensor] = []  # what every DDP rank must hold as rank 0 does
        for (_, layer), out in zip(ready, outcomes):
            layer.state.vectors, layer.state.sigma = out.vectors.contiguous(), out.sigma.contiguous()
            synced += layer.lmap.live_tensors(layer.lmap.clip_tensor) + [layer.state.vectors, layer.state.sigma]
        if self.bn == "clamp":
            synced += [bn.weight for bn in self._bn_modules.values()]
        values = outcome_rows(share_event(trainer, outcome_table(outcomes), synced), outcomes)  # the event's one host read
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
        self._log(trainer, pl_module, step, entries)

    def _run_tracking(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", step_idx: int) -> None:
        # Tracking has no collective: on every rank it steps from the vectors of the last event
        # (identical on all ranks), so the tracked values agree up to kernel non-determinism.
        ready = self._ready_layers()
        tracked = track_norms([self._event_layer(n, layer) for n, layer in ready], self.settings, self._generator)
        for (_, layer), t in zip(ready, tracked):
            if t.vectors is not None:
                layer.state.vectors, layer.state.sigma = t.vectors, t.sigma
        gains = [bn_gain(bn) for bn in self._bn_modules.values()] if self.bn == "free" else []
        tops = [t.sigma[0].float() for t in tracked] + gains
        values = to_host(torch.stack(tops)) if tops else []  # the tracking call's one host read
        entries = [(name, "sigma", v) for (name, _), v in zip(ready, values)]
        entries += [(name, "gain", v) for name, v in zip(self._bn_modules if gains else (), values[len(ready):])]
        self._log(trainer, pl_module, step_idx + 1, entries)

    def _log(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", step: int, entries: list[tuple[str, str, float]]) -> None:
        # Two sinks, both from the host values read above (so logging adds no host synchronisation):
        # - the trainer's loggers, at the step the values describe (LearningRateMonitor's way).
        #   LightningModule.log would hold an event's value until the trainer's next logging step
        #   and repeat it at every logging step of the epoch;
        # - trainer.callback_metrics, through LightningModule.log(logger=False) from this hook, so
        #   ModelCheckpoint / EarlyStopping can monitor a layer. The values are CPU tensors (no
        #   device round trip) and the same on every DDP rank after an event (rank 0's), so no
        #   sync_dist; every rank logs them, as monitors on every rank need them.
        metrics = {}
        for layer, kind, value in entries:
            self.history.append((step, layer, kind, value))
            metrics[f"spectral/{layer}/{kind}"] = value
        if not metrics:
            return
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)
        pl_module.log_dict({k: torch.tensor(v, dtype=torch.float64) for k, v in metrics.items()},
                           on_step=True, on_epoch=False, logger=False, sync_dist=False)
