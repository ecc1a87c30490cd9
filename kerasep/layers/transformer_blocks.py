"""The cross-domain Transformer of Hybrid Transformer Demucs (Rouard, Massa & Défossez 2023).

Sequences are ``(batch, nb_steps, dim)``. :class:`CrossTransformer` takes the frequency branch
``(batch, nb_bins, nb_frames, dim)`` and the time branch ``(batch, nb_timesteps, dim)``, adds
sinusoidal position embeddings (2-D for the spectrogram, flattened frame-major, 1-D for the
waveform) and alternates self-attention layers (:class:`TransformerEncoderLayer`, one per
branch) with cross-attention layers (:class:`CrossAttentionEncoderLayer`: each branch attends
to the other).

Attention is ``keras.layers.MultiHeadAttention``; norms ``LayerNormalization`` (eps 1e-5) and,
for ``norm_out``, :class:`~kerasep.layers.htdemucs_blocks.GroupNorm` with one group over the whole sequence (demucs'
``MyGroupNorm``).
"""
import math

from kerasep.backend import keras, tf
from kerasep.layers.htdemucs_blocks import GroupNorm, LayerScale, gelu


def sin_embedding(length, dim, max_period=10000.0):
    """1-D sinusoidal embedding ``(length, dim)``: ``[cos(p / T**(i / (dim/2 - 1))), sin(...)]``
    for ``i < dim / 2`` (demucs' ``create_sin_embedding``, shift 0). ``length`` may be a tensor."""
    half = dim // 2
    pos = tf.cast(tf.range(length), tf.float32)[:, None]
    adim = tf.range(half, dtype=tf.float32)[None, :]
    phase = pos / tf.pow(tf.constant(max_period, tf.float32), adim / (half - 1))
    return tf.concat([tf.cos(phase), tf.sin(phase)], axis=-1)


def sin_embedding_2d(dim, height, width, max_period=10000.0):
    """2-D sinusoidal embedding ``(width, height, dim)`` (demucs' ``create_2d_sin_embedding``
    transposed to channels-last, frames first): the first ``dim / 2`` channels interleave
    ``sin, cos`` of the frame index ``w``, the last ``dim / 2`` those of the bin index ``h``."""
    if dim % 4:
        raise ValueError(f"the 2-D sin embedding needs dim % 4 == 0. Received: dim={dim}")
    half = dim // 2
    div = tf.exp(tf.range(0, half, 2, dtype=tf.float32) * -(math.log(max_period) / half))  # (half/2,)

    def interleave(pos):  # (n,) → (n, half): sin, cos, sin, cos...
        arg = tf.cast(pos, tf.float32)[:, None] * div[None, :]
        return tf.reshape(tf.stack([tf.sin(arg), tf.cos(arg)], axis=-1), [-1, half])

    shape = tf.stack([width, height, half])
    w = tf.broadcast_to(interleave(tf.range(width))[:, None, :], shape)  # (width, height, half)
    h = tf.broadcast_to(interleave(tf.range(height))[None, :, :], shape)
    return tf.concat([w, h], axis=-1)


def _mha(dim, heads, dropout, name):
    return keras.layers.MultiHeadAttention(heads, dim // heads, dropout=dropout, name=name)


class _AttentionLayerBase(keras.layers.Layer):
    """Shared parts: feed-forward (``linear1`` → activation → dropout → ``linear2``), norms,
    layer scales ``gamma_1``/``gamma_2`` and the final ``norm_out``."""

    n_norms = 2

    def __init__(self, dim, heads, hidden, dropout=0.0, norm_first=True, norm_out=True, layer_scale=True,
                 init=1e-4, gelu_activation=True, **kwargs):
        super().__init__(**kwargs)
        if dim % heads:
            raise ValueError(f"`dim` must be a multiple of `heads`. Received: dim={dim}, heads={heads}")
        self.dim, self.heads, self.hidden = int(dim), int(heads), int(hidden)
        self.dropout, self.norm_first = float(dropout), bool(norm_first)
        self.norm_out_enabled = bool(norm_out) and self.norm_first
        self.norm_out = bool(norm_out)
        self.layer_scale, self.init, self.gelu_activation = bool(layer_scale), float(init), bool(gelu_activation)
        self.attn = _mha(self.dim, self.heads, self.dropout, "attn")
        self.linear1 = keras.layers.Dense(self.hidden, name="linear1")
        self.linear2 = keras.layers.Dense(self.dim, name="linear2")
        self.norms = [keras.layers.LayerNormalization(epsilon=1e-5, name=f"norm{i + 1}")
                      for i in range(self.n_norms)]
        self.norm_out_layer = (GroupNorm(1, axis=-1, epsilon=1e-5, name="norm_out")
                               if self.norm_out_enabled else None)
        self.gamma_1 = LayerScale(self.dim, self.init, name="gamma_1") if self.layer_scale else None
        self.gamma_2 = LayerScale(self.dim, self.init, name="gamma_2") if self.layer_scale else None
        self.drop = keras.layers.Dropout(self.dropout)

    def build(self, input_shape=None):
        seq = (None, None, self.dim)
        self.attn.build(seq, seq)
        self.linear1.build(seq)
        self.linear2.build((None, None, self.hidden))
        for norm in self.norms:
            norm.build(seq)
        if self.norm_out_layer is not None:
            self.norm_out_layer.build(seq)
        for gamma in (self.gamma_1, self.gamma_2):
            if gamma is not None:
                gamma.build(None)
        self.built = True

    def _ff(self, x, training):
        y = self.linear1(x)
        y = gelu(y) if self.gelu_activation else keras.ops.relu(y)
        y = self.linear2(self.drop(y, training=training))
        return self.drop(y, training=training)

    def _scale(self, gamma, x):
        return x if gamma is None else gamma(x)

    def _attend(self, q, kv, training):
        return self.drop(self.attn(q, kv, kv, training=training), training=training)

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, heads=self.heads, hidden=self.hidden, dropout=self.dropout,
                      norm_first=self.norm_first, norm_out=self.norm_out, layer_scale=self.layer_scale,
                      init=self.init, gelu_activation=self.gelu_activation)
        return config


@keras.saving.register_keras_serializable(package="kerasep")
class TransformerEncoderLayer(_AttentionLayerBase):
    """Self-attention Transformer layer (demucs' ``MyTransformerEncoderLayer``).

    ``norm_first``: ``x + gamma_1(SA(norm1(x)))``, then ``+ gamma_2(FF(norm2(x)))``, then
    ``norm_out`` (GroupNorm, 1 group) when enabled; else post-norm ``norm1(x + gamma_1(SA(x)))``,
    ``norm2(x + gamma_2(FF(x)))``.

    Args:
        dim: model width; heads: attention heads; hidden: feed-forward width.
        dropout: dropout of attention weights and residual branches (training only).
        norm_first, norm_out, layer_scale (``init``: its initial value), gelu_activation (GELU,
        else ReLU).

    Input/output shape: ``(batch, nb_steps, dim)``.

    Sublayers: ``attn``, ``linear1``, ``linear2``, ``norm1``, ``norm2``, ``norm_out``,
    ``gamma_1``, ``gamma_2``.
    """

    n_norms = 2

    def call(self, x, training=False):
        norm1, norm2 = self.norms
        if self.norm_first:
            h = norm1(x)
            x = x + self._scale(self.gamma_1, self._attend(h, h, training))
            x = x + self._scale(self.gamma_2, self._ff(norm2(x), training))
            if self.norm_out_layer is not None:
                x = self.norm_out_layer(x)
        else:
            x = norm1(x + self._scale(self.gamma_1, self._attend(x, x, training)))
            x = norm2(x + self._scale(self.gamma_2, self._ff(x, training)))
        return x


@keras.saving.register_keras_serializable(package="kerasep")
class CrossAttentionEncoderLayer(_AttentionLayerBase):
    """Cross-attention Transformer layer (demucs' ``CrossTransformerEncoderLayer``): queries from
    one branch, keys and values from the other.

    ``norm_first``: ``q + gamma_1(CA(norm1(q), norm2(k)))``, then ``+ gamma_2(FF(norm3(x)))``,
    then ``norm_out``; else ``norm1(q + gamma_1(CA(q, k)))``, ``norm2(x + gamma_2(FF(x)))``.

    Args: as :class:`TransformerEncoderLayer`.

    Call arguments: ``q`` ``(batch, nb_steps_q, dim)``, ``k`` ``(batch, nb_steps_k, dim)``.
    Output shape: ``q``'s.

    Sublayers: ``attn``, ``linear1``, ``linear2``, ``norm1``, ``norm2``, ``norm3``, ``norm_out``,
    ``gamma_1``, ``gamma_2``.
    """

    n_norms = 3

    def call(self, q, k, training=False):
        norm1, norm2, norm3 = self.norms
        if self.norm_first:
            x = q + self._scale(self.gamma_1, self._attend(norm1(q), norm2(k), training))
            x = x + self._scale(self.gamma_2, self._ff(norm3(x), training))
            if self.norm_out_layer is not None:
                x = self.norm_out_layer(x)
        else:
            x = norm1(q + self._scale(self.gamma_1, self._attend(q, k, training)))
            x = norm2(x + self._scale(self.gamma_2, self._ff(x, training)))
        return x


@keras.saving.register_keras_serializable(package="kerasep")
class CrossTransformer(keras.layers.Layer):
    """HTDemucs' cross-domain Transformer encoder (demucs' ``CrossTransformerEncoder`` with
    ``emb="sin"``).

    Both inputs are layer-normalised (``norm_in``, ``norm_in_t``) and get ``weight_pos_embed``
    times a sinusoidal embedding; then layer ``i`` is, when ``i % 2 == (1 if cross_first else
    0)``, a self-attention layer per branch, else a cross-attention layer per branch (the
    frequency branch attends to the time branch and vice versa, both from the inputs of the
    layer).

    Args:
        dim: channels of both branches; heads; layers: number of layers (``t_layers``).
        hidden_scale: feed-forward width ``int(dim * hidden_scale)``.
        cross_first: start with a cross-attention layer.
        dropout, norm_first, norm_out, layer_scale, gelu_activation: per layer (see
            :class:`TransformerEncoderLayer`).
        norm_in: LayerNorm the inputs.
        max_period: of the sinusoidal embeddings.
        weight_pos_embed: weight of the position embeddings.

    Call arguments:
        x: ``(batch, nb_bins, nb_frames, dim)``; xt: ``(batch, nb_timesteps, dim)``.

    Returns: ``(x, xt)`` with the same shapes.

    Sublayers: ``norm_in``, ``norm_in_t``, ``layers_{i}`` (frequency branch), ``layers_t_{i}``
    (time branch).
    """

    def __init__(self, dim, heads=8, layers=5, hidden_scale=4.0, cross_first=False, dropout=0.0, norm_in=True,
                 norm_first=True, norm_out=True, layer_scale=True, gelu_activation=True, max_period=10000.0,
                 weight_pos_embed=1.0, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.heads, self.num_layers = int(dim), int(heads), int(layers)
        self.hidden_scale, self.cross_first = float(hidden_scale), bool(cross_first)
        self.dropout, self.norm_in = float(dropout), bool(norm_in)
        self.norm_first, self.norm_out, self.layer_scale = bool(norm_first), bool(norm_out), bool(layer_scale)
        self.gelu_activation = bool(gelu_activation)
        self.max_period, self.weight_pos_embed = float(max_period), float(weight_pos_embed)
        hidden = int(self.dim * self.hidden_scale)
        self.classic_parity = 1 if self.cross_first else 0
        kw = dict(dim=self.dim, heads=self.heads, hidden=hidden, dropout=self.dropout, norm_first=self.norm_first,
                  norm_out=self.norm_out, layer_scale=self.layer_scale, gelu_activation=self.gelu_activation)
        self.norm_in_f = keras.layers.LayerNormalization(epsilon=1e-5, name="norm_in") if self.norm_in else None
        self.norm_in_t = keras.layers.LayerNormalization(epsilon=1e-5, name="norm_in_t") if self.norm_in else None
        self.layers_f, self.layers_t = [], []
        for i in range(self.num_layers):
            klass = TransformerEncoderLayer if i % 2 == self.classic_parity else CrossAttentionEncoderLayer
            self.layers_f.append(klass(name=f"layers_{i}", **kw))
            self.layers_t.append(klass(name=f"layers_t_{i}", **kw))

    def build(self, x_shape=None, xt_shape=None):
        for norm in (self.norm_in_f, self.norm_in_t):
            if norm is not None:
                norm.build((None, None, self.dim))
        for layer in self.layers_f + self.layers_t:
            layer.build(None)
        self.built = True

    def call(self, x, xt, training=False):
        shape = tf.shape(x)
        batch, bins, frames = shape[0], shape[1], shape[2]
        # (batch, bins, frames, dim) → (batch, frames * bins, dim), frame-major as demucs
        x = tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [batch, frames * bins, self.dim])
        pos = tf.reshape(sin_embedding_2d(self.dim, bins, frames, self.max_period), [1, -1, self.dim])
        if self.norm_in_f is not None:
            x = self.norm_in_f(x)
        x = x + self.weight_pos_embed * pos
        if self.norm_in_t is not None:
            xt = self.norm_in_t(xt)
        xt = xt + self.weight_pos_embed * sin_embedding(tf.shape(xt)[1], self.dim, self.max_period)[None]
        for i in range(self.num_layers):
            if i % 2 == self.classic_parity:
                x = self.layers_f[i](x, training=training)
                xt = self.layers_t[i](xt, training=training)
            else:
                old_x = x
                x = self.layers_f[i](x, xt, training=training)
                xt = self.layers_t[i](xt, old_x, training=training)
        x = tf.transpose(tf.reshape(x, [batch, frames, bins, self.dim]), [0, 2, 1, 3])
        return x, xt

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, heads=self.heads, layers=self.num_layers, hidden_scale=self.hidden_scale,
                      cross_first=self.cross_first, dropout=self.dropout, norm_in=self.norm_in,
                      norm_first=self.norm_first, norm_out=self.norm_out, layer_scale=self.layer_scale,
                      gelu_activation=self.gelu_activation, max_period=self.max_period,
                      weight_pos_embed=self.weight_pos_embed)
        return config
