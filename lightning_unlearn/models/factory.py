"""Build a model by name, and find its final linear layer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import nn

from lightning_unlearn.models.normalize import NormalizedClassifier
from lightning_unlearn.models.resnet import ResNet18
from lightning_unlearn.models.small_cnn import SmallCNN

MODEL_NAMES = ("small-cnn", "resnet18")
ModelName = Literal["small-cnn", "resnet18"]


def build_model(
    name: ModelName,
    *,
    in_channels: int,
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
    width: int | None = None,
) -> NormalizedClassifier:
    """A pixel-space classifier: ``Normalize(mean, std)`` followed by the named network.

    Any other ``nn.Module`` classifier can be used the same way through
    :class:`~lightning_unlearn.models.NormalizedClassifier` (or directly, if it already takes
    ``[0, 1]`` pixels).

    Args:
        name: ``"small-cnn"`` or ``"resnet18"``.
        width: channels of the small CNN's first layer (``None``: its default, 16; the layer
            widths are ``w, 2w, 2w, 4w, 4w``, so the cost per image grows as ``w**2``). Only the
            small CNN has this option.

    Raises:
        ValueError: an unknown name, listing the allowed ones; a width for ResNet-18 or a
            width below 1.
    """
    if width is not None and (isinstance(width, bool) or not isinstance(width, int) or width < 1):
        raise ValueError(f"width must be a positive int or None, got {width!r}")
    if name == "small-cnn":
        net: nn.Module = SmallCNN(in_channels, num_classes) if width is None else SmallCNN(in_channels, num_classes, width=width)
    elif name == "resnet18":
        if width is not None:
            raise ValueError(f"width is an option of 'small-cnn' only, got width={width!r} for 'resnet18'")
        net = ResNet18(in_channels, num_classes)
    else:
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(MODEL_NAMES)}")
    return NormalizedClassifier(net, mean, std)


def final_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The last ``nn.Linear`` in ``model.named_modules()`` order (the classifier head).

    Raises:
        ValueError: the model has no ``nn.Linear``.
    """
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(f"model {type(model).__name__} has no nn.Linear layer to serve as the classifier head")
    return found[-1]
