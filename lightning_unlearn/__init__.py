"""lightning_unlearn: machine unlearning and Lipschitz control for PyTorch Lightning.

Importing the package has no side effects: nothing is printed, downloaded or configured.
"""

from lightning_unlearn.data import UnlearningDataModule
from lightning_unlearn.models import build_model
from lightning_unlearn.training import ClassifierModule, train_classifier

__version__ = "0.1.0"

__all__ = ["ClassifierModule", "UnlearningDataModule", "build_model", "train_classifier", "__version__"]
