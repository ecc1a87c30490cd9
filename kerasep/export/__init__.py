"""Export separators for deployment: ``.keras``, TensorFlow SavedModel and single-file ONNX.

>>> from kerasep import export
>>> export.export("unet-2stems", "unet-2stems.onnx")               # zoo name → ONNX
>>> export.export(model, "my_model", format="saved_model")          # any kerasep model
>>> export.export(model, "my_model.onnx", precision="float16")

- ``keras``: the native Keras archive; reload with ``kerasep.zoo.load("path.keras")``.
- ``saved_model``: a folder with a ``serving_default`` signature (input ``waveform``, one output
  per stem), see :mod:`kerasep.export.saved_model`.
- ``onnx``: one ``.onnx`` file computing STFT → masks → inverse STFT, see :mod:`kerasep.export.onnx`;
  run it without TensorFlow with ``python -m kerasep.export.runner MODEL.onnx song.wav`` (see
  :mod:`kerasep.export.runner`). ``with_runner=True`` (``kerasep export ... --with-runner``)
  also writes that runner, one self-contained file (a zipapp of the package), beside the model
  as ``run_onnx.pyz``: a deployment without kerasep runs ``python run_onnx.pyz MODEL.onnx song.wav``.

Importing this package (or :mod:`kerasep.export.runner`) imports neither TensorFlow nor ONNX.

How a model family is split into signal processing and network is described in
:mod:`kerasep.export.spec`; new families plug in there.
"""
import contextlib
import os
from pathlib import Path

FORMATS = ("keras", "saved_model", "onnx")
PRECISIONS = ("float32", "float16", "int8")
#: The file name :func:`write_runner` gives the runner beside an exported model.
RUNNER_NAME = "run_onnx.pyz"
#: The package name of :mod:`kerasep.export.runner` inside :data:`RUNNER_NAME` (a zipapp).
RUNNER_PACKAGE = "kerasep_runner"

__all__ = ["export", "FORMATS", "PRECISIONS", "RUNNER_NAME", "guess_format", "write_runner"]


def guess_format(path):
    """The format a path names: ``.onnx`` → onnx, ``.keras`` → keras, anything else (a folder)
    → saved_model."""
    suffix = Path(path).suffix.lower()
    return {".onnx": "onnx", ".keras": "keras"}.get(suffix, "saved_model")


def _resolve_model(model, weights=None, download=True):
    if isinstance(model, (str, Path)):
        from kerasep import zoo

        return zoo.load(str(model), weights=weights, download=download)
    from kerasep.models.separator import check_separator

    return check_separator(model, "the model to export")


def file_mode(executable=False):
    """The mode a plain ``open`` (``executable``: ``mkdir``) would give a new file:
    ``0o666 & ~umask`` (``0o777 & ~umask``). Temporary files (``mkstemp``: 0600, ``mkdtemp``:
    0700) get it before they are renamed into place."""
    from kerasep.export.runner import current_umask

    return (0o777 if executable else 0o666) & ~current_umask()


def apply_modes(path):
    """:func:`file_mode` for ``path`` and, for a folder (a SavedModel), everything inside:
    folders ``0o777 & ~umask``, files ``0o666 & ~umask``."""
    path = Path(path)
    if not path.is_dir():
        os.chmod(path, file_mode())
        return
    os.chmod(path, file_mode(executable=True))
    for root, dirs, files in os.walk(path):
        for d in dirs:
            os.chmod(os.path.join(root, d), file_mode(executable=True))
        for f in files:
            os.chmod(os.path.join(root, f), file_mode())


@contextlib.contextmanager
def _atomic_path(path, suffix=".tmp", executable=False):
    """A temporary file beside ``path`` for the block to write; renamed to ``path`` when the
    block succeeds, removed when it fails (no partial file is ever left at ``path``). The file
    gets :func:`file_mode` before the rename. Its name carries this process' id and start time
    (:func:`kerasep.export.runner.owner_token`): a killed export's is removed by the next one."""
    from kerasep.export.runner import owner_token, sweep_stale

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path.parent)  # a killed export's temporary
    tmp = str(path.parent / f".{path.name}.{owner_token()}{suffix}")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        yield tmp
        os.chmod(tmp, file_mode(executable))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_keras(model, path, overwrite=False):
    """``model.save`` to a ``.keras`` file, atomically (temporary file + rename)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"a Keras archive path must end with '.keras'. Received: {path}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
    with _atomic_path(path, suffix=".tmp.keras") as tmp:
        model.save(tmp)
    return str(path)


def runner_archive():
    """The bytes of :data:`RUNNER_NAME`: a zipapp (``python run_onnx.pyz ...``) holding
    :mod:`kerasep.export.runner`'s modules as the package ``kerasep_runner/`` and a root
    ``__main__.py`` running its ``main``. Deterministic (fixed timestamps, sorted), so an
    identical file beside a model is recognised and kept."""
    import io
    import zipfile

    folder = Path(__file__).with_name("runner")
    members = {f"{RUNNER_PACKAGE}/{p.name}": p.read_bytes() for p in sorted(folder.glob("*.py"))}
    members["__main__.py"] = (
        f'"""kerasep\'s TensorFlow-free ONNX runner: python {RUNNER_NAME} MODEL.onnx song.wav -o OUT."""\n'
        f"import sys\n\nfrom {RUNNER_PACKAGE}.cli import main\n\nsys.exit(main())\n"
    ).encode()
    buffer = io.BytesIO()
    buffer.write(b"#!/usr/bin/env python\n")
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, members[name])
    return buffer.getvalue()


def _runner_target(directory, overwrite=False):
    """``(path, source, needed)`` for :func:`write_runner`; raises FileExistsError where a
    different file is in the way and ``overwrite`` is False."""
    source = runner_archive()
    path = Path(directory) / RUNNER_NAME
    same = path.is_file() and path.read_bytes() == source
    if path.exists() and not same and not overwrite:
        raise FileExistsError(
            f"{path} exists and is not kerasep.export.runner's source (pass overwrite=True to replace it)"
        )
    return path, source, not same


def write_runner(directory, overwrite=False):
    """Write the TensorFlow-free runner (:mod:`kerasep.export.runner` as one self-contained
    zipapp, :func:`runner_archive`, needing numpy, onnxruntime and soundfile) to
    ``directory/run_onnx.pyz``, atomically, executable. An identical file there is kept; a
    different one is replaced only with ``overwrite``. Returns the path (str)."""
    path, source, needed = _runner_target(directory, overwrite)
    if needed:
        with _atomic_path(path, executable=True) as tmp:
            Path(tmp).write_bytes(source)
    return str(path)


def export(model, path, format=None, precision="float32", overwrite=False, weights=None, download=True,
           with_runner=False):
    """Export a separator.

    Args:
        model: a zoo name (``"unet-2stems"``), a ``.keras`` path, or a kerasep ``keras.Model``
            (zoo, user-built, trained with ``fit``).
        path: output file (``.onnx``, ``.keras``) or folder (SavedModel).
        format: ``"keras"``, ``"saved_model"`` or ``"onnx"`` (default: from ``path``).
        precision: ONNX only: ``"float32"``, ``"float16"`` or ``"int8"`` (dynamic quantisation).
        overwrite: replace an existing ``path`` (and, with ``with_runner``, a different
            ``run_onnx.pyz``).
        weights, download: as for :func:`kerasep.zoo.load` when ``model`` is a name.
        with_runner: ONNX only: also write the TensorFlow-free runner beside the model as
            ``run_onnx.pyz`` (:func:`write_runner`), for a deployment without kerasep.

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
    if with_runner and format != "onnx":
        raise ValueError(f"with_runner=True is only available for format='onnx'. Received: format={format!r}")
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
    if with_runner:
        _runner_target(path.parent, overwrite)  # refused before the (long) export, not after
    model = _resolve_model(model, weights, download)
    if format == "keras":
        return save_keras(model, path, overwrite=overwrite)
    if format == "saved_model":
        from kerasep.export.saved_model import save_saved_model

        written = save_saved_model(model, path, overwrite=overwrite)
        apply_modes(written)  # its temporary folder came from mkdtemp (0700)
        return written
    from kerasep.export.onnx import save_onnx

    written = save_onnx(model, path, precision=precision)
    if with_runner:
        write_runner(path.parent, overwrite=overwrite)
    return written
