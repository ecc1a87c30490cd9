"""demucs ``HTDemucs`` state dicts (PyTorch names, numpy arrays) → :class:`kerasep.models.HTDemucs`.

:func:`convert_htdemucs_state` assigns a ``{name: array}`` state dict (``model.state_dict()`` of
``demucs.htdemucs.HTDemucs``, tensors converted to numpy) to a built kerasep model. Every tensor
the kerasep model needs must be present with the expected shape and every tensor of the state
must be used; otherwise ``ValueError`` names the tensor(s). Reading released ``.th`` packages
(and their trust model) is a later step; see :mod:`kerasep.zoo.converters.demucs` for the v2 one.

Name mapping (``i``: index in demucs' lists; ``decoder.0`` / ``tdecoder.0`` innermost):

================================================  ============================================
demucs tensor                                     kerasep weight
================================================  ============================================
``{encoder,tencoder}.i.conv.*``                   ``{encoder,tencoder}_i/conv``
``{encoder,tencoder}.i.rewrite.*``                ``…/rewrite``
``{encoder,tencoder}.i.norm{1,2}.*``              ``…/norm{1,2}`` (GroupNorm gamma, beta)
``*.dconv.layers.d.{0,3}.*``                      ``…/dconv/conv{1,2}_d``
``*.dconv.layers.d.{1,4}.*``                      ``…/dconv/norm{1,2}_d``
``*.dconv.layers.d.6.scale``                      ``…/dconv/scale_d``
``{decoder,tdecoder}.i.conv_tr.*``                ``{decoder,tdecoder}_i/conv_tr``
``{decoder,tdecoder}.i.{rewrite,norm1,norm2}.*``  same names
``freq_emb.embedding.weight``                     ``freq_emb/embeddings``
``channel_{up,down}sampler[_t].*`` (1×1 conv)     ``channel_{up,down}sampler[_t]`` (Dense)
``crosstransformer.norm_in[_t].*``                ``crosstransformer/norm_in[_t]``
``crosstransformer.layers[_t].k.{self,cross}_attn.in_proj_{weight,bias}``
                                                  ``…/layers[_t]_k/attn`` query, key, value
``….out_proj.*``                                  ``…/attn`` attention_output
``….linear{1,2}.*``, ``….norm{1,2,3,_out}.*``     same names
``….gamma_{1,2}.scale``                           ``…/gamma_{1,2}``
================================================  ============================================

Kernels: ``Conv1d`` ``(out, in, k)`` → ``(k, in, out)``; ``Conv2d`` ``(out, in, kh, kw)`` →
``(kh, kw, in, out)``; ``ConvTranspose1d`` ``(in, out, k)`` → ``(k, out, in)``;
``ConvTranspose2d`` ``(in, out, kh, kw)`` → ``(kh, kw, out, in)``; ``Linear`` / 1×1 ``Conv1d``
``(out, in[, 1])`` → ``(in, out)``; attention projections ``(dim, dim)`` → ``(dim, heads, dim /
heads)`` (output: ``(heads, dim / heads, dim)``).
"""
import numpy as np


def _conv(w):
    """Spatial axes first, then the two channel axes swapped: ``(out, in, *k)`` → ``(*k, in, out)``
    for convolutions, and ``(in, out, *k)`` → ``(*k, out, in)`` for transposed ones (the layouts of
    Keras' ``ConvND`` and ``ConvNDTranspose`` kernels)."""
    w = np.asarray(w)
    return np.transpose(w, tuple(range(2, w.ndim)) + (1, 0))


_conv_tr = _conv


def _linear(w):
    w = np.asarray(w)
    return w.reshape(w.shape[0], w.shape[1]).T if w.ndim in (2, 3) else w


def _same(w):
    return np.asarray(w)


class _Plan:
    """Collects ``(torch name, keras variable, transform)`` triples, then checks and assigns."""

    def __init__(self):
        self.items = []

    def add(self, name, variable, transform=_same):
        self.items.append((name, variable, transform))

    def conv(self, prefix, layer, transform=_conv):
        self.add(f"{prefix}.weight", layer.kernel, transform)
        self.add(f"{prefix}.bias", layer.bias)

    def norm(self, prefix, layer):
        self.add(f"{prefix}.weight", layer.gamma)
        self.add(f"{prefix}.bias", layer.beta)

    def dense(self, prefix, layer):
        self.add(f"{prefix}.weight", layer.kernel, _linear)
        self.add(f"{prefix}.bias", layer.bias, lambda b: np.asarray(b).reshape(-1))


def _plan_dconv(plan, prefix, dconv):
    for d in range(abs(dconv.depth)):
        base = f"{prefix}.layers.{d}"
        plan.conv(f"{base}.0", dconv.conv1[d])
        plan.norm(f"{base}.1", dconv.norm1[d])
        plan.conv(f"{base}.3", dconv.conv2[d])
        plan.norm(f"{base}.4", dconv.norm2[d])
        plan.add(f"{base}.6.scale", dconv.scales[d].scale)


def _plan_encoder(plan, prefix, block):
    plan.conv(f"{prefix}.conv", block.conv)
    if block.empty:
        return
    if block.norm1 is not None:
        plan.norm(f"{prefix}.norm1", block.norm1)
    if block.dconv_layer is not None:
        _plan_dconv(plan, f"{prefix}.dconv", block.dconv_layer)
    if block.rewrite_conv is not None:
        plan.conv(f"{prefix}.rewrite", block.rewrite_conv)
        if block.norm2 is not None:
            plan.norm(f"{prefix}.norm2", block.norm2)


def _plan_decoder(plan, prefix, block):
    plan.conv(f"{prefix}.conv_tr", block.conv_tr, _conv_tr)
    if block.norm2 is not None:
        plan.norm(f"{prefix}.norm2", block.norm2)
    if block.empty:
        return
    if block.rewrite_conv is not None:
        plan.conv(f"{prefix}.rewrite", block.rewrite_conv)
        if block.norm1 is not None:
            plan.norm(f"{prefix}.norm1", block.norm1)
    if block.dconv_layer is not None:
        _plan_dconv(plan, f"{prefix}.dconv", block.dconv_layer)


def _plan_attention(plan, prefix, mha, dim, heads):
    names = ("query", "key", "value")
    dense = (mha._query_dense, mha._key_dense, mha._value_dense)
    for part, (label, layer) in enumerate(zip(names, dense)):
        rows = slice(part * dim, (part + 1) * dim)
        plan.add(f"{prefix}.in_proj_weight#{label}", layer.kernel,
                 lambda w, rows=rows: np.asarray(w)[rows].T.reshape(dim, heads, dim // heads))
        plan.add(f"{prefix}.in_proj_bias#{label}", layer.bias,
                 lambda b, rows=rows: np.asarray(b)[rows].reshape(heads, dim // heads))
    out = mha._output_dense
    plan.add(f"{prefix}.out_proj.weight", out.kernel, lambda w: np.asarray(w).T.reshape(heads, dim // heads, dim))
    plan.add(f"{prefix}.out_proj.bias", out.bias)


def _plan_transformer(plan, prefix, tr):
    if tr.norm_in_f is not None:
        plan.norm(f"{prefix}.norm_in", _LayerNormView(tr.norm_in_f))
        plan.norm(f"{prefix}.norm_in_t", _LayerNormView(tr.norm_in_t))
    for group, layers in (("layers", tr.layers_f), ("layers_t", tr.layers_t)):
        for k, layer in enumerate(layers):
            base = f"{prefix}.{group}.{k}"
            kind = "cross_attn" if layer.n_norms == 3 else "self_attn"
            _plan_attention(plan, f"{base}.{kind}", layer.attn, layer.dim, layer.heads)
            plan.dense(f"{base}.linear1", layer.linear1)
            plan.dense(f"{base}.linear2", layer.linear2)
            for n, norm in enumerate(layer.norms):
                plan.norm(f"{base}.norm{n + 1}", _LayerNormView(norm))
            if layer.norm_out_layer is not None:
                plan.norm(f"{base}.norm_out", layer.norm_out_layer)
            for g, gamma in (("gamma_1", layer.gamma_1), ("gamma_2", layer.gamma_2)):
                if gamma is not None:
                    plan.add(f"{base}.{g}.scale", gamma.scale)


class _LayerNormView:
    """``gamma``/``beta`` of a ``LayerNormalization`` (it names them so already)."""

    def __init__(self, layer):
        self.gamma, self.beta = layer.gamma, layer.beta


def plan_htdemucs(model):
    """The ``[(torch name, keras variable, transform)]`` list for a built ``HTDemucs``; attention
    input projections are named ``<prefix>.in_proj_weight#query`` etc. (slices of one tensor)."""
    plan = _Plan()
    for i, block in enumerate(model.encoder):
        _plan_encoder(plan, f"encoder.{i}", block)
    for i, block in enumerate(model.decoder):
        _plan_decoder(plan, f"decoder.{i}", block)
    for i, block in enumerate(model.tencoder):
        _plan_encoder(plan, f"tencoder.{i}", block)
    for i, block in enumerate(model.tdecoder):
        _plan_decoder(plan, f"tdecoder.{i}", block)
    if model.freq_emb is not None:
        plan.add("freq_emb.embedding.weight", model.freq_emb.embeddings)
    if model.bottom_channels:
        for name in ("channel_upsampler", "channel_downsampler", "channel_upsampler_t", "channel_downsampler_t"):
            plan.dense(name, getattr(model, name))
    if model.crosstransformer is not None:
        _plan_transformer(plan, "crosstransformer", model.crosstransformer)
    return plan.items


def convert_htdemucs_state(model, state):
    """Assign demucs ``HTDemucs`` tensors ``state`` (``{name: numpy array}``) to ``model``.

    ``model`` is built if it is not. Raises ``ValueError`` naming the tensor and the expected and
    found shapes on a mismatch, and listing missing or unused tensors. Returns ``model``.
    """
    if not model.built:
        model.build((None, model.nb_channels, None))
    state = {k: np.asarray(v) for k, v in state.items()}
    items = plan_htdemucs(model)
    missing = sorted({name.split("#")[0] for name, _, _ in items} - set(state))
    if missing:
        raise ValueError(f"HTDemucs state is missing {len(missing)} tensor(s): {missing}")
    used = set()
    values = []
    for name, variable, transform in items:
        source = name.split("#")[0]
        used.add(source)
        value = np.asarray(transform(state[source]), np.float32)
        expected = tuple(variable.shape)
        if value.shape != expected:
            raise ValueError(f"HTDemucs tensor {name!r} (shape {tuple(state[source].shape)}) converts to "
                             f"{value.shape}; the kerasep weight {variable.path!r} expects {expected}")
        values.append((variable, value))
    unused = sorted(set(state) - used)
    if unused:
        raise ValueError(f"HTDemucs state has {len(unused)} tensor(s) this model does not use: {unused}")
    for variable, value in values:
        variable.assign(value)
    return model


__all__ = ["convert_htdemucs_state", "plan_htdemucs"]
