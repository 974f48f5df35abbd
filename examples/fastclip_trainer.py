"""Add FastClip to an existing Lightning training script in two lines, and plot per-layer spectral norms.

What it shows
    The training script below is an ordinary Lightning loop (the library's small CNN on the
    embedded digits data). The two FastClip lines are marked ``# <-- FastClip``. Every ``EVERY``
    optimizer steps the callback clips the true operator norm of every Conv and Linear layer (at
    the layer's real input size) to ``MAX_NORM`` and certifies that it is at most
    ``MAX_NORM * 1.01`` (``ClipSettings`` holds the solver's knobs;
    ``settings=ClipSettings(certify_every=K)`` would certify only every K-th event, a faster and
    weaker mode). It logs ``spectral/<layer>/sigma`` (tracked) and ``spectral/<layer>/clipped``
    (after each event) through the trainer's loggers, where a ``CSVLogger`` collects them for
    matplotlib, and into ``trainer.callback_metrics``, where Lightning's own callbacks can monitor
    them: here an ``EarlyStopping`` stops the run if the first convolution's tracked norm ever
    exceeds ``DIVERGE`` (or is not finite) at an epoch end. Each event also leaves one
    ``ClipRecord`` per layer in ``FastClip.records`` (step, norm before and after, certified,
    whether the layer was solved exactly or rescaled, seconds).

Run::

    OMP_NUM_THREADS=1 python examples/fastclip_trainer.py            # about 12 s on a CPU
    OMP_NUM_THREADS=1 python examples/fastclip_trainer.py --tiny     # a few seconds (used by the tests)

Expected output (full run: 12 s wall on a shared 2-core machine, torch 2.14 CPU, one thread, seed 0)::

    test accuracy 96.67%
    spectral/model.net.features.0/sigma at the end: 0.998 (EarlyStopping stopped the run: False)
    33 clip events; the last, after step 330 (52 ms):
      model.net.features.0: 0.998 -> 0.998 (exact)
      model.net.features.3: 0.997 -> 0.997 (certified)
      model.net.features.6: 1.005 -> 0.996 (certified)
      model.net.features.9: 1.003 -> 1.003 (exact)
      model.net.features.12: 1.004 -> 1.004 (exact)
      model.net.fc: 1.004 -> 1.004 (exact)
    saved fastclip_norms.png

How to read it: after every event each layer's norm is at most 1.01 (a value up to 1.005 is left
alone: the clip moves only values above ``c (1 + tol/2)``); small layers are solved exactly, the
larger convolutions certified by a Krylov run. Between events SGD moves the norms up again: the
plot is a saw-tooth, whose teeth are tallest for the first convolution (up to about 9 here: the
batch norm after it makes the loss blind to its scale, so nothing holds its norm down). The model
keeps a high accuracy at ``MAX_NORM = 1`` on digits; for the cost and the accuracy on CIFAR-10 see
``benchmarks/results/fastclip_training.md``.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from collections import defaultdict
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.loggers import CSVLogger

from lightning_unlearn.callbacks import FastClip  # <-- FastClip (1/2)
from lightning_unlearn.data import UnlearningDataModule
from lightning_unlearn.inference import accuracy, predict_logits
from lightning_unlearn.models import build_model
from lightning_unlearn.training import ClassifierModule, seed_everything

# ----------------------------------------------------------------------------- settings
SEED = 0  # initialisation and data order
EPOCHS = 15  # training epochs
MAX_NORM = 1.0  # the target spectral norm c of every layer
EVERY = 10  # clip every this many optimizer steps
LR = 0.05  # one-cycle peak learning rate (SGD momentum 0.9, weight decay 5e-4)
MONITOR = "spectral/model.net.features.0/sigma"  # a layer's norm, as FastClip logs it
DIVERGE = 100.0  # EarlyStopping stops the run if that norm is above this at an epoch end


def main(tiny: bool = False, out: str | None = "fastclip_norms.png", log_dir: str | None = None) -> dict:
    """Train with FastClip, print the last event's records and plot the logged norms.

    ``tiny``: 400 training images, 3 epochs, an event every 3 steps (a few seconds). ``out``: the
    plot's path (``None``: no plot). ``log_dir``: the CSV logger's folder (default: a temporary one).
    Returns ``{"model", "fastclip", "early_stopping", "monitored", "records", "test_accuracy", "steps", "every",
    "max_norm", "plot"}`` (``monitored``: the value of ``MONITOR`` in ``trainer.callback_metrics`` at the end).
    """
    torch.set_num_threads(1)
    epochs, every, subset = (3, 3, dict(max_train=400, max_test=200)) if tiny else (EPOCHS, EVERY, {})

    # ------------------------------------------------------------------------- an existing training script
    seed_everything(SEED)
    dm = UnlearningDataModule("digits", seed=SEED, batch_size=64, **subset)
    dm.setup()
    net = build_model("small-cnn", in_channels=dm.image_shape[0], num_classes=dm.num_classes, mean=dm.mean, std=dm.std)
    model = ClassifierModule(net, num_classes=dm.num_classes, lr=LR)
    logger = CSVLogger(log_dir or tempfile.mkdtemp(prefix="fastclip-logs-"), name="fastclip")
    fastclip = FastClip(max_norm=MAX_NORM, every_n_steps=every)  # <-- FastClip (2/2)
    # the norms are in trainer.callback_metrics: any Lightning callback can monitor them
    early = EarlyStopping(monitor=MONITOR, mode="min", divergence_threshold=DIVERGE, patience=epochs, check_on_train_epoch_end=True)
    trainer = pl.Trainer(
        max_epochs=epochs, logger=logger, log_every_n_steps=5, enable_progress_bar=False, enable_checkpointing=False,
        enable_model_summary=False, callbacks=[fastclip, early],
    )
    trainer.fit(model, datamodule=dm)
    logits, y, _ = predict_logits(model, dm.test_set())
    test_acc = accuracy(logits, y)
    print(f"test accuracy {test_acc:.2f}%")
    monitored = float(trainer.callback_metrics[MONITOR])
    print(f"{MONITOR} at the end: {monitored:.3f} (EarlyStopping stopped the run: {early.stopped_epoch > 0})")
    last = [r for r in fastclip.records if r.event == fastclip.num_events]
    if last:
        print(f"{fastclip.num_events} clip events; the last, after step {last[0].step} ({1e3 * last[0].seconds:.0f} ms):")
    for r in last:
        how = ("exact" if r.exact else "certified") if r.certified else "not certified"
        print(f"  {r.layer}: {r.norm_before:.3f} -> {r.norm_after:.3f} ({how}{', rescaled' if r.fallback else ''})")

    # ------------------------------------------------------------------------- plot the logged norms
    if out is not None:
        series: dict[str, list[tuple[int, float]]] = defaultdict(list)
        with open(Path(logger.log_dir) / "metrics.csv") as f:
            for row in csv.DictReader(f):
                for key, val in row.items():
                    if key.startswith("spectral/") and key.endswith("/sigma") and val:
                        series[key.split("/")[1]].append((int(row["step"]), float(val)))
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for layer, pts in sorted(series.items()):
            ax.plot([s for s, _ in pts], [v for _, v in pts], marker=".", label=layer.replace("model.net.", ""))
        ax.axhline(MAX_NORM, color="k", ls="--", lw=1, label=f"max_norm = {MAX_NORM}")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("spectral norm (true operator, at the layer's input size)")
        ax.set_title(f"FastClip every {every} steps")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out, dpi=120)
        plt.close(fig)
        print(f"saved {out}")
    return {
        "model": model, "fastclip": fastclip, "early_stopping": early, "monitored": monitored, "records": list(fastclip.records),
        "test_accuracy": test_acc,
        "steps": trainer.global_step, "every": every, "max_norm": MAX_NORM, "plot": out,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="400 images, 3 epochs (a few seconds)")
    parser.add_argument("--out", default="fastclip_norms.png", help="the plot's path")
    parser.add_argument("--log-dir", default=None, help="the CSV logger's folder (default: a temporary one)")
    args = parser.parse_args()
    main(tiny=args.tiny, out=args.out, log_dir=args.log_dir)
