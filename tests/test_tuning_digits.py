"""The tuning engine on a real, tiny objective: fine-tuning on digits, Avg. Gap to a retrained model on two tuning sets."""

from __future__ import annotations

import copy
import json

import optuna
import pytest

from lightning_unlearn.data import UnlearningDataModule
from lightning_unlearn.pipeline import evaluation as ev
from lightning_unlearn.training import ClassifierModule, seed_everything, train_classifier
from lightning_unlearn.tuning import DivergedError, check_finite, plan_tuning, run_tuning
from lightning_unlearn.unlearning import UnlearningMixin, UnlearningRequest, get_method, unlearn

TRAINER = {"accelerator": "cpu"}  # make_trainer is quiet by default


class Model(UnlearningMixin, ClassifierModule):
    pass


@pytest.fixture(scope="module")
def tuning_sets(cache_dir, digits_original):
    """Two random forget sets of the digits pool (seeds 10, 11) with one model retrained on each remain set."""
    sets = []
    for seed in (10, 11):
        dm = UnlearningDataModule("digits", forget="random:0.1", seed=seed, cache_dir=cache_dir)
        dm.setup()
        retrained = train_classifier(dm, on="remain", epochs=8, seed=0)
        sets.append((dm, ev.model_outputs(retrained.model, dm)))
    return sets


def test_tuning_fine_tuning_on_digits(tmp_path, digits_original, digits_dm, tuning_sets):
    assert all(len(dm.pool.train_y) == len(digits_dm.pool.train_y) for dm, _ in tuning_sets)  # one pool: one original model

    def evaluate(method, hparams, k):
        dm, retrain_out = tuning_sets[k]
        module = Model(copy.deepcopy(digits_original.model), num_classes=dm.num_classes)
        obj = get_method(method).from_hyperparameters(**hparams)  # epochs=1 is among the fixed hyperparameters
        seed_everything(k)  # as the benchmark does before each run: the result does not depend on the runs before it
        unlearn(module, obj, UnlearningRequest.from_datamodule(dm, seed=k), trainer_kwargs=TRAINER)
        out = ev.model_outputs(module.model, dm)
        check_finite(module, [out.train, out.test], nonfinite_loss_steps=obj.nonfinite_loss_steps)
        sets = ev.Sets.of(dm)
        values = ev.evaluate(out, sets, retrain_outputs=[retrain_out]).values
        star = ev.evaluate(retrain_out, sets, retrain_outputs=[retrain_out]).values
        return {**values, "avg_gap": ev.gap(values, star, "mia")}

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    plan = plan_tuning("ga", budget=7, n_sets=2, seed=0, fixed={"step_size": 1, "epochs": 1}, kind="random")
    result = run_tuning(plan, evaluate, tmp_path)
    assert plan.sampler_kind == "grid" and result.n_trials == 7
    scored = [h for h in result.history if h["state"] == "complete"]
    assert result.n_complete == len(scored) and result.n_complete + result.n_diverged == 7
    # the lowest mean, ties (equal accuracies are common on a small pool) to the smallest parameters as JSON text
    best = min(scored, key=lambda h: (h["value"], json.dumps({k: h["hparams"][k] for k in plan.space.axes}, sort_keys=True)))
    assert result.chosen == best["hparams"] and result.chosen["epochs"] == 1 and result.chosen["step_size"] == 1
    for h in scored:
        assert len(h["sets"]) == 2 and {"ua", "ra", "ta", "mia", "avg_gap"} <= set(h["sets"][0]["metrics"])
        assert h["value"] == pytest.approx((h["sets"][0]["value"] + h["sets"][1]["value"]) / 2)
    # the stored objective is what an independent run of the chosen hyperparameters measures (CPU: bit-reproducible)
    again = [evaluate("ga", dict(result.chosen), k)["avg_gap"] for k in range(2)]
    assert again == pytest.approx([s["value"] for s in best["sets"]], abs=1e-9)


def test_a_run_with_an_exploding_learning_rate_is_diverged(digits_dm, digits_original):
    module = Model(copy.deepcopy(digits_original.model), num_classes=10)
    method = get_method("ft")(lr=1e4, epochs=1)
    unlearn(module, method, UnlearningRequest.from_datamodule(digits_dm), trainer_kwargs=TRAINER)
    assert method.nonfinite_loss_steps > 0 and method.diagnostics()["nonfinite_loss_steps"] == method.nonfinite_loss_steps
    with pytest.raises(DivergedError, match="unlearning steps had a non-finite loss"):
        check_finite(module, nonfinite_loss_steps=method.nonfinite_loss_steps)
    # a sane learning rate: nothing counted, nothing raised
    sane = get_method("ft")(lr=0.01, epochs=1)
    unlearn(Model(copy.deepcopy(digits_original.model), num_classes=10), sane, UnlearningRequest.from_datamodule(digits_dm), trainer_kwargs=TRAINER)
    assert sane.nonfinite_loss_steps == 0 and sane.diagnostics() == {}
