"""TRW: class similarity, tilted target, beta bisection, losses, the method and TRWMixin.

Independent references: scipy SLSQP for the constrained KL problem (the information
projection), sklearn PCA + cosine_similarity for the class similarity, NumPy for the KL and
the renormalised distribution, a hand-written penultimate pass for the feature centroids.
"""

from __future__ import annotations

import copy
import threading

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_unlearn.inference import accuracy, predict_logits
from lightning_unlearn.training import ClassifierModule, make_trainer
from lightning_unlearn.unlearning import METHODS, TRW, TRWMixin, UnlearningMixin, UnlearningRequest, unlearn
from lightning_unlearn.unlearning.class_similarity import (
    check_forget_classes,
    cosine_similarity_matrix,
    feature_centroids,
    logit_weight_similarity,
    sharpen_similarity,
)
from lightning_unlearn.unlearning.tilted import (
    expected_similarity,
    similarity_rows,
    soft_cross_entropy,
    solve_beta,
    tilted_kl,
    trw_log_target,
    trw_target,
)

K = 10


def _random_problem(seed: int, b: int = 6, k: int = K, forget=(3,)):
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(b, k, generator=g, dtype=torch.float64)
    cos = cosine_similarity_matrix(torch.randn(k, 16, generator=g))
    s = sharpen_similarity(cos, forget, tau=0.1)[0].double()
    return logits, s


# ---------------------------------------------------------------------------- tilted target
@pytest.mark.parametrize("forget", [(3,), (0, 7)])
def test_target_sums_to_one_and_is_zero_on_forget_classes(forget):
    logits, s = _random_problem(0, forget=forget)
    for beta in (0.0, 1.0, 10.0, 500.0):
        t = trw_target(logits, s, beta, forget)
        assert torch.allclose(t.sum(1), torch.ones(len(t), dtype=t.dtype), atol=1e-12)
        assert (t[:, list(forget)] == 0).all()
        assert (t >= 0).all()


def test_beta_zero_is_the_renormalised_original_distribution():
    logits, s = _random_problem(1)
    p = np.exp(logits.numpy() - logits.numpy().max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[:, 3] = 0
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(trw_target(logits, s, 0.0, [3]).numpy(), p, atol=1e-12)


def test_mass_moves_toward_the_most_similar_class_as_beta_grows():
    logits, s = _random_problem(2)
    top = int(s.argmax())
    betas = [0.0, 1.0, 3.0, 10.0, 30.0, 100.0, 1000.0]
    mass = torch.stack([trw_target(logits, s, b, [3])[:, top] for b in betas])  # (len(betas), B)
    es = torch.stack([expected_similarity(trw_log_target(logits, s, b, [3]), s) for b in betas])
    assert (mass.diff(dim=0) >= -1e-12).all() and (mass[-1] > mass[0]).all()
    assert (es.diff(dim=0) >= -1e-12).all()
    assert torch.allclose(mass[-1], torch.ones_like(mass[-1]), atol=1e-6)


def _slsqp_projection(p: np.ndarray, s: np.ndarray, c: float, f: int) -> np.ndarray:
    """argmin_q KL(q || p) s.t. q_f = 0, sum q = 1, E_q[s] = c, q >= 0 (scipy SLSQP)."""
    from scipy.optimize import minimize

    keep = np.array([k for k in range(len(p)) if k != f])
    pk, sk = p[keep], s[keep]

    def kl(q):
        q = np.clip(q, 1e-300, None)
        return float(np.sum(q * (np.log(q) - np.log(pk))))

    def grad(q):
        q = np.clip(q, 1e-300, None)
        return np.log(q) - np.log(pk) + 1

    cons = [
        {"type": "eq", "fun": lambda q: q.sum() - 1, "jac": lambda q: np.ones_like(q)},
        {"type": "eq", "fun": lambda q: q @ sk - c, "jac": lambda q: sk},
    ]
    res = minimize(kl, pk / pk.sum(), jac=grad, bounds=[(1e-12, 1)] * len(pk), constraints=cons, method="SLSQP", options={"ftol": 1e-16, "maxiter": 1000})
    assert res.success, res.message
    q = np.zeros_like(p)
    q[keep] = res.x
    return q


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_target_equals_the_brute_force_constrained_kl_minimiser(seed):
    logits, s = _random_problem(seed, b=3)
    logits = logits / 3  # moderate logits: keep every q_k well inside the bounds
    p = torch.softmax(logits, 1).numpy()
    e0 = expected_similarity(trw_log_target(logits, s, 0.0, [3]), s)
    smax = float(s.max())
    for i in range(len(logits)):
        c = float(e0[i] + 0.5 * (smax - e0[i]))  # a reachable target inside (E_p~[s], max s)
        beta = solve_beta(logits[i : i + 1], s, c, [3], per_sample=True, tol=1e-12)
        t = trw_target(logits[i : i + 1], s, beta, [3])[0].numpy()
        q = _slsqp_projection(p[i], s.numpy(), c, 3)
        np.testing.assert_allclose(t, q, atol=1e-6)


def test_bisection_hits_c_per_sample_and_for_the_mean():
    logits, s = _random_problem(3, b=32)
    e0 = expected_similarity(trw_log_target(logits, s, 0.0, [3]), s)
    c = float(e0.max()) + 0.3 * (float(s.max()) - float(e0.max()))
    beta = solve_beta(logits, s, c, [3], per_sample=True)
    assert beta.shape == (32,) and (beta > 0).all()
    got = expected_similarity(trw_log_target(logits, s, beta, [3]), s)
    assert (got - c).abs().max() < 1e-6
    beta_mean = solve_beta(logits, s, c, [3])
    assert beta_mean.ndim == 0
    got_mean = expected_similarity(trw_log_target(logits, s, float(beta_mean), [3]), s).mean()
    assert abs(float(got_mean) - c) < 1e-6


def test_bisection_edge_rules():
    logits, s = _random_problem(4, b=8)
    e0 = expected_similarity(trw_log_target(logits, s, 0.0, [3]), s)
    assert (solve_beta(logits, s, float(e0.min()) - 1e-3, [3], per_sample=True) == 0).all()
    assert float(solve_beta(logits, s, float(e0.mean()) - 1e-3, [3])) == 0.0
    with pytest.warns(UserWarning, match="beta=1000"):
        beta = solve_beta(logits, s, float(s.max()) + 0.1, [3], per_sample=True)
    assert (beta == 1e3).all()
    with pytest.warns(UserWarning, match="beta=1000"):
        assert float(solve_beta(logits, s, float(s.max()), [3])) == 1e3


def test_global_beta_is_shared_across_ranks_with_an_all_reduce():
    """Two threads stand in for two DDP ranks, each holding half of D_F."""
    logits, s = _random_problem(5, b=40)
    e0 = expected_similarity(trw_log_target(logits, s, 0.0, [3]), s).mean()
    c = float(e0) + 0.4 * (float(s.max()) - float(e0))
    whole = solve_beta(logits, s, c, [3])
    barrier, slots, results = threading.Barrier(2), [None, None], [None, None]

    def run(rank: int, part: torch.Tensor) -> None:
        def all_reduce(t: torch.Tensor) -> torch.Tensor:
            slots[rank] = t.clone()
            barrier.wait()
            total = slots[0] + slots[1]
            barrier.wait()
            return total

        results[rank] = solve_beta(part, s, c, [3], all_reduce=all_reduce)

    threads = [threading.Thread(target=run, args=(r, logits[r::2])) for r in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert float(results[0]) == float(results[1])
    assert abs(float(results[0]) - float(whole)) < 1e-9


def test_negative_beta_is_refused():
    logits, s = _random_problem(6)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        trw_log_target(logits, s, -1.0, [3])


# ---------------------------------------------------------------------------- losses
def test_kl_and_soft_cross_entropy_against_numpy_with_zero_target_entries():
    g = torch.Generator().manual_seed(0)
    student = torch.randn(5, K, generator=g, requires_grad=True)
    log_t = trw_log_target(torch.randn(5, K, generator=g), torch.rand(K, generator=g), 5.0, [2, 4])
    kl = tilted_kl(student, log_t)
    t = log_t.exp().numpy()
    logp = torch.log_softmax(student, 1).detach().numpy()
    keep = t > 0
    ref_kl = np.mean(np.sum(np.where(keep, t * (np.log(np.where(keep, t, 1)) - logp), 0), 1))
    ref_ce = np.mean(-np.sum(t * logp, 1))
    assert abs(kl.item() - ref_kl) < 1e-5
    assert abs(soft_cross_entropy(student, log_t.exp()).item() - ref_ce) < 1e-5
    assert abs(soft_cross_entropy(student, log_t.exp()).item() - F.cross_entropy(student, log_t.exp()).item()) < 1e-5
    kl.backward()
    assert torch.isfinite(student.grad).all()
    # the gradient of KL(t || p) w.r.t. the logits is p - t
    p = torch.softmax(student.detach(), 1)
    assert torch.allclose(student.grad, (p - log_t.exp()) / 5, atol=1e-6)


# ---------------------------------------------------------------------------- similarity
def test_raw_similarity_matrix_and_sharpened_rows():
    from sklearn.decomposition import PCA
    from sklearn.metrics.pairwise import cosine_similarity

    w = torch.randn(K, 24, generator=torch.Generator().manual_seed(1)) + 0.7  # a non-zero mean row
    for pca_dim in (None, 4):
        cos = cosine_similarity_matrix(w, pca_dim=pca_dim)
        assert torch.equal(cos, cos.T)
        assert cos.min() >= -1 and cos.max() <= 1
        vec = w.double().numpy()
        ref_vec = vec - vec.mean(0) if pca_dim is None else PCA(n_components=pca_dim).fit_transform(vec)
        np.testing.assert_allclose(cos.numpy(), cosine_similarity(ref_vec), atol=1e-6)
        s = sharpen_similarity(cos, (3,), tau=0.1)
        assert s.shape == (1, K) and s[0, 3] == 0
        assert abs(float(s.sum()) - 1) < 1e-6
        keep = [k for k in range(K) if k != 3]
        ref = np.exp(cos.numpy()[3, keep] / 0.1)
        np.testing.assert_allclose(s[0, keep].numpy(), ref / ref.sum(), atol=1e-6)
    s2 = logit_weight_similarity(w, (3, 5), tau=0.5)
    assert s2.shape == (2, K) and (s2[:, [3, 5]] == 0).all()
    assert torch.allclose(s2.sum(1), torch.ones(2), atol=1e-6)


def test_centring_the_weights_keeps_softmax_but_changes_s():
    g = torch.Generator().manual_seed(2)
    w, b, feats = torch.randn(K, 16, generator=g), torch.randn(K, generator=g), torch.randn(8, 16, generator=g)
    shift = 3 * torch.randn(16, generator=g)
    p = torch.softmax(feats @ w.T + b, 1)
    p_shift = torch.softmax(feats @ (w + shift).T + b, 1)
    p_centred = torch.softmax(feats @ (w - w.mean(0)).T + b, 1)
    assert torch.allclose(p, p_shift, atol=1e-5) and torch.allclose(p, p_centred, atol=1e-5)
    s_plain = logit_weight_similarity(w + shift, [3], center=False)
    s_centred = logit_weight_similarity(w + shift, [3], center=True)
    assert (s_plain - s_centred).abs().max() > 1e-2
    assert torch.allclose(s_centred, logit_weight_similarity(w, [3], center=True), atol=1e-5)


def test_feature_centroids_against_a_manual_penultimate_pass(digits_original, digits_dm):
    model = digits_original.model
    data = digits_dm.test_set()
    cents = feature_centroids(model, data, 10, max_per_class=1000)
    with torch.no_grad():
        feats = model.net.features(model.normalize(data.x.float() / 255))
    ref = torch.stack([feats[data.y == k].mean(0) for k in range(10)])
    assert torch.allclose(cents, ref, atol=1e-4)
    few = feature_centroids(model, data, 10, max_per_class=5, seed=3)
    assert few.shape == ref.shape and not torch.allclose(few, ref, atol=1e-4)


def test_similarity_rows_pick_each_inputs_forget_class():
    sim = torch.arange(2 * K, dtype=torch.float32).view(2, K)
    rows = similarity_rows(sim, torch.tensor([5, 3, 5]), (3, 5))
    assert torch.equal(rows, sim[[1, 0, 1]])
    with pytest.raises(ValueError, match="not a forget class"):
        similarity_rows(sim, torch.tensor([4]), (3, 5))


# ---------------------------------------------------------------------------- errors
def test_bad_forget_classes_raise_clear_errors():
    cos = cosine_similarity_matrix(torch.randn(K, 8))
    with pytest.raises(ValueError, match=r"forget class 12 is out of range; allowed classes are 0\.\.9"):
        sharpen_similarity(cos, [12])
    with pytest.raises(ValueError, match="out of range"):
        trw_log_target(torch.randn(2, K), torch.rand(K), 1.0, [-1])
    with pytest.raises(ValueError, match="forgetting all 10 classes"):
        check_forget_classes(range(K), K)
    with pytest.raises(ValueError, match="forgetting all 10 classes"):
        trw_log_target(torch.randn(2, K), torch.rand(K), 1.0, list(range(K)))
    forget = torch.utils.data.TensorDataset(torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), torch.arange(2))
    with pytest.raises(ValueError, match="out of range"):
        UnlearningRequest(forget=forget, remain=None, num_classes=K, forget_classes=(10,))
    with pytest.raises(ValueError, match="forgetting all"):
        UnlearningRequest(forget=forget, remain=None, num_classes=2, forget_classes=(0, 1))


def test_bad_options_raise():
    with pytest.raises(ValueError, match="either beta or expected_similarity"):
        TRW(beta=5.0, expected_similarity=0.5)
    with pytest.raises(ValueError, match="unknown beta_mode 'batch'"):
        TRW(beta_mode="batch")
    with pytest.raises(ValueError, match="unknown similarity 'cosine'.*logit_weights, feature_centroids"):
        TRW(similarity="cosine")
    with pytest.raises(ValueError, match="unknown mixing"):
        TRW(mixing="interleave")


class _ConvHeadNet(nn.Module):
    """A classifier whose head is a 1x1 convolution: no nn.Linear anywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Conv2d(8, 10, 1)

    def forward(self, x):
        return self.head(self.body(x)).flatten(1)


class _Module(TRWMixin, ClassifierModule):
    pass


class _PlainMixinModule(UnlearningMixin, ClassifierModule):
    pass


@pytest.fixture(scope="module")
def class_dm(cache_dir):
    from lightning_unlearn.data import UnlearningDataModule

    dm = UnlearningDataModule("digits", forget="class:3", seed=0, cache_dir=cache_dir)
    dm.setup()
    return dm


def test_model_without_final_linear_names_the_alternatives(class_dm):
    module = _Module(_ConvHeadNet(), num_classes=10)
    request = UnlearningRequest.from_datamodule(class_dm)
    module.start_trw(request)
    with pytest.raises(ValueError, match=r"similarity='feature_centroids'.*or pass s="):
        module.train_dataloader()  # the method's setup runs when Lightning asks for the phase's data
    # the alternatives work: a named penultimate module, or s given directly
    module.start_trw(request, similarity="feature_centroids", feature_module="model.body")
    module.train_dataloader()
    s = module.unlearning_method.s
    assert s.shape == (1, 10) and s[0, 3] == 0 and abs(float(s.sum()) - 1) < 1e-5
    given = torch.rand(10)
    module.start_trw(request, s=given)
    module.train_dataloader()
    assert torch.equal(module.unlearning_method.s[0], given.masked_fill(torch.arange(10) == 3, 0))


def test_trw_refuses_random_forgetting_and_centroids_without_remain(digits_dm, class_dm):
    module = _Module(_ConvHeadNet(), num_classes=10)
    with pytest.raises(ValueError, match=r"does not apply to random forgetting with the remain set \(the request has no forget_classes"):
        module.start_trw(UnlearningRequest.from_datamodule(digits_dm))
    module.start_trw(UnlearningRequest.from_datamodule(class_dm, use_remain=False), similarity="feature_centroids", feature_module="model.body")
    with pytest.raises(ValueError, match="no remain set; use similarity='logit_weights' or pass s"):
        module.train_dataloader()


# ---------------------------------------------------------------------------- the mixin on digits
def _accuracies(model, dm):
    out = {}
    for name, ds in (("forget", dm.forget_set()), ("forget_test", dm.forget_class_test_set()), ("remain_test", dm.remain_class_test_set())):
        logits, y, _ = predict_logits(model, ds)
        out[name] = accuracy(logits, y)
    return out


def _copy(original) -> _Module:
    return _Module(copy.deepcopy(original.model), num_classes=10)


def test_mixin_forgets_class_3_and_never_touches_the_snapshot(digits_original, class_dm):
    before = _accuracies(digits_original, class_dm)
    assert before["forget"] > 95
    module = _copy(digits_original)
    keys = set(module.state_dict())
    method = module.start_trw(UnlearningRequest.from_datamodule(class_dm), epochs=2, lr=0.01)
    make_trainer(max_epochs=2).fit(module)
    teacher = method.teacher
    # θ_o: never in the optimiser or the state_dict, no gradient, no BN statistics update
    assert not {id(p) for p in teacher.parameters()} & {id(p) for p in module.parameters()}
    assert set(module.state_dict()) == keys
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert not teacher.training
    ref = digits_original.model.state_dict()
    for k, v in teacher.model.state_dict().items():
        assert torch.equal(v, ref[k]), k
    module.stop_unlearning()
    after = _accuracies(module.eval(), class_dm)
    assert after["forget"] < 5 and after["forget_test"] < 5
    assert after["remain_test"] > 0.9 * before["remain_test"]


def test_forget_set_only_loss_is_the_tilted_kl_and_forgets(digits_original, class_dm):
    assert METHODS["trw"] is TRW
    request = UnlearningRequest.from_datamodule(class_dm, use_remain=False, batch_size=32)
    module = _copy(digits_original)
    method = module.start_trw(request, epochs=3, lr=0.01)
    batch, _, _ = next(iter(module.train_dataloader()))  # sets the method up; a CombinedLoader
    x, y = batch["forget"].x, batch["forget"].y
    with torch.no_grad():
        got = module.unlearning_loss({"forget": (x, y, None)})
        z_o = digits_original.model(x.float() / 255)
        ref = tilted_kl(module(x.float() / 255), trw_log_target(z_o, method.s[0], 10.0, [3]))
    assert torch.allclose(got, ref, atol=1e-6)
    module.stop_unlearning()
    # L = L_f alone: the forget class goes. (BatchNorm statistics then drift toward the forget
    # class's inputs, so accuracy on the other classes drops in this setting.)
    module = unlearn(_copy(digits_original), "trw", request, epochs=3, lr=0.01)
    assert _accuracies(module, class_dm)["forget"] < 5


def test_concat_mixing_through_the_plain_mixin_and_the_registry_name(digits_original, class_dm):
    plain = _PlainMixinModule(copy.deepcopy(digits_original.model), num_classes=10)
    module = unlearn(plain, "trw", UnlearningRequest.from_datamodule(class_dm), epochs=1, lr=0.01, mixing="concat")
    acc = _accuracies(module, class_dm)
    assert acc["forget"] < 5 and acc["remain_test"] > 90


def _forget_exposures(name: str, module, request) -> tuple[int, dict[int, int]]:
    """Steps of one epoch of ``name``'s stream and how often each forget input (pool index) appears in it."""
    from collections import Counter

    from lightning.pytorch.utilities import CombinedLoader

    method = module.start_unlearning(name, request, epochs=1)
    loader = method.train_dataloader(module, request)
    steps, seen = 0, Counter()
    combined = isinstance(loader, CombinedLoader)
    for item in loader:
        steps += 1
        if combined:  # (batch, batch_idx, dataloader_idx) with batch = {"forget", "remain"}
            seen.update(item[0]["forget"].index.tolist())
        else:  # one stream over D_R ∪ D_F: the forget inputs are the forget-class ones
            seen.update(item.index[item.y == 3].tolist())
    module.stop_unlearning()
    return steps, dict(seen)


def test_trw_concat_is_trw_with_the_other_mixing_registered_on_its_own():
    from lightning_unlearn.unlearning import TRWConcat, get_method, methods_for

    assert get_method("trw-concat") is TRWConcat and issubclass(TRWConcat, TRW)
    assert TRW().mixing == "combined" and TRWConcat().mixing == "concat" and TRWConcat().hparams()["mixing"] == "concat"
    assert TRWConcat(mixing="combined").mixing == "combined"  # still a plain hyperparameter
    assert TRWConcat.search_axes == TRW.search_axes
    assert methods_for("class", True)[-2:] == ["trw", "trw-concat"]
    assert "trw" in methods_for("class", False) and "trw-concat" not in methods_for("class", False)  # the same pass over D_F there


def test_each_forget_input_is_seen_ratio_times_per_epoch_with_max_size_cycle_and_once_with_concat(digits_original, class_dm):
    """40 forget vs 360 remain inputs at batch 20 (the 500 vs 4,500 at batch 128 of the docstring, scaled):
    max_size_cycle runs ceil(360/20) = 18 steps through 2 forget batches, so each forget input 9 times;
    concat runs ceil(400/20) = 20 steps, each input once."""
    forget, remain = class_dm.forget_set().subset(torch.arange(40)), class_dm.remain_set().subset(torch.arange(360))
    request = UnlearningRequest(forget=forget, remain=remain, num_classes=10, forget_classes=(3,), batch_size=20)
    module = _copy(digits_original)
    steps, seen = _forget_exposures("trw", module, request)
    assert steps == 18 and sorted(seen) == sorted(forget.index.tolist()) and set(seen.values()) == {9}
    steps, seen = _forget_exposures("trw-concat", module, request)
    assert steps == 20 and sorted(seen) == sorted(forget.index.tolist()) and set(seen.values()) == {1}


def test_two_forget_classes_and_global_beta_from_expected_similarity(digits_original, cache_dir):
    from lightning_unlearn.data import UnlearningDataModule

    dm = UnlearningDataModule("digits", forget="class:3,8", seed=0, cache_dir=cache_dir)
    dm.setup()
    # a reachable c: halfway between E_p~[s] and max s under the original model
    s0 = logit_weight_similarity(digits_original.model.net.fc.weight, (3, 8))
    z0, y0, _ = predict_logits(digits_original, dm.forget_set())
    rows0 = similarity_rows(s0, y0, (3, 8)).double()
    e0 = float(expected_similarity(trw_log_target(z0.double(), rows0, 0.0, (3, 8)), rows0).mean())
    c = e0 + 0.5 * (float(rows0.max(1).values.mean()) - e0)
    module = _copy(digits_original)
    remain = dm.remain_set().subset(torch.arange(400))  # a remain subset keeps the test fast
    request = UnlearningRequest(forget=dm.forget_set(), remain=remain, num_classes=10, forget_classes=(3, 8), batch_size=32)
    method = module.start_trw(request, expected_similarity=c, epochs=2, lr=0.01)
    make_trainer(max_epochs=2).fit(module)
    assert method.s.shape == (2, 10) and (method.s[:, [3, 8]] == 0).all()
    # the global beta makes the mean of E_t[s] over D_F under θ_o equal c
    logits, y, _ = predict_logits(method.teacher, dm.forget_set())
    rows = similarity_rows(method.s, y, (3, 8))
    got = expected_similarity(trw_log_target(logits.double(), rows.double(), method.beta_in_use, (3, 8)), rows.double()).mean()
    assert method.beta_in_use > 0 and abs(float(got) - c) < 1e-6
    module.stop_unlearning()
    logits, y, _ = predict_logits(module, dm.forget_set())
    assert accuracy(logits, y) < 5


class _StopAfterFirstEpoch(pl.Callback):
    def on_train_epoch_end(self, trainer, pl_module) -> None:
        trainer.should_stop = True


def test_checkpoint_keeps_s_beta_and_the_snapshot_and_resumes_identically(digits_original, class_dm, tmp_path):
    remain = class_dm.remain_set()
    request = UnlearningRequest(forget=class_dm.forget_set(), remain=remain.subset(torch.arange(256)), num_classes=10, forget_classes=(3,))
    hp = dict(epochs=2, lr=0.01, expected_similarity=0.2)

    straight = _copy(digits_original)
    straight.start_trw(request, **hp)
    make_trainer(max_epochs=2).fit(straight)

    first = _copy(digits_original)
    method = first.start_trw(request, **hp)
    trainer = make_trainer(max_epochs=2, callbacks=[_StopAfterFirstEpoch()])  # an interrupted phase
    trainer.fit(first)
    assert trainer.current_epoch == 1
    path = tmp_path / "trw.ckpt"
    trainer.save_checkpoint(path)
    blob = torch.load(path, weights_only=False)
    assert set(blob["state_dict"]) == set(first.state_dict())  # s, beta are not model buffers
    saved = blob["unlearning"]["state"]
    assert torch.equal(saved["s"], method.s.cpu()) and saved["beta"] == method.beta_in_use

    resumed = _copy(digits_original)
    resumed_method = resumed.start_trw(request, **hp)
    make_trainer(max_epochs=2).fit(resumed, ckpt_path=path)
    assert resumed_method.beta_in_use == method.beta_in_use
    ref = digits_original.model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in resumed_method.teacher.model.state_dict().items())
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
