"""AMUN under DDP (2 CPU processes, gloo): run by tests/test_amun.py::test_amun_ddp_matches_single_process.

Usage: ``python tests/ddp/amun_ddp.py OUT_DIR CACHE_DIR``. ``OUT_DIR/orig.pt`` holds the
original small CNN's state dict. Each rank writes ``OUT_DIR/rank{r}.pt`` with its adversarial
set and its parameters after one AMUN epoch. Lightning re-executes this script for rank 1.
"""

import sys
import warnings
from pathlib import Path

import torch

torch.set_num_threads(1)
warnings.filterwarnings("ignore")

from lightning_unlearn.data import UnlearningDataModule  # noqa: E402
from lightning_unlearn.models import build_model  # noqa: E402
from lightning_unlearn.training import ClassifierModule  # noqa: E402
from lightning_unlearn.training.fit import make_trainer  # noqa: E402
from lightning_unlearn.unlearning import AMUNMixin, UnlearningRequest  # noqa: E402


class Model(AMUNMixin, ClassifierModule):
    pass


def main(out: Path, cache: Path) -> None:
    dm = UnlearningDataModule("digits", forget="random:0.1", seed=0, cache_dir=cache)
    dm.setup()
    net = build_model("small-cnn", in_channels=1, num_classes=10, mean=dm.mean, std=dm.std)
    net.load_state_dict(torch.load(out / "orig.pt"))
    model = Model(net, num_classes=10)
    method = model.start_amun(UnlearningRequest.from_datamodule(dm), eps_init=0.1, attack_batch_size=32, epochs=1, lr=0.01, step_size=None)
    trainer = make_trainer(max_epochs=1, accelerator="cpu", devices=2, strategy="ddp")
    trainer.fit(model)
    a = method.adversarial
    model.stop_unlearning()
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    # a two-phase method (D_R pass then D_F pass) on a second DDP fit in the same processes
    model.start_unlearning("ga", UnlearningRequest.from_datamodule(dm), epochs=1, lr=0.01)
    seen = []
    original_loss = model.unlearning_loss
    model.unlearning_loss = lambda batch, batch_idx=0: seen.append(batch.phase) or original_loss(batch, batch_idx)
    make_trainer(max_epochs=1, accelerator="cpu", devices=2, strategy="ddp").fit(model)
    torch.save(
        {"x": a.x, "y": a.y, "index": a.index, "eps": a.eps, "delta": a.delta, "n_grad": a.n_grad, "params": params,
         "params_ga": {k: v.detach().clone() for k, v in model.named_parameters()}, "phases_ga": seen},
        out / f"rank{trainer.global_rank}.pt",
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
