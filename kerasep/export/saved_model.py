"""TensorFlow SavedModel export with a TF Serving ``serving_default`` signature.

The signature takes one named input, ``waveform``: float32 ``(batch, nb_channels, nb_timesteps)``
(batch and length dynamic), and returns ``{target: (batch, nb_channels, nb_timesteps)}``, one
named output per stem. Reload with ``tf.saved_model.load(path).signatures["serving_default"]``
(or serve the folder with TF Serving, which reads the same signature). The model's facts (sample
rate, targets, kerasep version, weights sha256, chunking; the keys of
:func:`kerasep.export.metadata.metadata`, shared with the ONNX export) are written to
``assets/kerasep_metadata.json``. Nothing here imports ``onnx``, ``tf2onnx`` or
:mod:`kerasep.export.onnx`.
"""
import json
import os
import shutil
import tempfile
from pathlib import Path

METADATA_FILE = "kerasep_metadata.json"


class SavedModelError(RuntimeError):
    """A SavedModel folder is missing, truncated or not a kerasep export."""


def save_saved_model(model, path, overwrite=False):
    """Export ``model`` as a SavedModel folder at ``path`` (written to a temporary folder beside
    it and renamed into place). Returns the path.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    from kerasep.backend import tf
    from kerasep.export.metadata import metadata
    from kerasep.export.spec import export_spec

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
    spec = export_spec(model)
    targets = spec["output_targets"]
    signature = tf.TensorSpec([None, spec["nb_channels"], None], tf.float32, name="waveform")

    module = tf.Module()
    module.model = model

    @tf.function(input_signature=[signature])
    def serve(waveform):
        out = model(waveform, training=False)
        return {t: out[t] for t in targets}

    module.serve = serve
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        tf.saved_model.save(module, str(tmp), signatures={"serving_default": serve})
        meta = metadata(model, spec)
        (tmp / "assets").mkdir(exist_ok=True)
        (tmp / "assets" / METADATA_FILE).write_text(json.dumps(meta, indent=1))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(path)


def load_saved_model(path):
    """``(serving_fn, metadata)`` of a kerasep SavedModel; ``serving_fn(waveform=x)`` returns
    ``{target: tensor}``.

    Raises:
        SavedModelError: the folder is missing, truncated or corrupted, or lacks the signature.
    """
    from kerasep.backend import tf

    path = Path(path)
    if not (path / "saved_model.pb").is_file():
        raise SavedModelError(f"{path}: not a SavedModel folder (expected {path / 'saved_model.pb'})")
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # tf raises many types for damaged files
        raise SavedModelError(f"{path}: cannot load the SavedModel (truncated or corrupted?): {exc}") from exc
    if "serving_default" not in loaded.signatures:
        raise SavedModelError(
            f"{path}: no 'serving_default' signature; found {sorted(loaded.signatures)}"
        )
    meta_path = path / "assets" / METADATA_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    fn = loaded.signatures["serving_default"]
    fn._kerasep_keepalive = loaded  # the concrete function needs its object alive
    return fn, meta
