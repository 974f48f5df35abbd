"""A small, fast CNN for 8x8 digits up to 32x32 colour images on a CPU."""

from __future__ import annotations

from torch import nn


def _conv_bn(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """Five 3x3 conv-BN-ReLU layers (widths ``w, 2w, 2w, 4w, 4w``, two stride-2), global average pooling, one linear head.

    Args:
        in_channels: image channels (1 for digits/MNIST, 3 for CIFAR).
        num_classes: number of logits.
        width: channels of the first layer (default 16).

    Shape: ``(B, in_channels, H, W)`` -> ``(B, num_classes)`` for any ``H, W >= 4``.
    About 71 k parameters at the default width (280 k at ``width=32``).
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_conv_bn(in_channels, w, 1),
            *_conv_bn(w, 2 * w, 2),
            *_conv_bn(2 * w, 2 * w, 1),
            *_conv_bn(2 * w, 4 * w, 2),
            *_conv_bn(4 * w, 4 * w, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))
