"""U-LiRA's shadow models on digits: the target pool, the forget table, the cached pairs, the method
runner, and the attack end to end (not unlearning at all is detected; exact retraining is not)."""

from __future__ import annotations

import pytest
import torch

from lightning_unlearn.audit import (
    forget_table,
    method_unlearner,
    train_shadow_pairs,
    ulira_audit,
    ulira_target_pool,
)
from lightning_unlearn.audit.shadows import positions_in
from lightning_unlearn.seeding import derive_seed

EPOCHS = 4  # enough for the originals to be more confident on their training images than retrained models
pytestmark = pytest.mark.filterwarnings("ignore::lightning_unlearn.metrics.functional.LowFPRVarianceWarning")


@pytest.fixture(scope="module")
def pairs(digits_dm, tmp_path_factory):
    """6 shadow pairs and 2 target pairs (another seed) for digits' random 10% forget set."""
    root = tmp_path_factory.mktemp("ulira-cache")
    shadows = train_shadow_pairs(digits_dm, 6, epochs=EPOCHS, seed=0, cache_dir=root, accelerator="cpu")
    targets = train_shadow_pairs(digits_dm, 2, epochs=EPOCHS, seed=1, cache_dir=root, accelerator="cpu")
    return shadows, targets, root


def test_target_pool_is_the_forget_set_and_as_many_remain_samples(digits_dm, cache_dir):
    from lightning_unlearn.data import UnlearningDataModule

    pool = ulira_target_pool(digits_dm)
    forget = digits_dm.forget_set().index
    assert torch.isin(forget, pool).all() and len(pool) == 2 * len(forget) == len(torch.unique(pool))
    assert torch.isin(pool, digits_dm.train_set().index).all() and torch.equal(pool, torch.sort(pool).values)
    assert torch.equal(pool, ulira_target_pool(digits_dm))  # seeded by the data module
    other = UnlearningDataModule("digits", forget="random:0.1", seed=1, cache_dir=cache_dir)
    assert not torch.equal(pool, ulira_target_pool(other))
    classes = UnlearningDataModule("digits", forget="class:3", seed=0, cache_dir=cache_dir)
    assert torch.equal(ulira_target_pool(classes), torch.sort(classes.forget_set().index).values)  # D_f: the class's training images


def test_forget_table_each_example_forgotten_by_half_the_shadows():
    t = forget_table(6, 500, seed=0, class_forgetting=False)
    assert t.shape == (6, 500) and torch.all(t.sum(0) == 3)
    assert (t.sum(1).float() / 500 - 0.5).abs().max() < 0.1
    assert not torch.equal(t, forget_table(6, 500, seed=1, class_forgetting=False))
    assert forget_table(3, 7, seed=0, class_forgetting=True).all()
    with pytest.raises(ValueError, match="even"):
        forget_table(3, 10, seed=0, class_forgetting=False)
    with pytest.raises(ValueError, match=">= 2"):
        forget_table(1, 10, seed=0, class_forgetting=True)


def test_shadow_pairs_are_the_documented_models_and_come_back_from_the_cache(pairs, digits_dm, monkeypatch):
    from lightning_unlearn.training import train_classifier

    shadows, _, root = pairs
    assert shadows.num_shadows == 6 and shadows.loaded_from_cache == 0
    assert torch.equal(shadows.target_index, ulira_target_pool(digits_dm)) and torch.all(shadows.forget.sum(0) == 3)
    # retrained shadow 3 is exactly train_classifier on the training pool minus F_3, with its derived seed
    pool = digits_dm.train_set()
    keep = torch.ones(len(pool), dtype=torch.bool)
    keep[positions_in(pool.index, shadows.forget_index(3))] = False
    direct = train_classifier(digits_dm, on=pool.subset(torch.nonzero(keep).flatten()), epochs=EPOCHS, seed=derive_seed(0, "ulira-retrain", 3))
    for a, b in zip(shadows.retrained[3].state_dict().values(), direct.model.state_dict().values()):
        assert torch.equal(a, b)

    import lightning_unlearn.audit.model_cache as mod

    monkeypatch.setattr(mod, "train_classifier", lambda *a, **k: pytest.fail("a cached shadow was retrained"))
    again = train_shadow_pairs(digits_dm, 6, epochs=EPOCHS, seed=0, cache_dir=root, accelerator="cpu")
    assert again.loaded_from_cache == 12 and torch.equal(again.forget, shadows.forget)
    # the originals do not depend on N: the first 6 of 8 are these ones (only the new ones would train)
    with pytest.raises(pytest.fail.Exception, match="retrained"):
        train_shadow_pairs(digits_dm, 8, epochs=EPOCHS, seed=0, cache_dir=root, accelerator="cpu")


def test_statistics_hold_each_shadows_forget_set_only(pairs):
    shadows, _, _ = pairs
    calls = []

    def identity(net, forget_index):
        calls.append((net, forget_index))
        return net

    unl, ret = shadows.statistics(identity)
    assert unl.shape == ret.shape == (6, int(shadows.pool.index.max()) + 1)
    for i, (net, forget_index) in enumerate(calls):
        assert net is not shadows.originals[i]  # a copy: the cached original is never changed
        assert torch.equal(forget_index, shadows.forget_index(i))
        seen = torch.nonzero(~torch.isnan(unl[i])).flatten()
        assert torch.equal(seen, forget_index) and torch.equal(torch.nonzero(~torch.isnan(ret[i])).flatten(), seen)
    # the originals trained on their forget sets, the retrained models did not: φ is higher on average
    assert float((unl - ret).nanmean()) > 0.3


def not_unlearned(pairs):
    shadows, targets, _ = pairs
    return ulira_audit(shadows, targets, lambda net, forget_index: net, tpr_fprs=(0.01,))


def test_originals_are_told_from_retrained_models(pairs):
    """No unlearning at all (the originals as the "unlearned" models): clearly above 50%."""
    _, targets, _ = pairs
    audit = not_unlearned(pairs)
    s = audit.scores
    assert s["unlearned"].sum() * 2 == len(s["score"]) == 2 * int(targets.forget.sum())  # balanced
    assert float(s["score"][s["unlearned"]].mean()) > float(s["score"][~s["unlearned"]].mean()) + 0.5
    assert audit.values["balanced_accuracy"] > 58 and audit.values["auc"] > 62


@pytest.mark.slow
def test_exact_retraining_is_not_told_from_retrained_models(pairs, digits_dm):
    """Retraining from scratch without F_i (a fresh seed each time) as the "unlearning": about 50%."""
    from lightning_unlearn.training import train_classifier

    shadows, targets, _ = pairs
    pool = digits_dm.train_set()
    seeds = iter(range(100, 200))

    def retrain_from_scratch(net, forget_index):
        keep = torch.ones(len(pool), dtype=torch.bool)
        keep[positions_in(pool.index, forget_index)] = False
        return train_classifier(digits_dm, on=pool.subset(torch.nonzero(keep).flatten()), epochs=EPOCHS, seed=next(seeds)).model

    exact = ulira_audit(shadows, targets, retrain_from_scratch, tpr_fprs=(0.01,))
    assert abs(exact.values["balanced_accuracy"] - 50) < 5 and abs(exact.values["auc"] - 50) < 6
    assert not_unlearned(pairs).values["auc"] > exact.values["auc"] + 8


def test_method_unlearner_runs_a_registry_method_on_the_forget_set(pairs, digits_dm):
    shadows, _, _ = pairs
    with pytest.raises(TypeError, match="unknown hyperparameter"):
        method_unlearner(digits_dm, "ga", {"learning_rate": 0.1})
    with pytest.raises(ValueError, match="unknown|not a registered|no method"):
        method_unlearner(digits_dm, "no-such-method")
    ga = method_unlearner(digits_dm, "ga", {"lr": 0.1, "epochs": 2}, use_remain=False, trainer_kwargs={"accelerator": "cpu"})
    forget_index = shadows.forget_index(0)
    before = {k: v.clone() for k, v in shadows.originals[0].state_dict().items()}
    unl, ret = shadows.statistics(ga)  # gradient ascent on F_i only: φ on F_i falls far below the originals'
    orig, orig_ret = shadows.statistics(lambda net, f: net)
    assert float((orig - unl).nanmean()) > 1.0
    assert torch.equal(ret.nan_to_num(), orig_ret.nan_to_num())  # the retrained world does not depend on the method
    assert all(torch.equal(before[k], v) for k, v in shadows.originals[0].state_dict().items())
    assert not torch.isnan(unl[0, forget_index]).any()


def test_class_forgetting_attacks_the_class_training_images_against_models_retrained_without_it(cache_dir, tmp_path):
    from lightning_unlearn.data import UnlearningDataModule

    dm = UnlearningDataModule("digits", forget="class:3", seed=0, cache_dir=cache_dir)
    pairs = train_shadow_pairs(dm, 2, epochs=1, seed=0, cache_dir=tmp_path, accelerator="cpu")
    d_f = dm.forget_set().index
    assert pairs.forget.all() and torch.equal(pairs.forget_index(1), torch.sort(d_f).values)
    ret = pairs.statistics(lambda net, f: net)[1]
    assert torch.equal(torch.nonzero(~torch.isnan(ret[0])).flatten(), torch.sort(d_f).values)
    # every retrained shadow never saw the class: it predicts it for almost none of its training images
    from lightning_unlearn.inference import predict_logits

    logits, _, _ = predict_logits(pairs.retrained[0], dm.forget_set())
    assert float((logits.argmax(1) == 3).float().mean()) < 0.05
