"""Test-side access to the ``openunmix`` package (PyTorch reference of Open-Unmix).

``openunmix`` cannot be installed with its dependencies: its ``torchaudio`` requirement pulls a
build that does not load beside the pinned torch. So it is not in the ``test`` extra; instead
:func:`import_openunmix` uses an installed copy (``pip install --no-deps openunmix==1.3.0``) when
there is one, else fetches the pure-Python wheel with ``pip download --no-deps`` into
``$KERASEP_HOME/test-packages`` (``KERASEP_TEST_OPENUNMIX_WHEEL`` may name a local copy),
checks its sha256 and imports it from the wheel (zip import, nothing installed).

``import openunmix`` needs the name ``torchaudio`` at import time, but ``OpenUnmix``, ``Separator``
and ``filtering`` never call it, so an empty stand-in module is registered when the real one
cannot be imported. The stand-in is test-only and never touches kerasep.
"""
import hashlib
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

WHEEL = "openunmix-1.3.0-py3-none-any.whl"
WHEEL_SHA256 = "e893ae22c5b8001a6107022499c2587b70d5c2e4777cc7c9ed6272b68a69534e"


def _wheel_path():
    """The verified openunmix 1.3.0 wheel: a local copy, the cache, or ``pip download``."""
    local = os.environ.get("KERASEP_TEST_OPENUNMIX_WHEEL")
    home = Path(os.environ.get("KERASEP_HOME", Path.home() / ".cache" / "kerasep")).expanduser()
    cached = home / "test-packages" / WHEEL
    for path in ([Path(local)] if local else []) + [cached]:
        if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == WHEEL_SHA256:
            return path
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cached.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
               "--disable-pip-version-check", "-d", tmp, "openunmix==1.3.0"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / WHEEL
        if proc.returncode != 0 or not got.is_file():
            raise RuntimeError(f"`pip download openunmix==1.3.0` failed: {proc.stderr.strip()[-500:]}")
        digest = hashlib.sha256(got.read_bytes()).hexdigest()
        if digest != WHEEL_SHA256:
            raise RuntimeError(f"{WHEEL}: sha256 expected {WHEEL_SHA256} but got {digest}")
        os.replace(got, cached)
    return cached


def import_openunmix():
    """``(openunmix.model, openunmix.filtering)``, importable without a working torchaudio."""
    import pytest

    pytest.importorskip("torch")
    if "torchaudio" not in sys.modules:
        try:
            import torchaudio  # noqa: F401
        except Exception:  # absent, or present but failing to load its C++ library
            sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    try:
        import openunmix  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(_wheel_path()))  # pure-Python wheel: importable as a zip
    from openunmix import filtering, model

    return model, filtering


def random_openunmix(seed, nb_bins, nb_channels, hidden_size, nb_layers=3, max_bin=None,
                     unidirectional=False):
    """An ``openunmix.model.OpenUnmix`` in eval mode whose every parameter and BN statistic is
    random (non-trivial: scales around 1, means around 0), so parity checks exercise them all."""
    import torch

    model, _ = import_openunmix()
    gen = torch.Generator().manual_seed(seed)
    net = model.OpenUnmix(nb_bins=nb_bins, nb_channels=nb_channels, hidden_size=hidden_size,
                          nb_layers=nb_layers, max_bin=max_bin, unidirectional=unidirectional)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.dim() > 1:
                bound = 1.0 / np.sqrt(p.shape[1])
                p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) * bound * 1.5)
            elif name.startswith("lstm"):
                p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) * 0.3)
            elif name in ("input_mean", "output_mean") or name.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
            else:  # scales, BN gammas
                p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
        for bn in (net.bn1, net.bn2, net.bn3):
            bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=gen) * 0.1)
            bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=gen) + 0.5)
    return net.eval()
