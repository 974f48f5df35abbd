"""Exact resume: the one sampler, resumable loaders, and every unlearning method from epoch and mid-epoch checkpoints."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch.utils.data import DistributedSampler, TensorDataset

from lightning_unlearn.data import DeviceTensorLoader, IndexedTensorDataset, ResumableDataLoader, ShardedEpochSampler, epoch_order
from lightning_unlearn.training import ClassifierModule
from lightning_unlearn.training.fit import make_trainer
from lightning_unlearn.unlearning import METHODS, UnlearningMethod, UnlearningMixin, UnlearningRequest
from lightning_unlearn.unlearning.base import CHECKPOINT_KEY
from lightning_unlearn.unlearning.phases import FORGET, Phase, PhasedLoader, tagged_concat


# ---------------------------------------------------------------------------- the sampler
def _reference_order(n, seed, epoch, rank, world):
    """DistributedSampler(shuffle=False) over the epoch's permutation: the padding and sharding of torch."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
    positions = list(DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=False))
    return [perm[p] for p in positions]


@pytest.mark.parametrize("n, world", [(10, 1), (10, 3), (7, 2), (3, 8)])
def test_order_is_the_epoch_permutation_sharded_like_distributed_sampler(n, world):
    for epoch in (0, 4):
        shards = [epoch_order(n, seed=5, epoch=epoch, rank=r, world_size=world).tolist() for r in range(world)]
        assert shards == [_reference_order(n, 5, epoch, r, world) for r in range(world)]
        assert all(len(s) == math.ceil(n / world) for s in shards)
        assert set(sum(shards, [])) == set(range(n))


def test_sampler_reads_the_shard_from_the_process_group_when_not_given(monkeypatch):
    s = ShardedEpochSampler(10, 2)
    assert (len(s), s.rank, s.num_replicas) == (10, 0, 1)
    monkeypatch.setattr("lightning_unlearn.data.sampler._process_group", lambda: (1, 4))
    s.set_epoch(3)
    assert (len(s), s.rank, s.num_replicas, s.total_size) == (3, 1, 4, 12)
    assert list(s) == _reference_order(10, 2, 3, 1, 4)
    assert isinstance(s, DistributedSampler)  # Lightning does not wrap it in its own shuffling sampler


def test_sampler_state_resumes_at_the_position_of_the_saved_epoch():
    s = ShardedEpochSampler(9, 1)
    s.set_epoch(2)
    it = iter(s)
    head = [next(it) for _ in range(4)]
    state = s.state_dict()
    assert state["epoch"] == 2 and state["position"] == 4
    again = ShardedEpochSampler(9, 1)
    again.load_state_dict(state)
    again.set_epoch(2)
    assert head + list(again) == epoch_order(9, seed=1, epoch=2).tolist()
    assert list(again) == epoch_order(9, seed=1, epoch=2).tolist()  # the loaded position served one iteration
    other_epoch = ShardedEpochSampler(9, 1)
    other_epoch.load_state_dict(state)
    other_epoch.set_epoch(3)  # a state of another epoch does not apply
    assert list(other_epoch) == epoch_order(9, seed=1, epoch=3).tolist()


@pytest.mark.parametrize("change, words", [({"n": 8}, "n 9 in the checkpoint but 8 now"), ({"seed": 2}, "seed"), ({"world_size": 2}, "world_size")])
def test_sampler_refuses_a_state_of_other_data_or_processes(change, words):
    state = ShardedEpochSampler(9, 1).state_dict()
    kw = {"n": 9, "seed": 1, **{k: v for k, v in change.items() if k != "world_size"}}
    shard = {"rank": 0, "world_size": change["world_size"]} if "world_size" in change else {}
    with pytest.raises(ValueError, match=words):
        ShardedEpochSampler(kw["n"], kw["seed"], **shard).load_state_dict(state)
    with pytest.raises(ValueError, match="version"):
        ShardedEpochSampler(9, 1).load_state_dict({**state, "version": 99})


def test_resumable_loader_counts_yielded_batches_not_prefetched_ones():
    ds = TensorDataset(torch.arange(23))
    full = [b[0].tolist() for b in ResumableDataLoader(ds, batch_size=5, sampler=ShardedEpochSampler(23, 3))]
    loader = ResumableDataLoader(ds, batch_size=5, sampler=ShardedEpochSampler(23, 3), num_workers=1, prefetch_factor=4)
    it = iter(loader)
    head = [next(it)[0].tolist() for _ in range(2)]  # the worker has fetched ahead; the state counts 2 batches
    state = loader.state_dict()
    del it
    assert state["position"] == 10
    resumed = ResumableDataLoader(ds, batch_size=5, sampler=ShardedEpochSampler(23, 3))
    resumed.load_state_dict(state)
    assert head + [b[0].tolist() for b in resumed] == full
    assert resumed.state_dict()["position"] == 23  # counted on from the resumed position, capped at the epoch's end


def test_device_loader_resumes_mid_epoch():
    ds = IndexedTensorDataset(torch.zeros(11, 1, 1, 1, dtype=torch.uint8), torch.zeros(11, dtype=torch.long), torch.arange(11))
    loader = DeviceTensorLoader(ds, batch_size=3, shuffle=True, seed=4)
    loader.sampler.set_epoch(1)
    full = [b[2].tolist() for b in loader]
    assert sum(full, []) == epoch_order(11, seed=4, epoch=1).tolist()
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    again = DeviceTensorLoader(ds, batch_size=3, shuffle=True, seed=4)
    again.load_state_dict(state)
    again.sampler.set_epoch(1)
    assert [b[2].tolist() for b in again] == full[1:]


def test_phased_loader_resumes_inside_its_second_phase():
    def ds(n):
        return tagged_concat([(TensorDataset(torch.zeros(n, 1), torch.zeros(n, dtype=torch.long), torch.arange(n)), FORGET)])

    def loader():
        return PhasedLoader([Phase("max", ds(10), batch_size=4, seed=1), Phase("min", ds(9), batch_size=2, seed=2)], epoch_fn=lambda: 1)

    full = [(b[-1], b[2].tolist()) for b in loader()]
    assert [t for t, _ in full] == ["max"] * 3 + ["min"] * 5
    first = loader()
    it = iter(first)
    seen = [next(it) for _ in range(5)]  # all of phase 1, two batches of phase 2
    state = first.state_dict()
    assert state == {"version": 1, "epoch": 1, "batches": 5, "lengths": [3, 5]}
    resumed = loader()
    resumed.load_state_dict(state)
    assert [(b[-1], b[2].tolist()) for b in seen] + [(b[-1], b[2].tolist()) for b in resumed] == full
    with pytest.raises(ValueError, match=r"had \[3, 5\] batches when saved and have \[3, 3\]"):
        PhasedLoader([Phase("max", ds(10), batch_size=4), Phase("min", ds(9), batch_size=3)], epoch_fn=lambda: 1).load_state_dict(state)


def test_datamodule_and_method_training_loaders_keep_their_orders(digits_dm):
    """The single-process orders are the ones of the former samplers: randperm from ``seed * 100_003 + epoch``."""
    loader = digits_dm.make_loader(digits_dm.train_set(), shuffle=True, seed_offset=3)
    assert isinstance(loader, ResumableDataLoader)
    loader.sampler.set_epoch(2)
    got = torch.cat([b[2] for b in loader])
    perm = torch.randperm(len(digits_dm.train_set()), generator=torch.Generator().manual_seed((digits_dm.seed + 3) * 100_003 + 2))
    assert torch.equal(got, digits_dm.train_set().index[perm])


# ---------------------------------------------------------------------------- unlearning phases resume exactly
class Model(UnlearningMixin, ClassifierModule):
    pass


def _request(dm, *, kind: str) -> UnlearningRequest:
    g = torch.Generator().manual_seed(0)
    forget, remain = dm.forget_set(), dm.remain_set()
    forget = forget.subset(torch.randperm(len(forget), generator=g)[:24])
    remain = remain.subset(torch.randperm(len(remain), generator=g)[:96])
    return UnlearningRequest(forget=forget, remain=remain, num_classes=10, forget_classes=(3,) if kind == "class" else (), batch_size=32, seed=1)


HPARAMS = {
    "amun": {"steps": 5, "max_rounds": 4, "n_calib": 16},
    "adv-only": {"steps": 5, "max_rounds": 4, "n_calib": 16},
    "amun-salun": {"steps": 5, "max_rounds": 4, "n_calib": 16},
    "bs": {"refresh_copy_each_epoch": True},
    "scrub": {"msteps": 2, "forget_batch_size": 8},
}


class _NoRebuild:
    """Makes a resumed method's ``setup`` fail: its state must come from the checkpoint."""

    def __init__(self, method: UnlearningMethod) -> None:
        self.restores = type(method).restore is not UnlearningMethod.restore
        if self.restores:
            def refuse(*args, **kwargs):
                raise AssertionError(f"{method.name}: setup() ran on resume; its state should come from the checkpoint")

            method.setup = refuse  # type: ignore[method-assign]


def _fit(orig, name, request, *, callbacks=(), ckpt_path=None, epochs=2):
    module = Model(copy.deepcopy(orig.model), num_classes=10)
    method = module.start_unlearning(name, request, epochs=epochs, lr=0.01, **HPARAMS.get(name, {}))
    guard = _NoRebuild(method) if ckpt_path is not None else None
    trainer = make_trainer(max_epochs=epochs, callbacks=list(callbacks), enable_checkpointing=bool(callbacks))
    trainer.fit(module, ckpt_path=ckpt_path)
    return module, method, trainer, guard


@pytest.fixture(scope="module")
def class_dm(cache_dir):
    from lightning_unlearn.data import UnlearningDataModule

    dm = UnlearningDataModule("digits", forget="class:3", seed=0, cache_dir=cache_dir)
    dm.setup()
    return dm


@pytest.mark.parametrize("name", list(METHODS))
def test_unlearning_phase_resumed_from_epoch_and_mid_epoch_checkpoints_ends_with_the_same_weights(name, digits_dm, class_dm, digits_original, tmp_path):
    kind = "random" if METHODS[name].supports("random", True) else "class"
    request = _request(class_dm if kind == "class" else digits_dm, kind=kind)
    epoch_ckpt = ModelCheckpoint(
        dirpath=tmp_path, filename="epoch{epoch}", save_top_k=-1, every_n_epochs=1, save_on_train_epoch_end=True, auto_insert_metric_name=False
    )
    step_ckpt = ModelCheckpoint(dirpath=tmp_path, filename="step{step}", save_top_k=-1, every_n_train_steps=1, auto_insert_metric_name=False)
    straight, method, trainer, _ = _fit(digits_original, name, request, callbacks=[epoch_ckpt, step_ckpt])
    per_epoch = trainer.num_training_batches
    assert per_epoch >= 3
    # checkpoints inside the first and the second epoch (SCRUB's: inside its second phase)
    first_epoch, early = tmp_path / "epoch0.ckpt", tmp_path / "step2.ckpt"
    mid = tmp_path / f"step{per_epoch + per_epoch // 2 + 1}.ckpt"
    assert mid.exists() and early.exists() and first_epoch.exists(), sorted(p.name for p in tmp_path.iterdir())
    saved = torch.load(mid, weights_only=True)[CHECKPOINT_KEY]  # loads without the unsafe pickle path
    assert saved["method"] == name and saved["version"] == method.state_version
    if name in ("amun", "adv-only", "amun-salun"):
        assert torch.equal(saved["state"]["adversarial"]["x"], method.adversarial.x)  # D_A of the fit start, not rebuilt
    for ckpt in (first_epoch, early, mid):
        resumed, resumed_method, _, guard = _fit(digits_original, name, request, ckpt_path=ckpt)
        a, b = straight.state_dict(), resumed.state_dict()
        differ = [k for k in a if not torch.equal(a[k], b[k])]
        assert not differ, (ckpt.name, differ)
        if name in ("amun", "adv-only", "amun-salun"):
            assert torch.equal(resumed_method.adversarial.x, method.adversarial.x)


def test_resume_refuses_a_checkpoint_of_another_method_or_request(digits_dm, digits_original, tmp_path):
    request = _request(digits_dm, kind="random")
    ckpt = ModelCheckpoint(dirpath=tmp_path, filename="last", every_n_epochs=1, save_on_train_epoch_end=True)
    _fit(digits_original, "scrub", request, callbacks=[ckpt], epochs=1)
    with pytest.raises(ValueError, match="method 'scrub', not of 'ft'"):
        _fit(digits_original, "ft", request, ckpt_path=tmp_path / "last.ckpt")
    other = UnlearningRequest(forget=request.forget, remain=request.remain, num_classes=10, batch_size=32, seed=2)
    with pytest.raises(ValueError, match="seed 1 in the checkpoint but 2 now"):
        _fit(digits_original, "scrub", other, ckpt_path=tmp_path / "last.ckpt")


# ---------------------------------------------------------------------------- FastClip resumed mid-epoch
class Interrupted(Exception):
    pass


class _StopAt(Callback):
    """Interrupts the fit after ``step`` optimizer steps, as a killed job would stop."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            raise Interrupted


def test_fastclip_run_resumed_from_a_mid_epoch_checkpoint_equals_the_uninterrupted_run(digits_dm, tmp_path):
    from lightning_unlearn.callbacks import FastClip
    from lightning_unlearn.models import build_model
    from lightning_unlearn.training import seed_everything

    data = digits_dm.train_set().subset(torch.arange(384))

    def run(*, callbacks=(), ckpt_path=None):
        seed_everything(1)
        net = build_model("small-cnn", in_channels=1, num_classes=10, mean=digits_dm.mean, std=digits_dm.std)
        module = ClassifierModule(net, num_classes=10, lr=0.1, schedule="constant")
        clip = FastClip(max_norm=0.8, every_n_steps=4)
        trainer = make_trainer(max_epochs=2, callbacks=[clip, *callbacks], enable_checkpointing=True, default_root_dir=tmp_path)
        trainer.fit(module, train_dataloaders=digits_dm.make_loader(data, shuffle=True, batch_size=64), ckpt_path=ckpt_path)
        return module

    full = run()
    ckpt = ModelCheckpoint(dirpath=tmp_path, filename="step{step}", save_top_k=-1, every_n_train_steps=1, auto_insert_metric_name=False)
    with pytest.raises(Interrupted):
        run(callbacks=[ckpt, _StopAt(10)])  # killed one step after the last checkpoint
    resumed = run(ckpt_path=tmp_path / "step9.ckpt")  # 6 steps per epoch: inside the second epoch
    a, b = full.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
