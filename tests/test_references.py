"""RMIA reference models on digits: membership by AMUN's construction, signals, and cache reuse."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_unlearn.metrics import RMIA
from lightning_unlearn.metrics.references import membership_matrix, reference_pool, train_reference_models


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
    # the models learned something (2 epochs on half of digits)
    logits, labels, _ = refs.logits(digits_dm.test_set())
    assert (logits.argmax(-1) == labels).float().mean() > 0.5

    # second call: same configuration -> everything from the cache, no training
    import lightning_unlearn.metrics.references as mod

    def no_training(*args, **kwargs):
        raise AssertionError("a cached reference was retrained")

    monkeypatch.setattr(mod, "train_classifier", no_training)
    again = train_reference_models(digits_dm, 2, epochs=2, seed=0, cache_dir=tmp_path)
    assert again.loaded_from_cache == 2 and again.cache_path == refs.cache_path
    sig2, _ = again.signals(digits_dm.test_set())
    assert torch.equal(sig, sig2)
    with pytest.raises(AssertionError, match="retrained"):  # another configuration is another cache entry
        train_reference_models(digits_dm, 2, epochs=3, seed=0, cache_dir=tmp_path)


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
