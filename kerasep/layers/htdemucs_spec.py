"""HTDemucs' spectrogram layers: :class:`HTSpectrogram` (``HTDemucs._spec``) and its inverse
:class:`HTInverseSpectrogram` (``HTDemucs._ispec``).

Spectrograms are ``(batch, nb_channels, nb_bins, nb_frames, 2)`` with ``(real, imag)`` last (the
kerasep complex layout). Re-exported by :mod:`kerasep.layers.htdemucs_blocks` and
:mod:`kerasep.layers`; the registered serialisation names (``kerasep>HTSpectrogram``,
``kerasep>HTInverseSpectrogram``) are those of the classes, wherever they live.
"""
import math

from kerasep.backend import keras, tf
from kerasep.layers.stft import ISTFT, STFT


def _fft_sizes(n_fft):
    """``(n_fft, hop_length)`` of demucs' spectrogram: ``hop = n_fft // 4``."""
    if n_fft % 4 or n_fft < 8:
        raise ValueError(f"`n_fft` must be a multiple of 4 (>= 8). Received: n_fft={n_fft}")
    return int(n_fft), int(n_fft) // 4


@keras.saving.register_keras_serializable(package="kerasep")
class HTSpectrogram(keras.layers.Layer):
    """HTDemucs' spectrogram (``HTDemucs._spec``): a normalised STFT whose frame ``k`` is centred
    on sample ``k * hop + hop / 2``, so that ``nb_frames = ceil(nb_timesteps / hop)`` exactly.

    ``hop = n_fft // 4``. The waveform is reflect-padded by ``3 * hop // 2`` on the left and
    ``3 * hop // 2 + nb_frames * hop - nb_timesteps`` on the right, transformed by
    :class:`kerasep.layers.STFT` (``padding="center"``, reflect, periodic Hann), scaled by
    ``1 / sqrt(n_fft)`` (torch's ``normalized=True``), the Nyquist bin dropped and two frames
    dropped on each side. An input too short to reflect is zero-padded first, as demucs' ``pad1d``.

    Input shape: ``(batch, nb_channels, nb_timesteps)``.
    Output shape: ``(batch, nb_channels, n_fft // 2, ceil(nb_timesteps / hop), 2)``
    (bins before frames, real/imag last).
    """

    def __init__(self, n_fft=4096, **kwargs):
        super().__init__(**kwargs)
        self.n_fft, self.hop_length = _fft_sizes(n_fft)
        self.stft = STFT(self.n_fft, self.hop_length, padding="center", pad_mode="reflect",
                         nb_bins=self.n_fft // 2, dtype="float32", name="stft")

    def build(self, input_shape=None):
        self.stft.build(input_shape)
        self.built = True

    def call(self, waveform):
        hl = self.hop_length
        x = tf.convert_to_tensor(waveform, tf.float32)
        length = tf.shape(x)[-1]
        frames = (length + hl - 1) // hl
        pad = hl // 2 * 3
        left, right = pad, pad + frames * hl - length
        # demucs' pad1d: an input too short to reflect (length <= padding) is first zero-padded to
        # one sample more than the larger padding, the zeros taken from the right padding first
        extra = tf.maximum(0, tf.maximum(left, right) - length + 1)
        extra_right = tf.minimum(right, extra)
        extra_left = extra - extra_right
        x = tf.pad(x, [[0, 0], [0, 0], [extra_left, extra_right]])
        x = tf.pad(x, [[0, 0], [0, 0], [left - extra_left, right - extra_right]], mode="REFLECT")
        z = self.stft(x)[:, :, 2: 2 + frames]  # (batch, nb_channels, nb_frames, nb_bins, 2)
        z = z * (1.0 / math.sqrt(self.n_fft))
        return tf.transpose(z, [0, 1, 3, 2, 4])

    def get_config(self):
        config = super().get_config()
        config.update(n_fft=self.n_fft)
        return config


@keras.saving.register_keras_serializable(package="kerasep")
class HTInverseSpectrogram(keras.layers.Layer):
    """The inverse of :class:`HTSpectrogram` (``HTDemucs._ispec``): the Nyquist bin and two frames
    on each side are restored as zeros, the result inverted by :class:`kerasep.layers.ISTFT`
    (``padding="center"``) scaled by ``sqrt(n_fft)`` (torch's ``normalized=True``) at length
    ``hop * ceil(length / hop) + 3 * hop``, and ``3 * hop // 2`` samples dropped on the left.

    Call arguments:
        spec: ``(batch, channels, n_fft // 2, nb_frames, 2)``.
        length: output ``nb_timesteps`` (int or scalar int32 tensor).

    Output shape: ``(batch, channels, length)``.
    """

    def __init__(self, n_fft=4096, **kwargs):
        super().__init__(**kwargs)
        self.n_fft, self.hop_length = _fft_sizes(n_fft)
        self.istft = ISTFT(self.n_fft, self.hop_length, padding="center", dtype="float32", name="istft")

    def build(self, spec_shape=None, length_shape=None):
        self.istft.build(spec_shape)
        self.built = True

    def call(self, spec, length):
        hl = self.hop_length
        z = tf.transpose(tf.cast(spec, tf.float32), [0, 1, 3, 2, 4])  # (b, c, frames, bins, 2)
        z = tf.pad(z, [[0, 0], [0, 0], [2, 2], [0, 1], [0, 0]])
        pad = hl // 2 * 3
        length = tf.convert_to_tensor(length, tf.int32)
        total = hl * ((length + hl - 1) // hl) + 2 * pad
        x = self.istft(z, total) * math.sqrt(self.n_fft)
        return x[:, :, pad: pad + length]

    def get_config(self):
        config = super().get_config()
        config.update(n_fft=self.n_fft)
        return config
