"""``BenchmarkConfig``: every setting of one ``lightning-unlearn benchmark`` run.

The config is a frozen dataclass: validated once (:meth:`BenchmarkConfig.validate`), turned
into plain JSON for ``results.json`` (:meth:`BenchmarkConfig.to_dict`), and the source of the
cache keys of trained models (:mod:`lightning_unlearn.cache`): a key is the hash of
exactly the settings that change a model's weights, so a changed configuration never reuses a
stale model while unrelated changes (another method list, more seeds) reuse what is there.

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

One vocabulary: every field is spelled as its command-line option (``--tune-lrs`` is
``tune_lrs``), and every field accepts the command line's text as well as the Python value
(``seeds="0,1,2"`` or ``(0, 1, 2)``, ``methods="ft,amun"``, ``augmentation="none"`` or
``None``, ``devices=2`` or ``"2"``, ``hparams="trw.tau=0.5"`` or ``{"trw": {"tau": 0.5}}``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASELINE_ROWS = ("original", "retrain")
RMIA_SIGNALS = ("softmax", "sm_taylor_softmax")
AUGMENTATION_CHOICES = ("auto", "crop_flip", "none")
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true")


class ConfigError(ValueError):
    """Bad user input (unknown name, inapplicable method, missing directory, ...).

    The message is one line naming the bad value and the allowed ones; the command line
    prints it and exits with code 2.
    """


def default_cache_root() -> Path:
    """The library's cache folder (``$LIGHTNING_UNLEARN_CACHE`` or ``~/.cache/lightning_unlearn``)."""
    from lightning_unlearn.cache import default_cache_dir

    return Path(default_cache_dir())


# ---------------------------------------------------------------------------- the command line's text
def parse_list(value: Any, kind: Callable[[str], Any], name: str) -> tuple | None:
    """A comma-separated list (the command line's form) or any sequence -> a tuple of ``kind``.

    Raises:
        ConfigError: an empty list or an item that is not a ``kind``.
    """
    if value is None:
        return None
    items = [t.strip() for t in value.split(",") if t.strip()] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else [value]
    try:
        out = tuple(kind(v) for v in items)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a comma-separated list of {kind.__name__} values, got {value!r}") from None
    if not out and name != "seeds":
        raise ConfigError(f"{name} must not be empty, got {value!r}")
    return out


def _scalar(text: str) -> Any:
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def parse_hparams(value: Any) -> dict[str, dict[str, Any]] | None:
    """Fixed hyperparameters: ``"METHOD.NAME=VALUE[,METHOD.NAME=VALUE...]"`` or ``{METHOD: {NAME: VALUE}}``.

    Values of the text form are read as ``None``/``none``, ``true``/``false``, integers,
    floats, or else strings.

    Raises:
        ConfigError: an item not of the form ``METHOD.NAME=VALUE``.
    """
    if value is None:
        return None
    if isinstance(value, str):
        out: dict[str, dict[str, Any]] = {}
        for item in (t.strip() for t in value.split(",") if t.strip()):
            left, eq, right = item.partition("=")
            method, dot, name = left.strip().partition(".")
            if not eq or not dot or not method or not name:
                raise ConfigError(f"bad hyperparameter {item!r}: expected METHOD.NAME=VALUE, e.g. trw.tau=0.5")
            out.setdefault(method, {})[name] = _scalar(right)
        return out
    if isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()):
        return {str(m): dict(hp) for m, hp in value.items()}
    raise ConfigError(f"hparams must be 'METHOD.NAME=VALUE,...' or a dict of dicts, got {value!r}")


def _optional_int(value: Any, name: str) -> int | None:
    """``None`` / ``"none"`` -> ``None``; an integer or its text -> ``int``."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "")):
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be an integer or None, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be an integer or None, got {value!r}") from None


@dataclass(frozen=True)
class BenchmarkConfig:
    """Settings of one benchmark run (defaults: the embedded default run: digits, small CNN, random 10% forget set).

    Data:
        dataset: ``digits`` (default), ``cifar10``, ``cifar100``, ``mnist``, ``fashion-mnist``,
            ``svhn`` or the path of an ImageFolder tree with ``train/`` and ``test/``.
        data_dir: where torchvision data sets live; ``download`` lets torchvision fetch them.
        max_train, max_test: stratified subsets (``None``: everything).
        forget: ``random:FRACTION`` (default ``random:0.1``) or ``class:K[,K]``.
        no_remain: the methods see only the forget set (the "D_F only" setting).

    Models:
        model: ``small-cnn`` (default) or ``resnet18``.
        width: the small CNN's width (channels of its first layer; ``None``: the model's
            default, 16); part of every trained model's cache key when set.
        epochs: training length of original, retrained and reference models; ``None``
            resolves to :func:`lightning_unlearn.training.default_epochs` (recorded).
        lr: peak learning rate of those fits; ``None``: the library default per model.
        batch_size: training batch size of original, retrained and reference models (default 128).
        retrain_models: retrained models (``None``: 1 per seed for random forgetting, 3
            shared for class forgetting; see the module docstring).
        augmentation: the originals' recipe: ``"auto"`` (default: crop+flip on RGB images of
            32x32 or more, none otherwise), ``"crop_flip"`` or ``"none"``, for the fits of
            original, retrained and reference models. ``"none"`` lets a small model memorise its
            training set, which is what membership inference (and so unlearning) is about.
        fastclip: FastClip ``max_norm`` on the fits of original, retrained and reference models
            (``None``: off); ``fastclip_every`` its ``every_n_steps``.

    Methods:
        methods: the rows of the table; ``None`` means ``original``, ``retrain`` and every
            registered method that applies to the setting. ``original`` and ``retrain`` are
            always evaluated (every gap is measured against ``retrain``).
        seeds: replicate seeds (default ``(0,)``); ``tune_seed`` draws the tuning forget set.
        tune_class: class forgetting only: the held-out class the hyperparameters are tuned on
            (default ``None``: the first class after the forgotten ones that is not forgotten).
        unlearn_epochs: epochs of every unlearning phase (default 5; recorded).
        unlearn_augmentation: the unlearning phase's recipe, the same for every method of the
            run and independent of ``augmentation``: ``"auto"`` (default) is the reference
            recipe of the papers' code (the training transform, crop+flip, on D_R and D_F for
            RGB images of 32x32 or more, none otherwise, e.g. digits; AMUN's adversarial set
            unaugmented), ``"crop_flip"`` or ``"none"``. Not part of any model's cache key
            (unlearned models are not cached).
        unlearn_batch_size: batch size of every unlearning phase (default 128, the papers').
        tune_lrs: the learning-rate grid of every method (replaces the method's own ``lr``
            grid; ``None`` keeps it); other tunable hyperparameters keep their grids.
        max_trials: at most this many grid points per method (default 3: a diagonal through
            the grids, see :func:`~lightning_unlearn.pipeline.stages.tuning_grid`). ``0``
            disables tuning (the methods' defaults are used).
        hparams: fixed hyperparameters per method, ``{"trw": {"tau": 0.5}}`` or
            ``"trw.tau=0.5,amun.lr=0.01"``: always passed to the method and left out of its
            tuning grid (a method whose every tunable hyperparameter is fixed is not tuned).

    Audit:
        rmia_references: RMIA reference models (default 4; 0 disables RMIA and ``avg_gap``
            then uses the SVC efficacy, recorded as ``avg_gap_mia``).
        rmia_signal: ``softmax`` (default) or ``sm_taylor_softmax``; ``rmia_gamma`` (default 2).

    Execution:
        accelerator, devices, strategy: passed to every Lightning ``Trainer``.
        precision: passed to every ``Trainer`` (default ``"32-true"``; ``"bf16-mixed"`` on a
            GPU). Attacks and metrics always run in fp32.
        channels_last: train original, retrained and reference models in channels-last memory
            format (faster convolutions on GPUs).
        device_data: keep the training set of original and retrained models on the
            accelerator (:class:`~lightning_unlearn.data.DeviceTensorLoader`; same data order
            as the default loader; single device only).
        cache_dir: trained models and decoded pools (default the user's cache folder).
    """

    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    max_train: int | None = None
    max_test: int | None = None
    forget: str = "random:0.1"
    no_remain: bool = False
    model: str = "small-cnn"
    width: int | None = None
    epochs: int | None = None
    lr: float | None = None
    batch_size: int = 128
    retrain_models: int | None = None
    augmentation: str = "auto"
    fastclip: float | None = None
    fastclip_every: int = 10
    methods: tuple[str, ...] | None = None
    seeds: tuple[int, ...] = (0,)
    tune_seed: int = 100
    unlearn_epochs: int = 5
    unlearn_augmentation: str = "auto"
    unlearn_batch_size: int = 128
    tune_lrs: tuple[float, ...] | None = None
    max_trials: int = 3
    tune_class: int | None = None
    hparams: dict[str, dict[str, Any]] | None = field(default=None, hash=False)
    rmia_references: int = 4
    rmia_signal: str = "softmax"
    rmia_gamma: float = 2.0
    accelerator: str = "auto"
    devices: str = "auto"
    strategy: str = "auto"
    precision: str = "32-true"
    channels_last: bool = False
    device_data: bool = False
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        """Accept the command line's text for every field (see the module docstring)."""
        fix = {
            "methods": parse_list(self.methods, str, "methods"),
            "seeds": parse_list(self.seeds, int, "seeds"),
            "tune_lrs": parse_list(self.tune_lrs, float, "tune_lrs"),
            "hparams": parse_hparams(self.hparams),
            "devices": str(self.devices),
            "augmentation": "none" if self.augmentation is None else self.augmentation,
            "unlearn_augmentation": "none" if self.unlearn_augmentation is None else self.unlearn_augmentation,
            "width": _optional_int(self.width, "width"),
        }
        for name, value in fix.items():
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ derived settings
    @property
    def forget_spec(self):
        from lightning_unlearn.data import ForgetSpec

        return ForgetSpec.parse(self.forget)

    @property
    def kind(self) -> str:
        return self.forget_spec.kind

    @property
    def has_remain(self) -> bool:
        return not self.no_remain

    @property
    def cache_root(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else default_cache_root()

    @property
    def resolved_epochs(self) -> int:
        from lightning_unlearn.training import default_epochs

        return self.epochs if self.epochs is not None else default_epochs(self.dataset, self.model)

    @property
    def resolved_lr(self) -> float:
        from lightning_unlearn.training.fit import DEFAULT_LR

        return self.lr if self.lr is not None else DEFAULT_LR.get(self.model, 0.05)

    @property
    def resolved_retrain_models(self) -> int:
        if self.retrain_models is not None:
            return self.retrain_models
        return 3 if self.kind == "class" else 1

    def retrain_seeds(self, seed: int | None = None) -> tuple[int, ...]:
        """Model seeds of the retrained models (of replicate ``seed`` for random forgetting)."""
        r = self.resolved_retrain_models
        if self.kind == "class":
            out = list(self.seeds)
            nxt = max(self.seeds) + 1
            while len(out) < r:
                out.append(nxt)
                nxt += 1
            return tuple(out)
        from lightning_unlearn.seeding import derive_seed

        base = self.seeds[0] if seed is None else seed
        return (base,) + tuple(derive_seed(base, "retrain", j) for j in range(1, r))

    def unlearning_methods(self) -> tuple[str, ...]:
        """The method names (without ``original``/``retrain``) this run unlearns with."""
        from lightning_unlearn.unlearning import methods_for

        if self.methods is None:
            return tuple(methods_for(self.kind, self.has_remain))
        return tuple(m for m in self.methods if m not in BASELINE_ROWS)

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

        unlearn_aug = spelled(self.unlearn_augmentation)
        augment_adv = {m: bool(hp.get("augment_adv")) for m, hp in (self.hparams or {}).items() if "augment_adv" in hp}
        original = {
            "augmentation": spelled(self.augmentation), "setting": self.augmentation, "batch_size": self.batch_size,
            "epochs": self.resolved_epochs, "lr": self.resolved_lr, "schedule": "onecycle", "model": self.model, "width": self.width,
            "fastclip": self.fastclip, "fastclip_every": self.fastclip_every if self.fastclip is not None else None,
        }
        unlearning = {
            "augmentation": unlearn_aug, "setting": self.unlearn_augmentation, "applies_to": "remain and forget sets (D_R, D_F)",
            "adversarial_set": {m: (unlearn_aug if augment_adv.get(m) else "none") for m in self.unlearning_methods() if _is_adversarial(m)} or None,
            "batch_size": self.unlearn_batch_size, "epochs": self.unlearn_epochs,
        }
        return {"original": original, "unlearning": unlearning}

    # ------------------------------------------------------------------ validation
    def validate(self) -> "BenchmarkConfig":
        """Check every setting; raise :class:`ConfigError` (one line, value and allowed ones).

        Checks the data set name or tree, the data directory, the model, the forget spec, the
        methods (known, registered, and applicable to the forget kind / remain setting), the
        seeds and the numeric settings. Class indices are checked against the data set when
        it is opened (:func:`lightning_unlearn.pipeline.stages.open_data`).
        """
        from lightning_unlearn.data import SOURCE_NAMES
        from lightning_unlearn.models.factory import MODEL_NAMES
        from lightning_unlearn.unlearning import METHODS, get_method
        from lightning_unlearn.unlearning.base import describe_setting

        if self.dataset not in SOURCE_NAMES:
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
        if self.model not in MODEL_NAMES:
            raise ConfigError(f"unknown model {self.model!r}: expected one of {', '.join(MODEL_NAMES)}")
        try:
            spec = self.forget_spec
        except ValueError as err:
            raise ConfigError(str(err)) from None
        allowed_rows = list(BASELINE_ROWS) + list(METHODS)
        for name in self.methods or ():
            if name in BASELINE_ROWS:
                continue
            if name not in METHODS:
                raise ConfigError(f"unknown method {name!r}: expected one of {', '.join(allowed_rows)}")
            if not get_method(name).supports(spec.kind, self.has_remain):
                from lightning_unlearn.unlearning import methods_for

                ok = ", ".join(list(BASELINE_ROWS) + methods_for(spec.kind, self.has_remain))
                raise ConfigError(f"method {name!r} does not apply to {describe_setting(spec.kind, self.has_remain)}: allowed are {ok}")
        if self.methods is not None and len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"--methods lists a method twice: {','.join(self.methods)}")
        for name, fixed in (self.hparams or {}).items():
            if name not in METHODS:
                raise ConfigError(f"hparams names an unknown method {name!r}: expected one of {', '.join(METHODS)}")
            unknown = sorted(set(fixed) - set(get_method(name).hyperparameter_names()))
            if unknown:
                raise ConfigError(
                    f"hparams gives {name!r} unknown hyperparameters {', '.join(unknown)}: it accepts {', '.join(get_method(name).hyperparameter_names())}"
                )
        if self.tune_class is not None:
            if spec.kind != "class":
                raise ConfigError(f"tune_class applies to class forgetting only, not to {spec}")
            if self.tune_class < 0 or self.tune_class in spec.classes:
                raise ConfigError(f"tune_class must be a class that is not forgotten ({spec}), got {self.tune_class}")
        if not self.seeds:
            raise ConfigError("--seeds needs at least one seed")
        if any(s < 0 for s in self.seeds) or self.tune_seed < 0:
            raise ConfigError(f"seeds must be non-negative integers, got {list(self.seeds)} and tune seed {self.tune_seed}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"--seeds lists a seed twice: {','.join(map(str, self.seeds))}")
        for name in ("max_train", "max_test", "epochs", "retrain_models"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {v}")
        if self.unlearn_epochs <= 0:
            raise ConfigError(f"unlearn_epochs must be a positive integer, got {self.unlearn_epochs}")
        if self.batch_size <= 0:
            raise ConfigError(f"batch_size must be a positive integer, got {self.batch_size}")
        if self.unlearn_batch_size <= 0:
            raise ConfigError(f"unlearn_batch_size must be a positive integer, got {self.unlearn_batch_size}")
        if self.width is not None and self.width <= 0:
            raise ConfigError(f"width must be a positive integer, got {self.width}")
        if self.width is not None and self.model != "small-cnn":
            raise ConfigError(f"width is an option of the small CNN only, got width={self.width} with model {self.model!r} (allowed: small-cnn)")
        if self.max_trials < 0:
            raise ConfigError(f"max_trials must be 0 or more, got {self.max_trials}")
        if self.tune_lrs is not None and (not self.tune_lrs or any(lr <= 0 for lr in self.tune_lrs)):
            raise ConfigError(f"tune_lrs must be positive learning rates, got {self.tune_lrs}")
        if self.rmia_references < 0 or self.rmia_references == 1 or self.rmia_references % 2:
            raise ConfigError(f"rmia_references must be 0 or an even number >= 2 (each point is IN for half), got {self.rmia_references}")
        if self.rmia_signal not in RMIA_SIGNALS:
            raise ConfigError(f"unknown RMIA signal {self.rmia_signal!r}: expected one of {', '.join(RMIA_SIGNALS)}")
        if self.rmia_gamma <= 0:
            raise ConfigError(f"rmia_gamma must be positive, got {self.rmia_gamma}")
        if self.fastclip is not None and self.fastclip <= 0:
            raise ConfigError(f"--fastclip MAX_NORM must be positive, got {self.fastclip}")
        if self.fastclip is not None:
            try:
                from lightning_unlearn.callbacks import FastClip  # noqa: F401
            except ImportError:
                raise ConfigError("--fastclip needs lightning_unlearn.callbacks.FastClip, which this installation lacks") from None
        if self.fastclip_every <= 0:
            raise ConfigError(f"fastclip_every must be positive, got {self.fastclip_every}")
        if self.lr is not None and self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.augmentation not in AUGMENTATION_CHOICES:
            raise ConfigError(f"unknown augmentation {self.augmentation!r}: expected one of {', '.join(AUGMENTATION_CHOICES)}")
        if self.unlearn_augmentation not in AUGMENTATION_CHOICES:
            raise ConfigError(f"unknown unlearn_augmentation {self.unlearn_augmentation!r}: expected one of {', '.join(AUGMENTATION_CHOICES)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if self.device_data and self.devices not in ("auto", "1"):
            raise ConfigError(f"device_data keeps the training set on one device; it does not apply to devices={self.devices!r} (use 1 or the default loaders)")
        return self

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the fields, with the resolved defaults and the derived choices."""
        d = dataclasses.asdict(self)
        d["methods"] = list(self.rows())
        d["seeds"] = list(self.seeds)
        d["tune_lrs"] = None if self.tune_lrs is None else list(self.tune_lrs)
        d["hparams"] = None if self.hparams is None else {m: dict(hp) for m, hp in self.hparams.items()}
        d["epochs"] = self.resolved_epochs
        d["lr"] = self.resolved_lr
        d["retrain_models"] = self.resolved_retrain_models
        d["cache_dir"] = str(self.cache_root)
        d["forget"] = str(self.forget_spec)
        d["forget_kind"] = self.kind
        d["avg_gap_mia"] = "rmia_auc" if self.rmia_references > 0 else "mia"
        return d

    def digest(self) -> str:
        """A short hash of the whole config (the run's identity)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> "BenchmarkConfig":
        return dataclasses.replace(self, **changes)


def _is_adversarial(method: str) -> bool:
    """Whether ``method`` trains on AMUN's adversarial set D_A (AMUN and its variants)."""
    from lightning_unlearn.unlearning import METHODS
    from lightning_unlearn.unlearning.amun import AMUN

    cls = METHODS.get(method)
    return cls is not None and issubclass(cls, AMUN)


# the fields whose change alters the data pool of every model
DATA_FIELDS = ("dataset", "max_train", "max_test")
# ... and the training recipe of original, retrained and reference models
TRAIN_FIELDS = ("model", "augmentation", "batch_size", "fastclip", "fastclip_every", "accelerator", "devices", "strategy", "precision", "channels_last")


def training_settings(config: BenchmarkConfig, *, data_fingerprint: str) -> dict[str, Any]:
    """The settings every trained model depends on (its cache key is built from these)."""
    out: dict[str, Any] = {k: getattr(config, k) for k in DATA_FIELDS + TRAIN_FIELDS}
    from lightning_unlearn.training.fit import TRAINING_RECIPE_VERSION

    out["epochs"] = config.resolved_epochs
    out["lr"] = config.resolved_lr
    out["data_fingerprint"] = data_fingerprint
    out["recipe_version"] = TRAINING_RECIPE_VERSION
    if config.width is not None:  # only when set: models of the default width keep their keys
        out["width"] = config.width
    return out


__all__ = ["BASELINE_ROWS", "BenchmarkConfig", "ConfigError", "RMIA_SIGNALS", "parse_hparams", "parse_list", "training_settings"]
