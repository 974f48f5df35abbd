"""FastClip callback: schedule under gradient accumulation, true norms after events, resume, BN modes, errors.

Everything here goes through the public API: ``records`` (one ``ClipRecord`` per layer and event),
``layer_shapes``, ``num_events``, ``history``, ``state_dict`` and the override points.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from helpers import run_ddp_script
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from test_spectral import dense_singular_values
from torch import nn

from lightning_unlearn.callbacks import FastClip
from lightning_unlearn.models import build_model
from lightning_unlearn.spectral import ClipSettings, UnsupportedLayerError
from lightning_unlearn.training import ClassifierModule, seed_everything
from lightning_unlearn.training.fit import make_trainer


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
    """Records every should_clip call (the public override point)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked: list[int] = []

    def should_clip(self, step_idx):
        self.asked.append(step_idx)
        return super().should_clip(step_idx)


def _layer_module(pl_module, name):
    return pl_module.get_submodule(name) if "+" not in name else nn.Sequential(*(pl_module.get_submodule(n) for n in name.split("+")))


class TrueNorms(pl.Callback):
    """Listed after a FastClip: the true (dense SVD) norm of every clipped layer right after each of its events."""

    def __init__(self, fc: FastClip):
        self.fc = fc
        self.events: list[int] = []  # step_idx of each event
        self.true_after: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.fc.num_events == len(self.events):
            return
        self.events.append(self.fc.records[-1].step - 1)
        shapes = self.fc.layer_shapes
        self.true_after.append({n: float(dense_singular_values(_layer_module(pl_module, n), s)[0]) for n, s in shapes.items()})


@pytest.mark.parametrize("krylov", [False, True])
def test_clips_once_per_optimizer_step_with_accumulation_and_bounds_true_norms(digits_dm, tmp_path, krylov):
    # every layer by block Krylov, or small ones exactly
    settings = ClipSettings(dense_max_entries=0, init_depth=30) if krylov else ClipSettings(init_depth=30)
    cb = Recording(max_norm=1.0, every_n_steps=4, settings=settings)
    check = TrueNorms(cb)
    module = _module(digits_dm, lr=0.2)
    # 16 batches of 32 -> 8 optimizer steps with accumulate_grad_batches=2 -> events after steps 4 and 8
    trainer = make_trainer(max_epochs=1, callbacks=[cb, check], accumulate_grad_batches=2, logger=CSVLogger(tmp_path), log_every_n_steps=1)
    trainer.fit(module, train_dataloaders=_loader(digits_dm, n=512, batch_size=32))
    assert trainer.global_step == 8
    assert cb.asked == list(range(8))
    assert check.events == [3, 7] and cb.num_events == 2
    names = set(cb.layer_shapes)
    assert names == {"model.net.features.0", "model.net.features.3", "model.net.features.6", "model.net.features.9",
                     "model.net.features.12", "model.net.fc"}
    assert cb.layer_shapes["model.net.features.0"] == (1, 8, 8)
    assert cb.layer_shapes["model.net.fc"] == (64,)
    for truth in check.true_after:
        assert all(v <= 1.01 for v in truth.values()), truth
    # the public event record: one per layer and event, with the norms before and after
    assert len(cb.records) == 2 * len(names) and {r.event for r in cb.records} == {1, 2}
    for r in cb.records:
        assert r.step in (4, 8) and r.certified and r.seconds > 0 and r.norm_after <= 1.005 + 1e-6
        assert r.exact == (not krylov and r.layer in {"model.net.fc", "model.net.features.0", "model.net.features.9", "model.net.features.12"})
    last = {r.layer: r.norm_after for r in cb.records if r.event == 2}
    assert all(abs(last[n] - t) <= 0.01 for n, t in check.true_after[-1].items())
    # logged through the trainer's logger (and kept in the in-memory history)
    metrics = (Path(trainer.logger.log_dir) / "metrics.csv").read_text().splitlines()[0]
    assert "spectral/model.net.fc/sigma" in metrics and "spectral/model.net.fc/clipped" in metrics
    assert "spectral/model.net.features.1/gain" in metrics  # bn="free" logs BN gains
    assert sum(1 for s, n, kind, _ in cb.history if kind == "clipped" and n == "model.net.fc") == 2


@pytest.mark.slow
def test_resume_from_epoch_checkpoint_equals_uninterrupted_run(digits_dm, tmp_path):
    def run(ckpt_path=None, epochs=2, callbacks=()):
        module = _module(digits_dm, lr=0.1, seed=1)
        cb = FastClip(max_norm=0.8, every_n_steps=4, settings=ClipSettings(fresh_every=2))
        trainer = make_trainer(max_epochs=epochs, callbacks=[cb, *callbacks], enable_checkpointing=bool(callbacks), log_every_n_steps=3)
        # 6 steps per epoch: events after steps 4, 8, 12 (two after the resume, one with fresh random vectors);
        # tracking after steps 3, 6, 9
        trainer.fit(module, train_dataloaders=_loader(digits_dm, n=384, batch_size=64), ckpt_path=ckpt_path)
        return module, cb

    ckpt = ModelCheckpoint(dirpath=tmp_path, save_top_k=-1, every_n_epochs=1, filename="{epoch}")
    full, cb_full = run(callbacks=[ckpt])
    assert cb_full.num_events == 3
    first = tmp_path / "epoch=0.ckpt"
    assert first.exists()
    state = torch.load(first, weights_only=False)["callbacks"]
    key = cb_full.state_key
    assert "max_norm" in key and state[key]["version"] == 1 and state[key]["layers"]["model.net.fc"]["vectors"].shape == (4, 64)
    resumed, cb_resumed = run(ckpt_path=first)
    assert cb_resumed.num_events == 3 and [r.event for r in cb_resumed.records][:1] == [2]
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
    cb = FastClip(max_norm=1.0, every_n_steps=2, bn="compose", bn_pairs=pairs)
    check = TrueNorms(cb)
    make_trainer(max_epochs=1, callbacks=[cb, check]).fit(module, train_dataloaders=_loader(digits_dm, n=256, batch_size=64))
    assert check.events == [1, 3]
    for truth in check.true_after:
        assert truth["model.net.features.0+model.net.features.1"] <= 1.01
        assert truth["model.net.features.3+model.net.features.4"] <= 1.01
    assert all(torch.equal(module.state_dict()[k], v) for k, v in buffers.items())
    with pytest.raises(ValueError, match="bn='compose' needs"):
        make_trainer(max_epochs=1, callbacks=[FastClip(bn="compose")]).fit(_module(digits_dm), train_dataloaders=_loader(digits_dm, n=64))


def test_clamp_bn_mode_bounds_gains(digits_dm):
    gains_after: list[float] = []

    class Check(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if cb.num_events > len(gains_after):
                bns = [m for m in pl_module.modules() if isinstance(m, nn.BatchNorm2d)]
                gains_after.append(max(float((m.weight.detach().abs() / torch.sqrt(m.running_var + m.eps)).max()) for m in bns))

    module = _module(digits_dm, lr=0.05)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(3.0)  # gains start far above c = 1
    running = {k: v.clone() for k, v in module.state_dict().items() if "running" in k}
    cb = FastClip(max_norm=1.0, every_n_steps=2, bn="clamp", settings=ClipSettings(init_depth=10, track_iters=0))
    make_trainer(max_epochs=1, callbacks=[cb, Check()]).fit(module, train_dataloaders=_loader(digits_dm, n=128, batch_size=64))
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
    cb = Everything(every_n_steps=1, settings=ClipSettings(init_depth=5))
    with caplog.at_level(logging.WARNING, logger="lightning_unlearn.callbacks.fastclip"):
        make_trainer(max_epochs=1, callbacks=[cb]).fit(module, train_dataloaders=_loader(digits_dm, n=64))
    assert set(cb.layer_shapes) == {"model.conv", "model.fc"}
    assert any("'model.ln' skipped" in r.getMessage() and "LayerNorm" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)
    with pytest.raises(UnsupportedLayerError, match="'model.ln' \\(LayerNorm\\)"):
        make_trainer(max_epochs=1, callbacks=[FastClip(include=["model.conv", "model.ln"])]).fit(
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
    with pytest.raises(ValueError, match="warmup_steps must be a non-negative int, got -1"):
        FastClip(warmup_steps=-1)
    with pytest.raises(ValueError, match="max_norm must be a positive"):
        FastClip(max_norm=0.0)
    with pytest.raises(ValueError, match="on_unsupported must be 'raise' or 'skip', got 'warn'"):
        FastClip(on_unsupported="warn")
    with pytest.raises(TypeError, match="exclude must be a sequence of module names, got 'model.fc'"):
        FastClip(exclude="model.fc")
    with pytest.raises(TypeError, match="settings must be a ClipSettings"):
        FastClip(settings={"k": 2})
    # solver knobs live in ClipSettings only: the former keyword arguments are gone
    for knob in ("k", "tol", "two_sided", "est_depth", "cert_depth", "max_steps", "headroom", "warmup_iters", "track_iters",
                 "fresh_every", "certify_every", "modules"):
        with pytest.raises(TypeError, match=f"unexpected keyword argument '{knob}'"):
            FastClip(**{knob: 1})
    settings = ClipSettings(k=2, cert_depth=20, tol=0.02, certify_every=3)
    assert FastClip(settings=settings).settings is settings and FastClip().settings == ClipSettings()
    a, b = FastClip(max_norm=1.0), FastClip(max_norm=2.0)
    assert a.state_key != b.state_key
    state = a.state_dict()
    assert state["version"] == 1
    with pytest.raises(ValueError, match="version 2"):
        a.load_state_dict({**state, "version": 2})
    # a checkpoint of the earlier, wider FastClip: the same key and the same version-1 state
    assert a.state_key == "FastClip{'max_norm': 1.0}"
    old = {"version": 1, "last_step": 8, "events": 2, "rng_state": torch.Generator().manual_seed(5).get_state(),
           "layers": {"model.net.fc": {"input_shape": [64], "vectors": torch.ones(4, 64), "sigma": torch.ones(4), "fallbacks": 1}}}
    a.load_state_dict(old)
    again = a.state_dict()
    assert again["events"] == 2 and again["last_step"] == 8 and torch.equal(again["rng_state"], old["rng_state"])
    assert again["layers"]["model.net.fc"]["input_shape"] == [64] and torch.equal(again["layers"]["model.net.fc"]["vectors"], torch.ones(4, 64))
    assert a.should_clip(99) and not a.should_clip(98)
    assert not FastClip(every_n_steps=10, warmup_steps=10).should_clip(9)


@pytest.mark.ddp
def test_ddp_ranks_bit_identical_after_clip_events(tmp_path):
    run_ddp_script("fastclip_ddp.py", tmp_path)
    r0, r1 = torch.load(tmp_path / "rank0.pt", weights_only=False), torch.load(tmp_path / "rank1.pt", weights_only=False)
    assert r0["events"] == r1["events"] == 3
    assert r0["params"].keys() == r1["params"].keys() and len(r0["params"]) > 0
    assert all(torch.equal(r0["params"][k], r1["params"][k]) for k in r0["params"])
    assert all(torch.equal(r0["vectors"][k], r1["vectors"][k]) for k in r0["vectors"])
    assert max(r0["true_norms"].values()) <= 1.01
    # rank 0's logged numbers on both ranks: the same records (up to the wall time) and monitored values
    strip = [[{k: v for k, v in r.items() if k != "seconds"} for r in rank["records"]] for rank in (r0, r1)]
    assert len(strip[0]) == 3 * len(r0["vectors"]) and strip[0] == strip[1]
    assert r0["monitored"] == r1["monitored"] and "spectral/model.net.fc/sigma" in r0["monitored"]
    # rank 0 reads the host once per event: the packed buffer carries the weights and the logged numbers
    # (the other ranks wait on the pickled broadcast itself, as torch's broadcast_object_list does)
    assert r0["host_reads"] == [1, 1, 1]


class WithOddModules(nn.Module):
    """A conv net with a custom module holding a ``weight``, an LSTM and a Linear subclass that triples its output."""

    class Gain(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.tensor(2.0))

        def forward(self, x):
            return self.weight * x

    class Tripled(nn.Linear):
        def forward(self, x):
            return 3 * super().forward(x)

    def __init__(self, *, lstm: bool = True, tripled: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.gain = self.Gain()
        self.lstm = nn.LSTM(4, 4, batch_first=True) if lstm else None
        self.fc = (self.Tripled if tripled else nn.Linear)(4 * 64, 10)

    def forward(self, x):
        h = self.gain(self.conv(x))
        if self.lstm is not None:
            b = h.shape[0]
            h = self.lstm(h.flatten(2).transpose(1, 2))[0].transpose(1, 2).reshape(b, 4, 8, 8)
        return self.fc(h.flatten(1))


def test_every_module_with_weights_it_cannot_clip_raises_or_is_skipped_once(digits_dm, caplog):
    with caplog.at_level(logging.WARNING, logger="lightning_unlearn.callbacks.fastclip"):
        cb = FastClip(every_n_steps=1, settings=ClipSettings(init_depth=5))
        trainer = make_trainer(max_epochs=2, callbacks=[cb])
        trainer.fit(_module(digits_dm, net=WithOddModules()), train_dataloaders=_loader(digits_dm, n=64))
    assert set(cb.layer_shapes) == {"model.conv"}
    notes = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage() and r.levelno == logging.WARNING]
    for name, what in (("model.gain", "Gain"), ("model.lstm", "LSTM"), ("model.fc", "overrides forward")):
        hits = [m for m in notes if f"{name!r} skipped" in m]
        assert len(hits) == 1 and what in hits[0], (name, notes)  # once, although setup ran for a fit of two epochs
    for net, match in (
        (WithOddModules(lstm=False, tripled=False), "'model.gain' \\(Gain\\) is not a supported"),
        (WithOddModules(tripled=False), "'model.gain'|'model.lstm'"),
        (WithOddModules(lstm=False), "'model.gain'|overrides forward"),
    ):
        with pytest.raises(UnsupportedLayerError, match=match):
            trainer = make_trainer(max_epochs=1, callbacks=[FastClip(on_unsupported="raise")])
            trainer.fit(_module(digits_dm, net=net), train_dataloaders=_loader(digits_dm, n=64))


def test_weight_norm_layers_are_clipped_through_their_parametrization(digits_dm):
    from torch.nn.utils import parametrizations

    net = nn.Sequential(nn.Flatten(), parametrizations.weight_norm(nn.Linear(64, 32)), nn.ReLU(), nn.Linear(32, 10))
    with torch.no_grad():
        net[1].parametrizations.weight.original0.mul_(5.0)
    module = _module(digits_dm, lr=0.1, net=net)
    cb = FastClip(max_norm=1.0, every_n_steps=2)
    check = TrueNorms(cb)
    make_trainer(max_epochs=1, callbacks=[cb, check]).fit(module, train_dataloaders=_loader(digits_dm, n=256))
    assert "model.1" in cb.layer_shapes and check.events
    for truth in check.true_after:
        assert truth["model.1"] <= 1.01, truth
    assert {r.layer for r in cb.records} == {"model.1", "model.3"}


def test_certify_every_marks_which_events_are_certified(digits_dm):
    cb = FastClip(max_norm=1.0, every_n_steps=1, settings=ClipSettings(certify_every=3, init_depth=10))
    check = TrueNorms(cb)
    make_trainer(max_epochs=1, callbacks=[cb, check]).fit(_module(digits_dm, lr=0.05), train_dataloaders=_loader(digits_dm, n=448))
    certified = {r.event: r.certified for r in cb.records if not r.exact}
    assert [certified[e] for e in sorted(certified)] == [e % 3 == 1 for e in sorted(certified)]
    assert all(r.certified for r in cb.records if r.exact)  # exactly solved layers are always exact
    for event, truth in enumerate(check.true_after, start=1):
        if event % 3 == 1:
            assert all(v <= 1.01 for v in truth.values()), (event, truth)


def test_history_keeps_the_pipeline_format(digits_dm):
    # (step, layer, kind, value) tuples; kind "sigma" at tracking steps and events, "clipped" at events
    cb = FastClip(max_norm=1.0, every_n_steps=3)
    make_trainer(max_epochs=1, callbacks=[cb], log_every_n_steps=2).fit(_module(digits_dm), train_dataloaders=_loader(digits_dm, n=384))
    kinds = {(s, kind) for s, layer, kind, _ in cb.history if layer == "model.net.fc"}
    assert {(3, "sigma"), (3, "clipped"), (2, "sigma"), (4, "sigma"), (6, "clipped")} <= kinds
    assert all(isinstance(v, float) for *_, v in cb.history)


def test_norms_reach_callback_metrics_and_a_checkpoint_can_monitor_them(digits_dm, tmp_path):
    # 6 optimizer steps: events after steps 2, 4 and 6, tracking at the logging cadence (after step 3; 6 is an event)
    cb = FastClip(max_norm=1.0, every_n_steps=2)
    key = "spectral/model.net.features.0/sigma"
    ckpt = ModelCheckpoint(dirpath=tmp_path, monitor=key, mode="min", save_top_k=1, every_n_train_steps=1)
    trainer = make_trainer(max_epochs=1, callbacks=[cb, ckpt], enable_checkpointing=True, log_every_n_steps=3)
    trainer.fit(_module(digits_dm, lr=0.2), train_dataloaders=_loader(digits_dm, n=384))
    sigma = [(step, v) for step, layer, kind, v in cb.history if layer == "model.net.features.0" and kind == "sigma"]
    assert [s for s, _ in sigma] == [2, 3, 4, 6]  # events after steps 2, 4, 6; tracking after step 3
    # the last logged value of every spectral key is in callback_metrics (a CPU float64 tensor: no device round trip)
    last = {f"spectral/{layer}/{kind}": v for _, layer, kind, v in cb.history}
    got = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("spectral/")}
    assert got.keys() == last.keys() and all(float(got[k]) == last[k] and got[k].dtype == torch.float64 for k in got)
    # the checkpoint saw the value of every step the layer was logged at, and kept the smallest
    # (checked after each step; between two logged steps the monitored value is the last one logged)
    assert float(ckpt.best_model_score) == min(v for _, v in sigma)
    assert Path(ckpt.best_model_path).exists()


def test_exclude_leaves_layers_out_silently_and_names_must_exist(digits_dm, caplog):
    with caplog.at_level(logging.WARNING, logger="lightning_unlearn.callbacks.fastclip"):
        cb = FastClip(every_n_steps=1, exclude=["model.gain", "model.lstm", "model.fc"])
        make_trainer(max_epochs=1, callbacks=[cb]).fit(_module(digits_dm, net=WithOddModules()), train_dataloaders=_loader(digits_dm, n=64))
    assert set(cb.layer_shapes) == {"model.conv"} and {r.layer for r in cb.records} == {"model.conv"}
    assert not [r for r in caplog.records if "skipped" in r.getMessage()]  # excluded layers are not warned about
    # a name excludes the module and everything under it (here the whole small CNN but its head)
    cb = FastClip(every_n_steps=2, exclude=["model.net.features"])
    make_trainer(max_epochs=1, callbacks=[cb]).fit(_module(digits_dm), train_dataloaders=_loader(digits_dm, n=128))
    assert set(cb.layer_shapes) == {"model.net.fc"} and not [n for n in cb.history if n[2] == "gain"]
    with pytest.raises(ValueError, match="exclude=...\\): no module 'model.net.fcc' in ClassifierModule"):
        make_trainer(max_epochs=1, callbacks=[FastClip(exclude=["model.net.fcc"])]).fit(_module(digits_dm), train_dataloaders=_loader(digits_dm, n=64))


def test_the_schedule_is_stated_once_at_fit_start():
    cb = FastClip()
    cb._track_every = 50
    assert cb._schedule_line() == (
        "FastClip: 0 layers clipped to max_norm=1 after every 100 optimizer steps (the first after step 100), "
        "every event certified (bound max_norm * 1.01); norms tracked every 50 steps"
    )
    cb = FastClip(max_norm=2.0, every_n_steps=10, warmup_steps=25, settings=ClipSettings(certify_every=5, track_iters=0))
    assert cb._schedule_line() == (
        "FastClip: 0 layers clipped to max_norm=2 after every 10 optimizer steps (the first after step 30), "
        "one event in 5 certified (bound max_norm * 1.01); no tracking between events"
    )
    assert not cb.should_clip(19) and cb.should_clip(29)  # the line's "first after step 30" is should_clip's


def test_packed_event_results_unpack_bit_for_bit():
    from lightning_unlearn.callbacks.fastclip_sync import pack, unpack_

    g = torch.Generator().manual_seed(0)
    src = [
        torch.randn(3, 8, dtype=torch.float64, generator=g),
        torch.randn(5, 4, generator=g).T,  # not contiguous
        torch.randn(7, generator=g).to(torch.bfloat16),
        torch.tensor([-0.0, float("nan"), float("inf")], dtype=torch.float16),
        torch.randn(2, 3, 3, generator=g),
    ]
    flat = pack(src)
    assert flat.dtype == torch.uint8 and flat.numel() == sum(t.numel() * t.element_size() for t in src)
    dst = [torch.zeros_like(t) for t in src]
    unpack_(flat, dst)
    for a, b in zip(src, dst):  # the same bits (NaN and the sign of zero included)
        assert torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))
    prefix = torch.zeros(3, 8, dtype=torch.float64)
    unpack_(flat, [prefix])  # a prefix of the packed tensors
    assert torch.equal(prefix, src[0])
    with pytest.raises(ValueError, match="packed buffer of 24 bytes, but the tensors need 192"):
        unpack_(flat[:24], [prefix])
