"""Reading demucs 4 ``.th`` packages safely: :func:`read_package` and the restricted unpickling.

The trust model is :mod:`kerasep.zoo.converters.demucs`'s: the globals the pickle names are listed
without running it (:func:`needed_globals`); the model classes (``klass``; only the name is used)
and ``fractions.Fraction`` (rebuilt from its two recorded integers, or its string, by kerasep) are
replaced by inert stand-ins; tensors are read by PyTorch's restricted unpickler
(``torch.load(weights_only=True)``); any other global refuses the file with
:class:`~kerasep.zoo.converters.demucs.UntrustedCheckpointError` (``trust=True`` falls back to the
full unpickler, for files you trust). Re-exported by :mod:`kerasep.zoo.converters.htdemucs`, which
maps the state onto :class:`kerasep.models.HTDemucs`.
"""
from fractions import Fraction
from pathlib import Path


HTDEMUCS_CLASS = "demucs.htdemucs.HTDemucs"
HDEMUCS_CLASS = "demucs.hdemucs.HDemucs"
#: ``klass`` names of demucs 4 packages (only HTDemucs converts).
DEMUCS4_CLASSES = (HTDEMUCS_CLASS, HDEMUCS_CLASS)
FRACTION = "fractions.Fraction"


def _inert_globals():
    from kerasep.zoo.converters import demucs

    return tuple(demucs.INERT_GLOBALS) + DEMUCS4_CLASSES + (FRACTION,)


def needed_globals(path):
    """The globals a ``.th`` pickle names beyond PyTorch's tensor allowlist (read without running
    it), or ``None`` for a file that is not a zip-format torch file."""
    import torch

    try:
        return set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # legacy format or not a torch file at all
        return None


def is_demucs4_package(path):
    """Whether the ``.th`` file at ``path`` names a demucs 4 model class (HTDemucs / HDemucs)."""
    needed = needed_globals(path)
    return bool(needed and needed & set(DEMUCS4_CLASSES))


def _fraction(record):
    """A ``Fraction`` from the inert record of one (``Fraction.__reduce__``: two ints, or a string)."""
    args = tuple(getattr(record, "args", ()))
    if len(args) == 2 and all(isinstance(a, int) and not isinstance(a, bool) for a in args) and args[1]:
        return Fraction(*args)
    if len(args) == 1 and isinstance(args[0], (int, str)) and not isinstance(args[0], bool):
        return Fraction(args[0])
    raise ValueError(f"unexpected fractions.Fraction arguments in the checkpoint: {args!r}")


def _restore(value):
    """Inert ``Fraction`` records → ``Fraction``, recursively through lists, tuples and dicts."""
    from kerasep.zoo.converters.demucs import _Inert

    if isinstance(value, _Inert) and value.qualified_name == FRACTION:
        return _fraction(value)
    if isinstance(value, dict):
        return {k: _restore(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_restore(v) for v in value)
    return value


def read_package(path, trust=False):
    """Read a demucs 4 ``.th`` package without executing code from it (see the module doc).

    Returns ``{"klass": str, "args": list, "kwargs": dict, "state": {name: float32 array}}``
    (``Fraction`` values restored). Raises FileNotFoundError, UntrustedCheckpointError (the file
    names code; ``trust`` not given) or ValueError (not a demucs package, quantized).
    """
    from kerasep.zoo.converters.demucs import _as_package, restricted_load

    names = (f"A demucs 4 package names only {', '.join(DEMUCS4_CLASSES)} (as the model class) and {FRACTION} "
             "beside tensors. ")
    obj = restricted_load(path, _inert_globals(), trust, names)
    package = _as_package(obj, path)
    package["args"] = _restore(package["args"])
    package["kwargs"] = _restore(package["kwargs"])
    return package
