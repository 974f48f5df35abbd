"""Your own LightningModule and your own (x, y) data: FastClip, AMUN, another method, TRW and audits.

What it shows
    ``DigitsNet`` below is a plain LightningModule of your own: a ``forward`` that takes
    *standardised* 8x8 images, a ``training_step`` on ``(x, y)`` batches that standardises them, and
    its own ``configure_optimizers``. The data are plain ``TensorDataset``\\ s of ``(x, y)`` made from
    scikit-learn's digits (pixels in ``[0, 1]``), without any index. Nothing in them comes from
    this library. The library then adds, without changing either:

    1. **FastClip** on the ordinary training: ``callbacks=[FastClip(max_norm=..., every_n_steps=...)]``;
    2. **your data as a request**: ``IndexedSplits(forget, remain, test=test, num_classes=10)``
       numbers the samples by one rule (forget ``0..n_F-1``, remain after it, test last) and checks
       them; ``UnlearningRequest.from_splits(splits)`` is the request;
    3. **AMUN by mixin**: ``class Unlearnable(AMUNMixin, TRWMixin, DigitsNet)``, then
       ``model.start_amun(request, epochs=..., normalizer=standardise)`` and an ordinary
       ``trainer.fit(model, val_dataloaders=...)``. ``normalizer`` is your forward's input
       transform: the attack (in pixel space) and the fine-tuning both apply it;
    4. **another method by name** with ``unlearn(model, "rl", request, ...)`` (any Trainer option in
       ``trainer_kwargs``; the method's ``epochs`` are the phase's length on both paths);
    5. **TRW** (class forgetting): a request with ``forget_classes=(3,)`` and ``model.start_trw``;
    6. **audits in validation_step**: ``MIAEfficacy`` (SVC MIA) logged with ``self.log(name, metric)``
       and ``RMIA`` (a dict: ``log_dict`` of ``compute()``), with reference signals of *your own*
       reference models (``reference_signals(models, splits, normalizer=standardise)``). One audit
       loader carries each sample's split (``splits.audit_dataloader()``), so the split comes from
       the batch.

Run::

    OMP_NUM_THREADS=1 python examples/own_module_and_data.py            # about 20 s of CPU time
    OMP_NUM_THREADS=1 python examples/own_module_and_data.py --tiny     # a few seconds (used by the tests)

Expected output (full run: 22 s of CPU time, 57 s wall on a shared 2-core machine; torch 2.14 CPU,
one thread, seed 0)::

    FastClip: 22 clip events; largest norm after an event 4.010 (max_norm 4.0); layers features.0, features.2, head.1, head.3
    135 forget, 1213 remain, 449 test samples (pool indices 0..134, 135..1347, 1348..1796); 4 reference models
    model               forget   remain     test   MIA-SVC  RMIA FT AUC   (percent)
    original            100.00   100.00    98.89      0.00        51.49
    AMUN                100.00   100.00    98.89      0.00        51.85
    RL                   99.26   100.00    99.11      4.44        43.16
    retrained            99.26   100.00    98.89      0.74        50.08
    TRW forgetting class 3: class-3 test accuracy 100.00 -> 0.00, other classes 98.76 -> 98.51

(plus warnings that a TPR at 1% FPR over 449 non-members rests on 4.5 false positives, one per
audited model).

How to read it: on digits a small CNN generalises almost perfectly, so the original is already
close to the retrained model and there is little to unlearn; the numbers show the API working, not a
comparison of methods (``benchmarks/`` measures those on data where the original memorises). The
audits' targets are the retrained model's values, not 0 or 100.
"""

from __future__ import annotations

import argparse

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Subset, TensorDataset

from lightning_unlearn import (
    RMIA,
    AMUNMixin,
    FastClip,
    IndexedSplits,
    MIAEfficacy,
    TRWMixin,
    UnlearningAccuracy,
    UnlearningRequest,
    reference_signals,
    unlearn,
)

# ----------------------------------------------------------------------------- settings
SEED = 0  # seeds the split, the initialisation and the data order
FORGET_FRACTION = 0.1  # forget a random 10% of the training set
FORGET_CLASS = 3  # the class TRW forgets
EPOCHS = 20  # training epochs of the original, the retrained and each reference model
MAX_NORM, CLIP_EVERY = 4.0, 20  # FastClip: bound on every layer's spectral norm, steps between clip events
UNLEARN_EPOCHS, UNLEARN_LR = 5, 0.01  # every unlearning phase
NUM_REFS = 4  # your own RMIA reference models, each trained on a random half of the pool
MEAN, STD = 0.3, 0.35  # your standardisation of the pixels


# ----------------------------------------------------------------------------- your own data and module
def standardise(x: torch.Tensor) -> torch.Tensor:
    """Your input transform: [0, 1] pixels -> what DigitsNet.forward expects."""
    return (x - MEAN) / STD


def digits_data(seed: int, tiny: bool) -> dict[str, TensorDataset]:
    """Plain (x, y) datasets: a random forget set, the rest of the training set, and a test set."""
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    if tiny:
        order = order[:400]
    n_test = len(order) // 4
    test, train = order[:n_test], order[n_test:]
    n_forget = round(FORGET_FRACTION * len(train))
    forget, remain = train[:n_forget], train[n_forget:]
    return {name: TensorDataset(x[idx], y[idx]) for name, idx in (("forget", forget), ("remain", remain), ("test", test))}


class DigitsNet(pl.LightningModule):
    """A small CNN of your own: standardised (B, 1, 8, 8) -> logits; audits itself when given reference signals."""

    def __init__(self, ref_signals: torch.Tensor | None = None, lr: float = 0.05) -> None:
        super().__init__()
        self.lr = lr
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))
        if ref_signals is not None:  # the audits: torchmetrics Metrics, registered like any other metric
            self.mia_svc = MIAEfficacy()
            self.rmia = RMIA(ref_signals, tpr_fprs=(0.01,))
            self.accuracy = UnlearningAccuracy()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(standardise(x)), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9, weight_decay=5e-4)

    # ------------------------------------------------------------------ the audits
    def validation_step(self, batch, batch_idx):
        x, y, index, split = batch  # splits.audit_dataloader(): each sample's pool index and split
        logits = self(standardise(x))
        self.mia_svc(logits, y, index, split)  # records the batch (an audit has no per-batch value)
        self.rmia.update(logits, y, index, split)
        self.accuracy.update(logits, y, index, split)
        self.log("mia/svc", self.mia_svc)  # computed over every split at the epoch's end, then reset

    def on_validation_epoch_end(self):
        # dict-valued metrics: log what compute() returns, then reset, as for any torchmetrics metric
        self.log_dict({f"rmia/{k}": v for k, v in self.rmia.compute().items()})
        self.log_dict({f"acc/{k}": v for k, v in self.accuracy.compute().items()})
        self.rmia.reset()
        self.accuracy.reset()


class Unlearnable(AMUNMixin, TRWMixin, DigitsNet):
    """Your module with an unlearning phase: the mixins go first, nothing else changes."""


# ----------------------------------------------------------------------------- helpers
def make_trainer(epochs: int, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, **kwargs,
    )


def fit(model: pl.LightningModule, data, epochs: int, seed: int, **trainer_kwargs) -> pl.LightningModule:
    pl.seed_everything(seed, verbose=False)
    make_trainer(epochs, **trainer_kwargs).fit(model, DataLoader(data, batch_size=64, shuffle=True))
    return model


def copy_of(model: pl.LightningModule, ref_signals: torch.Tensor) -> Unlearnable:
    """A fresh Unlearnable holding ``model``'s weights."""
    twin = Unlearnable(ref_signals)
    twin.load_state_dict(model.state_dict())
    return twin


def audit(model: pl.LightningModule, splits: IndexedSplits) -> dict[str, float]:
    """One validation pass over forget, remain and test: the logged audits."""
    results = make_trainer(1).validate(model, splits.audit_dataloader(batch_size=512), verbose=False)
    return {k: float(v) for k, v in results[0].items()}


@torch.no_grad()
def class_accuracy(model: nn.Module, data: TensorDataset, keep) -> float:
    x, y = data.tensors
    model.eval()
    sel = keep(y)
    return 100.0 * float((model(standardise(x[sel])).argmax(1) == y[sel]).float().mean())


def show(name: str, a: dict[str, float]) -> None:
    print(f"{name:<18}{a['acc/ua']:>8.2f}{a['acc/ra']:>9.2f}{a['acc/ta']:>9.2f}{a['mia/svc']:>10.2f}{a['rmia/ft_auc']:>13.2f}")


# ----------------------------------------------------------------------------- the run
def main(tiny: bool = False) -> dict:
    """Train with FastClip, unlearn with AMUN, RL and TRW, audit; returns what it measured."""
    torch.set_num_threads(1)
    epochs, unlearn_epochs, num_refs = (15, 2, 2) if tiny else (EPOCHS, UNLEARN_EPOCHS, NUM_REFS)
    data = digits_data(SEED, tiny)
    splits = IndexedSplits(data["forget"], data["remain"], test=data["test"], num_classes=10)
    request = UnlearningRequest.from_splits(splits, batch_size=64, seed=SEED)

    train = ConcatDataset([data["forget"], data["remain"]])  # your training set
    # your own reference models for RMIA: each trains on a random half of the pool (forget, remain, test)
    pool = ConcatDataset([data["forget"], data["remain"], data["test"]])
    halves = [torch.randperm(len(pool), generator=torch.Generator().manual_seed(SEED + 1 + r))[: len(pool) // 2] for r in range(num_refs)]
    refs = [fit(DigitsNet(), Subset(pool, half.tolist()), epochs, seed=SEED + 1 + r) for r, half in enumerate(halves)]
    ref_signals = reference_signals(refs, splits, normalizer=standardise)  # (R, P): column p = pool index p

    # 1. ordinary training of your module, with FastClip
    fastclip = FastClip(max_norm=MAX_NORM, every_n_steps=CLIP_EVERY)
    original = fit(Unlearnable(ref_signals), train, epochs, seed=SEED, callbacks=[fastclip])
    # ---- MONITORED LAYER NORM (marked spot) ------------------------------------------------------
    # Today FastClip reports every clip event in `fastclip.records` (and to the Trainer's logger as
    # spectral/<layer>/sigma). Once FastClip logs its norms through the LightningModule's self.log,
    # they are in trainer.callback_metrics too, and a callback can monitor one of them, e.g.
    #     ModelCheckpoint(monitor="spectral/features.0/sigma", mode="min")
    # -----------------------------------------------------------------------------------------------
    largest = max(r.norm_after for r in fastclip.records)
    before = audit(original, splits)

    # 2. AMUN by mixin, audited while it unlearns (validation loaders are fine in a phase)
    amun = copy_of(original, ref_signals)
    method = amun.start_amun(request, epochs=unlearn_epochs, lr=UNLEARN_LR, normalizer=standardise)
    make_trainer(unlearn_epochs).fit(amun, val_dataloaders=splits.audit_dataloader(batch_size=512))
    amun.stop_unlearning()
    after_amun = audit(amun, splits)

    # 3. another method by name: unlearn() runs the phase with any Trainer options of yours
    rl = unlearn(copy_of(original, ref_signals), "rl", request, epochs=unlearn_epochs, lr=UNLEARN_LR, normalizer=standardise,
                 trainer_kwargs={"accelerator": "cpu", "devices": 1, "enable_model_summary": False})
    after_rl = audit(rl, splits)

    # the gold standard: your module trained from scratch on the remain set only
    retrained = fit(DigitsNet(ref_signals), data["remain"], epochs, seed=SEED)
    gold = audit(retrained, splits)

    # 4. TRW: forget every sample of one class (a class request from the same plain data)
    x_train = torch.cat([data["forget"].tensors[0], data["remain"].tensors[0]])
    y_train = torch.cat([data["forget"].tensors[1], data["remain"].tensors[1]])
    is_class = y_train == FORGET_CLASS
    class_splits = IndexedSplits(TensorDataset(x_train[is_class], y_train[is_class]), TensorDataset(x_train[~is_class], y_train[~is_class]),
                                 num_classes=10)
    trw = copy_of(original, ref_signals)
    trw.start_trw(UnlearningRequest.from_splits(class_splits, forget_classes=(FORGET_CLASS,), batch_size=64, seed=SEED),
                  epochs=unlearn_epochs, lr=UNLEARN_LR, normalizer=standardise)
    make_trainer(unlearn_epochs).fit(trw)
    trw.stop_unlearning()
    trw_acc = {
        name: (class_accuracy(m, data["test"], lambda y: y == FORGET_CLASS), class_accuracy(m, data["test"], lambda y: y != FORGET_CLASS))
        for name, m in (("original", original), ("trw", trw))
    }

    n = {k: len(v) for k, v in data.items()}
    print(f"FastClip: {fastclip.num_events} clip events; largest norm after an event {largest:.3f} (max_norm {MAX_NORM}); "
          f"layers {', '.join(fastclip.layer_shapes)}")
    print(f"{n['forget']} forget, {n['remain']} remain, {n['test']} test samples (pool indices 0..{n['forget'] - 1}, "
          f"{n['forget']}..{n['forget'] + n['remain'] - 1}, {n['forget'] + n['remain']}..{splits.size - 1}); {num_refs} reference models")
    print(f"{'model':<18}{'forget':>8}{'remain':>9}{'test':>9}{'MIA-SVC':>10}{'RMIA FT AUC':>13}   (percent)")
    for name, a in (("original", before), ("AMUN", after_amun), ("RL", after_rl), ("retrained", gold)):
        show(name, a)
    print(f"TRW forgetting class {FORGET_CLASS}: class-{FORGET_CLASS} test accuracy {trw_acc['original'][0]:.2f} -> {trw_acc['trw'][0]:.2f}, "
          f"other classes {trw_acc['original'][1]:.2f} -> {trw_acc['trw'][1]:.2f}")
    return {
        "splits": splits, "request": request, "fastclip": fastclip, "original": before, "amun": after_amun, "rl": after_rl,
        "retrained": gold, "trw": trw_acc, "method": method, "ref_signals": ref_signals, "models": {"amun": amun, "original": original},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a 400-image subset, 2 references and short fits (a few seconds)")
    main(tiny=parser.parse_args().tiny)
