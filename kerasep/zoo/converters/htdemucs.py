"""demucs ``HTDemucs`` state dicts (PyTorch names, numpy arrays) → :class:`kerasep.models.HTDemucs`.

:func:`convert_htdemucs_state` assigns a ``{name: array}`` state dict (``model.state_dict()`` of
``demucs.htdemucs.HTDemucs``, tensors converted to numpy) to a built kerasep model. Every tensor
the kerasep model needs must be present with the expected shape and every tensor of the state
must be used; otherwise ``ValueError`` names the tensor(s).

demucs 4 packages (``.th``)
---------------------------
:func:`read_package` reads the ``<sig>-<sha256[:8]>.th`` files demucs 4 writes
(``demucs.states.serialize_model`` + ``save_with_checksum``, loaded by ``demucs.states.load_model``):
``{"klass": demucs.htdemucs.HTDemucs, "args": [], "kwargs": {...}, "state": {name: tensor
(float16)}, "training_args": {...}}``, ``kwargs["segment"]`` a ``fractions.Fraction``. The trust
model is :mod:`kerasep.zoo.converters.demucs`'s: the globals the pickle names are listed without
running it; the model classes (``klass``; only the name is used) and ``fractions.Fraction``
(rebuilt from its two recorded integers, or its string, by kerasep) are replaced by inert
stand-ins; tensors are read by PyTorch's restricted unpickler (``torch.load(weights_only=True)``);
any other global refuses the file with :class:`~kerasep.zoo.converters.demucs.UntrustedCheckpointError`
(``trust=True`` falls back to the full unpickler, for files you trust). The architecture comes from
the file's own ``kwargs`` (:func:`package_config`); unsupported options raise ``ValueError``
naming them. ``demucs.hdemucs.HDemucs`` (Hybrid Demucs v3, ``hdemucs_mmi``) is not converted: its
deeper layers run after the merge of the two branches, which kerasep's HTDemucs does not implement.

Bags of models (demucs' ``remote/<name>.yaml``: ``models: [sigs]``, optional per-model, per-source
``weights``, optional ``segment``) load with :func:`load_bag` into a
:class:`kerasep.models.bag.SeparatorBag`.

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
import math
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np

from kerasep.zoo.converters.demucs4_package import (  # noqa: F401 (re-exported)
    DEMUCS4_CLASSES,
    FRACTION,
    HDEMUCS_CLASS,
    HTDEMUCS_CLASS,
    _fraction,
    _inert_globals,
    _restore,
    is_demucs4_package,
    needed_globals,
    read_package,
)


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




# --- demucs 4 packages -------------------------------------------------------------------------

#: ``demucs.htdemucs.HTDemucs.__init__`` parameters of demucs 4.1.0, in order (binds ``args``).
HTDEMUCS_SIGNATURE = (
    "sources", "audio_channels", "channels", "channels_time", "growth", "nfft", "wiener_iters", "end_iters",
    "wiener_residual", "cac", "depth", "rewrite", "multi_freqs", "multi_freqs_depth", "freq_emb", "emb_scale",
    "emb_smooth", "kernel_size", "time_stride", "stride", "context", "context_enc", "norm_starts", "norm_groups",
    "dconv_mode", "dconv_depth", "dconv_comp", "dconv_init", "bottom_channels", "t_layers", "t_emb",
    "t_hidden_scale", "t_heads", "t_dropout", "t_max_positions", "t_norm_in", "t_norm_in_group", "t_group_norm",
    "t_norm_first", "t_norm_out", "t_max_period", "t_weight_decay", "t_lr", "t_layer_scale", "t_gelu",
    "t_weight_pos_embed", "t_sin_random_shift", "t_cape_mean_normalize", "t_cape_augment", "t_cape_glob_loc_scale",
    "t_sparse_self_attn", "t_sparse_cross_attn", "t_mask_type", "t_mask_random_seed", "t_sparse_attn_window",
    "t_global_window", "t_sparsity", "t_auto_sparsity", "t_cross_first", "rescale", "samplerate", "segment",
    "use_train_segment",
)
_RENAMES = {"sources": "targets", "audio_channels": "nb_channels", "samplerate": "sample_rate"}

#: Config entries that do not change the converted network (training-only or unused at
#: inference); :func:`convert` does not compare them with the file's own kwargs.
TRAINING_ONLY = ("t_dropout", "t_weight_decay", "t_lr", "rescale", "t_max_positions", "t_cape_mean_normalize",
                 "t_cape_augment", "t_cape_glob_loc_scale", "t_mask_type", "t_mask_random_seed",
                 "t_sparse_attn_window", "t_global_window", "t_sparsity", "multi_freqs_depth", "wiener_residual",
                 "time_stride", "segment_overlap", "name", "trainable", "dtype")


def package_config(package, path="the package"):
    """kerasep :class:`~kerasep.models.HTDemucs` kwargs from a demucs 4 package's own
    ``klass``/``args``/``kwargs`` (see :func:`read_package`).

    Parameters demucs 4.1.0's HTDemucs does not know are dropped with a warning (as
    ``demucs.states.load_model`` does); unsupported values raise in :class:`HTDemucs`.

    Raises:
        ValueError: not an HTDemucs package (the message names the class found).
    """
    klass = package["klass"]
    if klass == HDEMUCS_CLASS:
        raise ValueError(
            f"{path}: {HDEMUCS_CLASS} (Hybrid Demucs v3, e.g. hdemucs_mmi) is not supported; kerasep converts "
            f"{HTDEMUCS_CLASS} packages (htdemucs, htdemucs_ft, htdemucs_6s) and the waveform Demucs "
            "(demucs.model.Demucs, demucs.demucs.Demucs).")
    if klass != HTDEMUCS_CLASS:
        raise ValueError(f"{path}: expected a {HTDEMUCS_CLASS} package; its klass is {klass!r}")
    args, kwargs = list(package.get("args") or []), dict(package.get("kwargs") or {})
    if len(args) > len(HTDEMUCS_SIGNATURE):
        raise ValueError(f"{path}: {klass} takes at most {len(HTDEMUCS_SIGNATURE)} arguments; found {len(args)}")
    bound = dict(zip(HTDEMUCS_SIGNATURE, args))
    for key in sorted(set(kwargs) - set(HTDEMUCS_SIGNATURE)):
        warnings.warn(f"{path}: dropping parameter {key!r} unknown to demucs 4.1.0's HTDemucs")
        del kwargs[key]
    bound.update(kwargs)
    sources = bound.get("sources")
    if not isinstance(sources, (list, tuple)) or not all(isinstance(s, str) for s in sources):
        raise ValueError(f"{path}: expected a list of source names as 'sources'; found {sources!r}")
    config = {_RENAMES.get(k, k): v for k, v in bound.items()}
    config["targets"] = list(sources)
    if "segment" in config:
        segment = config["segment"]
        if not isinstance(segment, (int, float, Fraction)) or isinstance(segment, bool) or not segment > 0:
            raise ValueError(f"{path}: expected a positive segment (seconds); found {segment!r}")
        config["segment"] = float(segment)
    for key in ("multi_freqs", "t_cape_glob_loc_scale"):
        if isinstance(config.get(key), tuple):
            config[key] = list(config[key])
    return config


def _build(config, path):
    from kerasep.models.htdemucs import HTDemucs

    try:
        model = HTDemucs(**config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    model.build((None, model.nb_channels, None))
    return model


def _assign(model, state, path):
    try:
        return convert_htdemucs_state(model, state)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def load_package(path, trust=False, **overrides):
    """A built :class:`~kerasep.models.HTDemucs` with the weights of the demucs 4 package at
    ``path``, its architecture from the file's own kwargs (``overrides`` replace entries)."""
    package = read_package(path, trust=trust)
    config = package_config(package, path)
    config.update(overrides)
    return _assign(_build(config, path), package["state"], path)


def load_th(path, trust=False):
    """Any demucs ``.th`` file: a demucs 4 package (HTDemucs) → :func:`load_package`; otherwise
    (demucs 2/3 packages, bare v2 state dicts) → :func:`kerasep.zoo.converters.demucs.load_checkpoint`."""
    if is_demucs4_package(path):
        return load_package(path, trust=trust)
    from kerasep.zoo.converters import demucs

    return demucs.load_checkpoint(path, trust=trust)


def _check_architecture(model, config, path):
    """Raise unless ``model`` (built from the zoo config) has the architecture of the file's
    ``config``; the file's segment is adopted (it sets the inference length)."""
    from kerasep.models.htdemucs import HTDemucs

    ours = model.get_config()
    # the file's model, unbuilt (no weights): its options normalised, the left-out ones at demucs'
    # defaults (kerasep's HTDemucs has the same)
    try:
        theirs = HTDemucs(**config).get_config()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    different = []
    for key in sorted(set(theirs) & set(ours)):
        if key in TRAINING_ONLY or key == "segment":
            continue
        a, b = ours[key], theirs[key]
        if isinstance(a, float) or isinstance(b, float):
            same = isinstance(b, (int, float)) and isinstance(a, (int, float)) and math.isclose(a, b, rel_tol=1e-9)
        else:
            same = a == b
        if not same:
            different.append(f"{key}: file {b!r}, zoo config {a!r}")
    if different:
        raise ValueError(f"{path} does not hold the zoo model's architecture: " + "; ".join(different))
    if not math.isclose(theirs["segment"], model.segment, rel_tol=1e-9):
        warnings.warn(f"{path}: segment {theirs['segment']} s from the file replaces the zoo config's "
                      f"{model.segment} s")
        model.segment = float(theirs["segment"])


def _convert_member(model, file, trust=False):
    package = read_package(file, trust=trust)
    config = package_config(package, file)
    _check_architecture(model, config, file)
    _assign(model, package["state"], file)


def convert(model, folder, source):
    """The zoo's converter (``registry.WEIGHT_FORMATS["demucs4-th"]``): the demucs 4 package(s)
    of ``source["files"]`` in ``folder`` into ``model``, an HTDemucs (one file) or a
    :class:`~kerasep.models.bag.SeparatorBag` (one file per member, in ``source["files"]``
    order, demucs' ``models`` order). Each file's kwargs must describe the zoo config's
    architecture (ValueError naming the differing options otherwise)."""
    from kerasep.models.bag import SeparatorBag

    files = [Path(folder) / name for name in source["files"]]
    members = model.members if isinstance(model, SeparatorBag) else [model]
    if len(files) != len(members):
        raise ValueError(f"weight source has {len(files)} file(s) for {len(members)} model(s)")
    for member, file in zip(members, files):
        _convert_member(member, file)
    return model


# --- bags of models ----------------------------------------------------------------------------

def read_bag_yaml(path):
    """``{"models": [sig, ...], "weights": [[float] * S] * M or None, "segment": float or None}``
    from a demucs bag YAML (``demucs/remote/<name>.yaml``), read with ``yaml.safe_load``."""
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no such bag of models file: {path}")
    bag = yaml.safe_load(path.read_text())
    if not isinstance(bag, dict) or not isinstance(bag.get("models"), list) or not bag["models"]:
        raise ValueError(f"{path}: not a demucs bag of models: expected a YAML mapping with a non-empty "
                         "'models' list of signatures (as demucs/remote/htdemucs_ft.yaml)")
    models = [str(sig) for sig in bag["models"]]
    weights = bag.get("weights")
    segment = bag.get("segment")
    return {"models": models, "weights": weights, "segment": None if segment is None else float(segment)}


def find_signature(folder, sig):
    """The file of signature ``sig`` in ``folder`` (``<sig>-<sha256[:8]>.th`` or ``<sig>.th``, as
    demucs' ``LocalRepo``), its sha256 prefix checked when the name carries one."""
    import hashlib

    folder = Path(folder).expanduser()
    matches = sorted(p for p in folder.glob(f"{sig}*.th")
                     if p.stem == sig or p.stem.rsplit("-", 1)[0] == sig)
    if not matches:
        raise FileNotFoundError(f"no checkpoint for signature {sig!r} in {folder} (expected {sig}-<sha256[:8]>.th)")
    if len(matches) > 1:
        raise ValueError(f"several checkpoints for signature {sig!r} in {folder}: {[p.name for p in matches]}")
    file = matches[0]
    if "-" in file.stem:
        expected = file.stem.rsplit("-", 1)[1]
        digest = hashlib.sha256(file.read_bytes()).hexdigest()[: len(expected)]
        if digest != expected:
            raise ValueError(f"checksum mismatch for {file}: its name says {expected}, its sha256 starts {digest}")
    return file


def load_bag(yaml_path, folder=None, trust=False):
    """A :class:`~kerasep.models.bag.SeparatorBag` from a demucs bag YAML and the folder of its
    ``.th`` files (default: the YAML's folder), as demucs' ``BagOnlyRepo`` + ``LocalRepo``."""
    from kerasep.models.bag import SeparatorBag

    bag = read_bag_yaml(yaml_path)
    folder = Path(yaml_path).expanduser().parent if folder is None else Path(folder)
    members = [load_package(find_signature(folder, sig), trust=trust) for sig in bag["models"]]
    return SeparatorBag(members, weights=bag["weights"], segment=bag["segment"])


__all__ = [
    "convert_htdemucs_state", "plan_htdemucs", "read_package", "package_config", "load_package", "load_th",
    "is_demucs4_package", "convert", "read_bag_yaml", "find_signature", "load_bag", "HTDEMUCS_SIGNATURE",
    "DEMUCS4_CLASSES",
]
