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

# Hybrid Transformer Demucs (v4) blocks
from kerasep.layers.htdemucs_blocks import (  # noqa: E402
    DConv,
    GroupNorm,
    HDecoderBlock,
    HEncoderBlock,
    HTInverseSpectrogram,
    HTSpectrogram,
    LayerScale,
    ScaledEmbedding,
)
from kerasep.layers.transformer_blocks import (  # noqa: E402
    CrossAttentionEncoderLayer,
    CrossTransformer,
    TransformerEncoderLayer,
)

__all__ += ["DConv", "GroupNorm", "HEncoderBlock", "HDecoderBlock", "HTSpectrogram", "HTInverseSpectrogram",
            "LayerScale", "ScaledEmbedding", "CrossTransformer", "TransformerEncoderLayer",
            "CrossAttentionEncoderLayer"]

# band-split RoFormer blocks (BS-RoFormer, Mel-Band RoFormer)
from kerasep.layers.band_split import BandSplit, MaskEstimator, RMSNorm  # noqa: E402
from kerasep.layers.roformer_blocks import (  # noqa: E402
    AxialRoformer,
    RoformerAttention,
    RoformerFeedForward,
    RoformerTransformer,
)

__all__ += ["RMSNorm", "BandSplit", "MaskEstimator", "AxialRoformer", "RoformerAttention", "RoformerFeedForward",
            "RoformerTransformer"]
