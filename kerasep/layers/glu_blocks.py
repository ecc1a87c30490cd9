"""Waveform U-Net blocks of Demucs (Défossez et al. 2019): GLU, encoder/decoder blocks, the
BLSTM bottleneck, band-limited sinc resampling and centre trimming.

Every layer here works on **channels-last** sequences ``(batch, nb_timesteps, channels)``
(Keras' ``Conv1D`` layout); :class:`kerasep.models.Demucs` transposes the waveform
``(batch, nb_channels, nb_timesteps)`` once on the way in and once on the way out.
"""
import math

import numpy as np

from kerasep.backend import keras, tf
from kerasep.layers.lstm_blocks import fused_lstms, lstm_directions_inference

ACTIVATIONS = ("relu", "gelu")


def _activation(name):
    if name == "relu":
        return tf.nn.relu
    if name == "gelu":  # exact (erf) GELU, as torch.nn.GELU()
        return lambda x: tf.nn.gelu(x, approximate=False)
    raise ValueError(f"`activation` must be one of {ACTIVATIONS}. Received: activation={name!r}")


def center_trim(x, length):
    """Keep the centre ``length`` steps of ``x`` ``(batch, nb_timesteps, channels)``.

    When the surplus is odd, the extra step is dropped on the right (as demucs does).
    ``length`` may be a Python int or a scalar tensor; it must not exceed ``x``'s length.
    """
    delta = tf.shape(x)[1] - length
    start = delta // 2
    return x[:, start : start + length]


@keras.saving.register_keras_serializable(package="kerasep")
class CenterTrim(keras.layers.Layer):
    """Centre-crop ``x`` to the length of ``reference`` (both channels-last sequences).

    Call: ``CenterTrim()([x, reference])`` → ``x`` cropped to ``reference``'s ``nb_timesteps``.
    """

    def call(self, inputs):
        x, reference = inputs
        return center_trim(x, tf.shape(reference)[1])


def glu(x, axis=-1):
    """``a * sigmoid(b)`` with ``a, b`` the two halves of ``x`` along ``axis`` (torch ``F.glu``)."""
    a, b = tf.split(x, 2, axis=axis)
    return a * tf.sigmoid(b)


@keras.saving.register_keras_serializable(package="kerasep")
class GLU(keras.layers.Layer):
    """Gated linear unit: splits the channel axis in halves ``a, b`` → ``a * sigmoid(b)``.

    Input shape: ``(..., 2 * channels)``; output shape: ``(..., channels)``.
    """

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def call(self, x):
        return glu(x, self.axis)

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        if shape[self.axis] is not None:
            if shape[self.axis] % 2:
                raise ValueError(f"GLU needs an even size on axis {self.axis}. Received: {input_shape}")
            shape[self.axis] //= 2
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update(axis=self.axis)
        return config


def sinc_resample_kernels(old_sr, new_sr, zeros=24, rolloff=0.945):
    """Windowed-sinc polyphase filters resampling by ``new_sr / old_sr`` (reduced fraction).

    The filters of J. O. Smith's bandlimited interpolation as julius' ``ResampleFrac`` builds
    them: cut-off ``rolloff * min(old_sr, new_sr) / 2``, ``zeros`` zero crossings, Hann-squared
    window, each phase normalised to unit DC gain.

    Returns:
        ``(kernels, width)``: float64 array ``(new_sr, 2 * width + old_sr)`` and the half width.
    """
    sr = min(old_sr, new_sr) * rolloff
    width = math.ceil(zeros * old_sr / sr)
    idx = np.arange(-width, width + old_sr, dtype=np.float64)
    kernels = []
    for i in range(new_sr):
        t = np.clip((-i / new_sr + idx / old_sr) * sr, -zeros, zeros) * math.pi
        window = np.cos(t / zeros / 2) ** 2
        safe = np.where(t == 0, 1.0, t)
        kernel = np.where(t == 0, 1.0, np.sin(safe) / safe) * window
        kernels.append(kernel / kernel.sum())
    return np.stack(kernels), width


@keras.saving.register_keras_serializable(package="kerasep")
class ResampleFrac(keras.layers.Layer):
    """Band-limited sinc resampling by a small fraction ``new_sr / old_sr`` along time.

    Same algorithm and output as ``julius.resample_frac(x, old_sr, new_sr, zeros, rolloff)``:
    the signal is extended by repeating its edge samples, filtered by ``new_sr`` polyphase
    windowed-sinc filters with stride ``old_sr``, and cut to ``floor(new_sr * nb_timesteps /
    old_sr)`` samples. Channels are resampled independently. No trainable weights.

    Args:
        old_sr, new_sr: input and output rates (integers; only their ratio matters).
        zeros: zero crossings of the sinc kept in the filter (24).
        rolloff: cut-off as a fraction of the lower Nyquist frequency (0.945).

    Input shape: ``(batch, nb_timesteps, channels)``.
    Output shape: ``(batch, floor(nb_timesteps * new_sr / old_sr), channels)``.
    """

    def __init__(self, old_sr, new_sr, zeros=24, rolloff=0.945, **kwargs):
        super().__init__(**kwargs)
        if int(old_sr) != old_sr or int(new_sr) != new_sr or old_sr <= 0 or new_sr <= 0:
            raise ValueError(
                f"`old_sr` and `new_sr` must be positive integers. Received: old_sr={old_sr}, new_sr={new_sr}"
            )
        if zeros < 1 or not 0 < rolloff <= 1:
            raise ValueError(f"need zeros >= 1 and 0 < rolloff <= 1. Received: zeros={zeros}, rolloff={rolloff}")
        self.old_sr, self.new_sr = int(old_sr), int(new_sr)
        self.zeros, self.rolloff = int(zeros), float(rolloff)
        gcd = math.gcd(self.old_sr, self.new_sr)
        self._old, self._new = self.old_sr // gcd, self.new_sr // gcd
        if self._old != self._new:
            kernels, self._width = sinc_resample_kernels(self._old, self._new, self.zeros, self.rolloff)
            # Conv1D kernel (filter_width, 1, new_sr): output channel i is polyphase filter i. Kept
            # as numpy and made a constant inside `call`, so traced graphs embed it (a captured
            # eager tensor would become an extra graph input, e.g. for tf2onnx).
            self._kernel = np.ascontiguousarray(kernels.T[:, None, :].astype(np.float32))

    def call(self, x):
        if self._old == self._new:
            return x
        shape = tf.shape(x)
        batch, length, channels = shape[0], shape[1], shape[2]
        y = tf.reshape(tf.transpose(x, [0, 2, 1]), [-1, length, 1])  # (batch * channels, T, 1)
        w = self._width
        y = tf.concat(
            [tf.repeat(y[:, :1], w, axis=1), y, tf.repeat(y[:, -1:], w + self._old, axis=1)], axis=1
        )
        y = tf.nn.conv1d(y, tf.constant(self._kernel), stride=self._old, padding="VALID")  # (B*C, frames, new)
        out_len = (length * self._new) // self._old
        y = tf.reshape(y, [batch, channels, -1])[:, :, :out_len]
        return tf.transpose(y, [0, 2, 1])

    def compute_output_shape(self, input_shape):
        n = input_shape[1]
        n = None if n is None else (n * self._new) // self._old
        return (input_shape[0], n, input_shape[2])

    def get_config(self):
        config = super().get_config()
        config.update(old_sr=self.old_sr, new_sr=self.new_sr, zeros=self.zeros, rolloff=self.rolloff)
        return config


def Upsample2(zeros=24, rolloff=0.945, **kwargs):
    """×2 sinc upsampling (``julius.resample_frac(x, 1, 2)``): a :class:`ResampleFrac`."""
    return ResampleFrac(1, 2, zeros=zeros, rolloff=rolloff, **kwargs)


def Downsample2(zeros=24, rolloff=0.945, **kwargs):
    """÷2 sinc downsampling (``julius.resample_frac(x, 2, 1)``): a :class:`ResampleFrac`."""
    return ResampleFrac(2, 1, zeros=zeros, rolloff=rolloff, **kwargs)


def _torch_like_init(fan_in):
    """PyTorch's default conv init: kernel U(±1/sqrt(fan_in)) (kaiming_uniform, a=sqrt(5)),
    bias U(±1/sqrt(fan_in)); keras derives the same kernel fan-in for Conv1D/Conv1DTranspose."""
    bound = 1.0 / math.sqrt(fan_in)
    return dict(
        kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
        bias_initializer=keras.initializers.RandomUniform(-bound, bound),
    )


@keras.saving.register_keras_serializable(package="kerasep")
class DemucsEncoderBlock(keras.layers.Layer):
    """One Demucs encoder layer: ``Conv1D(kernel_size, stride)`` → [GroupNorm] → ReLU (or GELU)
    → [1×1 ``Conv1D`` to ``2 * channels`` → [GroupNorm] → GLU] (the bracketed "rewrite" part).

    Args:
        in_channels, channels: input and output channels.
        kernel_size, stride: the strided convolution (8, 4).
        rewrite: add the 1×1 convolution + GLU (or ReLU when ``glu=False``).
        glu: gate the rewrite with a GLU (it then outputs ``2 * channels`` before gating).
        activation: ``"relu"`` (Demucs v2) or ``"gelu"``.
        norm_groups: 0 for none (v2), else GroupNorm groups after each convolution.

    Input shape: ``(batch, nb_timesteps, in_channels)``.
    Output shape: ``(batch, (nb_timesteps - kernel_size) // stride + 1, channels)``.

    Sublayers (converters map by these names): ``conv``, ``norm1``, ``rewrite``, ``norm2``.
    """

    def __init__(self, in_channels, channels, kernel_size=8, stride=4, rewrite=True, glu=True,
                 activation="relu", norm_groups=0, **kwargs):
        super().__init__(**kwargs)
        _activation(activation)
        self.in_channels, self.channels = int(in_channels), int(channels)
        self.kernel_size, self.stride = int(kernel_size), int(stride)
        self.rewrite, self.glu = bool(rewrite), bool(glu)
        self.activation, self.norm_groups = activation, int(norm_groups)
        self.conv = keras.layers.Conv1D(
            channels, kernel_size, strides=stride, name="conv", **_torch_like_init(in_channels * kernel_size)
        )
        self.norm1 = self._norm("norm1")
        if rewrite:
            scale = 2 if glu else 1
            self.rewrite_conv = keras.layers.Conv1D(scale * channels, 1, name="rewrite", **_torch_like_init(channels))
            self.norm2 = self._norm("norm2")
        else:
            self.rewrite_conv = self.norm2 = None

    def _norm(self, name):
        if not self.norm_groups:
            return None
        return keras.layers.GroupNormalization(self.norm_groups, axis=-1, epsilon=1e-5, name=name)

    def build(self, input_shape):
        self.conv.build((None, None, self.in_channels))
        if self.norm1 is not None:
            self.norm1.build((None, None, self.channels))
        if self.rewrite_conv is not None:
            self.rewrite_conv.build((None, None, self.channels))
            if self.norm2 is not None:
                self.norm2.build((None, None, self.rewrite_conv.filters))
        self.built = True

    def call(self, x):
        x = self.conv(x)
        if self.norm1 is not None:
            x = self.norm1(x)
        x = _activation(self.activation)(x)
        if self.rewrite_conv is not None:
            x = self.rewrite_conv(x)
            if self.norm2 is not None:
                x = self.norm2(x)
            x = glu(x) if self.glu else tf.nn.relu(x)
        return x

    def get_config(self):
        config = super().get_config()
        config.update(in_channels=self.in_channels, channels=self.channels, kernel_size=self.kernel_size,
                      stride=self.stride, rewrite=self.rewrite, glu=self.glu, activation=self.activation,
                      norm_groups=self.norm_groups)
        return config


@keras.saving.register_keras_serializable(package="kerasep")
class DemucsDecoderBlock(keras.layers.Layer):
    """One Demucs decoder layer: [``Conv1D(context)`` to ``2 * channels`` → [GroupNorm] → GLU]
    → ``Conv1DTranspose(kernel_size, stride)`` → [GroupNorm → ReLU/GELU unless ``last``].

    Args:
        channels, out_channels: input and output channels.
        kernel_size, stride: the transposed convolution (8, 4).
        context: kernel size of the rewrite convolution.
        context_padding: ``"valid"`` (Demucs v2: the sequence shrinks by ``context - 1``) or
            ``"same"`` (demucs >= 3's ``Demucs``: kernel ``2 * c + 1`` padded by ``c``).
        rewrite, glu, activation, norm_groups: as :class:`DemucsEncoderBlock`.
        last: the outermost decoder layer (no norm, no activation: it outputs the sources).

    Input shape: ``(batch, nb_frames, channels)``.
    Output shape: ``(batch, (nb_frames' - 1) * stride + kernel_size, out_channels)`` with
    ``nb_frames' = nb_frames - context + 1`` for ``"valid"``, ``nb_frames`` for ``"same"``.

    Sublayers: ``rewrite``, ``norm1``, ``conv_tr``, ``norm2``.
    """

    def __init__(self, channels, out_channels, kernel_size=8, stride=4, context=3, context_padding="valid",
                 rewrite=True, glu=True, activation="relu", norm_groups=0, last=False, **kwargs):
        super().__init__(**kwargs)
        _activation(activation)
        if context_padding not in ("valid", "same"):
            raise ValueError(f"`context_padding` must be 'valid' or 'same'. Received: {context_padding!r}")
        if context_padding == "same" and context % 2 == 0:
            raise ValueError(f"'same' context padding needs an odd `context`. Received: context={context}")
        self.channels, self.out_channels = int(channels), int(out_channels)
        self.kernel_size, self.stride = int(kernel_size), int(stride)
        self.context, self.context_padding = int(context), context_padding
        self.rewrite, self.glu = bool(rewrite), bool(glu)
        self.activation, self.norm_groups, self.last = activation, int(norm_groups), bool(last)
        if rewrite:
            scale = 2 if glu else 1
            self.rewrite_conv = keras.layers.Conv1D(
                scale * channels, context, padding=context_padding, name="rewrite",
                **_torch_like_init(channels * context),
            )
            self.norm1 = self._norm("norm1")
        else:
            self.rewrite_conv = self.norm1 = None
        self.conv_tr = keras.layers.Conv1DTranspose(
            out_channels, kernel_size, strides=stride, padding="valid", name="conv_tr",
            **_torch_like_init(out_channels * kernel_size),
        )
        self.norm2 = None if last else self._norm("norm2")

    _norm = DemucsEncoderBlock._norm

    def build(self, input_shape):
        if self.rewrite_conv is not None:
            self.rewrite_conv.build((None, None, self.channels))
            if self.norm1 is not None:
                self.norm1.build((None, None, self.rewrite_conv.filters))
        self.conv_tr.build((None, None, self.channels))
        if self.norm2 is not None:
            self.norm2.build((None, None, self.out_channels))
        self.built = True

    def call(self, x):
        if self.rewrite_conv is not None:
            x = self.rewrite_conv(x)
            if self.norm1 is not None:
                x = self.norm1(x)
            x = glu(x) if self.glu else tf.nn.relu(x)
        x = self.conv_tr(x)
        if not self.last:
            if self.norm2 is not None:
                x = self.norm2(x)
            x = _activation(self.activation)(x)
        return x

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, out_channels=self.out_channels, kernel_size=self.kernel_size,
                      stride=self.stride, context=self.context, context_padding=self.context_padding,
                      rewrite=self.rewrite, glu=self.glu, activation=self.activation,
                      norm_groups=self.norm_groups, last=self.last)
        return config


@keras.saving.register_keras_serializable(package="kerasep")
class BLSTM(keras.layers.Layer):
    """Demucs' bottleneck: ``layers`` stacked bidirectional LSTMs with ``dim`` units per direction,
    then a linear map ``2 * dim → dim``.

    Input/output shape: ``(batch, nb_frames, dim)``.

    Sublayers: ``lstm_{i}`` (``keras.layers.Bidirectional``, concatenated forward/backward
    outputs) and ``linear``. At inference the LSTMs' weights run through
    :func:`~kerasep.layers.lstm_blocks.lstm_directions_inference` (input projections in one matmul,
    both directions in one frame loop), except inside
    :func:`~kerasep.layers.lstm_blocks.keras_lstm_graphs` (the ONNX export).
    """

    def __init__(self, dim, layers=2, **kwargs):
        super().__init__(**kwargs)
        if layers < 1:
            raise ValueError(f"`layers` must be >= 1. Received: layers={layers}")
        self.dim, self.layers = int(dim), int(layers)
        self.lstms = [
            keras.layers.Bidirectional(keras.layers.LSTM(dim, return_sequences=True), name=f"lstm_{i}")
            for i in range(layers)
        ]
        self.linear = keras.layers.Dense(dim, name="linear")

    def build(self, input_shape):
        size = self.dim
        for lstm in self.lstms:
            lstm.build((None, None, size))
            size = 2 * self.dim
        self.linear.build((None, None, 2 * self.dim))
        self.built = True

    def call(self, x, training=False):
        if fused_lstms(training):  # inference: input projections before the loop, both directions in one
            for lstm in self.lstms:
                x = lstm_directions_inference([x], [[(lstm.forward_layer, False), (lstm.backward_layer, True)]])[0]
        else:
            for lstm in self.lstms:
                x = lstm(x, training=training)
        return self.linear(x)

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, layers=self.layers)
        return config
