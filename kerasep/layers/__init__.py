"""Reusable, serialisable Keras layers: time-frequency transforms, masks, U-Net and LSTM blocks, Wiener filter."""
from kerasep.layers.masks import ApplyMask, RatioMask
from kerasep.layers.lstm_blocks import BinAffine, CropBins
from kerasep.layers.stft import ISTFT, STFT, Magnitude
from kerasep.layers.wiener import WienerFilter, wiener

__all__ = ["STFT", "ISTFT", "Magnitude", "RatioMask", "ApplyMask", "CropBins", "BinAffine", "WienerFilter", "wiener"]
