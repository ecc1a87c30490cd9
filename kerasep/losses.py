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


#: Names accepted by :func:`get` (configs and the CLI use them).
LOSSES = {
    "spectrogram_mse": SpectrogramMSE,
    "spectrogram_l1": SpectrogramL1,
    "waveform_l1": WaveformL1,
    "si_sdr": SISDRLoss,
    "multi_resolution_stft": MultiResolutionSTFT,
}


def get(name, **kwargs):
    """A loss instance from its name in :data:`LOSSES` (``kwargs`` go to the constructor)."""
    if isinstance(name, keras.losses.Loss):
        return name
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {sorted(LOSSES)}")
    return LOSSES[name](**kwargs)
