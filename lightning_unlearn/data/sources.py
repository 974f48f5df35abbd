"""Data sources: every supported data set as uint8 image tensors plus labels.

A *source* knows its labels without decoding anything and decodes images only for the
positions asked for, so a stratified subset of a large ImageFolder tree decodes only the
images it keeps. Images are ``uint8`` tensors of shape ``(N, C, H, W)``; labels are
``int64`` tensors of shape ``(N,)``. Conversion to ``[0, 1]`` floats happens later, on the
model's device (see :mod:`lightning_unlearn.data.transforms`).

Supported names: ``digits`` (sklearn's ``load_digits``, embedded, the default), ``cifar10``,
``cifar100``, ``mnist``, ``fashion-mnist``, ``svhn`` (torchvision; read from ``root``,
downloaded only with ``download=True``), or the path of an ImageFolder tree holding
``train/<class>/*`` and ``test/<class>/*``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

TORCHVISION_SOURCES = ("cifar10", "cifar100", "mnist", "fashion-mnist", "svhn")
SOURCE_NAMES = ("digits",) + TORCHVISION_SOURCES

# Channel statistics of the train split, used by the model's Normalize module.
_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
}


@dataclass
class SplitSource:
    """One split (train or test) of a source.

    Attributes:
        labels: ``int64`` tensor ``(N,)`` in the source's order.
        load: decodes the images at the given positions (sorted ``int64`` tensor) into a
            ``uint8`` tensor ``(len(positions), C, H, W)``.
    """

    labels: torch.Tensor
    load: Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Source:
    """A data set: a train and a test split, class names and a fingerprint for caching."""

    name: str
    train: SplitSource
    test: SplitSource
    classes: tuple[str, ...]
    fingerprint: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def load_source(name_or_path: str, *, root: str | os.PathLike | None = None, download: bool = False) -> Source:
    """Open a data source by name or ImageFolder path.

    Args:
        name_or_path: one of :data:`SOURCE_NAMES`, or a directory with ``train/`` and ``test/``.
        root: directory of the torchvision data sets (ignored for ``digits`` and ImageFolder).
        download: let torchvision download a missing data set. Nothing is ever downloaded
            otherwise.

    Raises:
        ValueError: unknown name, or a malformed ImageFolder tree.
        FileNotFoundError: a missing tree or a torchvision data set not under ``root``.
    """
    if name_or_path == "digits":
        return _digits_source()
    if name_or_path in TORCHVISION_SOURCES:
        return _torchvision_source(name_or_path, root=root, download=download)
    looks_like_path = os.sep in name_or_path or name_or_path.startswith(".") or os.path.exists(name_or_path)
    if looks_like_path:
        return _image_folder_source(Path(name_or_path))
    raise ValueError(
        f"unknown data set {name_or_path!r}: expected one of {', '.join(SOURCE_NAMES)} "
        "or the path of an ImageFolder tree with train/ and test/"
    )


def channel_stats(source: Source, train_images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units: the known values, else measured on ``train_images``."""
    if source.name in _STATS:
        return _STATS[source.name]
    x = train_images.float().div_(255.0)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())


# ---------------------------------------------------------------------------------- digits
def _digits_source() -> Source:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    # 0..16 grey levels -> 0..255, shape (N, 1, 8, 8)
    images = torch.from_numpy(np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    positions = np.arange(len(labels))
    train_pos, test_pos = train_test_split(
        positions, test_size=0.25, stratify=bunch.target, random_state=0, shuffle=True
    )
    train_pos, test_pos = torch.from_numpy(np.sort(train_pos)), torch.from_numpy(np.sort(test_pos))
    train_images, test_images = images[train_pos], images[test_pos]
    return Source(
        name="digits",
        train=SplitSource(labels[train_pos], lambda p: train_images[p]),
        test=SplitSource(labels[test_pos], lambda p: test_images[p]),
        classes=tuple(str(k) for k in range(10)),
        fingerprint="digits-v1",
    )


# ----------------------------------------------------------------------------- torchvision
def _torchvision_source(name: str, *, root, download: bool) -> Source:
    import torchvision.datasets as tvd

    if root is None:
        raise FileNotFoundError(
            f"data set {name!r} needs a data directory (--data-dir / data_dir=); "
            "pass download=True (--download) to fetch it there"
        )
    root = os.fspath(root)
    if not download and not os.path.isdir(root):
        raise FileNotFoundError(f"data directory {root!r} does not exist; pass download=True to fetch {name!r}")

    def open_split(train: bool):
        try:
            if name == "svhn":
                return tvd.SVHN(root, split="train" if train else "test", download=download)
            cls = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100, "mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST}[name]
            return cls(root, train=train, download=download)
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
            raise FileNotFoundError(f"{name!r} not found under {root!r} ({err}); pass download=True to fetch it") from err

    def as_split(ds) -> SplitSource:
        data = ds.data
        data = torch.as_tensor(np.asarray(data))
        if data.ndim == 3:  # MNIST-like (N, H, W)
            images = data.unsqueeze(1).contiguous()
        elif data.shape[1] == 3:  # SVHN is already (N, C, H, W)
            images = data.contiguous()
        else:  # CIFAR (N, H, W, C)
            images = data.permute(0, 3, 1, 2).contiguous()
        labels = torch.as_tensor(np.asarray(getattr(ds, "targets", None) if hasattr(ds, "targets") else ds.labels), dtype=torch.int64)
        return SplitSource(labels, lambda p: images[p])

    train_ds, test_ds = open_split(True), open_split(False)
    classes = tuple(getattr(train_ds, "classes", None) or [str(k) for k in range(int(train_ds.labels.max()) + 1)])
    return Source(name, as_split(train_ds), as_split(test_ds), classes, fingerprint=f"{name}-v1")


# ----------------------------------------------------------------------------- ImageFolder
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _list_image_folder(split_dir: Path) -> tuple[list[str], list[Path], list[int]]:
    classes = sorted(d.name for d in os.scandir(split_dir) if d.is_dir())
    files: list[Path] = []
    labels: list[int] = []
    for k, cls in enumerate(classes):
        names = sorted(e.name for e in os.scandir(split_dir / cls) if e.is_file() and e.name.lower().endswith(_IMAGE_EXTENSIONS))
        files.extend(split_dir / cls / n for n in names)
        labels.extend([k] * len(names))
    return classes, files, labels


def _decode_files(files: list[Path]) -> torch.Tensor:
    from PIL import Image

    first = np.asarray(Image.open(files[0]))
    channels = 1 if first.ndim == 2 else first.shape[2]
    out = np.empty((len(files), first.shape[0], first.shape[1], channels), dtype=np.uint8)
    mode = "L" if channels == 1 else "RGB"
    for i, f in enumerate(files):
        with Image.open(f) as img:
            arr = np.asarray(img.convert(mode))
        if arr.shape[:2] != first.shape[:2]:
            raise ValueError(f"image {str(f)!r} has size {arr.shape[:2]}, expected {first.shape[:2]} like {str(files[0])!r}")
        out[i] = arr.reshape(out.shape[1:])
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _image_folder_source(path: Path) -> Source:
    if not path.is_dir():
        raise FileNotFoundError(f"ImageFolder tree {str(path)!r} does not exist")
    for split in ("train", "test"):
        if not (path / split).is_dir():
            raise ValueError(f"malformed ImageFolder tree {str(path)!r}: missing {split}/ (expected train/<class>/* and test/<class>/*)")
    splits = {}
    for split in ("train", "test"):
        classes, files, labels = _list_image_folder(path / split)
        if not files:
            raise ValueError(f"malformed ImageFolder tree {str(path)!r}: {split}/ holds no class folders with images")
        splits[split] = (classes, files, labels)
    if splits["train"][0] != splits["test"][0]:
        raise ValueError(
            f"malformed ImageFolder tree {str(path)!r}: train/ classes {splits['train'][0]} differ from test/ classes {splits['test'][0]}"
        )
    digest = hashlib.sha256()
    for split in ("train", "test"):
        for f in splits[split][1]:
            digest.update(f"{split}/{f.parent.name}/{f.name}:{f.stat().st_size}\n".encode())

    def as_split(files: list[Path], labels: list[int]) -> SplitSource:
        return SplitSource(torch.tensor(labels, dtype=torch.int64), lambda p: _decode_files([files[i] for i in p.tolist()]))

    return Source(
        name=f"imagefolder:{path.resolve()}",
        train=as_split(*splits["train"][1:]),
        test=as_split(*splits["test"][1:]),
        classes=tuple(splits["train"][0]),
        fingerprint="imagefolder-" + digest.hexdigest()[:16],
    )
