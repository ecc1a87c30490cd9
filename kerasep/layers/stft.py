"""Short-time Fourier transform layers.

One complex layout is used everywhere in kerasep: a trailing axis of size 2 holding
``(real, imag)``, i.e. spectrograms of shape ``(batch, nb_channels, nb_frames, nb_bins, 2)``.

Framing (``padding``) options:

- ``"spleeter"``: ``n_fft`` zeros are prepended and the end is zero-padded to a whole frame, as in
  Spleeter (``tf.signal.stft(..., pad_end=True)`` after ``tf.concat([zeros(n_fft), x])``).
  ``nb_frames = ceil((nb_timesteps + n_fft) / hop_length)``.
- ``"center"``: ``n_fft // 2`` samples padded on both sides (``pad_mode`` ``"reflect"`` or
  ``"constant"``), as ``torch.stft(center=True)`` / librosa. ``nb_frames = 1 + nb_timesteps // hop_length``.
- ``"valid"``: no padding. ``nb_frames = 1 + (nb_timesteps - n_fft) // hop_length``.

The window is a periodic Hann window. :class:`ISTFT` inverts :class:`STFT` for the same settings by
windowed overlap-add divided by the overlap-added squared window (exact wherever the window
envelope is non-zero), then crops the padding so the output has the input's length.
"""
from kerasep.backend import keras, tf

PADDINGS = ("spleeter", "center", "valid")


def _check_stft_args(n_fft, hop_length, padding, pad_mode):
    if int(n_fft) != n_fft or n_fft < 2:
        raise ValueError(f"`n_fft` must be an integer >= 2. Received: n_fft={n_fft}")
    if int(hop_length) != hop_length or not 0 < hop_length <= n_fft:
        raise ValueError(
            f"`hop_length` must be an integer in [1, n_fft={n_fft}]. Received: hop_length={hop_length}"
        )
    if padding not in PADDINGS:
        raise ValueError(f"`padding` must be one of {PADDINGS}. Received: padding={padding!r}")
    if pad_mode not in ("constant", "reflect"):
        raise ValueError(
            f"`pad_mode` must be 'constant' or 'reflect'. Received: pad_mode={pad_mode!r}"
        )


def hann_window(n_fft, dtype=tf.float32):
    """Periodic Hann window of length ``n_fft`` (as ``torch.hann_window`` / Spleeter)."""
    return tf.signal.hann_window(n_fft, periodic=True, dtype=dtype)


def nb_frames(nb_timesteps, n_fft, hop_length, padding="spleeter"):
    """Number of STFT frames produced for ``nb_timesteps`` samples (python ints)."""
    if padding == "spleeter":
        return -(-(nb_timesteps + n_fft) // hop_length)
    if padding == "center":
        return 1 + nb_timesteps // hop_length
    return max(0, 1 + (nb_timesteps - n_fft) // hop_length)


def window_envelope(n_fft, hop_length, start, stop, offset=0):
    """Overlap-added squared Hann window at samples ``[start, stop)`` of a signal fully covered
    by frames, where frame ``k`` starts at sample ``k * hop_length - offset``: periodic with
    period ``hop_length``. Samples no window covers get 1 (left undivided, as :class:`ISTFT`).

    Returns a float32 numpy array of ``stop - start`` values.
    """
    import numpy as np

    w2 = np.square(np.asarray(hann_window(n_fft)))
    period = np.array([w2[r::hop_length].sum() for r in range(hop_length)], np.float32)
    period[period <= 1e-11] = 1.0
    return period[(np.arange(start, stop) + offset) % hop_length]


@keras.saving.register_keras_serializable(package="kerasep")
class STFT(keras.layers.Layer):
    """Waveform → complex STFT (real/imag on the last axis).

    Args:
        n_fft: FFT size and window length, in samples.
        hop_length: hop between frames, in samples.
        padding: framing, one of ``"spleeter"``, ``"center"``, ``"valid"`` (see module docstring).
        pad_mode: ``"constant"`` or ``"reflect"``; used by ``padding="center"`` only.
        nb_bins: keep the first ``nb_bins`` frequency bins (default all ``n_fft // 2 + 1``).

    Input shape:
        ``(batch, nb_channels, nb_timesteps)`` float waveform, any length.

    Output shape:
        ``(batch, nb_channels, nb_frames, nb_bins, 2)`` with ``(real, imag)`` last.
    """

    def __init__(
        self, n_fft=4096, hop_length=1024, padding="spleeter", pad_mode="constant", nb_bins=None, **kwargs
    ):
        super().__init__(**kwargs)
        _check_stft_args(n_fft, hop_length, padding, pad_mode)
        full = n_fft // 2 + 1
        if nb_bins is not None and not 0 < nb_bins <= full:
            raise ValueError(
                f"`nb_bins` must be in [1, n_fft // 2 + 1 = {full}]. Received: nb_bins={nb_bins}"
            )
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.padding = padding
        self.pad_mode = pad_mode
        self.nb_bins = int(nb_bins) if nb_bins is not None else full

    def _pad(self, x):
        if self.padding == "spleeter":
            paddings = [[0, 0], [0, 0], [self.n_fft, 0]]
            return tf.pad(x, paddings)
        if self.padding == "center":
            half = self.n_fft // 2
            mode = "REFLECT" if self.pad_mode == "reflect" else "CONSTANT"
            return tf.pad(x, [[0, 0], [0, 0], [half, half]], mode=mode)
        return x

    def complex(self, waveform):
        """The STFT as a complex tensor ``(batch, nb_channels, nb_frames, nb_bins)``: the same ops
        as :meth:`call` without stacking real and imaginary parts (training features and losses
        take magnitudes from it directly)."""
        x = self._pad(tf.cast(waveform, self.compute_dtype))
        # frames: (batch, nb_channels, nb_frames, n_fft)
        frames = tf.signal.frame(
            x, self.n_fft, self.hop_length, pad_end=self.padding == "spleeter", axis=-1
        )
        frames = frames * hann_window(self.n_fft, frames.dtype)
        return tf.signal.rfft(frames)[..., : self.nb_bins]

    def call(self, waveform):
        spec = self.complex(waveform)
        return tf.stack([tf.math.real(spec), tf.math.imag(spec)], axis=-1)

    def compute_output_shape(self, input_shape):
        batch, channels, steps = input_shape
        frames = None if steps is None else nb_frames(steps, self.n_fft, self.hop_length, self.padding)
        return (batch, channels, frames, self.nb_bins, 2)

    def get_config(self):
        config = super().get_config()
        config.update(
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            padding=self.padding,
            pad_mode=self.pad_mode,
            nb_bins=self.nb_bins,
        )
        return config


@keras.saving.register_keras_serializable(package="kerasep")
class ISTFT(keras.layers.Layer):
    """Complex STFT (real/imag on the last axis) → waveform; the inverse of :class:`STFT`.

    Bins missing above ``nb_bins`` (a cropped spectrogram) are taken as zeros.

    Args:
        n_fft, hop_length, padding: as for the :class:`STFT` that produced the spectrogram.

    Call arguments:
        spec: ``(batch, nb_channels, nb_frames, nb_bins, 2)``.
        length: output ``nb_timesteps``; an int, a scalar tensor, or a reference waveform
            ``(batch, nb_channels, nb_timesteps)`` whose length is used. Default: all samples
            the frames cover after removing the padding.

    Output shape:
        ``(batch, nb_channels, nb_timesteps)``.
    """

    def __init__(self, n_fft=4096, hop_length=1024, padding="spleeter", **kwargs):
        super().__init__(**kwargs)
        _check_stft_args(n_fft, hop_length, padding, "constant")
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.padding = padding

    def overlap_add(self, spec):
        """Windowed overlap-add of the inverse FFT of each frame, not yet divided by the window
        envelope: ``(batch, nb_channels, nb_frames, nb_bins, 2)`` →
        ``(batch, nb_channels, (nb_frames - 1) * hop_length + n_fft)``, padding not removed.
        Consecutive blocks of frames overlap-add to the whole input's sum (streaming)."""
        spec = tf.cast(spec, self.compute_dtype)
        cspec = tf.complex(spec[..., 0], spec[..., 1])
        frames = tf.signal.irfft(cspec, fft_length=[self.n_fft])  # (b, c, nb_frames, n_fft)
        window = hann_window(self.n_fft, frames.dtype)
        return tf.signal.overlap_and_add(frames * window, self.hop_length)

    def call(self, spec, length=None):
        signal = self.overlap_add(spec)
        window = hann_window(self.n_fft, signal.dtype)
        n_frames = tf.shape(spec)[-3]
        envelope = tf.signal.overlap_and_add(
            tf.tile((window * window)[None, :], [n_frames, 1]), self.hop_length
        )
        tiny = tf.constant(1e-11, envelope.dtype)
        signal = signal / tf.where(envelope > tiny, envelope, tf.ones_like(envelope))
        start = {"spleeter": self.n_fft, "center": self.n_fft // 2, "valid": 0}[self.padding]
        if length is None:
            end = tf.shape(signal)[-1] - (start if self.padding == "center" else 0)
        elif isinstance(length, int):
            end = start + length
        else:
            length = tf.convert_to_tensor(length)
            end = start + (tf.shape(length)[-1] if length.shape.rank and length.shape.rank > 0 else length)
        out = signal[..., start:end]
        # A short spectrogram yields fewer samples than asked for: pad with zeros.
        if length is not None:
            missing = end - start - tf.shape(out)[-1]
            out = tf.pad(out, [[0, 0], [0, 0], [0, tf.maximum(missing, 0)]])
        return out

    def compute_output_shape(self, input_shape, length_shape=None):
        batch, channels = input_shape[0], input_shape[1]
        steps = None
        if length_shape is not None and len(length_shape) == 3:
            steps = length_shape[-1]
        return (batch, channels, steps)

    def get_config(self):
        config = super().get_config()
        config.update(n_fft=self.n_fft, hop_length=self.hop_length, padding=self.padding)
        return config


@keras.saving.register_keras_serializable(package="kerasep")
class Magnitude(keras.layers.Layer):
    """``|X|**power`` of a ``(..., 2)`` real/imag spectrogram.

    Input shape ``(batch, nb_channels, nb_frames, nb_bins, 2)``; output ``(batch, nb_channels,
    nb_frames, nb_bins)``. ``power=1`` gives the magnitude, ``power=2`` the power spectrogram.
    """

    def __init__(self, power=1.0, **kwargs):
        super().__init__(**kwargs)
        if power <= 0:
            raise ValueError(f"`power` must be > 0. Received: power={power}")
        self.power = float(power)

    def call(self, spec):
        if self.power == 1.0:
            # complex abs: accurate, and its gradient is defined (0) at the origin
            return tf.abs(tf.complex(spec[..., 0], spec[..., 1]))
        energy = tf.reduce_sum(tf.square(spec), axis=-1)
        return energy if self.power == 2.0 else tf.pow(energy, self.power / 2.0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])

    def get_config(self):
        config = super().get_config()
        config.update(power=self.power)
        return config

