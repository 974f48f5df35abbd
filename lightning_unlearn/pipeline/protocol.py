"""What a benchmark run declares and runs: its tuning plans, its units of work and their keys, its declaration.

Both the run (:mod:`lightning_unlearn.pipeline.stages`) and the report built from the storage
(:mod:`lightning_unlearn.pipeline.results`) derive everything from these functions, so the
report finds exactly the units the run stored.

* :func:`tuning_plans` -- one :class:`~lightning_unlearn.tuning.TuningPlan` per (declared
  objective, method): the shared schedule space plus the method's own axes (``tune_lrs`` replaces
  the schedule's learning rates for every method alike), the budget ``max_trials``, K tuning sets,
  seed ``tune_seed``, the fixed hyperparameters (``unlearn_epochs`` and ``hparams``);
* :func:`fixed_hparams` -- what a method runs with when it is not tuned (``max_trials == 0``);
* :func:`retrain_unit`, :func:`original_unit`, :func:`method_unit` -- the units (their keys are
  :func:`~lightning_unlearn.pipeline.store.unit_key` of these dicts);
* :func:`declaration` -- the run's declaration, written to the storage before the first unit.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lightning_unlearn.pipeline.config import BenchmarkConfig
from lightning_unlearn.pipeline.design import Design, ForgetSet
from lightning_unlearn.pipeline.store import jsonable, unit_key
from lightning_unlearn.search_space import Categorical, SearchSpace
from lightning_unlearn.tuning import TuningPlan, plan_tuning

#: the layout version of a run's declaration and units; bump it when their meaning changes
PROTOCOL_VERSION = 1


def fixed_hparams(config: BenchmarkConfig, method: str) -> dict[str, Any]:
    """``{"epochs": unlearn_epochs, **hparams[method]}``: what every run of ``method`` is given besides the tuned values."""
    return {"epochs": config.unlearning.unlearn_epochs, **dict((config.unlearning.hparams or {}).get(method, {}))}


def tuning_plans(config: BenchmarkConfig, design: Design) -> dict[tuple[str, str], TuningPlan]:
    """``{(objective, method): plan}`` for every declared objective and every method of the run (empty when ``max_trials == 0``)."""
    t = config.tuning
    if t.max_trials == 0:
        return {}
    context = {
        "tuning_sets": [s.name for s in design.tuning_sets],
        "tuning_originals": [design.tuning_original(k) for k in range(len(design.tuning_sets))],
    }
    plans = {}
    for objective in t.objectives:
        for method in config.unlearning_methods():
            plan = plan_tuning(
                method, budget=t.max_trials, n_sets=len(design.tuning_sets), seed=t.tune_seed, objective=objective,
                fixed=fixed_hparams(config, method), kind=config.kind, context=context,  # type: ignore[arg-type]
            )
            if t.tune_lrs is not None and "lr" in plan.space.axes:
                space = SearchSpace({**plan.space.axes, "lr": Categorical(tuple(t.tune_lrs))}, plan.space.constants)
                plan = dataclasses.replace(plan, space=space)
            plans[(objective, method)] = plan
    return plans


def retrain_unit(forget_set: ForgetSet) -> dict[str, Any]:
    """The unit measuring the R retrained models of ``forget_set`` (each leave-one-out) and their mean."""
    return {"method": "retrain", "forget_set": forget_set.name}


def original_unit(original: int, forget_set: ForgetSet) -> dict[str, Any]:
    """The unit measuring original ``original`` on ``forget_set`` (the untouched model's cell)."""
    return {"method": "original", "original": original, "forget_set": forget_set.name}


def method_unit(method: str, hparams: dict[str, Any], original: int, forget_set: ForgetSet) -> dict[str, Any]:
    """The unit unlearning ``forget_set`` from ``original`` with ``method`` and ``hparams`` (all of them, fixed ones included)."""
    return {"method": method, "hparams": jsonable(hparams), "original": original, "forget_set": forget_set.name}


def key(unit: dict[str, Any]) -> str:
    return unit_key(**unit)


def declaration(config: BenchmarkConfig, design: Design, recipes: dict[str, Any]) -> dict[str, Any]:
    """The run's declaration: ``version``, ``settings`` (every field as set, by flat name: the config
    rebuilds from it), ``config`` (resolved), ``design``, ``recipes`` and ``plans``
    (``{objective: {method: plan declaration}}``: space, budget, objective, sets, seed).

    Compared field by field when a run reopens the storage (where things are, ``cache_dir`` and
    ``storage``, is not compared).
    """
    plans: dict[str, dict[str, Any]] = {}
    for (objective, method), plan in tuning_plans(config, design).items():
        plans.setdefault(objective, {})[method] = plan.declaration()
    return jsonable({
        "version": PROTOCOL_VERSION, "settings": config.flat_dict(), "config": config.to_dict(), "design": design.to_dict(),
        "recipes": recipes, "plans": plans,
    })


def config_of(declaration: dict[str, Any]) -> BenchmarkConfig:
    """The config a declaration was written by (from its ``settings``)."""
    return BenchmarkConfig(**declaration["settings"])


__all__ = [
    "PROTOCOL_VERSION", "config_of", "declaration", "fixed_hparams", "key", "method_unit", "original_unit", "retrain_unit", "tuning_plans",
]
