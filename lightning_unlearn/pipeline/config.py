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

The replicate design and its seeds (documented contract; docs/protocol.md, section 3):

* **originals** -- ``seeds`` lists the model seeds of the O original models, each trained on
  the whole training set. An original does not depend on the forget set (its cache key has no
  forget spec), so every original is crossed with every forget set.
* **forget sets** -- F of them. Random forgetting (``forget: random:FRACTION``): forget set
  ``f`` is drawn with forget seed ``forget_seeds[f]`` (default :data:`DEFAULT_FORGET_SEEDS`).
  Class forgetting: ``forget: class:K[,K]`` is one forget set (those classes together);
  ``forget: classes:K1,K2,...`` is one forget set per class, each forgotten on its own.
* **retrained models** -- R per forget set (``retrain_models``; default 2 for random and 3 for
  class forgetting), trained on that forget set's remain set. Random forgetting: model seeds
  ``s, derive_seed(s, "retrain", 1), ...`` with ``s`` the forget seed; class forgetting: model
  seeds ``0, 1, ..., R - 1`` (a retrained model's cache key holds its forget spec). Starred
  (retrain) values of a forget set are the mean over its R models; each retrained model is scored
  leave-one-out against the other R - 1 (the noise floor).
* **cells** -- every method runs once per (original, forget set): O x F cells, each measured
  against the mean of that forget set's retrained models. Models: O + F·R (+ K·R for the tuning
  sets, + the RMIA references).
* **tuning sets** -- K = ``tune_sets`` sets that are never reported. Random forgetting: forget
  sets drawn with ``tune_seed, tune_seed + 1, ...`` (disjoint from ``forget_seeds``); class
  forgetting: the held-out classes ``tune_class`` (default: the first K classes after the
  forgotten ones that are not forgotten). Each has R retrained models; tuning set ``k`` is
  unlearned from the original ``seeds[k mod O]``. ``tune_seed`` also seeds the tuning studies
  (grid order, TPE draws). Hyperparameters fixed in ``hparams`` are used as given and not tuned.
* **runs** -- every unlearning run (tuning or evaluation) on original ``o`` and forget set
  ``f`` is seeded with ``derive_seed(o, "unlearning-run", f)`` (the global random state and
  the request's data order), whatever ran before it and whichever process runs it.
* **model seed** -- a model with model seed ``m`` is initialised by ``seed_everything(m)``
  and sees its training data in the order of ``derive_seed(m, "data-order")``
  (:func:`lightning_unlearn.training.train_classifier`; every derived seed of the library
  comes from :func:`lightning_unlearn.seeding.derive_seed`).
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
from lightning_unlearn.stats.design import CELL_UNITS, DEFAULT_UNIT
from lightning_unlearn.tuning.objectives import DEFAULT_OBJECTIVE, OBJECTIVES

BASELINE_ROWS = ("original", "retrain")
#: the forget seeds of random forgetting when ``forget_seeds`` is not given (F = 3 forget sets)
DEFAULT_FORGET_SEEDS = (0, 1, 2)
#: the prefix of ``forget`` for several class forget sets, one class each (``classes:3,8``)
CLASSES_PREFIX = "classes:"
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
    max_train: int | None = 400
    """Stratified subset of the training set (``None``: everything; default 400, the main job's
    regime, see docs/protocol.md section 4)."""
    max_test: int | None = None
    """Stratified subset of the test set (``None``: everything)."""
    forget: str = "random:0.2"
    """What is forgotten: ``random:FRACTION`` (F forget sets of that size, one per forget seed),
    ``class:K[,K]`` (one forget set: those classes together) or ``classes:K1,K2,...`` (one forget
    set per class, each forgotten on its own)."""
    forget_seeds: tuple[int, ...] | None = setting(None, list_of(int))
    """Random forgetting: the seeds of the F forget sets, one set drawn with each (``None``:
    ``0, 1, 2``). Not used by class forgetting, whose forget sets are classes."""
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
            specs = config.forget_specs
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if specs[0].kind == "class" and self.forget_seeds is not None:
            raise ConfigError(f"forget_seeds applies to random forgetting; the forget sets of {self.forget} are classes (several: forget classes:K1,K2)")
        if self.forget_seeds is not None:
            if not self.forget_seeds or any(s < 0 for s in self.forget_seeds) or len(set(self.forget_seeds)) != len(self.forget_seeds):
                raise ConfigError(f"forget_seeds must be distinct non-negative integers, got {list(self.forget_seeds)}")
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
    """R, the retrained models of every forget set and tuning set (``None``: 2 for random and 3 for
    class forgetting; at least 2 for class forgetting, whose MIA-NN audits a retrained model
    leave-one-out). Each is scored against the other R - 1: the noise floor (none with R = 1)."""
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
        if self.retrain_models == 1 and config.kind == "class":
            raise ConfigError("retrain_models must be at least 2 for class forgetting (MIA-NN audits each retrained model against the others), got 1")
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
    """The rows of the table, the original models, and the recipe of every unlearning phase.

    ``seeds`` lives here: the model seeds of the O original models, each crossed with every
    forget set (see the module docstring).
    """

    methods: tuple[str, ...] | None = setting(None, list_of(str))
    """The rows of the table (``None``: ``original``, ``retrain`` and every registered method
    that applies to the setting). ``original`` and ``retrain`` are always evaluated (every gap
    is measured against ``retrain``)."""
    seeds: tuple[int, ...] = setting((0, 1), list_of(int))
    """The model seeds of the O original models (each crossed with every forget set)."""
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
    ``"trw.tau=0.5,amun.lr=0.01"``: always passed to the method and left out of its search
    space (a method whose every tuned hyperparameter is fixed is not tuned)."""

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
    """How each method's hyperparameters are chosen: the declared protocol of :mod:`lightning_unlearn.tuning`."""

    max_trials: int = 4
    """N, the trial budget of every method (per objective): its whole grid when the space has at
    most N points, otherwise N seeded TPE trials; ``0`` disables tuning (each method runs with
    its defaults and ``hparams``). The shared schedule space alone has 21 points."""
    tune_sets: int = 2
    """K >= 2, the tuning sets each trial is scored on (the objective is the mean over them):
    random forgetting draws them with ``tune_seed``, ``tune_seed + 1``, ...; class forgetting
    holds out K classes (``tune_class``)."""
    tune_seed: int = 100
    """Seed of the tuning studies (grid order, TPE draws) and, for random forgetting, of the first
    tuning forget set (the k-th is drawn with ``tune_seed + k``; none may be a forget seed)."""
    tune_class: tuple[int, ...] | None = setting(None, list_of(int))
    """Class forgetting: the held-out classes the hyperparameters are tuned on, each forgotten on
    its own (``None``: the first ``tune_sets`` classes after the forgotten ones that are not
    forgotten; given, K is their number, at least 2)."""
    objectives: tuple[str, ...] = setting((DEFAULT_OBJECTIVE,), list_of(str))
    """The declared tuning objectives (each tunes every method on its own and gets its own
    verdicts): ``avg_gap`` (both settings), ``avg_gap+mia_nn`` and ``avg_gap+kl`` (class
    forgetting; :mod:`lightning_unlearn.tuning.objectives`)."""
    tune_lrs: tuple[float, ...] | None = setting(None, list_of(float))
    """The learning rates of the shared schedule space, for every method alike (``None``: the
    schedule's seven, 0.1 ... 1e-5)."""

    def validate(self, config: BenchmarkConfig) -> None:
        super().validate(config)
        if self.tune_seed < 0:
            raise ConfigError(f"tune_seed must be a non-negative integer, got {self.tune_seed}")
        if self.max_trials < 0:
            raise ConfigError(f"max_trials must be 0 or more, got {self.max_trials}")
        if self.tune_sets < 2:
            raise ConfigError(f"tune_sets must be at least 2 (the objective is a mean over K >= 2 tuning sets), got {self.tune_sets}")
        kind = config.kind
        if self.tune_class is not None:
            if kind != "class":
                raise ConfigError(f"tune_class applies to class forgetting only, not to {config.data.forget}")
            forgotten = {k for spec in config.forget_specs for k in spec.classes}
            bad = [k for k in self.tune_class if k < 0 or k in forgotten]
            if bad:
                raise ConfigError(f"tune_class must be classes that are not forgotten ({config.data.forget}), got {bad[0]}")
            if len(set(self.tune_class)) != len(self.tune_class) or len(self.tune_class) < 2:
                raise ConfigError(f"tune_class must list at least 2 distinct held-out classes (K >= 2 tuning sets), got {list(self.tune_class)}")
        if kind == "random":
            clash = sorted(set(config.tuning_seeds()) & set(config.resolved_forget_seeds))
            if clash:
                raise ConfigError(f"the tuning forget sets (tune_seed {self.tune_seed} and the next {self.tune_sets - 1}) must not be forget sets: "
                                  f"forget seed {clash[0]} is both; choose another tune_seed or forget_seeds")
        if not self.objectives or len(set(self.objectives)) != len(self.objectives):
            raise ConfigError(f"objectives must list distinct objectives, got {list(self.objectives)}")
        for name in self.objectives:
            if name not in OBJECTIVES:
                raise ConfigError(f"unknown tuning objective {name!r}: expected one of {', '.join(OBJECTIVES)}")
            if kind not in OBJECTIVES[name].kinds:
                ok = [n for n, o in OBJECTIVES.items() if kind in o.kinds]
                applies = " and ".join(OBJECTIVES[name].kinds)
                raise ConfigError(f"objective {name!r} applies to {applies} forgetting, not to {kind} forgetting: allowed are {', '.join(ok)}")
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
    stats_unit: str = setting(DEFAULT_UNIT, choices=CELL_UNITS)
    """The unit of every interval and paired difference (:func:`lightning_unlearn.stats.summarize_cells`):
    ``forget_set`` (the mean of each forget set's cells over the originals; t interval over the F
    forget sets), ``original``, ``two_way_bootstrap`` or ``cell``."""

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
    storage: str | None = None
    """The optuna storage URL that holds the run's studies: every tuning trial and every measured
    run (``None``: ``sqlite:///OUT/study.sqlite3`` inside the output folder, in memory without
    one). A rerun with the same settings resumes it."""

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
    def forget_specs(self) -> tuple:
        """The :class:`~lightning_unlearn.data.ForgetSpec` of each class forget set, or the one spec of random forgetting.

        ``classes:3,8`` gives ``(class:3, class:8)``; ``class:3,8`` gives ``(class:3,8,)``;
        ``random:0.2`` gives ``(random:0.2,)`` (its F forget sets differ by their forget seeds).

        Raises:
            ValueError: a bad spec, naming it and the allowed forms.
        """
        return parse_forget(self.data.forget)

    @property
    def forget_spec(self):
        """The forget spec of the first forget set (its kind is the run's)."""
        return self.forget_specs[0]

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
        """R: ``retrain_models``, or 2 (random forgetting) / 3 (class forgetting)."""
        if self.models.retrain_models is not None:
            return self.models.retrain_models
        return 3 if self.kind == "class" else 2

    @property
    def resolved_forget_seeds(self) -> tuple[int, ...]:
        """Random forgetting: the seeds of the F forget sets (``forget_seeds`` or :data:`DEFAULT_FORGET_SEEDS`); ``()`` for class forgetting."""
        if self.kind != "random":
            return ()
        return self.data.forget_seeds if self.data.forget_seeds is not None else DEFAULT_FORGET_SEEDS

    def forget_set_names(self) -> tuple[str, ...]:
        """The names of the F forget sets: ``random:0.2@SEED`` (random forgetting) or the class spec (``class:3``)."""
        if self.kind == "class":
            return tuple(str(spec) for spec in self.forget_specs)
        return tuple(f"{self.forget_spec}@{s}" for s in self.resolved_forget_seeds)

    def tuning_seeds(self) -> tuple[int, ...]:
        """Random forgetting: the seeds of the K tuning forget sets, ``tune_seed, tune_seed + 1, ...``."""
        return tuple(self.tuning.tune_seed + k for k in range(self.tuning.tune_sets))

    def retrain_seeds(self, forget_seed: int | None = None) -> tuple[int, ...]:
        """Model seeds of the R retrained models of a forget set: random forgetting, that of ``forget_seed``
        (``s, derive_seed(s, "retrain", 1), ...``); class forgetting, ``0, 1, ..., R - 1``."""
        r = self.resolved_retrain_models
        if self.kind == "class":
            return tuple(range(r))
        from lightning_unlearn.seeding import derive_seed

        base = self.resolved_forget_seeds[0] if forget_seed is None else forget_seed
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
        d["forget_seeds"] = list(self.resolved_forget_seeds) if self.kind == "random" else None
        d["forget_sets"] = list(self.forget_set_names())
        d["tune_class"] = None if self.tuning.tune_class is None else list(self.tuning.tune_class)
        d["objectives"] = list(self.tuning.objectives)
        d["tune_lrs"] = None if self.tuning.tune_lrs is None else list(self.tuning.tune_lrs)
        d["hparams"] = None if self.unlearning.hparams is None else {m: dict(hp) for m, hp in self.unlearning.hparams.items()}
        d["epochs"] = self.resolved_epochs
        d["lr"] = self.resolved_lr
        d["retrain_models"] = self.resolved_retrain_models
        d["cache_dir"] = str(self.cache_root)
        d["forget"] = self.data.forget if self.data.forget.startswith(CLASSES_PREFIX) else str(self.forget_spec)
        d["forget_kind"] = self.kind
        d["avg_gap_mia"] = "rmia_auc" if self.audit.rmia_references > 0 else "mia"
        return d

    def digest(self) -> str:
        """A short hash of the whole config (the run's identity)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> BenchmarkConfig:
        """A copy with ``changes``: sections and/or fields by flat name (``replace(seeds=(1,), data=...)``)."""
        return BenchmarkConfig(**{**self.sections(), **changes})


def parse_forget(text: str) -> tuple:
    """The forget sets' specs of a ``forget`` setting (see :attr:`BenchmarkConfig.forget_specs`).

    Example:
        >>> [str(s) for s in parse_forget("classes:3,8")], [str(s) for s in parse_forget("class:3,8")]
        (['class:3', 'class:8'], ['class:3,8'])

    Raises:
        ValueError: a bad spec (naming it and the allowed forms), or a class listed twice in ``classes:``.
    """
    from lightning_unlearn.data import ForgetSpec

    if text.startswith(CLASSES_PREFIX):
        items = [t.strip() for t in text[len(CLASSES_PREFIX):].split(",")]
        try:
            classes = [int(t) for t in items]
        except ValueError:
            raise ValueError(f"bad forget spec {text!r}: classes:K1,K2,... takes class indices (one forget set per class)") from None
        if len(set(classes)) != len(classes):
            raise ValueError(f"bad forget spec {text!r}: a class is listed twice; each forget set is one class")
        return tuple(ForgetSpec("class", classes=(k,)) for k in classes)
    try:
        return (ForgetSpec.parse(text),)
    except ValueError as err:
        raise ValueError(f"{err}; or 'classes:K1,K2' (one forget set per class)") from None


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
    "ModelsConfig", "TuningConfig", "UnlearningConfig", "DEFAULT_FORGET_SEEDS", "field_docs", "parse_forget", "parse_hparams", "parse_list", "split_flat",
    "training_settings",
]
