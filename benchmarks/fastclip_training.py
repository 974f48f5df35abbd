"""FastClip training overhead, true norms after events, and host reads per event.

Claims checked (ratios measured in one process, one torch thread; timings never go in tests):

- ``highlr``: a 4-layer net (two convs, a 256->64 and a 64->10 linear) on 8x8 digits, SGD lr 0.3
  momentum 0.9, ``FastClip(max_norm=1.0, every_n_steps=4)``, 96 steps: fit time at most 2x plain.
- ``cifar``: SmallCNN on a 5k CIFAR-10 subset, batch 64, the library's defaults: at most 1.05x plain
  per step at ``every_n_steps=100`` (the default) and at most 1.30x at 10; with ``--check-events`` the
  true norm of every layer right after every event is at most 1.01 c (untimed runs), also for the
  faster ``certify_every`` mode.
- ``reads``: host reads per clip event (``HostReadCounter`` over the callback's hook, on CPU) at
  most 4 on the 4-layer net and on ResNet-18 at 32x32.
- ``--gpu``: ResNet-18 on the full CIFAR-10 training set, bf16-mixed, batch 128..512, every 100
  steps: step time with and without FastClip (target at most 1.10x), the per-event milliseconds
  with the card's name, and the host reads per event on the device.

Plain and clipped runs alternate (plain, clipped, plain, ...) after an untimed warm-up run, so that a
drifting machine load hits both; every ratio is clipped over the mean of the plain runs around it.
The same-run overhead (the callback's time over the rest of the same run) does not depend on how
the load drifts between runs; CPU time (``time.process_time``) is reported beside wall time.

Run (CPU, about 25 minutes on a shared 2-core machine)::

    OMP_NUM_THREADS=1 nice -n 10 env PYTHONPATH=. python benchmarks/fastclip_training.py --threads 1 \\
        --data "$LIGHTNING_UNLEARN_DATA/cifar10" --check-events 400

GPU (ResNet-18, full CIFAR-10; bring the ImageFolder tree to the GPU machine as one packed file
and unpack it there, e.g. into the ignored ``.device-data/``)::

    PYTHONPATH=. python benchmarks/fastclip_training.py --gpu --data .device-data/cifar10

Writes ``benchmarks/results/fastclip_training.{json,md}`` (``fastclip_training_gpu.{json,md}`` with ``--gpu``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn

from lightning_unlearn.callbacks import FastClip
from lightning_unlearn.data import UnlearningDataModule
from lightning_unlearn.environment import device_name
from lightning_unlearn.inference import accuracy, predict_logits
from lightning_unlearn.models import build_model
from lightning_unlearn.spectral import ClipSettings, singular_values
from lightning_unlearn.spectral.host_reads import HostReadCounter
from lightning_unlearn.training import ClassifierModule, seed_everything
from lightning_unlearn.training.fit import make_trainer


# ----------------------------------------------------------------------------- instruments
class StepTimer(pl.Callback):
    """Wall time between consecutive ``on_train_batch_start`` calls (a whole step, callbacks included)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._t: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        if self._t is not None:
            self.times.append(now - self._t)
        self._t = now

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._t = None  # do not count the epoch boundary

    def mean(self, skip: int = 5) -> float:
        t = self.times[skip:] or self.times
        return sum(t) / len(t)


class TimedFastClip(FastClip):
    """FastClip that accumulates the wall and CPU time spent in its own hook (tracking and clip events).

    CPU time (``time.process_time``) counts only this process's work: on a shared machine it does
    not grow when other processes take the cores, so its ratios are the stable ones.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hook_s = 0.0
        self.hook_cpu_s = 0.0
        self.event_cpu_s: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        cuda = pl_module.device.type == "cuda"
        if cuda:  # queued training kernels are not the callback's time
            torch.cuda.synchronize()
        t, c, before = time.perf_counter(), time.process_time(), self.num_events
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if cuda:
            torch.cuda.synchronize()
        self.hook_s += time.perf_counter() - t
        self.hook_cpu_s += time.process_time() - c
        if self.num_events > before:
            self.event_cpu_s.append(time.process_time() - c)


class CountingFastClip(FastClip):
    """FastClip whose hook runs under a ``HostReadCounter``; keeps the counts of the calls that ran an event."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.counts: list[dict] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        before = self.num_events
        with HostReadCounter() as c:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.num_events > before:
            self.counts.append({"reads": c.reads, "ops": c.ops, "lapack_calls": c.lapack_calls, "by_op": dict(c.by_op)})


class EventChecker(pl.Callback):
    """Listed after a FastClip: measures every clipped layer's true norm right after each of its events.

    Truth: :func:`singular_values` with ``method="auto"`` (exact eigendecomposition for small
    layers, else restarted block Krylov to residual ``1e-5`` from a seeded random start of 12
    vectors, independent of the callback's warm vectors). Validation only: never timed.
    """

    def __init__(self, fc: FastClip) -> None:
        self.fc = fc
        self.seen = 0
        self.events: list[dict] = []  # per event: step, certified (all layers), worst layer and its true norm / c

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.fc.num_events == self.seen:
            return
        self.seen = self.fc.num_events
        recs = [r for r in self.fc.records if r.event == self.seen]
        vals = {}
        for name, shape in self.fc.layer_shapes.items():
            if shape is None:
                continue
            module = pl_module.get_submodule(name) if "+" not in name else nn.Sequential(*(pl_module.get_submodule(n) for n in name.split("+")))
            vals[name] = float(singular_values(module, shape, k=1, rtol=1e-5, block_size=12, generator=torch.Generator().manual_seed(1234))[0])
        worst = max(vals, key=vals.get)
        self.events.append({"step": recs[0].step, "certified": all(r.certified for r in recs), "layer": worst,
                            "true_over_c": vals[worst] / self.fc.max_norm})


# ----------------------------------------------------------------------------- models
def highlr_net() -> nn.Module:
    """The 4-layer net of the high-learning-rate case: conv 1->8, conv 8->16 stride 2, linear 256->64, linear 64->10."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def _fit(module, loader, callbacks, *, epochs=10**6, max_steps=-1, accelerator="cpu", precision=None, log_every=50):
    """Fit; returns ``(trainer, wall seconds)`` and sets ``trainer.cpu_seconds`` (this process's CPU time)."""
    kw = {"precision": precision} if precision else {}
    trainer = make_trainer(max_epochs=epochs, max_steps=max_steps, callbacks=callbacks, accelerator=accelerator, devices=1,
                           log_every_n_steps=log_every, **kw)
    t0, c0 = time.perf_counter(), time.process_time()
    trainer.fit(module, train_dataloaders=loader)
    trainer.cpu_seconds = time.process_time() - c0
    return trainer, time.perf_counter() - t0


# ----------------------------------------------------------------------------- cases
def run_highlr(repeats: int, steps: int, every: int) -> dict:
    dm = UnlearningDataModule("digits", seed=0, batch_size=64)
    dm.setup()

    def one(clip: bool, check: bool = False):
        seed_everything(0)
        module = ClassifierModule(highlr_net(), num_classes=10, lr=0.3, momentum=0.9, schedule="constant")
        cbs: list = []
        fc = None
        if clip:
            fc = FastClip(max_norm=1.0, every_n_steps=every)
            cbs = [fc] + ([EventChecker(fc)] if check else [])
        loader = dm.make_loader(dm.train_set(), shuffle=True, batch_size=64)
        trainer, wall = _fit(module, loader, cbs, max_steps=steps)
        return wall, trainer.cpu_seconds, fc, cbs

    one(False)  # warm-up: imports, allocator, first-call overheads
    plain, clipped, plain_cpu, clipped_cpu = [], [], [], []
    fc = None
    for _ in range(repeats):
        w, c, _, _ = one(False)
        plain.append(w)
        plain_cpu.append(c)
        w, c, fc, _ = one(True)
        clipped.append(w)
        clipped_cpu.append(c)
    w, c, _, _ = one(False)
    plain.append(w)
    plain_cpu.append(c)
    _, _, fc_chk, cbs = one(True, check=True)
    chk = cbs[1].events
    recs = fc.records
    out = {
        "steps": steps, "every_n_steps": every, "repeats": repeats,
        "plain_s": plain, "clipped_s": clipped, "plain_cpu_s": plain_cpu, "clipped_cpu_s": clipped_cpu,
        "ratio_median": statistics.median(clipped) / statistics.median(plain),
        "ratio_cpu_median": statistics.median(clipped_cpu) / statistics.median(plain_cpu),
        "events": fc.num_events,
        "event_ms_median": 1e3 * statistics.median(sorted({r.event: r.seconds for r in recs}.values())),
        "exact_layers": sorted({r.layer for r in recs if r.exact}),
        "prescaled": sum(r.prescaled for r in recs), "fallbacks": sum(r.fallback for r in recs),
        "gn_steps_mean": sum(r.steps for r in recs) / max(1, len(recs)),
        "rescale_median": statistics.median([r.scale for r in recs if r.scale < 1] or [1.0]),
        "max_true_over_c": max(e["true_over_c"] for e in chk),
        "checked_events": len(chk),
    }
    print("highlr", {k: v for k, v in out.items() if not k.endswith("_s")}, flush=True)
    return out


def run_cifar(root: str, *, max_train: int, epochs: int, repeats: int, lr: float, check_steps: int, batch_size: int) -> dict:
    dm = UnlearningDataModule(root, seed=0, max_train=max_train, max_test=2000, batch_size=batch_size)
    dm.setup()

    def one(every: int | None, *, max_steps: int = -1, ep: int = epochs, check: bool = False, certify_every: int = 1):
        seed_everything(0)
        net = build_model("small-cnn", in_channels=dm.image_shape[0], num_classes=dm.num_classes, mean=dm.mean, std=dm.std)
        module = ClassifierModule(net, num_classes=dm.num_classes, lr=lr, schedule="onecycle", augmentation=dm.augmentation, aug_seed=0)
        timer = StepTimer()
        cbs: list = [timer]
        fc = None
        if every is not None:
            fc = TimedFastClip(max_norm=1.0, every_n_steps=every, settings=ClipSettings(certify_every=certify_every))
            cbs = [fc] + ([EventChecker(fc)] if check else []) + cbs
        loader = dm.make_loader(dm.train_set(), shuffle=True, batch_size=batch_size, seed_offset=0)
        trainer, wall = _fit(module, loader, cbs, epochs=ep, max_steps=max_steps)
        row = {"every_n_steps": every, "certify_every": certify_every, "steps": trainer.global_step, "wall_s": wall,
               "cpu_s": trainer.cpu_seconds, "step_ms": 1e3 * timer.mean()}
        if fc is not None:
            recs = fc.records
            ev = {r.event: r.seconds for r in recs}
            row.update(events=fc.num_events, callback_s=fc.hook_s, callback_cpu_s=fc.hook_cpu_s,
                       same_run_overhead=fc.hook_s / max(1e-9, wall - fc.hook_s),
                       same_run_overhead_cpu=fc.hook_cpu_s / max(1e-9, trainer.cpu_seconds - fc.hook_cpu_s),
                       event_ms=[round(1e3 * v, 1) for v in ev.values()], event_cpu_ms=[round(1e3 * v, 1) for v in fc.event_cpu_s],
                       fallbacks=sum(r.fallback for r in recs), prescaled=sum(r.prescaled for r in recs),
                       rescale_median=statistics.median([r.scale for r in recs if r.scale < 1] or [1.0]),
                       uncertified_events=len({r.event for r in recs if not r.certified}))
            if check:
                row["checks"] = cbs[1].events
        if max_steps < 0 and not check:
            module.eval()
            logits, y, _ = predict_logits(module, dm.test_set())
            row["test_acc"] = accuracy(logits, y)
        print("cifar", {k: v for k, v in row.items() if k not in ("checks", "event_ms", "event_cpu_ms")}, flush=True)
        return row

    one(None, max_steps=40)  # warm-up (imports, first-call overheads, data decoding caches): not a timed run
    rows = []
    for _ in range(repeats):
        for every in (None, 100, 10):
            rows.append(one(every))
    rows.append(one(None))
    plain = [r["step_ms"] for r in rows if r["every_n_steps"] is None]
    base = statistics.mean(plain)
    base_cpu = statistics.mean(r["cpu_s"] / r["steps"] for r in rows if r["every_n_steps"] is None)
    for r in rows:
        r["ratio_vs_plain"] = r["step_ms"] / base
        r["ratio_cpu_vs_plain"] = r["cpu_s"] / r["steps"] / base_cpu
    out = {"max_train": max_train, "epochs": epochs, "batch_size": batch_size, "lr": lr, "plain_step_ms_mean": base,
           "plain_step_cpu_ms_mean": 1e3 * base_cpu, "rows": rows}
    summary = {}
    for every in (100, 10):
        rs = [r for r in rows if r["every_n_steps"] == every]
        summary[every] = {"ratio_median": statistics.median(r["ratio_vs_plain"] for r in rs),
                          "ratio_cpu_median": statistics.median(r["ratio_cpu_vs_plain"] for r in rs),
                          "same_run_overhead_median": statistics.median(r["same_run_overhead"] for r in rs),
                          "same_run_overhead_cpu_median": statistics.median(r["same_run_overhead_cpu"] for r in rs)}
    out["summary"] = summary
    if check_steps:
        checks = {}
        for every, cert in ((100, 1), (10, 1), (10, 5)):
            r = one(every, max_steps=check_steps, ep=10**6, check=True, certify_every=cert)
            evs = r["checks"]
            checks[f"every {every}, certify_every {cert}"] = {
                "steps": r["steps"], "events": len(evs),
                "max_certified": max((e["true_over_c"] for e in evs if e["certified"]), default=float("nan")),
                "max_uncertified": max((e["true_over_c"] for e in evs if not e["certified"]), default=float("nan")),
                "per_event": [(e["step"], e["certified"], round(e["true_over_c"], 4)) for e in evs],
            }
            print("check", every, cert, {k: v for k, v in checks[f"every {every}, certify_every {cert}"].items() if k != "per_event"}, flush=True)
        out["event_checks"] = checks
    return out


def run_reads() -> dict:
    """Host reads, ops and LAPACK calls per event (``HostReadCounter``, CPU) on the 4-layer net and ResNet-18 at 32x32."""
    out = {}
    dm = UnlearningDataModule("digits", seed=0, batch_size=64)
    dm.setup()
    seed_everything(0)
    cb = CountingFastClip(max_norm=1.0, every_n_steps=4)
    module = ClassifierModule(highlr_net(), num_classes=10, lr=0.3, momentum=0.9, schedule="constant")
    _fit(module, dm.make_loader(dm.train_set(), shuffle=True, batch_size=64), [cb], max_steps=24)
    out["highlr_4layer"] = cb.counts
    seed_everything(0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (64,), generator=g)
    ds = torch.utils.data.TensorDataset(x, y, torch.arange(64))
    net = build_model("resnet18", in_channels=3, num_classes=10, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    module = ClassifierModule(net, num_classes=10, lr=0.1, schedule="constant")
    cb = CountingFastClip(max_norm=1.0, every_n_steps=2)
    _fit(module, torch.utils.data.DataLoader(ds, batch_size=16), [cb], max_steps=4)
    out["resnet18_32x32"] = cb.counts
    for k, v in out.items():
        print("reads", k, [(c["reads"], c["ops"], c["lapack_calls"]) for c in v], flush=True)
    return out


def run_gpu(root: str, batch_sizes: list[int], epochs: int, every: int, *, accelerator: str = "gpu", max_train: int | None = None) -> dict:
    """ResNet-18 on the full CIFAR-10 training set, bf16-mixed, channels-last, data kept on the GPU.

    For each batch size: plain, FastClip(every), plain again; the first epoch (cuDNN autotuning,
    FastClip's cold first event) is excluded from the step times. Then one short counted run:
    host reads per event on the GPU itself. ``accelerator="cpu"`` (with a small ``max_train``) runs
    the same code on a CPU as a smoke test.
    """
    from lightning_unlearn.data import DeviceTensorLoader

    torch.backends.cudnn.benchmark = True
    device = "cuda" if accelerator == "gpu" else "cpu"
    dm = UnlearningDataModule(root, seed=0, batch_size=batch_sizes[0], max_train=max_train)
    dm.setup()
    rows = []
    for bs in batch_sizes:
        for every_n in (None, every, None):
            seed_everything(0)
            net = build_model("resnet18", in_channels=3, num_classes=10, mean=dm.mean, std=dm.std).to(memory_format=torch.channels_last)
            module = ClassifierModule(net, num_classes=10, lr=0.1 * bs / 128, schedule="onecycle", augmentation=dm.augmentation, aug_seed=0)
            timer = StepTimer()
            cbs: list = [timer]
            fc = None
            if every_n:
                fc = TimedFastClip(max_norm=1.0, every_n_steps=every_n)
                cbs.insert(0, fc)
            loader = DeviceTensorLoader(dm.train_set(), batch_size=bs, device=device, shuffle=True)
            trainer, wall = _fit(module, loader, cbs, epochs=1 + epochs, accelerator=accelerator, precision="bf16-mixed")
            per_epoch = len(loader)
            times = timer.times[per_epoch:]  # after the first epoch
            row = {"batch_size": bs, "every_n_steps": every_n, "steps": trainer.global_step, "wall_s": wall,
                   "step_ms": 1e3 * statistics.mean(times) if times else float("nan")}
            if fc is not None:
                ev = {r.event: r.seconds for r in fc.records}
                later = list(ev.values())[1:]
                row.update(events=fc.num_events, event_ms=[round(1e3 * v, 1) for v in ev.values()],
                           later_event_ms_median=1e3 * statistics.median(later) if later else float("nan"),
                           same_run_overhead=fc.hook_s / max(1e-9, wall - fc.hook_s),
                           fallbacks=sum(r.fallback for r in fc.records))
            rows.append(row)
            print("gpu", {k: v for k, v in row.items() if k != "event_ms"}, flush=True)
    for bs in batch_sizes:
        rs = [r for r in rows if r["batch_size"] == bs]
        base = statistics.mean(r["step_ms"] for r in rs if r["every_n_steps"] is None)
        for r in rs:
            r["ratio_vs_plain"] = r["step_ms"] / base
    # host reads per event on the device (a copy to the CPU is visible as such here)
    seed_everything(0)
    net = build_model("resnet18", in_channels=3, num_classes=10, mean=dm.mean, std=dm.std).to(memory_format=torch.channels_last)
    module = ClassifierModule(net, num_classes=10, lr=0.1, schedule="constant")
    cb = CountingFastClip(max_norm=1.0, every_n_steps=5)
    loader = DeviceTensorLoader(dm.train_set(), batch_size=batch_sizes[0], device=device, shuffle=True)
    _fit(module, loader, [cb], max_steps=10, accelerator=accelerator, precision="bf16-mixed")
    return {"rows": rows, "device": device_name(accelerator), "reads": cb.counts}


# ----------------------------------------------------------------------------- report
def _markdown(meta: dict, res: dict) -> str:
    lines = ["# FastClip training overhead", "", *(f"- {k}: {v}" for k, v in meta.items()), ""]
    if "highlr" in res:
        h = res["highlr"]
        lines += [f"## High learning rate, 4-layer net (digits 8x8, SGD lr 0.3 momentum 0.9, every {h['every_n_steps']} steps, {h['steps']} steps)", "",
                  f"- fit seconds, plain: {', '.join(f'{v:.2f}' for v in h['plain_s'])}",
                  f"- fit seconds, FastClip: {', '.join(f'{v:.2f}' for v in h['clipped_s'])}",
                  f"- fit CPU seconds, plain: {', '.join(f'{v:.2f}' for v in h['plain_cpu_s'])}; FastClip: {', '.join(f'{v:.2f}' for v in h['clipped_cpu_s'])}",
                  f"- **ratio of medians: {h['ratio_median']:.2f}x wall, {h['ratio_cpu_median']:.2f}x CPU time** (target at most 2x); "
                  f"{h['events']} events, median event {h['event_ms_median']:.1f} ms",
                  f"- exactly solved layers: {', '.join(h['exact_layers'])}; prescales {h['prescaled']}, fallbacks {h['fallbacks']}, "
                  f"Gauss-Newton steps per layer-event {h['gn_steps_mean']:.2f}, median kernel rescale when rescaled {h['rescale_median']:.3f}",
                  f"- max true norm right after an event: {h['max_true_over_c']:.4f} c over {h['checked_events']} events (bound 1.01)", ""]
    if "cifar" in res:
        c = res["cifar"]
        lines += [f"## CIFAR-10 {c['max_train']} SmallCNN, batch {c['batch_size']}, {c['epochs']} epochs, one-cycle lr {c['lr']} "
                  f"(plain step {c['plain_step_ms_mean']:.1f} ms wall, {c['plain_step_cpu_ms_mean']:.1f} ms CPU)", "",
                  "| run | steps | ms/step | ratio vs plain (wall) | ratio vs plain (CPU) | callback / rest of run (wall) | (CPU) | events "
                  "| median event ms (wall / CPU) | fallbacks | median rescale (rescaled layers) | test acc % |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in c["rows"]:
            label = "plain" if r["every_n_steps"] is None else f"every {r['every_n_steps']}"
            ev = f"{statistics.median(r['event_ms']):.0f} / {statistics.median(r['event_cpu_ms']):.0f}" if r.get("event_ms") else "-"
            lines.append(f"| {label} | {r['steps']} | {r['step_ms']:.1f} | {r['ratio_vs_plain']:.3f} | {r['ratio_cpu_vs_plain']:.3f} | "
                         f"{r.get('same_run_overhead', float('nan')):.3f} | {r.get('same_run_overhead_cpu', float('nan')):.3f} | {r.get('events', '-')} | "
                         f"{ev} | {r.get('fallbacks', '-')} | {r.get('rescale_median', float('nan')):.3f} | {r.get('test_acc', float('nan')):.2f} |")
        lines += [""]
        for every, s in c["summary"].items():
            lines.append(f"- **every {every}: median ratio {s['ratio_median']:.3f} wall, {s['ratio_cpu_median']:.3f} CPU time**; "
                         f"median same-run overhead {s['same_run_overhead_median']:.3f} wall, {s['same_run_overhead_cpu_median']:.3f} CPU")
        for key, chk in c.get("event_checks", {}).items():
            lines += ["", f"True norm right after every event, {key} ({chk['steps']} untimed steps, {chk['events']} events): "
                      f"max {chk['max_certified']:.4f} c on certified events (bound 1.01), max {chk['max_uncertified']:.4f} c on uncertified ones; "
                      "per event (step, certified, true/c): " + ", ".join(f"({s}, {'c' if ce else 'u'}, {v:.4f})" for s, ce, v in chk["per_event"])]
        lines.append("")
    if "reads" in res:
        lines += ["## Host reads per clip event (HostReadCounter over the callback's hook, CPU)", "",
                  "| model | events counted | host reads per event | ATen ops per event | eigh/svd calls per event |", "|---|---|---|---|---|"]
        for k, v in res["reads"].items():
            reads, ops, lapack = (", ".join(str(e[key]) for e in v) for key in ("reads", "ops", "lapack_calls"))
            lines.append(f"| {k} | {len(v)} | {reads} | {ops} | {lapack} |")
        lines.append("")
    if "gpu" in res:
        g = res["gpu"]
        lines += [f"## GPU: ResNet-18, full CIFAR-10, bf16-mixed, channels-last ({g['device']})", "",
                  "| batch | run | steps | ms/step (after epoch 1) | ratio vs plain | events | later events median ms | callback / rest of run |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in g["rows"]:
            label = "plain" if r["every_n_steps"] is None else f"every {r['every_n_steps']}"
            lines.append(f"| {r['batch_size']} | {label} | {r['steps']} | {r['step_ms']:.1f} | {r['ratio_vs_plain']:.3f} | {r.get('events', '-')} | "
                         f"{r.get('later_event_ms_median', float('nan')):.1f} | {r.get('same_run_overhead', float('nan')):.3f} |")
        lines += ["", "Host reads per event on the GPU: " + ", ".join(str(e["reads"]) for e in g["reads"]), ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--data", default=os.path.join(os.environ.get("LIGHTNING_UNLEARN_DATA", "data"), "cifar10"),
                   help="CIFAR-10 ImageFolder root (default $LIGHTNING_UNLEARN_DATA/cifar10)")
    p.add_argument("--only", default="highlr,cifar,reads", help="comma list of: highlr, cifar, reads, gpu")
    p.add_argument("--max-train", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=5, help="CIFAR epochs per timed run")
    p.add_argument("--repeats", type=int, default=2, help="alternations of plain and clipped runs")
    p.add_argument("--highlr-repeats", type=int, default=5)
    p.add_argument("--check-events", type=int, default=0, metavar="STEPS", help="untimed CIFAR runs of STEPS steps checking true norms after every event")
    p.add_argument("--gpu", action="store_true", help="run the GPU case (sets --only gpu unless given)")
    p.add_argument("--gpu-batch-sizes", default="128,512")
    p.add_argument("--gpu-epochs", type=int, default=2, help="timed epochs after the first (default 2)")
    p.add_argument("--gpu-every", type=int, default=100)
    p.add_argument("--gpu-max-train", type=int, default=None, help="training subset (default: all 50,000 images)")
    p.add_argument("--gpu-accelerator", default="gpu", help="'cpu' runs the GPU case's code on a CPU (a smoke test)")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    only = set(("gpu" if args.gpu and args.only == p.get_default("only") else args.only).split(","))
    res: dict = {}
    if "highlr" in only:
        res["highlr"] = run_highlr(args.highlr_repeats, steps=96, every=4)
    if "cifar" in only:
        res["cifar"] = run_cifar(args.data, max_train=args.max_train, epochs=args.epochs, repeats=args.repeats, lr=0.05,
                                 check_steps=args.check_events, batch_size=64)
    if "reads" in only:
        res["reads"] = run_reads()
    if "gpu" in only:
        res["gpu"] = run_gpu(args.data, [int(b) for b in args.gpu_batch_sizes.split(",")], args.gpu_epochs, args.gpu_every,
                             accelerator=args.gpu_accelerator, max_train=args.gpu_max_train)
    meta = {
        "hardware": device_name(args.gpu_accelerator if "gpu" in only else "cpu"),
        "torch": torch.__version__,
        "threads": f"torch.set_num_threads({args.threads}), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}",
        "command": "python " + " ".join(sys.argv),
        "fastclip": "library defaults (FastClip(max_norm=1.0, every_n_steps=N); ClipSettings() defaults)",
    }
    out = Path(args.out or ("benchmarks/results/fastclip_training_gpu" if only == {"gpu"} else "benchmarks/results/fastclip_training"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": res}, indent=1, default=str))
    text = _markdown(meta, res)
    out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
