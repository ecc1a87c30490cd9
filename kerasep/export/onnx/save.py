"""The exported file: :func:`to_onnx` (the graph of a model's layout, at a precision, with the
``kerasep.*`` metadata) and :func:`save_onnx` (written atomically after an onnxruntime smoke test).
"""
from pathlib import Path

import numpy as np

from kerasep.export import _atomic_path
from kerasep.export.metadata import OPSET, metadata
from kerasep.export.onnx.graph import _onnx
from kerasep.export.onnx.layouts import _spectral_graph, _waveform_graph
from kerasep.export.onnx.rewrites import _to_float16, _to_int8


def to_onnx(model, precision="float32", opset=OPSET):
    """The ``onnx.ModelProto`` of a whole separator (see the module docstring).

    Args:
        model: a kerasep separator (zoo model, user-built, trained with ``fit``).
        precision: ``"float32"``, ``"float16"`` (the core's weights and arithmetic in half
            precision, STFT/iSTFT and masks in float32; input/outputs stay float32) or ``"int8"``
            (dynamic int8 quantisation of the core's weights, onnxruntime.quantization).
    """
    from kerasep.export.spec import export_spec

    if precision not in ("float32", "float16", "int8"):
        raise ValueError(f"precision must be 'float32', 'float16' or 'int8'. Received: {precision!r}")
    spec = export_spec(model)
    if spec["kind"] == "spectral":
        proto = _spectral_graph(spec, opset, precision)
    elif spec["kind"] == "hybrid":
        from kerasep.export.onnx.hybrid import _hybrid_graph

        proto = _hybrid_graph(spec, opset, precision)
    else:
        from kerasep.layers.lstm_blocks import keras_lstm_graphs

        with keras_lstm_graphs():  # Keras' LSTM loops, which tf2onnx turns into ONNX LSTM nodes
            proto = _waveform_graph(model, spec, opset)
        if precision == "float16":
            proto = _to_float16(proto)
        elif precision == "int8":
            proto = _to_int8(proto)
    onnx = _onnx()
    onnx.helper.set_model_props(proto, metadata(model, spec, precision))
    return proto


def save_onnx(model, path, precision="float32", check=True):
    """Export ``model`` to ``path`` (``.onnx``), atomically. With ``check`` the file is loaded
    back in onnxruntime and run once on a short input (an export that onnxruntime refuses is an
    error, never a silent success). Returns the path."""
    onnx = _onnx()
    path = Path(path)
    proto = to_onnx(model, precision=precision)
    with _atomic_path(path) as tmp:
        onnx.save(proto, tmp)
        if check:
            _smoke_test(tmp, int(model.nb_channels))
    return str(path)


def _smoke_test(path, nb_channels):
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        x = np.zeros((1, nb_channels, 3000), np.float32)
        outs = sess.run(None, {"waveform": x})
    except Exception as exc:
        raise RuntimeError(f"the exported ONNX file does not run in onnxruntime: {exc}") from exc
    for o in outs:
        if o.shape != x.shape:
            raise RuntimeError(f"exported ONNX output has shape {o.shape}; expected {x.shape}")
