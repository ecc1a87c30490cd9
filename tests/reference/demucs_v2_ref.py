"""demucs 2.x's ``Demucs`` (``demucs.model.Demucs``) as a test-only PyTorch reference.

demucs 2 and demucs 4 cannot be installed side by side, and demucs 2's package imports
``diffq``, torchaudio and others. Its ``demucs/model.py`` itself needs only torch, julius and
two helpers (``capture_init``, ``center_trim``) that demucs 4 still ships. So the reference is
the untouched ``model.py`` of the ``demucs==2.0.3`` source distribution from the package index
(``pip download --no-deps``, 51 kB; ``KERASEP_TEST_DEMUCS2_SDIST`` may name a local copy),
executed as the module ``demucs.model`` with only its one relative import line pointed at those
demucs 4 helpers.
"""
import importlib.util
import os
import subprocess
import sys
import tarfile
import tempfile
import types
from pathlib import Path

SDIST = "demucs-2.0.3.tar.gz"
IMPORT_LINE = "from .utils import capture_init, center_trim"


def _sdist():
    local = os.environ.get("KERASEP_TEST_DEMUCS2_SDIST")
    if local:
        return Path(local)
    folder = Path(tempfile.mkdtemp(prefix="demucs2-"))
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:all:", "-q",
           "--disable-pip-version-check", "-d", str(folder), "demucs==2.0.3"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    path = folder / SDIST
    if proc.returncode != 0 or not path.is_file():
        raise RuntimeError(f"`{' '.join(cmd[2:])}` failed: {proc.stderr[-500:]}")
    return path


def load_v2_module():
    """The ``demucs.model`` module of demucs 2.0.3 (registered in ``sys.modules``)."""
    if "demucs.model" in sys.modules:
        return sys.modules["demucs.model"]
    import demucs.states
    import demucs.utils

    with tarfile.open(_sdist()) as tar:
        source = tar.extractfile("demucs-2.0.3/demucs/model.py").read().decode()
    if IMPORT_LINE not in source:
        raise RuntimeError("unexpected demucs 2.0.3 model.py: its helper import line changed")
    source = source.replace(
        IMPORT_LINE, "from demucs.states import capture_init\nfrom demucs.utils import center_trim"
    )
    module = types.ModuleType("demucs.model")
    module.__file__ = "demucs-2.0.3/demucs/model.py"
    module.__package__ = "demucs"
    sys.modules["demucs.model"] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


def apply_v2(model, mix):
    """demucs 2's ``apply_model`` without split/shifts: centre-pad to ``valid_length``, run,
    centre-trim to the input length. ``mix``: torch ``(batch, channels, time)``."""
    import torch
    import torch.nn.functional as F
    from demucs.utils import center_trim

    length = mix.shape[-1]
    delta = model.valid_length(length) - length
    padded = F.pad(mix, (delta // 2, delta - delta // 2))
    with torch.no_grad():
        out = model(padded)
    return center_trim(out, length)
