"""MIA-NN's retrain protocol: a discriminator fitted once on retrained models' outputs, applied to audited models.

References: a direct sklearn fit on hand-built features, synthetic distributions with a known
answer (identical -> chance, shifted -> detected), and the protocol's defining property that
the audited model never enters the fit.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from helpers import spawn_gloo

from lightning_unlearn.metrics import MIANNRetrain
from lightning_unlearn.metrics import functional as F

C, FORGET, NEIGHBOR, OTHER = 3, 0, 1, 2


def synthetic(seed: int, *, n_per_class: int = 240, n_test: int = 120, shift: float = 3.0, models: int = 2, dtype=torch.float64):
    """Logits of ``models`` retrained models on a 3-class pool, forget class 0, neighbour class 1.

    Training split: ``n_per_class`` samples of each class; test split: ``n_test`` forget-class samples.
    Class-1 samples get logit z_1 ~ N(shift, 1) + ..., forget-class samples z_1 ~ N(0, 1): the
    retrained models send both mostly to class 1, the true class-1 samples more confidently.
    """
    g = torch.Generator().manual_seed(seed)
    y = torch.cat([torch.arange(C).repeat_interleave(n_per_class), torch.full((n_test,), FORGET)])
    is_train = torch.cat([torch.ones(C * n_per_class, dtype=torch.bool), torch.zeros(n_test, dtype=torch.bool)])
    z = torch.randn(models, len(y), C, generator=g, dtype=dtype)
    z[:, :, FORGET] -= 4.0  # retrained without class 0: it never predicts it
    z[:, y == NEIGHBOR, NEIGHBOR] += shift
    z[:, y == OTHER, OTHER] += 3.0
    z[:, y == FORGET, NEIGHBOR] += 1.5
    return z, y, is_train


# ----------------------------------------------------------------------------- features
def test_retrain_features_select_the_right_columns():
    z = torch.randn(2, 5, 4, dtype=torch.float64)
    p = torch.softmax(z, -1)
    torch.testing.assert_close(F.retrain_protocol_features(z, [3, 1], feature="neighbor_prob"), p[..., [3, 1]])
    torch.testing.assert_close(F.retrain_protocol_features(z[0], [3], feature="neighbor_logit"), z[0][:, [3]])
    torch.testing.assert_close(F.retrain_protocol_features(z, [3], feature="prob"), p)
    torch.testing.assert_close(F.retrain_protocol_features(z, [3], feature="logit"), z)
    with pytest.raises(ValueError, match="feature must be one of"):
        F.retrain_protocol_features(z, [1], feature="entropy")
    with pytest.raises(ValueError, match="neighbors must be distinct classes"):
        F.retrain_protocol_features(z, [4], feature="neighbor_prob")


# ----------------------------------------------------------------------------- against sklearn
@pytest.mark.parametrize("classifier", ["svc", "logistic"])
@pytest.mark.parametrize("feature", ["neighbor_prob", "logit"])
def test_fit_equals_a_direct_sklearn_pipeline(classifier, feature):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    z, y, tr = synthetic(3, n_per_class=60, n_test=40)
    disc = F.fit_retrain_discriminator(z[:, tr], y[tr], FORGET, [NEIGHBOR], feature=feature, classifier=classifier)
    # the same rows by hand: positives (class 0) then negatives (class 1), each in (model, sample) order
    zt, yt = z[:, tr], y[tr]
    feats = torch.softmax(zt, -1)[..., [NEIGHBOR]] if feature == "neighbor_prob" else zt
    pos = torch.cat([feats[j][yt == FORGET] for j in range(2)])
    neg = torch.cat([feats[j][yt == NEIGHBOR] for j in range(2)])
    x_ref = torch.cat([pos, neg]).numpy()
    y_ref = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    clf = SVC(kernel="rbf", C=3, gamma="auto") if classifier == "svc" else LogisticRegression(max_iter=1000)
    ref = make_pipeline(StandardScaler(), clf).fit(x_ref, y_ref)
    audited = z[0][~tr] + 0.3 * torch.randn(int((~tr).sum()), C, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    a_feats = (torch.softmax(audited, -1)[:, [NEIGHBOR]] if feature == "neighbor_prob" else audited).numpy()
    np.testing.assert_allclose(disc.decision(audited).numpy(), ref.decision_function(a_feats), rtol=1e-9, atol=1e-9)
    assert disc.detection_rate(audited) == pytest.approx(100.0 * (ref.predict(a_feats) == 1).mean(), abs=1e-12)
    assert disc.n_per_label == 120 and disc.n_models == 2


# ----------------------------------------------------------------------------- synthetic answers
def test_identical_retrain_distributions_give_chance():
    # forget-class and neighbour-class samples look the same to the retrained models: nothing to learn
    z, y, tr = synthetic(1, n_per_class=400, n_test=400, shift=1.5, models=1)
    out = F.mia_nn_retrain(z[0], z, y, tr, FORGET, neighbors=[NEIGHBOR], feature="neighbor_logit")
    assert 35.0 <= out["acc_test"] <= 65.0, out
    assert out["acc_test"] == out["retrain_acc_test"] and out["acc_test_gap"] == 0.0


def test_shifted_retrain_distributions_are_detected():
    z, y, tr = synthetic(2, shift=7.0)
    for feature in ("neighbor_prob", "neighbor_logit", "logit", "prob"):
        out = F.mia_nn_retrain(z[0], z, y, tr, FORGET, feature=feature)
        assert out["retrain_acc_test"] > 95.0 and out["retrain_acc_train"] > 95.0, (feature, out)


def test_the_gap_separates_a_retrain_like_model_from_a_shifted_one():
    z, y, tr = synthetic(4, n_per_class=400, n_test=600, models=3)
    fresh, _, _ = synthetic(40, n_per_class=400, n_test=600, models=1)  # a new model from the retrained models' distribution
    like = F.mia_nn_retrain(fresh[0], z, y, tr, FORGET)
    assert like["acc_test_gap"] < 8.0 and like["acc_train_gap"] < 8.0, like
    # an unlearned model that sends the forget class to class 1 as confidently as true class-1 samples
    shifted = fresh[0].clone()
    shifted[y == FORGET, NEIGHBOR] += 2.5
    out = F.mia_nn_retrain(shifted, z, y, tr, FORGET)
    assert out["acc_test"] < 25.0 and out["acc_test_gap"] > 40.0, out
    assert out["retrain_acc_test"] == like["retrain_acc_test"]  # the references do not depend on the audited model


# ----------------------------------------------------------------------------- fitted on retrain only
def test_discriminator_is_fitted_on_retrain_outputs_only():
    z, y, tr = synthetic(5, models=1)
    # a retrained model audited against itself gives exactly the retrain value: gap 0
    out = F.mia_nn_retrain(z[0], z, y, tr, FORGET)
    assert out["acc_test"] == out["retrain_acc_test"] and out["acc_test_gap"] == 0.0
    assert np.isnan(out["retrain_acc_train"]) and np.isnan(out["acc_train_gap"])  # one model: no held-out D_f reference
    # any audited model is judged by the same discriminator, fitted before it is seen
    disc = F.fit_retrain_discriminator(z[:, tr], y[tr], FORGET, [NEIGHBOR])
    other = torch.randn(len(y), C, generator=torch.Generator().manual_seed(6), dtype=torch.float64) * 3
    got = F.mia_nn_retrain(other, z, y, tr, FORGET, neighbors=[NEIGHBOR])
    assert got["acc_test"] == disc.detection_rate(other[~tr & (y == FORGET)])
    assert got["acc_train"] == disc.detection_rate(other[tr & (y == FORGET)])
    assert got["retrain_acc_test"] == out["retrain_acc_test"]


def test_leave_out_audits_a_retrained_model_against_the_others():
    z, y, tr = synthetic(7, models=3)
    got = F.mia_nn_retrain(z[1], z, y, tr, FORGET, leave_out=1)
    want = F.mia_nn_retrain(z[1], z[[0, 2]], y, tr, FORGET)
    assert got == want
    loo = F.mia_nn_retrain(z[0], z[[1, 2]], y, tr, FORGET)  # reference on D_f: fitted without the model it scores
    disc_12 = F.fit_retrain_discriminator(z[[1, 2]][:, tr], y[tr], FORGET, [NEIGHBOR])
    assert loo["acc_train"] == disc_12.detection_rate(z[0][tr & (y == FORGET)])


def test_negatives_and_neighbours():
    z, y, tr = synthetic(8, n_per_class=50, n_test=20)
    d_nb = F.fit_retrain_discriminator(z[:, tr], y[tr], FORGET, [NEIGHBOR])
    d_all = F.fit_retrain_discriminator(z[:, tr], y[tr], FORGET, [NEIGHBOR], negatives="remain")
    assert (d_nb.n_per_label, d_all.n_per_label) == (100, 100)  # 2 models x 50 positives; negatives subsampled
    assert d_nb.negatives == "neighbors" and d_all.negatives == "remain"
    # default neighbours come from the retrained models' softmax on D_f: class 1 here
    a = F.mia_nn_retrain(z[0], z, y, tr, FORGET)
    b = F.mia_nn_retrain(z[0], z, y, tr, FORGET, neighbors=[NEIGHBOR])
    assert a == b


def test_retrain_protocol_errors():
    z, y, tr = synthetic(0, n_per_class=20, n_test=10)
    with pytest.raises(ValueError, match="negatives must be one of"):
        F.fit_retrain_discriminator(z, y, FORGET, [NEIGHBOR], negatives="all")
    with pytest.raises(ValueError, match="classifier"):
        F.fit_retrain_discriminator(z, y, FORGET, [NEIGHBOR], classifier="tree")
    with pytest.raises(ValueError, match="other than forget_class"):
        F.fit_retrain_discriminator(z, y, FORGET, [FORGET])
    with pytest.raises(ValueError, match="needs samples of the forget class"):
        F.fit_retrain_discriminator(z[:, y != FORGET], y[y != FORGET], FORGET, [NEIGHBOR])
    with pytest.raises(ValueError, match="forget-class 0 training samples"):
        F.mia_nn_retrain(z[0], z, y, torch.zeros_like(tr), FORGET, neighbors=[NEIGHBOR])
    with pytest.raises(ValueError, match="leave_out"):
        F.mia_nn_retrain(z[0], z[:1], y, tr, FORGET, leave_out=0)
    with pytest.raises(ValueError, match=r"retrain_logits must hold"):
        F.mia_nn_retrain(z[0][:-1], z, y[:-1], tr[:-1], FORGET)


# ----------------------------------------------------------------------------- the Metric
def shard_with_padding(n: int, rank: int, world: int) -> torch.Tensor:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    cut = int(n * 0.58)
    shards = [perm[:cut], perm[cut:]] if world == 2 else [perm]
    size = max(len(s) for s in shards)
    return torch.cat([shards[rank], perm[: size - len(shards[rank])]])  # DistributedSampler-style padding


def metric_setup():
    z, y, tr = synthetic(11, models=2, dtype=torch.float32)
    disc = F.fit_retrain_discriminator(z[:, tr], y[tr], FORGET, [NEIGHBOR])
    audited = z[0] + 0.8 * torch.randn(z.shape[1:], generator=torch.Generator().manual_seed(12))
    f = torch.nonzero(y == FORGET).flatten()  # forget-class samples: D_f then T_f
    split = torch.where(tr[f], 0, 3)  # SPLITS["forget"], SPLITS["forget_class_test"]
    return disc, audited[f], split, f  # pool index = position in the pool


def feed(metric, logits, split, index, positions, batch=23):
    for s in range(0, len(positions), batch):
        p = positions[s : s + batch]
        metric.update(logits[p], split[p], index[p])


def expected_metric(disc, logits, split, ref):
    t, d = logits[split == 3], logits[split == 0]
    want = {"acc_test": disc.detection_rate(t), "acc_train": disc.detection_rate(d)}
    want["acc_test_gap"] = abs(want["acc_test"] - ref["acc_test"])
    want["acc_train_gap"] = float("nan")
    return want


def check(got, want):
    assert set(got) == set(want)
    for k, v in want.items():
        g = float(got[k])
        assert (np.isnan(g) and np.isnan(v)) or g == pytest.approx(v, abs=1e-12), (k, g, v)


def test_metric_over_batches_with_padding_equals_functional():
    disc, logits, split, index = metric_setup()
    ref = {"acc_test": 80.0}
    m = MIANNRetrain(disc, retrain_reference=ref).set_dtype(torch.float64)  # float64 results: compared exactly
    positions = torch.cat([shard_with_padding(len(index), 0, 1), torch.arange(9)])  # duplicates, like padding
    feed(m, logits, split, index, positions)
    check(m.compute(), expected_metric(disc, logits, split, ref))
    assert MIANNRetrain.higher_is_better is None and MIANNRetrain.full_state_update is False


def test_metric_rejects_other_splits_and_bad_arguments():
    disc, logits, split, index = metric_setup()
    with pytest.raises(ValueError, match="forget-class samples only"):
        MIANNRetrain(disc).update(logits[:4], "remain", index[:4])
    with pytest.raises(TypeError, match="RetrainDiscriminator"):
        MIANNRetrain("svc")
    with pytest.raises(ValueError, match="retrain_reference keys"):
        MIANNRetrain(disc, retrain_reference={"auc": 50.0})


def _ddp_worker(rank: int, world: int, out_dir: str) -> None:
    disc, logits, split, index = metric_setup()
    m = MIANNRetrain(disc, retrain_reference={"acc_test": 80.0}, check_ranks_agree=True).set_dtype(torch.float64)
    feed(m, logits, split, index, shard_with_padding(len(index), rank, world), batch=17 + 6 * rank)
    torch.save({k: float(v) for k, v in m.compute().items()}, os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.mark.slow
@pytest.mark.ddp
def test_metric_ddp_two_processes_equal_functional(tmp_path):
    spawn_gloo(_ddp_worker, str(tmp_path))
    disc, logits, split, index = metric_setup()
    want = expected_metric(disc, logits, split, {"acc_test": 80.0})
    for r in (0, 1):
        check(torch.load(tmp_path / f"rank{r}.pt"), want)
