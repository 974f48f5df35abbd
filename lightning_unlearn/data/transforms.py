"""Batched tensor transforms that run on the model's device.

Images travel through data loaders as ``uint8`` ``(B, C, H, W)`` (or ``float32`` in
``[0, 1]`` for generated samples such as adversarial examples); models see ``float32``
pixels in ``[0, 1]``. Normalisation is a module inside the model, never here.
"""

from __future__ import annotations

import torch

from lightning_unlearn.seeding import derive_seed


def to_pixels(x: torch.Tensor) -> torch.Tensor:
    """``uint8`` -> ``float32`` in ``[0, 1]``; floating input is returned as ``float32`` unchanged."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()


def random_crop_flip(
    x: torch.Tensor,
    *,
    padding: int = 4,
    flip: bool = True,
    generator: torch.Generator | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, batched, without Python loops.

    Args:
        x: ``(B, C, H, W)`` float pixels.
        padding: pixels of zero padding on each side before the ``H x W`` crop.
        flip: also flip each image horizontally with probability 1/2.
        generator: source of randomness (on ``x.device``); the global RNG when ``None``.
        mask: optional ``bool`` ``(B,)``; only samples where it is true are augmented.

    Returns:
        A new ``(B, C, H, W)`` tensor.
    """
    b, c, h, w = x.shape
    if b == 0:
        return x
    dev = x.device
    off_y = torch.randint(0, 2 * padding + 1, (b,), device=dev, generator=generator)
    off_x = torch.randint(0, 2 * padding + 1, (b,), device=dev, generator=generator)
    do_flip = torch.rand(b, device=dev, generator=generator) < 0.5 if flip else torch.zeros(b, dtype=torch.bool, device=dev)
    if mask is not None:
        mask = mask.to(dev, torch.bool)
        off_y = torch.where(mask, off_y, torch.full_like(off_y, padding))
        off_x = torch.where(mask, off_x, torch.full_like(off_x, padding))
        do_flip = do_flip & mask
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    rows = off_y[:, None] + torch.arange(h, device=dev)  # (B, H)
    cols_base = torch.arange(w, device=dev)
    cols = torch.where(do_flip[:, None], w - 1 - cols_base, cols_base) + off_x[:, None]  # (B, W)
    batch = torch.arange(b, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def batch_generator(seed: int, epoch: int, batch_idx: int, rank: int, device: torch.device) -> torch.Generator:
    """A generator on ``device`` keyed by ``(seed, epoch, batch_idx, rank)``.

    Augmentation drawn from it depends only on where the batch sits in training, so a run
    resumed from a checkpoint sees the same augmentations as an uninterrupted one (the global
    RNG state is not checkpointed). Independent streams pass independent seeds
    (:func:`lightning_unlearn.seeding.derive_seed`).
    """
    return torch.Generator(device=device).manual_seed(derive_seed(seed, "augmentation", epoch, batch_idx, rank))


#: The augmentation names every entry point accepts (command line, ``BenchmarkConfig``, the
#: data module, the classifier, unlearning requests); ``None`` means ``"none"``.
AUGMENTATIONS = ("auto", "crop_flip", "none")


def normalize_augmentation(value: str | None, *, allow_auto: bool = False) -> str | None:
    """The one spelling of an augmentation setting: ``"crop_flip"``, ``"auto"`` (where allowed) or ``None``.

    ``"none"`` and ``None`` both mean no augmentation and give ``None``.

    Raises:
        ValueError: naming the value and the allowed ones.
    """
    allowed = AUGMENTATIONS if allow_auto else tuple(a for a in AUGMENTATIONS if a != "auto")
    if value is None or value == "none":
        return None
    if value in allowed:
        return value
    raise ValueError(f"unknown augmentation {value!r}: expected one of {', '.join(map(repr, allowed))} (or None, the same as 'none')")


def default_augmentation(image_shape: tuple[int, ...]) -> str | None:
    """The library's default augmentation for an image shape: crop+flip for RGB >= 32x32, none otherwise."""
    c, h, w = image_shape
    return "crop_flip" if (c == 3 and h >= 32 and w >= 32) else None


def resolve_augmentation(value: str | None, image_shape: tuple[int, ...]) -> str | None:
    """An augmentation setting (``"auto"``, ``"crop_flip"``, ``"none"`` / ``None``) as applied to images of ``image_shape``.

    ``"auto"`` is :func:`default_augmentation` of the shape (crop+flip for RGB images of 32x32
    or more, none otherwise); the other values are returned in their one spelling
    (:func:`normalize_augmentation`: ``"crop_flip"`` or ``None``).

    Raises:
        ValueError: an unknown value, naming it and the allowed ones.

    Example:
        >>> resolve_augmentation("auto", (3, 32, 32)), resolve_augmentation("auto", (1, 8, 8)), resolve_augmentation("none", (3, 32, 32))
        ('crop_flip', None, None)
    """
    kind = normalize_augmentation(value, allow_auto=True)
    return default_augmentation(image_shape) if kind == "auto" else kind


def augment(x: torch.Tensor, kind: str | None, *, generator: torch.Generator | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Apply the named augmentation (``"crop_flip"``, or ``"none"`` / ``None``) to float pixels."""
    kind = normalize_augmentation(kind)
    if kind is None:
        return x
    return random_crop_flip(x, generator=generator, mask=mask)
