"""FastClip callback: schedule under gradient accumulation, true norms after events, resume, BN modes, errors."""

from __future__ import annotations

import copy
import logging
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from lightning_unlearn.callbacks import FastClip
from lightning_unlearn.models import build_model
from lightning_unlearn.spectral import UnsupportedLayerError
from lightning_unlearn.training import ClassifierModule, seed_everything
from lightning_unlearn.training.fit import make_trainer

from test_spectral import dense_singular_values


def _module(dm, *, lr=0.1, seed=0, net: nn.Module | None = None) -> ClassifierModule:
    seed_everything(seed)
    net = net or build_model("small-cnn", in_channels=1, num_classes=dm.num_classes, mean=dm.mean, std=dm.std)
    return ClassifierModule(net, num_classes=dm.num_classes, lr=lr, schedule="constant")


def _loader(dm, n=None, batch_size=64):
    ds = dm.train_set()
    if n is not None:
        ds = torch.utils.data.Subset(ds, range(n))
        return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)
    return dm.make_loader(ds, shuffle=True, batch_size=batch_size)


class Recording(FastClip):
    """Records every should_clip call and checks the true (dense SVD) norm of every layer after each event."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked: list[int] = []
        self.events: list[int] = []
        self.true_after: list[dict[str, float]] = []

    def should_clip(self, step_idx):
        self.asked.append(step_idx)
        return super().should_clip(step_idx)

    def _clip_event(self, trainer, pl_module, step_idx):
        super()._clip_event(trainer, pl_module, step_idx)
        self.events.append(step_idx)
        truth = {}
        for name, layer in self._layers.items():
            module = pl_module.get_submodule(name) if "+" not in name else nn.Sequential(*(pl_module.get_submodule(n) for n in name.split("+")))
            truth[name] = float(dense_singular_values(module, layer.state.input_shape)[0])
        self.true_after.append(truth)


def test_clips_once_per_optimizer_step_with_accumulation_and_bounds_true_norms(digits_dm, tmp_path):
    cb = Recording(max_norm=1.0, every_n_steps=4, warmup_iters=30)
    module = _module(digits_dm, lr=0.2)
    # 16 batches of 32 -> 8 optimizer steps with accumulate_grad_batches=2 -> events after steps 4 and 8
    trainer = make_trainer(max_epochs=1, callbacks=[cb], accumulate_grad_batches=2, logger=CSVLogger(tmp_path), log_every_n_steps=1)
    trainer.fit(module, train_dataloaders=_loader(digits_dm, n=512, batch_size=32))
    assert trainer.global_step == 8
    assert cb.asked == list(range(8))
    assert cb.events == [3, 7]
    names = set(cb._layers)
    assert names == {"model.net.features.0", "model.net.features.3", "model.net.features.6", "model.net.features.9",
                     "model.net.features.12", "model.net.fc"}
    assert cb._layers["model.net.features.0"].state.input_shape == (1, 8, 8)
    assert cb._layers["model.net.fc"].state.input_shape == (64,)
    for truth in cb.true_after:
        assert all(v <= 1.01 for v in truth.values()), truth
    # logged through the trainer's logger (and kept in the in-memory history)
    metrics = (Path(trainer.logger.log_dir) / "metrics.csv").read_text().splitlines()[0]
    assert "spectral/model.net.fc/sigma" in metrics and "spectral/model.net.fc/clipped" in metrics
    assert "spectral/model.net.features.1/gain" in metrics  # bn="free" logs BN gains
    assert sum(1 for s, n, kind, _ in cb.history if kind == "clipped" and n == "model.net.fc") == 2


@pytest.mark.slow
def test_resume_from_epoch_checkpoint_equals_uninterrupted_run(digits_dm, tmp_path):
    def run(ckpt_path=None, epochs=2, callbacks=()):
        module = _module(digits_dm, lr=0.1, seed=1)
        cb = FastClip(max_norm=0.8, every_n_steps=4, warmup_iters=20, fresh_every=2)
        trainer = make_trainer(max_epochs=epochs, callbacks=[cb, *callbacks], enable_checkpointing=bool(callbacks), log_every_n_steps=3)
        # 6 steps per epoch: events after steps 4, 8, 12 (two after the resume, one with fresh random vectors);
        # tracking after steps 3, 6, 9
        trainer.fit(module, train_dataloaders=_loader(digits_dm, n=384, batch_size=64), ckpt_path=ckpt_path)
        return module, cb

    ckpt = ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    full, cb_full = run(callbacks=[ckpt])
    assert cb_full._events == 3
    first = tmp_path / "epoch=0.ckpt"
    assert first.exists()
    state = torch.load(first, weights_only=False)["callbacks"]
    key = cb_full.state_key
    assert "max_norm" in key and state[key]["version"] == 1 and state[key]["layers"]["model.net.fc"]["vectors"].shape == (4, 64)
    resumed, _ = run(ckpt_path=first)
    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


@pytest.mark.slow
def test_compose_bn_mode_never_writes_bn_buffers(digits_dm):
    net = build_model("small-cnn", in_channels=1, num_classes=10, mean=digits_dm.mean, std=digits_dm.std)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.0  # training itself then leaves running stats alone: any change would be ours
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.uniform_(0.01, 0.05)  # small variances: large BN gains, composite far above c
    module = _module(digits_dm, lr=0.05, net=net)
    buffers = {k: v.clone() for k, v in module.state_dict().items() if "running" in k}
    pairs = [("model.net.features.0", "model.net.features.1"), ("model.net.features.3", "model.net.features.4")]
    cb = Recording(max_norm=1.0, every_n_steps=2, warmup_iters=20, bn="compose", bn_pairs=pairs)
    make_trainer(max_epochs=1, callbacks=[cb]).fit(module, train_dataloaders=_loader(digits_dm, n=256, batch_size=64))
    assert cb.events == [1, 3]
    for truth in cb.true_after:
        assert truth["model.net.features.0+model.net.features.1"] <= 1.01
        assert truth["model.net.features.3+model.net.features.4"] <= 1.01
    assert all(torch.equal(module.state_dict()[k], v) for k, v in buffers.items())
    with pytest.raises(ValueError, match="bn='compose' needs"):
        make_trainer(max_epochs=1, callbacks=[FastClip(bn="compose")]).fit(_module(digits_dm), train_dataloaders=_loader(digits_dm, n=64))


def test_clamp_bn_mode_bounds_gains(digits_dm):
    gains_after: list[float] = []

    class Check(FastClip):
        def _clip_event(self, trainer, pl_module, step_idx):
            super()._clip_event(trainer, pl_module, step_idx)
            gains_after.append(max(float((m.weight.abs() / torch.sqrt(m.running_var + m.eps)).max()) for m in self._bn_modules.values()))

    module = _module(digits_dm, lr=0.05)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(3.0)  # gains start far above c = 1
    running = {k: v.clone() for k, v in module.state_dict().items() if "running" in k}
    cb = Check(max_norm=1.0, every_n_steps=2, warmup_iters=10, track_iters=0, bn="clamp")
    make_trainer(max_epochs=1, callbacks=[cb]).fit(module, train_dataloaders=_loader(digits_dm, n=128, batch_size=64))
    assert len(gains_after) == 1 and gains_after[0] <= 1.0 + 1e-6
    assert any(not torch.equal(module.state_dict()[k], v) for k, v in running.items())  # training moved them, not us


def test_unsupported_layers_skipped_with_note_or_raised_when_named(digits_dm, caplog):
    class WithNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.ln = nn.LayerNorm([4, 8, 8])
            self.fc = nn.Linear(4 * 64, 10)

        def forward(self, x):
            return self.fc(self.ln(self.conv(x)).flatten(1))

    class Everything(FastClip):
        def filter_modules(self, model):
            return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.LayerNorm, nn.Linear))}

    module = _module(digits_dm, net=WithNorm())
    cb = Everything(every_n_steps=1, warmup_iters=5)
    with caplog.at_level(logging.INFO, logger="lightning_unlearn.callbacks.fastclip"):
        make_trainer(max_epochs=1, callbacks=[cb]).fit(module, train_dataloaders=_loader(digits_dm, n=64))
    assert set(cb._layers) == {"model.conv", "model.fc"}
    assert any("'model.ln' (LayerNorm)" in r.getMessage() and "skipped" in r.getMessage() for r in caplog.records)
    with pytest.raises(UnsupportedLayerError, match="'model.ln' \\(LayerNorm\\)"):
        make_trainer(max_epochs=1, callbacks=[FastClip(modules=["model.conv", "model.ln"])]).fit(
            _module(digits_dm, net=WithNorm()), train_dataloaders=_loader(digits_dm, n=64)
        )
    with pytest.raises(UnsupportedLayerError, match="LayerNorm"):
        make_trainer(max_epochs=1, callbacks=[Everything(on_unsupported="raise")]).fit(
            _module(digits_dm, net=WithNorm()), train_dataloaders=_loader(digits_dm, n=64)
        )


def test_sharded_strategies_raise_a_clear_error():
    from lightning.pytorch.strategies import FSDPStrategy

    class FakeTrainer:
        strategy = FSDPStrategy()

    with pytest.raises(RuntimeError, match="strategy FSDPStrategy shards parameters; use strategy='ddp'"):
        FastClip().setup(FakeTrainer(), nn.Linear(2, 2), "fit")


def test_arguments_validated_and_state_versioned():
    with pytest.raises(ValueError, match="unknown bn mode 'hard'.*free, compose, clamp"):
        FastClip(bn="hard")
    with pytest.raises(ValueError, match="every_n_steps must be a positive int, got 0"):
        FastClip(every_n_steps=0)
    with pytest.raises(ValueError, match="max_norm must be a positive"):
        FastClip(max_norm=0.0)
    with pytest.raises(ValueError, match="headroom must be in"):
        FastClip(headroom=0.01)
    assert FastClip(tol=0.02).headroom == 0.01
    a, b = FastClip(max_norm=1.0), FastClip(max_norm=2.0)
    assert a.state_key != b.state_key
    state = a.state_dict()
    assert state["version"] == 1
    with pytest.raises(ValueError, match="version 2"):
        a.load_state_dict({**state, "version": 2})
    assert a.should_clip(99) and not a.should_clip(98)
    assert not FastClip(every_n_steps=10, warmup_steps=10).should_clip(9)


@pytest.mark.ddp
def test_ddp_ranks_bit_identical_after_clip_events(tmp_path):
    script = Path(__file__).parent / "ddp" / "fastclip_ddp.py"
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert r0["events"] == r1["events"] == 3
    assert r0["params"].keys() == r1["params"].keys() and len(r0["params"]) > 0
    assert all(torch.equal(r0["params"][k], r1["params"][k]) for k in r0["params"])
    assert all(torch.equal(r0["vectors"][k], r1["vectors"][k]) for k in r0["vectors"])
    assert max(r0["true_norms"].values()) <= 1.01
