"""Training losses for separation models (Keras 3 ``Loss`` classes, serialisable).

Every loss returns one value per example (``(batch,)``) and computes in float32, so it works
under a ``mixed_float16`` policy. ``y_true``/``y_pred`` are either

- waveforms ``(batch, nb_channels, nb_timesteps)``, or
- magnitude spectrograms of any shape (``SpectrogramMSE``/``SpectrogramL1`` with ``n_fft=None``,
  e.g. the U-Net core's ``(batch, T, F, nb_channels)`` outputs).

=====================  ===============================================  ==================
class                  what                                             used by
=====================  ===============================================  ==================
SpectrogramMSE         mean squared error of magnitude spectrograms      Open-Unmix
SpectrogramL1          mean absolute error of (masked) magnitudes        Spleeter (U-Net)
WaveformL1             mean absolute error of waveforms                  Demucs
SISDRLoss              negative scale-invariant SDR, in dB               (Conv-TasNet, ...)
MultiResolutionSTFT    spectral convergence + log-magnitude L1 summed   (Parallel WaveGAN,
                       over several STFT resolutions                     HiFi-GAN, Demucs v3+)
WaveformMultiSTFTL1    waveform L1 + L1 of complex STFTs summed over     BS-RoFormer,
                       resolutions (windows 4096..256, hop 147)          Mel-Band RoFormer
=====================  ===============================================  ==================
"""
from kerasep.backend import keras, tf
from kerasep.layers.stft import STFT

_register = keras.saving.register_keras_serializable(package="kerasep")


def _per_example_mean(x):
    x = tf.reshape(x, [tf.shape(x)[0], -1])
    return tf.reduce_mean(x, axis=1)


def stft_magnitude(waveform, n_fft, hop_length):
    """``(batch, nb_channels, nb_timesteps)`` → ``(batch, nb_channels, nb_frames, n_fft//2+1)``
    magnitudes (periodic Hann window, centred frames with zero padding): the
    :class:`~kerasep.layers.STFT` layer's complex output, in float32."""
    stft = STFT(n_fft, hop_length, padding="center", pad_mode="constant", dtype="float32")
    return tf.abs(stft.complex(tf.cast(waveform, tf.float32)))


class _SpectrogramLoss(keras.losses.Loss):
    def __init__(self, n_fft=None, hop_length=None, name=None, reduction="sum_over_batch_size", **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)
        if (n_fft is None) != (hop_length is None):
            raise ValueError(f"give both n_fft and hop_length, or neither. Received: {n_fft}, {hop_length}")
        if n_fft is not None and not 0 < hop_length <= n_fft:
            raise ValueError(f"`hop_length` must be in (0, n_fft]. Received: n_fft={n_fft}, hop_length={hop_length}")
        self.n_fft = n_fft
        self.hop_length = hop_length

    def _mags(self, y_true, y_pred):
        y_true, y_pred = tf.cast(y_true, tf.float32), tf.cast(y_pred, tf.float32)
        if self.n_fft is None:
            return y_true, y_pred
        return stft_magnitude(y_true, self.n_fft, self.hop_length), stft_magnitude(y_pred, self.n_fft, self.hop_length)

    def get_config(self):
        config = super().get_config()
        config.update(n_fft=self.n_fft, hop_length=self.hop_length)
        return config


@_register
class SpectrogramMSE(_SpectrogramLoss):
    """Mean squared error between magnitude spectrograms (Open-Unmix).

    Args:
        n_fft, hop_length: when given, inputs are waveforms and their STFT magnitudes are
            compared; when ``None`` (default), inputs already are magnitudes.
    """

    def __init__(self, n_fft=None, hop_length=None, name="spectrogram_mse", **kwargs):
        super().__init__(n_fft, hop_length, name=name, **kwargs)

    def call(self, y_true, y_pred):
        t, p = self._mags(y_true, y_pred)
        return _per_example_mean(tf.square(p - t))


@_register
class SpectrogramL1(_SpectrogramLoss):
    """Mean absolute error between magnitude spectrograms: Spleeter's loss on the masked
    mixture magnitudes (the U-Net core's outputs) against the sources' magnitudes."""

    def __init__(self, n_fft=None, hop_length=None, name="spectrogram_l1", **kwargs):
        super().__init__(n_fft, hop_length, name=name, **kwargs)

    def call(self, y_true, y_pred):
        t, p = self._mags(y_true, y_pred)
        return _per_example_mean(tf.abs(p - t))


@_register
class WaveformL1(keras.losses.Loss):
    """Mean absolute error between waveforms (Demucs)."""

    def __init__(self, name="waveform_l1", reduction="sum_over_batch_size", **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)

    def call(self, y_true, y_pred):
        return _per_example_mean(tf.abs(tf.cast(y_pred, tf.float32) - tf.cast(y_true, tf.float32)))


def si_sdr(y_true, y_pred, eps=1e-8):
    """Scale-invariant SDR in dB per ``(batch, nb_channels)`` signal (last axis = time),
    with zero-mean signals (Le Roux et al. 2019)."""
    t = tf.cast(y_true, tf.float32)
    p = tf.cast(y_pred, tf.float32)
    t = t - tf.reduce_mean(t, axis=-1, keepdims=True)
    p = p - tf.reduce_mean(p, axis=-1, keepdims=True)
    alpha = tf.reduce_sum(t * p, -1, keepdims=True) / (tf.reduce_sum(t * t, -1, keepdims=True) + eps)
    target = alpha * t
    noise = p - target
    ratio = (tf.reduce_sum(target * target, -1) + eps) / (tf.reduce_sum(noise * noise, -1) + eps)
    return 10.0 * tf.math.log(ratio) / tf.math.log(10.0)


def sdr(y_true, y_pred, eps=1e-8):
    """Plain SDR (signal-to-distortion ratio, no scaling) in dB per ``(batch, nb_channels)``
    signal: ``10 log10(||s||² / ||s − ŝ||²)``, the MDX challenge's per-song SDR for one source."""
    t = tf.cast(y_true, tf.float32)
    p = tf.cast(y_pred, tf.float32)
    num = tf.reduce_sum(t * t, -1) + eps
    den = tf.reduce_sum(tf.square(t - p), -1) + eps
    return 10.0 * tf.math.log(num / den) / tf.math.log(10.0)


@_register
class SISDRLoss(keras.losses.Loss):
    """Negative SI-SDR (dB) averaged over channels; inputs ``(batch, nb_channels, nb_timesteps)``."""

    def __init__(self, eps=1e-8, name="si_sdr_loss", reduction="sum_over_batch_size", **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)
        self.eps = float(eps)

    def call(self, y_true, y_pred):
        return -_per_example_mean(si_sdr(y_true, y_pred, self.eps))

    def get_config(self):
        config = super().get_config()
        config.update(eps=self.eps)
        return config


@_register
class MultiResolutionSTFT(keras.losses.Loss):
    """Multi-resolution STFT loss: for each ``(n_fft, hop_length)``, spectral convergence
    ``||S − Ŝ||_F / ||S||_F`` plus the mean absolute difference of log magnitudes; summed over
    resolutions. Inputs: waveforms ``(batch, nb_channels, nb_timesteps)``."""

    def __init__(
        self,
        fft_sizes=(512, 1024, 2048),
        hop_sizes=(128, 256, 512),
        eps=1e-7,
        name="multi_resolution_stft",
        reduction="sum_over_batch_size",
        **kwargs,
    ):
        super().__init__(name=name, reduction=reduction, **kwargs)
        if len(fft_sizes) != len(hop_sizes) or not fft_sizes:
            raise ValueError(f"fft_sizes and hop_sizes must be non-empty and of equal length. Received: {fft_sizes}, {hop_sizes}")
        self.fft_sizes = [int(f) for f in fft_sizes]
        self.hop_sizes = [int(h) for h in hop_sizes]
        self.eps = float(eps)

    def call(self, y_true, y_pred):
        total = 0.0
        for n_fft, hop in zip(self.fft_sizes, self.hop_sizes):
            t = stft_magnitude(y_true, n_fft, hop)
            p = stft_magnitude(y_pred, n_fft, hop)
            b = tf.shape(t)[0]
            t2, p2 = tf.reshape(t, [b, -1]), tf.reshape(p, [b, -1])
            sc = tf.norm(t2 - p2, axis=1) / (tf.norm(t2, axis=1) + self.eps)
            log_mag = tf.reduce_mean(tf.abs(tf.math.log(t2 + self.eps) - tf.math.log(p2 + self.eps)), axis=1)
            total = total + sc + log_mag
        return total

    def get_config(self):
        config = super().get_config()
        config.update(fft_sizes=self.fft_sizes, hop_sizes=self.hop_sizes, eps=self.eps)
        return config


def _modulus(re, im):
    """``sqrt(re² + im²)`` with a zero (not NaN) gradient where both are 0 (digital silence
    predicted exactly), as ``torch.abs`` of a complex tensor."""
    sq = re * re + im * im
    nonzero = sq > 0
    return tf.where(nonzero, tf.sqrt(tf.where(nonzero, sq, 1.0)), 0.0)


def windowed_stft(waveform, window_size, n_fft, hop_length, normalized=False):
    """Complex STFT ``(batch, nb_channels, nb_frames, n_fft // 2 + 1)`` as ``(real, imag)``
    float32 pairs, framed as ``torch.stft(x, n_fft, hop_length, win_length=window_size,
    window=torch.hann_window(window_size), center=True, pad_mode="reflect")``: the signal is
    reflect-padded by ``n_fft // 2`` on both sides, ``nb_frames = 1 + nb_timesteps //
    hop_length``, and the periodic Hann window of ``window_size <= n_fft`` samples sits in the
    middle of each ``n_fft``-sample frame (zeros around it). ``normalized`` divides by
    ``sqrt(n_fft)``. (:class:`~kerasep.layers.STFT` has one window length, ``n_fft``; these
    resolutions need a shorter window inside a longer FFT.)

    ``waveform``: ``(batch, nb_channels, nb_timesteps)``, ``nb_timesteps > n_fft // 2``."""
    if not 0 < window_size <= n_fft or hop_length < 1:
        raise ValueError(f"need 0 < window_size <= n_fft and hop_length >= 1. Received: window_size={window_size}, "
                         f"n_fft={n_fft}, hop_length={hop_length}")
    x = tf.cast(waveform, tf.float32)
    pad = n_fft // 2
    x = tf.pad(x, [[0, 0], [0, 0], [pad, pad]], mode="REFLECT")
    frames = tf.signal.frame(x, n_fft, hop_length)  # (batch, nb_channels, nb_frames, n_fft)
    left = (n_fft - window_size) // 2
    window = tf.pad(tf.signal.hann_window(window_size, periodic=True), [[left, n_fft - window_size - left]])
    spec = tf.signal.rfft(frames * window)
    if normalized:
        spec = spec / tf.cast(tf.sqrt(float(n_fft)), tf.complex64)
    return tf.math.real(spec), tf.math.imag(spec)


@_register
class WaveformMultiSTFTL1(keras.losses.Loss):
    """The band-split RoFormers' training loss (Lu et al. 2023, arXiv 2309.02612; lucidrains'
    ``BSRoformer.forward(mix, target)``, which MSST trains ``bs_roformer``/``mel_band_roformer``
    with): the mean absolute error of the waveforms plus ``stft_weight`` times, summed over the
    resolutions, the mean modulus of the difference of the complex STFTs::

        mean|y - ŷ| + stft_weight * Σ_w mean|STFT_w(y) - STFT_w(ŷ)|

    with, for each window size ``w`` of ``window_sizes``, ``n_fft = max(w, min_n_fft)``, a
    periodic Hann window of ``w`` samples centred in the frame, hop ``hop_length``
    (:func:`windowed_stft`).

    Args:
        window_sizes: STFT window lengths in samples (4096, 2048, 1024, 512, 256; MSST
            ``multi_stft_resolutions_window_sizes``).
        hop_length: hop of every resolution, samples (147; ``multi_stft_hop_size``).
        min_n_fft: smallest FFT size (2048: the model's ``stft_n_fft``, as lucidrains).
        stft_weight: weight of the STFT term (1.0; ``multi_stft_resolution_loss_weight``).
        normalized: divide each STFT by ``sqrt(n_fft)`` (False; ``multi_stft_normalized``).

    Inputs: waveforms ``(batch, nb_channels, nb_timesteps)`` with ``nb_timesteps > n_fft // 2``
    of the largest resolution (reflect padding). Returns ``(batch,)``. With a dict of targets
    Keras sums the per-target losses, where lucidrains' multi-stem loss averages over stems
    (the same up to the factor ``len(targets)``).
    """

    def __init__(self, window_sizes=(4096, 2048, 1024, 512, 256), hop_length=147, min_n_fft=2048,
                 stft_weight=1.0, normalized=False, name="waveform_multi_stft_l1",
                 reduction="sum_over_batch_size", **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)
        self.window_sizes = [int(w) for w in window_sizes]
        if not self.window_sizes or min(self.window_sizes) < 1:
            raise ValueError(f"`window_sizes` must be positive sample counts, at least one. Received: {window_sizes}")
        if int(hop_length) < 1 or int(min_n_fft) < 1:
            raise ValueError(f"`hop_length` and `min_n_fft` must be >= 1. Received: hop_length={hop_length}, "
                             f"min_n_fft={min_n_fft}")
        if float(stft_weight) < 0:
            raise ValueError(f"`stft_weight` must be >= 0. Received: {stft_weight}")
        self.hop_length, self.min_n_fft = int(hop_length), int(min_n_fft)
        self.stft_weight, self.normalized = float(stft_weight), bool(normalized)

    def call(self, y_true, y_pred):
        t, p = tf.cast(y_true, tf.float32), tf.cast(y_pred, tf.float32)
        total = _per_example_mean(tf.abs(p - t))
        if not self.stft_weight:
            return total
        spectral = 0.0
        for w in self.window_sizes:
            n_fft = max(w, self.min_n_fft)
            tr, ti = windowed_stft(t, w, n_fft, self.hop_length, self.normalized)
            pr, pi = windowed_stft(p, w, n_fft, self.hop_length, self.normalized)
            spectral = spectral + _per_example_mean(_modulus(pr - tr, pi - ti))
        return total + self.stft_weight * spectral

    def get_config(self):
        config = super().get_config()
        config.update(window_sizes=self.window_sizes, hop_length=self.hop_length, min_n_fft=self.min_n_fft,
                      stft_weight=self.stft_weight, normalized=self.normalized)
        return config


#: Names accepted by :func:`get` (configs and the CLI use them).
LOSSES = {
    "spectrogram_mse": SpectrogramMSE,
    "spectrogram_l1": SpectrogramL1,
    "waveform_l1": WaveformL1,
    "si_sdr": SISDRLoss,
    "multi_resolution_stft": MultiResolutionSTFT,
    "waveform_multi_stft_l1": WaveformMultiSTFTL1,
}


def get(name, **kwargs):
    """A loss instance from its name in :data:`LOSSES` (``kwargs`` go to the constructor)."""
    if isinstance(name, keras.losses.Loss):
        return name
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}")
    return LOSSES[name](**kwargs)
