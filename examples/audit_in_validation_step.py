"""Membership audits in your own ``validation_step``: RMIA and SVC MIA-efficacy, torchmetrics style.

What it shows
    ``RMIA`` and ``MIAEfficacy`` are torchmetrics ``Metric`` objects: keep them as attributes of
    your LightningModule, ``update`` them in ``validation_step`` and log what ``compute`` returns at
    the end of the validation epoch, as with any torchmetrics metric. Here the validation data is
    three loaders, the forget set D_F, the remain set D_R and the test set D_T
    (``trainer.fit(..., val_dataloaders=[forget, remain, test])``); ``dataloader_idx`` tells
    ``validation_step`` which split a batch belongs to, and every batch carries the samples' pool
    indices (``(x, y, index)``), which is how the metrics know membership and remove the padding a
    ``DistributedSampler`` adds under DDP. The audits are logged while the model trains (every
    ``AUDIT_EVERY`` epochs) and once more for a model retrained without D_F, whose values are the
    target an unlearning method should reach (RMIA FT AUC about 50: D_F looks like unseen data).

    RMIA needs reference models: ``train_reference_models`` trains R models of the library's small
    CNN on random halves of the pool (train + test; each sample is IN for exactly R/2 of them) and
    caches them; ``signals_by_index`` turns their outputs into the per-sample signals RMIA takes,
    indexed by pool index.

    Logged keys: ``rmia/ft_auc`` (D_F vs D_T, the unlearning papers' headline), ``rmia/fr_auc``
    (D_R vs D_F), ``rmia/rt_auc`` (D_R vs D_T), ``rmia/ft_tpr@0.01`` (TPR at 1% FPR on D_F vs D_T) and
    ``mia_efficacy`` (share of D_F an SVC predicts as non-member), all in percent.

Run::

    OMP_NUM_THREADS=1 python examples/audit_in_validation_step.py            # about 25 s of CPU time
    OMP_NUM_THREADS=1 python examples/audit_in_validation_step.py --tiny     # a few seconds (used by the tests)

The reference models are cached under ``$LIGHTNING_UNLEARN_CACHE`` (default
``~/.cache/lightning_unlearn``), so a second run starts faster.

Expected output (full run, reference models not cached yet: 22 s of CPU time, 45 s wall on a
shared 2-core machine; torch 2.14 CPU, one thread, seed 0)::

    135 forget, 1212 remain, 450 test samples; 4 reference models (0 from the cache)
    model                    FT AUC   RT AUC   FR AUC   TPR@1%FPR  MIA-efficacy   (percent)
    original, epoch 10        54.82    52.61    47.76        2.22          3.70
    original, epoch 20        52.51    52.75    50.21        2.96          0.00
    original, epoch 30        51.99    52.21    50.21        2.96          0.00
    retrained without D_F     49.22    51.47    52.23        0.74          3.70

(plus a warning that a TPR at 1% FPR over 450 non-members rests on 4.5 false positives). On
digits a small CNN generalises almost perfectly (test accuracy about 98%), so membership leaks
little: the original's FT AUC is only a few points above the retrained model's 49. Membership
inference is sharper on models that memorise (``--augmentation none`` on CIFAR-10 in the
benchmarks). See ``docs/metrics.md`` for every logged quantity.
"""

from __future__ import annotations

import argparse

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

from lightning_unlearn import RMIA, MIAEfficacy, UnlearningDataModule, train_reference_models
from lightning_unlearn.audit import reference_pool

# ----------------------------------------------------------------------------- settings
SEED = 0  # seeds the forget set, the initialisation and the data order
FORGET = "random:0.1"  # the forget set the audit asks about
EPOCHS = 30  # training epochs of the audited and the retrained model
AUDIT_EVERY = 10  # validate (and so audit) every this many epochs
NUM_REFS = 4  # RMIA reference models (even: each sample is IN for half of them)
REF_EPOCHS = 15  # training epochs of each reference model
SIGNAL, GAMMA = "softmax", 2.0  # RMIA signal Pr(x | model) and likelihood-ratio threshold
SPLITS = ("forget", "remain", "test")  # the order of the validation loaders


# ----------------------------------------------------------------------------- your own module
class DigitsCNN(pl.LightningModule):
    """A small CNN for 8x8 grey digits that audits itself in ``validation_step``.

    Args:
        ref_signals: ``(R, P)`` reference-model signals indexed by pool index (for RMIA).
    """

    def __init__(self, ref_signals: torch.Tensor, num_classes: int = 10, lr: float = 0.05) -> None:
        super().__init__()
        self.lr = lr
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, num_classes))
        # the audits: torchmetrics Metrics, registered as submodules like any other metric
        self.rmia = RMIA(ref_signals, signal=SIGNAL, gamma=GAMMA, tpr_fprs=(0.01,))
        self.mia_efficacy = MIAEfficacy()  # the SVC attack on the confidence feature ("MIS")
        self.audits: list[dict[str, float]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:  # the data module serves uint8 images
            x = x.float() / 255.0
        return self.head(self.features(x))

    def training_step(self, batch, batch_idx):
        x, y = batch[0], batch[1]  # batches are (x, y, index)
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9, weight_decay=5e-4)

    # ------------------------------------------------------------------ the audit
    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        x, y, index = batch
        split = SPLITS[dataloader_idx]  # which set this loader serves
        logits = self(x)  # eval mode, no augmentation: what the metrics expect
        self.rmia.update(logits, y, index, split)
        self.mia_efficacy.update(logits, y, index, split)

    def on_validation_epoch_end(self):
        # compute() gathers every rank's records, removes duplicates by (split, index) and sorts
        # them by index, so the values are the same on one device or many; then reset for the next epoch
        values = {f"rmia/{k}": v.float() for k, v in self.rmia.compute().items()}
        values["mia_efficacy"] = self.mia_efficacy.compute().float()
        self.log_dict(values)
        self.audits.append({"epoch": self.current_epoch + 1, **{k: float(v) for k, v in values.items()}})
        self.rmia.reset()
        self.mia_efficacy.reset()


# ----------------------------------------------------------------------------- helpers
def make_trainer(epochs: int, audit_every: int) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, check_val_every_n_epoch=audit_every,
        num_sanity_val_steps=0,
    )


def validation_loaders(dm: UnlearningDataModule) -> list:
    """One loader per split, in the order of ``SPLITS``."""
    return [dm.forget_dataloader(), dm.remain_dataloader(), dm.test_dataloader()]


def show(name: str, audit: dict[str, float]) -> None:
    print(f"{name:<22}{audit['rmia/ft_auc']:>9.2f}{audit['rmia/rt_auc']:>9.2f}{audit['rmia/fr_auc']:>9.2f}"
          f"{audit['rmia/ft_tpr@0.01']:>12.2f}{audit['mia_efficacy']:>14.2f}")


# ----------------------------------------------------------------------------- the run
def main(tiny: bool = False) -> dict:
    """Train reference models, then an audited model and a retrained one; returns their audits."""
    torch.set_num_threads(1)
    epochs, audit_every = (6, 3) if tiny else (EPOCHS, AUDIT_EVERY)
    num_refs, ref_epochs = (2, 4) if tiny else (NUM_REFS, REF_EPOCHS)
    subset = dict(max_train=400, max_test=200) if tiny else {}
    dm = UnlearningDataModule("digits", forget=FORGET, seed=SEED, batch_size=64, **subset)
    dm.setup()

    # reference models for RMIA (trained once, then loaded from the cache) and their signals
    refs = train_reference_models(dm, num_refs, model="small-cnn", epochs=ref_epochs, accelerator="cpu", devices=1)
    ref_signals, _membership = refs.signals_by_index(reference_pool(dm), signal=SIGNAL)

    # the audited model: trained on every training sample, audited every `audit_every` epochs
    pl.seed_everything(SEED, verbose=False)
    model = DigitsCNN(ref_signals, num_classes=dm.num_classes)
    make_trainer(epochs, audit_every).fit(model, train_dataloaders=dm.train_dataloader(), val_dataloaders=validation_loaders(dm))

    # the gold standard: trained without D_F, audited once at the end
    pl.seed_everything(SEED, verbose=False)
    retrained = DigitsCNN(ref_signals, num_classes=dm.num_classes)
    make_trainer(epochs, epochs).fit(
        retrained, train_dataloaders=dm.make_loader(dm.remain_set(), shuffle=True), val_dataloaders=validation_loaders(dm)
    )

    print(f"{len(dm.forget_set())} forget, {len(dm.remain_set())} remain, {len(dm.test_set())} test samples; "
          f"{num_refs} reference models ({refs.loaded_from_cache} from the cache)")
    print(f"{'model':<22}{'FT AUC':>9}{'RT AUC':>9}{'FR AUC':>9}{'TPR@1%FPR':>12}{'MIA-efficacy':>14}   (percent)")
    for audit in model.audits:
        show(f"original, epoch {audit['epoch']}", audit)
    show("retrained without D_F", retrained.audits[-1])
    return {"original": model.audits, "retrained": retrained.audits[-1], "model": model, "ref_signals": ref_signals, "dm": dm}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a 400-image subset, 2 references and short fits (a few seconds)")
    main(tiny=parser.parse_args().tiny)
