"""Blocks of recurrent spectrogram models (Open-Unmix): bin cropping, per-bin affine maps and
stacked (B)LSTMs.

Shapes follow kerasep's glossary; Open-Unmix feeds frames as the time axis of its LSTMs, so
these blocks see ``(batch, nb_frames, features)`` sequences.
"""
from kerasep.backend import keras


@keras.saving.register_keras_serializable(package="kerasep")
class CropBins(keras.layers.Layer):
    """Keep the first ``nb_bins`` entries of the last axis (Open-Unmix's ``max_bin`` crop).

    Input shape ``(..., nb_bins_full)`` with ``nb_bins_full >= nb_bins``; output ``(..., nb_bins)``.
    """

    def __init__(self, nb_bins, **kwargs):
        super().__init__(**kwargs)
        if int(nb_bins) != nb_bins or nb_bins < 1:
            raise ValueError(f"`nb_bins` must be a positive integer. Received: nb_bins={nb_bins}")
        self.nb_bins = int(nb_bins)

    def call(self, x):
        return x[..., : self.nb_bins]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.nb_bins,)

    def get_config(self):
        config = super().get_config()
        config.update(nb_bins=self.nb_bins)
        return config


@keras.saving.register_keras_serializable(package="kerasep")
class BinAffine(keras.layers.Layer):
    """A learnable per-bin affine map over the last axis.

    ``order="shift_scale"``: ``(x + shift) * scale`` (Open-Unmix's input normalisation: it stores
    ``shift = -mean`` and ``scale = 1 / std``); ``order="scale_shift"``: ``x * scale + shift``
    (its output scaling, ``output_scale`` then ``output_mean``).

    Args:
        nb_bins: size of the last axis.
        order: ``"shift_scale"`` or ``"scale_shift"``.
        shift_init, scale_init: initial values (Open-Unmix: input ``0``/``1``, output ``1``/``1``).

    Input shape ``(..., nb_bins)``; output the same.
    """

    ORDERS = ("shift_scale", "scale_shift")

    def __init__(self, nb_bins, order="shift_scale", shift_init=0.0, scale_init=1.0, **kwargs):
        super().__init__(**kwargs)
        if order not in self.ORDERS:
            raise ValueError(f"`order` must be one of {self.ORDERS}. Received: order={order!r}")
        self.nb_bins = int(nb_bins)
        self.order = order
        self.shift_init = float(shift_init)
        self.scale_init = float(scale_init)

    def build(self, input_shape=None):
        if input_shape is not None and input_shape[-1] is not None and input_shape[-1] != self.nb_bins:
            raise ValueError(
                f"{self.name}: expected the last axis to have nb_bins={self.nb_bins}; "
                f"found input shape {tuple(input_shape)}"
            )
        self.shift = self.add_weight(
            name="shift", shape=(self.nb_bins,),
            initializer=keras.initializers.Constant(self.shift_init),
        )
        self.scale = self.add_weight(
            name="scale", shape=(self.nb_bins,),
            initializer=keras.initializers.Constant(self.scale_init),
        )

    def call(self, x):
        if self.order == "shift_scale":
            return (x + self.shift) * self.scale
        return x * self.scale + self.shift

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            nb_bins=self.nb_bins, order=self.order, shift_init=self.shift_init, scale_init=self.scale_init
        )
        return config


def lstm_stack(x, hidden_size, nb_layers=3, unidirectional=False, dropout=0.4, name="lstm"):
    """``nb_layers`` stacked LSTMs over the frames of ``x`` (as ``torch.nn.LSTM(num_layers=...)``).

    Args:
        x: ``(batch, nb_frames, features)`` Keras tensor.
        hidden_size: output features; a bidirectional stack uses ``hidden_size // 2`` units per
            direction (outputs concatenated forward then backward), a unidirectional (causal,
            streaming) stack ``hidden_size`` units.
        nb_layers: number of layers.
        dropout: dropout on the outputs of every layer but the last (training only).
        name: prefix; layer ``k`` is named ``{name}{k}`` (a ``Bidirectional`` wrapper when
            bidirectional) and the dropout after it ``{name}{k}_dropout``.

    Returns:
        ``(batch, nb_frames, hidden_size)``.
    """
    if hidden_size < 1 or (not unidirectional and hidden_size % 2):
        raise ValueError(
            "`hidden_size` must be a positive integer, even for a bidirectional stack. "
            f"Received: hidden_size={hidden_size}, unidirectional={unidirectional}"
        )
    if nb_layers < 1:
        raise ValueError(f"`nb_layers` must be >= 1. Received: nb_layers={nb_layers}")
    units = hidden_size if unidirectional else hidden_size // 2
    for k in range(nb_layers):
        if unidirectional:
            x = keras.layers.LSTM(units, return_sequences=True, name=f"{name}{k}")(x)
        else:
            x = keras.layers.Bidirectional(
                keras.layers.LSTM(units, return_sequences=True, name=f"{name}{k}_cell"),
                merge_mode="concat",
                name=f"{name}{k}",
            )(x)
        if dropout and k < nb_layers - 1:
            x = keras.layers.Dropout(dropout, name=f"{name}{k}_dropout")(x)
    return x


__all__ = ["CropBins", "BinAffine", "lstm_stack"]
