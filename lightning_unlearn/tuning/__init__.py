"""Hyperparameter tuning as a declared, equal-effort protocol, on Optuna.

* :mod:`~lightning_unlearn.search_space`: typed axes, the shared schedule space (7 learning
  rates x StepLR period {1, 5, 10}, gamma 0.1);
* :mod:`~lightning_unlearn.tuning.methods`: a registered method's space (:func:`method_space`);
* :mod:`~lightning_unlearn.tuning.objectives`: the declared objectives (``avg_gap``,
  ``avg_gap+mia_nn``, ``avg_gap+kl``);
* :mod:`~lightning_unlearn.tuning.plan`: :func:`plan_tuning`, the budget rule (grid when it
  fits, seeded TPE otherwise) and the plan's declaration;
* :mod:`~lightning_unlearn.tuning.samplers`: grid and TPE samplers whose proposals depend only
  on the seed and the trial's slot, so a resumed study makes an uninterrupted one's choices;
* :mod:`~lightning_unlearn.tuning.study`: the SQLite storage, declaration checks and resume;
* :mod:`~lightning_unlearn.tuning.engine`: :func:`run_tuning`, :func:`run_next_trial` (one trial,
  from any of several processes sharing the study) and :class:`TuningResult`;
* :mod:`~lightning_unlearn.tuning.sharing`: one storage shared by many processes (holder records,
  heartbeats, dead holders, a lock; journal files);
* :mod:`~lightning_unlearn.tuning.divergence`: :class:`DivergedError` and :func:`check_finite`.

The protocol is described in docs/protocol.md ("Tuning protocol").
"""

from lightning_unlearn.search_space import (
    SCHEDULE_GAMMA,
    SCHEDULE_LRS,
    SCHEDULE_SPACE,
    SCHEDULE_STEPS,
    Axis,
    Categorical,
    FloatRange,
    IntRange,
    SearchSpace,
)
from lightning_unlearn.tuning.divergence import DivergedError, check_finite, nonfinite_entries
from lightning_unlearn.tuning.engine import Evaluate, TuningResult, next_trial, run_next_trial, run_tuning, tuning_result
from lightning_unlearn.tuning.methods import method_space
from lightning_unlearn.tuning.objectives import DEFAULT_OBJECTIVE, OBJECTIVES, Objective, get_objective
from lightning_unlearn.tuning.plan import TuningPlan, plan_tuning
from lightning_unlearn.tuning.study import DEFAULT_FILE_NAME, StudyMismatchError, open_study

__all__ = [
    "Axis",
    "Categorical",
    "DEFAULT_FILE_NAME",
    "DEFAULT_OBJECTIVE",
    "DivergedError",
    "Evaluate",
    "FloatRange",
    "IntRange",
    "OBJECTIVES",
    "Objective",
    "SCHEDULE_GAMMA",
    "SCHEDULE_LRS",
    "SCHEDULE_SPACE",
    "SCHEDULE_STEPS",
    "SearchSpace",
    "StudyMismatchError",
    "TuningPlan",
    "TuningResult",
    "check_finite",
    "get_objective",
    "method_space",
    "next_trial",
    "nonfinite_entries",
    "open_study",
    "plan_tuning",
    "run_next_trial",
    "run_tuning",
    "tuning_result",
]
