"""Divergence checks: check_finite, nonfinite_entries and the unlearning phase's count of non-finite loss steps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_unlearn.tuning import DivergedError, check_finite, nonfinite_entries
from lightning_unlearn.unlearning import FineTune, get_method


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))


def test_a_finite_run_passes():
    net = small_net()
    check_finite(net, [torch.zeros(5, 2), torch.ones(3, 2)])
    check_finite(net, {"train": torch.zeros(2, 2)}, nonfinite_loss_steps=0)
    assert nonfinite_entries(net) == {}


def test_non_finite_weights_buffers_and_outputs_are_named():
    net = small_net()
    with torch.no_grad():
        net[0].weight[0, :2] = float("nan")
        net[2].bias[1] = float("inf")
    net[1].running_var[0] = float("-inf")
    net[1].num_batches_tracked.fill_(3)  # an integer buffer is never checked
    # counted independently: 2 nan entries, 1 inf, 1 -inf
    assert nonfinite_entries(net) == {"0.weight": 2, "2.bias": 1, "1.running_var": 1}
    with pytest.raises(DivergedError, match=r"3 weight tensors hold non-finite entries: 0\.weight \(2\), 2\.bias \(1\), 1\.running_var \(1\)"):
        check_finite(net)
    with pytest.raises(DivergedError, match=r"outputs\[1\] has 2 non-finite entries"):
        check_finite(None, [torch.zeros(2), torch.tensor([0.0, float("nan"), float("inf")])])
    with pytest.raises(DivergedError, match=r"test has 1 non-finite entries"):
        check_finite(None, {"train": torch.zeros(2), "test": torch.tensor([float("nan")])})


def test_non_finite_loss_steps_alone_make_a_diverged_run():
    with pytest.raises(DivergedError, match="4 unlearning steps had a non-finite loss"):
        check_finite(small_net(), torch.zeros(1, 2), nonfinite_loss_steps=4)
    with pytest.raises(ValueError, match="nonfinite_loss_steps must be >= 0"):
        check_finite(None, nonfinite_loss_steps=-1)


def test_methods_count_non_finite_losses_into_their_diagnostics():
    method = FineTune()
    assert method.nonfinite_loss_steps == 0 and method.diagnostics() == {}
    for loss in (1.0, float("nan"), 2.0, float("inf"), float("-inf")):
        method.record_loss(torch.tensor(loss))
    assert method.nonfinite_loss_steps == 3 and method.diagnostics() == {"nonfinite_loss_steps": 3}
    amun = get_method("amun")()
    amun.record_loss(torch.tensor(float("nan")))
    assert amun.diagnostics() == {"nonfinite_loss_steps": 1}  # AMUN's own diagnostics extend the base's


def test_exploded_outputs_diverge_only_beyond_the_declared_bound():
    """Logits of 1e14 (GA at lr 50 on digits) are finite but meaningless: with ``max_abs_output`` they are a diverged run."""
    from lightning_unlearn.tuning.divergence import MAX_ABS_LOGIT

    exploded = torch.tensor([[9.7e13, -3.0], [1.0, 2.0]])
    check_finite(None, [exploded])  # no bound: finite is enough
    check_finite(None, [torch.tensor([[50.0, -40.0]])], max_abs_output=MAX_ABS_LOGIT)  # a confident trained classifier
    with pytest.raises(DivergedError, match=r"outputs\[0\] has 1 entries beyond ±10000 \(largest 9\.7e\+13\)"):
        check_finite(None, [exploded], max_abs_output=MAX_ABS_LOGIT)
    with pytest.raises(DivergedError, match="non-finite"):  # a non-finite entry is named as such, not as beyond the bound
        check_finite(None, [torch.tensor([float("inf")])], max_abs_output=MAX_ABS_LOGIT)
