"""Deezer Spleeter TF1 checkpoint → :class:`kerasep.models.UNetSeparator`.

Spleeter builds one U-Net per instrument with Keras layers inside a TF1 graph, so its variables
are named by creation order, instrument after instrument (``instrument_list`` order:
``["vocals", "accompaniment"]`` for 2stems, ``["vocals", "drums", "bass", "other"]`` for 4stems,
``["vocals", "piano", "drums", "bass", "other"]`` for 5stems; the model's ``targets`` must be in
that order). 5stems is Spleeter's ``softmax_unet``: the same per-instrument U-Nets, whose final
convolutions give mask logits softmaxed across instruments (no variables of its own), so the
layout below holds for every release. For instrument ``s`` (0-based) of a U-Net with
``depth = 6`` encoder blocks:

=====================================================  ================================
Spleeter variable                                      kerasep layer (target ``t``)
=====================================================  ================================
``conv2d_{7s+i}/{kernel,bias}``, i < 6                 ``{t}_enc{i}_conv``
``conv2d_{7s+6}/{kernel,bias}``                        ``{t}_mask_conv``
``conv2d_transpose_{6s+i}/{kernel,bias}``              ``{t}_dec{i}_deconv``
``batch_normalization_{12s+i}/*``, i < 5               ``{t}_enc{i}_bn``
``batch_normalization_{12s+5}/*``                      unused by Spleeter's graph: dropped
``batch_normalization_{12s+6+i}/*``, i < 6             ``{t}_dec{i}_bn``
=====================================================  ================================

(the suffix ``_0`` is written without it: ``conv2d``, ``batch_normalization``). Kernel layouts are
identical (TF ``HWIO``; transposed convolutions ``HW-out-in``), so tensors are copied unchanged;
every shape is checked and every variable must be used exactly once.
"""
from pathlib import Path

from kerasep.backend import tf

BN_VARIABLES = ("gamma", "beta", "moving_mean", "moving_variance")


def _tf1_name(base, index):
    return base if index == 0 else f"{base}_{index}"


def variable_mapping(targets, depth=6):
    """``{spleeter_variable: (kerasep_layer, weight_name)}`` for a U-Net with ``targets``.

    Variables Spleeter stores but never uses map to ``(None, weight_name)``."""
    mapping = {}
    for s, t in enumerate(targets):
        convs = [f"{t}_enc{i}_conv" for i in range(depth)] + [f"{t}_mask_conv"]
        for i, layer in enumerate(convs):
            for w in ("kernel", "bias"):
                mapping[f"{_tf1_name('conv2d', (depth + 1) * s + i)}/{w}"] = (layer, w)
        for i in range(depth):
            for w in ("kernel", "bias"):
                mapping[f"{_tf1_name('conv2d_transpose', depth * s + i)}/{w}"] = (f"{t}_dec{i}_deconv", w)
        # The bottleneck's BN (enc{depth-1}_bn) exists in the checkpoint but Spleeter's graph
        # never consumes its output: it maps to None (checked present, then dropped).
        bns = [f"{t}_enc{i}_bn" for i in range(depth - 1)] + [None]
        bns += [f"{t}_dec{i}_bn" for i in range(depth)]
        for i, layer in enumerate(bns):
            for w in BN_VARIABLES:
                mapping[f"{_tf1_name('batch_normalization', 2 * depth * s + i)}/{w}"] = (layer, w)
    return mapping


def read_checkpoint(prefix):
    """All variables of a TF1 checkpoint (``prefix`` = path without ``.index``) as numpy arrays."""
    try:
        reader = tf.train.load_checkpoint(str(prefix))
    except Exception as exc:  # tf raises several error types for unreadable files
        raise ValueError(f"cannot read the Spleeter checkpoint at {prefix!r}: {exc}") from exc
    names = [n for n in reader.get_variable_to_shape_map() if n != "global_step"]
    return {n: reader.get_tensor(n) for n in names}


def _keras_weight(layer, name):
    for w in layer.weights:
        if w.path.split("/")[-1] == name:
            return w
    raise KeyError(f"layer {layer.name!r} has no weight {name!r}")


def convert(model, folder, source):
    """The zoo's converter (``registry.WEIGHT_FORMATS["spleeter-tf1"]``): the TF1 checkpoint
    ``source["checkpoint"]`` in ``folder`` into ``model``."""
    return convert_weights(model, read_checkpoint(Path(folder) / source["checkpoint"]))


def convert_weights(model, tensors):
    """Copy Spleeter ``tensors`` (``{name: array}``, see :func:`read_checkpoint`) into ``model``.

    Args:
        model: a :class:`~kerasep.models.UNetSeparator` (or its ``core``) with the checkpoint's
            ``targets`` in the checkpoint's instrument order.
        tensors: the checkpoint's variables.

    Raises:
        ValueError: a variable is missing, left over, or has another shape than the model's.
    """
    from kerasep.models.unet import UNetSeparator

    if isinstance(model, UNetSeparator):
        core, targets = model.core, list(model.targets)
    else:  # the spectrogram core itself (build_unet_core)
        core, targets = model, list(model.output_names)
    depth = sum(1 for l in core.layers if l.name.startswith(f"{targets[0]}_enc") and l.name.endswith("_conv"))
    mapping = variable_mapping(targets, depth)
    missing = sorted(set(mapping) - set(tensors))
    extra = sorted(set(tensors) - set(mapping))
    if missing or extra:
        raise ValueError(
            f"Spleeter checkpoint does not match a {len(targets)}-target U-Net of depth {depth} "
            f"(targets={targets}). Expected variables missing: {missing[:6]}{'...' if len(missing) > 6 else ''}; "
            f"unexpected variables found: {extra[:6]}{'...' if len(extra) > 6 else ''}."
        )
    for src, (layer_name, weight_name) in mapping.items():
        if layer_name is None:
            continue
        var = _keras_weight(core.get_layer(layer_name), weight_name)
        value = tensors[src]
        if tuple(var.shape) != tuple(value.shape):
            raise ValueError(
                f"shape mismatch for {src} → {layer_name}/{weight_name}: "
                f"expected {tuple(var.shape)}, found {tuple(value.shape)}"
            )
        var.assign(value)
    return model
