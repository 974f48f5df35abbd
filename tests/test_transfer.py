"""Transfer rate of AMUN's adversarial labels to a (retrained) model, against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lightning_unlearn.audit import adversarial_transfer
from lightning_unlearn.metrics.functional import transfer_rate
from lightning_unlearn.unlearning import AdversarialSet


def test_transfer_rate_by_hand():
    # rows are probability vectors; logits = log p, so softmax(logits) = p exactly
    p = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3], [0.25, 0.25, 0.5], [0.1, 0.1, 0.8]], dtype=torch.float64)
    y_adv = torch.tensor([1, 2, 2, 0])
    out = transfer_rate(p.log(), y_adv)
    assert out["prob"] == pytest.approx(100 * (0.5 + 0.3 + 0.5 + 0.1) / 4, abs=1e-12)  # 35
    assert out["top1"] == pytest.approx(100 * 2 / 4)  # rows 0 and 2 predict y_adv
    assert out["n"] == 4.0
    shifted = transfer_rate(p.log() + 7.0, y_adv)  # softmax is shift invariant
    assert shifted["prob"] == pytest.approx(out["prob"], abs=1e-9) and shifted["top1"] == out["top1"]


def test_transfer_rate_errors():
    with pytest.raises(ValueError, match=r"adversarial_labels must lie in \[0, 3\)"):
        transfer_rate(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="non-finite"):
        transfer_rate(torch.tensor([[0.0, math.inf]]), torch.tensor([1]))
    with pytest.raises(ValueError, match="empty"):
        transfer_rate(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))


class LogOfPixels(nn.Module):
    """A 'model' whose logits are log(x): its softmax at a pixel vector x (summing to 1) is x itself."""

    def forward(self, x):
        return x.flatten(1).clamp_min(1e-12).log()


def test_adversarial_transfer_runs_the_model_over_the_adversarial_set():
    x = torch.tensor([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4], [0.05, 0.9, 0.05]]).reshape(3, 1, 1, 3)
    a = AdversarialSet(
        x=x, y=torch.tensor([0, 1, 1]), index=torch.tensor([4, 8, 9]), eps=torch.full((3,), 0.04),
        delta=torch.tensor([0.1, 0.0, 0.2]), y_true=torch.tensor([1, 1, 0]), clean_pred=torch.tensor([1, 1, 0]), eps_init=0.04,
    )
    out = adversarial_transfer(LogOfPixels(), a)
    assert out["prob"] == pytest.approx(100 * (0.7 + 0.3 + 0.9) / 3, abs=1e-5)
    assert out["top1"] == pytest.approx(100 * 2 / 3) and out["n"] == 3.0  # row 1 predicts class 2, not 1
    only = adversarial_transfer(LogOfPixels(), a, perturbed_only=True)  # row 1 has delta 0: left out
    assert only["prob"] == pytest.approx(100 * (0.7 + 0.9) / 2, abs=1e-5) and only["top1"] == 100.0
