"""The axial RoPE Transformer of the band-split RoFormers (BS-RoFormer, Mel-Band RoFormer), as in
lucidrains' ``BS-RoFormer`` 0.3.x and ZFTurbo's Music-Source-Separation-Training (the layout of
the released checkpoints).

Sequences are ``(batch, nb_steps, dim)``. One :class:`RoformerTransformer` layer is
``x = x + attn(x)``, then ``x = x + ff(x)``, both pre-normed with
:class:`~kerasep.layers.band_split.RMSNorm`:

- :class:`RoformerAttention`: multi-head self-attention (``to_qkv`` without bias, heads of
  ``dim_head``), rotary position embeddings on queries and keys (interleaved pairs, theta
  10000, positions ``0 .. nb_steps - 1``, over the whole ``dim_head``), softmax scaled by
  ``dim_head ** -0.5``, each head's output gated by ``sigmoid(to_gates(x))``, ``to_out``
  without bias;
- :class:`RoformerFeedForward`: ``Dense(dim * mult)`` → exact (erf) GELU → ``Dense(dim)``.

:class:`AxialRoformer` alternates, ``depth`` times, a transformer across time (each band
separately) and one across bands (each frame separately) on ``(batch, nb_frames, nb_bands,
dim)``.
"""
from kerasep.backend import keras
from kerasep.layers.band_split import RMSNorm


def rotary_cos_sin(length, dim_head, theta=10000.0, dtype="float32"):
    """``cos`` and ``sin`` of the rotary angles, each ``(length, dim_head)``: angle ``[n, j] =
    n * theta ** (-2 * (j // 2) / dim_head)`` (``rotary_embedding_torch.RotaryEmbedding(dim_head)``,
    frequencies repeated for each interleaved pair). ``length`` may be a tensor."""
    ops = keras.ops
    inv_freq = 1.0 / (theta ** (ops.cast(ops.arange(0, dim_head, 2), "float32") / float(dim_head)))
    pos = ops.cast(ops.arange(length), "float32")
    angles = pos[:, None] * inv_freq[None, :]  # (length, dim_head / 2)
    angles = ops.reshape(ops.stack([angles, angles], axis=-1), (-1, dim_head))
    return ops.cast(ops.cos(angles), dtype), ops.cast(ops.sin(angles), dtype)


def apply_rotary(x, cos, sin):
    """Rotate interleaved pairs ``(x[2i], x[2i + 1])`` of ``x`` ``(..., nb_steps, dim_head)`` by
    the angles of ``cos``/``sin`` ``(nb_steps, dim_head)``: ``x * cos + rotate_half(x) * sin`` with
    ``rotate_half(x)[2i] = -x[2i + 1]``, ``rotate_half(x)[2i + 1] = x[2i]``."""
    ops = keras.ops
    shape = ops.shape(x)
    pairs = ops.reshape(x, tuple(shape[:-1]) + (shape[-1] // 2, 2))
    rotated = ops.reshape(ops.stack([-pairs[..., 1], pairs[..., 0]], axis=-1), shape)
    return x * cos + rotated * sin


@keras.saving.register_keras_serializable(package="kerasep")
class RoformerAttention(keras.layers.Layer):
    """Gated multi-head self-attention with rotary embeddings (the reference's ``Attention``).

    Args:
        dim: model width; heads; dim_head: width of each head.
        dropout: dropout of the attention weights and of the output (training only).
        rotary: apply rotary position embeddings.

    Input/output shape: ``(batch, nb_steps, dim)``.

    Sublayers: ``norm`` (RMSNorm), ``to_qkv`` (no bias), ``to_gates``, ``to_out`` (no bias).
    """

    def __init__(self, dim, heads=8, dim_head=64, dropout=0.0, rotary=True, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.heads, self.dim_head = int(dim), int(heads), int(dim_head)
        self.dropout, self.rotary = float(dropout), bool(rotary)
        inner = self.heads * self.dim_head
        self.norm = RMSNorm(self.dim, name="norm")
        self.to_qkv = keras.layers.Dense(3 * inner, use_bias=False, name="to_qkv")
        self.to_gates = keras.layers.Dense(self.heads, name="to_gates")
        self.to_out = keras.layers.Dense(self.dim, use_bias=False, name="to_out")
        self.attn_drop = keras.layers.Dropout(self.dropout)
        self.out_drop = keras.layers.Dropout(self.dropout)

    def build(self, input_shape=None):
        seq = (None, None, self.dim)
        self.norm.build(seq)
        self.to_qkv.build(seq)
        self.to_gates.build(seq)
        self.to_out.build((None, None, self.heads * self.dim_head))
        self.built = True

    def call(self, x, training=False):
        ops = keras.ops
        x = self.norm(x)
        shape = ops.shape(x)
        batch, steps = shape[0], shape[1]
        qkv = ops.reshape(self.to_qkv(x), (batch, steps, 3, self.heads, self.dim_head))
        qkv = ops.transpose(qkv, (2, 0, 3, 1, 4))  # (3, batch, heads, steps, dim_head)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if self.rotary:
            cos, sin = rotary_cos_sin(steps, self.dim_head, dtype=q.dtype)
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        sim = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * (self.dim_head ** -0.5)
        attn = self.attn_drop(ops.softmax(sim, axis=-1), training=training)
        out = ops.matmul(attn, v)  # (batch, heads, steps, dim_head)
        gates = ops.sigmoid(ops.transpose(self.to_gates(x), (0, 2, 1)))[..., None]
        out = ops.reshape(ops.transpose(out * gates, (0, 2, 1, 3)), (batch, steps, self.heads * self.dim_head))
        return self.out_drop(self.to_out(out), training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, heads=self.heads, dim_head=self.dim_head, dropout=self.dropout,
                      rotary=self.rotary)
        return config


@keras.saving.register_keras_serializable(package="kerasep")
class RoformerFeedForward(keras.layers.Layer):
    """``RMSNorm`` → ``Dense(dim * mult)`` → GELU (erf) → dropout → ``Dense(dim)`` → dropout (the
    reference's ``FeedForward``).

    Args:
        dim: model width; mult: hidden width factor (4); dropout (training only).

    Input/output shape: ``(batch, nb_steps, dim)``.

    Sublayers: ``norm``, ``linear1``, ``linear2``.
    """

    def __init__(self, dim, mult=4, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.mult, self.dropout = int(dim), int(mult), float(dropout)
        self.norm = RMSNorm(self.dim, name="norm")
        self.linear1 = keras.layers.Dense(self.dim * self.mult, name="linear1")
        self.linear2 = keras.layers.Dense(self.dim, name="linear2")
        self.drop = keras.layers.Dropout(self.dropout)

    def build(self, input_shape=None):
        self.norm.build((None, None, self.dim))
        self.linear1.build((None, None, self.dim))
        self.linear2.build((None, None, self.dim * self.mult))
        self.built = True

    def call(self, x, training=False):
        y = self.linear1(self.norm(x))
        y = 0.5 * y * (1.0 + keras.ops.erf(y * 0.7071067811865476))  # torch's exact GELU (ONNX has Erf)
        y = self.linear2(self.drop(y, training=training))
        return self.drop(y, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, mult=self.mult, dropout=self.dropout)
        return config


@keras.saving.register_keras_serializable(package="kerasep")
class RoformerTransformer(keras.layers.Layer):
    """``depth`` pre-norm residual layers of :class:`RoformerAttention` and
    :class:`RoformerFeedForward`, then an optional output ``RMSNorm`` (the reference's
    ``Transformer``; BS-RoFormer builds it with ``norm_output=False``, Mel-Band RoFormer with
    ``True``).

    Args:
        dim, depth, heads, dim_head, attn_dropout, ff_dropout, ff_mult: as the sublayers.
        norm_output: end with an ``RMSNorm``.
        rotary: rotary embeddings in the attention.

    Input/output shape: ``(batch, nb_steps, dim)``.

    Sublayers: ``attn_{i}``, ``ff_{i}``, ``norm``.
    """

    def __init__(self, dim, depth=1, heads=8, dim_head=64, attn_dropout=0.0, ff_dropout=0.0, ff_mult=4,
                 norm_output=True, rotary=True, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.depth, self.heads, self.dim_head = int(dim), int(depth), int(heads), int(dim_head)
        self.attn_dropout, self.ff_dropout, self.ff_mult = float(attn_dropout), float(ff_dropout), int(ff_mult)
        self.norm_output, self.rotary = bool(norm_output), bool(rotary)
        self.attns = [RoformerAttention(self.dim, self.heads, self.dim_head, self.attn_dropout, self.rotary,
                                        name=f"attn_{i}") for i in range(self.depth)]
        self.ffs = [RoformerFeedForward(self.dim, self.ff_mult, self.ff_dropout, name=f"ff_{i}")
                    for i in range(self.depth)]
        self.norm = RMSNorm(self.dim, name="norm") if self.norm_output else None

    def build(self, input_shape=None):
        for layer in self.attns + self.ffs:
            layer.build(None)
        if self.norm is not None:
            self.norm.build((None, None, self.dim))
        self.built = True

    def call(self, x, training=False):
        for attn, ff in zip(self.attns, self.ffs):
            x = attn(x, training=training) + x
            x = ff(x, training=training) + x
        return x if self.norm is None else self.norm(x)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, depth=self.depth, heads=self.heads, dim_head=self.dim_head,
                      attn_dropout=self.attn_dropout, ff_dropout=self.ff_dropout, ff_mult=self.ff_mult,
                      norm_output=self.norm_output, rotary=self.rotary)
        return config


@keras.saving.register_keras_serializable(package="kerasep")
class AxialRoformer(keras.layers.Layer):
    """``depth`` times: a :class:`RoformerTransformer` across time (``time_{i}``, one sequence per
    band), then one across bands (``freq_{i}``, one sequence per frame).

    Args:
        dim, depth: width and number of (time, band) pairs.
        time_depth, freq_depth: layers of each time / band transformer.
        heads, dim_head, attn_dropout, ff_dropout, ff_mult: of every transformer.
        norm_output: each transformer ends with an ``RMSNorm`` (Mel-Band RoFormer) or not
            (BS-RoFormer, which has one ``final_norm`` after all of them instead).

    Input/output shape: ``(batch, nb_frames, nb_bands, dim)``.

    Sublayers: ``time_{i}``, ``freq_{i}``.
    """

    def __init__(self, dim, depth, time_depth=1, freq_depth=1, heads=8, dim_head=64, attn_dropout=0.0,
                 ff_dropout=0.0, ff_mult=4, norm_output=False, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.depth = int(dim), int(depth)
        self.time_depth, self.freq_depth = int(time_depth), int(freq_depth)
        self.heads, self.dim_head, self.ff_mult = int(heads), int(dim_head), int(ff_mult)
        self.attn_dropout, self.ff_dropout, self.norm_output = float(attn_dropout), float(ff_dropout), bool(norm_output)
        kw = dict(heads=self.heads, dim_head=self.dim_head, attn_dropout=self.attn_dropout,
                  ff_dropout=self.ff_dropout, ff_mult=self.ff_mult, norm_output=self.norm_output)
        self.time_layers = [RoformerTransformer(self.dim, self.time_depth, name=f"time_{i}", **kw)
                            for i in range(self.depth)]
        self.freq_layers = [RoformerTransformer(self.dim, self.freq_depth, name=f"freq_{i}", **kw)
                            for i in range(self.depth)]

    def build(self, input_shape=None):
        for layer in self.time_layers + self.freq_layers:
            layer.build(None)
        self.built = True

    def call(self, x, training=False):
        ops = keras.ops
        shape = ops.shape(x)
        batch, frames, bands = shape[0], shape[1], shape[2]
        for time_layer, freq_layer in zip(self.time_layers, self.freq_layers):
            # across time: (batch * bands, frames, dim)
            x = ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (batch * bands, frames, self.dim))
            x = time_layer(x, training=training)
            x = ops.transpose(ops.reshape(x, (batch, bands, frames, self.dim)), (0, 2, 1, 3))
            # across bands: (batch * frames, bands, dim)
            x = ops.reshape(x, (batch * frames, bands, self.dim))
            x = freq_layer(x, training=training)
            x = ops.reshape(x, (batch, frames, bands, self.dim))
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, depth=self.depth, time_depth=self.time_depth, freq_depth=self.freq_depth,
                      heads=self.heads, dim_head=self.dim_head, attn_dropout=self.attn_dropout,
                      ff_dropout=self.ff_dropout, ff_mult=self.ff_mult, norm_output=self.norm_output)
        return config


__all__ = ["rotary_cos_sin", "apply_rotary", "RoformerAttention", "RoformerFeedForward", "RoformerTransformer",
           "AxialRoformer"]
