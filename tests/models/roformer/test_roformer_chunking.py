"""The band-split RoFormers' own chunking (``ChunkPolicy(weighting="faded")``, MSST's ``demix``):
the shared plan of :mod:`kerasep.export.runner.chunks` against a transcription of upstream's
algorithm (``tests/reference/msst_demix.py``) driving a toy torch model, on random inputs of
lengths around every boundary of the plan."""
import numpy as np
import pytest

from kerasep.export.runner.chunks import faded_plan, faded_window, iter_faded
from kerasep.models.separator import ChunkPolicy

torch = pytest.importorskip("torch")
from reference import msst_demix  # noqa: E402  (needs torch)


def _torch_toy(part):
    """(1, C, L) → (1, 2, C, L): a gain ramp over the segment (so each sample's weight counts)
    and a square."""
    ramp = torch.linspace(0.5, 1.5, part.shape[-1])
    return torch.stack([part * ramp, part ** 2], dim=1)


def _numpy_toy(x):
    ramp = np.linspace(0.5, 1.5, x.shape[-1], dtype=np.float32)
    return {"a": x * ramp, "b": x ** 2}


def _ours(mix, segment, num_overlap):
    out = {t: np.full(mix.shape, np.nan, np.float32) for t in ("a", "b")}
    end = 0
    for start, blocks in iter_faded(_numpy_toy, mix, segment, num_overlap):
        assert start == end  # blocks tile the input in order
        for t, v in blocks.items():
            out[t][start:start + v.shape[0]] = v
        end = start + blocks["a"].shape[0]
    assert end == mix.shape[0]
    return out


@pytest.mark.parametrize("segment,num_overlap", [(100, 2), (100, 4), (64, 3), (100, 1), (10, 2)])
@pytest.mark.parametrize("n", [51, 99, 100, 101, 149, 150, 151, 250, 999, 1234])
def test_faded_chunking_matches_msst_demix(segment, num_overlap, n):
    rng = np.random.default_rng(n * 7 + segment + num_overlap)
    mix = rng.standard_normal((n, 2)).astype(np.float32)
    out = _ours(mix, segment, num_overlap)
    if n <= segment // num_overlap:  # one segment: the model on the input as it is (not padded)
        expected = np.stack([_numpy_toy(mix.T[None])[t][0] for t in ("a", "b")])
    else:
        expected = msst_demix.demix(_torch_toy, mix.T, segment, num_overlap)
    for i, t in enumerate(("a", "b")):
        np.testing.assert_allclose(out[t].T, expected[i], rtol=0, atol=2e-6)


def test_faded_plan_and_window():
    # 8 s chunks, num_overlap 2 on a 20 s song: padded by 4 s each side, segments every 4 s
    pad, chunks = faded_plan(20 * 44100, 352800, 2)
    assert pad == 176400
    assert [c[0] for c in chunks] == [k * 176400 for k in range(6)]
    assert chunks[0] == (0, 352800, False, True) and all(c[1:] == (352800, True, True) for c in chunks[1:])
    # MSST's 7th segment (at 6 * 176400, the one not faded out) touches only the padding: not run
    pad, chunks = faded_plan(5 * 44100, 352800, 4)  # step 2 s, border 6 s: too short to pad
    assert pad == 0 and chunks == [(0, 220500, False, True), (88200, 132300, True, True),
                                   (176400, 44100, True, False)]
    w = faded_window(100)
    assert w[0] == 0 and w[9] == 1 and w[10] == 1 and w[89] == 1 and w[90] == 1 and w[99] == 0
    np.testing.assert_allclose(w[:10], np.linspace(0, 1, 10))
    assert faded_window(100, fade_in=False)[0] == 1 and faded_window(100, fade_out=False)[-1] == 1
    with pytest.raises(ValueError, match="segment // num_overlap >= 1"):
        faded_plan(1000, 3, 4)


def test_faded_policy_validation():
    policy = ChunkPolicy("segment", segment_seconds=8.0, overlap=0.75, weighting="faded", num_overlap=4)
    assert policy.chunk_seconds() == 8.0 and not policy.is_exact
    with pytest.raises(ValueError, match="integer num_overlap >= 1"):
        ChunkPolicy("segment", segment_seconds=8.0, overlap=0.5, weighting="faded")
    with pytest.raises(ValueError, match="'segment' only"):
        ChunkPolicy("crossfade", weighting="faded", num_overlap=2)


class _OnnxLike:
    """What the TF-free runner reads of an ONNX export declaring MSST's faded segments."""

    sample_rate, nb_channels, targets, path = 100, 2, ["a", "b"], "model.onnx"
    chunk_weighting, chunk_segment, chunk_overlap = "faded", 100, 0.75  # num_overlap 4

    def __call__(self, x):
        return _numpy_toy(x)


def test_runner_cuts_faded_exports_the_same_way():
    from kerasep.export import runner

    mix = np.random.default_rng(3).standard_normal((1234, 2)).astype(np.float32)
    out = runner.separate_array(_OnnxLike(), mix)
    expected = msst_demix.demix(_torch_toy, mix.T, 100, 4)
    for i, t in enumerate(("a", "b")):
        np.testing.assert_allclose(out[t].T, expected[i], rtol=0, atol=2e-6)
    assert runner.feed_shapes(_OnnxLike(), 1234) == [(1, 2, 100)] and runner.feed_shapes(_OnnxLike(), 25) == [(1, 2, 25)]
