"""Add FastClip to an existing Lightning training script in two lines, and plot per-layer spectral norms.

The training script below is an ordinary Lightning loop (a small CNN on the offline digits data).
The two FastClip lines are marked ``# <-- FastClip``. The callback logs ``spectral/<layer>/sigma``
(tracked) and ``spectral/<layer>/clipped`` (after each clip event) through the trainer's loggers;
here a ``CSVLogger`` collects them and matplotlib plots them. Each event also leaves one
``ClipRecord`` per layer in ``FastClip.records`` (norm before and after, certified, seconds).

Run (about 30 s on a CPU)::

    PYTHONPATH=. python examples/fastclip_trainer.py --epochs 15 --out fastclip_norms.png
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import CSVLogger

from lightning_unlearn.callbacks import FastClip  # <-- FastClip (1/2)
from lightning_unlearn.data import UnlearningDataModule
from lightning_unlearn.inference import accuracy, predict_logits
from lightning_unlearn.models import build_model
from lightning_unlearn.training import ClassifierModule, seed_everything


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--max-norm", type=float, default=1.0)
    p.add_argument("--every", type=int, default=10, help="clip every N optimizer steps")
    p.add_argument("--out", default="fastclip_norms.png")
    p.add_argument("--log-dir", default="lightning_logs_fastclip")
    args = p.parse_args()
    torch.set_num_threads(1)

    # ----------------------------------------------------------------- an existing training script
    seed_everything(0)
    dm = UnlearningDataModule("digits", seed=0, batch_size=64)
    dm.setup()
    net = build_model("small-cnn", in_channels=dm.image_shape[0], num_classes=dm.num_classes, mean=dm.mean, std=dm.std)
    model = ClassifierModule(net, num_classes=dm.num_classes, lr=0.05)
    logger = CSVLogger(args.log_dir, name="fastclip")
    fastclip = FastClip(max_norm=args.max_norm, every_n_steps=args.every)  # <-- FastClip (2/2)
    trainer = pl.Trainer(
        max_epochs=args.epochs, logger=logger, log_every_n_steps=5, enable_progress_bar=False, enable_checkpointing=False,
        callbacks=[fastclip],
    )
    trainer.fit(model, datamodule=dm)
    logits, y, _ = predict_logits(model, dm.test_set())
    print(f"test accuracy {accuracy(logits, y):.2f}%")
    last = [r for r in fastclip.records if r.event == fastclip.num_events]
    print(f"{fastclip.num_events} clip events; the last, after step {last[0].step} ({1e3 * last[0].seconds:.0f} ms):")
    for r in last:
        print(f"  {r.layer}: {r.norm_before:.3f} -> {r.norm_after:.3f} ({'certified' if r.certified else 'not certified'})")

    # ----------------------------------------------------------------- plot the logged norms
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
    ax.axhline(args.max_norm, color="k", ls="--", lw=1, label=f"max_norm = {args.max_norm}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("spectral norm (true operator, at the layer's input size)")
    ax.set_title(f"FastClip every {args.every} steps")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
