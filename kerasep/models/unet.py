"""Spleeter-style U-Net separator (Jansson et al. 2017; Hennequin et al. 2020).

Two faces:

- :func:`build_unet_core`: the spectrogram-domain model that ``model.fit`` trains. Input: mixture
  magnitude patches ``(batch, T, F, nb_channels)``; output: a dict ``{target: magnitude estimate}``
  of the same shape (sigmoid mask × input, Spleeter's ``*_spectrogram`` outputs).
- :class:`UNetSeparator`: waveform → stems. STFT (``n_fft``, ``hop_length``, Spleeter framing),
  magnitude of the first ``F`` bins cut into ``T``-frame patches, the core, ratio masks with
  ``separation_exponent`` across targets, bins above ``F`` zeroed (or averaged), inverse STFT.
"""
from kerasep.backend import keras, tf
from kerasep.layers.masks import ApplyMask, RatioMask
from kerasep.layers.stft import ISTFT, STFT, Magnitude
from kerasep.layers.unet_blocks import ACTIVATIONS, unet_branch
from kerasep.models.separator import ChunkPolicy, Separator, TrainingFace, float32_twin

MASK_ACTIVATIONS = ("sigmoid", "softmax")


def build_unet_core(
    targets=("vocals", "accompaniment"),
    nb_channels=2,
    T=512,
    F=1024,
    conv_n_filters=(16, 32, 64, 128, 256, 512),
    conv_activation="leaky_relu",
    deconv_activation="relu",
    dropout=0.5,
    name="unet_core",
    mask_activation="sigmoid",
):
    """The spectrogram-domain U-Net: one branch per target.

    Args:
        targets: names of the separated sources (1 to 5).
        nb_channels: audio channels of the magnitude input.
        T, F: patch size in frames and bins (``None`` for dynamic); when given, each must be a
            multiple of ``2 ** len(conv_n_filters)``.
        mask_activation: ``"sigmoid"`` (Spleeter's ``unet``: one sigmoid mask per branch) or
            ``"softmax"`` (Spleeter's ``softmax_unet``, its 5-stems model: the branches' mask
            logits through a softmax across targets, so the masks sum to one).

    Returns:
        A functional ``keras.Model``: ``(batch, T, F, nb_channels)`` → ``{target: same shape}``.
    """
    targets = list(targets)
    if not 1 <= len(targets) <= 5 or len(set(targets)) != len(targets):
        raise ValueError(f"`targets` must be 1 to 5 distinct names. Received: targets={targets}")
    for act in (conv_activation, deconv_activation):
        if act not in ACTIVATIONS:
            raise ValueError(f"activations must be one of {ACTIVATIONS}. Received: {act!r}")
    factor = 2 ** len(conv_n_filters)
    for label, size in (("T", T), ("F", F)):
        if size is not None and size % factor:
            raise ValueError(
                f"`{label}` must be a multiple of 2**len(conv_n_filters) = {factor}. Received: {label}={size}"
            )
    if mask_activation not in MASK_ACTIVATIONS:
        raise ValueError(f"`mask_activation` must be one of {MASK_ACTIVATIONS}. Received: {mask_activation!r}")
    inputs = keras.Input((T, F, nb_channels), name="mix_spectrogram")
    branches = {
        target: unet_branch(
            inputs,
            target,
            nb_channels,
            conv_n_filters=conv_n_filters,
            conv_activation=conv_activation,
            deconv_activation=deconv_activation,
            dropout=dropout,
            output_mask_logit=mask_activation == "softmax",
        )
        for target in targets
    }
    if mask_activation == "softmax":  # Spleeter's softmax_unet
        logits = keras.ops.stack([branches[t] for t in targets], axis=-1)
        masks = keras.layers.Softmax(axis=-1, name="mask_softmax")(logits)
        branches = {
            t: keras.layers.Multiply(name=f"{t}_spectrogram")([masks[..., i], inputs])
            for i, t in enumerate(targets)
        }
    return keras.Model(inputs, branches, name=name)


@keras.saving.register_keras_serializable(package="kerasep")
class UNetSeparator(Separator):
    """Waveform → stems with a Spleeter-style U-Net.

    Args:
        targets: source names, e.g. ``["vocals", "accompaniment"]``.
        nb_channels: audio channels (2).
        sample_rate: audio rate the model was trained at, in Hz (metadata; inputs must have it).
        n_fft, hop_length: STFT size and hop, in samples (Spleeter: 4096 / 1024).
        T: frames per patch fed to the U-Net (512).
        F: bins fed to the U-Net (1024 of ``n_fft // 2 + 1``); bins above are masked per
            ``mask_extension``.
        conv_n_filters, conv_activation, deconv_activation, dropout: U-Net architecture.
        separation_exponent: exponent of the ratio masks (2).
        mask_extension: ``"zeros"`` or ``"average"`` for bins above ``F``.
        eps: ratio-mask regulariser (1e-10).
        output_targets: the targets returned by ``call`` (default all); the masks are still
            computed across every target.
        mask_activation: ``"sigmoid"`` or ``"softmax"`` across targets (Spleeter's 5-stems
            ``softmax_unet``), see :func:`build_unet_core`.

    Input shape:
        ``(batch, nb_channels, nb_timesteps)`` float32 waveform at ``sample_rate``, any length.

    Output:
        ``{target: (batch, nb_channels, nb_timesteps)}`` for each of ``output_targets``.

    Attributes:
        core: the spectrogram model (:func:`build_unet_core`), what ``model.fit`` trains.
        chunking: streamed on the patch grid (``T * hop_length`` samples per patch): the U-Net
            sees the same patches as in whole-file processing, so chunked output is exact.
    """

    def __init__(
        self,
        targets=("vocals", "accompaniment"),
        nb_channels=2,
        sample_rate=44100,
        n_fft=4096,
        hop_length=1024,
        T=512,
        F=1024,
        conv_n_filters=(16, 32, 64, 128, 256, 512),
        conv_activation="leaky_relu",
        deconv_activation="relu",
        dropout=0.5,
        separation_exponent=2.0,
        mask_extension="zeros",
        eps=1e-10,
        output_targets=None,
        mask_activation="sigmoid",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if F > n_fft // 2 + 1:
            raise ValueError(f"`F` must be <= n_fft // 2 + 1 = {n_fft // 2 + 1}. Received: F={F}")
        self.targets = list(targets)
        self.nb_channels = int(nb_channels)
        self.sample_rate = int(sample_rate)
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.T = int(T)
        self.F = int(F)
        self.conv_n_filters = [int(f) for f in conv_n_filters]
        self.conv_activation = conv_activation
        self.deconv_activation = deconv_activation
        self.dropout = float(dropout)
        self.separation_exponent = float(separation_exponent)
        self.mask_extension = mask_extension
        self.eps = float(eps)
        self.mask_activation = mask_activation
        self.output_targets = list(output_targets) if output_targets else list(self.targets)
        unknown = [t for t in self.output_targets if t not in self.targets]
        if unknown:
            raise ValueError(f"`output_targets` {unknown} are not among targets {self.targets}")

        # === Layers ===
        self.stft = STFT(n_fft, hop_length, padding="spleeter", nb_bins=self.F, name="stft")
        self.magnitude = Magnitude(name="magnitude")
        self.core = build_unet_core(
            self.targets,
            self.nb_channels,
            self.T,
            self.F,
            self.conv_n_filters,
            conv_activation,
            deconv_activation,
            self.dropout,
            mask_activation=mask_activation,
        )
        self.ratio_mask = RatioMask(separation_exponent, eps, name="ratio_mask")
        self.apply_mask = ApplyMask(mask_extension, name="apply_mask")
        self.istft = ISTFT(n_fft, hop_length, padding="spleeter", name="istft")
        # A full STFT is only needed when bins above F are not zeroed.
        self.full_stft = (
            STFT(n_fft, hop_length, padding="spleeter", name="full_stft")
            if mask_extension != "zeros"
            else None
        )

    # === Separator contract ===

    @property
    def stems(self):
        return list(self.output_targets)

    @property
    def chunking(self):
        """Streamed on the patch grid; one patch (``T * hop_length`` samples) of context makes
        exact chunks for runners that call the whole model on chunks (the ONNX runner)."""
        patch = self.T * self.hop_length
        return ChunkPolicy("patch_grid", alignment=patch, context=patch, n_fft=self.n_fft,
                           hop_length=self.hop_length, patch_frames=self.T)

    def training_face(self):
        """The U-Net core on ``T``-frame magnitude patches of every target, Spleeter's L1 loss."""
        stft = float32_twin(self.stft)

        def patches(waveform):
            return self.to_patches(tf.abs(stft.complex(waveform)))

        def featurize(mix, ys):
            return patches(mix), {t: patches(ys[t]) for t in self.targets}

        return TrainingFace(self.core, featurize, list(self.targets), "spectrogram_l1")

    def export_spec(self):
        """STFT → magnitude patches → core → ratio masks → inverse STFT (:mod:`kerasep.export.spec`)."""
        return {
            "kind": "spectral",
            "n_fft": self.n_fft,
            "hop_length": self.hop_length,
            "padding": "spleeter",
            "pad_mode": "constant",
            "nb_bins": self.F,
            "mask_extension": self.mask_extension,
            "power": 1.0,
            "core": self.core,
            "core_layout": "patches",
            "patch_frames": self.T,
            "core_output": "magnitude",
            "separation_exponent": self.separation_exponent,
            "eps": self.eps,
        }

    def stream_block(self, segment):
        """``segment (1, nb_channels, (nb_frames - 1) * hop_length + n_fft)`` → ``{stem:
        overlap-added windowed frames}``, not yet divided by the window envelope. The frames are
        unpadded ("valid") so that consecutive blocks of frames sum to the whole-file overlap-add
        (:func:`kerasep.inference.separate_array` streams the patch grid with it)."""
        # built per trace (weightless), not a tracked sublayer: saved models keep their layout
        block_stft = STFT(self.n_fft, self.hop_length, padding="valid",
                          nb_bins=self.F if self.mask_extension == "zeros" else None, name="block_stft")
        spec = block_stft(segment)  # (1, nb_channels, nb_frames, nb_bins, 2)
        masks = self.estimate_masks(spec, training=False)
        return {t: self.istft.overlap_add(self.apply_mask(spec, masks[t])) for t in self.stems}

    def build(self, input_shape=None):
        self.core.build((None, self.T, self.F, self.nb_channels))
        super().build(input_shape)

    def to_patches(self, mag):
        """``(batch, nb_channels, nb_frames, F)`` → ``(batch * nb_patches, T, F, nb_channels)``."""
        x = tf.transpose(mag, [0, 2, 3, 1])  # (batch, nb_frames, F, nb_channels)
        n = tf.shape(x)[1]
        pad = (-n) % self.T
        x = tf.pad(x, [[0, 0], [0, pad], [0, 0], [0, 0]])
        return tf.reshape(x, [-1, self.T, self.F, self.nb_channels])

    def from_patches(self, patches, batch, nb_frames):
        """Inverse of :meth:`to_patches`, cropped to ``nb_frames`` frames."""
        x = tf.reshape(patches, [batch, -1, self.F, self.nb_channels])[:, :nb_frames]
        return tf.transpose(x, [0, 3, 1, 2])  # (batch, nb_channels, nb_frames, F)

    def estimate_masks(self, spec, training=False):
        """Ratio masks ``{target: (batch, nb_channels, nb_frames, F)}`` for an STFT ``spec``
        ``(batch, nb_channels, nb_frames, >=F, 2)``."""
        spec = spec[..., : self.F, :]
        batch, nb_frames = tf.shape(spec)[0], tf.shape(spec)[2]
        estimates = self.core(self.to_patches(self.magnitude(spec)), training=training)
        masks = self.ratio_mask([estimates[t] for t in self.targets])
        return {t: self.from_patches(m, batch, nb_frames) for t, m in zip(self.targets, masks)}

    def call(self, waveform, training=False):
        spec = self.stft(waveform)  # (batch, nb_channels, nb_frames, F, 2)
        masks = self.estimate_masks(spec, training=training)
        full = self.full_stft(waveform) if self.full_stft is not None else spec
        return {
            t: self.istft(self.apply_mask(full, masks[t]), length=waveform)
            for t in self.output_targets
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            targets=self.targets,
            nb_channels=self.nb_channels,
            sample_rate=self.sample_rate,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            T=self.T,
            F=self.F,
            conv_n_filters=self.conv_n_filters,
            conv_activation=self.conv_activation,
            deconv_activation=self.deconv_activation,
            dropout=self.dropout,
            separation_exponent=self.separation_exponent,
            mask_extension=self.mask_extension,
            eps=self.eps,
            output_targets=self.output_targets,
            mask_activation=self.mask_activation,
        )
        return config
