"""The facts every export records (ONNX ``metadata_props``, a SavedModel's
``assets/kerasep_metadata.json``): :func:`metadata` and :func:`weights_sha256`.

TensorFlow-side and light: no ``onnx``/``tf2onnx`` import, so :mod:`kerasep.export.saved_model`
uses it without loading the ONNX exporter.
"""
import hashlib
import json

import numpy as np

#: ONNX opset of exported files (DFT needs >= 17; onnxruntime CPU/CUDA implement it).
OPSET = 17


def weights_sha256(model):
    """sha256 of the weights: the registry's source files for a zoo model (``{file: sha256}``),
    else of the model's variables (one digest over every weight array, in order)."""
    name = model.zoo_name  # Separator contract: set by kerasep.zoo.load
    if name:
        from kerasep.zoo import registry

        entry = registry.get(name)
        files = registry.weight_source(entry["weights"])["files"]
        return {"source": entry["weights"], "files": files}
    h = hashlib.sha256()
    for w in model.weights:
        h.update(np.ascontiguousarray(np.asarray(w.numpy() if hasattr(w, "numpy") else w)).tobytes())
    return {"source": "variables", "sha256": h.hexdigest()}


def metadata(model, spec, precision="float32"):
    """``metadata_props`` stored in exported files (all values are strings; lists/dicts JSON)."""
    import kerasep

    meta = {
        "kerasep.version": kerasep.__version__,
        "kerasep.family": spec["family"],
        "kerasep.model": model.zoo_name or model.name,
        "kerasep.sample_rate": str(spec["sample_rate"]),
        "kerasep.nb_channels": str(spec["nb_channels"]),
        "kerasep.targets": json.dumps(spec["output_targets"]),
        "kerasep.weights_sha256": json.dumps(weights_sha256(model)),
        "kerasep.precision": precision,
        "kerasep.opset": str(OPSET),
        "kerasep.input": "waveform (batch, nb_channels, nb_timesteps) float32",
    }
    for key in ("n_fft", "hop_length", "padding", "chunk_alignment", "chunk_context", "chunk_segment",
                "chunk_overlap", "chunk_weighting"):
        if key in spec:
            meta[f"kerasep.{key}"] = str(spec[key])
    return meta
