"""Open-Unmix PyTorch weights → :class:`kerasep.models.OpenUnmixSeparator`.

Sources: the per-target state dicts ``{target}-{sha256[:8]}.pth`` (torch.hub's naming, as
published on zenodo) or ``{target}.pth``, and the layout of models trained locally with
openunmix's ``train.py`` (``separator.json`` + ``{target}.json`` + ``{target}*.pth`` in one
folder). Files are read with ``torch.load(weights_only=True)``: tensors only, no pickled code is
ever executed. torch is imported lazily (a test/conversion-time dependency only).

Mapping for target ``t`` (torch ``nn.Linear`` weights are ``(out, in)``, Keras kernels ``(in, out)``):

==========================================  ==============================================
openunmix tensor                            kerasep weight (model ``t``)
==========================================  ==============================================
``input_mean``, ``input_scale``             ``input_norm`` shift, scale
``fc1.weight`` / ``fc2`` / ``fc3``          ``fc1`` / ``fc2`` / ``fc3`` kernel (transposed)
``bn{k}.weight, bias, running_mean/var``    ``bn{k}`` gamma, beta, moving_mean/variance
``lstm.weight_ih_l{k}[_reverse]``           ``lstm{k}`` forward [backward] kernel (transposed)
``lstm.weight_hh_l{k}[_reverse]``           recurrent kernel (transposed)
``lstm.bias_ih_l{k} + bias_hh_l{k}``        bias (Keras LSTMs have a single bias)
``output_scale``, ``output_mean``           ``output_norm`` scale, shift
==========================================  ==============================================

Both frameworks order LSTM gates ``(input, forget, cell, output)``, so gate blocks are copied in
place. ``num_batches_tracked`` counters and the STFT window / sample-rate buffers that old
openunmix versions stored are not weights and are dropped; any other tensor is an error.
"""
import json
import re
from pathlib import Path

import numpy as np

#: Entries of openunmix state dicts that carry no trainable state.
IGNORED = re.compile(r"(.*num_batches_tracked|sample_rate|(stft|transform)\..*window.*|.*\.window)$")


def read_state_dict(path):
    """A ``.pth`` state dict as ``{name: float32 numpy array}``, loaded without running pickled
    code (``torch.load(weights_only=True)``)."""
    import torch  # lazy: conversion-time dependency only

    path = Path(path)
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, ... for bad files
        raise ValueError(f"cannot read the Open-Unmix state dict {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # a training checkpoint (openunmix's save_checkpoint)
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, expected a state dict")
    return {k: v.detach().cpu().numpy() for k, v in state.items() if hasattr(v, "detach")}


def find_target_file(folder, target):
    """``{target}.pth`` or ``{target}-{hash}.pth`` in ``folder``."""
    folder = Path(folder)
    exact = folder / f"{target}.pth"
    if exact.is_file():
        return exact
    found = sorted(folder.glob(f"{target}-*.pth"))
    if not found:
        raise FileNotFoundError(
            f"no weights for target {target!r} in {folder}: expected {target}.pth or "
            f"{target}-<hash>.pth; found {sorted(p.name for p in folder.glob('*.pth'))}"
        )
    return found[0]


def config_from_state_dict(state):
    """Architecture implied by one target's state dict: ``nb_bins``, ``nb_channels``,
    ``hidden_size``, ``nb_layers``, ``unidirectional``, ``max_bin``."""
    missing = [k for k in ("input_mean", "fc1.weight", "output_scale") if k not in state]
    if missing:
        raise ValueError(f"not an Open-Unmix state dict: missing {missing}; found {sorted(state)[:8]}...")
    max_bin = int(state["input_mean"].shape[0])
    hidden_size, features = state["fc1.weight"].shape
    if features % max_bin:
        raise ValueError(
            f"fc1.weight has {features} input features, not a multiple of max_bin={max_bin}"
        )
    nb_layers = len([k for k in state if re.fullmatch(r"lstm\.weight_ih_l\d+", k)])
    return {
        "nb_bins": int(state["output_scale"].shape[0]),
        "nb_channels": features // max_bin,
        "hidden_size": int(hidden_size),
        "nb_layers": nb_layers,
        "unidirectional": "lstm.weight_ih_l0_reverse" not in state,
        "max_bin": max_bin,
    }


def convert_config(source, targets=None):
    """An :class:`~kerasep.models.OpenUnmixSeparator` config from openunmix files.

    Args:
        source: a folder holding ``{target}[-hash].pth`` files (and, for locally trained models,
            ``separator.json`` with ``sample_rate``/``nfft``/``nhop``/``nb_channels``), or a dict
            ``{target: state_dict}``.
        targets: the targets to use (default: every ``*.pth`` found / every key).

    Returns:
        a config dict (``targets``, STFT and architecture keys).
    """
    sep = {}
    if isinstance(source, dict):
        states = source
        targets = list(targets or states)
    else:
        folder = Path(source)
        if not folder.is_dir():
            raise FileNotFoundError(f"no such Open-Unmix model folder: {folder}")
        if targets is None:
            targets = sorted({p.name.split("-")[0].split(".")[0] for p in folder.glob("*.pth")})
        states = {t: read_state_dict(find_target_file(folder, t)) for t in targets}
        if (folder / "separator.json").is_file():
            sep = json.loads((folder / "separator.json").read_text())
    archs = {t: config_from_state_dict(states[t]) for t in targets}
    first = archs[targets[0]]
    for t, arch in archs.items():
        if arch != first:
            raise ValueError(f"targets disagree on the architecture: {targets[0]}={first}, {t}={arch}")
    n_fft = int(sep.get("nfft", (first["nb_bins"] - 1) * 2))
    if n_fft // 2 + 1 != first["nb_bins"]:
        raise ValueError(
            f"separator.json's nfft={n_fft} gives {n_fft // 2 + 1} bins; the weights have {first['nb_bins']}"
        )
    channels = int(sep.get("nb_channels", first["nb_channels"]))
    if channels != first["nb_channels"]:
        raise ValueError(
            f"separator.json says nb_channels={channels}; the weights have {first['nb_channels']}"
        )
    return {
        "targets": list(targets),
        "nb_channels": first["nb_channels"],
        "sample_rate": int(sep.get("sample_rate", 44100)),
        "n_fft": n_fft,
        "hop_length": int(sep.get("nhop", n_fft // 4)),
        "hidden_size": first["hidden_size"],
        "nb_layers": first["nb_layers"],
        "unidirectional": first["unidirectional"],
        "max_bin": first["max_bin"],
    }


def _assign(variable, value, what):
    value = np.asarray(value, dtype="float32")
    if tuple(variable.shape) != value.shape:
        raise ValueError(
            f"shape mismatch for {what}: kerasep expects {tuple(variable.shape)}, found {value.shape}"
        )
    variable.assign(value)


def _lstm_cell_weights(cell, state, suffix, what):
    used = [f"lstm.weight_ih_{suffix}", f"lstm.weight_hh_{suffix}", f"lstm.bias_ih_{suffix}",
            f"lstm.bias_hh_{suffix}"]
    for k in used:
        if k not in state:
            raise ValueError(f"{what}: missing {k}")
    _assign(cell.kernel, state[used[0]].T, f"{what} kernel")
    _assign(cell.recurrent_kernel, state[used[1]].T, f"{what} recurrent_kernel")
    _assign(cell.bias, state[used[2]] + state[used[3]], f"{what} bias")
    return used


def convert_target_weights(model, state):
    """Copy one target's openunmix ``state`` (``{name: array}``) into a
    :func:`~kerasep.models.openunmix.build_openunmix` model. Every tensor must be used."""
    state = {k: np.asarray(v) for k, v in state.items()}
    used = set()

    def take(key):
        if key not in state:
            raise ValueError(f"{model.name}: the state dict has no {key!r}")
        used.add(key)
        return state[key]

    layer = model.get_layer
    _assign(layer("input_norm").shift, take("input_mean"), "input_mean")
    _assign(layer("input_norm").scale, take("input_scale"), "input_scale")
    _assign(layer("output_norm").scale, take("output_scale"), "output_scale")
    _assign(layer("output_norm").shift, take("output_mean"), "output_mean")
    for fc in ("fc1", "fc2", "fc3"):
        _assign(layer(fc).kernel, take(f"{fc}.weight").T, f"{fc}.weight")
        if f"{fc}.bias" in state:
            raise ValueError(f"{fc} has a bias in the state dict; Open-Unmix's {fc} has none")
    for bn in ("bn1", "bn2", "bn3"):
        bl = layer(bn)
        for torch_name, var in (("weight", bl.gamma), ("bias", bl.beta),
                                ("running_mean", bl.moving_mean), ("running_var", bl.moving_variance)):
            _assign(var, take(f"{bn}.{torch_name}"), f"{bn}.{torch_name}")
    k = 0
    while True:
        try:
            lstm = layer(f"lstm{k}")
        except ValueError:
            break
        if hasattr(lstm, "forward_layer"):
            used.update(_lstm_cell_weights(lstm.forward_layer.cell, state, f"l{k}", f"lstm{k} forward"))
            used.update(
                _lstm_cell_weights(lstm.backward_layer.cell, state, f"l{k}_reverse", f"lstm{k} backward")
            )
        else:
            used.update(_lstm_cell_weights(lstm.cell, state, f"l{k}", f"lstm{k}"))
        k += 1
    leftover = sorted(key for key in state if key not in used and not IGNORED.fullmatch(key))
    if leftover:
        raise ValueError(
            f"{model.name}: tensors of the state dict not used by the kerasep model: {leftover} "
            "(architecture mismatch: check hidden_size / nb_layers / unidirectional)"
        )


def convert(model, folder, source):
    """The zoo's converter (``registry.WEIGHT_FORMATS["openunmix-pth"]``): the
    ``{target}-{hash}.pth`` files of ``folder`` (tensors only) into ``model``."""
    return convert_weights(model, folder)


def convert_weights(model, source):
    """Load openunmix weights into an :class:`~kerasep.models.OpenUnmixSeparator`.

    Args:
        model: a built separator.
        source: ``{target: state_dict}`` (numpy or torch tensors) or a folder with
            ``{target}[-hash].pth`` files.
    """
    if not isinstance(source, dict):
        folder = Path(source)
        source = {t: read_state_dict(find_target_file(folder, t)) for t in model.targets}
    missing = [t for t in model.targets if t not in source]
    if missing:
        raise ValueError(f"no weights for targets {missing}; found {sorted(source)}")
    for t in model.targets:
        state = {
            k: (v.detach().cpu().numpy() if hasattr(v, "detach") else v) for k, v in source[t].items()
        }
        convert_target_weights(model.target_models[t], state)
    return model
