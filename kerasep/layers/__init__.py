"""Reusable, serialisable Keras layers: time-frequency transforms, masks, U-Net, LSTM and Demucs (GLU) blocks, sinc resampling, Wiener filter."""
from kerasep.layers.masks import ApplyMask, RatioMask
from kerasep.layers.glu_blocks import (
    BLSTM,
    GLU,
    CenterTrim,
    DemucsDecoderBlock,
    DemucsEncoderBlock,
    Downsample2,
    ResampleFrac,
    Upsample2,
)
from kerasep.layers.lstm_blocks import BinAffine, CropBins
from kerasep.layers.stft import ISTFT, STFT, Magnitude
from kerasep.layers.wiener import WienerFilter, wiener

__all__ = ["STFT", "ISTFT", "Magnitude", "RatioMask", "ApplyMask", "CropBins", "BinAffine", "WienerFilter", "wiener",
           "GLU", "BLSTM", "CenterTrim", "DemucsEncoderBlock", "DemucsDecoderBlock", "ResampleFrac",
           "Upsample2", "Downsample2"]
