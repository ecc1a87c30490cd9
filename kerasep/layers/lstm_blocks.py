"""Blocks of recurrent spectrogram models (Open-Unmix): bin cropping, per-bin affine maps and
stacked (B)LSTMs.

Shapes follow kerasep's glossary; Open-Unmix feeds frames as the time axis of its LSTMs, so
these blocks see ``(batch, nb_frames, features)`` sequences.
"""
import contextlib

from kerasep.backend import keras

#: Open :func:`keras_lstm_graphs` contexts (inference traces the Keras LSTM layers while > 0).
_KERAS_LSTM_CONTEXTS = [0]


@contextlib.contextmanager
def keras_lstm_graphs():
    """Within: the inference paths that run :func:`lstm_stacks_inference` (Open-Unmix's targets,
    Demucs' :class:`~kerasep.layers.glu_blocks.BLSTM`) trace the Keras LSTM layers instead. The
    ONNX export converts its graphs inside one: tf2onnx maps Keras' LSTM loops to ONNX ``LSTM``
    nodes, not a hand-written ``while`` loop."""
    _KERAS_LSTM_CONTEXTS[0] += 1
    try:
        yield
    finally:
        _KERAS_LSTM_CONTEXTS[0] -= 1


def fused_lstms(training=False):
    """Whether an inference path should run its LSTMs through :func:`lstm_stacks_inference`: not
    training and outside :func:`keras_lstm_graphs`."""
    return not training and not _KERAS_LSTM_CONTEXTS[0]


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


def lstm_stacks_inference(xs, models, nb_layers, unidirectional=False, name="lstm"):
    """Inference of the :func:`lstm_stack` of several models at once, with their own weights.

    Keras' LSTM on the TF CPU path steps through frames computing ``inputs @ kernel`` and
    ``h @ recurrent_kernel`` at every frame, one loop per layer, direction and model. Here each
    layer's input projections (``x @ kernel + bias``, every frame and direction of a model in
    one matmul) are computed before the loop, and one loop steps every direction of every model
    together: per frame one ``h @ recurrent_kernel`` for each of the ``len(models) * directions``
    cells. The same equations and weights as ``keras.layers.LSTM`` (gates ``i, f, c, o``,
    sigmoid / tanh; the backward layer of a ``Bidirectional`` reads the frames reversed and its
    outputs are reversed back), so the result matches the Keras layers up to float rounding.
    Dropout between layers is the identity at inference.

    Args:
        xs: one ``(batch, nb_frames, features)`` tensor per model (same ``batch`` and
            ``nb_frames``).
        models: models holding the layers :func:`lstm_stack` made with prefix ``name``.
        nb_layers, unidirectional: as given to :func:`lstm_stack`.

    Returns:
        one ``(batch, nb_frames, hidden_size)`` tensor per model.
    """
    for k in range(nb_layers):
        layers = [m.get_layer(f"{name}{k}") for m in models]
        if unidirectional:
            directions = [[(layer, False)] for layer in layers]
        else:
            directions = [[(layer.forward_layer, False), (layer.backward_layer, True)] for layer in layers]
        xs = lstm_directions_inference(xs, directions)
    return xs


def lstm_directions_inference(xs, directions):
    """One layer of :func:`lstm_stacks_inference`: ``directions[j]`` lists ``(lstm_layer,
    reverse)`` (``keras.layers.LSTM``; ``reverse``: a ``Bidirectional``'s backward layer) reading
    ``xs[j]`` ``(batch, nb_frames, features)``; returns, per ``j``, the outputs of its directions
    concatenated, ``(batch, nb_frames, len(directions[j]) * units)``. Every layer must have the
    same ``units``."""
    from kerasep.backend import tf

    for group in directions:
        for layer, _ in group:
            cell = layer.cell
            names = (getattr(cell.activation, "__name__", None), getattr(cell.recurrent_activation, "__name__", None))
            if names != ("tanh", "sigmoid"):
                raise ValueError(f"{layer.name}: lstm_stacks_inference needs the activations ('tanh', 'sigmoid'); "
                                 f"found {names}")
            if not cell.use_bias:
                raise ValueError(f"{layer.name}: lstm_stacks_inference needs a bias")
    units = directions[0][0][0].cell.units
    if any(layer.cell.units != units for group in directions for layer, _ in group):
        raise ValueError(f"lstm_directions_inference: every LSTM must have {units} units")
    projections, kernels = [], []
    for x, group in zip(xs, directions):
        kernel = tf.concat([layer.cell.kernel for layer, _ in group], axis=1)
        bias = tf.concat([layer.cell.bias for layer, _ in group], axis=0)
        proj = tf.matmul(x, kernel) + bias  # (batch, nb_frames, len(group) * 4 * units)
        for d, (layer, reverse) in enumerate(group):
            z = proj[..., d * 4 * units : (d + 1) * 4 * units]
            projections.append(tf.reverse(z, axis=[1]) if reverse else z)
            kernels.append(layer.cell.recurrent_kernel)
    proj = tf.transpose(tf.stack(projections), [2, 0, 1, 3])  # (nb_frames, cells, batch, 4 * units)
    nb_frames = tf.shape(proj)[0]
    state = tf.zeros(tf.concat([tf.shape(proj)[1:3], [units]], axis=0), proj.dtype)

    def step(t, h, c, outputs):
        # one 2-D matmul per cell, not one BatchMatMul: at batch 1 TF's MatMul (oneDNN) reads the
        # recurrent kernels about twice as fast as BatchMatMul (measured: Demucs' 2 x 2048 units,
        # 5.4 vs 12 ms per frame)
        z = proj[t] + tf.stack([tf.matmul(h[j], kernel) for j, kernel in enumerate(kernels)])
        i, f, g, o = tf.split(z, 4, axis=-1)
        c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
        h = tf.sigmoid(o) * tf.tanh(c)
        return t + 1, h, c, outputs.write(t, h)

    outputs = tf.TensorArray(proj.dtype, size=nb_frames, element_shape=state.shape)
    _, _, _, outputs = tf.while_loop(lambda t, *_: t < nb_frames, step, (0, state, state, outputs))
    y = tf.transpose(outputs.stack(), [1, 2, 0, 3])  # (cells, batch, nb_frames, units)
    results, cell = [], 0
    for group in directions:
        parts = []
        for _, reverse in group:
            parts.append(tf.reverse(y[cell], axis=[1]) if reverse else y[cell])
            cell += 1
        results.append(tf.concat(parts, axis=-1))
    return results


__all__ = ["CropBins", "BinAffine", "lstm_stack", "lstm_stacks_inference", "lstm_directions_inference",
           "keras_lstm_graphs", "fused_lstms"]
