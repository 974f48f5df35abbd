"""The replicate design of a benchmark run: originals × forget sets, retrained models per set, tuning sets.

A run crosses O original models (``seeds``) with F forget sets: every method runs once per
*cell* (original, forget set) and is measured against the mean of that forget set's R retrained
models. The K tuning sets are forget sets that are never reported. An original model does not
depend on the forget set (its cache key has no forget spec), so the design trains
``O + F·R + K·R`` models (plus the RMIA references). The seeds contract is in
:mod:`lightning_unlearn.pipeline.config` and docs/protocol.md, section 3.

:func:`design_of` resolves a config into a :class:`Design` (pure; the data set is needed only
for the number of classes, which fixes the default held-out classes of class forgetting).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from lightning_unlearn.pipeline.config import BenchmarkConfig, ConfigError
from lightning_unlearn.seeding import derive_seed

Role = Literal["forget", "tune"]


@dataclass(frozen=True)
class ForgetSet:
    """One forget set of the design.

    Attributes:
        name: its identity in unit keys and reports: ``random:0.2@SEED`` or the class spec ``class:3``.
        spec: the forget spec of its data module (``random:0.2``, ``class:3``).
        seed: the data module's seed (random forgetting: the forget seed that draws the set; class: 0).
        role: ``"forget"`` (reported) or ``"tune"`` (a tuning set, never reported).
        index: its position among the sets of its role (f or k).
        retrain_seeds: the model seeds of its R retrained models.
    """

    name: str
    spec: str
    seed: int
    role: Role
    index: int
    retrain_seeds: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "spec": self.spec, "seed": self.seed, "role": self.role, "index": self.index, "retrain_seeds": list(self.retrain_seeds)}


@dataclass(frozen=True)
class Design:
    """Who is crossed with whom (see the module docstring).

    Attributes:
        originals: the model seeds of the O originals.
        forget_sets: the F reported forget sets.
        tuning_sets: the K tuning sets.
    """

    originals: tuple[int, ...]
    forget_sets: tuple[ForgetSet, ...]
    tuning_sets: tuple[ForgetSet, ...]

    @property
    def shape(self) -> tuple[int, int]:
        """``(O, F)``: the shape of every method's cells."""
        return len(self.originals), len(self.forget_sets)

    def tuning_original(self, k: int) -> int:
        """The original that tuning set ``k`` is unlearned from: ``originals[k mod O]``."""
        return self.originals[k % len(self.originals)]

    def all_sets(self) -> tuple[ForgetSet, ...]:
        return self.forget_sets + self.tuning_sets

    def model_count(self) -> int:
        """Originals and retrained models the design trains: ``O + (F + K)·R`` (references apart)."""
        return len(self.originals) + sum(len(s.retrain_seeds) for s in self.all_sets())

    def to_dict(self) -> dict[str, Any]:
        return {
            "originals": list(self.originals),
            "forget_sets": [s.to_dict() for s in self.forget_sets],
            "tuning_sets": [s.to_dict() for s in self.tuning_sets],
            "tuning_originals": [self.tuning_original(k) for k in range(len(self.tuning_sets))],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Design:
        def sets(items: list[dict]) -> tuple[ForgetSet, ...]:
            return tuple(ForgetSet(**{**d, "retrain_seeds": tuple(d["retrain_seeds"])}) for d in items)

        return cls(tuple(data["originals"]), sets(data["forget_sets"]), sets(data["tuning_sets"]))


def run_seed(original: int, forget_set: ForgetSet) -> int:
    """The seed of every unlearning run of ``original`` on ``forget_set`` (global random state and data order):
    ``derive_seed(original, "unlearning-run", forget_set.name)``, the same in every process and order."""
    return derive_seed(original, "unlearning-run", forget_set.name)


def held_out_classes(forgotten: tuple[int, ...] | set[int], num_classes: int, k: int) -> tuple[int, ...]:
    """The first ``k`` classes after the forgotten ones (cyclically, from the largest) that are not forgotten.

    Example:
        >>> held_out_classes((3,), 10, 2), held_out_classes((8, 9, 0), 10, 2)
        ((4, 5), (1, 2))

    Raises:
        ConfigError: fewer than ``k`` classes are left to hold out.
    """
    free = [c for c in range(num_classes) if c not in forgotten]
    if len(free) < k:
        raise ConfigError(f"class forgetting holds out {k} tuning classes, but only {len(free)} of the {num_classes} classes are not forgotten")
    start = (max(forgotten) + 1) % num_classes
    order = [(start + i) % num_classes for i in range(num_classes)]
    return tuple([c for c in order if c not in forgotten][:k])


def design_of(config: BenchmarkConfig, num_classes: int) -> Design:
    """The :class:`Design` of ``config`` for a data set of ``num_classes`` classes.

    Raises:
        ConfigError: a held-out class out of range, or too few classes to hold out.
    """
    spec = str(config.forget_spec)
    tuned = config.tuning.max_trials > 0 and bool(config.unlearning_methods())  # no tuning: no tuning sets to train
    if config.kind == "random":
        forget = tuple(ForgetSet(f"{spec}@{s}", spec, s, "forget", f, config.retrain_seeds(s)) for f, s in enumerate(config.resolved_forget_seeds))
        tune = tuple(ForgetSet(f"{spec}@{s}", spec, s, "tune", k, config.retrain_seeds(s)) for k, s in enumerate(config.tuning_seeds() if tuned else ()))
    else:
        seeds = config.retrain_seeds()
        forget = tuple(ForgetSet(str(sp), str(sp), 0, "forget", f, seeds) for f, sp in enumerate(config.forget_specs))
        forgotten = {c for sp in config.forget_specs for c in sp.classes}
        classes = (config.tuning.tune_class or held_out_classes(forgotten, num_classes, config.tuning.tune_sets)) if tuned else ()
        bad = [c for c in classes if c >= num_classes]
        if bad:
            raise ConfigError(f"tune_class {bad[0]} is out of range; allowed classes are 0..{num_classes - 1}")
        tune = tuple(ForgetSet(f"class:{c}", f"class:{c}", 0, "tune", k, seeds) for k, c in enumerate(classes))
    return Design(tuple(config.unlearning.seeds), forget, tune)


__all__ = ["Design", "ForgetSet", "design_of", "held_out_classes", "run_seed"]
