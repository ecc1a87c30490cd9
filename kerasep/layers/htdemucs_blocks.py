"""Blocks of Hybrid (Transformer) Demucs (Défossez 2021; Rouard, Massa & Défossez 2023).

Layouts (all **channels-last**, the layout of Keras' convolutions):

- frequency branch: ``(batch, nb_bins, nb_frames, channels)``; frequency convolutions are
  ``Conv2D`` with kernels ``(k, 1)`` (along frequency only);
- time branch: ``(batch, nb_timesteps, channels)``, ``Conv1D``;
- spectrograms (:class:`HTSpectrogram`, in :mod:`kerasep.layers.htdemucs_spec`):
  ``(batch, nb_channels, nb_bins, nb_frames, 2)`` with ``(real, imag)`` last (the kerasep
  complex layout).

:class:`kerasep.models.HTDemucs` assembles them; the sublayer names listed in each docstring are
the ones :mod:`kerasep.zoo.converters.htdemucs` maps demucs' tensors onto.
"""
from kerasep.backend import keras, tf
from kerasep.layers.glu_blocks import _torch_like_init, glu
from kerasep.layers.htdemucs_spec import HTInverseSpectrogram, HTSpectrogram  # noqa: F401 (re-exported)


def gelu(x):
    """Exact (erf) GELU, as ``torch.nn.functional.gelu``."""
    return keras.activations.gelu(x, approximate=False)


def flat_moments(x):
    """Mean and (biased) variance of ``x`` ``(batch, ...)`` over all non-batch axes, ``(batch,)``.

    The values are flattened to ``(batch, n)`` and reduced along that contiguous last axis (two
    passes): TensorFlow's CPU reductions over several or outer axes accumulate in float32 with
    relative errors ~1e-6 on HTDemucs-sized tensors, the inner contiguous reduction ~1e-7 (torch's
    level).
    """
    flat = tf.reshape(x, [tf.shape(x)[0], -1])
    mean = tf.reduce_mean(flat, axis=-1)
    var = tf.reduce_mean(tf.square(flat - mean[:, None]), axis=-1)
    return mean, var


@keras.saving.register_keras_serializable(package="kerasep")
class GroupNorm(keras.layers.GroupNormalization):
    """``keras.layers.GroupNormalization`` (``axis=-1``) with torch ``nn.GroupNorm``'s float32
    accuracy: statistics by :func:`flat_moments` (one contiguous reduction per group) and
    ``(x - mean) * rsqrt(var + eps) * gamma + beta`` (Keras folds the mean into the offset).

    Same arguments, weights (``gamma``, ``beta``) and shapes as the parent; ``axis`` must be -1.
    """

    def __init__(self, groups=32, axis=-1, **kwargs):
        if axis != -1:
            raise ValueError(f"GroupNorm supports axis=-1 only. Received: axis={axis}")
        super().__init__(groups=groups, axis=axis, **kwargs)

    def _apply_normalization(self, reshaped_inputs, input_shape):
        # reshaped_inputs: (batch, ..., groups, channels // groups)
        dtype = reshaped_inputs.dtype
        x = tf.cast(reshaped_inputs, tf.float32)
        rank = len(x.shape)
        perm = [0, rank - 2] + list(range(1, rank - 2)) + [rank - 1]
        grouped = tf.transpose(x, perm)  # (batch, groups, ..., channels // groups)
        shape = tf.shape(grouped)
        mean, var = flat_moments(tf.reshape(grouped, [shape[0] * self.groups, -1]))
        stat_shape = [shape[0]] + [1] * (rank - 3) + [self.groups, 1]
        mean = tf.reshape(mean, stat_shape)
        var = tf.reshape(var, stat_shape)
        broadcast_shape = self._create_broadcast_shape(input_shape)
        y = (x - mean) * tf.math.rsqrt(var + self.epsilon)
        if self.scale:
            y = y * tf.cast(tf.reshape(self.gamma, broadcast_shape), y.dtype)
        if self.center:
            y = y + tf.cast(tf.reshape(self.beta, broadcast_shape), y.dtype)
        return tf.cast(y, dtype)


def _group_norm(groups, name):
    """torch ``nn.GroupNorm(groups, C)`` on a channels-last tensor (statistics over every
    non-batch axis of each group, eps 1e-5, per-channel affine)."""
    return GroupNorm(groups, axis=-1, epsilon=1e-5, name=name)


@keras.saving.register_keras_serializable(package="kerasep")
class LayerScale(keras.layers.Layer):
    """Per-channel scale of a residual branch (Touvron et al. 2021), initialised to ``init``.

    Args:
        channels: size of the last axis.
        init: initial value of every scale.

    Input/output shape: ``(..., channels)``. Weight: ``scale`` ``(channels,)``.
    """

    def __init__(self, channels, init=0.0, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.init = float(init)

    def build(self, input_shape=None):
        self.scale = self.add_weight(
            name="scale", shape=(self.channels,), initializer=keras.initializers.Constant(self.init)
        )
        self.built = True

    def call(self, x):
        return x * self.scale

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, init=self.init)
        return config


@keras.saving.register_keras_serializable(package="kerasep")
class DConv(keras.layers.Layer):
    """Residual branches of dilated convolutions (demucs' ``DConv``, as HTDemucs uses it: GroupNorm
    with one group, GELU, no LSTM / local attention).

    Each of the ``depth`` branches: ``Conv1D(channels → hidden, 3, dilation 2**d)`` → GroupNorm(1)
    → GELU → ``Conv1D(hidden → 2 * channels, 1)`` → GroupNorm(1) → GLU → :class:`LayerScale`,
    added to its input; ``hidden = int(channels / compress)``.

    Args:
        channels: input/output channels.
        compress: channel compression inside a branch (8 in HTDemucs).
        depth: number of branches (2); negative: ``abs(depth)`` branches without dilation.
        init: initial :class:`LayerScale` value (1e-3).
        kernel_size: kernel of the dilated convolutions (3, odd).

    Input/output shape: ``(batch, nb_timesteps, channels)``.

    Sublayers: ``conv1_{d}``, ``norm1_{d}``, ``conv2_{d}``, ``norm2_{d}``, ``scale_{d}``.
    """

    def __init__(self, channels, compress=8.0, depth=2, init=1e-3, kernel_size=3, **kwargs):
        super().__init__(**kwargs)
        if kernel_size % 2 != 1:
            raise ValueError(f"`kernel_size` must be odd. Received: kernel_size={kernel_size}")
        self.channels = int(channels)
        self.compress = float(compress)
        self.depth = int(depth)
        self.init = float(init)
        self.kernel_size = int(kernel_size)
        self.hidden = int(self.channels / self.compress)
        if self.hidden < 1:
            raise ValueError(f"DConv needs channels / compress >= 1. Received: channels={channels}, "
                             f"compress={compress}")
        dilate = self.depth > 0
        self.conv1, self.norm1, self.conv2, self.norm2, self.scales = [], [], [], [], []
        for d in range(abs(self.depth)):
            self.conv1.append(keras.layers.Conv1D(
                self.hidden, self.kernel_size, dilation_rate=2 ** d if dilate else 1, padding="same",
                name=f"conv1_{d}", **_torch_like_init(self.channels * self.kernel_size),
            ))
            self.norm1.append(_group_norm(1, f"norm1_{d}"))
            self.conv2.append(keras.layers.Conv1D(
                2 * self.channels, 1, name=f"conv2_{d}", **_torch_like_init(self.hidden)
            ))
            self.norm2.append(_group_norm(1, f"norm2_{d}"))
            self.scales.append(LayerScale(self.channels, self.init, name=f"scale_{d}"))

    def build(self, input_shape=None):
        for d in range(abs(self.depth)):
            self.conv1[d].build((None, None, self.channels))
            self.norm1[d].build((None, None, self.hidden))
            self.conv2[d].build((None, None, self.hidden))
            self.norm2[d].build((None, None, 2 * self.channels))
            self.scales[d].build(None)
        self.built = True

    def call(self, x):
        for d in range(abs(self.depth)):
            y = gelu(self.norm1[d](self.conv1[d](x)))
            y = glu(self.norm2[d](self.conv2[d](y)))
            x = x + self.scales[d](y)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, compress=self.compress, depth=self.depth, init=self.init,
                      kernel_size=self.kernel_size)
        return config


def _dconv_over_bins(dconv, y):
    """Apply a (time) :class:`DConv` to every frequency bin of ``(batch, nb_bins, nb_frames, C)``."""
    shape = tf.shape(y)
    flat = tf.reshape(y, [-1, shape[2], y.shape[-1]])  # (batch * nb_bins, nb_frames, C)
    return tf.reshape(dconv(flat), shape)


@keras.saving.register_keras_serializable(package="kerasep")
class HEncoderBlock(keras.layers.Layer):
    """One HTDemucs encoder layer, frequency or time branch (demucs' ``HEncLayer``).

    ``conv`` (kernel ``kernel_size``, stride ``stride``, padded by ``kernel_size // 4`` each side
    when ``pad``) → [GroupNorm] (+ ``inject``) → GELU → [:class:`DConv`] → [``rewrite``
    (kernel ``1 + 2 * context``) → [GroupNorm] → GLU]. With ``empty`` only ``conv`` exists (the
    time layer whose output is injected into the frequency branch).

    Args:
        in_channels, channels: input and output channels.
        kernel_size, stride: the strided convolution (along frequency when ``freq``).
        freq: frequency layer (``Conv2D`` over ``(nb_bins, nb_frames)``, kernels ``(k, 1)``)
            rather than a time layer (``Conv1D``; the input is first zero-padded on the right to a
            multiple of ``stride``).
        pad: pad by ``kernel_size // 4`` on both sides of the strided axis.
        norm_groups: 0 for no GroupNorm, else its groups.
        empty: keep the strided convolution only.
        dconv: add a :class:`DConv` residual branch (``dconv_compress``, ``dconv_depth``,
            ``dconv_init``).
        rewrite: add the ``rewrite`` convolution + GLU.
        context: half-width of the ``rewrite`` kernel (0: 1×1).

    Call arguments:
        x: ``(batch, nb_bins, nb_frames, in_channels)`` (``freq``) or
            ``(batch, nb_timesteps, in_channels)``.
        inject: optional tensor added after the first convolution: ``(batch, nb_frames, channels)``
            (broadcast over bins) or the convolution's output shape.

    Output shape: ``(batch, nb_bins', nb_frames, channels)`` with ``nb_bins' = (nb_bins + 2 *
    pad - kernel_size) // stride + 1``; time: ``(batch, ceil(nb_timesteps / stride), channels)``
    (with ``pad``, ``kernel_size = 2 * stride``).

    Sublayers: ``conv``, ``norm1``, ``dconv``, ``rewrite``, ``norm2``.
    """

    def __init__(self, in_channels, channels, kernel_size=8, stride=4, freq=True, pad=True, norm_groups=0,
                 empty=False, dconv=True, dconv_compress=8.0, dconv_depth=2, dconv_init=1e-3, rewrite=True,
                 context=0, **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.channels = int(in_channels), int(channels)
        self.kernel_size, self.stride = int(kernel_size), int(stride)
        self.freq, self.pad, self.empty = bool(freq), bool(pad), bool(empty)
        self.norm_groups = int(norm_groups)
        self.dconv, self.rewrite, self.context = bool(dconv), bool(rewrite), int(context)
        self.dconv_compress, self.dconv_depth = float(dconv_compress), int(dconv_depth)
        self.dconv_init = float(dconv_init)
        self.padding = self.kernel_size // 4 if self.pad else 0
        ctx = 1 + 2 * self.context
        if self.freq:
            self.conv = keras.layers.Conv2D(
                self.channels, (self.kernel_size, 1), strides=(self.stride, 1), name="conv",
                **_torch_like_init(self.in_channels * self.kernel_size),
            )
        else:
            self.conv = keras.layers.Conv1D(
                self.channels, self.kernel_size, strides=self.stride, name="conv",
                **_torch_like_init(self.in_channels * self.kernel_size),
            )
        self.norm1 = self.norm2 = self.dconv_layer = self.rewrite_conv = None
        if self.empty:
            return
        if self.norm_groups:
            self.norm1 = _group_norm(self.norm_groups, "norm1")
        if self.dconv:
            self.dconv_layer = DConv(self.channels, self.dconv_compress, self.dconv_depth, self.dconv_init,
                                     name="dconv")
        if self.rewrite:
            conv = keras.layers.Conv2D if self.freq else keras.layers.Conv1D
            self.rewrite_conv = conv(2 * self.channels, ctx, padding="same", name="rewrite",
                                     **_torch_like_init(self.channels * ctx ** (2 if self.freq else 1)))
            if self.norm_groups:
                self.norm2 = _group_norm(self.norm_groups, "norm2")

    def build(self, input_shape=None):
        spatial = (None, None) if self.freq else (None,)
        self.conv.build((None,) + spatial + (self.in_channels,))
        for layer, ch in ((self.norm1, self.channels), (self.dconv_layer, self.channels),
                          (self.rewrite_conv, self.channels), (self.norm2, 2 * self.channels)):
            if layer is not None:
                layer.build((None, None, None, ch) if self.freq and layer is not self.dconv_layer
                            else (None, None, ch))
        self.built = True

    def call(self, x, inject=None):
        if self.freq:
            p = self.padding
            x = tf.pad(x, [[0, 0], [p, p], [0, 0], [0, 0]])
        else:
            length = tf.shape(x)[1]
            extra = (self.stride - length % self.stride) % self.stride
            p = self.padding
            x = tf.pad(x, [[0, 0], [p, p + extra], [0, 0]])
        y = self.conv(x)
        if self.empty:
            return y
        if inject is not None:
            if self.freq and len(inject.shape) == 3:
                inject = inject[:, None]
            y = y + inject
        if self.norm1 is not None:
            y = self.norm1(y)
        y = gelu(y)
        if self.dconv_layer is not None:
            y = _dconv_over_bins(self.dconv_layer, y) if self.freq else self.dconv_layer(y)
        if self.rewrite_conv is not None:
            z = self.rewrite_conv(y)
            if self.norm2 is not None:
                z = self.norm2(z)
            y = glu(z)
        return y

    def get_config(self):
        config = super().get_config()
        config.update(in_channels=self.in_channels, channels=self.channels, kernel_size=self.kernel_size,
                      stride=self.stride, freq=self.freq, pad=self.pad, norm_groups=self.norm_groups,
                      empty=self.empty, dconv=self.dconv, dconv_compress=self.dconv_compress,
                      dconv_depth=self.dconv_depth, dconv_init=self.dconv_init, rewrite=self.rewrite,
                      context=self.context)
        return config


@keras.saving.register_keras_serializable(package="kerasep")
class HDecoderBlock(keras.layers.Layer):
    """One HTDemucs decoder layer, frequency or time branch (demucs' ``HDecLayer``).

    ``x + skip`` → [``rewrite`` (kernel ``1 + 2 * context`` on every axis) → [GroupNorm] → GLU]
    → [:class:`DConv`] (this is ``pre``) → ``conv_tr`` (transposed, kernel ``kernel_size``,
    stride ``stride``) → [GroupNorm] → crop ``kernel_size // 4`` each side (frequency) or to
    ``length`` (time) → GELU unless ``last``. With ``empty``: ``x`` goes straight to ``conv_tr``
    (no skip).

    Args:
        in_channels, channels: input and output channels.
        last: the outermost layer (no GELU at the end).
        kernel_size, stride, freq, pad, norm_groups, empty, dconv*, rewrite, context: as
            :class:`HEncoderBlock`.

    Call arguments:
        x: ``(batch, nb_bins, nb_frames, in_channels)`` (``freq``) or ``(batch, nb_timesteps,
            in_channels)``.
        skip: the encoder output of the same depth, ``x``'s shape (None when ``empty``).
        length: time layers: the output ``nb_timesteps`` (the encoder input's length).

    Returns:
        ``(z, pre)``: ``z`` ``(batch, stride * nb_bins, nb_frames, channels)`` (frequency, with
        ``pad``) or ``(batch, length, channels)``; ``pre`` the input of ``conv_tr``.

    Sublayers: ``rewrite``, ``norm1``, ``dconv``, ``conv_tr``, ``norm2``.
    """

    def __init__(self, in_channels, channels, last=False, kernel_size=8, stride=4, freq=True, pad=True,
                 norm_groups=0, empty=False, dconv=True, dconv_compress=8.0, dconv_depth=2, dconv_init=1e-3,
                 rewrite=True, context=1, **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.channels, self.last = int(in_channels), int(channels), bool(last)
        self.kernel_size, self.stride = int(kernel_size), int(stride)
        self.freq, self.pad, self.empty = bool(freq), bool(pad), bool(empty)
        self.norm_groups = int(norm_groups)
        self.dconv, self.rewrite, self.context = bool(dconv), bool(rewrite), int(context)
        self.dconv_compress, self.dconv_depth = float(dconv_compress), int(dconv_depth)
        self.dconv_init = float(dconv_init)
        self.padding = self.kernel_size // 4 if self.pad else 0
        ctx = 1 + 2 * self.context
        if self.freq:
            self.conv_tr = keras.layers.Conv2DTranspose(
                self.channels, (self.kernel_size, 1), strides=(self.stride, 1), name="conv_tr",
                **_torch_like_init(self.channels * self.kernel_size),
            )
        else:
            self.conv_tr = keras.layers.Conv1DTranspose(
                self.channels, self.kernel_size, strides=self.stride, name="conv_tr",
                **_torch_like_init(self.channels * self.kernel_size),
            )
        self.norm2 = _group_norm(self.norm_groups, "norm2") if self.norm_groups else None
        self.norm1 = self.dconv_layer = self.rewrite_conv = None
        if self.empty:
            return
        if self.rewrite:
            conv = keras.layers.Conv2D if self.freq else keras.layers.Conv1D
            self.rewrite_conv = conv(2 * self.in_channels, ctx, padding="same", name="rewrite",
                                     **_torch_like_init(self.in_channels * ctx ** (2 if self.freq else 1)))
            if self.norm_groups:
                self.norm1 = _group_norm(self.norm_groups, "norm1")
        if self.dconv:
            self.dconv_layer = DConv(self.in_channels, self.dconv_compress, self.dconv_depth, self.dconv_init,
                                     name="dconv")

    def build(self, input_shape=None):
        def shape(ch):
            return (None, None, None, ch) if self.freq else (None, None, ch)

        if self.rewrite_conv is not None:
            self.rewrite_conv.build(shape(self.in_channels))
        if self.norm1 is not None:
            self.norm1.build(shape(2 * self.in_channels))
        if self.dconv_layer is not None:
            self.dconv_layer.build((None, None, self.in_channels))
        self.conv_tr.build(shape(self.in_channels))
        if self.norm2 is not None:
            self.norm2.build(shape(self.channels))
        self.built = True

    def call(self, x, skip=None, length=None):
        if self.empty:
            y = x
        else:
            x = x + skip
            if self.rewrite_conv is not None:
                z = self.rewrite_conv(x)
                if self.norm1 is not None:
                    z = self.norm1(z)
                y = glu(z)
            else:
                y = x
            if self.dconv_layer is not None:
                y = _dconv_over_bins(self.dconv_layer, y) if self.freq else self.dconv_layer(y)
        z = self.conv_tr(y)
        if self.norm2 is not None:
            z = self.norm2(z)
        p = self.padding
        if self.freq:
            if p:
                z = z[:, p:-p]
        else:
            z = z[:, p: p + length]
        if not self.last:
            z = gelu(z)
        return z, y

    def get_config(self):
        config = super().get_config()
        config.update(in_channels=self.in_channels, channels=self.channels, last=self.last,
                      kernel_size=self.kernel_size, stride=self.stride, freq=self.freq, pad=self.pad,
                      norm_groups=self.norm_groups, empty=self.empty, dconv=self.dconv,
                      dconv_compress=self.dconv_compress, dconv_depth=self.dconv_depth,
                      dconv_init=self.dconv_init, rewrite=self.rewrite, context=self.context)
        return config


@keras.saving.register_keras_serializable(package="kerasep")
class ScaledEmbedding(keras.layers.Layer):
    """A learnt embedding table read as ``scale * weight`` (demucs' ``ScaledEmbedding``: the scale
    boosts its effective learning rate), optionally initialised smooth along its rows.

    HTDemucs uses it as a frequency embedding: one ``dim``-vector per frequency bin of the first
    encoder layer's output.

    Args:
        num_embeddings, dim: table shape.
        scale: read-out scale (``emb_scale``, 10).
        smooth: initialise with normalised cumulative sums of a normal table (``emb_smooth``).

    Call: ``positions`` int ``(n,)`` → ``(n, dim)``. Weight: ``embeddings`` ``(num_embeddings, dim)``.
    """

    def __init__(self, num_embeddings, dim, scale=10.0, smooth=True, **kwargs):
        super().__init__(**kwargs)
        self.num_embeddings, self.dim = int(num_embeddings), int(dim)
        self.scale, self.smooth = float(scale), bool(smooth)

    def build(self, input_shape=None):
        num, scale, smooth = self.num_embeddings, self.scale, self.smooth

        def initializer(shape, dtype=None):
            w = keras.random.normal(shape, dtype="float32")
            if smooth:
                w = keras.ops.cumsum(w, axis=0) / keras.ops.sqrt(
                    keras.ops.arange(1, num + 1, dtype="float32"))[:, None]
            return w / scale

        self.embeddings = self.add_weight(name="embeddings", shape=(num, self.dim), initializer=initializer)
        self.built = True

    def call(self, positions):
        return keras.ops.take(self.embeddings, positions, axis=0) * self.scale

    def get_config(self):
        config = super().get_config()
        config.update(num_embeddings=self.num_embeddings, dim=self.dim, scale=self.scale, smooth=self.smooth)
        return config
