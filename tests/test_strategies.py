"""Strategies that shard parameters are refused clearly where whole weights are needed."""

import copy

import pytest

from lightning_unlearn.strategies import require_whole_weights, shards_parameters
from lightning_unlearn.training import ClassifierModule
from lightning_unlearn.unlearning import METHODS, UnlearningMixin, UnlearningRequest


class FSDPStrategy:  # stands in for lightning's FSDPStrategy (which needs CUDA); matched by name
    pass


class DDPStrategy:
    pass


class _FakeTrainer:
    def __init__(self, strategy):
        self.strategy = strategy


class _Model(UnlearningMixin, ClassifierModule):
    pass


def test_shards_parameters_by_strategy_name():
    assert shards_parameters(FSDPStrategy()) and not shards_parameters(DDPStrategy())
    with pytest.raises(RuntimeError, match="FastClip needs whole .* FSDPStrategy .* strategy='ddp'"):
        require_whole_weights(FSDPStrategy(), "FastClip")
    require_whole_weights(DDPStrategy(), "FastClip")


@pytest.mark.parametrize("name", ["salun", "ft"])
def test_mixin_refuses_fsdp_only_for_methods_that_need_whole_weights(name, digits_dm, digits_original):
    model = _Model(copy.deepcopy(digits_original.model), num_classes=10)
    model.start_unlearning(name, UnlearningRequest.from_datamodule(digits_dm))
    model._trainer = _FakeTrainer(FSDPStrategy())
    if METHODS[name].needs_whole_weights:
        with pytest.raises(RuntimeError, match=f"unlearning method '{name}' needs whole"):
            model.on_fit_start()
    else:
        model.on_fit_start()  # ft reads no whole weight tensor: allowed
    model._trainer = None
    model.stop_unlearning()


def test_whole_weight_methods_are_declared():
    needs = {n for n, cls in METHODS.items() if cls.needs_whole_weights}
    assert needs == {"bs", "salun", "scrub", "amun", "amun-salun", "adv-only", "trw", "trw-concat"}
