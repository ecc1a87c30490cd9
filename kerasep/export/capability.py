"""Whether a separator can go the ONNX way, asked before any export is tried.

:func:`onnx_problem` answers for one model without exporting it: the packages (onnxruntime to
run, onnx and tf2onnx to export), the model's :func:`~kerasep.export.spec.export_spec` (the
exporters' own preconditions on ``n_fft`` / ``hop_length`` / ``patch_frames``), and, for
waveform models converted whole by tf2onnx, the op types of the traced graph (tf2onnx has no
handler for the inverse FFT and mishandles complex tensors, so a graph holding them is refused
here instead of failing, or writing an invalid file, after minutes of conversion). It also asks
whether the TensorFlow-free runner cuts a song the way :func:`kerasep.inference.separate_array`
does for that model, so that the ONNX path gives the Keras path's output.

:func:`verify_export` compares a fresh export with the Keras model on a short probe before the
export is cached (:data:`VERIFY_TOLERANCE`).

Nothing here imports TensorFlow, onnx or onnxruntime at import time.
"""
#: Largest ``max |onnx - keras| / max(1, max |keras|)`` accepted on the probe of :func:`verify_export`.
VERIFY_TOLERANCE = 1e-4
#: Length of the probe of :func:`verify_export`, seconds.
PROBE_SECONDS = 1.0
#: TensorFlow op types tf2onnx cannot convert (or converts into an invalid file).
UNCONVERTIBLE_OPS = frozenset({"IRFFT", "IRFFT2D", "IRFFT3D", "IFFT", "IFFT2D", "IFFT3D", "FFT", "FFT2D",
                               "FFT3D", "RFFT2D", "RFFT3D", "Complex", "Real", "Imag", "ComplexAbs"})

__all__ = ["onnx_runtime_problem", "onnx_problem", "onnx_exportable", "verify_export", "VERIFY_TOLERANCE"]


def onnx_runtime_problem(export=True):
    """None when onnxruntime (and, with ``export``, onnx and tf2onnx) can be imported; else
    what is missing and how to install it."""
    needed = ("onnxruntime", "onnx", "tf2onnx") if export else ("onnxruntime",)
    missing = []
    for name in needed:
        try:
            __import__(name)
        except Exception:  # ImportError, or a broken install raising anything on import
            missing.append(name)
    if missing:
        return f"{', '.join(missing)} cannot be imported (pip install 'kerasep[onnx]')"
    return None


def _runner_chunking_problem(model, spec):
    """None when :mod:`kerasep.export.runner` cuts a song as :func:`kerasep.inference.separate_array`
    does for ``model``: exact chunk grids (the U-Nets), demucs' triangular or MSST's faded segments
    when the export declares them (``spec["chunk_weighting"]``: HT-Demucs, the RoFormers), or
    cross-fades of the runner's chunk and context lengths with borders on any sample. Other
    policies (Demucs v2's linear segments, Open-Unmix's cross-fades on Wiener windows) are cut
    otherwise by the runner, so they stay on the Keras path."""
    from kerasep.export.runner import DEFAULT_CONTEXT_SECONDS, DEFAULT_CROSSFADE_CHUNK_SECONDS
    from kerasep.models.bag import SeparatorBag

    if isinstance(model, SeparatorBag):
        return "a bag of models (each member runs with its own shifts and segments)"
    policy = model.chunking
    if policy.is_exact:
        return None
    if policy.kind == "segment" and policy.weighting in ("triangular", "faded") and \
            spec.get("chunk_weighting") == policy.weighting:  # declared in the file: the runner cuts it alike
        return None
    if (policy.kind == "crossfade" and policy.context_seconds == DEFAULT_CONTEXT_SECONDS
            and policy.chunk_seconds(None) == DEFAULT_CROSSFADE_CHUNK_SECONDS and int(policy.alignment) == 1):
        return None
    return (f"the ONNX runner would cut it otherwise than its chunk policy ({policy.kind!r}, {policy.weighting!r}, "
            f"alignment {policy.alignment}) does: the runner has exact grids, declared triangular or faded segments, "
            f"or {DEFAULT_CROSSFADE_CHUNK_SECONDS:g} s cross-faded chunks with {DEFAULT_CONTEXT_SECONDS:g} s "
            "context on any sample")


def _spectral_problem(spec):
    n_fft, hop = int(spec["n_fft"]), int(spec["hop_length"])
    if n_fft % 2:  # any hop_length exports (kerasep/export/onnx/dsp.py frames on ceil(n_fft / hop) blocks)
        return f"the ONNX export needs an even n_fft (n_fft={n_fft}, hop_length={hop})"
    if spec.get("core_layout") == "patches" and spec.get("padding") == "spleeter":
        t = int(spec["patch_frames"])
        if n_fft - hop > t * hop:
            return f"patches of {t} frames are shorter than a window (n_fft={n_fft})"
    return None


def _graph_ops(model):
    """The op types of ``model``'s graph traced on ``(1, nb_channels, None)`` waveforms
    (functions called from it included)."""
    from kerasep.backend import tf

    from kerasep.layers.lstm_blocks import keras_lstm_graphs

    spec = tf.TensorSpec((1, model.nb_channels, None), tf.float32, name="waveform")
    with keras_lstm_graphs():  # the graph the export converts
        graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    ops = {op.type for op in graph.get_operations()}
    for fn in graph.as_graph_def().library.function:
        ops.update(node.op for node in fn.node_def)
    return ops


def onnx_problem(model, runtime=True):
    """None when ``model`` (a kerasep separator) can be exported to ONNX and run by the ONNX
    runner with the Keras path's chunking; else the reason, one sentence. Nothing is exported.

    Args:
        runtime: also require onnxruntime, onnx and tf2onnx to be importable.
    """
    from kerasep.export.spec import export_spec

    if runtime:
        problem = onnx_runtime_problem()
        if problem:
            return problem
    try:
        spec = export_spec(model)
    except NotImplementedError as exc:
        return f"{type(model).__name__} has no ONNX export: {exc}"
    problem = _runner_chunking_problem(model, spec)
    if problem:
        return problem
    if spec["kind"] == "spectral":
        return _spectral_problem(spec)
    if spec["kind"] != "waveform":  # e.g. "hybrid": the exporter writes the STFTs in ONNX itself
        return None
    found = sorted(_graph_ops(model) & UNCONVERTIBLE_OPS)
    if found:
        return f"{type(model).__name__}'s graph uses {', '.join(found)}, which tf2onnx cannot convert"
    return None


def onnx_exportable(model, runtime=True):
    """``onnx_problem(model, runtime) is None``."""
    return onnx_problem(model, runtime) is None


def verify_export(model, path, seconds=PROBE_SECONDS, tolerance=VERIFY_TOLERANCE):
    """Compare the ONNX file ``path`` with the Keras ``model`` on ``seconds`` of a fixed
    pseudo-random probe ``(1, nb_channels, nb_timesteps)`` (amplitude 0.25). Returns the
    relative error ``max |onnx - keras| / max(1, max |keras|)`` over every stem; raises
    RuntimeError naming the stem and the error when it exceeds ``tolerance``."""
    import numpy as np

    from kerasep.export.runner import OnnxSeparator

    rng = np.random.default_rng(0)
    n = max(1, int(seconds * model.sample_rate))
    probe = (0.25 * rng.standard_normal((1, int(model.nb_channels), n))).astype(np.float32)
    ours = {t: np.asarray(v) for t, v in model(probe, training=False).items()}
    theirs = OnnxSeparator(path, providers=["CPUExecutionProvider"])(probe)
    worst, where = 0.0, None
    for t, y in theirs.items():
        err = float(np.max(np.abs(y - ours[t]))) / max(1.0, float(np.max(np.abs(ours[t]))))
        if not np.isfinite(err) or err > worst:
            worst, where = err if np.isfinite(err) else float("inf"), t
    if worst > tolerance:
        raise RuntimeError(f"the ONNX export of {type(model).__name__} differs from the Keras model on a "
                           f"{seconds:g} s probe: relative error {worst:.2e} on {where!r} (allowed {tolerance:g})")
    return worst

