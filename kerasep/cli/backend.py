"""Which engine ``kerasep separate`` runs (``--backend auto|keras|onnx``).

``auto`` (the default) takes the ONNX runner when onnxruntime (and, for a first export, onnx
and tf2onnx) can be imported and the model can be exported and run with its own chunking
(:func:`kerasep.export.capability.onnx_problem`), else Keras; families whose Keras path measured
faster (``Separator.auto_backend = "keras"``: the RoFormers) take Keras. A model is exported once: the
file is checked against the Keras model on a short probe
(:func:`kerasep.export.capability.verify_export`) before it is cached, and its sha256 before
each use. ``--shifts`` and ``--trust`` are Keras-only, so ``auto`` takes Keras with them. Inputs
the runner's soundfile reader cannot take (``.mp4``, ``.m4a``) and ``--downmix`` are decoded by
ffmpeg into a disk-backed array and fed to the runner (``kerasep.cli.separate._run_onnx``).
"""
import sys

from kerasep.export.cache import (  # noqa: F401  (the CLI's names for them)
    BACKENDS, cache_path, cache_problem, export_to_cache, file_cache_record, onnx_engine, onnx_cache_record,
    record_path)


def say(args, message):
    """``message`` on stderr under ``-v``."""
    if getattr(args, "verbose", False):
        print(message, file=sys.stderr)


def auto_engine(args, load):
    """``(session, model, reason)`` for ``--backend auto``: ``session`` an
    :class:`~kerasep.export.runner.OnnxSeparator` of a verified cached export, or None and
    ``model`` the loaded Keras separator with ``reason`` saying why ONNX was not taken
    (:func:`kerasep.export.cache.onnx_engine`). ``load()`` loads the Keras model (raising as the
    Keras path does)."""
    if getattr(args, "trust", False):
        return None, load(), "--trust loads the model in Keras"
    if args.shifts:
        return None, load(), "--shifts runs on the Keras backend only"
    return onnx_engine(args.model, args.weights, "auto", 0, load=lambda _: load())
