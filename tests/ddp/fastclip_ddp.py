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


class PerturbedRank1(FastClip):
    """Simulates non-deterministic kernels: rank 1's warm vectors differ in the last bits before each event.

    Without the broadcast from rank 0 the ranks' clipped weights would then differ; with it they are
    bit-identical (``python tests/ddp/fastclip_ddp.py OUT nobroadcast`` shows the difference).
    """

    def _clip_event(self, trainer, pl_module, step_idx):
        if trainer.global_rank == 1:
            g = torch.Generator().manual_seed(step_idx)
            for layer in self._layers.values():
                if layer.state.vectors is not None:
                    v = layer.state.vectors
                    layer.state.vectors = v + 1e-4 * torch.randn(v.shape, generator=g)
        super()._clip_event(trainer, pl_module, step_idx)


def main(out: Path, broadcast: bool = True) -> None:
    seed_everything(0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(256, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (256,), generator=g)
    ds = torch.utils.data.TensorDataset(x, y, torch.arange(256))
    loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=False)
    net = build_model("small-cnn", in_channels=1, num_classes=10, mean=(0.5,), std=(0.25,))
    module = ClassifierModule(net, num_classes=10, lr=0.2, schedule="constant")
    cb = PerturbedRank1(max_norm=1.0, every_n_steps=1, warmup_iters=20)
    if not broadcast:
        cb._broadcast = lambda: None
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
            # parameters (BN running statistics are per-rank between DDP's buffer broadcasts, as in plain DDP)
            "params": {k: v.detach().cpu() for k, v in module.named_parameters()},
            "vectors": {n: layer.state.vectors.cpu() for n, layer in cb._layers.items()},
            "true_norms": true,
        },
        out / f"rank{rank}.pt",
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), broadcast=not (len(sys.argv) > 2 and sys.argv[2] == "nobroadcast"))
