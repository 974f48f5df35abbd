"""Two-process gloo DDP run with FastClip; each rank saves its weights, vectors, records, monitored values and true norms.

Run by ``tests/test_fastclip_callback.py::test_ddp_ranks_bit_identical_after_clip_events``:
``python tests/ddp/fastclip_ddp.py OUT_DIR`` (Lightning's DDP launcher re-executes this script
for rank 1, so it must not run inside the pytest process).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

torch.set_num_threads(1)

import lightning.pytorch as pl  # noqa: E402

from lightning_unlearn.callbacks import FastClip  # noqa: E402
from lightning_unlearn.callbacks import fastclip as fastclip_module  # noqa: E402
from lightning_unlearn.models import build_model  # noqa: E402
from lightning_unlearn.spectral import ClipSettings  # noqa: E402
from lightning_unlearn.training import ClassifierModule, seed_everything  # noqa: E402


class PerturbRank1(pl.Callback):
    """Simulates non-deterministic kernels: rank 1's warm vectors differ in the last bits before each event.

    Listed before the FastClip, it edits the callback's state through its public ``state_dict`` /
    ``load_state_dict`` right before each clip step. Without the broadcast from rank 0 the ranks'
    clipped weights would then differ; with it they are bit-identical
    (``python tests/ddp/fastclip_ddp.py OUT nobroadcast`` shows the difference: each rank then
    keeps its own results).
    """

    def __init__(self, fc: FastClip) -> None:
        self.fc = fc

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step_idx = trainer.global_step - 1
        if trainer.global_rank != 1 or not self.fc.should_clip(step_idx):
            return
        state = self.fc.state_dict()
        g = torch.Generator().manual_seed(step_idx)
        for layer in state["layers"].values():
            if layer["vectors"] is not None:
                layer["vectors"] = layer["vectors"] + 1e-4 * torch.randn(layer["vectors"].shape, generator=g)
        self.fc.load_state_dict(state)


def main(out: Path, broadcast: bool = True) -> None:
    seed_everything(0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(256, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (256,), generator=g)
    ds = torch.utils.data.TensorDataset(x, y, torch.arange(256))
    loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=False)
    net = build_model("small-cnn", in_channels=1, num_classes=10, mean=(0.5,), std=(0.25,))
    module = ClassifierModule(net, num_classes=10, lr=0.2, schedule="constant")
    # every layer by block Krylov (the warm vectors matter there), every step; host reads counted per event
    from test_fastclip_gpu_ready import CountingFastClip

    cb = CountingFastClip(max_norm=1.0, every_n_steps=1, settings=ClipSettings(dense_max_entries=0))
    if not broadcast:
        fastclip_module.share_event = lambda trainer, table, tensors: table.cpu().tolist()
    trainer = pl.Trainer(
        strategy="ddp", accelerator="cpu", devices=2, max_epochs=1, max_steps=3, callbacks=[PerturbRank1(cb), cb], logger=False,
        enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
    )
    trainer.fit(module, train_dataloaders=loader)
    rank = trainer.global_rank
    from test_spectral import dense_singular_values

    true = {}
    for name, shape in cb.layer_shapes.items():
        true[name] = float(dense_singular_values(module.get_submodule(name), shape)[0])
    torch.save(
        {
            "events": cb.num_events,
            # parameters (BN running statistics are per-rank between DDP's buffer broadcasts, as in plain DDP)
            "params": {k: v.detach().cpu() for k, v in module.named_parameters()},
            "vectors": {n: layer["vectors"] for n, layer in cb.state_dict()["layers"].items()},
            "true_norms": true,
            "records": [r.as_dict() for r in cb.records],
            "host_reads": [c.reads for c in cb.counts],
            "monitored": {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("spectral/")},
        },
        out / f"rank{rank}.pt",
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), broadcast=not (len(sys.argv) > 2 and sys.argv[2] == "nobroadcast"))
