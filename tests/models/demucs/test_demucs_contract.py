"""The Demucs family fulfils the Separator contract (tests/testing.py:run_separator_test)."""
from testing import run_separator_test

from kerasep.models import Demucs


def test_demucs_contract(real_mixture, tmp_path):
    model = Demucs(channels=4, depth=4, segment_seconds=1.0)
    model.build((None, 2, None))
    assert model.chunking.kind == "segment" and model.chunking.overlap == 0.25
    run_separator_test(model, real_mixture, tmp_path, chunk_seconds=0.5, family="demucs", graph=True)
