"""The unlearning phase: a request, an injected method object, and the mixin that swaps the objective.

A user's ``LightningModule`` keeps its own ``forward`` (pixels in ``[0, 1]`` -> logits) and
``training_step``. Mixing :class:`UnlearningMixin` in *first*::

    class Model(UnlearningMixin, MyClassifier): ...

makes ``model.start_unlearning(method, request)`` switch the module into its unlearning
phase: the next ``trainer.fit(model)`` trains on the method's data with the method's loss and
optimizer, on the same kind of ``Trainer`` (so Lightning strategies such as DDP apply).
``model.stop_unlearning()`` switches back. Outside the phase every hook delegates to the
user's class.

What a method needs that depends on the fitted model (a frozen snapshot of the original
model, AMUN's adversarial set, SalUn's mask) is built in :meth:`UnlearningMethod.setup`,
called when Lightning first asks the module for its train dataloader (after ``on_fit_start``:
the model is then on its device and, under DDP, the process group exists), right before the
method's loader is made. ``configure_optimizers`` runs *before* ``on_fit_start``.

The phase trains on its request only. ``trainer.fit(model, train_dataloaders=...)`` (or with
a datamodule) would replace the method's data, so it raises at ``on_train_start``, before any
step and before the method built anything; validation loaders are fine. The phase lasts the
method's ``epochs`` on every path: a ``Trainer`` with fewer ``max_epochs`` raises at
``on_fit_start``, one with more (or Lightning's default) stops after ``epochs``.

Exact resume. That state is part of every checkpoint of the unlearning fit: the mixin's
``on_save_checkpoint`` stores :meth:`UnlearningMethod.state_dict` under the key
``"unlearning"`` (a ``version``, the method's name, hyperparameters, a summary of the request
and the method's :meth:`~UnlearningMethod.fit_state`: AMUN's adversarial set, the SalUn mask
and θ_o's masked-out weights, frozen copies, TRW's similarity and beta). To resume, enter the
same phase on a fresh module and fit from the checkpoint::

    model.start_unlearning(method, request)   # same method, hyperparameters and request
    trainer.fit(model, ckpt_path="last.ckpt")

``on_load_checkpoint`` hands the state to the method, which then gets
:meth:`UnlearningMethod.restore` instead of :meth:`UnlearningMethod.setup`: nothing is rebuilt
from the partly unlearned weights, so on CPU the resumed phase ends with the same weights as an
uninterrupted one, from an epoch checkpoint or from one taken inside an epoch (the method
loaders are resumable mid-epoch, see :mod:`lightning_unlearn.data.sampler`).
"""

from __future__ import annotations

import copy
import inspect
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_unlearn.data.sampler import ResumableDataLoader, ShardedEpochSampler, restore_loader_positions
from lightning_unlearn.data.transforms import augment, batch_generator, to_pixels
from lightning_unlearn.models.normalize import Normalizer, apply_normalizer
from lightning_unlearn.search_space import Axis
from lightning_unlearn.seeding import derive_seed
from lightning_unlearn.strategies import require_whole_weights
from lightning_unlearn.training.fit import make_trainer
from lightning_unlearn.training.module import build_optimizer
from lightning_unlearn.unlearning.batch import UnlearningBatch, as_unlearning_batch, collate_unlearning_batch
from lightning_unlearn.unlearning.registry import METHODS, get_method
from lightning_unlearn.unlearning.request import SETTINGS, Kind, UnlearningRequest, describe_setting, request_summary

log = logging.getLogger(__name__)

#: the key of the unlearning method's state in a Lightning checkpoint
CHECKPOINT_KEY = "unlearning"

M = TypeVar("M", bound="UnlearningMethod")


def attached_trainer(module: nn.Module) -> pl.Trainer | None:
    """The ``Trainer`` a ``LightningModule`` is attached to, or ``None`` (outside a fit, or a plain ``nn.Module``).

    Reads Lightning's public ``trainer`` property, which raises ``RuntimeError`` when the module
    is not attached.
    """
    if not isinstance(module, pl.LightningModule):
        return None
    try:
        return module.trainer
    except RuntimeError:
        return None


def world_of(module: nn.Module) -> tuple[int, int]:
    """``(global rank, world size)`` of ``module``'s trainer; ``(0, 1)`` outside a fit."""
    trainer = attached_trainer(module)
    return (0, 1) if trainer is None else (trainer.global_rank, trainer.world_size)


def frozen_snapshot(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` in eval mode with ``requires_grad=False`` everywhere.

    For a ``LightningModule`` the trainer reference and any unlearning state are detached
    during the copy (they must not be duplicated). Keep the result outside module
    registration (e.g. on the method object) so it is in neither ``parameters()`` nor
    ``state_dict()``.
    """
    trainer = attached_trainer(module)
    phase = module._unlearning if isinstance(module, UnlearningMixin) else None
    if trainer is not None:
        module.trainer = None  # Lightning's public setter (also detaches LightningModule children)
    if phase is not None:
        module._unlearning = None
    try:
        snap = copy.deepcopy(module)
    finally:
        if trainer is not None:
            module.trainer = trainer
        if phase is not None:
            module._unlearning = phase
    snap.eval()
    for p in snap.parameters():
        p.requires_grad_(False)
    return snap


def weights_of(module: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of ``module.state_dict()`` (frozen copies in a method's :meth:`~UnlearningMethod.fit_state`)."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def snapshot_with_weights(module: nn.Module, weights: dict[str, torch.Tensor]) -> nn.Module:
    """A :func:`frozen_snapshot` of ``module`` holding ``weights`` (a saved frozen copy), on ``module``'s device."""
    snap = frozen_snapshot(module)
    snap.load_state_dict(weights)
    return snap


class UnlearningMethod:
    """Base class of every unlearning objective (AMUN, TRW and the baselines).

    A method object holds hyperparameters and the state it builds at the start of the
    unlearning fit. The mixin calls its hooks with the module as first argument. Override
    :meth:`loss` (the objective of one batch) and, where the method needs it,
    :meth:`setup`, :meth:`train_dataloader`, :meth:`on_before_optimizer_step`,
    :meth:`on_after_optimizer_step`, :meth:`on_train_epoch_start`, :meth:`on_train_batch_end`.
    A method whose :meth:`setup` builds state also overrides :meth:`fit_state` and
    :meth:`restore`, so that a fit resumed from a checkpoint reuses that state instead of
    rebuilding it from the current weights.

    Args:
        lr: learning rate of SGD (momentum 0.9, weight decay 5e-4), default 0.01.
        epochs: length of the unlearning phase (default 10), on every path: :func:`unlearn`
            makes its ``Trainer`` with ``max_epochs=epochs``; with a ``Trainer`` of your own, the
            mixin stops the phase after ``epochs`` (fewer ``max_epochs`` raise).
        step_size: StepLR period in epochs (default ``None``: no decay); ``gamma`` its factor.
        momentum, weight_decay: SGD settings.
        normalizer: the transform your model's ``forward`` expects on ``[0, 1]`` pixels (e.g.
            :class:`~lightning_unlearn.models.Normalize` with your mean and std), or ``None``
            (default: the model takes pixels, normalising inside). Applied in every forward the
            method makes, identically: fine-tuning (:meth:`inputs`, after augmentation), attacks
            (AMUN's search, BS's FGSM: the perturbation stays in pixel space), saliency, class
            similarities and frozen copies.

    Class attributes:
        name: the registry name (``"ft"``, ``"amun"``, ...).
        supported: the ``(kind, has_remain)`` settings the method applies to.
        search_axes: the method's **own** tuning axes for :mod:`lightning_unlearn.tuning`
            (``{name: Categorical | FloatRange | IntRange}``, default none); every method is
            also tuned over the shared schedule axes ``lr`` and ``step_size``
            (:data:`~lightning_unlearn.tuning.SCHEDULE_SPACE`), which come from this base class.
    """

    name: ClassVar[str] = "base"
    supported: ClassVar[frozenset[tuple[str, bool]]] = frozenset()
    search_axes: ClassVar[dict[str, Axis]] = {}
    #: the method reads whole weight tensors (snapshots, masks, attacks, similarities), so
    #: strategies that shard parameters (FSDP, DeepSpeed) are refused at fit start
    needs_whole_weights: ClassVar[bool] = True
    #: layout version of :meth:`fit_state`; bump it when a method's saved state changes shape
    state_version: ClassVar[int] = 1

    def __init__(
        self,
        *,
        lr: float = 0.01,
        epochs: int = 10,
        step_size: int | None = None,
        gamma: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        normalizer: Normalizer = None,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"{self.name}: lr must be positive, got {lr}")
        if epochs <= 0:
            raise ValueError(f"{self.name}: epochs must be positive, got {epochs}")
        if step_size is not None and step_size <= 0:
            raise ValueError(f"{self.name}: step_size must be a positive number of epochs or None, got {step_size}")
        self.lr, self.epochs, self.step_size, self.gamma = lr, epochs, step_size, gamma
        self.momentum, self.weight_decay = momentum, weight_decay
        if normalizer is not None and not callable(normalizer):
            raise TypeError(f"{self.name}: normalizer must be callable (e.g. lightning_unlearn.models.Normalize(mean, std)) or None, got {normalizer!r}")
        self.normalizer = normalizer
        self.request: UnlearningRequest | None = None
        self._restored: dict[str, Any] | None = None
        self._nonfinite_steps: torch.Tensor | None = None  # see record_loss

    # ------------------------------------------------------------------ description
    @classmethod
    def supports(cls, kind: str, has_remain: bool) -> bool:
        return (kind, has_remain) in cls.supported

    @classmethod
    def check_request(cls, request: UnlearningRequest) -> None:
        """Raise ``ValueError`` if the method does not apply to the request's setting, naming the field that decides it."""
        if not cls.supports(request.kind, request.has_remain):
            allowed = [describe_setting(k, r) for k, r in SETTINGS if (k, r) in cls.supported]
            kinds = {k for k, _ in cls.supported}
            hint = ""
            if request.kind == "random" and kinds == {"class"}:
                hint = " (the request has no forget_classes; class forgetting needs UnlearningRequest(..., forget_classes=(k,)))"
            elif request.kind == "class" and kinds == {"random"}:
                hint = f" (the request has forget_classes={request.forget_classes}; random forgetting needs none)"
            elif not request.has_remain and (request.kind, True) in cls.supported:
                hint = " (the request has no remain set; give remain=...)"
            raise ValueError(
                f"method {cls.name!r} does not apply to {describe_setting(request.kind, request.has_remain)}{hint}; "
                f"it supports: {'; '.join(allowed) or 'nothing'}"
            )

    @classmethod
    def hyperparameter_names(cls) -> tuple[str, ...]:
        """The keyword arguments the method's constructor accepts (its own and its base classes'), sorted."""
        names: set[str] = set()
        for klass in cls.__mro__:
            init = vars(klass).get("__init__")
            if init is None or klass is object:
                continue
            kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            names |= {p.name for p in inspect.signature(init).parameters.values() if p.kind in kinds and p.name != "self"}
        return tuple(sorted(names))

    @classmethod
    def from_hyperparameters(cls, **hyperparameters: Any) -> "UnlearningMethod":
        """``cls(**hyperparameters)``, with unknown names reported all at once.

        Raises:
            TypeError: naming every unknown hyperparameter and the accepted ones.
        """
        unknown = sorted(set(hyperparameters) - set(cls.hyperparameter_names()))
        if unknown:
            raise TypeError(
                f"unknown hyperparameter{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} for method {cls.name!r}; "
                f"it accepts: {', '.join(cls.hyperparameter_names())}"
            )
        return cls(**hyperparameters)

    def hparams(self) -> dict[str, Any]:
        """The method's hyperparameters (recorded with results); ``normalizer`` is the model's input contract, not one."""
        skip = ("request", "normalizer")
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and k not in skip and isinstance(v, (int, float, str, bool, type(None), tuple))}

    def diagnostics(self) -> dict[str, Any]:
        """Plain-JSON statistics of the last unlearning fit (recorded with results), e.g. AMUN's attack cost.

        Default: ``{"nonfinite_loss_steps": n}`` when ``n > 0`` steps of the fit had a non-finite
        loss (a diverged run, see :mod:`lightning_unlearn.tuning.divergence`), else nothing.
        Overrides extend it (``{**super().diagnostics(), ...}``). Read it after the fit
        (:func:`unlearn` returns once the phase is over; the method object keeps what it measured).
        """
        n = self.nonfinite_loss_steps
        return {"nonfinite_loss_steps": n} if n else {}

    def record_loss(self, loss: torch.Tensor) -> None:
        """Count the step if ``loss`` is not finite (called by the mixin's ``training_step``).

        The count stays a tensor on the loss's device, so recording costs no host sync per step.
        """
        bad = (~torch.isfinite(loss.detach())).any().to(torch.int64)
        self._nonfinite_steps = bad if self._nonfinite_steps is None else self._nonfinite_steps + bad

    @property
    def nonfinite_loss_steps(self) -> int:
        """Steps of the current (or last) unlearning fit whose loss was ``nan`` or ``inf``, on this
        process (reset when a fit starts)."""
        return 0 if self._nonfinite_steps is None else int(self._nonfinite_steps)

    # ------------------------------------------------------------------ helpers for subclasses
    def pixels(self, module: pl.LightningModule, x: torch.Tensor, batch_idx: int, *, train: bool = True, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pixels in ``[0, 1]``; augmented with the request's augmentation when ``train`` (only where ``mask``)."""
        x = to_pixels(x)
        if train and self.request is not None and self.request.augmentation is not None:
            gen = batch_generator(self.augmentation_seed(), module.current_epoch, batch_idx, module.global_rank, x.device)
            x = augment(x, self.request.augmentation, generator=gen, mask=mask)
        return x

    def inputs(self, module: pl.LightningModule, x: torch.Tensor, batch_idx: int, *, train: bool = True, mask: torch.Tensor | None = None) -> torch.Tensor:
        """What the model's ``forward`` takes: :meth:`pixels`, then the method's ``normalizer`` (if any)."""
        return self.normalize(self.pixels(module, x, batch_idx, train=train, mask=mask))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``normalizer(x)`` for pixels ``x`` (``x`` itself without a normalizer): the model's inputs."""
        return apply_normalizer(self.normalizer, x)

    def augmentation_seed(self) -> int:
        """Seed of the unlearning phase's augmentation: a stream of the request's seed, apart from the training's."""
        assert self.request is not None
        return derive_seed(self.request.seed, "unlearning-augmentation")

    def stream_seed(self, stream: str = "main") -> int:
        """Shuffling seed of a data stream of the request.

        ``"main"``, the method's first (or only) stream, shuffles with the request's seed
        itself; every other stream (e.g. ``"remain"``, the second pass of a two-phase epoch) with a
        seed derived from it, so two streams of one epoch never share an order.
        """
        assert self.request is not None
        return self.request.seed if stream == "main" else derive_seed(self.request.seed, "stream", stream)

    def make_loader(self, dataset: Dataset, *, shuffle: bool = True, batch_size: int | None = None, stream: str = "main") -> DataLoader:
        """A loader of :class:`~lightning_unlearn.unlearning.UnlearningBatch` whose order depends only on
        ``(stream_seed(stream), epoch)``, sharded across ranks and resumable mid-epoch
        (:class:`~lightning_unlearn.data.ResumableDataLoader`)."""
        assert self.request is not None
        sampler = ShardedEpochSampler(len(dataset), self.stream_seed(stream), shuffle=shuffle)
        return ResumableDataLoader(
            dataset, batch_size=batch_size or self.request.batch_size, sampler=sampler, collate_fn=collate_unlearning_batch
        )

    # ------------------------------------------------------------------ resumable state
    def fit_state(self) -> dict[str, Any]:
        """What :meth:`setup` built, as CPU tensors and plain values (default: nothing).

        Override together with :meth:`restore`, extending the parent's:
        ``return {**super().fit_state(), "mask": ...}``. Everything must load with
        ``torch.load(weights_only=True)`` (tensors, numbers, strings, lists, tuples, dicts).
        """
        return {}

    def restore(self, module: pl.LightningModule, request: UnlearningRequest, state: dict[str, Any]) -> None:
        """Called at the start of the fit *instead of* :meth:`setup` when the fit resumes from a
        checkpoint holding ``state`` (:meth:`fit_state`); must not rebuild what ``state`` holds.

        A method that does not override it is set up afresh by :meth:`setup` on resume (right
        for methods whose setup builds nothing).
        """

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint entry of the method: ``{"version", "method", "hparams", "request", "state"}``.

        ``version`` is :attr:`state_version`, ``request`` a summary of the request (kind,
        sizes, classes, seed, batch size) checked on load, ``state`` :meth:`fit_state`.
        """
        if self.request is None:
            raise RuntimeError(f"{self.name}: no state before the unlearning phase starts")
        return {
            "version": self.state_version,
            "method": self.name,
            "hparams": self.hparams(),
            "request": request_summary(self.request),
            "state": self.fit_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Keep ``state`` (from :meth:`state_dict`) for :meth:`restore` at the start of the resumed fit.

        Raises:
            ValueError: another method or state version, or a checkpoint of another request
                (other forget set size, classes, seed, ...). Differing hyperparameters (e.g. more
                epochs) are allowed and logged.
        """
        if state.get("method") != self.name:
            raise ValueError(f"the checkpoint holds the unlearning state of method {state.get('method')!r}, not of {self.name!r}")
        if state.get("version") != self.state_version:
            raise ValueError(f"{self.name}: unsupported unlearning state version {state.get('version')!r}; expected {self.state_version}")
        if self.request is not None:
            mine = request_summary(self.request)
            differ = {k: (state["request"].get(k), v) for k, v in mine.items() if state["request"].get(k) != v}
            if differ:
                what = ", ".join(f"{k} {a!r} in the checkpoint but {b!r} now" for k, (a, b) in differ.items())
                raise ValueError(f"{self.name}: the checkpoint was made for another unlearning request ({what})")
        hp = self.hparams()
        changed = sorted(k for k in set(hp) | set(state.get("hparams", {})) if hp.get(k) != state.get("hparams", {}).get(k))
        if changed:
            log.warning("%s: resuming with other hyperparameters than the checkpoint's: %s", self.name, ", ".join(changed))
        self._restored = state["state"]

    def take_restored(self) -> dict[str, Any] | None:
        """The state loaded by :meth:`load_state_dict` (once; ``None`` without one)."""
        state, self._restored = self._restored, None
        return state

    # ------------------------------------------------------------------ hooks
    def setup(self, module: pl.LightningModule, request: UnlearningRequest) -> None:
        """Build what the method needs from the model as it is (θ_o): called once per fit, when Lightning first
        asks for the phase's training data (after ``on_fit_start``: model on device, process group up)."""

    def train_dataloader(self, module: pl.LightningModule, request: UnlearningRequest) -> Any:
        """Default: one shuffled stream over D_R ∪ D_F (D_F alone without D_R)."""
        parts = [request.forget] if request.remain is None else [request.remain, request.forget]
        return self.make_loader(torch.utils.data.ConcatDataset(parts))

    def loss(self, module: pl.LightningModule, batch: UnlearningBatch, batch_idx: int) -> torch.Tensor:
        """The unlearning objective of one batch (fields by name: ``batch.x``, ``batch.y``, ``batch.source``, ``batch.phase``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement loss()")

    def parameters_to_optimize(self, module: pl.LightningModule):
        return [p for p in module.parameters() if p.requires_grad]

    def configure_optimizers(self, module: pl.LightningModule) -> Any:
        opt = build_optimizer(self.parameters_to_optimize(module), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        if self.step_size is None:
            return opt
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=self.step_size, gamma=self.gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    def on_before_optimizer_step(self, module: pl.LightningModule, optimizer: torch.optim.Optimizer) -> None:
        pass

    def on_after_optimizer_step(self, module: pl.LightningModule, optimizer: torch.optim.Optimizer) -> None:
        """Right after each optimizer step, before any callback sees the batch's end (so a
        checkpoint taken at that batch already holds what this hook changes)."""

    def on_train_epoch_start(self, module: pl.LightningModule) -> None:
        pass

    def on_train_batch_end(self, module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        pass

    def teardown(self, module: pl.LightningModule) -> None:
        """Called by :meth:`UnlearningMixin.stop_unlearning`; drop snapshots and large state."""


def check_phase_length(max_epochs: int | None, method: UnlearningMethod) -> None:
    """Raise ``ValueError`` when a ``Trainer``'s ``max_epochs`` is shorter than the method's ``epochs``.

    ``None`` and ``-1`` (no epoch limit) pass, as does any value of at least ``method.epochs``:
    the phase then stops after ``method.epochs``.
    """
    if max_epochs is not None and max_epochs != -1 and max_epochs < method.epochs:
        raise ValueError(
            f"the Trainer's max_epochs={max_epochs} is shorter than the unlearning phase of method {method.name!r} "
            f"(epochs={method.epochs}): the method's epochs set the phase length; pass epochs={max_epochs} to the method "
            f"(start_unlearning(..., epochs={max_epochs}) or unlearn(..., epochs={max_epochs})), or a Trainer with max_epochs >= {method.epochs}"
        )


@dataclass
class _UnlearningState:
    method: UnlearningMethod
    request: UnlearningRequest
    #: the method's setup (or restore) ran in this fit
    started: bool = field(default=False)
    #: the method's loader was handed to Lightning in this fit
    loader_served: bool = field(default=False)
    #: the Trainer's max_epochs before the phase set it to the method's epochs (put back at fit end)
    trainer_max_epochs: int | None = field(default=None)


# Type checkers see the mixin as a LightningModule (the class it is always mixed into, after
# it), so its hooks and ``self.trainer``/``self.log`` are typed; at run time it derives from
# ``object`` and cooperates through ``super()``.
if TYPE_CHECKING:
    _MixinBase = pl.LightningModule
else:
    _MixinBase = object


class UnlearningMixin(_MixinBase):
    """Adds an unlearning phase to a ``LightningModule`` classifier. Mix it in first.

    Example:
        >>> from lightning_unlearn.training import ClassifierModule
        >>> class Model(UnlearningMixin, ClassifierModule): ...
    """

    _unlearning: _UnlearningState | None = None

    # ------------------------------------------------------------------ phase switch
    def start_unlearning(self, method: "UnlearningMethod | str", request: UnlearningRequest, **hyperparameters: Any) -> UnlearningMethod:
        """Enter the unlearning phase; the next ``trainer.fit(self)`` runs ``method`` on ``request``.

        The one way in: :meth:`~lightning_unlearn.unlearning.AMUNMixin.start_amun`,
        :meth:`~lightning_unlearn.unlearning.TRWMixin.start_trw` and :func:`unlearn` all call it.

        Args:
            method: a registry name (:data:`~lightning_unlearn.unlearning.METHODS`) with its
                ``hyperparameters``, or a method object (then no ``hyperparameters``).
            request: the data of the request (see :class:`UnlearningRequest`).
            **hyperparameters: the method's constructor arguments (``lr``, ``epochs``, ...).

        Returns:
            The method object (it keeps what it builds and measures, e.g. ``diagnostics()``).

        Raises:
            ValueError: unknown method name, or a method that does not apply to the setting.
            TypeError: unknown hyperparameter names, or hyperparameters with a method object.
        """
        if isinstance(method, str):
            method = get_method(method).from_hyperparameters(**hyperparameters)
        elif hyperparameters:
            raise TypeError(
                f"hyperparameters {', '.join(map(repr, sorted(hyperparameters)))} were given with a method object ({type(method).__name__}); "
                "pass them to its constructor, or give the method by name"
            )
        type(method).check_request(request)
        method.request = request
        self._unlearning = _UnlearningState(method, request)
        # Lightning keeps each submodule's train/eval mode through fit: a model handed over
        # in eval mode (as train_classifier returns it) would fine-tune with frozen BN
        # statistics. The unlearning phase trains in train mode, like the papers.
        self.train()
        return method

    def _start_variant(self, family: type[M], method: str, request: UnlearningRequest, hyperparameters: dict[str, Any]) -> M:
        """:meth:`start_unlearning` with a registered variant of ``family`` (``start_amun``, ``start_trw``)."""
        variants = [n for n, cls in METHODS.items() if issubclass(cls, family)]
        if method not in variants:
            raise ValueError(f"unknown {family.__name__} method {method!r}: expected one of {', '.join(variants)}")
        started = self.start_unlearning(method, request, **hyperparameters)
        assert isinstance(started, family)
        return started

    def stop_unlearning(self) -> None:
        """Leave the unlearning phase: hooks delegate to the user's class again."""
        if self._unlearning is not None:
            self._unlearning.method.teardown(self)
        self._unlearning = None

    @property
    def is_unlearning(self) -> bool:
        return self._unlearning is not None

    @property
    def unlearning_method(self) -> UnlearningMethod | None:
        return None if self._unlearning is None else self._unlearning.method

    def unlearning_loss(self, batch: Any, batch_idx: int = 0) -> torch.Tensor:
        """The override point: the objective of one unlearning batch (delegates to the method).

        ``batch`` is an :class:`~lightning_unlearn.unlearning.UnlearningBatch` (or a dict of them);
        plain ``(x, y, index, ...)`` sequences are converted first.
        """
        assert self._unlearning is not None, "unlearning_loss() is only defined in the unlearning phase"
        return self._unlearning.method.loss(self, as_unlearning_batch(batch), batch_idx)

    # ------------------------------------------------------------------ the phase inside a fit
    def _check_fit(self, state: _UnlearningState) -> None:
        """The cheap checks of a fit in the phase: whole weights, phase length (sets ``max_epochs`` to the method's ``epochs``)."""
        trainer = attached_trainer(self)
        if trainer is None:
            return
        if state.method.needs_whole_weights:
            require_whole_weights(trainer.strategy, f"unlearning method {state.method.name!r}")
        check_phase_length(trainer.max_epochs, state.method)
        if trainer.max_epochs != state.method.epochs:
            # the documented way to change a fit's length: the fit loop's max_epochs
            state.trainer_max_epochs = trainer.max_epochs
            trainer.fit_loop.max_epochs = state.method.epochs

    def _begin_phase(self, state: _UnlearningState) -> None:
        """Build (or restore from a checkpoint) the method's state, once per fit."""
        if state.started:
            return
        restored = state.method.take_restored()
        if restored is not None and type(state.method).restore is not UnlearningMethod.restore:
            state.method.restore(self, state.request, restored)
        else:
            state.method.setup(self, state.request)
        state.method._nonfinite_steps = None  # count the non-finite loss steps of this fit only
        state.started = True

    # ------------------------------------------------------------------ Lightning hooks
    def on_fit_start(self) -> None:
        super().on_fit_start()
        state = self._unlearning
        if state is not None:
            state.started = state.loader_served = False
            self._check_fit(state)

    def train_dataloader(self):
        state = self._unlearning
        if state is None:
            return super().train_dataloader()
        self._begin_phase(state)
        state.loader_served = True
        return state.method.train_dataloader(self, state.request)

    def on_train_start(self) -> None:
        super().on_train_start()
        state = self._unlearning
        if state is None:
            return
        if not state.loader_served:
            raise RuntimeError(
                f"trainer.fit(model, train_dataloaders=...) (or with a datamodule) during the unlearning phase of method "
                f"{state.method.name!r} would train on your loader instead of the request ({state.request.describe()}, plus what the "
                "method builds from it, e.g. AMUN's adversarial set): call trainer.fit(model) without training data (validation "
                "loaders are fine: trainer.fit(model, val_dataloaders=...)), or model.stop_unlearning() first to train on your loader"
            )
        trainer = attached_trainer(self)
        if trainer is not None:
            restore_loader_positions(trainer)

    def on_fit_end(self) -> None:
        super().on_fit_end()
        state = self._unlearning
        trainer = attached_trainer(self)
        if state is not None and state.trainer_max_epochs is not None and trainer is not None:
            trainer.fit_loop.max_epochs = state.trainer_max_epochs  # the user's Trainer as it was given
            state.trainer_max_epochs = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the method's state (built at the start of the fit) under ``checkpoint["unlearning"]``."""
        super().on_save_checkpoint(checkpoint)
        state = self._unlearning
        if state is not None and state.started:
            checkpoint[CHECKPOINT_KEY] = state.method.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Hand ``checkpoint["unlearning"]`` to the method of the current phase (see :meth:`UnlearningMethod.load_state_dict`)."""
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get(CHECKPOINT_KEY)
        if saved is None:
            return
        if self._unlearning is None:
            log.info("the checkpoint holds the state of an unlearning phase but the module is not in one; ignoring it")
            return
        self._unlearning.method.load_state_dict(saved)

    def training_step(self, batch, batch_idx: int):
        if self._unlearning is None:
            return super().training_step(batch, batch_idx)
        loss = self.unlearning_loss(batch, batch_idx)
        self._unlearning.method.record_loss(loss)
        self.log("unlearn/loss", loss.detach(), prog_bar=True)
        return loss

    def configure_optimizers(self):
        if self._unlearning is None:
            return super().configure_optimizers()
        return self._unlearning.method.configure_optimizers(self)

    def on_before_optimizer_step(self, optimizer) -> None:
        super().on_before_optimizer_step(optimizer)
        if self._unlearning is not None:
            self._unlearning.method.on_before_optimizer_step(self, optimizer)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer, optimizer_closure=None) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        # Lightning has no after-step hook; checkpoint callbacks run at on_train_batch_end before
        # the module's own hook, so state changed after the step must change here to be saved
        if self._unlearning is not None:
            self._unlearning.method.on_after_optimizer_step(self, optimizer)

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        if self._unlearning is not None:
            self._unlearning.method.on_train_epoch_start(self)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        super().on_train_batch_end(outputs, batch, batch_idx)
        if self._unlearning is not None:
            self._unlearning.method.on_train_batch_end(self, outputs, batch, batch_idx)


def unlearn(
    model: pl.LightningModule,
    method: "UnlearningMethod | str",
    request: UnlearningRequest,
    *,
    trainer: pl.Trainer | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
    **hyperparameters: Any,
) -> pl.LightningModule:
    """Run one unlearning phase end to end: :meth:`~UnlearningMixin.start_unlearning`, ``trainer.fit``, ``stop_unlearning``.

    Args:
        model: a ``LightningModule`` that mixes in :class:`UnlearningMixin`.
        method: a registry name (``"amun"``, ``"ft"``, ...; its hyperparameters in
            ``**hyperparameters``) or a ready method object (hyperparameters then go to its
            constructor, never here).
        request: what to forget (:class:`UnlearningRequest`).
        trainer: a ready ``Trainer``; default: one made by
            :func:`~lightning_unlearn.training.make_trainer` with ``max_epochs=method.epochs``
            and ``trainer_kwargs``.
        trainer_kwargs: any ``Trainer`` arguments (``accelerator``, ``devices``, ``strategy``,
            ``precision``, ``callbacks``, ``enable_model_summary``, ``logger``, ...) for the
            default trainer; each wins over the library's default
            (:data:`~lightning_unlearn.training.fit.TRAINER_DEFAULTS`). ``max_epochs`` may be
            given but the phase lasts the method's ``epochs`` (a smaller value raises).
        **hyperparameters: the method's hyperparameters (``lr``, ``epochs``, ``mask_ratio``, ...).

    Returns:
        ``model`` in eval mode, unlearned. The method object (``model`` no longer holds it) keeps
        its state for inspection when you pass one, e.g. ``method.diagnostics()``.

    Raises:
        TypeError: ``model`` lacks the mixin; hyperparameters given with a method object;
            ``trainer`` together with ``trainer_kwargs``; unknown hyperparameter names (all
            named, with the accepted ones).
        ValueError: an unknown method name, a method that does not apply to the request, or a
            ``max_epochs`` shorter than the method's ``epochs``.

    Example:
        >>> unlearn(model, "amun", request, lr=0.01, trainer_kwargs={"accelerator": "cpu"})  # doctest: +SKIP
    """
    if not isinstance(model, UnlearningMixin):
        raise TypeError(f"{type(model).__name__} does not mix in UnlearningMixin; declare class M(UnlearningMixin, {type(model).__name__})")
    if trainer is not None and trainer_kwargs:
        raise TypeError(f"give either trainer or trainer_kwargs, not both (trainer_kwargs: {', '.join(sorted(trainer_kwargs))})")
    method = model.start_unlearning(method, request, **hyperparameters)  # resolves the name, checks the hyperparameters
    try:
        if trainer is None:
            kwargs = {"max_epochs": method.epochs, **(trainer_kwargs or {})}
            check_phase_length(kwargs["max_epochs"], method)
            trainer = make_trainer(**kwargs)
        trainer.fit(model)
    finally:
        model.stop_unlearning()
    return model.eval()


__all__ = [
    "CHECKPOINT_KEY",
    "SETTINGS",
    "Kind",
    "UnlearningMethod",
    "UnlearningMixin",
    "UnlearningRequest",
    "attached_trainer",
    "check_phase_length",
    "describe_setting",
    "frozen_snapshot",
    "request_summary",
    "snapshot_with_weights",
    "unlearn",
    "weights_of",
    "world_of",
]
