"""Open-Unmix (Stöter et al. 2019): a BLSTM spectrogram model per target, multichannel Wiener
post-processing.

Two faces, as for the U-Net:

- :func:`build_openunmix`: one target's spectrogram model, what ``model.fit`` trains. Input: the
  mixture magnitude ``(batch, nb_channels, nb_frames, nb_bins)``; output: the target's magnitude
  estimate, same shape. Inside: crop to ``max_bin`` bins, per-bin input shift/scale, ``fc1``
  (no bias) → BN → tanh → ``nb_layers`` (B)LSTMs (dropout 0.4 between layers) → skip
  concatenation → ``fc2`` → BN → ReLU → ``fc3`` → BN → per-bin output scale/mean → ReLU mask ×
  mixture magnitude.
- :class:`OpenUnmixSeparator`: waveform → stems. STFT (``n_fft``/``hop_length``, centred with
  reflect padding, as ``torch.stft(center=True)``), magnitude, every target model, multichannel
  Wiener filter (:mod:`kerasep.layers.wiener`), inverse STFT.
"""
import numpy as np

from kerasep.backend import keras, tf
from kerasep.layers.lstm_blocks import BinAffine, CropBins, fused_lstms, lstm_stack, lstm_stacks_inference
from kerasep.layers.stft import ISTFT, STFT
from kerasep.layers.wiener import WienerFilter
from kerasep.models.separator import ChunkPolicy, Separator, TrainingFace, float32_twin

BN_EPSILON = 1e-5  # torch.nn.BatchNorm1d's default
BN_MOMENTUM = 0.9  # keras convention for torch's momentum=0.1


def bandwidth_to_max_bin(sample_rate, n_fft, bandwidth):
    """Number of STFT bins whose centre frequency is ``<= bandwidth`` Hz (44.1 kHz, n_fft 4096,
    16 kHz → 1487)."""
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1, endpoint=True)
    return int(np.max(np.where(freqs <= bandwidth)[0]) + 1)


def build_openunmix(
    nb_bins=2049,
    nb_channels=2,
    hidden_size=512,
    nb_layers=3,
    unidirectional=False,
    max_bin=None,
    dropout=0.4,
    name="openunmix",
):
    """One target's Open-Unmix spectrogram model.

    Args:
        nb_bins: input/output frequency bins (``n_fft // 2 + 1``).
        nb_channels: audio channels.
        hidden_size: width of the bottleneck and of the LSTM outputs (512 for umx/umxhq, 1024
            for umxl); a bidirectional stack uses ``hidden_size // 2`` units per direction.
        nb_layers: LSTM layers (3).
        unidirectional: causal LSTMs (for streaming) instead of bidirectional ones.
        max_bin: bins the network looks at (``None``: all ``nb_bins``); the mask still covers all
            ``nb_bins``.
        dropout: dropout between LSTM layers (0.4 when ``nb_layers > 1``).
        name: model name (conventionally the target's name).

    Returns:
        A functional ``keras.Model``: ``(batch, nb_channels, nb_frames, nb_bins)`` magnitude →
        ``(batch, nb_channels, nb_frames, nb_bins)`` target magnitude. Layers: ``input_norm``,
        ``fc1``, ``bn1``, ``lstm{k}``, ``fc2``, ``bn2``, ``fc3``, ``bn3``, ``output_norm``.
    """
    max_bin = nb_bins if not max_bin else int(max_bin)
    if not 0 < max_bin <= nb_bins:
        raise ValueError(f"`max_bin` must be in [1, nb_bins={nb_bins}]. Received: max_bin={max_bin}")
    if nb_channels < 1:
        raise ValueError(f"`nb_channels` must be >= 1. Received: nb_channels={nb_channels}")
    dropout = dropout if nb_layers > 1 else 0.0

    # === Layers and functional model ===
    mix = keras.Input((nb_channels, None, nb_bins), name="mix_magnitude")
    # (batch, nb_frames, nb_channels, nb_bins): frames are the LSTM's time axis
    frames_first = keras.layers.Permute((2, 1, 3), name="to_frames")(mix)
    x = CropBins(max_bin, name="crop")(frames_first)
    x = BinAffine(max_bin, order="shift_scale", name="input_norm")(x)
    # channel-major features, as torch's reshape(-1, nb_channels * max_bin)
    x = keras.layers.Reshape((-1, nb_channels * max_bin), name="flatten")(x)
    x = keras.layers.Dense(hidden_size, use_bias=False, name="fc1")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name="bn1")(x)
    x = keras.layers.Activation("tanh", name="tanh")(x)
    lstm_out = lstm_stack(x, hidden_size, nb_layers, unidirectional, dropout, name="lstm")
    x = keras.layers.Concatenate(axis=-1, name="skip")([x, lstm_out])
    x = keras.layers.Dense(hidden_size, use_bias=False, name="fc2")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name="bn2")(x)
    x = keras.layers.Activation("relu", name="relu")(x)
    x = keras.layers.Dense(nb_bins * nb_channels, use_bias=False, name="fc3")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name="bn3")(x)
    x = keras.layers.Reshape((-1, nb_channels, nb_bins), name="unflatten")(x)
    x = BinAffine(nb_bins, order="scale_shift", shift_init=1.0, name="output_norm")(x)
    mask = keras.layers.Activation("relu", name="mask")(x)
    x = keras.layers.Multiply(name="apply_mask")([mask, frames_first])
    out = keras.layers.Permute((2, 1, 3), name="to_channels")(x)
    return keras.Model(mix, out, name=name)


@keras.saving.register_keras_serializable(package="kerasep")
class OpenUnmixSeparator(Separator):
    """Waveform → stems with one Open-Unmix model per target and a multichannel Wiener filter.

    Args:
        targets: source names (``["vocals", "drums", "bass", "other"]``).
        nb_channels: audio channels (2).
        sample_rate: audio rate in Hz (44100; metadata, inputs must have it).
        n_fft, hop_length: STFT size and hop (4096 / 1024).
        hidden_size, nb_layers, unidirectional, max_bin: per-target architecture (see
            :func:`build_openunmix`); ``max_bin=None`` uses every bin.
        niter: Wiener EM iterations (1; 0 = magnitudes with the mixture phase).
        softmask: initial Wiener estimates from ratio masks.
        residual: add a ``"residual"`` stem (mixture minus the targets, before EM).
        wiener_win_len: frames per independently filtered window (300; ``None``: whole input).
        eps: Wiener regularisation (1e-10).
        output_targets: the stems ``call`` returns (default: all targets, plus ``"residual"``).

    Input shape:
        ``(batch, nb_channels, nb_timesteps)`` float32 waveform at ``sample_rate``.

    Output:
        ``{stem: (batch, nb_channels, nb_timesteps)}`` for each of ``output_targets``.

    Attributes:
        target_models: ``{target: build_openunmix(...)}``, the trainable spectrogram models.
        stft, wiener, istft: the signal path's layers.
    """

    def __init__(
        self,
        targets=("vocals", "drums", "bass", "other"),
        nb_channels=2,
        sample_rate=44100,
        n_fft=4096,
        hop_length=1024,
        hidden_size=512,
        nb_layers=3,
        unidirectional=False,
        max_bin=1487,
        niter=1,
        softmask=False,
        residual=False,
        wiener_win_len=300,
        eps=1e-10,
        output_targets=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.targets = list(targets)
        if not self.targets or len(set(self.targets)) != len(self.targets) or "residual" in self.targets:
            raise ValueError(
                "`targets` must be distinct names, at least one, not 'residual'. "
                f"Received: targets={self.targets}"
            )
        self.nb_channels = int(nb_channels)
        if self.nb_channels not in (1, 2):
            raise ValueError(f"`nb_channels` must be 1 or 2. Received: nb_channels={nb_channels}")
        self.sample_rate = int(sample_rate)
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.nb_bins = self.n_fft // 2 + 1
        self.hidden_size = int(hidden_size)
        self.nb_layers = int(nb_layers)
        self.unidirectional = bool(unidirectional)
        self.max_bin = None if max_bin is None else int(max_bin)
        self.niter = int(niter)
        self.softmask = bool(softmask)
        self.residual = bool(residual)
        self.wiener_win_len = None if wiener_win_len is None else int(wiener_win_len)
        self.eps = float(eps)
        stems = self.targets + (["residual"] if self.residual else [])
        self.output_targets = list(output_targets) if output_targets else stems
        unknown = [t for t in self.output_targets if t not in stems]
        if unknown:
            raise ValueError(f"`output_targets` {unknown} are not among the stems {stems}")
        if self.niter > 0 and len(stems) < 2:
            raise ValueError(
                "Wiener EM (niter > 0) needs two stems or more: add targets or set residual=True. "
                f"Received: targets={self.targets}, residual={self.residual}, niter={self.niter}"
            )

        # === Layers ===
        self.stft = STFT(self.n_fft, self.hop_length, padding="center", pad_mode="reflect", name="stft")
        self.target_models = {
            t: build_openunmix(
                self.nb_bins,
                self.nb_channels,
                self.hidden_size,
                self.nb_layers,
                self.unidirectional,
                self.max_bin,
                name=t,
            )
            for t in self.targets
        }
        self.wiener = WienerFilter(
            self.niter, self.softmask, self.residual, self.wiener_win_len, self.eps, name="wiener"
        )
        self.istft = ISTFT(self.n_fft, self.hop_length, padding="center", name="istft")

    #: Seconds per chunk when :func:`kerasep.separate` is not given ``chunk_seconds`` (rounded
    #: up to whole Wiener windows): four targets' spectrograms and their Wiener filtering grow
    #: with the chunk, and 20 s keeps ``kerasep separate`` of a 10-minute song under 3 GB peak
    #: (60 s chunks: 3.4 GB; ``benchmarks/bench_openunmix.py``).
    default_chunk_seconds = 20.0

    @property
    def chunking(self):
        """Cross-faded chunks (the BLSTMs see the whole input, so chunks are not exact) with 5 s
        of context, borders on whole Wiener windows (``wiener_win_len * hop_length``), so
        chunked separation filters the same windows as whole-file separation."""
        if self.niter > 0 and self.wiener_win_len:
            alignment = self.wiener_win_len * self.hop_length
        else:
            alignment = self.hop_length
        return ChunkPolicy("crossfade", alignment=alignment, context_seconds=5.0,
                           default_chunk_seconds=self.default_chunk_seconds)

    @property
    def stems(self):
        return list(self.output_targets)

    def training_face(self):
        """Every target model on full magnitude spectrograms, MSE loss, after the
        input-statistics pass (:meth:`input_statistics`)."""
        inp = keras.Input((self.nb_channels, None, self.nb_bins), name="mix_magnitude")
        outs = {t: self.target_models[t](inp) for t in self.targets}
        feature_model = keras.Model(inp, outs, name="openunmix_targets")
        stft = float32_twin(self.stft)

        def magnitude(waveform):
            return self.magnitude_from_complex(stft.complex(waveform))

        def featurize(mix, ys):
            return magnitude(mix), {t: magnitude(ys[t]) for t in self.targets}

        def prepare(dataset, max_batches=None):
            mean, std = self.input_statistics(featurize, dataset, max_batches)
            return {"mean": mean, "std": std}

        return TrainingFace(feature_model, featurize, list(self.targets), "spectrogram_mse", prepare)

    def input_statistics(self, featurize, dataset, max_batches=None):
        """Open-Unmix's input-statistics pass: per-bin mean and standard deviation of the
        training mixtures' magnitudes (over batch, channels and frames) written into every target
        model's ``input_norm`` (shift = −mean, scale = 1/std), as ``openunmix``'s
        ``get_statistics``.

        Args:
            featurize: ``(mix, ys) -> (magnitude, ...)`` for waveform batches (rank 3).
            dataset: ``(x, ys)`` batches; ``x`` waveforms or already magnitudes (rank 4).

        Returns ``(mean, std)`` as numpy arrays of ``nb_bins`` values.
        """
        total = sq = count = 0.0
        for k, (x, ys) in enumerate(dataset):
            if max_batches is not None and k >= max_batches:
                break
            if x.shape.rank == 3:  # waveforms: the features the train step computes
                x, _ = featurize(x, ys)
            m = tf.reshape(tf.cast(x, tf.float64), [-1, x.shape[-1]]).numpy()
            total = total + m.sum(0)
            sq = sq + (m * m).sum(0)
            count += m.shape[0]
        if not count:
            raise ValueError("input statistics: the dataset is empty")
        mean = total / count
        std = np.maximum(np.sqrt(np.maximum(sq / count - mean ** 2, 0.0)), 1e-8)
        for t in self.targets:
            layer = self.target_models[t].get_layer("input_norm")
            n = layer.weights[0].shape[-1]
            values = {"shift": -mean[:n], "scale": 1.0 / std[:n]}
            layer.set_weights([values["shift" if "shift" in w.path.split("/")[-1] else "scale"]
                               .reshape(w.shape).astype("float32") for w in layer.weights])
        return mean, std

    def build(self, input_shape=None):
        for model in self.target_models.values():
            model.build((None, self.nb_channels, None, self.nb_bins))
        super().build(input_shape)

    def estimate_spectrograms(self, mix_magnitude, training=False, fused=None):
        """``(batch, nb_targets, nb_channels, nb_frames, nb_bins)`` target magnitudes for a mixture
        magnitude ``(batch, nb_channels, nb_frames, nb_bins)``.

        ``fused`` (default: when not training, outside
        :func:`~kerasep.layers.lstm_blocks.keras_lstm_graphs`): run every target's LSTMs together
        (:func:`~kerasep.layers.lstm_blocks.lstm_stacks_inference`: input projections before the
        frame loop, one loop per layer for all targets and directions) instead of one Keras LSTM
        loop per layer, direction and target; the same weights and equations. The ONNX export
        traces the Keras layers (``fused=False``), which tf2onnx maps to ONNX LSTM nodes."""
        if fused is None:
            fused = fused_lstms(training)
        if fused:
            if training:
                raise ValueError("estimate_spectrograms: fused=True is inference only (training=False)")
            return self._fused_estimates(mix_magnitude)
        estimates = []
        for t in self.targets:
            # one target after the other (not concurrently): bounded peak memory in graphs
            with tf.control_dependencies(estimates[-1:]):
                estimates.append(self.target_models[t](tf.identity(mix_magnitude), training=training))
        return tf.stack(estimates, axis=1)

    def _fused_estimates(self, mix_magnitude):
        """:meth:`estimate_spectrograms` at inference with the targets' LSTMs run together: each
        target model's layers called in the order :func:`build_openunmix` chains them."""
        models = [self.target_models[t] for t in self.targets]
        frames_first, features = [], []
        for m in models:
            layer = m.get_layer
            ff = layer("to_frames")(mix_magnitude)
            x = layer("flatten")(layer("input_norm")(layer("crop")(ff)))
            x = layer("tanh")(layer("bn1")(layer("fc1")(x), training=False))
            frames_first.append(ff)
            features.append(x)
        lstm_out = lstm_stacks_inference(features, models, self.nb_layers, self.unidirectional, name="lstm")
        estimates = []
        for m, ff, x, h in zip(models, frames_first, features, lstm_out):
            layer = m.get_layer
            with tf.control_dependencies(estimates[-1:]):  # one target's wide layers at a time
                x = layer("skip")([tf.identity(x), h])
                x = layer("relu")(layer("bn2")(layer("fc2")(x), training=False))
                x = layer("unflatten")(layer("bn3")(layer("fc3")(x), training=False))
                mask = layer("mask")(layer("output_norm")(x))
                estimates.append(layer("to_channels")(layer("apply_mask")([mask, ff])))
        return tf.stack(estimates, axis=1)

    @staticmethod
    def mix_magnitude(mix_stft):
        """``|X|`` of a ``(..., 2)`` real/imag STFT with real arithmetic only (exportable to ONNX,
        exact, and with a zero gradient at silent bins)."""
        return _safe_sqrt(tf.reduce_sum(tf.square(mix_stft), axis=-1))

    @staticmethod
    def magnitude_from_complex(spec):
        """:meth:`mix_magnitude` of a complex STFT, bit for bit, without stacking real and
        imaginary parts (the training features)."""
        return _safe_sqrt(tf.square(tf.math.real(spec)) + tf.square(tf.math.imag(spec)))

    def separate_stft(self, mix_stft, training=False, fused=None):
        """``(batch, nb_stems, nb_channels, nb_frames, nb_bins, 2)`` stem STFTs (targets, then the
        residual) for a mixture STFT ``(batch, nb_channels, nb_frames, nb_bins, 2)``.

        ``fused`` (default: as :meth:`estimate_spectrograms`): the inference graph, :meth:`estimate_spectrograms`
        with ``fused=True`` and the Wiener windows XLA-compiled (``WienerFilter(...,
        jit_compile=True)``); ``False``: plain Keras layers and TF ops (the ONNX export)."""
        if fused is None:
            fused = fused_lstms(training)
        estimates = self.estimate_spectrograms(self.mix_magnitude(mix_stft), training=training, fused=fused)
        return self.wiener(estimates, mix_stft, jit_compile=bool(fused))

    @property
    def wiener_stems(self):
        """Every stem the Wiener filter produces: the targets, then ``"residual"`` if enabled."""
        return self.targets + (["residual"] if self.residual else [])

    def export_spec(self):
        """How :mod:`kerasep.export` splits this model: STFT/iSTFT as signal processing, and a
        core ``(batch, nb_channels, nb_frames, nb_bins, 2)`` mixture STFT → ``{stem: STFT}``
        holding the target models and the Wiener filter (see :mod:`kerasep.export.spec`)."""
        inputs = keras.Input((self.nb_channels, None, self.nb_bins, 2), name="mix_stft")
        outputs = _SeparateSTFT(self, name="separate_stft")(inputs)
        return {
            "kind": "spectral",
            "n_fft": self.n_fft,
            "hop_length": self.hop_length,
            "padding": "center",
            "pad_mode": "reflect",
            "nb_bins": self.nb_bins,
            "mask_extension": "zeros",
            "power": 1.0,
            "core": keras.Model(inputs, outputs, name="openunmix_core"),
            "core_layout": "stft",
            "core_output": "stft",
            "targets": self.wiener_stems,
        }

    def call(self, waveform, training=False):
        stems = self.wiener_stems
        spec = self.separate_stft(self.stft(waveform), training=training)
        outputs = {}
        for t in self.output_targets:  # sequentially, as above
            with tf.control_dependencies(list(outputs.values())[-1:]):
                outputs[t] = self.istft(tf.identity(spec[:, stems.index(t)]), length=waveform)
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            targets=self.targets,
            nb_channels=self.nb_channels,
            sample_rate=self.sample_rate,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            hidden_size=self.hidden_size,
            nb_layers=self.nb_layers,
            unidirectional=self.unidirectional,
            max_bin=self.max_bin,
            niter=self.niter,
            softmask=self.softmask,
            residual=self.residual,
            wiener_win_len=self.wiener_win_len,
            eps=self.eps,
            output_targets=self.output_targets,
        )
        return config


def _safe_sqrt(energy):
    """``sqrt(energy)`` with a zero gradient where ``energy`` is 0."""
    nonzero = energy > 0
    return tf.where(nonzero, tf.sqrt(tf.where(nonzero, energy, tf.ones_like(energy))), 0.0)


class _SeparateSTFT(keras.layers.Layer):
    """Export helper (not serialised): a separator's :meth:`OpenUnmixSeparator.separate_stft` as
    one layer returning ``{stem: (batch, nb_channels, nb_frames, nb_bins, 2)}``."""

    def __init__(self, separator, **kwargs):
        super().__init__(**kwargs)
        self.separator = separator

    def call(self, mix_stft):
        spec = self.separator.separate_stft(mix_stft, training=False, fused=False)
        return {stem: spec[:, j] for j, stem in enumerate(self.separator.wiener_stems)}

    def compute_output_shape(self, input_shape):
        return {stem: tuple(input_shape) for stem in self.separator.wiener_stems}
