"""Two-process gloo DDP run with FastClip; each rank saves its weights, vectors and true norms.

Run by ``tests/test_fastclip_callback.py::test_ddp_ranks_bit_identical_after_clip_events``:
``python tests/ddp/fastclip_ddp.py OUT_DIR`` (Lightning's DDP launcher re-executes this script
for rank 1, so it must not run inside the pytest process).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

torch.set_num_threads(1)

import lightning.pytorch as pl  # noqa: E402
from torch import nn  # noqa: E402

from lightning_unlearn.callbacks import FastClip  # noqa: E402
from lightning_unlearn.training import ClassifierModule, seed_everything  # noqa: E402
from lightning_unlearn.models import build_model  # noqa: E402


def main(out: Path) -> None:
    seed_everything(0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(256, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (256,), generator=g)
    ds = torch.utils.data.TensorDataset(x, y, torch.arange(256))
    loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=False)
    net = build_model("small-cnn", in_channels=1, num_classes=10, mean=(0.5,), std=(0.25,))
    module = ClassifierModule(net, num_classes=10, lr=0.2, schedule="constant")
    cb = FastClip(max_norm=1.0, every_n_steps=1, warmup_iters=20)
    trainer = pl.Trainer(
        strategy="ddp", accelerator="cpu", devices=2, max_epochs=1, max_steps=3, callbacks=[cb], logger=False,
        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
    )
    trainer.fit(module, train_dataloaders=loader)
    rank = trainer.global_rank
    from test_spectral import dense_singular_values

    true = {}
    for name, layer in cb._layers.items():
        true[name] = float(dense_singular_values(module.get_submodule(name), layer.state.input_shape)[0])
    torch.save(
        {
            "events": cb._events,
            "state": {k: v.detach().cpu() for k, v in module.state_dict().items()},
            "vectors": {n: layer.state.vectors.cpu() for n, layer in cb._layers.items()},
            "true_norms": true,
        },
        out / f"rank{rank}.pt",
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
