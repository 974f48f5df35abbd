"""Lightning callbacks: :class:`FastClip` (spectral-norm clipping)."""

from lightning_unlearn.callbacks.fastclip import FastClip, LayerState

__all__ = ["FastClip", "LayerState"]
