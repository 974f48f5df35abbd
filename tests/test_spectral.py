"""Spectral estimates and clipping against the dense Jacobian SVD of the same layer at the same input shape."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lightning_unlearn.spectral import (
    LinearMap,
    UnsupportedLayerError,
    clip_,
    excess_singular_values,
    is_supported,
    linear_map,
    register_spectral,
    singular_values,
)


def dense_singular_values(module: nn.Module, input_shape) -> torch.Tensor:
    """Independent reference: the explicit Jacobian ``[L(e_j) - L(0)]_j`` in float64 from the module's own forward (eval), then SVD."""
    m = copy.deepcopy(module).double().eval()
    n = int(torch.tensor(input_shape).prod())
    with torch.no_grad():
        basis = torch.eye(n, dtype=torch.float64).reshape(n, *input_shape)
        jac = (m(basis) - m(torch.zeros(1, *input_shape, dtype=torch.float64))).reshape(n, -1)
    return torch.linalg.svdvals(jac)


def _randomize_bn(bn: nn.modules.batchnorm._BatchNorm, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(bn.num_features, generator=g))
        bn.bias.copy_(torch.randn(bn.num_features, generator=g))
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g))
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) * 2 + 0.05)
    return bn


def _case(name: str, seed: int = 0):
    torch.manual_seed(seed)
    cases = {
        "conv2d": (lambda: nn.Conv2d(3, 4, 3, padding=1), (3, 6, 6)),
        "conv2d_stride2": (lambda: nn.Conv2d(3, 5, 3, stride=2, padding=1), (3, 8, 8)),
        "conv2d_dil2_groups2": (lambda: nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2), (4, 6, 6)),
        "conv2d_circular": (lambda: nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"), (3, 6, 6)),
        "conv2d_reflect": (lambda: nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), (3, 6, 6)),
        "conv2d_replicate": (lambda: nn.Conv2d(2, 3, 3, padding=1, padding_mode="replicate"), (2, 6, 6)),
        "conv2d_k5_p0": (lambda: nn.Conv2d(2, 4, 5), (2, 8, 8)),
        "conv1d": (lambda: nn.Conv1d(3, 5, 3, padding=1), (3, 12)),
        "conv3d": (lambda: nn.Conv3d(2, 3, 3, padding=1), (2, 4, 4, 4)),
        "convT1d": (lambda: nn.ConvTranspose1d(3, 2, 3, stride=2, padding=1), (3, 8)),
        "convT2d_stride2": (lambda: nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1), (4, 4, 4)),
        "convT3d": (lambda: nn.ConvTranspose3d(2, 2, 3, padding=1), (2, 3, 3, 3)),
        "linear": (lambda: nn.Linear(24, 11), (24,)),
        "bn1d": (lambda: _randomize_bn(nn.BatchNorm1d(7), seed), (7,)),
        "bn2d": (lambda: _randomize_bn(nn.BatchNorm2d(5), seed), (5, 3, 3)),
        "bn3d": (lambda: _randomize_bn(nn.BatchNorm3d(3), seed), (3, 2, 2, 2)),
        "conv_bn": (lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), _randomize_bn(nn.BatchNorm2d(4), seed)), (3, 6, 6)),
        "linear_bn": (lambda: nn.Sequential(nn.Linear(10, 6), _randomize_bn(nn.BatchNorm1d(6), seed)), (10,)),
    }
    make, shape = cases[name]
    return make(), shape


ALL = [
    "conv2d", "conv2d_stride2", "conv2d_dil2_groups2", "conv2d_circular", "conv2d_reflect", "conv2d_replicate",
    "conv2d_k5_p0", "conv1d", "conv3d", "convT1d", "convT2d_stride2", "convT3d", "linear", "bn1d", "bn2d", "bn3d",
    "conv_bn", "linear_bn",
]
CLIPPABLE = [c for c in ALL if not c.startswith("bn")]


def _snapshot(module: nn.Module):
    return {k: v.clone() for k, v in module.state_dict().items()}, [m.training for m in module.modules()]


def _assert_unchanged(module: nn.Module, snap, *, except_names=()):
    state, modes = snap
    for k, v in module.state_dict().items():
        if k not in except_names:
            assert torch.equal(v, state[k]), f"{k} changed"
    assert [m.training for m in module.modules()] == modes


@pytest.mark.parametrize(
    ("name", "method"),
    [(n, "krylov") for n in ALL] + [(n, "subspace") for n in ("conv2d_stride2", "convT2d_stride2", "linear", "conv_bn")],
)
def test_singular_values_match_dense_svd(name, method):
    module, shape = _case(name)
    module.train()  # estimates must not depend on, or change, the mode
    for p in module.parameters():
        p.grad = torch.full_like(p, 7.0)
    snap = _snapshot(module)
    truth = dense_singular_values(module, shape)
    est = singular_values(module, shape, k=3, method=method, iters=300)
    assert est.dtype == torch.float32 and est.shape == (3,)
    assert torch.all(est[:-1] >= est[1:]), est
    assert abs(float(est[0]) - float(truth[0])) <= 1e-3 * float(truth[0]), (est, truth[:3])
    assert torch.allclose(est.double(), truth[:3], rtol=1e-2, atol=0), (est, truth[:3])
    _assert_unchanged(module, snap)
    assert all(torch.equal(p.grad, torch.full_like(p, 7.0)) for p in module.parameters())


def test_singular_values_top1_default_and_eval_mode():
    module, shape = _case("conv_bn", seed=1)
    module.eval()
    est = singular_values(module, shape)
    assert est.shape == (1,)
    truth = dense_singular_values(module, shape)[0]
    assert abs(float(est[0]) - float(truth)) <= 1e-3 * float(truth)
    assert not module.training and not module[1].training


@pytest.mark.parametrize("name", CLIPPABLE)
@pytest.mark.parametrize("start", [3.0, 1.2])
def test_clip_lands_within_tolerance(name, start):
    c = 1.0
    module, shape = _case(name, seed=2)
    module.train()
    lm = linear_map(module)
    with torch.no_grad():
        lm.tensors[lm.clip_tensor].mul_(start * c / float(dense_singular_values(module, shape)[0]))
    bias_before = {k: v.clone() for k, v in module.state_dict().items() if not k.endswith(lm.clip_tensor)}
    for p in module.parameters():
        p.grad = None
    snap = _snapshot(module)
    new = clip_(module, shape, c)
    truth = float(dense_singular_values(module, shape)[0])
    assert c * (1 - 1e-4) <= truth <= 1.01 * c, (name, start, truth)
    assert abs(float(new) - truth) <= 0.01 * c
    # only the clipped tensor changed: biases, BN gains and buffers are bit-identical; no .grad written
    _assert_unchanged(module, snap, except_names=(lm.clip_tensor,))
    assert all(torch.equal(module.state_dict()[k], v) for k, v in bias_before.items())
    assert all(p.grad is None for p in module.parameters())


@pytest.mark.parametrize("krylov", [False, True])
@pytest.mark.parametrize("name", ["conv2d", "conv2d_stride2", "conv1d", "convT2d_stride2", "linear", "conv_bn"])
def test_clip_two_sided_raises_from_below(name, krylov):
    from lightning_unlearn.spectral import ClipSettings

    c = 1.0
    module, shape = _case(name, seed=3)
    lm = linear_map(module)
    with torch.no_grad():
        lm.tensors[lm.clip_tensor].mul_(0.5 * c / float(dense_singular_values(module, shape)[0]))
    settings = ClipSettings(headroom=0.0, dense_max_entries=0 if krylov else 2**18)
    one_sided = copy.deepcopy(module)
    clip_(one_sided, shape, c, settings=settings)
    assert all(torch.equal(a, b) for a, b in zip(one_sided.state_dict().values(), module.state_dict().values()))
    clip_(module, shape, c, two_sided=True, settings=settings)
    truth = float(dense_singular_values(module, shape)[0])
    assert 0.99 * c <= truth <= 1.01 * c, truth


def test_clip_linear_is_the_rank_one_clip():
    # For a dense layer one Gauss-Newton step is W - (sigma_1 - c) u v^T: the other singular values stay.
    lin = nn.Linear(6, 5, bias=False)
    u, _, vh = torch.linalg.svd(torch.randn(5, 6, generator=torch.Generator().manual_seed(0)), full_matrices=False)
    s = torch.tensor([4.0, 2.5, 0.7, 0.3, 0.1])
    with torch.no_grad():
        lin.weight.copy_(u @ torch.diag(s) @ vh)
    clip_(lin, (6,), 1.0)
    got = torch.linalg.svdvals(lin.weight.detach().double())
    assert torch.allclose(got, torch.tensor([1.0, 1.0, 0.7, 0.3, 0.1], dtype=torch.float64), atol=2e-3)


def test_clip_conv_bn_never_writes_bn_buffers_and_clips_gamma_on_request():
    module, shape = _case("conv_bn", seed=4)
    module.train()  # a BN forward in train mode would overwrite running stats: we never call it
    bn_before = {k: v.clone() for k, v in module[1].state_dict().items()}
    clip_(module, shape, 1.0)
    assert all(torch.equal(module[1].state_dict()[k], v) for k, v in bn_before.items())
    assert module.training and module[1].training
    truth = float(dense_singular_values(module, shape)[0])
    assert 1.0 - 1e-4 <= truth <= 1.01
    kernel = module[0].weight.detach().clone()
    clip_(module, shape, 0.5, tensor="1.weight")
    assert torch.equal(module[0].weight, kernel)
    assert 0.5 * (1 - 1e-4) <= float(dense_singular_values(module, shape)[0]) <= 0.505
    assert torch.equal(module[1].running_var, bn_before["running_var"])


def test_excess_decision_is_pure():
    sigma = torch.tensor([1.5, 1.004, 1.006, 0.2])
    idx, exc = excess_singular_values(sigma, 1.0)
    assert idx.tolist() == [0, 2] and torch.allclose(exc, torch.tensor([0.5, 0.006]))
    idx, _ = excess_singular_values(torch.tensor([0.5, 0.1]), 1.0)
    assert idx.numel() == 0
    idx, exc = excess_singular_values(torch.tensor([0.5, 0.1]), 1.0, two_sided=True)
    assert idx.tolist() == [0] and torch.allclose(exc, torch.tensor([-0.5]))
    idx, _ = excess_singular_values(torch.tensor([0.996, 0.1]), 1.0, two_sided=True)
    assert idx.numel() == 0


def test_unsupported_layers_raise_naming_the_module():
    with pytest.raises(UnsupportedLayerError, match="LayerNorm"):
        singular_values(nn.LayerNorm(4), (4,))
    with pytest.raises(UnsupportedLayerError, match="child '1'.*ReLU"):
        singular_values(nn.Sequential(nn.Linear(3, 3), nn.ReLU()), (3,))
    with pytest.raises(UnsupportedLayerError, match="track_running_stats=False"):
        singular_values(nn.BatchNorm2d(3, track_running_stats=False), (3, 4, 4))
    with pytest.raises(ValueError, match="input_shape"):
        singular_values(nn.Linear(3, 3), ())
    with pytest.raises(ValueError, match="max_norm must be a positive"):
        clip_(nn.Linear(3, 3), (3,), -1.0)
    with pytest.raises(ValueError, match="unknown method 'power'"):
        singular_values(nn.Linear(3, 3), (3,), method="power")
    assert not is_supported(nn.ReLU()) and is_supported(nn.Conv2d(1, 1, 1))


def test_users_can_register_a_layer_type():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.tensor(3.0))

        def forward(self, x):
            return self.weight * x

    @register_spectral(Scale)
    def _scale(module: Scale) -> LinearMap:
        return LinearMap(apply=lambda t, x: t["weight"] * x, tensors={"weight": module.weight}, clip_tensor="weight")

    m = Scale()
    assert abs(float(singular_values(m, (5,))[0]) - 3.0) < 1e-5
    clip_(m, (5,), 2.0)
    assert 2.0 * (1 - 1e-4) <= float(m.weight.detach()) <= 2.02


def test_clip_event_escapes_an_invariant_warm_subspace():
    # Warm vectors spanning an exact invariant subspace (here: singular directions 5-8) make plain block
    # Krylov stall; the event must still find and clip the larger values outside it.
    from lightning_unlearn.spectral import clip_layer

    torch.manual_seed(0)
    lin = nn.Linear(64, 10)
    with torch.no_grad():
        lin.weight.mul_(8)
    _, _, vh = torch.linalg.svd(lin.weight.detach())
    clip_layer(linear_map(lin), (64,), 1.0, vh[4:8].clone(), generator=torch.Generator().manual_seed(0))
    top = float(torch.linalg.svdvals(lin.weight.detach().double())[0])
    assert 1.0 - 1e-4 <= top <= 1.01, top


def _scaled_case(name: str, *, seed: int, start: float):
    """A registry case whose clipped tensor is scaled so the true top singular value is ``start``,
    with its linear map, a seeded generator and 4 random warm vectors drawn from it."""
    module, shape = _case(name, seed=seed)
    lm = linear_map(module)
    with torch.no_grad():
        lm.tensors[lm.clip_tensor].mul_(start / float(dense_singular_values(module, shape)[0]))
    gen = torch.Generator().manual_seed(0)
    v0 = torch.randn(4, int(torch.tensor(shape).prod()), generator=gen)
    return module, shape, lm, gen, v0


@pytest.mark.parametrize("name", ["conv2d", "conv2d_stride2", "conv_bn", "linear"])
def test_clip_layer_headroom_stays_within_tolerance(name):
    # headroom aims the moved values at c (1 - headroom): still certified <= c (1 + tol), and never
    # lower than c (1 - tol) when the norm started above c.
    from lightning_unlearn.spectral import clip_layer

    c, tol = 1.0, 0.01
    module, shape, lm, gen, v0 = _scaled_case(name, seed=4, start=1.2 * c)
    with torch.no_grad():
        clip_layer(lm, shape, c, v0, generator=gen, tol=tol, headroom=0.9 * tol, fresh=True)
    truth = float(dense_singular_values(module, shape)[0])
    assert c * (1 - tol) <= truth <= c * (1 + tol), (name, truth)
    with pytest.raises(ValueError, match="headroom must be in"):
        clip_layer(lm, shape, c, v0, generator=gen, tol=tol, headroom=tol)


@pytest.mark.parametrize("name", ["conv2d", "conv2d_stride2", "conv_bn", "linear"])
@pytest.mark.parametrize("max_steps", [0, 1])
def test_clip_layer_fallback_scales_exactly_without_reestimating(name, max_steps):
    # After max_steps Gauss-Newton steps the kernel is scaled by c (1 - headroom) / sigma_1 of a
    # certified estimate: exact (f is linear in the kernel), so the result is within tolerance
    # and the returned values are the certified ones times the factor.
    from lightning_unlearn.spectral import clip_layer

    c, tol = 1.0, 0.01
    module, shape, lm, gen, v0 = _scaled_case(name, seed=5, start=3.0 * c)
    with torch.no_grad():
        res = clip_layer(lm, shape, c, v0, generator=gen, tol=tol, headroom=tol / 2, max_steps=max_steps, cert_depth=20)
    truth = dense_singular_values(module, shape)
    assert res.steps == max_steps
    assert res.fallbacks == (1 if max_steps == 0 else res.fallbacks)
    assert c * (1 - tol) <= float(truth[0]) <= c * (1 + tol), (name, float(truth[0]))
    assert float(res.sigma[0]) == pytest.approx(float(truth[0]), rel=2e-3)


# --------------------------------------------------------------------------- never above the spectrum
def _small_layers():
    """Layers whose input dimension is smaller than the Krylov spaces below (and rank-deficient ones)."""
    g = torch.Generator().manual_seed(7)
    low = nn.Linear(40, 40, bias=False)
    circ = nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular")  # symmetric: repeated singular values
    flat = nn.Linear(16, 16, bias=False)  # a flat spectrum: every vector is (almost) a singular vector
    with torch.no_grad():
        low.weight.copy_(torch.randn(40, 3, generator=g) @ torch.randn(3, 40, generator=g))
        flat.weight.copy_(2 * torch.eye(16))
        flat.weight[0, 0] = 2.0000002
    torch.manual_seed(7)
    return [
        ("head 64->10", nn.Linear(64, 10), (64,)),
        ("rank 3", low, (40,)),
        ("circular conv", circ, (2, 4, 4)),
        ("conv", nn.Conv2d(2, 3, 3, padding=1), (2, 5, 5)),
        ("conv-bn stride 2", nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), _randomize_bn(nn.BatchNorm2d(4), 7)).eval(), (3, 6, 6)),
        ("flat", flat, (16,)),
    ]


@pytest.mark.parametrize("reorth", ["auto", "local", "full"])
def test_block_krylov_never_returns_a_value_above_sigma_1(reorth):
    # Property: whatever the start block (any size, up to beyond the dimension; unnormalised;
    # duplicated rows; rows confined to a subspace) and whatever the depth (the Krylov space
    # larger than the operator's dimension), every Ritz value is at most the dense sigma_1.
    from lightning_unlearn.spectral import Operator, block_krylov

    for name, module, shape in _small_layers():
        truth = float(dense_singular_values(module, shape)[0])
        op = Operator(linear_map(module), shape)
        n = op.n
        for b in (1, 3, 8, 13, n // 2 + 1, n, n + 5):
            for depth in (0, 1, 4, 12, 40):
                g = torch.Generator().manual_seed(1000 * b + depth)
                v = torch.randn(b, n, generator=g) * (10 * torch.rand(b, 1, generator=g))
                for kind in range(3):
                    w = v.clone()
                    if kind == 1:
                        w = torch.cat([v[: b // 2], v[: b - b // 2]])  # duplicated rows
                    elif kind == 2:
                        w[:, : n // 2] = 0  # rows confined to half the space
                    with torch.no_grad():
                        r = block_krylov(op, w, depth, reorth=reorth)
                    assert float(r.sigma.max()) <= truth * (1 + 1e-5), (name, b, depth, kind, float(r.sigma.max()), truth)
                    assert torch.all(r.sigma[:-1] >= r.sigma[1:])


def test_block_krylov_the_issue_head_case():
    # The case that used to return 2.211 for a true 1.311: 4 warm unit vectors plus 4 fresh
    # unnormalised Gaussian vectors, depth 12, on a 64 -> 10 classifier head (Krylov space 104 > 64).
    from lightning_unlearn.spectral import Operator, block_krylov

    torch.manual_seed(0)
    head = nn.Linear(64, 10)
    truth = dense_singular_values(head, (64,))
    op = Operator(linear_map(head), (64,))
    _, _, vh = torch.linalg.svd(head.weight.detach())
    start = torch.cat([vh[:4], 8 * torch.randn(4, 64, generator=torch.Generator().manual_seed(1))])
    r = block_krylov(op, start, 12)
    assert float(r.sigma[0]) <= float(truth[0]) * (1 + 1e-5)
    assert torch.allclose(r.sigma[:4].double(), truth[:4], rtol=1e-5)


def test_exact_spectrum_matches_dense_svd():
    from lightning_unlearn.spectral import Operator
    from lightning_unlearn.spectral.dense import exact_spectrum

    for name in ("conv2d_stride2", "convT2d_stride2", "linear", "conv_bn", "conv1d"):
        module, shape = _case(name, seed=3)
        op = Operator(linear_map(module), shape)
        spec = exact_spectrum(op)
        truth = dense_singular_values(module, shape)
        r = min(len(spec.sigma), 6)
        assert torch.allclose(spec.sigma[:r].double(), truth[:r], rtol=1e-5, atol=1e-6), name
        # right singular vectors: ||M v_i|| = sigma_i
        mv = op.forward(spec.vectors[:r]).flatten(1)
        assert torch.allclose(torch.linalg.vector_norm(mv, dim=1), spec.sigma[:r], rtol=1e-4), name




def _krylov_settings(**kw):
    from lightning_unlearn.spectral import ClipSettings

    return ClipSettings(dense_max_entries=0, headroom=0.0, **kw)


@pytest.mark.parametrize("name", CLIPPABLE)
@pytest.mark.parametrize("start", [3.0, 1.2])
def test_clip_by_krylov_lands_within_tolerance(name, start):
    # The same cases as above, with exact solves switched off: block Krylov estimates and certification.
    c = 1.0
    module, shape = _case(name, seed=2)
    lm = linear_map(module)
    with torch.no_grad():
        lm.tensors[lm.clip_tensor].mul_(start * c / float(dense_singular_values(module, shape)[0]))
    snap = _snapshot(module)
    new = clip_(module, shape, c, settings=_krylov_settings())
    truth = float(dense_singular_values(module, shape)[0])
    assert c * (1 - 1e-4) <= truth <= 1.01 * c, (name, start, truth)
    assert abs(float(new) - truth) <= 0.01 * c
    _assert_unchanged(module, snap, except_names=(lm.clip_tensor,))


@pytest.mark.parametrize("krylov", [False, True])
def test_a_layer_below_the_target_is_left_bit_identical(krylov):
    from lightning_unlearn.spectral import ClipSettings

    for name in ("conv2d", "conv2d_stride2", "linear", "conv_bn"):
        module, shape = _case(name, seed=6)
        lm = linear_map(module)
        with torch.no_grad():
            lm.tensors[lm.clip_tensor].mul_(0.7 / float(dense_singular_values(module, shape)[0]))
        before = {k: v.clone() for k, v in module.state_dict().items()}
        settings = _krylov_settings() if krylov else ClipSettings()
        clip_(module, shape, 1.0, settings=settings)
        assert all(torch.equal(v, before[k]) for k, v in module.state_dict().items()), name


def test_excess_mask_is_a_fixed_size_decision():
    from lightning_unlearn.spectral import excess_mask

    sigma = torch.tensor([1.5, 1.004, 1.006, 0.2])
    mask, exc = excess_mask(sigma, 1.0, tol=0.01, headroom=0.005)
    assert mask.tolist() == [True, False, True, False]
    assert torch.allclose(exc, torch.tensor([0.505, 0.0, 0.011, 0.0]))
    mask, exc = excess_mask(torch.tensor([[0.5, 0.1], [2.0, 0.1]]), 1.0, two_sided=True)
    assert mask.tolist() == [[True, False], [True, False]]
    assert torch.allclose(exc, torch.tensor([[-0.5, 0.0], [1.0, 0.0]]))
    mask, _ = excess_mask(torch.tensor([float("nan"), 2.0]), 1.0)
    assert mask.tolist() == [False, True]


def test_probes_run_without_tf32_and_restore_the_flags():
    from lightning_unlearn.spectral import full_precision

    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        with full_precision():
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def test_settings_are_validated_with_the_bad_value():
    from lightning_unlearn.spectral import ClipSettings

    with pytest.raises(ValueError, match="headroom must be in \\[0, tol=0.01\\), got 0.02"):
        ClipSettings(headroom=0.02)
    with pytest.raises(ValueError, match="cert_depth must be a positive int, got 0"):
        ClipSettings(cert_depth=0)
    with pytest.raises(ValueError, match="k must be a positive int"):
        ClipSettings(k=0)
    for name, bad in (("init_depth", -1), ("fresh_every", -2), ("track_iters", 1.5), ("certify_every", 0), ("certify_every", True)):
        with pytest.raises(ValueError, match=f"{name} must be a (positive|non-negative) int, got {bad!r}"):
            ClipSettings(**{name: bad})
    s = ClipSettings(tol=0.02)
    assert s.resolved_headroom == 0.01 and s.resolved_fresh == 4
    assert s.replace(k=8, fresh=None).k == 8 and s.replace(k=8).tol == 0.02


def test_settings_decide_which_events_certify_and_take_fresh_vectors():
    from lightning_unlearn.spectral import ClipSettings

    assert all(ClipSettings().certifies(e) and ClipSettings().adds_fresh(e) for e in range(1, 20))
    every3 = ClipSettings(certify_every=3, fresh_every=2)
    assert [e for e in range(1, 11) if every3.certifies(e)] == [1, 4, 7, 10]  # the first and every 3rd after it
    assert [e for e in range(1, 11) if every3.adds_fresh(e)] == [2, 4, 6, 8, 10]
    assert not any(ClipSettings(fresh_every=0).adds_fresh(e) for e in range(1, 20))


@pytest.mark.parametrize("name", ["conv2d_stride2", "convT2d_stride2", "conv_bn", "linear"])
def test_tracking_steps_converge_to_the_dense_top_values_from_below(name):
    from lightning_unlearn.spectral import ClipSettings, EventLayer, track_norms

    module, shape = _case(name)
    truth = dense_singular_values(module, shape)
    layer = EventLayer(name, linear_map(module), shape)
    snap = _snapshot(module)
    g = torch.Generator().manual_seed(0)
    krylov = ClipSettings(k=3, dense_max_entries=0)
    one = track_norms([layer], krylov, g)[0]
    assert one.sigma.shape == (3,) and one.vectors.shape == (3, int(torch.tensor(shape).prod()))
    # Ritz values are Rayleigh quotients: never above the true values, one step or many
    assert bool((one.sigma.double() <= truth[:3] * (1 + 1e-5)).all())
    many = track_norms([layer], krylov.replace(track_iters=300), torch.Generator().manual_seed(0))[0]
    assert bool((many.sigma.double() <= truth[:3] * (1 + 1e-5)).all())
    assert float(many.sigma[0]) == pytest.approx(float(truth[0]), rel=1e-3)
    # warm start: the returned block continues the iteration (one more step from it stays converged)
    warm = track_norms([EventLayer(name, layer.lmap, shape, vectors=many.vectors)], krylov, g)[0]
    assert float(warm.sigma[0]) == pytest.approx(float(truth[0]), rel=1e-3)
    exact = track_norms([layer], ClipSettings(), g)[0]  # small layer: its exact spectrum, no vectors kept
    assert exact.vectors is None and float(exact.sigma[0]) == pytest.approx(float(truth[0]), rel=1e-5)
    _assert_unchanged(module, snap)


@pytest.mark.parametrize("name", ["bn1d", "bn2d"])
def test_bn_gain_is_the_dense_norm_and_the_clamp_bounds_it(name):
    from lightning_unlearn.spectral import bn_gain, clamp_bn_gain_

    bn, shape = _case(name, seed=3)
    assert float(bn_gain(bn)) == pytest.approx(float(dense_singular_values(bn, shape)[0]), rel=1e-6)
    c = 0.5 * float(bn_gain(bn))
    buffers = {k: v.clone() for k, v in bn.state_dict().items() if "running" in k}
    gamma = bn.weight.detach().clone()
    clamp_bn_gain_(bn, c)
    assert float(dense_singular_values(bn, shape)[0]) == pytest.approx(c, rel=1e-6)
    bound = c * torch.sqrt(bn.running_var + bn.eps)
    inside = gamma.abs() <= bound
    assert torch.equal(bn.weight.detach()[inside], gamma[inside])  # channels within the bound keep gamma bit for bit
    assert torch.allclose(bn.weight.detach()[~inside], gamma[~inside].sign() * bound[~inside])
    assert all(torch.equal(bn.state_dict()[k], v) for k, v in buffers.items())


# --------------------------------------------------------------------------- the map the module computes
def test_weight_norm_parametrized_layers_are_clipped_through_the_parametrization():
    from torch.nn.utils import parametrizations

    for make, shape in ((lambda: nn.Linear(12, 8), (12,)), (lambda: nn.Conv2d(2, 3, 3, padding=1), (2, 5, 5))):
        torch.manual_seed(0)
        module = parametrizations.weight_norm(make())
        with torch.no_grad():
            module.parametrizations.weight.original0.mul_(5.0)  # g: the computed weight is 5x larger
        truth0 = float(dense_singular_values(module, shape)[0])
        assert truth0 > 2
        assert abs(float(singular_values(module, shape)[0]) - truth0) <= 1e-4 * truth0
        clip_(module, shape, 1.0)
        assert 1.0 - 1e-4 <= float(dense_singular_values(module, shape)[0]) <= 1.01


def test_legacy_weight_norm_hook_is_clipped_through_g_and_v():
    import warnings

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.nn.utils.weight_norm(nn.Linear(10, 6))
    with torch.no_grad():
        module.weight_g.mul_(4.0)
    x = torch.randn(3, 10)
    module(x)  # the hook recomputes weight from (g, v) at each forward
    clip_(module, (10,), 1.0)
    assert 1.0 - 1e-4 <= float(dense_singular_values(module, (10,))[0]) <= 1.01  # the forward recomputes from g, v


@pytest.mark.parametrize("kind", ["spectral_norm", "orthogonal", "legacy_spectral_norm"])
def test_parametrizations_that_cannot_represent_a_clipped_weight_are_refused(kind):
    from torch.nn.utils import parametrizations

    lin = nn.Linear(6, 6)
    if kind == "spectral_norm":
        module = parametrizations.spectral_norm(lin)
    elif kind == "orthogonal":
        module = parametrizations.orthogonal(lin)
    else:
        module = torch.nn.utils.spectral_norm(lin)
    with pytest.raises(UnsupportedLayerError, match="cannot be (clipped|written)"):
        linear_map(module)
    assert not is_supported(module)


def test_a_subclass_that_overrides_forward_is_not_its_base_class():
    class ThreeTimes(nn.Linear):
        def forward(self, x):
            return 3 * super().forward(x)

    class Tagged(nn.Linear):  # no forward override: still a Linear
        tag = "x"

    with pytest.raises(UnsupportedLayerError, match="overrides forward of the registered Linear.*register_spectral\\(ThreeTimes\\)"):
        linear_map(ThreeTimes(4, 4), name="head")
    assert is_supported(Tagged(4, 4))

    @register_spectral(ThreeTimes)
    def _three(module):
        return LinearMap(apply=lambda t, x: 3 * torch.nn.functional.linear(x, t["weight"]), tensors={"weight": module.weight}, clip_tensor="weight")

    m = ThreeTimes(4, 4)
    truth = float(dense_singular_values(m, (4,))[0])
    assert abs(float(singular_values(m, (4,))[0]) - truth) <= 1e-4 * truth
    clip_(m, (4,), 1.0)
    assert 1.0 - 1e-4 <= float(dense_singular_values(m, (4,))[0]) <= 1.01


@pytest.mark.parametrize("krylov", [False, True])
@pytest.mark.parametrize("options", [dict(prescale=True), dict(max_steps=3), dict(max_steps=3, prescale=True, est_depth=0)])
def test_clip_layer_options_keep_the_bound(krylov, options):
    # the prescale, the second round of steps and a depth-0 opening estimate all end within tolerance
    from lightning_unlearn.spectral import ClipSettings, clip_layer

    for name in ("conv2d", "conv2d_stride2", "conv_bn"):
        module, shape, lm, gen, v0 = _scaled_case(name, seed=8, start=3.0)
        settings = ClipSettings(dense_max_entries=0 if krylov else 2**18, **options)
        with torch.no_grad():
            res = clip_layer(lm, shape, 1.0, v0, generator=gen, settings=settings)
        truth = float(dense_singular_values(module, shape)[0])
        assert 0.98 <= truth <= 1.01, (name, options, truth)
        assert res.certified and abs(float(res.sigma[0]) - truth) <= 0.01
