"""RMIA reference models on digits: membership by AMUN's construction, signals, and cache reuse."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_unlearn.audit import (
    membership_matrix,
    reference_pool,
    train_reference_models,
    train_retrained_references,
)
from lightning_unlearn.metrics import RMIA


def test_membership_matrix_is_amuns_construction_and_balanced():
    m = membership_matrix(8, 1000, seed=0)
    np.random.seed(0)  # AMUN helper.get_data, verbatim
    keep = np.random.uniform(0, 1, size=(8, 1000))
    order = keep.argsort(0)
    assert np.array_equal(m.numpy(), order < 4)
    assert torch.all(m.sum(0) == 4)  # each sample IN for exactly R/2 models
    assert (m.sum(1).float() / 1000 - 0.5).abs().max() < 0.06  # each model trains on about half the pool
    assert not torch.equal(m, membership_matrix(8, 1000, seed=1))
    with pytest.raises(ValueError, match="even"):
        membership_matrix(3, 10)


def test_reference_models_train_signal_and_reuse_cache(digits_dm, tmp_path, monkeypatch):
    refs = train_reference_models(digits_dm, 2, epochs=2, seed=0, cache_dir=tmp_path)
    pool = reference_pool(digits_dm)
    assert refs.num_refs == 2 and refs.loaded_from_cache == 0
    assert refs.membership.shape == (2, len(pool))
    assert torch.all(refs.membership.sum(0) == 1)  # R = 2: each sample IN for exactly one
    assert torch.equal(refs.pool_index, pool.index)
    sig, index = refs.signals(digits_dm.test_set())
    assert sig.shape == (2, len(digits_dm.test_set())) and torch.all((sig >= 0) & (sig <= 1))
    assert torch.equal(index, digits_dm.test_set().index)
    # the models learned something (2 epochs on half of digits: about 50%, against 10% by chance)
    logits, labels, _ = refs.logits(digits_dm.test_set())
    assert (logits.argmax(-1) == labels).float().mean() > 0.3

    # second call: same configuration -> everything from the cache, no training
    import lightning_unlearn.audit.model_cache as mod

    def no_training(*args, **kwargs):
        raise AssertionError("a cached reference was retrained")

    monkeypatch.setattr(mod, "train_classifier", no_training)
    again = train_reference_models(digits_dm, 2, epochs=2, seed=0, cache_dir=tmp_path)
    assert again.loaded_from_cache == 2 and again.cache_path == refs.cache_path
    sig2, _ = again.signals(digits_dm.test_set())
    assert torch.equal(sig, sig2)
    with pytest.raises(AssertionError, match="retrained"):  # another configuration is another cache entry
        train_reference_models(digits_dm, 2, epochs=3, seed=0, cache_dir=tmp_path)


@pytest.mark.filterwarnings("ignore::lightning_unlearn.metrics.functional.LowFPRVarianceWarning")
def test_reference_signals_feed_rmia(digits_dm, digits_original, tmp_path):
    """End to end: references -> dense signals by pool index -> RMIA on the original model."""
    from lightning_unlearn.inference import predict_logits

    refs = train_reference_models(digits_dm, 2, epochs=2, seed=0, cache_dir=tmp_path)
    pool = reference_pool(digits_dm)
    dense, member = refs.signals_by_index(pool)
    assert dense.shape[1] == int(pool.index.max()) + 1 and not torch.isnan(dense[:, pool.index]).any()
    assert torch.equal(member[:, pool.index], refs.membership)
    metric = RMIA(dense, membership=member, gamma=2.0)
    for name, ds in (("forget", digits_dm.forget_set()), ("remain", digits_dm.remain_set()), ("test", digits_dm.test_set())):
        logits, labels, index = predict_logits(digits_original, ds)
        metric.update(logits, labels, index, name)
    out = metric.compute()
    # the original model trained on D_F: its forget samples look more like members than test samples
    assert 50.0 < float(out["ft_auc"]) <= 100.0


def test_retrained_references_equal_train_classifier_and_give_neighbors(cache_dir, tmp_path):
    """MIA-NN's references: models retrained on D_R (class 3 forgotten), cached, bit-identical to train_classifier."""
    from lightning_unlearn.data import UnlearningDataModule
    from lightning_unlearn.inference import predict_logits
    from lightning_unlearn.metrics import MIANN
    from lightning_unlearn.metrics.functional import mia_nn_neighbors
    from lightning_unlearn.training import train_classifier

    dm = UnlearningDataModule("digits", forget="class:3", seed=0, cache_dir=cache_dir)
    dm.setup()
    refs = train_retrained_references(dm, 2, epochs=2, seed=0, cache_dir=tmp_path)
    direct = train_classifier(dm, on="remain", epochs=2, seed=1)
    for a, b in zip(refs.models[1].state_dict().values(), direct.model.state_dict().values()):
        assert torch.equal(a, b)
    in_remain = torch.isin(refs.pool_index, dm.remain_set().index)
    assert torch.equal(refs.membership, in_remain.expand(2, -1))
    logits, _, _ = refs.logits(dm.forget_set())
    neighbors = mia_nn_neighbors(torch.softmax(logits, -1), 3, k=1)
    assert neighbors.shape == (1,) and int(neighbors) != 3
    # audit reference 0 with neighbours from reference 1 (leave-one-out)
    loo = mia_nn_neighbors(torch.softmax(logits, -1), 3, k=1, leave_out=0)
    metric = MIANN(forget_class=3, neighbors=loo, n_repeats=1)
    for ds, member in ((dm.forget_set(), 1), (dm.forget_class_test_set(), 0)):
        z, _, idx = predict_logits(refs.models[0], ds)
        metric.update(z, torch.full((len(idx),), member), idx)
    out = metric.compute()
    assert 0.0 <= float(out["auc"]) <= 100.0 and torch.isnan(out["auc_gap"])
    assert train_retrained_references(dm, 2, epochs=2, seed=0, cache_dir=tmp_path).loaded_from_cache == 2


# ---------------------------------------------------------------------------- damaged cache files
def _files(root, kind):
    return sorted((root / kind).glob("*.pt"))


def test_a_truncated_reference_model_is_named_and_retrained(digits_dm, tmp_path, caplog):
    import logging

    first = train_reference_models(digits_dm, 2, epochs=1, seed=0, cache_dir=tmp_path)
    victim = _files(tmp_path, "models")[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
    with caplog.at_level(logging.WARNING, logger="lightning_unlearn.cache"):
        again = train_reference_models(digits_dm, 2, epochs=1, seed=0, cache_dir=tmp_path)
    assert str(victim) in caplog.text and "damaged" in caplog.text
    assert again.loaded_from_cache == 1  # the other reference came from the cache
    for a, b in zip(first.models, again.models):  # the retrained one is bit-identical (seeded)
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_a_garbage_membership_file_is_named_and_rebuilt(digits_dm, tmp_path, caplog):
    import logging

    first = train_reference_models(digits_dm, 2, epochs=1, seed=0, cache_dir=tmp_path)
    (table,) = _files(tmp_path, "membership")
    table.write_bytes(b"not a torch file at all")
    with caplog.at_level(logging.WARNING, logger="lightning_unlearn.cache"):
        again = train_reference_models(digits_dm, 2, epochs=1, seed=0, cache_dir=tmp_path)
    assert str(table) in caplog.text and again.loaded_from_cache == 2
    assert torch.equal(again.membership, first.membership)
    blob = torch.load(table, weights_only=True)  # rewritten, readable, the right table
    assert torch.equal(blob["payload"]["membership"], first.membership)


def test_a_reference_copied_under_another_references_key_is_detected(digits_dm, tmp_path, caplog):
    import logging
    import shutil

    train_reference_models(digits_dm, 2, epochs=1, seed=0, cache_dir=tmp_path)
    a, b = _files(tmp_path, "models")
    shutil.copy(a, b)  # reference r's file now holds the other reference's weights
    with caplog.at_level(logging.WARNING, logger="lightning_unlearn.cache"):
        again = train_reference_models(digits_dm, 2, epochs=1, seed=0, cache_dir=tmp_path)
    assert str(b) in caplog.text and "another entry" in caplog.text and again.loaded_from_cache == 1


def test_an_unwritable_cache_is_reported_before_training(digits_dm, tmp_path, monkeypatch):
    import lightning_unlearn.audit.model_cache as mod
    from lightning_unlearn.cache import CacheNotWritableError

    monkeypatch.setattr(mod, "train_classifier", lambda *a, **k: pytest.fail("trained before checking the cache"))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CacheNotWritableError, match="not writable"):
        train_reference_models(digits_dm, 2, epochs=1, cache_dir=blocker / "cache")


def test_references_follow_the_targets_width_and_fastclip(digits_dm, tmp_path, monkeypatch):
    """Width and FastClip are part of a reference's recipe: trained with them, keyed by them, rebuilt with them."""
    import lightning_unlearn.callbacks as callbacks

    made = []
    real = callbacks.FastClip

    class CountingFastClip(real):
        def __init__(self, **kw):
            made.append(kw)
            super().__init__(**kw)

    monkeypatch.setattr(callbacks, "FastClip", CountingFastClip)
    plain = train_reference_models(digits_dm, 2, epochs=1, seed=0, cache_dir=tmp_path)
    assert made == [] and "width" not in plain.config and "fastclip" not in plain.config  # default recipe: keys as before
    clipped = train_reference_models(digits_dm, 2, epochs=1, seed=0, width=8, fastclip=1.0, fastclip_every=2, cache_dir=tmp_path)
    assert clipped.loaded_from_cache == 0  # another recipe, not the cached plain models
    assert made == [{"max_norm": 1.0, "every_n_steps": 2}] * 2  # a fresh callback per reference fit
    assert clipped.config["width"] == 8 and clipped.config["fastclip"] == 1.0 and clipped.config["fastclip_every"] == 2
    first_conv = next(m for m in clipped.models[0].modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.out_channels == 8
    again = train_reference_models(digits_dm, 2, epochs=1, seed=0, width=8, fastclip=1.0, fastclip_every=2, cache_dir=tmp_path)
    assert again.loaded_from_cache == 2 and len(made) == 2  # rebuilt at width 8 from the cache, nothing trained
    for a, b in zip(clipped.models, again.models):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
