"""Demucs: waveform-domain U-Net separator (Défossez, Usunier, Bottou & Bach, 2019).

``depth`` encoder layers (strided ``Conv1D`` → ReLU → 1×1 ``Conv1D`` → GLU, channels ×``growth``
each layer), a 2-layer bidirectional LSTM + linear at the bottleneck, ``depth`` decoder layers
(``context`` ``Conv1D`` → GLU → ``Conv1DTranspose``, ReLU except the last) fed with the sum of
the previous layer and the centre-cropped encoder output of the same depth. The waveform is
padded (centred) to :meth:`Demucs.valid_length`, optionally upsampled ×2 with a sinc filter
before the encoder and downsampled back after the decoder, and the output is cropped to the
input length. Optionally, the input is normalised by the mean / std of its mono mix and the
output scaled back.

Two variants match the two ``Demucs`` classes of the ``demucs`` package:

- ``variant="v2"`` — demucs 2.x ``demucs.model.Demucs`` (the released v2 weights, e.g.
  ``demucs-e07c671f.th``): the decoder's rewrite convolution has kernel ``context`` and no
  padding; the input is zero-padded to the valid length *before* normalisation (as demucs 2's
  ``apply_model`` does), and always divided by ``1e-5 + std`` (``std = 1`` without
  ``normalize``).
- ``variant="v3"`` — ``demucs.demucs.Demucs`` of demucs >= 3 with its DConv branches off
  (``dconv_mode=0``): kernel ``2 * context + 1`` with ``"same"`` padding, normalisation (when
  enabled) before padding. GELU and GroupNorm (``norm_starts``/``norm_groups``) are supported.
"""
import math

from kerasep.backend import keras, tf
from kerasep.layers.glu_blocks import (
    ACTIVATIONS,
    BLSTM,
    DemucsDecoderBlock,
    DemucsEncoderBlock,
    ResampleFrac,
    center_trim,
)
from kerasep.models.separator import ChunkPolicy, Separator

VARIANTS = ("v2", "v3")


@keras.saving.register_keras_serializable(package="kerasep")
class Demucs(Separator):
    """Waveform → stems with a Demucs (v2) waveform U-Net.

    Args:
        targets: source names in the order of the model's outputs, e.g.
            ``["drums", "bass", "other", "vocals"]``.
        nb_channels: audio channels (2).
        sample_rate: audio rate the model was trained at, in Hz (metadata; inputs must have it).
        channels: channels of the first encoder layer (64 for the released v2 model).
        growth: channel multiplier from one encoder layer to the next (2).
        depth: number of encoder (and decoder) layers (6).
        kernel_size, stride: the strided (transposed) convolutions (8, 4).
        context: decoder rewrite kernel (``"v2"``) or half-width (``"v3"``), see the module doc.
        lstm_layers: bidirectional LSTM layers at the bottleneck (2; 0 for none).
        rewrite: add the 1×1 / context convolutions (+ GLU).
        glu: gate the rewrite convolutions with a GLU (else ReLU).
        resample: upsample the input ×2 with a sinc filter, downsample the output back.
        normalize: normalise the input by its mono mix's mean and std, scale the output back.
        rescale: at initialisation, rescale each convolution so that its weight std moves
            towards ``rescale`` (0.1, as demucs); 0 to keep the default init.
        activation: ``"relu"`` (v2) or ``"gelu"``.
        norm_starts, norm_groups: GroupNorm with ``norm_groups`` groups in layers ``>=
            norm_starts`` (``variant="v3"`` only; default: no norm).
        variant: ``"v2"`` or ``"v3"`` (see the module doc).
        segment_seconds: length of the segments :func:`kerasep.separate` feeds the model (10 s).
        segment_overlap: fraction of a segment shared by consecutive segments, cross-faded
            linearly (0.25).

    Input shape:
        ``(batch, nb_channels, nb_timesteps)`` float32 waveform at ``sample_rate``, any length.

    Output:
        ``{target: (batch, nb_channels, nb_timesteps)}`` for each of ``targets``.

    Sublayers (named for converters): ``upsample``, ``encoder_{i}`` (:class:`~kerasep.layers.
    glu_blocks.DemucsEncoderBlock`), ``lstm`` (:class:`~kerasep.layers.glu_blocks.BLSTM`),
    ``decoder_{i}`` (:class:`~kerasep.layers.glu_blocks.DemucsDecoderBlock`, ``decoder_0`` the
    innermost, as demucs' ``decoder`` list), ``downsample``.
    """

    def __init__(
        self,
        targets=("drums", "bass", "other", "vocals"),
        nb_channels=2,
        sample_rate=44100,
        channels=64,
        growth=2.0,
        depth=6,
        kernel_size=8,
        stride=4,
        context=3,
        lstm_layers=2,
        rewrite=True,
        glu=True,
        resample=True,
        normalize=False,
        rescale=0.1,
        activation="relu",
        norm_starts=None,
        norm_groups=4,
        variant="v2",
        segment_seconds=10.0,
        segment_overlap=0.25,
        **kwargs,
    ):
        super().__init__(**kwargs)
        targets = list(targets)
        if not targets or len(set(targets)) != len(targets):
            raise ValueError(f"`targets` must be distinct names, at least one. Received: targets={targets}")
        if variant not in VARIANTS:
            raise ValueError(f"`variant` must be one of {VARIANTS}. Received: variant={variant!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"`activation` must be one of {ACTIVATIONS}. Received: activation={activation!r}")
        for label, value in (("nb_channels", nb_channels), ("channels", channels), ("depth", depth),
                             ("kernel_size", kernel_size), ("stride", stride), ("context", context)):
            if int(value) != value or value < 1:
                raise ValueError(f"`{label}` must be a positive integer. Received: {label}={value}")
        if stride > kernel_size:
            raise ValueError(f"`stride` must be <= `kernel_size`. Received: stride={stride}, kernel_size={kernel_size}")
        if growth <= 0:
            raise ValueError(f"`growth` must be > 0. Received: growth={growth}")
        if norm_starts is not None and variant != "v3":
            raise ValueError("GroupNorm (`norm_starts`) exists only in variant='v3'.")
        if not 0 <= segment_overlap < 1 or segment_seconds <= 0:
            raise ValueError(
                f"need segment_seconds > 0 and 0 <= segment_overlap < 1. Received: "
                f"segment_seconds={segment_seconds}, segment_overlap={segment_overlap}"
            )
        self.targets = targets
        self.nb_channels = int(nb_channels)
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.growth = float(growth)
        self.depth = int(depth)
        self.kernel_size, self.stride, self.context = int(kernel_size), int(stride), int(context)
        self.lstm_layers = int(lstm_layers)
        self.rewrite, self.glu = bool(rewrite), bool(glu)
        self.resample, self.normalize = bool(resample), bool(normalize)
        self.rescale = float(rescale)
        self.activation = activation
        self.norm_starts = None if norm_starts is None else int(norm_starts)
        self.norm_groups = int(norm_groups)
        self.variant = variant
        self.segment_seconds = float(segment_seconds)
        self.segment_overlap = float(segment_overlap)

        # === Layers ===
        ctx_kernel = self.context if variant == "v2" else 2 * self.context + 1
        ctx_padding = "valid" if variant == "v2" else "same"
        self.upsample = ResampleFrac(1, 2, name="upsample") if self.resample else None
        self.encoder, decoder = [], []
        in_ch, ch = self.nb_channels, self.channels
        self.layer_channels = []
        for index in range(self.depth):
            groups = self.norm_groups if self.norm_starts is not None and index >= self.norm_starts else 0
            self.encoder.append(DemucsEncoderBlock(
                in_ch, ch, self.kernel_size, self.stride, self.rewrite, self.glu, activation, groups,
                name=f"encoder_{index}",
            ))
            out_ch = in_ch if index > 0 else len(targets) * self.nb_channels
            decoder.insert(0, (ch, out_ch, groups, index == 0))
            self.layer_channels.append(ch)
            in_ch, ch = ch, int(self.growth * ch)
        self.bottleneck_channels = in_ch
        self.lstm = BLSTM(in_ch, self.lstm_layers, name="lstm") if self.lstm_layers else None
        self.decoder = [
            DemucsDecoderBlock(c, o, self.kernel_size, self.stride, ctx_kernel, ctx_padding, self.rewrite,
                               self.glu, activation, g, last, name=f"decoder_{j}")
            for j, (c, o, g, last) in enumerate(decoder)
        ]
        self.downsample = ResampleFrac(2, 1, name="downsample") if self.resample else None

    @property
    def chunking(self):
        """Segments of ``segment_seconds`` overlapping by ``segment_overlap``, cross-faded
        linearly (demucs' ``apply_model`` with ``split=True``)."""
        return ChunkPolicy("segment", segment_seconds=self.segment_seconds, overlap=self.segment_overlap)

    # --- lengths -------------------------------------------------------------------------------

    def valid_length(self, length):
        """The padded length the model runs on for an input of ``length`` samples.

        Every strided convolution then consumes its whole input, and the output (before the
        final crop) is at least ``length`` long. ``length`` may be an int or an int32 tensor.
        """
        def ceil_div(a, b):
            # (a + b - 1) // b, not -(-a // b): integer division of negatives differs between
            # TensorFlow (floor) and ONNX (truncation); a < 0 only when clipped to 1 below.
            return (a + b - 1) // b

        if self.resample:
            length = length * 2
        for _ in range(self.depth):
            length = ceil_div(length - self.kernel_size, self.stride) + 1
            length = tf.maximum(1, length) if tf.is_tensor(length) else max(1, length)
            if self.variant == "v2":
                length = length + self.context - 1
        for _ in range(self.depth):
            length = (length - 1) * self.stride + self.kernel_size
        if self.resample:
            length = ceil_div(length, 2)
        return length

    # --- Keras ---------------------------------------------------------------------------------

    def build(self, input_shape=None):
        for block in self.encoder:
            block.build(None)
        if self.lstm is not None:
            self.lstm.build(None)
        for block in self.decoder:
            block.build(None)
        if not self.built and self.rescale:
            self._rescale_init(self.rescale)
        super().build(input_shape)

    def _rescale_init(self, reference):
        """demucs' ``rescale_module``: divide each (transposed) convolution's kernel and bias by
        ``sqrt(std(kernel) / reference)`` (unbiased std, as torch)."""
        convs = []
        for block in self.encoder:
            convs += [block.conv, block.rewrite_conv]
        for block in self.decoder:
            convs += [block.rewrite_conv, block.conv_tr]
        for conv in convs:
            if conv is None:
                continue
            k = tf.convert_to_tensor(conv.kernel)
            n = tf.cast(tf.size(k), tf.float32)
            if int(n) < 2:
                continue
            var = tf.reduce_sum(tf.square(k - tf.reduce_mean(k))) / (n - 1.0)
            scale = tf.sqrt(tf.sqrt(var) / reference)
            conv.kernel.assign(k / scale)
            conv.bias.assign(tf.convert_to_tensor(conv.bias) / scale)

    def call(self, waveform, training=False):
        x = tf.convert_to_tensor(waveform, tf.float32)  # (batch, nb_channels, nb_timesteps)
        length = tf.shape(x)[2]
        delta = self.valid_length(length) - length
        pad = [[0, 0], [0, 0], [delta // 2, delta - delta // 2]]
        if self.variant == "v2":
            x = tf.pad(x, pad)
            x, mean, std = self._normalize(x)
            x = (x - mean) / (1e-5 + std)
        else:
            x, mean, std = self._normalize(x)
            if self.normalize:
                x = (x - mean) / (1e-5 + std)
            x = tf.pad(x, pad)
        x = tf.transpose(x, [0, 2, 1])  # (batch, nb_timesteps, nb_channels): channels last
        if self.upsample is not None:
            x = self.upsample(x)
        saved = []
        for block in self.encoder:
            x = block(x)
            saved.append(x)
        if self.lstm is not None:
            x = self.lstm(x)
        for block in self.decoder:
            skip = center_trim(saved.pop(-1), tf.shape(x)[1])
            x = block(x + skip)
        if self.downsample is not None:
            x = self.downsample(x)
        # x: (batch, nb_frames, nb_targets * nb_channels); demucs' view(B, S, C, T) order.
        x = tf.transpose(center_trim(x, length), [0, 2, 1])  # (batch, nb_targets * nb_channels, T)
        x = x * std + mean
        shape = tf.shape(x)
        x = tf.reshape(x, [shape[0], len(self.targets), self.nb_channels, shape[2]])
        return {t: x[:, i] for i, t in enumerate(self.targets)}

    def _normalize(self, x):
        """``(x, mean, std)`` of the mono mix over time (unbiased std), ``(batch, 1, 1)``; 0 and 1
        when ``normalize`` is off."""
        if not self.normalize:
            return x, tf.constant(0.0), tf.constant(1.0)
        mono = tf.reduce_mean(x, axis=1, keepdims=True)
        mean = tf.reduce_mean(mono, axis=2, keepdims=True)
        n = tf.cast(tf.shape(mono)[2], x.dtype)
        var = tf.reduce_sum(tf.square(mono - mean), axis=2, keepdims=True) / tf.maximum(n - 1.0, 1.0)
        return x, mean, tf.sqrt(var)

    def get_config(self):
        config = super().get_config()
        config.update(
            targets=self.targets,
            nb_channels=self.nb_channels,
            sample_rate=self.sample_rate,
            channels=self.channels,
            growth=self.growth,
            depth=self.depth,
            kernel_size=self.kernel_size,
            stride=self.stride,
            context=self.context,
            lstm_layers=self.lstm_layers,
            rewrite=self.rewrite,
            glu=self.glu,
            resample=self.resample,
            normalize=self.normalize,
            rescale=self.rescale,
            activation=self.activation,
            norm_starts=self.norm_starts,
            norm_groups=self.norm_groups,
            variant=self.variant,
            segment_seconds=self.segment_seconds,
            segment_overlap=self.segment_overlap,
        )
        return config
