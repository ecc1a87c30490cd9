"""Test-side access to the ``openunmix`` package (PyTorch reference of Open-Unmix).

``openunmix`` is installed without its dependencies (``pip install --no-deps openunmix``): its
``torchaudio`` requirement pulls a build that does not load beside the pinned torch. ``import
openunmix`` needs the name ``torchaudio`` at import time, but ``OpenUnmix``, ``Separator`` and
``filtering`` never call it, so :func:`import_openunmix` registers an empty stand-in module when
the real one cannot be imported. The stand-in is test-only and never touches kerasep.
"""
import sys
import types

import numpy as np


def import_openunmix():
    """``(openunmix.model, openunmix.filtering)``, importable without a working torchaudio."""
    import pytest

    pytest.importorskip("torch")
    if "torchaudio" not in sys.modules:
        try:
            import torchaudio  # noqa: F401
        except Exception:  # absent, or present but failing to load its C++ library
            sys.modules["torchaudio"] = types.ModuleType("torchaudio")
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
