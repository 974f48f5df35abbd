"""Search spaces and objectives of lightning_unlearn.tuning: the schedule space, every method's axes, the formulas."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from torch import nn

from lightning_unlearn.tuning import (
    OBJECTIVES,
    SCHEDULE_SPACE,
    Categorical,
    FloatRange,
    IntRange,
    SearchSpace,
    get_objective,
    method_space,
)
from lightning_unlearn.unlearning import METHODS, FineTune, get_method


def a_point(space: SearchSpace) -> dict:
    """One value per axis: a categorical axis's last value, a range's upper bound."""
    return {k: a.values[-1] if isinstance(a, Categorical) else a.high for k, a in space.axes.items()}


# ---------------------------------------------------------------------------- the schedule space
def test_schedule_space_is_the_reference_tuning_grid():
    # Ali-E/AMUN hyperparam_tune.py: lr_list = [1/10**i for i in range(1, 6)] + [0.05, 0.005]; step_list = [1, 5, 10]
    reference_lrs = [1 / 10**i for i in range(1, 6)] + [0.05, 0.005]
    grid = SCHEDULE_SPACE.grid()
    assert sorted(grid["lr"]) == pytest.approx(sorted(reference_lrs), rel=1e-12)
    assert grid["step_size"] == [1, 5, 10] and SCHEDULE_SPACE.constants == {"gamma": 0.1}
    points = SCHEDULE_SPACE.grid_points()
    assert SCHEDULE_SPACE.grid_size() == len(points) == 21
    assert {(p["lr"], p["step_size"]) for p in points} == set(itertools.product(grid["lr"], grid["step_size"]))


@pytest.mark.parametrize("name", list(METHODS))
def test_every_registered_method_takes_the_schedule_axes_and_uses_them(name):
    cls = get_method(name)
    space = method_space(name)
    assert {"lr", "step_size"} <= set(space.axes), name
    assert set(space.axes) <= set(cls.hyperparameter_names()), name
    hp = space.hyperparameters(a_point(space))
    method = cls.from_hyperparameters(**hp)  # every axis and constant is a constructor argument
    # the schedule is the shared one: SGD at lr, then StepLR(step_size, gamma=0.1) per epoch
    out = method.configure_optimizers(nn.Linear(3, 2))
    opt, sched = out["optimizer"], out["lr_scheduler"]["scheduler"]
    assert opt.param_groups[0]["lr"] == hp["lr"], name
    assert isinstance(sched, torch.optim.lr_scheduler.StepLR) and (sched.step_size, sched.gamma) == (hp["step_size"], 0.1), name
    assert out["lr_scheduler"]["interval"] == "epoch"


def test_only_categorical_spaces_have_a_finite_grid():
    assert method_space("ft").grid_size() == 21 and method_space("amun").grid_size() == 21
    assert method_space("scrub").grid_size() == 21 * 3  # msteps in {1, 2, 3}
    for name in ("salun", "amun-salun", "l1", "trw", "trw-concat"):
        assert math.isinf(method_space(name).grid_size()), name
    with pytest.raises(ValueError, match="mask_ratio"):
        method_space("salun").grid()
    assert SearchSpace({"n": IntRange(1, 3)}).grid_size() == math.inf


def test_methods_declare_their_own_axes_only():
    assert set(method_space("salun").axes) == set(method_space("amun-salun").axes) == {"lr", "step_size", "mask_ratio"}
    assert set(method_space("l1").axes) == {"lr", "step_size", "alpha"}
    assert set(method_space("trw").axes) == set(method_space("trw-concat").axes) == {"lr", "step_size", "beta", "tau"}
    beta, tau = method_space("trw").axes["beta"], method_space("trw").axes["tau"]
    assert (beta.low, beta.high, beta.log) == (1.0, 100.0, True) and math.isclose(math.sqrt(beta.low * beta.high), 10.0)  # default 10 at the log-midpoint
    assert tau.low <= 0.1 <= tau.high and tau.log
    for name in ("ft", "rl", "ga", "bs", "amun", "adv-only"):
        assert set(method_space(name).axes) == {"lr", "step_size"}, name


def test_fixed_hyperparameters_become_constants_and_remove_their_axes():
    space = method_space("salun", fixed={"mask_ratio": 0.5})
    assert set(space.axes) == {"lr", "step_size"} and space.constants == {"gamma": 0.1, "mask_ratio": 0.5}
    assert space.grid_size() == 21  # the reference's SalUn: mask ratio fixed at 0.5, a grid again
    assert method_space("ft", fixed={"gamma": 0.5}).constants == {"gamma": 0.5}
    assert "beta" not in method_space("trw", fixed={"expected_similarity": 0.3}).axes  # beta would conflict
    assert "tau" not in method_space("trw", fixed={"s": [0.0, 1.0]}).axes  # a given similarity ignores tau
    assert method_space("ft", fixed={"lr": 0.01, "step_size": 5}).is_empty
    with pytest.raises(ValueError, match=r"'nope'.*accepts.*lr"):
        method_space("ft", fixed={"nope": 1})


def test_axes_must_match_the_method_constructor():
    class Redeclares(FineTune):
        search_axes = {"lr": Categorical((0.1,))}

    class Unknown(FineTune):
        search_axes = {"nope": FloatRange(0.0, 1.0)}

    with pytest.raises(ValueError, match="redeclares the shared schedule axes"):
        method_space(Redeclares)
    with pytest.raises(ValueError, match=r"does not accept.*'nope'"):
        method_space(Unknown)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Categorical(()), "at least one value"),
        (lambda: Categorical((1, 1)), "distinct"),
        (lambda: Categorical((float("nan"),)), "finite"),
        (lambda: Categorical(([1],)), "str, int, float or bool"),
        (lambda: FloatRange(1.0, 1.0), "low < high"),
        (lambda: FloatRange(0.0, 1.0, log=True), "low > 0"),
        (lambda: IntRange(1.5, 3), "integer bounds"),
        (lambda: IntRange(1, float("inf")), "integer bounds"),
        (lambda: SearchSpace({"lr": Categorical((0.1,))}, {"lr": 0.1}), "both axes and constants"),
    ],
)
def test_bad_axes_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_the_description_is_json_and_sorted():
    space = method_space("trw")
    desc = json.loads(json.dumps(space.describe()))
    assert list(desc["axes"]) == ["beta", "lr", "step_size", "tau"] and desc["grid_size"] is None
    assert desc["axes"]["beta"] == {"type": "float", "low": 1.0, "high": 100.0, "log": True}
    assert method_space("scrub").describe()["grid_size"] == 63


# ---------------------------------------------------------------------------- objectives
def test_objectives_by_hand():
    m = {"avg_gap": 2.0, "mia_nn_retrain_acc_gap_loo": 7.0, "sym_kl": math.log(2.0)}
    assert OBJECTIVES["avg_gap"].value(m) == 2.0
    assert OBJECTIVES["avg_gap+mia_nn"].value(m) == pytest.approx((4 * 2.0 + 7.0) / 5)
    # 100 (1 - exp(-ln 2)) = 50 percentage points
    assert OBJECTIVES["avg_gap+kl"].value(m) == pytest.approx((4 * 2.0 + 50.0) / 5)
    assert OBJECTIVES["avg_gap+kl"].value({"avg_gap": 1.0, "sym_kl": 0.0}) == pytest.approx(0.8)
    assert OBJECTIVES["avg_gap+kl"].value({"avg_gap": 1.0, "sym_kl": 1e6}) < (4 + 100) / 5 + 1e-9  # bounded term
    assert math.isnan(OBJECTIVES["avg_gap"].value({"avg_gap": float("nan")}))
    assert math.isinf(OBJECTIVES["avg_gap+kl"].value({"avg_gap": 1.0, "sym_kl": float("inf")}))


def test_objective_errors_name_the_missing_figure():
    with pytest.raises(ValueError, match=r"'sym_kl'.*class forgetting"):
        OBJECTIVES["avg_gap+kl"].value({"avg_gap": 1.0, "sym_kl": None})
    with pytest.raises(ValueError, match=r"unknown tuning objective 'gap'.*avg_gap\+mia_nn"):
        get_objective("gap")


def test_scrub_keeps_its_milestones_without_a_step_size():
    out = get_method("scrub")(decay_epochs=(2, 4)).configure_optimizers(nn.Linear(3, 2))
    sched = out["lr_scheduler"]["scheduler"]
    assert isinstance(sched, torch.optim.lr_scheduler.MultiStepLR) and sorted(sched.milestones) == [2, 4]
