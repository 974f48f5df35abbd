"""AMUN on your own LightningModule: forget a random 10% of the digits training set.

What it shows
    ``DigitsCNN`` below is an ordinary LightningModule of your own: its own ``forward``,
    ``training_step`` and ``configure_optimizers``, nothing from this library. It is trained
    normally. Mixing ``AMUNMixin`` in *first*::

        class UnlearnableCNN(AMUNMixin, DigitsCNN): ...

    adds an unlearning phase and changes nothing else: ``model.start_amun(request, ...)`` followed
    by an ordinary ``trainer.fit(model)`` builds the adversarial set D_A of the forget set on the
    trained weights (smallest-radius PGD-L2 examples, labelled with the model's own wrong
    prediction) and fine-tunes on D_R + D_F + D_A; ``model.stop_unlearning()`` hands training back
    to your ``training_step``. A model retrained from scratch on the remain set is the gold
    standard the result is compared with: the goal is the retrained model's accuracies, not 0%.

Run::

    OMP_NUM_THREADS=1 python examples/amun_own_module.py            # about 15 s of CPU time
    OMP_NUM_THREADS=1 python examples/amun_own_module.py --tiny     # a few seconds (used by the tests)

Expected output (full run: 14 s of CPU time, 15 s wall on a shared 2-core machine; torch 2.14 CPU,
one thread, seed 0)::

    D_A: 135 adversarial examples for 135 forget samples, eps_init 0.04, mean ||x_adv - x|| 0.578, cost 4.19 PGD-50 passes
    model          forget   remain     test   (accuracy, %)
    original       100.00   100.00    97.78
    AMUN           100.00   100.00    97.78
    retrained       97.78   100.00    98.67

How to read it: on digits the original model is already within the noise of the retrained one
(forget accuracy 100 against 97.78, i.e. three of 135 samples), so there is little to unlearn and
AMUN keeps every accuracy, as it should (fine-tuning on wrong-labelled adversarial examples does
not wreck the model). This is a demonstration of the API, not a result: the methods separate on
data sets where the original memorises its training set (``benchmarks/random_forget.py`` on
CIFAR-10). The attack starts at AMUN's default radius ``eps_init=0.04`` and doubles it until each
sample is misclassified; the minimal radii on 8x8 digits are larger than on CIFAR-10 (mean
||x_adv - x|| 0.58 here against about 0.25 there), so more doubling rounds are needed, hence a cost
above the paper's CIFAR-10 bound of 3 PGD-50 passes (see ``docs/methods/amun.md``, section 2).
"""

from __future__ import annotations

import argparse

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

from lightning_unlearn import AMUNMixin, UnlearningDataModule, UnlearningRequest

# ----------------------------------------------------------------------------- settings
SEED = 0  # seeds the forget set, the initialisation and the data order
FORGET = "random:0.1"  # forget a random 10% of the training set
EPOCHS = 30  # training epochs of the original and of the retrained model
UNLEARN_EPOCHS = 5  # epochs of the unlearning phase
UNLEARN_LR = 0.01  # AMUN's learning rate (SGD momentum 0.9, weight decay 5e-4, StepLR every epoch by 0.1)


# ----------------------------------------------------------------------------- your own module
class DigitsCNN(pl.LightningModule):
    """A small CNN for 8x8 grey digits: pixels in [0, 1] (or uint8) -> logits."""

    def __init__(self, num_classes: int = 10, lr: float = 0.05) -> None:
        super().__init__()
        self.lr = lr
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:  # the data module serves uint8 images; attacks send float pixels
            x = x.float() / 255.0
        return self.head(self.features(x))

    def training_step(self, batch, batch_idx):
        x, y = batch[0], batch[1]  # batches are (x, y, index)
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9, weight_decay=5e-4)


class UnlearnableCNN(AMUNMixin, DigitsCNN):
    """Your module with AMUN's unlearning phase: the mixin goes first, nothing else changes."""


# ----------------------------------------------------------------------------- helpers
def make_trainer(epochs: int) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )


@torch.no_grad()
def accuracy(model: nn.Module, loader) -> float:
    """Top-1 accuracy in percent (eval mode)."""
    model.eval()
    correct = total = 0
    for x, y, _ in loader:
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    return 100.0 * correct / total


def accuracies(model: nn.Module, dm: UnlearningDataModule) -> dict[str, float]:
    return {
        "forget": accuracy(model, dm.forget_dataloader()),
        "remain": accuracy(model, dm.remain_dataloader()),
        "test": accuracy(model, dm.test_dataloader()),
    }


# ----------------------------------------------------------------------------- the run
def main(tiny: bool = False) -> dict:
    """Train, unlearn with AMUN, retrain; returns the accuracies (percent) of the three models,
    the attack's statistics, the unlearned model and its adversarial set."""
    torch.set_num_threads(1)
    epochs, unlearn_epochs = (12, 2) if tiny else (EPOCHS, UNLEARN_EPOCHS)
    subset = dict(max_train=400, max_test=200) if tiny else {}
    dm = UnlearningDataModule("digits", forget=FORGET, seed=SEED, batch_size=64, **subset)
    dm.setup()

    # 1. ordinary training of your module (the mixin delegates to DigitsCNN outside the phase)
    pl.seed_everything(SEED, verbose=False)
    model = UnlearnableCNN(num_classes=dm.num_classes)
    make_trainer(epochs).fit(model, train_dataloaders=dm.train_dataloader())
    before = accuracies(model, dm)

    # 2. the unlearning phase: a request (what to forget, which data may be used), then fit
    request = UnlearningRequest.from_datamodule(dm, use_remain=True)
    method = model.start_amun(request, lr=UNLEARN_LR, epochs=unlearn_epochs)
    make_trainer(unlearn_epochs).fit(model)  # builds D_A at fit start, then fine-tunes
    model.stop_unlearning()
    after = accuracies(model, dm)
    d_a = method.adversarial
    attack = {
        "eps_init": float(d_a.eps_init),
        "size": len(d_a),
        "mean_delta": float(d_a.delta.mean()),
        "pgd50_passes": float(d_a.cost_in_pgd50_passes),
    }

    # 3. the gold standard: the same module trained from scratch on the remain set only
    pl.seed_everything(SEED, verbose=False)
    retrained = DigitsCNN(num_classes=dm.num_classes)
    make_trainer(epochs).fit(retrained, train_dataloaders=dm.make_loader(dm.remain_set(), shuffle=True))
    gold = accuracies(retrained, dm)

    print(f"D_A: {attack['size']} adversarial examples for {len(dm.forget_set())} forget samples, "
          f"eps_init {attack['eps_init']:.3g}, mean ||x_adv - x|| {attack['mean_delta']:.3f}, "
          f"cost {attack['pgd50_passes']:.2f} PGD-50 passes")
    print(f"{'model':<12}{'forget':>9}{'remain':>9}{'test':>9}   (accuracy, %)")
    for name, acc in (("original", before), ("AMUN", after), ("retrained", gold)):
        print(f"{name:<12}{acc['forget']:>9.2f}{acc['remain']:>9.2f}{acc['test']:>9.2f}")
    return {"original": before, "amun": after, "retrained": gold, "attack": attack, "model": model, "adversarial": d_a}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a 400-image subset and short fits (a few seconds)")
    main(tiny=parser.parse_args().tiny)
