"""The ONNX exporter's framing and overlap-add (kerasep/export/onnx/dsp.py) for any hop, including
hops that do not divide ``n_fft`` (the band-split RoFormers' 2048 / 441), against
:class:`kerasep.layers.STFT` / :class:`kerasep.layers.ISTFT` on the real MUSDB18 excerpt."""
import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

# (n_fft, hop_length, padding, pad_mode): hop dividing n_fft (the U-Net / Open-Unmix case), and not
FRAMINGS = [
    (256, 64, "center", "reflect"),
    (256, 96, "center", "reflect"),
    (2048, 441, "center", "reflect"),
    (256, 100, "spleeter", "constant"),
    (128, 50, "valid", "constant"),
    (120, 70, "center", "constant"),
]


def _session(g, inputs, outputs):
    """An onnxruntime session of the graph written in ``g``: ``inputs`` and ``outputs`` {name:
    rank} (float32, dynamic dims)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from kerasep.export.onnx import OPSET

    graph = helper.make_graph(
        g.nodes, "framing",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [f"{n}_{i}" for i in range(rank)])
         for n, rank in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [f"{n}_{i}" for i in range(rank)])
         for n, rank in outputs.items()],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _mix(real_mixture, n_fft):
    # an odd length, not a multiple of any hop: (1, 2, nb_timesteps)
    return np.ascontiguousarray(real_mixture[: 22050 + 37].T[None])


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("n_fft,hop,padding,pad_mode", FRAMINGS)
def test_frames_and_rfft_match_stft_layer(real_mixture, n_fft, hop, padding, pad_mode):
    from kerasep.export.onnx.dsp import _frames, _hann, _rfft
    from kerasep.export.onnx.graph import _Graph
    from kerasep.layers import STFT

    x = _mix(real_mixture, n_fft)
    spec = dict(n_fft=n_fft, hop_length=hop, padding=padding, pad_mode=pad_mode)
    g = _Graph()
    frames, nb_frames = _frames(g, "waveform", spec)
    real, imag = _rfft(g, frames, n_fft, n_fft // 2 + 1)
    for src, out in ((frames, "frames"), (real, "real"), (imag, "imag")):
        g.op("Identity", src, out=out)
    g.op("Identity", nb_frames, out="nb_frames_i64")
    g.op("Cast", "nb_frames_i64", to=1, out="nb_frames")
    got = dict(zip(["frames", "real", "imag", "nb_frames"],
                   _session(g, {"waveform": 3}, {"frames": 4, "real": 4, "imag": 4, "nb_frames": 1}).run(
                       ["frames", "real", "imag", "nb_frames"], {"waveform": x})))

    layer = STFT(n_fft, hop, padding=padding, pad_mode=pad_mode)
    expected = np.asarray(layer(x))  # (1, 2, nb_frames, n_fft // 2 + 1, 2)
    assert int(got["nb_frames"][0]) == expected.shape[2]
    assert got["real"].shape == expected.shape[:-1]
    assert _rel(got["real"], expected[..., 0]) <= 1e-5
    assert _rel(got["imag"], expected[..., 1]) <= 1e-5
    # the frames themselves: padded samples [f * hop, f * hop + n_fft) times the window
    padded = np.asarray(layer._pad(x))
    if padding == "spleeter":
        padded = np.pad(padded, [(0, 0), (0, 0), (0, expected.shape[2] * hop + n_fft)])
    f = expected.shape[2] - 1
    np.testing.assert_allclose(got["frames"][:, :, f], padded[:, :, f * hop: f * hop + n_fft] * _hann(n_fft),
                               atol=1e-6)


@pytest.mark.parametrize("n_fft,hop,padding,pad_mode", FRAMINGS)
def test_overlap_add_matches_istft_layer(real_mixture, n_fft, hop, padding, pad_mode):
    """Inverse FFT + windowed overlap-add ÷ envelope of a (modified) real STFT equals
    :class:`kerasep.layers.ISTFT`, and the STFT → ISTFT round trip gives the input back."""
    from kerasep.export.onnx.dsp import _irfft, _overlap_add
    from kerasep.export.onnx.graph import _Graph
    from kerasep.layers import ISTFT, STFT

    x = _mix(real_mixture, n_fft)
    spec = dict(n_fft=n_fft, hop_length=hop, padding=padding, pad_mode=pad_mode)
    stft = np.asarray(STFT(n_fft, hop, padding=padding, pad_mode=pad_mode)(x))
    nb_bins = stft.shape[3]
    # a smooth per-bin gain, so the result is not only the identity round trip
    modified = stft * (0.5 + 0.5 * np.cos(np.linspace(0.0, 3.0, nb_bins)))[:, None].astype(np.float32)
    g = _Graph()
    nb_frames = g.dim("real", 2)
    out = _overlap_add(g, _irfft(g, "real", "imag", n_fft, nb_bins), nb_frames, g.dim("waveform", 2), spec)
    g.op("Identity", out, out="signal")
    session = _session(g, {"waveform": 3, "real": 4, "imag": 4}, {"signal": 3})
    istft = ISTFT(n_fft, hop, padding=padding)
    # "valid" framing: the first and last samples lie under window tails only (an envelope near
    # 0 divides float32 rounding up in both implementations); compared where frames cover well
    inner = slice(n_fft, x.shape[2] - 2 * n_fft) if padding == "valid" else slice(None)
    results = []
    for s in (stft, modified):
        got, = session.run(["signal"], {"waveform": x, "real": np.ascontiguousarray(s[..., 0]),
                                        "imag": np.ascontiguousarray(s[..., 1])})
        expected = np.asarray(istft(s, length=x))
        assert got.shape == x.shape == expected.shape
        assert _rel(got[..., inner], expected[..., inner]) <= 1e-5
        results.append(got)
    if padding != "valid":  # every sample is covered by frames: the round trip gives the input back
        assert _rel(results[0], x) <= 1e-5


def test_divisible_hop_graph_unchanged():
    """When hop divides n_fft the framing is ``n_fft / hop`` block slices, concatenated, with no
    cut (and the overlap-add no zero padding of the frames): the U-Net / Open-Unmix graphs."""
    from kerasep.export.onnx.dsp import _frames, _windowed_ola
    from kerasep.export.onnx.graph import _Graph

    g = _Graph()
    frames, _ = _frames(g, "waveform", dict(n_fft=256, hop_length=64, padding="center", pad_mode="reflect"))
    concat = [n for n in g.nodes if n.op_type == "Concat" and n.output[0] in
              {m.input[0] for m in g.nodes if m.op_type == "Mul"}]
    assert len(concat) == 1 and len(concat[0].input) == 4
    g2 = _Graph()
    _windowed_ola(g2, "frames", 256, 64)
    assert [n.op_type for n in g2.nodes].count("Pad") == 4  # one per shifted block column, no frame pad
    g3 = _Graph()
    _windowed_ola(g3, "frames", 2048, 441)
    assert [n.op_type for n in g3.nodes].count("Pad") == 5 + 1  # ceil(2048 / 441) columns + the frame pad


def test_unet_export_with_hop_not_dividing_n_fft(real_mixture, tmp_path):
    """The Spleeter-framed patch stream (the U-Net's export path) at a hop that does not divide
    n_fft: onnxruntime through the TF-free runner equals the Keras model."""
    pytest.importorskip("tf2onnx")
    from testing import tiny_unet

    from kerasep import export
    from kerasep.backend import keras
    from kerasep.export import runner

    keras.utils.set_random_seed(0)
    model = tiny_unet(hop_length=96)
    x = np.ascontiguousarray(real_mixture[: 3 * 64 * 96 + 37].T[None])
    expected = {k: np.asarray(v) for k, v in model(x, training=False).items()}
    session = runner.OnnxSeparator(export.export(model, tmp_path / "unet_hop96.onnx"))
    got = session(x)
    peak = max(float(np.max(np.abs(v))) for v in expected.values())
    assert max(float(np.max(np.abs(got[k] - expected[k]))) for k in expected) / peak <= 1e-4


@pytest.mark.parametrize("n_fft,hop", [(2048, 441), (256, 64)])
def test_float64_stft(real_mixture, n_fft, hop):
    """``spec["stft_dtype"] = "float64"``: framing and real FFT in float64, equal to
    :class:`kerasep.layers.STFT` in float64 far below float32 rounding."""
    from kerasep.export.onnx.dsp import _frames, _rfft
    from kerasep.export.onnx.graph import _Graph
    from kerasep.layers import STFT

    x = _mix(real_mixture, n_fft)
    spec = dict(n_fft=n_fft, hop_length=hop, padding="center", pad_mode="reflect", stft_dtype="float64")
    g = _Graph()
    frames, _ = _frames(g, "waveform", spec)
    real, imag = _rfft(g, frames, n_fft, n_fft // 2 + 1, dtype=np.float64)
    g.op("Cast", real, to=1, out="real32")  # float32 outputs for _session; the float64 ones below
    g.op("Identity", real, out="real")
    g.op("Identity", imag, out="imag")
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from kerasep.export.onnx import OPSET

    graph = helper.make_graph(
        g.nodes, "framing64", [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["b", "c", "n"])],
        [helper.make_tensor_value_info(n, t, ["b", "c", "f", "k"])
         for n, t in (("real", TensorProto.DOUBLE), ("imag", TensorProto.DOUBLE), ("real32", TensorProto.FLOAT))],
        initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    got_re, got_im = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        ["real", "imag"], {"waveform": x})
    assert got_re.dtype == np.float64
    expected = np.asarray(STFT(n_fft, hop, padding="center", pad_mode="reflect", dtype="float64")(x.astype(np.float64)))
    assert _rel(got_re, expected[..., 0]) <= 1e-12
    assert _rel(got_im, expected[..., 1]) <= 1e-12
