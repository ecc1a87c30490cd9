"""MSST band-split RoFormer checkpoints → :class:`kerasep.models.BSRoformer` /
:class:`kerasep.models.MelBandRoformer`.

- :func:`config_from_yaml`: the YAML config of a Music-Source-Separation-Training (MSST)
  checkpoint (its ``model:`` section, plus ``audio:``/``inference:``/``training:`` when given the
  whole file) → ``{"family": ..., "config": {...}}``, the kerasep arguments. Options outside the
  released configs' raise ``ValueError("not supported: option=value")``.
- :func:`load_ckpt`: a ``.ckpt`` file and its YAML (given, or the same-stem ``.yaml`` beside it,
  :func:`config_path`) → a ready model.
- :func:`read_state`: a ``.ckpt`` file → ``{name: float32 array}`` with PyTorch's restricted
  unpickler (``torch.load(weights_only=True)``: tensors and containers only, no code from the
  file runs; anything else raises
  :class:`~kerasep.zoo.converters.demucs.UntrustedCheckpointError`).
- :func:`convert_state`: assign such a state dict to a built model. Every tensor the model needs
  must be present with its shape, and every tensor of the state used; otherwise ``ValueError``
  names the tensor(s) and the expected/found shapes.

Name mapping (``i``: layer, ``t`` = 0 time / 1 band transformer, ``j``: layer of that
transformer, ``b``: band, ``s``: stem, ``k``: Dense of a mask MLP):

=====================================================  =============================================
MSST tensor                                            kerasep weight
=====================================================  =============================================
``layers.i.t.layers.j.0.norm.gamma``                   ``transformer/{time,freq}_i/attn_j/norm``
``layers.i.t.layers.j.0.to_qkv.weight``                ``…/attn_j/to_qkv`` kernel (transposed)
``layers.i.t.layers.j.0.to_gates.{weight,bias}``       ``…/attn_j/to_gates``
``layers.i.t.layers.j.0.to_out.0.weight``              ``…/attn_j/to_out`` kernel
``layers.i.t.layers.j.0.rotary_embed.freqs``           checked against theta 10000 (not a weight)
``layers.i.t.layers.j.1.net.0.gamma``                  ``…/ff_j/norm``
``layers.i.t.layers.j.1.net.{1,4}.{weight,bias}``      ``…/ff_j/linear{1,2}``
``layers.i.t.norm.gamma`` (Mel-Band)                   ``…/{time,freq}_i/norm``
``final_norm.gamma`` (BS)                              ``final_norm``
``band_split.to_features.b.0.gamma``                   ``band_split/norm_b``
``band_split.to_features.b.1.{weight,bias}``           ``band_split/linear_b``
``mask_estimators.s.to_freqs.b.0.{2k}.{weight,bias}``  ``mask_estimator_s/band_b_linear_k``
=====================================================  =============================================

``Linear`` weights ``(out, in)`` are transposed to Keras' ``(in, out)``.
"""
from pathlib import Path

import numpy as np

_COMMON = ("dim", "depth", "num_stems", "time_transformer_depth", "freq_transformer_depth",
           "linear_transformer_depth", "dim_head", "heads", "attn_dropout", "ff_dropout", "flash_attn",
           "dim_freqs_in", "stft_n_fft", "stft_hop_length", "stft_win_length", "stft_normalized",
           "mask_estimator_depth", "mlp_expansion_factor", "skip_connection", "use_torch_checkpoint",
           "multi_stft_resolution_loss_weight", "multi_stft_resolutions_window_sizes", "multi_stft_hop_size",
           "multi_stft_normalized")
# options kerasep supports with one value only (the released configs')
_FIXED = dict(linear_transformer_depth=0, skip_connection=False, stft_normalized=False, sage_attention=False)
# options with no effect on inference: accepted with any value, not passed on
_IGNORED = ("match_input_audio_length",)


def _not_supported(option, value):
    return ValueError(f"not supported: {option}={value!r} (kerasep's band-split RoFormers implement the "
                      "options of the released MSST checkpoints)")


def _load_yaml(path_or_dict):
    if isinstance(path_or_dict, dict):
        return path_or_dict
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - PyYAML ships with the test extra's packages
        raise ImportError("reading MSST YAML configs needs PyYAML (pip install pyyaml)") from exc

    class _Loader(yaml.SafeLoader):
        """safe_load plus MSST's ``!!python/tuple`` tag (read as a list); no other python tags."""

    _Loader.add_constructor("tag:yaml.org,2002:python/tuple", lambda loader, node: loader.construct_sequence(node))
    text = Path(path_or_dict).expanduser().read_text()
    return yaml.load(text, Loader=_Loader)


def config_from_yaml(path_or_dict, targets=None):
    """An MSST YAML config → ``{"family": "bs_roformer" | "mel_band_roformer", "config": {...}}``.

    Args:
        path_or_dict: a YAML file, its parsed dict, or its ``model:`` section alone.
        targets: stem names; default: the file's ``training.target_instrument`` (one stem) or
            ``training.instruments`` (``num_stems`` of them), else ``stem_0``, ``stem_1``...

    A whole file of a single-stem checkpoint also gives ``residual``: the stem "mixture minus
    the target" is named after the one other ``training.instruments`` entry (``"other"`` for
    ``[vocals, other]``), else ``"instrumental"`` (MSST's ``--extract_instrumental``).

    The family is BS-RoFormer if the model section has ``freqs_per_bands``, Mel-Band RoFormer if it
    has ``num_bands``. ``audio.chunk_size`` (or ``inference.chunk_size``), ``inference.num_overlap``
    and ``audio.sample_rate`` become ``chunk_size``, ``num_overlap`` and ``sample_rate``.

    Raises ``ValueError("not supported: option=value")`` for an option (or value) outside the
    released configs'.
    """
    doc = _load_yaml(path_or_dict)
    section = doc.get("model", doc) if isinstance(doc, dict) else None
    if not isinstance(section, dict):
        raise ValueError(f"an MSST config must be a mapping with a 'model:' section. Received: {type(doc).__name__}")
    if "freqs_per_bands" in section:
        family, extra = "bs_roformer", ("freqs_per_bands",)
    elif "num_bands" in section:
        family, extra = "mel_band_roformer", ("num_bands", "sample_rate")
    else:
        raise ValueError("an MSST band-split RoFormer config has 'freqs_per_bands' (BS-RoFormer) or 'num_bands' "
                         f"(Mel-Band RoFormer) in its model section. Found keys: {sorted(section)}")
    config = {}
    for key, value in section.items():
        if key in _FIXED:
            if value != _FIXED[key]:
                raise _not_supported(key, value)
            if key in _COMMON:
                config[key] = value
        elif key in _IGNORED:
            continue
        elif key == "stereo":
            config["nb_channels"] = 2 if value else 1
        elif key in _COMMON or key in extra:
            config[key] = list(value) if isinstance(value, (list, tuple)) else value
        else:
            raise _not_supported(key, value)
    if config.get("stft_win_length", config.get("stft_n_fft", 2048)) != config.get("stft_n_fft", 2048):
        raise _not_supported("stft_win_length", config["stft_win_length"])
    num_stems = int(config.pop("num_stems", 1))
    if targets is None:
        training = doc.get("training", {}) if "model" in doc else {}
        if training.get("target_instrument"):
            targets = [training["target_instrument"]]
        elif training.get("instruments") and len(training["instruments"]) == num_stems:
            targets = list(training["instruments"])
        else:
            targets = [f"stem_{i}" for i in range(num_stems)]
    targets = [str(t) for t in targets]
    if len(targets) != num_stems:
        raise ValueError(f"num_stems={num_stems} in the config but {len(targets)} targets: {targets}")
    config["targets"] = targets
    if "model" in doc and num_stems == 1:
        # MSST's --extract_instrumental for a single-stem checkpoint: mixture minus the stem, named
        # after the one other training instrument ("other" in the vocal models' [vocals, other])
        instruments = [str(i) for i in (doc.get("training", {}) or {}).get("instruments") or []]
        others = [i for i in instruments if i not in targets]
        config["residual"] = others[0] if len(others) == 1 else "instrumental"
    if "model" in doc:
        audio, inference = doc.get("audio", {}) or {}, doc.get("inference", {}) or {}
        chunk = inference.get("chunk_size", audio.get("chunk_size"))
        if chunk is not None:
            config["chunk_size"] = int(chunk)
        if inference.get("num_overlap") is not None:
            config["num_overlap"] = int(inference["num_overlap"])
        if audio.get("sample_rate") is not None:
            rate = int(audio["sample_rate"])
            if "sample_rate" in config and int(config["sample_rate"]) != rate:
                raise ValueError(f"model.sample_rate={config['sample_rate']} differs from audio.sample_rate={rate}")
            config["sample_rate"] = rate
        if audio.get("num_channels") is not None and int(audio["num_channels"]) != config.get("nb_channels", 1):
            raise ValueError(f"audio.num_channels={audio['num_channels']} but model.stereo gives "
                             f"{config.get('nb_channels', 1)} channel(s)")
    return {"family": family, "config": config}


def model_from_yaml(path_or_dict, targets=None):
    """The (unbuilt) kerasep model of an MSST YAML config (:func:`config_from_yaml`)."""
    from kerasep.zoo import registry

    spec = config_from_yaml(path_or_dict, targets)
    return registry.family_class(spec["family"])(**spec["config"])


def config_path(checkpoint, config=None):
    """The YAML config of an MSST ``checkpoint``: ``config`` if given, else the file beside it
    with the same stem (``model.ckpt`` → ``model.yaml`` or ``model.yml``). FileNotFoundError
    naming the paths tried and how to give one (``config=`` / ``--config``)."""
    checkpoint = Path(checkpoint).expanduser()
    if config is not None:
        path = Path(config).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no such MSST YAML config: {path} (given for {checkpoint} with "
                                    f"config= / --config)")
        return path
    tried = [checkpoint.with_suffix(suffix) for suffix in (".yaml", ".yml")]
    for path in tried:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{checkpoint} needs its MSST YAML config (the model's dimensions, stems and chunk_size are not in the "
        f"checkpoint): none found beside it ({', '.join(str(p) for p in tried)}); give it with "
        f"--config FILE.yaml on the command line (config='FILE.yaml' in kerasep.zoo.load)")


def load_ckpt(checkpoint, config=None):
    """A ready :class:`~kerasep.models.BSRoformer` / :class:`~kerasep.models.MelBandRoformer` from
    an MSST checkpoint (a ``torch.save``'d state dict, :func:`read_state`) and its YAML config
    (:func:`config_path`: ``config`` or the same-stem ``.yaml`` beside it). The checkpoint is
    checked first (it exists), then the config, before any weight is allocated."""
    checkpoint = Path(checkpoint).expanduser()
    if not checkpoint.is_file():
        raise FileNotFoundError(f"no such RoFormer checkpoint: {checkpoint}")
    model = model_from_yaml(config_path(checkpoint, config))
    return convert_state(model, read_state(checkpoint))


def read_state(path):
    """Read an MSST ``.ckpt`` / ``.pth`` (a state dict, possibly under ``"state_dict"``, ``"state"`` or
    ``"model"``) with PyTorch's restricted unpickler; returns ``{name: float32 numpy array}``."""
    import pickle

    import torch

    from kerasep.zoo.converters.demucs import UntrustedCheckpointError

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no such RoFormer checkpoint: {path}")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UntrustedCheckpointError(
            f"refusing to load {path}: it cannot be read with PyTorch's restricted unpickler ({exc}); loading it "
            "would execute code named by the file.") from exc
    for key in ("state_dict", "state", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(hasattr(v, "numpy") for v in obj.values()):
        raise ValueError(f"{path} is not a state dict of tensors")
    return {k: v.detach().float().numpy() for k, v in obj.items()}


def _linear(w):
    return np.asarray(w).T


def _same(w):
    return np.asarray(w)


def plan(model):
    """``[(MSST name, keras variable, transform)]`` for every weight of ``model``."""
    items = []

    def dense(name, layer):
        items.append((f"{name}.weight", layer.kernel, _linear))
        if layer.use_bias:
            items.append((f"{name}.bias", layer.bias, _same))

    for i in range(model.depth):
        for t, tr in enumerate((model.transformer.time_layers[i], model.transformer.freq_layers[i])):
            prefix = f"layers.{i}.{t}"
            for j, (attn, ff) in enumerate(zip(tr.attns, tr.ffs)):
                p = f"{prefix}.layers.{j}"
                items.append((f"{p}.0.norm.gamma", attn.norm.gamma, _same))
                dense(f"{p}.0.to_qkv", attn.to_qkv)
                dense(f"{p}.0.to_gates", attn.to_gates)
                dense(f"{p}.0.to_out.0", attn.to_out)
                items.append((f"{p}.1.net.0.gamma", ff.norm.gamma, _same))
                dense(f"{p}.1.net.1", ff.linear1)
                dense(f"{p}.1.net.4", ff.linear2)
            if tr.norm is not None:
                items.append((f"{prefix}.norm.gamma", tr.norm.gamma, _same))
    if model.final_norm is not None:
        items.append(("final_norm.gamma", model.final_norm.gamma, _same))
    for b, (norm, linear) in enumerate(zip(model.band_split.norms, model.band_split.linears)):
        items.append((f"band_split.to_features.{b}.0.gamma", norm.gamma, _same))
        dense(f"band_split.to_features.{b}.1", linear)
    for s, estimator in enumerate(model.mask_estimators):
        for b, mlp in enumerate(estimator.mlps):
            for k, layer in enumerate(mlp):
                dense(f"mask_estimators.{s}.to_freqs.{b}.0.{2 * k}", layer)
    return items


def _rotary_names(model):
    names = []
    for i in range(model.depth):
        for t, tr in enumerate((model.transformer.time_layers[i], model.transformer.freq_layers[i])):
            names += [f"layers.{i}.{t}.layers.{j}.0.rotary_embed.freqs" for j in range(tr.depth)]
    return names


def convert_state(model, state):
    """Assign an MSST state dict ``state`` (``{name: numpy array}``) to ``model`` (built if it is
    not). Raises ``ValueError`` naming the tensor and the expected/found shapes, or listing missing
    or unused tensors. The ``rotary_embed.freqs`` tensors are optional (some files lack them); when
    present they must equal the fixed theta-10000 frequencies. Returns ``model``."""
    if not model.built:
        model.build((None, model.nb_channels, None))
    family = type(model).__name__
    state = {k: np.asarray(v) for k, v in state.items()}
    items = plan(model)
    missing = sorted({name for name, _, _ in items} - set(state))
    if missing:
        raise ValueError(f"{family} state is missing {len(missing)} tensor(s): {missing}")
    used = set()
    values = []
    for name, variable, transform in items:
        used.add(name)
        value = np.asarray(transform(state[name]), np.float32)
        expected = tuple(variable.shape)
        if value.shape != expected:
            raise ValueError(f"{family} tensor {name!r} (shape {tuple(state[name].shape)}) converts to {value.shape}; "
                             f"the kerasep weight {variable.path!r} expects {expected}")
        values.append((variable, value))
    half = model.dim_head // 2
    fixed = (1.0 / (10000.0 ** (np.arange(0, model.dim_head, 2, dtype=np.float32) / model.dim_head)))[:half]
    for name in _rotary_names(model):
        if name not in state:
            continue
        used.add(name)
        found = state[name]
        if found.shape != (half,):
            raise ValueError(f"{family} tensor {name!r} has shape {tuple(found.shape)}; expected ({half},) "
                             f"(dim_head={model.dim_head})")
        if not np.allclose(found, fixed, rtol=1e-5, atol=0):
            raise ValueError(f"{family} tensor {name!r} holds rotary frequencies other than theta=10000 ones "
                             "(learned or custom frequencies are not supported)")
    unused = sorted(set(state) - used)
    if unused:
        raise ValueError(f"{family} state has {len(unused)} tensor(s) this model does not use: {unused}")
    for variable, value in values:
        variable.assign(value)
    return model


def convert(model, folder, source):
    """Registry converter: the ``"checkpoint"`` file of weight source ``source`` in ``folder``."""
    name = source.get("checkpoint") or next(iter(source["files"]))
    return convert_state(model, read_state(Path(folder) / name))


__all__ = ["config_from_yaml", "model_from_yaml", "config_path", "load_ckpt", "read_state", "convert_state", "convert",
           "plan"]
