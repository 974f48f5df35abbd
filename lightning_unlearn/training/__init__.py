"""Training of original and retrained models."""

from lightning_unlearn.training.fit import default_epochs, make_trainer, seed_everything, train_classifier
from lightning_unlearn.training.module import ClassifierModule, build_optimizer, build_scheduler

__all__ = ["ClassifierModule", "build_optimizer", "build_scheduler", "default_epochs", "make_trainer", "seed_everything", "train_classifier"]
