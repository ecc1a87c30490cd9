"""demucs checkpoints (PyTorch) → :class:`kerasep.models.Demucs`.

Two file layouts are read:

- a *package* — the dict demucs' ``save_model``/``serialize_model`` writes: ``{"klass": <class>,
  "args": [...], "kwargs": {...}, "state": {name: tensor}, "training_args": ...}``, with
  ``klass`` ``demucs.model.Demucs`` (demucs 2.x, ``variant="v2"``) or ``demucs.demucs.Demucs``
  (demucs >= 3 with ``dconv_mode=0``, ``variant="v3"``);
- a bare *state dict* ``{name: tensor}`` — the released v2 weights (``demucs-e07c671f.th`` …),
  which demucs 2 loads into ``Demucs(sources=["drums", "bass", "other", "vocals"],
  channels=...)``; the architecture is read off the tensor shapes (:func:`infer_config`).

Trust model
-----------
A ``.th`` file is a pickle: loading it the way demucs does (``torch.load(weights_only=False)``)
runs whatever code the file names. :func:`read_checkpoint` never does that by default:

1. it lists the globals the pickle refers to (``torch.serialization.
   get_unsafe_globals_in_checkpoint``) without running it;
2. globals known to be data only in demucs files — the model classes (only their *names* are
   used), ``argparse.Namespace`` and ``pathlib`` paths in ``training_args`` — are replaced by inert
   stand-ins that record their arguments; nothing from ``demucs``, ``argparse`` or ``pathlib`` is
   imported or called;
3. the file is read with ``torch.load(weights_only=True)``, PyTorch's restricted unpickler
   (tensors, containers and the stand-ins only);
4. any other global (a custom class, ``diffq`` quantizer state, a function…) makes it refuse
   with :class:`UntrustedCheckpointError` naming those globals — unless the caller passes
   ``trust=True``, which falls back to the full unpickler (only for files from a source you
   trust; it needs the classes the file names to be importable).

Layer mapping (``j``: position in demucs' ``encoder``/``decoder`` lists, ``decoder.0`` innermost):

=========================================================  ===============================
demucs tensor                                              kerasep weight
=========================================================  ===============================
``encoder.j.0.{weight,bias}``                              ``encoder_j/conv`` kernel, bias
``encoder.j.{2 (v2), 3 (v3)}.*``                           ``encoder_j/rewrite``
``encoder.j.{1, 4}.*`` (v3 GroupNorm)                      ``encoder_j/norm1``, ``norm2``
``decoder.j.0.*``                                          ``decoder_j/rewrite``
``decoder.j.{2 (v2), 3 (v3)}.*``                           ``decoder_j/conv_tr``
``decoder.j.{1, 4}.*`` (v3 GroupNorm)                      ``decoder_j/norm1``, ``norm2``
``lstm.lstm.{weight_ih,weight_hh,bias_ih,bias_hh}_l{k}``   ``lstm/lstm_k`` forward LSTM
``lstm.lstm.*_l{k}_reverse``                               ``lstm/lstm_k`` backward LSTM
``lstm.linear.{weight,bias}``                              ``lstm/linear``
=========================================================  ===============================

Kernels are transposed from PyTorch's ``(out, in, k)`` (``ConvTranspose1d``: ``(in, out, k)``)
to Keras' ``(k, in, out)`` (``Conv1DTranspose``: ``(k, out, in)``); LSTM matrices are transposed
(gate order i, f, g, o is the same) and the two PyTorch biases summed. Every tensor's shape is
checked and every tensor must be used exactly once.
"""
import pickle
from pathlib import Path

import numpy as np

#: demucs' source order for its released 4-source models.
DEMUCS_SOURCES = ["drums", "bass", "other", "vocals"]

#: Classes accepted as ``klass`` → kerasep variant.
SUPPORTED_CLASSES = {"demucs.model.Demucs": "v2", "demucs.demucs.Demucs": "v3"}

#: Globals that are plain data in demucs files; replaced by inert records when read.
INERT_GLOBALS = tuple(SUPPORTED_CLASSES) + (
    "argparse.Namespace",
    "pathlib.Path",
    "pathlib.PosixPath",
    "pathlib.WindowsPath",
    "pathlib.PurePosixPath",
    "pathlib.PureWindowsPath",
    "pathlib._local.PosixPath",
    "pathlib._local.WindowsPath",
)

# Constructor signatures of the two demucs classes (positional order matters for "args").
_V2_SIGNATURE = dict(
    sources=None, audio_channels=2, channels=64, depth=6, rewrite=True, glu=True, rescale=0.1,
    resample=True, kernel_size=8, stride=4, growth=2.0, lstm_layers=2, context=3, normalize=False,
    samplerate=44100, segment_length=4 * 10 * 44100,
)
_V3_SIGNATURE = dict(
    sources=None, audio_channels=2, channels=64, growth=2.0, depth=6, rewrite=True, lstm_layers=0,
    kernel_size=8, stride=4, context=1, gelu=True, glu=True, norm_starts=4, norm_groups=4,
    dconv_mode=1, dconv_depth=2, dconv_comp=4, dconv_attn=4, dconv_lstm=4, dconv_init=1e-4,
    normalize=True, resample=True, rescale=0.1, samplerate=44100, segment=4 * 10,
)


class UntrustedCheckpointError(ValueError):
    """The checkpoint needs code execution to load and the caller did not say it trusts it."""


class _Inert:
    """Stand-in for a pickled global: records what the pickle passes, runs nothing."""

    qualified_name = None

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f"<inert {self.qualified_name}>"


def _inert(name):
    return type(name.rsplit(".", 1)[-1], (_Inert,), {"qualified_name": name})


def _class_name(klass):
    if isinstance(klass, type) and issubclass(klass, _Inert):
        return klass.qualified_name
    if isinstance(klass, type):
        return f"{klass.__module__}.{klass.__qualname__}"
    return repr(klass)


def restricted_load(path, allowed, trust=False, names=""):
    """``torch.load`` of the ``.th`` file ``path`` with every global it names standing in as an
    inert record, provided all of them are in ``allowed`` (listed from the file without running
    it); with ``trust``, the full unpickler for files that name anything else. ``names``: what
    such files legitimately name, for the refusal message.

    Raises FileNotFoundError, or UntrustedCheckpointError (the file names other code, or is not
    a zip-format torch file whose globals can be listed, and ``trust`` is not given).
    """
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no such demucs checkpoint: {path}")
    try:
        needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception as exc:  # not a zip-format torch file (legacy format or not torch at all)
        needed, legacy_error = None, exc
    unsafe = sorted(needed - set(allowed)) if needed is not None else None
    if needed is not None and not unsafe:
        stand_ins = [(_inert(name), name) for name in sorted(needed)]
        try:
            with torch.serialization.safe_globals(stand_ins):
                return torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if not trust:
                raise UntrustedCheckpointError(
                    f"{path} cannot be read with the restricted unpickler ({exc}). "
                    "Pass trust=True only if you trust where the file comes from."
                ) from exc
    elif not trust:
        what = (f"it refers to code: {', '.join(unsafe)}" if unsafe
                else f"its format cannot be inspected safely ({legacy_error})")
        raise UntrustedCheckpointError(
            f"refusing to load {path}: {what}. Loading it would execute that code. {names}Pass "
            "trust=True (CLI/zoo: only for files from a source you trust) to load it anyway."
        )
    return torch.load(str(path), map_location="cpu", weights_only=False)


def read_checkpoint(path, trust=False):
    """Read a demucs ``.th`` file without executing code from it (see the module doc).

    Args:
        path: the checkpoint file.
        trust: allow the full unpickler for files that need it (runs code named by the file).

    Returns:
        ``{"klass": str or None, "args": list, "kwargs": dict, "state": {name: float32 array}}``
        (``klass`` is ``None`` for a bare state dict).

    Raises:
        FileNotFoundError; UntrustedCheckpointError (needs code execution, ``trust`` not given);
        ValueError (not a demucs checkpoint, or quantized).
    """
    return _as_package(restricted_load(path, INERT_GLOBALS, trust), path)


def _as_package(obj, path):
    if isinstance(obj, dict) and "state" in obj and "klass" in obj:
        state = obj["state"]
        klass = _class_name(obj["klass"])
        args, kwargs = list(obj.get("args") or []), dict(obj.get("kwargs") or {})
    elif isinstance(obj, dict) and obj and all(hasattr(v, "shape") for v in obj.values()):
        state, klass, args, kwargs = obj, None, [], {}
    else:
        raise ValueError(
            f"{path} is not a demucs checkpoint: expected a dict with keys klass/args/kwargs/state "
            f"or a state dict of tensors. Found: {type(obj).__name__} with keys "
            f"{sorted(obj)[:8] if isinstance(obj, dict) else 'n/a'}"
        )
    if not isinstance(state, dict) or "__quantized" in state or "compressed" in state:
        raise ValueError(
            f"{path} holds a quantized (diffq) state, which kerasep cannot read. Use the "
            "non-quantized release of the model."
        )
    return {
        "klass": klass,
        "args": args,
        "kwargs": kwargs,
        "state": {k: v.detach().to("cpu").float().numpy() for k, v in state.items()},
    }


def _bind(signature, args, kwargs, klass):
    names = list(signature)
    if len(args) > len(names):
        raise ValueError(f"{klass} takes at most {len(names)} arguments. Received: {len(args)}")
    bound = dict(signature)
    bound.update(zip(names, args))
    unknown = sorted(set(kwargs) - set(names))
    if unknown:
        raise ValueError(f"{klass} has no parameter(s) {unknown}; expected some of {names}")
    bound.update(kwargs)
    return bound


def convert_config(package):
    """kerasep :class:`~kerasep.models.Demucs` kwargs for a demucs package (see
    :func:`read_checkpoint`) or for ``(klass, args, kwargs)`` given as a dict.

    A bare state dict (``klass`` ``None``) is described by :func:`infer_config`.

    Raises:
        ValueError: an unsupported class or option, naming it and what is supported.
    """
    klass = package["klass"]
    if klass is None:
        return infer_config(package["state"])
    if klass not in SUPPORTED_CLASSES:
        raise ValueError(
            f"unsupported demucs model class {klass!r}; kerasep converts {sorted(SUPPORTED_CLASSES)} "
            "(the waveform Demucs; HDemucs / HTDemucs / ConvTasNet are not supported)."
        )
    variant = SUPPORTED_CLASSES[klass]
    sig = _V2_SIGNATURE if variant == "v2" else _V3_SIGNATURE
    p = _bind(sig, package.get("args", []), package.get("kwargs", {}), klass)
    sources = p["sources"]
    if not isinstance(sources, (list, tuple)):
        raise ValueError(
            f"{klass} with sources={sources!r} is the demucs 1 layout; expected a list of source names"
        )
    config = dict(
        targets=list(sources),
        nb_channels=int(p["audio_channels"]),
        sample_rate=int(p["samplerate"]),
        channels=int(p["channels"]),
        growth=float(p["growth"]),
        depth=int(p["depth"]),
        kernel_size=int(p["kernel_size"]),
        stride=int(p["stride"]),
        context=int(p["context"]),
        lstm_layers=int(p["lstm_layers"]),
        rewrite=bool(p["rewrite"]),
        glu=bool(p["glu"]),
        resample=bool(p["resample"]),
        normalize=bool(p["normalize"]),
        rescale=float(p["rescale"] or 0.0),
        variant=variant,
    )
    if variant == "v3":
        if p["dconv_mode"]:
            raise ValueError(
                f"{klass} with dconv_mode={p['dconv_mode']} has DConv residual branches, which kerasep's "
                "Demucs does not implement; only dconv_mode=0 converts."
            )
        config["activation"] = "gelu" if p["gelu"] else "relu"
        if p["norm_starts"] < p["depth"]:
            config["norm_starts"] = int(p["norm_starts"])
            config["norm_groups"] = int(p["norm_groups"])
    return config


def infer_config(state, targets=None, nb_channels=2, sample_rate=44100):
    """Architecture of a bare demucs 2 state dict (``variant="v2"``), read from tensor shapes.

    ``targets`` defaults to demucs' ``["drums", "bass", "other", "vocals"]`` when the output
    has ``4 * nb_channels`` channels.
    """
    depth = len({k.split(".")[1] for k in state if k.startswith("encoder.")})
    if not depth or "encoder.0.0.weight" not in state:
        raise ValueError("not a demucs state dict: no encoder.0.0.weight tensor")
    first = state["encoder.0.0.weight"]  # (channels, nb_channels, kernel_size)
    channels, in_ch, kernel_size = first.shape
    rewrite = "encoder.0.2.weight" in state
    last = state[f"decoder.{depth - 1}.{2 if rewrite else 0}.weight"]  # (channels, S * C, k)
    nb_out = last.shape[1]
    if in_ch != nb_channels or nb_out % nb_channels:
        raise ValueError(
            f"state dict has {in_ch} input and {nb_out} output channels; expected nb_channels={nb_channels}"
        )
    if targets is None:
        targets = DEMUCS_SOURCES if nb_out == 4 * nb_channels else [f"source_{i}" for i in range(nb_out // nb_channels)]
    if len(targets) * nb_channels != nb_out:
        raise ValueError(f"{len(targets)} targets do not match {nb_out} output channels")
    growth = 2.0
    if depth > 1:
        growth = state["encoder.1.0.weight"].shape[0] / channels
    glu = rewrite and state["encoder.0.2.weight"].shape[0] == 2 * channels
    lstm_layers = len({k for k in state if k.startswith("lstm.lstm.weight_ih_l") and not k.endswith("_reverse")})
    return dict(
        targets=list(targets),
        nb_channels=int(nb_channels),
        sample_rate=int(sample_rate),
        channels=int(channels),
        growth=float(growth),
        depth=int(depth),
        kernel_size=int(kernel_size),
        stride=4,
        context=int(state["decoder.0.0.weight"].shape[2]) if rewrite else 3,
        lstm_layers=lstm_layers,
        rewrite=bool(rewrite),
        glu=bool(glu),
        resample=True,
        normalize=False,
        rescale=0.1,
        variant="v2",
    )


def _indices(model):
    """Positions of each sublayer inside demucs' ``nn.Sequential`` blocks, per variant."""
    if model.variant == "v2":
        enc = {"conv": 0, "rewrite": 2}
        dec = {"rewrite": 0, "conv_tr": 2 if model.rewrite else 0}
    else:
        enc = {"conv": 0, "norm1": 1, "rewrite": 3, "norm2": 4}
        dec = {"rewrite": 0, "norm1": 1, "conv_tr": 3 if model.rewrite else 0,
               "norm2": 4 if model.rewrite else 1}
    return enc, dec


def variable_mapping(model):
    """``[(demucs_prefix, keras_layer, kind)]`` for every converted module of ``model``.

    ``kind`` is ``"conv"``, ``"conv_tr"``, ``"norm"``, ``"lstm_fwd"``/``"lstm_bwd"`` (with the
    layer index in the prefix) or ``"linear"``.
    """
    enc, dec = _indices(model)
    out = []
    for j, block in enumerate(model.encoder):
        out.append((f"encoder.{j}.{enc['conv']}", block.conv, "conv"))
        if block.norm1 is not None:
            out.append((f"encoder.{j}.{enc['norm1']}", block.norm1, "norm"))
        if block.rewrite_conv is not None:
            out.append((f"encoder.{j}.{enc['rewrite']}", block.rewrite_conv, "conv"))
            if block.norm2 is not None:
                out.append((f"encoder.{j}.{enc['norm2']}", block.norm2, "norm"))
    for j, block in enumerate(model.decoder):
        if block.rewrite_conv is not None:
            out.append((f"decoder.{j}.{dec['rewrite']}", block.rewrite_conv, "conv"))
            if block.norm1 is not None:
                out.append((f"decoder.{j}.{dec['norm1']}", block.norm1, "norm"))
        out.append((f"decoder.{j}.{dec['conv_tr']}", block.conv_tr, "conv_tr"))
        if block.norm2 is not None:
            out.append((f"decoder.{j}.{dec['norm2']}", block.norm2, "norm"))
    if model.lstm is not None:
        for k, bidi in enumerate(model.lstm.lstms):
            out.append((f"lstm.lstm.%s_l{k}", bidi.forward_layer, "lstm"))
            out.append((f"lstm.lstm.%s_l{k}_reverse", bidi.backward_layer, "lstm"))
        out.append(("lstm.linear", model.lstm.linear, "linear"))
    return out


def convert_weights(model, state):
    """Copy a demucs state dict (``{name: array}``, e.g. ``read_checkpoint(...)["state"]``)
    into a built :class:`~kerasep.models.Demucs`.

    Raises:
        ValueError: a missing, unused or mis-shaped tensor (the message names it, with the
            expected and found shapes).
    """
    state = {k: np.asarray(v, np.float32) for k, v in state.items()}
    used = set()

    def take(name, shape):
        if name not in state:
            raise ValueError(f"demucs state has no tensor {name!r} (expected shape {tuple(shape)})")
        value = state[name]
        if tuple(value.shape) != tuple(shape):
            raise ValueError(f"{name}: expected shape {tuple(shape)} but found {tuple(value.shape)}")
        used.add(name)
        return value

    def assign(variable, value, name):
        if tuple(variable.shape) != tuple(value.shape):
            raise ValueError(
                f"{name} → {variable.path}: expected shape {tuple(variable.shape)} but found {tuple(value.shape)}"
            )
        variable.assign(value)

    for prefix, layer, kind in variable_mapping(model):
        if kind in ("conv", "conv_tr"):
            k = layer.kernel  # Conv1D (k, in, out) ← (out, in, k); Conv1DTranspose (k, out, in) ← (in, out, k)
            w = take(f"{prefix}.weight", tuple(k.shape)[::-1])
            assign(k, np.transpose(w, (2, 1, 0)), f"{prefix}.weight")
            assign(layer.bias, take(f"{prefix}.bias", layer.bias.shape), f"{prefix}.bias")
        elif kind == "norm":
            assign(layer.gamma, take(f"{prefix}.weight", layer.gamma.shape), f"{prefix}.weight")
            assign(layer.beta, take(f"{prefix}.bias", layer.beta.shape), f"{prefix}.bias")
        elif kind == "linear":
            w = take(f"{prefix}.weight", tuple(layer.kernel.shape)[::-1])
            assign(layer.kernel, w.T, f"{prefix}.weight")
            assign(layer.bias, take(f"{prefix}.bias", layer.bias.shape), f"{prefix}.bias")
        else:  # one direction of one LSTM layer; torch gate order i, f, g, o == keras i, f, c, o
            cell = layer.cell
            w_ih = take(prefix % "weight_ih", tuple(cell.kernel.shape)[::-1])
            w_hh = take(prefix % "weight_hh", tuple(cell.recurrent_kernel.shape)[::-1])
            b = take(prefix % "bias_ih", cell.bias.shape) + take(prefix % "bias_hh", cell.bias.shape)
            assign(cell.kernel, w_ih.T, prefix % "weight_ih")
            assign(cell.recurrent_kernel, w_hh.T, prefix % "weight_hh")
            assign(cell.bias, b, prefix % "bias")
    unused = sorted(set(state) - used)
    if unused:
        raise ValueError(
            f"{len(unused)} demucs tensor(s) have no place in this model (wrong config?): {unused[:10]}"
        )
    return model


def convert(model, folder, source):
    """The zoo's converter (``registry.WEIGHT_FORMATS["demucs-th"]``): the checkpoint file of
    ``source["files"]`` in ``folder`` (read without executing pickled code) into ``model``."""
    package = read_checkpoint(Path(folder) / next(iter(source["files"])))
    return convert_weights(model, package["state"])


def load_checkpoint(path, trust=False, **overrides):
    """Build a :class:`~kerasep.models.Demucs` from a demucs checkpoint and load its weights.

    ``overrides`` replace config entries (e.g. ``targets=[...]`` for a bare state dict,
    ``segment_seconds=...``).
    """
    from kerasep.models.demucs import Demucs

    package = read_checkpoint(path, trust=trust)
    config = convert_config(package)
    config.update(overrides)
    model = Demucs(**config)
    model.build((None, model.nb_channels, None))
    return convert_weights(model, package["state"])


__all__ = [
    "convert", "read_checkpoint", "convert_config", "infer_config", "convert_weights", "load_checkpoint",
    "variable_mapping", "UntrustedCheckpointError", "SUPPORTED_CLASSES", "DEMUCS_SOURCES",
]
