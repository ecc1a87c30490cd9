"""The Open-Unmix family fulfils the Separator contract (tests/testing.py:run_separator_test)."""
from testing import run_separator_test

from kerasep.models import OpenUnmixSeparator

TINY = dict(targets=["vocals", "drums"], n_fft=256, hop_length=64, hidden_size=16, nb_layers=2,
            max_bin=100, wiener_win_len=100)


def test_openunmix_contract(real_mixture, tmp_path):
    model = OpenUnmixSeparator(**TINY)
    model.build((None, 2, None))
    assert model.chunking.kind == "crossfade" and model.chunking.alignment == 100 * 64
    run_separator_test(model, real_mixture, tmp_path, chunk_seconds=0.5, family="openunmix", graph=True)


def test_openunmix_residual_contract(real_mixture, tmp_path):
    model = OpenUnmixSeparator(**dict(TINY, targets=["vocals"]), residual=True)
    model.build((None, 2, None))
    assert model.stems == ["vocals", "residual"]
    run_separator_test(model, real_mixture[:44100], tmp_path, chunk_seconds=0.3, exports=("onnx",), graph=True)
