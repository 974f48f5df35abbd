"""Lightning callbacks: :class:`FastClip` (spectral-norm clipping) and its event record :class:`ClipRecord`."""

from lightning_unlearn.callbacks.fastclip import FastClip, LayerState
from lightning_unlearn.callbacks.fastclip_events import ClipRecord

__all__ = ["ClipRecord", "FastClip", "LayerState"]
