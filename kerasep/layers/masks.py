"""Mask layers: ratio masks across targets and complex-spectrogram masking."""
from kerasep.backend import keras, tf


@keras.saving.register_keras_serializable(package="kerasep")
class RatioMask(keras.layers.Layer):
    """Soft ratio masks from per-target magnitude estimates (Spleeter's ``separation_exponent``).

    ``mask_j = (est_j ** p + eps / nb_targets) / (sum_k est_k ** p + eps)``, so masks sum to one.

    Args:
        separation_exponent: ``p``; 2 gives Wiener-like power ratios, 1 amplitude ratios.
        eps: regulariser keeping silent bins finite (Spleeter uses 1e-10).

    Call arguments:
        estimates: list of ``nb_targets`` tensors of identical shape (any rank).

    Output:
        list of ``nb_targets`` masks, same shape as the estimates, values in [0, 1].
    """

    def __init__(self, separation_exponent=2.0, eps=1e-10, **kwargs):
        super().__init__(**kwargs)
        if separation_exponent <= 0:
            raise ValueError(
                f"`separation_exponent` must be > 0. Received: separation_exponent={separation_exponent}"
            )
        self.separation_exponent = float(separation_exponent)
        self.eps = float(eps)

    def call(self, estimates):
        if len(estimates) < 1:
            raise ValueError("RatioMask expects a list of at least one estimate; received none.")
        p = self.separation_exponent
        powered = [tf.square(e) if p == 2.0 else tf.pow(e, p) for e in estimates]
        total = tf.add_n(powered) + self.eps
        share = self.eps / len(estimates)
        return [(x + share) / total for x in powered]

    def compute_output_shape(self, input_shape):
        return list(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(separation_exponent=self.separation_exponent, eps=self.eps)
        return config


@keras.saving.register_keras_serializable(package="kerasep")
class ApplyMask(keras.layers.Layer):
    """Multiply a complex spectrogram by a real mask over its first ``nb_bins`` bins.

    Bins above the mask's ``nb_bins`` are set to zero (``mask_extension="zeros"``) or masked
    with the mask's mean over frequency (``"average"``), as in Spleeter's ``_extend_mask``.

    Call arguments:
        spec: ``(batch, nb_channels, nb_frames, nb_bins_full, 2)`` real/imag.
        mask: ``(batch, nb_channels, nb_frames, nb_bins)`` with ``nb_bins <= nb_bins_full``.

    Output: ``(batch, nb_channels, nb_frames, nb_bins, 2)`` for ``"zeros"`` (the zero bins are
    left out; :class:`~kerasep.layers.ISTFT` treats missing bins as zeros), else
    ``(batch, nb_channels, nb_frames, nb_bins_full, 2)``.
    """

    EXTENSIONS = ("zeros", "average")

    def __init__(self, mask_extension="zeros", **kwargs):
        super().__init__(**kwargs)
        if mask_extension not in self.EXTENSIONS:
            raise ValueError(
                f"`mask_extension` must be one of {self.EXTENSIONS}. Received: {mask_extension!r}"
            )
        self.mask_extension = mask_extension

    def call(self, spec, mask):
        nb_bins = tf.shape(mask)[-1]
        if self.mask_extension == "average":
            extra = tf.shape(spec)[-2] - nb_bins
            mean = tf.reduce_mean(mask, axis=-1, keepdims=True)
            mask = tf.concat([mask, tf.repeat(mean, extra, axis=-1)], axis=-1)
            return spec * mask[..., None]
        return spec[..., :nb_bins, :] * mask[..., None]

    def get_config(self):
        config = super().get_config()
        config.update(mask_extension=self.mask_extension)
        return config
