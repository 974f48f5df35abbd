"""Deterministic samplers: every trial's proposal depends on the study seed and its *slot*.

**Slots.** A study of budget N fills N slots, 0 … N−1. A fresh trial takes the next slot,

    slot = trial.number − (number of retry trials numbered below it),

and a retry (a trial re-queued because its process died or raised, see
:func:`~lightning_unlearn.tuning.study.requeue_unfinished`) keeps the slot of the trial it
repeats, with the same parameters. So a study interrupted and resumed gives every slot the
same number as an uninterrupted one, although optuna's trial numbers differ (the interrupted
trial keeps its number, failed; its retry takes a new one). The slot is stored as the trial's
system attribute :data:`SLOT_KEY` (and copied to retries).

**Grid** (:class:`SlotGridSampler`): optuna's ``GridSampler`` shuffles the grid with its seed;
slot n evaluates grid point n of that order, where optuna's own rule would take the trial
number (which a retry shifts).

**TPE** (:class:`SlotTPESampler`): before each trial a fresh ``TPESampler`` is built with the
seed ``derive_seed(seed, "tuning", study_key, "tpe", slot)`` and answers that trial's sampling
calls. Its random startup draws and its model-based proposals therefore depend only on the
seed, the slot and the finished trials before it: a resumed study proposes what an
uninterrupted one does (same finished trials, in the same order, with the same values).
Built from optuna's public constructor: no private random state is reseeded.

**Several processes** sharing one study (the benchmark's workers) keep distinct slots, since
trial numbers are distinct, and start a slot only when :func:`~lightning_unlearn.tuning.engine.next_trial`
says it is *ready*: any grid slot and any TPE startup slot at once (their proposals depend on the
seed and the slot alone), a later TPE slot n only once every slot before n has finished. TPE's
proposal for slot n then sees exactly the finished trials an uninterrupted single process sees
(slots 0 … n−1, with their values; no other trial is running with parameters), so any number of
workers makes the same choices. ``constant_liar=True`` (declared, as before) therefore never
changes a proposal here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, GridSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState

from lightning_unlearn.seeding import derive_seed

#: the system attribute holding a trial's slot (copied to its retries)
SLOT_KEY = "lightning_unlearn:slot"
#: optuna's system attributes of a retry (those of ``optuna.storages.RetryHeartbeatStaleTrialCallback``)
RETRY_OF_KEY = "failed_trial"
RETRY_HISTORY_KEY = "retry_history"


def is_retry(trial: FrozenTrial) -> bool:
    """Whether ``trial`` repeats an earlier, interrupted trial (it carries optuna's ``failed_trial`` attribute)."""
    return RETRY_OF_KEY in trial.system_attrs


def trial_slot(study: optuna.Study, trial: FrozenTrial) -> int:
    """The slot of ``trial`` (see the module docstring), assigned and stored on first call."""
    if SLOT_KEY in trial.system_attrs:
        return int(trial.system_attrs[SLOT_KEY])
    retries_before = sum(1 for t in study.get_trials(deepcopy=False) if t.number < trial.number and is_retry(t))
    slot = trial.number - retries_before
    # the same storage call GridSampler uses to tag a trial with its grid point
    study._storage.set_trial_system_attr(trial._trial_id, SLOT_KEY, slot)
    return slot


class SlotGridSampler(GridSampler):
    """``GridSampler`` whose slot n evaluates point n of the seeded grid order.

    Unlike ``GridSampler`` it never calls ``study.stop()``: the engine asks one trial per slot.

    Args:
        search_space: ``{name: values}`` (see :meth:`~lightning_unlearn.tuning.SearchSpace.grid`).
        seed: shuffles the grid order (optuna's rule), so that a study cut short still spreads
            over the grid.
    """

    def __init__(self, search_space: Mapping[str, Sequence[Any]], seed: int) -> None:
        super().__init__(search_space, seed=seed)
        # what GridSampler stores on each trial it tags (its sorted search space) and the grid's size
        self._tag = {name: list(values) for name, values in sorted(search_space.items())}
        self._grid_points = math.prod(len(values) for values in self._tag.values())

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        """Nothing: the engine starts exactly one trial per slot, so the grid never needs ``study.stop()``
        (which would raise outside ``Study.optimize``)."""

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        # a retry or an enqueued trial already carries its grid point (or its parameters)
        if "grid_id" in trial.system_attrs or "fixed_params" in trial.system_attrs:
            return
        slot = trial_slot(study, trial)
        if slot >= self._grid_points:  # more trials than points (not planned): optuna's own choice
            super().before_trial(study, trial)
            return
        study._storage.set_trial_system_attr(trial._trial_id, "search_space", self._tag)
        study._storage.set_trial_system_attr(trial._trial_id, "grid_id", slot)


class SlotTPESampler(BaseSampler):
    """TPE whose every trial is sampled by a fresh ``TPESampler`` seeded from (seed, slot).

    Args:
        seed: the study seed.
        key: names the study in the derived seeds (independent streams per study).
        n_startup_trials: finished trials sampled at random before TPE's model takes over.
        constant_liar: count other processes' running trials as bad results (optuna's option).
    """

    def __init__(self, *, seed: int, key: str, n_startup_trials: int, constant_liar: bool = True) -> None:
        self.seed, self.key = seed, key
        self.n_startup_trials, self.constant_liar = n_startup_trials, constant_liar
        self._samplers: dict[int, TPESampler] = {}  # trial number -> the sampler of that trial

    def slot_seed(self, slot: int) -> int:
        """``derive_seed(seed, "tuning", key, "tpe", slot)``: the seed of slot ``slot``'s sampler."""
        return derive_seed(self.seed, "tuning", self.key, "tpe", slot)

    def _sampler(self, trial: FrozenTrial) -> TPESampler:
        sampler = self._samplers.get(trial.number)
        if sampler is None:  # a trial this process did not start (not expected): seed it the same way
            sampler = self._samplers[trial.number] = self._make(int(trial.system_attrs.get(SLOT_KEY, trial.number)))
        return sampler

    def _make(self, slot: int) -> TPESampler:
        return TPESampler(
            seed=self.slot_seed(slot), n_startup_trials=self.n_startup_trials, multivariate=True, constant_liar=self.constant_liar
        )

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._samplers[trial.number] = sampler = self._make(trial_slot(study, trial))
        sampler.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._sampler(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return self._sampler(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution) -> Any:
        return self._sampler(trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        sampler = self._samplers.pop(trial.number, None)
        if sampler is not None:
            sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        """Nothing to reseed: each trial's sampler is seeded from its slot (optuna calls this for ``n_jobs > 1``)."""


__all__ = ["SLOT_KEY", "SlotGridSampler", "SlotTPESampler", "is_retry", "trial_slot"]
