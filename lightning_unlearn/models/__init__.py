"""Models: a CIFAR ResNet-18, a small CNN, and pixel-space normalisation for any classifier."""

from lightning_unlearn.models.factory import MODEL_NAMES, build_model, final_linear
from lightning_unlearn.models.normalize import Normalize, NormalizedClassifier
from lightning_unlearn.models.resnet import ResNet18
from lightning_unlearn.models.small_cnn import SmallCNN

__all__ = ["MODEL_NAMES", "Normalize", "NormalizedClassifier", "ResNet18", "SmallCNN", "build_model", "final_linear"]
