"""``BenchmarkConfig``: every setting of one ``lightning-unlearn benchmark`` run, in six sections.

The config is a frozen dataclass of frozen sections -- :class:`DataConfig` (``data``),
:class:`ModelsConfig` (``models``), :class:`UnlearningConfig` (``unlearning``),
:class:`TuningConfig` (``tuning``), :class:`AuditConfig` (``audit``) and
:class:`ExecutionConfig` (``execution``) -- each field documented by the docstring written
under it. That one schema is the Python API, the YAML file format (``--config``,
``--print_config``) and the command line (``--data.max_train 400`` or ``--max-train 400``,
:mod:`lightning_unlearn.pipeline.config_file`). The config is validated once
(:meth:`BenchmarkConfig.validate`, section by section), turned into plain JSON for
``results.json`` (:meth:`BenchmarkConfig.to_dict`, flat) and is the source of the cache keys of
trained models (:func:`training_settings`): a key is the hash of exactly the settings that
change a model's weights, so a changed configuration never reuses a stale model while unrelated
changes (another method list, more seeds) reuse what is there.

One vocabulary: every field has one name, unique over all sections, which is also its flat
spelling: ``BenchmarkConfig(forget="class:3", seeds=(0, 1, 2))`` puts each keyword into its
section, ``config.seeds`` reads ``config.unlearning.seeds`` (the package itself reads the
sections), and ``--seeds`` on the command line is ``--unlearning.seeds``. Every field accepts
the command line's text as well as the Python value (``seeds="0,1,2"`` or ``(0, 1, 2)``,
``methods="ft,amun"``, ``augmentation="none"`` or ``None``, ``devices=2`` or ``"2"``,
``hparams="trw.tau=0.5"`` or ``{"trw": {"tau": 0.5}}``). Adding a setting is one change in its
section: the field, its docstring, its parser (when it has a text form) and its rule in the
section's ``validate``; the command line, the YAML format and ``results.json`` follow.

Seeds (documented contract):

* **random forgetting** -- seed ``s`` is one full replicate: the forget set is drawn with
  ``s``, the original model is trained with model seed ``s``, the retrained model on that
  remain set with model seed ``s``; Avg. Gap of seed ``s`` is against retrain ``s``
  (``retrain_models`` retrained models per seed when it is larger than 1: model seeds ``s``,
  then ``derive_seed(s, "retrain", j)`` for ``j = 1, 2, ...``).
* **class forgetting** -- the forget set is the class, the same for every seed. Seed ``s``
  trains its own original model; the retrained models are shared by all seeds: ``R =
  max(retrain_models, len(seeds))`` models with model seeds ``seeds`` extended by
  ``max(seeds) + 1, + 2, ...`` (three by default, so MIA-NN can take its neighbour classes
  leave-one-out). Starred (retrain) values are the mean over those models; the ``retrain``
  row itself is scored leave-one-out against the other retrained models.
* **tuning** -- random forgetting: the forget set drawn with ``tune_seed``, its original model
  and its retrained model; class forgetting: a *held-out* class (``tune_class``, default the
  first class after the forgotten ones that is not forgotten), the original model of
  ``tune_seed`` and one model retrained without that class, so the evaluated class never
  chooses its own hyperparameters. Each method's grid is run once there and the
  hyperparameters with the smallest ``avg_gap`` are reused for every seed; ``results.json``
  records ``tuned_on``. Hyperparameters fixed in ``hparams`` are used as given and are not
  tuned.
* **model seed** -- a model with model seed ``m`` is initialised by ``seed_everything(m)``
  and sees its training data in the order of ``derive_seed(m, "data-order")``
  (:func:`lightning_unlearn.training.train_classifier`; every derived seed of the library
  comes from :func:`lightning_unlearn.seeding.derive_seed`). Each unlearning run of replicate
  ``s`` uses request seed ``s``.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import hashlib
import inspect
import json
import os
import textwrap
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_unlearn.data.transforms import AUGMENTATIONS
from lightning_unlearn.metrics.rmia import SIGNALS
from lightning_unlearn.models.factory import MODEL_NAMES
from lightning_unlearn.pipeline.config_values import (
    ConfigError,
    as_text,
    check_choice,
    check_positive,
    expand_path,
    list_of,
    none_as_text,
    optional_int,
    parse_hparams,
    parse_list,
    setting,
    unset_variable,
)

BASELINE_ROWS = ("original", "retrain")
#: the ``precision`` values passed to Lightning's ``Trainer``
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true")


def default_cache_root() -> Path:
    """The library's cache folder (``$LIGHTNING_UNLEARN_CACHE`` or ``~/.cache/lightning_unlearn``)."""
    from lightning_unlearn.cache import default_cache_dir

    return Path(default_cache_dir())


class _Section:
    """What every section shares: the text forms of its fields (``__post_init__``) and the check of their choices."""

    def __post_init__(self) -> None:
        """Accept the command line's text for every field with a parser (see the module docstring)."""
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            parse = f.metadata.get("parse")
            if parse is not None:
                object.__setattr__(self, f.name, parse(getattr(self, f.name), f.name))

    def validate(self, config: BenchmarkConfig) -> None:
        """Check the section's fields (``config``: the whole config, for rules across sections).

        Here: every field with ``choices`` holds one of them; each section adds its own rules.

        Raises:
            ConfigError: one line naming the bad value and the allowed ones.
        """
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if "choices" in f.metadata:
                check_choice(getattr(self, f.name), f.metadata["choices"], f.name)


# ---------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class DataConfig(_Section):
    """The data set, its subsets and what is forgotten."""

    dataset: str = setting("digits", expand_path)
    """``digits``, a torchvision name (``cifar10``, ``cifar100``, ``mnist``, ``fashion-mnist``,
    ``svhn``) or the path of an ImageFolder tree with ``train/`` and ``test/`` (``$VAR`` and
    ``~`` are expanded, e.g. ``${LIGHTNING_UNLEARN_DATA}/cifar10``)."""
    data_dir: str | None = setting(None, expand_path)
    """Where the torchvision data sets live (needed by every torchvision name)."""
    download: bool = False
    """Let torchvision download a missing data set into ``data_dir``."""
    max_train: int | None = None
    """Stratified subset of the training set (``None``: everything)."""
    max_test: int | None = None
    """Stratified subset of the test set (``None``: everything)."""
    forget: str = "random:0.1"
    """``random:FRACTION`` or ``class:K[,K]``."""
    no_remain: bool = False
    """The methods see only the forget set (the "D_F only" setting)."""

    def validate(self, config: BenchmarkConfig) -> None:
        from lightning_unlearn.data import SOURCE_NAMES

        super().validate(config)
        if self.dataset not in SOURCE_NAMES:
            variable = unset_variable(self.dataset)
            if variable:
                raise ConfigError(f"data set {self.dataset!r} names the environment variable {variable}, which is not set")
            looks_like_path = os.sep in self.dataset or self.dataset.startswith(".") or os.path.exists(self.dataset)
            if not looks_like_path:
                raise ConfigError(
                    f"unknown data set {self.dataset!r}: expected one of {', '.join(SOURCE_NAMES)} or the path of an ImageFolder tree"
                )
            p = Path(self.dataset)
            if not p.is_dir() or not (p / "train").is_dir() or not (p / "test").is_dir():
                raise ConfigError(f"data set path {self.dataset!r} is not an ImageFolder tree with train/ and test/ directories")
        if self.data_dir is not None and not self.download and not Path(self.data_dir).is_dir():
            raise ConfigError(f"data directory {self.data_dir!r} does not exist (pass --download to fetch {self.dataset!r} there)")
        if self.dataset in SOURCE_NAMES and self.dataset != "digits" and self.data_dir is None:
            raise ConfigError(f"data set {self.dataset!r} needs --data-dir DIR (add --download to fetch it there)")
        try:
            _ = config.forget_spec
        except ValueError as err:
            raise ConfigError(str(err)) from None
        check_positive(self, "max_train", "max_test")


@dataclass(frozen=True)
class ModelsConfig(_Section):
    """The original, retrained and reference models: architecture and training recipe."""

    model: str = setting("small-cnn", choices=MODEL_NAMES)
    """The architecture."""
    width: int | None = setting(None, optional_int)
    """The small CNN's width (channels of its first layer; ``None``: the model's default, 16);
    part of every trained model's cache key when set."""
    epochs: int | None = None
    """Training epochs of original, retrained and reference models (``None``:
    :func:`lightning_unlearn.training.default_epochs` of the data set and model; recorded)."""
    lr: float | None = None
    """Peak learning rate of those fits (``None``: the library default per model)."""
    batch_size: int = 128
    """Training batch size of original, retrained and reference models."""
    retrain_models: int | None = None
    """Retrained models (``None``: 1 per seed for random forgetting, 3 shared by the seeds for
    class forgetting; the seeds contract of :mod:`lightning_unlearn.pipeline.config`)."""
    augmentation: str = setting("auto", none_as_text, choices=AUGMENTATIONS)
    """The originals' recipe: ``auto`` (crop+flip on RGB images of 32x32 or more, none
    otherwise), ``crop_flip`` or ``none`` (also ``None``), for the fits of original, retrained and
    reference models. ``none`` lets a small model memorise its training set, which is what
    membership inference (and so unlearning) is about."""
    fastclip: float | None = None
    """FastClip ``max_norm`` on the fits of original, retrained and reference models (``None``: off)."""
    fastclip_every: int = 10
    """FastClip's ``every_n_steps``: clip every N optimizer steps."""

    def validate(self, config: BenchmarkConfig) -> None:
        super().validate(config)
        check_positive(self, "epochs", "retrain_models", "batch_size", "width")
        if self.width is not None and self.model != "small-cnn":
            raise ConfigError(f"width is an option of the small CNN only, got width={self.width} with model {self.model!r} (allowed: small-cnn)")
        check_positive(self, "lr", integer=False)
        if self.fastclip is not None and self.fastclip <= 0:
            raise ConfigError(f"--fastclip MAX_NORM must be positive, got {self.fastclip}")
        if self.fastclip is not None:
            try:
                from lightning_unlearn.callbacks import FastClip  # noqa: F401
            except ImportError:
                raise ConfigError("--fastclip needs lightning_unlearn.callbacks.FastClip, which this installation lacks") from None
        check_positive(self, "fastclip_every")


@dataclass(frozen=True)
class UnlearningConfig(_Section):
    """The rows of the table, the replicates, and the recipe of every unlearning phase.

    ``seeds`` lives here: a seed is one replicate of the unlearning experiment (its forget set,
    original and retrained models and unlearning runs; see the module docstring).
    """

    methods: tuple[str, ...] | None = setting(None, list_of(str))
    """The rows of the table (``None``: ``original``, ``retrain`` and every registered method
    that applies to the setting). ``original`` and ``retrain`` are always evaluated (every gap
    is measured against ``retrain``)."""
    seeds: tuple[int, ...] = setting((0,), list_of(int))
    """Replicate seeds."""
    unlearn_epochs: int = 5
    """Epochs of every unlearning phase (recorded)."""
    unlearn_augmentation: str = setting("auto", none_as_text, choices=AUGMENTATIONS)
    """The unlearning phase's recipe, the same for every method of the run and independent of
    ``augmentation``: ``auto`` is the reference recipe of the papers' code (the training
    transform, crop+flip, on D_R and D_F for RGB images of 32x32 or more, none otherwise;
    AMUN's adversarial set unaugmented), ``crop_flip`` or ``none``. Not part of any model's
    cache key (unlearned models are not cached)."""
    unlearn_batch_size: int = 128
    """Batch size of every unlearning phase (the papers')."""
    hparams: dict[str, dict[str, Any]] | None = setting(None, parse_hparams, hash=False)
    """Fixed hyperparameters per method, ``{"trw": {"tau": 0.5}}`` or
    ``"trw.tau=0.5,amun.lr=0.01"``: always passed to the method and left out of its tuning
    grid (a method whose every tunable hyperparameter is fixed is not tuned)."""

    def validate(self, config: BenchmarkConfig) -> None:
        from lightning_unlearn.unlearning import METHODS, get_method, methods_for
        from lightning_unlearn.unlearning.base import describe_setting

        super().validate(config)
        kind, has_remain = config.kind, config.has_remain
        allowed_rows = list(BASELINE_ROWS) + list(METHODS)
        for name in self.methods or ():
            if name in BASELINE_ROWS:
                continue
            if name not in METHODS:
                raise ConfigError(f"unknown method {name!r}: expected one of {', '.join(allowed_rows)}")
            if not get_method(name).supports(kind, has_remain):
                ok = ", ".join(list(BASELINE_ROWS) + methods_for(kind, has_remain))
                raise ConfigError(f"method {name!r} does not apply to {describe_setting(kind, has_remain)}: allowed are {ok}")
        if self.methods is not None and len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"--methods lists a method twice: {','.join(self.methods)}")
        for name, fixed in (self.hparams or {}).items():
            if name not in METHODS:
                raise ConfigError(f"hparams names an unknown method {name!r}: expected one of {', '.join(METHODS)}")
            accepted = get_method(name).hyperparameter_names()
            unknown = sorted(set(fixed) - set(accepted))
            if unknown:
                raise ConfigError(f"hparams gives {name!r} unknown hyperparameters {', '.join(unknown)}: it accepts {', '.join(accepted)}")
        if not self.seeds:
            raise ConfigError("--seeds needs at least one seed")
        if any(s < 0 for s in self.seeds):
            raise ConfigError(f"seeds must be non-negative integers, got {list(self.seeds)}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"--seeds lists a seed twice: {','.join(map(str, self.seeds))}")
        check_positive(self, "unlearn_epochs", "unlearn_batch_size")


@dataclass(frozen=True)
class TuningConfig(_Section):
    """How each method's hyperparameters are chosen (on a separate forget set or a held-out class)."""

    tune_seed: int = 100
    """Seed of the forget set the hyperparameters are tuned on (random forgetting) or of the
    original model they are tuned with (class forgetting)."""
    tune_lrs: tuple[float, ...] | None = setting(None, list_of(float))
    """The learning-rate grid of every method (replaces the method's own ``lr`` grid; ``None``
    keeps it); other tunable hyperparameters keep their grids."""
    max_trials: int = 3
    """At most this many grid points per method (a diagonal through the grids, see
    :func:`~lightning_unlearn.pipeline.stages.tuning_grid`); ``0`` disables tuning (the
    methods' defaults are used)."""
    tune_class: int | None = None
    """Class forgetting only: the held-out class the hyperparameters are tuned on (``None``: the
    first class after the forgotten ones that is not forgotten)."""

    def validate(self, config: BenchmarkConfig) -> None:
        super().validate(config)
        if self.tune_seed < 0:
            raise ConfigError(f"tune_seed must be a non-negative integer, got {self.tune_seed}")
        if self.tune_class is not None:
            spec = config.forget_spec
            if spec.kind != "class":
                raise ConfigError(f"tune_class applies to class forgetting only, not to {spec}")
            if self.tune_class < 0 or self.tune_class in spec.classes:
                raise ConfigError(f"tune_class must be a class that is not forgotten ({spec}), got {self.tune_class}")
        if self.max_trials < 0:
            raise ConfigError(f"max_trials must be 0 or more, got {self.max_trials}")
        if self.tune_lrs is not None and (not self.tune_lrs or any(lr <= 0 for lr in self.tune_lrs)):
            raise ConfigError(f"tune_lrs must be positive learning rates, got {self.tune_lrs}")


@dataclass(frozen=True)
class AuditConfig(_Section):
    """The membership-inference audit."""

    rmia_references: int = 4
    """RMIA reference models (0 disables RMIA; ``avg_gap`` then uses the SVC efficacy, recorded
    as ``avg_gap_mia``)."""
    rmia_signal: str = setting("softmax", choices=SIGNALS)
    """The signal Pr(x | θ) RMIA compares: the softmax probability of the label, or its Taylor-softmax variant."""
    rmia_gamma: float = 2.0
    """RMIA's likelihood-ratio threshold γ."""

    def validate(self, config: BenchmarkConfig) -> None:
        super().validate(config)
        if self.rmia_references < 0 or self.rmia_references == 1 or self.rmia_references % 2:
            raise ConfigError(f"rmia_references must be 0 or an even number >= 2 (each point is IN for half), got {self.rmia_references}")
        check_positive(self, "rmia_gamma", integer=False)


@dataclass(frozen=True)
class ExecutionConfig(_Section):
    """Where and how the work runs: devices, precision, memory format, cache folder."""

    accelerator: str = "auto"
    """Passed to every Lightning ``Trainer`` (``auto``: a GPU if present)."""
    devices: int | str = setting("auto", as_text)
    """Passed to every Lightning ``Trainer`` (kept as text: ``2`` is ``"2"``)."""
    strategy: str = "auto"
    """Passed to every Lightning ``Trainer`` (e.g. ``ddp``)."""
    precision: int | str = setting("32-true", as_text, choices=PRECISIONS)
    """Passed to every ``Trainer`` (``bf16-mixed`` on a GPU). Attacks and metrics always run in fp32."""
    channels_last: bool = False
    """Train original, retrained and reference models in channels-last memory format (faster
    convolutions on GPUs)."""
    device_data: bool = False
    """Keep the training set of original and retrained models on the accelerator
    (:class:`~lightning_unlearn.data.DeviceTensorLoader`; same data order as the default
    loader; single device only)."""
    cache_dir: str | None = setting(None, expand_path)
    """Trained models and decoded pools (``None``: the user's cache folder,
    ``$LIGHTNING_UNLEARN_CACHE`` or ``~/.cache/lightning_unlearn``)."""

    def validate(self, config: BenchmarkConfig) -> None:
        super().validate(config)
        if self.device_data and self.devices not in ("auto", "1"):
            raise ConfigError(f"device_data keeps the training set on one device; it does not apply to devices={self.devices!r} (use 1 or the default loaders)")


# ---------------------------------------------------------------------------- the config
@dataclass(frozen=True, init=False)
class BenchmarkConfig:
    """Settings of one benchmark run (defaults: the embedded default run: digits, small CNN, random 10% forget set).

    Built from sections, flat keywords, or both (flat keywords are applied on top of the
    sections given); a section may also be given as a dict of its fields::

        BenchmarkConfig(forget="class:3", seeds=(0, 1, 2))
        BenchmarkConfig(data=DataConfig(forget="class:3"), unlearning={"seeds": [0, 1, 2]})

    Reading a field by its flat name (``config.seeds``) gives the section's value.

    Raises:
        ConfigError: an unknown keyword (naming the allowed ones) or a value whose text form
            does not parse.
    """

    data: DataConfig = field(default_factory=DataConfig)
    """The data set, its subsets and what is forgotten."""
    models: ModelsConfig = field(default_factory=ModelsConfig)
    """The original, retrained and reference models."""
    unlearning: UnlearningConfig = field(default_factory=UnlearningConfig)
    """The methods, the replicate seeds and the unlearning phase's recipe."""
    tuning: TuningConfig = field(default_factory=TuningConfig)
    """How hyperparameters are chosen."""
    audit: AuditConfig = field(default_factory=AuditConfig)
    """The membership-inference audit."""
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    """Devices, precision, memory format, cache folder."""

    def __init__(self, **settings: Any) -> None:
        given = {name: settings.pop(name) for name in list(settings) if name in SECTIONS}
        flat = split_flat(settings)
        for name, kind in SECTIONS.items():
            section = _as_section(kind, name, given.get(name))
            if flat.get(name):
                section = dataclasses.replace(section, **flat[name])
            object.__setattr__(self, name, section)

    def __getattr__(self, name: str) -> Any:
        """A field by its flat name (``config.seeds`` is ``config.unlearning.seeds``)."""
        section = FLAT_FIELDS.get(name)
        if section is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(object.__getattribute__(self, section), name)

    # ------------------------------------------------------------------ derived settings
    @property
    def forget_spec(self):
        from lightning_unlearn.data import ForgetSpec

        return ForgetSpec.parse(self.data.forget)

    @property
    def kind(self) -> str:
        return self.forget_spec.kind

    @property
    def has_remain(self) -> bool:
        return not self.data.no_remain

    @property
    def cache_root(self) -> Path:
        return Path(self.execution.cache_dir) if self.execution.cache_dir else default_cache_root()

    @property
    def resolved_epochs(self) -> int:
        from lightning_unlearn.training import default_epochs

        return self.models.epochs if self.models.epochs is not None else default_epochs(self.data.dataset, self.models.model)

    @property
    def resolved_lr(self) -> float:
        from lightning_unlearn.training.fit import DEFAULT_LR

        return self.models.lr if self.models.lr is not None else DEFAULT_LR.get(self.models.model, 0.05)

    @property
    def resolved_retrain_models(self) -> int:
        if self.models.retrain_models is not None:
            return self.models.retrain_models
        return 3 if self.kind == "class" else 1

    def retrain_seeds(self, seed: int | None = None) -> tuple[int, ...]:
        """Model seeds of the retrained models (of replicate ``seed`` for random forgetting)."""
        r, seeds = self.resolved_retrain_models, self.unlearning.seeds
        if self.kind == "class":
            out = list(seeds)
            nxt = max(seeds) + 1
            while len(out) < r:
                out.append(nxt)
                nxt += 1
            return tuple(out)
        from lightning_unlearn.seeding import derive_seed

        base = seeds[0] if seed is None else seed
        return (base,) + tuple(derive_seed(base, "retrain", j) for j in range(1, r))

    def unlearning_methods(self) -> tuple[str, ...]:
        """The method names (without ``original``/``retrain``) this run unlearns with."""
        from lightning_unlearn.unlearning import methods_for

        if self.unlearning.methods is None:
            return tuple(methods_for(self.kind, self.has_remain))
        return tuple(m for m in self.unlearning.methods if m not in BASELINE_ROWS)

    def rows(self) -> tuple[str, ...]:
        """Table rows in order: ``original``, ``retrain``, then the methods."""
        return BASELINE_ROWS + self.unlearning_methods()

    def recipes(self, image_shape: tuple[int, ...]) -> dict[str, dict[str, Any]]:
        """Both data recipes of the run, resolved for images of ``image_shape``.

        ``"original"``: the fits of original, retrained and reference models (the settings
        ``augmentation``, ``batch_size``, ``epochs``, ``lr``, ``width``, FastClip);
        ``"unlearning"``: every method's unlearning phase (``unlearn_augmentation`` on D_R and
        D_F, ``unlearn_batch_size``, ``unlearn_epochs``; AMUN's adversarial set D_A unaugmented
        unless a fixed ``augment_adv=True`` says otherwise). ``augmentation`` values are
        ``"crop_flip"`` or ``"none"``; ``setting`` is the configured value (``"auto"`` included).
        """
        from lightning_unlearn.data.transforms import resolve_augmentation

        def spelled(value: str) -> str:
            return resolve_augmentation(value, image_shape) or "none"

        m, u = self.models, self.unlearning
        unlearn_aug = spelled(u.unlearn_augmentation)
        augment_adv = {name: bool(hp.get("augment_adv")) for name, hp in (u.hparams or {}).items() if "augment_adv" in hp}
        original = {
            "augmentation": spelled(m.augmentation), "setting": m.augmentation, "batch_size": m.batch_size,
            "epochs": self.resolved_epochs, "lr": self.resolved_lr, "schedule": "onecycle", "model": m.model, "width": m.width,
            "fastclip": m.fastclip, "fastclip_every": m.fastclip_every if m.fastclip is not None else None,
        }
        unlearning = {
            "augmentation": unlearn_aug, "setting": u.unlearn_augmentation, "applies_to": "remain and forget sets (D_R, D_F)",
            "adversarial_set": {name: (unlearn_aug if augment_adv.get(name) else "none") for name in self.unlearning_methods() if _is_adversarial(name)}
            or None,
            "batch_size": u.unlearn_batch_size, "epochs": u.unlearn_epochs,
        }
        return {"original": original, "unlearning": unlearning}

    # ------------------------------------------------------------------ validation
    def validate(self) -> BenchmarkConfig:
        """Check every section; raise :class:`ConfigError` (one line, value and allowed ones).

        Checks the data set name or tree, the data directory, the forget spec, the model and
        its recipe, the methods (known, registered, and applicable to the forget kind / remain
        setting), the fixed hyperparameters, the seeds, the tuning and audit settings and the
        execution settings. Class indices are checked against the data set when it is opened
        (:func:`lightning_unlearn.pipeline.stages.open_data`).
        """
        for name in SECTIONS:
            getattr(self, name).validate(self)
        return self

    # ------------------------------------------------------------------ serialisation
    def sections(self) -> dict[str, Any]:
        """``{section name: section}`` in order."""
        return {name: getattr(self, name) for name in SECTIONS}

    def flat_dict(self) -> dict[str, Any]:
        """Every field by its flat name, as set (no defaults resolved)."""
        out: dict[str, Any] = {}
        for section in self.sections().values():
            out.update(dataclasses.asdict(section))
        return out

    def changed(self) -> dict[str, Any]:
        """The fields (by flat name) whose values differ from the defaults."""
        default = BenchmarkConfig().flat_dict()
        return {k: v for k, v in self.flat_dict().items() if v != default[k]}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON for ``results.json``: the fields by flat name, with the resolved defaults and the derived choices."""
        d = self.flat_dict()
        d["methods"] = list(self.rows())
        d["seeds"] = list(self.unlearning.seeds)
        d["tune_lrs"] = None if self.tuning.tune_lrs is None else list(self.tuning.tune_lrs)
        d["hparams"] = None if self.unlearning.hparams is None else {m: dict(hp) for m, hp in self.unlearning.hparams.items()}
        d["epochs"] = self.resolved_epochs
        d["lr"] = self.resolved_lr
        d["retrain_models"] = self.resolved_retrain_models
        d["cache_dir"] = str(self.cache_root)
        d["forget"] = str(self.forget_spec)
        d["forget_kind"] = self.kind
        d["avg_gap_mia"] = "rmia_auc" if self.audit.rmia_references > 0 else "mia"
        return d

    def digest(self) -> str:
        """A short hash of the whole config (the run's identity)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> BenchmarkConfig:
        """A copy with ``changes``: sections and/or fields by flat name (``replace(seeds=(1,), data=...)``)."""
        return BenchmarkConfig(**{**self.sections(), **changes})


def _as_section(kind: type, name: str, value: Any) -> Any:
    """A section from ``None`` (the defaults), an instance, or a dict of its fields."""
    if value is None:
        return kind()
    if isinstance(value, kind):
        return value
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(section_fields(kind)))
        if unknown:
            raise ConfigError(f"unknown {name} setting {', '.join(map(repr, unknown))}: {name} has {', '.join(section_fields(kind))}")
        return kind(**value)
    raise ConfigError(f"{name} must be a {kind.__name__} or a dict of its fields, got {value!r}")


def _is_adversarial(method: str) -> bool:
    """Whether ``method`` trains on AMUN's adversarial set D_A (AMUN and its variants)."""
    from lightning_unlearn.unlearning import METHODS
    from lightning_unlearn.unlearning.amun import AMUN

    cls = METHODS.get(method)
    return cls is not None and issubclass(cls, AMUN)


# ---------------------------------------------------------------------------- the schema's tables
def section_fields(kind: type) -> tuple[str, ...]:
    """The field names of a section, in order."""
    return tuple(f.name for f in dataclasses.fields(kind))


#: ``{section name: section class}``, in order (from :class:`BenchmarkConfig`'s fields)
SECTIONS: dict[str, type] = {name: hint for name, hint in typing.get_type_hints(BenchmarkConfig).items()}


def _flat_fields() -> dict[str, str]:
    out: dict[str, str] = {}
    for section, kind in SECTIONS.items():
        for name in section_fields(kind):
            if name in out or name in SECTIONS:
                raise TypeError(f"config field {section}.{name} repeats the flat name of {out.get(name, name)}.{name}: field names must be unique")
            out[name] = section
    return out


#: ``{flat field name: its section}``: the one table behind flat keywords, flat reads and the
#: command line's flat options (``--max-train`` is ``--data.max_train``)
FLAT_FIELDS: dict[str, str] = _flat_fields()


def split_flat(settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Flat keywords grouped by section: ``{"seeds": ..., "forget": ...}`` -> ``{"unlearning": {...}, "data": {...}}``.

    Raises:
        ConfigError: an unknown name, with the closest field names and the sections.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, value in settings.items():
        section = FLAT_FIELDS.get(name)
        if section is None:
            close = difflib.get_close_matches(name, list(FLAT_FIELDS), n=3)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            raise ConfigError(
                f"unknown setting {name!r}: {hint}the settings are {', '.join(FLAT_FIELDS)} (or whole sections: {', '.join(SECTIONS)})"
            )
        out.setdefault(section, {})[name] = value
    return out


@functools.cache
def field_docs(kind: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass (one paragraph per field, whitespace folded).

    Example:
        >>> field_docs(AuditConfig)["rmia_gamma"]
        "RMIA's likelihood-ratio threshold γ."
    """
    tree = ast.parse(textwrap.dedent(inspect.getsource(kind)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


# ---------------------------------------------------------------------------- cache keys
# the fields whose change alters the data pool of every model
DATA_FIELDS = ("dataset", "max_train", "max_test")
# ... and the training recipe of original, retrained and reference models
TRAIN_FIELDS = ("model", "augmentation", "batch_size", "fastclip", "fastclip_every", "accelerator", "devices", "strategy", "precision", "channels_last")


def training_settings(config: BenchmarkConfig, *, data_fingerprint: str) -> dict[str, Any]:
    """The settings every trained model depends on (its cache key is built from these, by flat name)."""
    flat = config.flat_dict()
    out: dict[str, Any] = {k: flat[k] for k in DATA_FIELDS + TRAIN_FIELDS}
    from lightning_unlearn.training.fit import TRAINING_RECIPE_VERSION

    out["epochs"] = config.resolved_epochs
    out["lr"] = config.resolved_lr
    out["data_fingerprint"] = data_fingerprint
    out["recipe_version"] = TRAINING_RECIPE_VERSION
    if config.models.width is not None:  # only when set: models of the default width keep their keys
        out["width"] = config.models.width
    return out


__all__ = [
    "BASELINE_ROWS", "FLAT_FIELDS", "PRECISIONS", "SECTIONS", "AuditConfig", "BenchmarkConfig", "ConfigError", "DataConfig", "ExecutionConfig",
    "ModelsConfig", "TuningConfig", "UnlearningConfig", "field_docs", "parse_hparams", "parse_list", "split_flat", "training_settings",
]
