"""Reusable, serialisable Keras layers: time-frequency transforms, masks, U-Net blocks."""
from kerasep.layers.masks import ApplyMask, RatioMask
from kerasep.layers.stft import ISTFT, STFT, Magnitude

__all__ = ["STFT", "ISTFT", "Magnitude", "RatioMask", "ApplyMask"]
