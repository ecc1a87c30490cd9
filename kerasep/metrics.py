"""Keras metrics for waveform outputs ``(batch, nb_channels, nb_timesteps)``: SDR and SI-SDR
in dB, averaged over channels and examples (fast training-time proxies; the reference
BSSEval v4 numbers come from :mod:`kerasep.evaluate`)."""
from kerasep.backend import keras, tf
from kerasep.losses import sdr, si_sdr

_register = keras.saving.register_keras_serializable(package="kerasep")


@_register
class SDR(keras.metrics.Mean):
    """Mean SDR ``10 log10(||s||² / ||s − ŝ||²)`` in dB (the MDX challenge's definition)."""

    def __init__(self, eps=1e-8, name="sdr", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.eps = float(eps)

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = tf.reduce_mean(sdr(y_true, y_pred, self.eps), axis=-1)
        return super().update_state(values, sample_weight=sample_weight)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "eps": self.eps}


@_register
class SISDR(keras.metrics.Mean):
    """Mean scale-invariant SDR in dB."""

    def __init__(self, eps=1e-8, name="si_sdr", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.eps = float(eps)

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = tf.reduce_mean(si_sdr(y_true, y_pred, self.eps), axis=-1)
        return super().update_state(values, sample_weight=sample_weight)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "eps": self.eps}
