"""The minimal-epsilon PGD-L2 search: acceptance checks of docs/methods/amun.md, section 1, and a per-sample reference."""

from __future__ import annotations

import copy
import logging
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_unlearn.attacks import calibrate_eps_init, calibration_search, pgd_l2_search
from lightning_unlearn.data.transforms import to_pixels


def tiny_cifar_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(64, 10)
    )


def reference_search(model, x, y, *, eps_init, steps=50, max_rounds=12):
    """Per-sample, literal transcription of docs/methods/amun.md, section 1 (one sample at a time, no masks)."""
    out = []
    d = x[0].numel()
    for i in range(len(x)):
        x0, yi = x[i : i + 1], y[i : i + 1]
        xa, eps, rec = x0.clone(), eps_init, None
        for r in range(max_rounds):
            if r > 0:
                if 2 * eps > math.sqrt(d):
                    break
                eps *= 2
            for _ in range(steps):
                xs = xa.clone().requires_grad_(True)
                logits = model(xs)
                pred = int(logits.argmax(1))
                if pred != int(yi):
                    rec = (xa.clone(), pred, eps)
                    break
                g = torch.autograd.grad(F.cross_entropy(logits, yi), xs)[0]
                g = g / (g.norm() + 1e-10)
                xn = xa + 0.1 * eps * g
                delta = xn - x0
                n = delta.norm()
                delta = delta * min(1.0, eps / float(n)) if n > 0 else delta
                xa = torch.clamp(x0 + delta, 0, 1)
            if rec is not None:
                break
        if rec is None:  # the library's last check of the final iterate
            pred = int(model(xa).argmax(1))
            if pred != int(yi):
                rec = (xa.clone(), pred, eps)
        out.append(rec)
    return out


@pytest.fixture(scope="module")
def digits_forget(digits_dm):
    f = digits_dm.forget_set()
    return to_pixels(f.x), f.y


def check_acceptance(res, x, y, eps_init, model):
    found = res.found
    assert found.any()
    assert (res.y_adv[found] != y[found]).all()
    assert (res.delta_norm <= res.eps_final + 1e-6).all()
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert torch.allclose(res.delta_norm, (res.x_adv - x).flatten(1).norm(dim=1))
    k = torch.log2(res.eps_final / eps_init)
    assert torch.allclose(k, k.round(), atol=1e-5) and (k.round() >= 0).all()
    with torch.no_grad():
        assert torch.equal(model.eval()(res.x_adv[found]).argmax(1), res.y_adv[found])  # the model's own prediction


def test_acceptance_on_a_trained_model(digits_original, digits_forget):
    model = copy.deepcopy(digits_original.model)
    x, y = digits_forget
    res = pgd_l2_search(model, x, y, eps_init=0.04)
    check_acceptance(res, x, y, 0.04, model)
    assert res.found.all()
    assert res.x_adv.dtype == torch.float32


def test_already_misclassified_gets_delta_zero_exactly(digits_original, digits_forget):
    model = copy.deepcopy(digits_original.model).eval()
    x, y = digits_forget
    wrong = (y + 1) % 10  # pretend the true labels are wrong: every clean prediction now misclassifies
    with torch.no_grad():
        pred = model(x).argmax(1)
    mis = pred != wrong
    res = pgd_l2_search(model, x, wrong, eps_init=0.04)
    assert mis.any()
    assert (res.delta_norm[mis] == 0).all() and torch.equal(res.x_adv[mis], x[mis])
    assert torch.equal(res.y_adv[mis], pred[mis]) and (res.eps_final[mis] == 0.04).all()
    assert torch.equal(res.clean_pred, pred)


def test_parameters_grads_and_modes_untouched(digits_original, digits_forget):
    model = copy.deepcopy(digits_original.model)
    model.train()
    model.net.fc.eval()  # mixed modes must come back as they were
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = digits_forget
    pgd_l2_search(model, x[:32], y[:32], eps_init=0.04)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # BN running stats too
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in model.parameters())
    assert model.training and not model.net.fc.training and model.net.training


def test_deterministic(digits_original, digits_forget):
    model = copy.deepcopy(digits_original.model)
    x, y = digits_forget
    a = pgd_l2_search(model, x[:40], y[:40], eps_init=0.04)
    b = pgd_l2_search(model, x[:40], y[:40], eps_init=0.04)
    for f in ("x_adv", "y_adv", "eps_final", "delta_norm", "found", "clean_pred"):
        assert torch.equal(getattr(a, f), getattr(b, f))


def test_matches_a_per_sample_reference():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 4)).double()
    x = torch.rand(12, 3, 2, 2, dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:2] = (y[:2] + 1) % 4  # two samples misclassified when clean
    res = pgd_l2_search(lambda_module(model), x.float(), y, eps_init=0.01)
    ref = reference_search(model, x, y, eps_init=0.01)
    assert sum(r is not None for r in ref) >= 6
    for i, r in enumerate(ref):
        assert (r is not None) == bool(res.found[i])
        if r is None:
            continue
        xa, pred, eps = r
        assert int(res.y_adv[i]) == pred and math.isclose(float(res.eps_final[i]), eps, rel_tol=1e-6)
        assert torch.allclose(res.x_adv[i].double(), xa[0], atol=1e-5)
    assert (res.delta_norm[:2] == 0).all() and (res.eps_final > 0.01).any()


class lambda_module(nn.Module):  # noqa: N801 - float32 front for a float64 model
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m(x.double())


def test_vectorised_calls_scale_with_steps_not_batch():
    model = tiny_cifar_net()
    calls = []
    model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    x = torch.rand(128, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model.eval()(x).argmax(1)
    calls.clear()
    res = pgd_l2_search(model, x, y, eps_init=0.01, max_rounds=4)
    assert len(calls) == res.n_calls <= 4 * 50 + 4
    assert calls[0] == 128  # one batched call for the whole batch
    assert 0 <= sum(calls) - res.n_grad <= 128  # every gradient step is counted; the rest are final checks
    check_acceptance(res, x, y, 0.01, model)


def test_restart_each_round_keeps_the_invariants(digits_original, digits_forget):
    model = copy.deepcopy(digits_original.model)
    x, y = digits_forget
    res = pgd_l2_search(model, x[:40], y[:40], eps_init=0.02, restart_each_round=True)
    check_acceptance(res, x[:40], y[:40], 0.02, model)


def test_guard_stops_and_flags_unresolved(caplog):
    class Stubborn(nn.Module):  # always predicts class 0, whatever the input
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            z = x.flatten(1).sum(1, keepdim=True) * self.w
            return torch.cat([z + 10.0, z.expand(-1, 2)], dim=1)

    x = torch.rand(3, 1, 2, 2)
    with caplog.at_level(logging.WARNING):
        res = pgd_l2_search(Stubborn(), x, torch.zeros(3, dtype=torch.long), eps_init=0.04, max_rounds=12)
    assert not res.found.any() and (res.y_adv == -1).all()
    assert (res.eps_final <= math.sqrt(4)).all()  # stopped by the eps <= sqrt(d) guard before 12 rounds
    assert "found no adversarial example" in caplog.text
    res2 = pgd_l2_search(Stubborn(), x, torch.zeros(3, dtype=torch.long), eps_init=1e-4, max_rounds=3, steps=2)
    assert torch.allclose(res2.eps_final, torch.full((3,), 4e-4)) and res2.n_calls == 6 + 1


def test_auto_eps_is_the_quantile_of_a_calibration_run(digits_original, digits_forget):
    model = copy.deepcopy(digits_original.model)
    x, y = digits_forget
    kw = dict(steps=10)  # the quantile rule does not depend on the number of steps; keep it fast
    e = calibrate_eps_init(model, x, y, n_calib=30, eps_calib=0.01, q=0.95, seed=3, **kw)
    pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(3))[:30]
    run = pgd_l2_search(model, x[pick], y[pick], eps_init=0.01, **kw)
    vals = sorted(run.eps_final[run.found].tolist() + [math.inf] * int((~run.found).sum()))
    assert e == pytest.approx(vals[math.ceil(0.95 * 29)])  # "higher" interpolation at q (n-1)
    k = math.log2(e / 0.01)
    assert abs(k - round(k)) < 1e-6
    assert calibration_search(model, x, y, n_calib=30, seed=3, **kw).n_grad == run.n_grad
    assert calibrate_eps_init(model, x, y, n_calib=30, q=0.05, seed=3, **kw) <= e
    res = pgd_l2_search(model, x[:10], y[:10], eps_init="auto", n_calib=10, seed=0, **kw)
    assert res.found.all()


def test_autocast_is_disabled_inside(digits_original, digits_forget):
    model = copy.deepcopy(digits_original.model)
    x, y = digits_forget
    a = pgd_l2_search(model, x[:16], y[:16], eps_init=0.04)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        b = pgd_l2_search(model, x[:16], y[:16], eps_init=0.04)
    assert torch.equal(a.x_adv, b.x_adv) and b.x_adv.dtype == torch.float32


def test_uint8_inputs_and_bad_arguments(digits_original, digits_dm):
    model = copy.deepcopy(digits_original.model)
    f = digits_dm.forget_set()
    a = pgd_l2_search(model, f.x[:8], f.y[:8], eps_init=0.04)
    b = pgd_l2_search(model, to_pixels(f.x[:8]), f.y[:8], eps_init=0.04)
    assert torch.equal(a.x_adv, b.x_adv)
    x = to_pixels(f.x[:4])
    with pytest.raises(ValueError, match="eps_init must be a positive number or 'auto'"):
        pgd_l2_search(model, x, f.y[:4], eps_init=-1.0)
    with pytest.raises(ValueError, match="steps must be positive"):
        pgd_l2_search(model, x, f.y[:4], eps_init=0.1, steps=0)
    with pytest.raises(ValueError, match=r"pixels in \[0, 1\]"):
        pgd_l2_search(model, x * 2 + 0.5, f.y[:4], eps_init=0.1)
    with pytest.raises(ValueError, match="same batch size"):
        pgd_l2_search(model, x, f.y[:3], eps_init=0.1)
