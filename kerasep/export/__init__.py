"""Export separators for deployment: ``.keras``, TensorFlow SavedModel and single-file ONNX.

>>> from kerasep import export
>>> export.export("unet-2stems", "unet-2stems.onnx")               # zoo name → ONNX
>>> export.export(model, "my_model", format="saved_model")          # any kerasep model
>>> export.export(model, "my_model.onnx", precision="float16")

- ``keras``: the native Keras archive; reload with ``kerasep.zoo.load("path.keras")``.
- ``saved_model``: a folder with a ``serving_default`` signature (input ``waveform``, one output
  per stem), see :mod:`kerasep.export.saved_model`.
- ``onnx``: one ``.onnx`` file computing STFT → masks → inverse STFT, see :mod:`kerasep.export.onnx`;
  run it without TensorFlow with ``export/run_onnx.py`` (also :mod:`kerasep.export.runner`).

How a model family is split into signal processing and network is described in
:mod:`kerasep.export.spec`; new families plug in there.
"""
import os
import tempfile
from pathlib import Path

FORMATS = ("keras", "saved_model", "onnx")
PRECISIONS = ("float32", "float16", "int8")

__all__ = ["export", "FORMATS", "PRECISIONS", "guess_format"]


def guess_format(path):
    """The format a path names: ``.onnx`` → onnx, ``.keras`` → keras, anything else (a folder)
    → saved_model."""
    suffix = Path(path).suffix.lower()
    return {".onnx": "onnx", ".keras": "keras"}.get(suffix, "saved_model")


def _resolve_model(model, weights=None, download=True):
    if isinstance(model, (str, Path)):
        from kerasep import zoo

        return zoo.load(str(model), weights=weights, download=download)
    return model


def save_keras(model, path, overwrite=False):
    """``model.save`` to a ``.keras`` file, atomically (temporary file + rename)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"a Keras archive path must end with '.keras'. Received: {path}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp.keras", dir=path.parent)
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return str(path)


def export(model, path, format=None, precision="float32", overwrite=False, weights=None, download=True):
    """Export a separator.

    Args:
        model: a zoo name (``"unet-2stems"``), a ``.keras`` path, or a kerasep ``keras.Model``
            (zoo, user-built, trained with ``fit``).
        path: output file (``.onnx``, ``.keras``) or folder (SavedModel).
        format: ``"keras"``, ``"saved_model"`` or ``"onnx"`` (default: from ``path``).
        precision: ONNX only: ``"float32"``, ``"float16"`` or ``"int8"`` (dynamic quantisation).
        overwrite: replace an existing ``path``.
        weights, download: as for :func:`kerasep.zoo.load` when ``model`` is a name.

    Returns:
        The path written (str).
    """
    format = format or guess_format(path)
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}. Received: format={format!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}. Received: precision={precision!r}")
    if precision != "float32" and format != "onnx":
        raise ValueError(f"precision={precision!r} is only available for format='onnx'")
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
    model = _resolve_model(model, weights, download)
    if format == "keras":
        return save_keras(model, path, overwrite=overwrite)
    if format == "saved_model":
        from kerasep.export.saved_model import save_saved_model

        return save_saved_model(model, path, overwrite=overwrite)
    from kerasep.export.onnx import save_onnx

    return save_onnx(model, path, precision=precision)
