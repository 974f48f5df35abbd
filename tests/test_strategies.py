"""Strategies that shard parameters are refused clearly where whole weights are needed; the check is by type."""

import copy
from types import SimpleNamespace

import pytest
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy, SingleDeviceStrategy

from lightning_unlearn.strategies import SHARDING_STRATEGIES, require_whole_weights, shards_parameters
from lightning_unlearn.training import ClassifierModule
from lightning_unlearn.unlearning import METHODS, UnlearningMixin, UnlearningRequest


class _FakeTrainer:
    """What the mixin's fit-start checks read of a Trainer: its strategy and the fit loop's max_epochs."""

    def __init__(self, strategy):
        self.strategy = strategy
        self.fit_loop = SimpleNamespace(max_epochs=1000)  # Lightning's default when max_epochs is not given

    @property
    def max_epochs(self):
        return self.fit_loop.max_epochs


class _Model(UnlearningMixin, ClassifierModule):
    pass


def _instance(cls):
    """An instance without running ``__init__`` (DeepSpeed's needs the deepspeed package, FSDP's a CUDA-capable setup)."""
    return object.__new__(cls)


class MyFSDP(FSDPStrategy):  # a user's subclass: still shards
    pass


class DDPStrategyWithFSDPInItsName(DDPStrategy):  # the old check matched "FSDP" in the class name
    pass


def test_shards_parameters_by_type():
    assert set(SHARDING_STRATEGIES) == {FSDPStrategy, DeepSpeedStrategy, ModelParallelStrategy}
    for cls in (FSDPStrategy, DeepSpeedStrategy, ModelParallelStrategy, MyFSDP):
        assert shards_parameters(_instance(cls)), cls
    # DeepSpeedStrategy derives from DDPStrategy; the plain DDP classes and the name do not matter
    for cls in (DDPStrategy, SingleDeviceStrategy, DDPStrategyWithFSDPInItsName):
        assert not shards_parameters(_instance(cls)), cls
    assert not shards_parameters("fsdp")  # a strategy's name is not a strategy
    with pytest.raises(RuntimeError, match="FastClip needs whole .* FSDPStrategy .* strategy='ddp'"):
        require_whole_weights(FSDPStrategy(), "FastClip")
    require_whole_weights(_instance(DDPStrategy), "FastClip")


@pytest.mark.parametrize("name", ["salun", "ft"])
def test_mixin_refuses_fsdp_only_for_methods_that_need_whole_weights(name, digits_dm, digits_original):
    model = _Model(copy.deepcopy(digits_original.model), num_classes=10)
    model.start_unlearning(name, UnlearningRequest.from_datamodule(digits_dm))
    model.trainer = _FakeTrainer(FSDPStrategy())  # Lightning's public setter
    try:
        if METHODS[name].needs_whole_weights:
            with pytest.raises(RuntimeError, match=f"unlearning method '{name}' needs whole"):
                model.on_fit_start()
        else:
            model.on_fit_start()  # ft reads no whole weight tensor: allowed
            assert model.trainer.max_epochs == METHODS[name]().epochs  # and the phase lasts the method's epochs
    finally:
        model.trainer = None
        model.stop_unlearning()


def test_whole_weight_methods_are_declared():
    needs = {n for n, cls in METHODS.items() if cls.needs_whole_weights}
    assert needs == {"bs", "salun", "scrub", "amun", "amun-salun", "adv-only", "trw", "trw-concat"}
