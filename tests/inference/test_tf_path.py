"""The Keras (TF) inference path: one trace per model whatever the song's length, the last
block fed at the fixed block shape, XLA as an option with the same output."""
import numpy as np
import pytest

from kerasep import inference
from testing import tiny_unet


def _song(real_mixture, seconds, rate=44100):
    n = int(seconds * rate)
    return np.ascontiguousarray(np.tile(real_mixture, (-(-n // real_mixture.shape[0]), 1))[:n])


def test_patch_grid_traces_once_and_pads_the_last_block(real_mixture, monkeypatch):
    model = tiny_unet()
    policy = model.chunking
    block = policy.patch_frames * policy.hop_length  # samples per patch
    shapes = []
    fn = inference._stream_fn(model, False)
    monkeypatch.setattr(inference, "_stream_fn", lambda m, jit=False: (lambda x: shapes.append(x.shape) or fn(x)))
    # 5 patches and a bit: blocks of 2 patches, the last one partial
    mix = _song(real_mixture, (5 * block + 1234) / 44100)
    out = inference.separate_array(mix, model, chunk_seconds=2 * block / 44100)
    assert len(shapes) == 3 and len(set(shapes)) == 1, shapes  # the last block padded to the same shape
    whole = {t: v.numpy()[0].T for t, v in model(np.ascontiguousarray(mix.T)[None], training=False).items()}
    assert max(float(np.max(np.abs(out[t] - whole[t]))) for t in model.stems) <= 1e-5


def test_one_trace_per_model_across_lengths(real_mixture):
    model = tiny_unet()
    before = inference.TRACES["stream_block"]
    for seconds in (0.3, 1.1, 2.0, 3.7):
        inference.separate_array(_song(real_mixture, seconds), model, chunk_seconds=1.0)
    assert inference.TRACES["stream_block"] - before == 1
    # chunked whole-model calls (exact / crossfade / segment policies) trace once too
    from testing import ScaledSeparator

    scaled = ScaledSeparator()
    before = inference.TRACES["call"]
    for seconds in (0.5, 1.3, 2.0):
        inference.separate_array(_song(real_mixture, seconds), scaled, chunk_seconds=0.4)
    assert inference.TRACES["call"] - before == 1


@pytest.mark.slow
def test_jit_compile_gives_the_same_stems(real_mixture):
    model = tiny_unet()
    mix = _song(real_mixture, 2.0)
    plain = inference.separate_array(mix, model, chunk_seconds=1.0)
    xla = inference.separate_array(mix, model, chunk_seconds=1.0, jit_compile=True)
    assert max(float(np.max(np.abs(plain[t] - xla[t]))) for t in model.stems) <= 1e-5
