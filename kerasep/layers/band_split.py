"""Band-split front and back ends of the band-split RoFormers (BS-RoFormer, Lu et al. 2023,
arXiv 2309.02612; Mel-Band RoFormer, Wang et al. 2023, arXiv 2310.01809).

The complex spectrogram is laid out as features ``(batch, nb_frames, nb_features)`` where each
band's frequencies contribute ``nb_freqs * nb_channels * 2`` consecutive features, frequency-major,
then channel, then ``(real, imag)`` (the checkpoints' ``'b s f t c -> b t (f s c)'``).

- :class:`RMSNorm`: ``x / max(||x||, 1e-12) * sqrt(dim) * gamma`` (``F.normalize`` based, as the
  reference; not the mean-square form with an epsilon).
- :class:`BandSplit`: per band ``RMSNorm`` + ``Dense(dim)``, bands stacked on a new axis.
- :class:`MaskEstimator`: per band an MLP (``tanh`` between layers) whose output is halved by a
  GLU: the band's complex mask features.
- :func:`mel_bands`: the Mel-Band RoFormer's overlapping bands, from a Slaney mel filterbank
  computed as ``librosa.filters.mel`` (the reference's construction, reimplemented in numpy so
  that librosa is not a dependency).
"""
import numpy as np

from kerasep.backend import keras


@keras.saving.register_keras_serializable(package="kerasep")
class RMSNorm(keras.layers.Layer):
    """``x / max(||x||_2, 1e-12) * sqrt(dim) * gamma`` over the last axis.

    Args:
        dim: size of the last axis.

    Input/output shape: ``(..., dim)``.

    Weights: ``gamma`` ``(dim,)``, initialised to ones.
    """

    def __init__(self, dim, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.scale = float(self.dim) ** 0.5

    def build(self, input_shape=None):
        self.gamma = self.add_weight(shape=(self.dim,), initializer="ones", name="gamma")
        self.built = True

    def call(self, x):
        ops = keras.ops
        norm = ops.sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))
        return x / ops.maximum(norm, 1e-12) * self.scale * self.gamma

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim)
        return config


@keras.saving.register_keras_serializable(package="kerasep")
class BandSplit(keras.layers.Layer):
    """Per-band ``RMSNorm`` + ``Dense(dim)`` (the reference's ``BandSplit``).

    Args:
        dim: output features per band.
        band_dims: input features of each band, in order (``2 * nb_freqs * nb_channels``).

    Input shape: ``(batch, nb_frames, sum(band_dims))``.

    Output shape: ``(batch, nb_frames, len(band_dims), dim)``.

    Sublayers: ``norm_{i}`` (:class:`RMSNorm`), ``linear_{i}`` (``Dense``) for band ``i``.
    """

    def __init__(self, dim, band_dims, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.band_dims = [int(d) for d in band_dims]
        self.norms = [RMSNorm(d, name=f"norm_{i}") for i, d in enumerate(self.band_dims)]
        self.linears = [keras.layers.Dense(self.dim, name=f"linear_{i}") for i in range(len(self.band_dims))]
        self.offsets = np.concatenate([[0], np.cumsum(self.band_dims)]).tolist()

    def build(self, input_shape=None):
        for d, norm, linear in zip(self.band_dims, self.norms, self.linears):
            norm.build((None, None, d))
            linear.build((None, None, d))
        self.built = True

    def call(self, x):
        outs = []
        for i, (norm, linear) in enumerate(zip(self.norms, self.linears)):
            band = x[:, :, self.offsets[i]: self.offsets[i + 1]]
            outs.append(linear(norm(band)))
        return keras.ops.stack(outs, axis=-2)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], len(self.band_dims), self.dim)

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, band_dims=list(self.band_dims))
        return config


@keras.saving.register_keras_serializable(package="kerasep")
class MaskEstimator(keras.layers.Layer):
    """Per-band MLP heads with a GLU output (the reference's ``MaskEstimator``).

    Band ``i``: ``Dense(hidden)`` → ``tanh`` (``hidden_layers`` times) → ``Dense(2 *
    band_dims[i])`` → GLU (first half times the sigmoid of the second half), with ``hidden = dim
    * mlp_expansion_factor``. BS-RoFormer's ``mask_estimator_depth`` ``d`` is ``hidden_layers =
    d - 1``; Mel-Band RoFormer's is ``hidden_layers = d`` (the two references build their MLPs
    differently).

    Args:
        dim: input features per band; band_dims: output features of each band.
        hidden_layers: hidden layers of each MLP (0: a single ``Dense``).
        mlp_expansion_factor: hidden width factor (4).

    Input shape: ``(batch, nb_frames, len(band_dims), dim)``.

    Output shape: ``(batch, nb_frames, sum(band_dims))``.

    Sublayers: ``band_{i}_linear_{k}`` (``Dense``), ``k = 0 .. hidden_layers``.
    """

    def __init__(self, dim, band_dims, hidden_layers=1, mlp_expansion_factor=4, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.band_dims = [int(d) for d in band_dims]
        self.hidden_layers = int(hidden_layers)
        self.mlp_expansion_factor = int(mlp_expansion_factor)
        if self.hidden_layers < 0:
            raise ValueError(f"hidden_layers must be >= 0. Received: hidden_layers={hidden_layers}")
        hidden = self.dim * self.mlp_expansion_factor
        self.mlps = []
        for i, d in enumerate(self.band_dims):
            widths = [hidden] * self.hidden_layers + [2 * d]
            self.mlps.append([keras.layers.Dense(w, name=f"band_{i}_linear_{k}") for k, w in enumerate(widths)])

    def build(self, input_shape=None):
        hidden = self.dim * self.mlp_expansion_factor
        for mlp in self.mlps:
            width = self.dim
            for layer in mlp:
                layer.build((None, None, width))
                width = hidden
        self.built = True

    def call(self, x):
        outs = []
        for i, mlp in enumerate(self.mlps):
            y = x[:, :, i]
            for k, layer in enumerate(mlp):
                y = layer(y)
                if k < len(mlp) - 1:
                    y = keras.ops.tanh(y)
            d = self.band_dims[i]
            outs.append(y[..., :d] * keras.ops.sigmoid(y[..., d:]))
        return keras.ops.concatenate(outs, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], sum(self.band_dims))

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, band_dims=list(self.band_dims), hidden_layers=self.hidden_layers,
                      mlp_expansion_factor=self.mlp_expansion_factor)
        return config


# --- mel bands ------------------------------------------------------------------------------------

def _hz_to_mel(frequencies):
    """Slaney mel scale (librosa's ``hz_to_mel(htk=False)``): linear below 1 kHz, log above."""
    frequencies = np.asanyarray(frequencies)
    f_sp = 200.0 / 3
    mels = frequencies / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    if frequencies.ndim:
        log_t = frequencies >= min_log_hz
        mels[log_t] = min_log_mel + np.log(frequencies[log_t] / min_log_hz) / logstep
    elif frequencies >= min_log_hz:
        mels = min_log_mel + np.log(frequencies / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels):
    """Inverse of :func:`_hz_to_mel` (librosa's ``mel_to_hz(htk=False)``)."""
    mels = np.asanyarray(mels)
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    log_t = mels >= min_log_mel
    freqs[log_t] = min_log_hz * np.exp(logstep * (mels[log_t] - min_log_mel))
    return freqs


def mel_filterbank(sample_rate, n_fft, n_mels):
    """Slaney-normalised triangular mel filterbank ``(n_mels, 1 + n_fft // 2)`` float32, computed
    as ``librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels)`` (``fmin=0``, ``fmax =
    sample_rate / 2``, ``htk=False``, ``norm="slaney"``)."""
    n_bins = 1 + n_fft // 2
    weights = np.zeros((n_mels, n_bins), dtype=np.float32)
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2.0), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2: n_mels + 2] - mel_f[:n_mels])
    weights *= enorm[:, np.newaxis]
    return weights


def mel_bands(sample_rate, n_fft, num_bands):
    """The Mel-Band RoFormer's bands: ``(freqs_per_band, freq_indices)``.

    ``freqs_per_band``: boolean ``(num_bands, 1 + n_fft // 2)``, the non-zero support of each mel
    filter, with the first bin forced into the first band and the last bin into the last band (as
    the reference). ``freq_indices``: the frequencies of all bands concatenated, band by band in
    ascending order (``int64``, overlapping bands repeat frequencies).

    Raises ``ValueError`` if some frequency is in no band or some band holds no frequency (the
    reference would build a zero-width band).
    """
    fb = mel_filterbank(sample_rate, n_fft, num_bands)
    fb[0, 0] = 1.0
    fb[-1, -1] = 1.0
    freqs_per_band = fb > 0
    if not freqs_per_band.any(axis=0).all():
        raise ValueError(
            f"mel bands with num_bands={num_bands}, n_fft={n_fft}, sample_rate={sample_rate} leave "
            f"frequencies {np.flatnonzero(~freqs_per_band.any(axis=0)).tolist()} in no band")
    empty = np.flatnonzero(~freqs_per_band.any(axis=1))
    if empty.size:
        raise ValueError(
            f"mel bands with num_bands={num_bands}, n_fft={n_fft}, sample_rate={sample_rate}: bands "
            f"{empty.tolist()} hold no STFT bin (too many bands for n_fft)")
    nb_bins = freqs_per_band.shape[1]
    freq_indices = np.concatenate([np.arange(nb_bins)[row] for row in freqs_per_band]).astype(np.int64)
    return freqs_per_band, freq_indices


__all__ = ["RMSNorm", "BandSplit", "MaskEstimator", "mel_filterbank", "mel_bands"]
