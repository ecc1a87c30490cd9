"""ONNX export of HT-Demucs (the "hybrid" layout, kerasep/export/onnx/hybrid.py) and the TF-free
runner's demucs segments (kerasep/export/runner/segments.py), on tiny configs."""
import collections
import json
from pathlib import Path

import numpy as np
import pytest

from kerasep import export, inference
from kerasep.backend import tf
from kerasep.export import runner
from kerasep.models import ChunkPolicy, Separator
from kerasep.models.htdemucs import HTDemucs

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

SOURCES = ["drums", "bass", "other", "vocals"]
TINY = dict(channels=8, depth=3, nfft=512, dconv_mode=3, t_layers=1, t_heads=2, bottom_channels=8, segment=1.0)


def _tiny(targets=SOURCES, **overrides):
    model = HTDemucs(targets=list(targets), **dict(TINY, **overrides))
    model.build((None, 2, None))
    return model


def _relative(reference, got):
    """``max |got - reference| / max |reference|`` over every stem."""
    assert sorted(got) == sorted(reference)
    scale = max(float(np.max(np.abs(v))) for v in reference.values())
    assert scale > 0
    return max(float(np.max(np.abs(got[t] - reference[t]))) for t in reference) / scale


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    """A tiny 4-source HTDemucs and its ONNX file."""
    model = _tiny()
    path = export.export(model, tmp_path_factory.mktemp("htdemucs_onnx") / "tiny.onnx")
    return model, path


@pytest.mark.slow
def test_hybrid_export_matches_keras(tiny_export, real_mixture):
    """Shorter than the training segment (padded to it inside the graph), one segment exactly,
    and longer than it at lengths that are no multiple of the segment or the hop."""
    model, path = tiny_export
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["waveform"]
    assert [o.name for o in session.get_outputs()] == SOURCES
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["kerasep.family"] == "HTDemucs" and json.loads(meta["kerasep.targets"]) == SOURCES
    assert meta["kerasep.chunk_weighting"] == "triangular"
    assert int(meta["kerasep.chunk_segment"]) == model.training_length == 44100
    assert float(meta["kerasep.chunk_overlap"]) == 0.25
    mix = np.ascontiguousarray(real_mixture.T[None])  # (1, 2, 88200)
    for n in (3001, 30011, 44100, 88200 - 37):
        x = np.ascontiguousarray(mix[:, :, :n])
        reference = {t: np.asarray(v) for t, v in model(x, training=False).items()}
        outs = dict(zip(SOURCES, session.run(None, {"waveform": x})))
        assert all(v.shape == x.shape for v in outs.values())
        assert _relative(reference, outs) <= 1e-4, n
    # a batch of two different excerpts
    x = np.concatenate([mix[:, :, :30011], mix[:, :, 40000:70011]])
    reference = {t: np.asarray(v) for t, v in model(x, training=False).items()}
    assert _relative(reference, dict(zip(SOURCES, session.run(None, {"waveform": x})))) <= 1e-4


@pytest.mark.slow
def test_runner_separates_as_inference(tiny_export, real_mixture):
    """The TF-free runner cuts the song as kerasep.inference does for demucs' triangular segments
    (several segments, a last one cut by the end), so the ONNX path gives the Keras path's stems."""
    model, path = tiny_export
    mix = np.ascontiguousarray(real_mixture[: 88200 - 37])
    session = runner.OnnxSeparator(path)
    assert session.chunk_weighting == "triangular" and session.chunk_segment == 44100
    for chunk_seconds in (None, 0.6):
        ours = runner.separate_array(session, mix, chunk_seconds=chunk_seconds)
        keras_path = inference.separate_array(mix, model, chunk_seconds=chunk_seconds)
        assert _relative(keras_path, ours) <= 1e-4, chunk_seconds
    assert runner.feed_shapes(session, mix.shape[0]) == [(1, 2, 44100)]
    assert runner.feed_shapes(session, 30000) == [(1, 2, 30000)]  # one stride or less: as is


@pytest.mark.slow
def test_hybrid_export_six_sources_short_inputs(tmp_path):
    """A 6-source model without ``use_train_segment`` at lengths so short that demucs' pad1d
    zero-pads before reflecting (the input is no longer than the spectrogram's padding)."""
    targets = SOURCES + ["guitar", "piano"]
    model = _tiny(targets, depth=2, use_train_segment=False, t_cross_first=True)
    path = export.export(model, tmp_path / "six.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == targets
    rng = np.random.default_rng(0)
    for n in (100, 250, 1029, 7001):
        x = (0.1 * rng.standard_normal((1, 2, n))).astype(np.float32)
        reference = {t: np.asarray(v) for t, v in model(x, training=False).items()}
        assert _relative(reference, dict(zip(targets, session.run(None, {"waveform": x})))) <= 1e-4, n


def test_hybrid_spec_shares_the_weights():
    """export_spec's core is the model's own network: same weights, and core + spectrogram pair
    equals ``call``."""
    model = _tiny(depth=2)
    spec = model.export_spec()
    assert spec["kind"] == "hybrid" and spec["n_fft"] == 512 and spec["hop_length"] == 128
    assert spec["pad_to"] == 44100
    core = spec["core"]
    assert {id(w) for w in core.weights} == {id(w) for w in model.weights}
    x = tf.constant(np.random.default_rng(1).standard_normal((1, 2, 44100)).astype(np.float32))
    out = core({"waveform": x, "spectrogram": model.spectrogram(x)})
    assert out["spectrogram"].shape == (1, 8, 256, 345, 2) and out["waveform"].shape == (1, 8, 44100)
    y = model.ispectrogram(out["spectrogram"], tf.constant(44100)) + out["waveform"]
    whole = model(x, training=False)
    for i, t in enumerate(SOURCES):
        np.testing.assert_allclose(np.asarray(y[:, 2 * i: 2 * i + 2]), np.asarray(whole[t]), atol=1e-6)


class TriangularProbe(Separator):
    """Known-answer separator on demucs' triangular segments: each output depends on the whole
    segment it is computed on and on the position inside it, so any change of plan shows."""

    targets = ["a", "b"]
    nb_channels, sample_rate = 2, 8000
    chunking = ChunkPolicy("segment", segment_seconds=0.25, overlap=0.25, weighting="triangular")

    def call(self, x, training=False):
        ramp = tf.cast(tf.range(tf.shape(x)[2]), tf.float32)[None, None, :] / 1000.0
        return {"a": x * tf.reduce_mean(tf.abs(x)) + ramp, "b": x * x}


class NumpyProbe:
    """The same computation as the runner sees a model: numpy in, numpy out, metadata fields."""

    targets, nb_channels, sample_rate = ["a", "b"], 2, 8000
    chunk_context, chunk_alignment = None, 1
    chunk_weighting, chunk_segment, chunk_overlap = "triangular", 2000, 0.25

    def __call__(self, x):
        ramp = np.arange(x.shape[2], dtype=np.float32)[None, None, :] / 1000.0
        return {"a": x * np.mean(np.abs(x)) + ramp, "b": x * x}


@pytest.mark.parametrize("n", [1200, 1500, 1501, 4321, 9000])
def test_runner_segment_plan_is_inference_plan(n):
    """runner.iter_separate (segments.iter_triangular) against kerasep.inference's
    _separate_triangular: one stride or less, exactly one stride, several segments, a short last one."""
    mix = np.random.default_rng(n).standard_normal((n, 2)).astype(np.float32)
    np.testing.assert_array_equal(runner.triangular_weights(2000), inference.triangular_weights(2000))
    for chunk_seconds in (None, 0.1):
        ours = runner.separate_array(NumpyProbe(), mix, chunk_seconds=chunk_seconds)
        theirs = inference.separate_array(mix, TriangularProbe(), chunk_seconds=chunk_seconds)
        for t in ("a", "b"):
            np.testing.assert_allclose(ours[t], theirs[t], rtol=1e-5, atol=1e-5)
    blocks = list(runner.iter_separate(NumpyProbe(), mix))
    assert [s for s, _ in blocks] == list(np.cumsum([0] + [b["a"].shape[0] for _, b in blocks[:-1]]))
    assert sum(b["a"].shape[0] for _, b in blocks) == n


def test_runner_segment_errors():
    probe = NumpyProbe()
    with pytest.raises(runner.RunnerError, match="chunk_seconds.*finite number of seconds > 0"):
        list(runner.iter_separate(probe, np.zeros((3000, 2), np.float32), chunk_seconds=0))


def test_blocked_means_are_accurate():
    """onnxruntime's ReduceMean over millions of float32 values drifts (5e-4 relative on a 7.8 s
    HTDemucs spectrogram); the hybrid layout's rewrite (partial sums of MEAN_BLOCK values) does
    not. Rank-2 axis-1 means are rewritten, others left alone; any length (padding)."""
    from onnx import TensorProto, helper

    from kerasep.export.onnx.hybrid import _blocked_means

    nodes = [helper.make_node("Mul", ["x", "x"], ["x2"]),
             helper.make_node("ReduceMean", ["x2"], ["m2"], axes=[1], keepdims=0),
             helper.make_node("ReduceMean", ["x"], ["m0"], axes=[0], keepdims=0)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "n"])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("m2", "m0")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = (0.07 * np.random.default_rng(0).standard_normal((2, 2_750_003))).astype(np.float32)
    exact = np.mean(x.astype(np.float64) ** 2, axis=1)

    def run(model):
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {"x": x})

    plain, _ = run(proto)
    blocked, m0 = run(_blocked_means(proto))
    assert [n.op_type for n in proto.graph.node].count("ReduceMean") == 1  # the axis-0 one stays
    assert np.max(np.abs(plain / exact - 1)) > 1e-5  # the drift this guards against
    assert np.max(np.abs(blocked / exact - 1)) < 1e-6
    np.testing.assert_allclose(m0, x.mean(axis=0), rtol=1e-5, atol=1e-7)


def _op_types(path):
    import onnx

    return collections.Counter((n.domain or "", n.op_type) for n in onnx.load(str(path)).graph.node)


def _layers(model, cls):
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True) if isinstance(layer, cls)]


@pytest.mark.slow
def test_hybrid_export_is_fused(tiny_export):
    """kerasep/export/onnx/fusions.py on the tiny model's file (whose parity the tests above
    check): every one-group GroupNorm written as ReduceSumSquare statistics, every LayerNorm as
    LayerNormalization, every GELU as com.microsoft:Gelu (no Erf left), every attention scale on
    the queries (no scalar Mul before a Softmax), 1 x 1 Convs as MatMuls, Conv1D biases inside
    the Conv."""
    import onnx

    from kerasep.backend import keras
    from kerasep.layers.htdemucs_blocks import GroupNorm

    model, path = tiny_export
    ops = _op_types(path)
    group_norms = [n for n in _layers(model, GroupNorm) if n.groups == 1]
    layer_norms = [n for n in _layers(model, keras.layers.LayerNormalization) if not isinstance(n, GroupNorm)]
    assert len(group_norms) > 0 and ops[("", "ReduceSumSquare")] == len(group_norms)
    assert len(layer_norms) > 0 and ops[("", "LayerNormalization")] == len(layer_norms)
    assert ops[("com.microsoft", "Gelu")] > 0 and ops[("", "Erf")] == 0
    graph = onnx.load(str(path)).graph
    producer = {o: n for n in graph.node for o in n.output}
    softmax_inputs = [producer[n.input[0]].op_type for n in graph.node if n.op_type == "Softmax"]
    assert softmax_inputs and "Mul" not in softmax_inputs
    # 1 x 1 convolutions between layout transposes are MatMuls on the channels-last tensors (on
    # a 1-channel input tf2onnx writes that transpose as a Reshape: such ones stay); every Conv
    # carries its bias
    convs = [n for n in graph.node if n.op_type == "Conv"]
    pointwise = [n for n in convs if [list(a.ints) for a in n.attribute if a.name == "kernel_shape"] == [[1, 1]]]
    assert convs and not [n for n in pointwise if producer[n.input[0]].op_type == "Transpose"]
    inits = {i.name for i in graph.initializer}
    for n in graph.node:  # no bias added after a Conv1D's Squeeze
        if n.op_type == "Add" and n.input[1] in inits and n.input[0] in producer:
            squeeze = producer[n.input[0]]
            assert not (squeeze.op_type == "Squeeze" and producer.get(squeeze.input[0]) in convs), n.name


def _one_layer_core(layer, channels):
    """tf2onnx of ``layer`` alone on ``(batch, time, channels)``: the proto and its I/O names."""
    import tf2onnx

    from kerasep.export.onnx.bridge import _lean_tf2onnx

    signature = [tf.TensorSpec([None, None, channels], tf.float32, name="x")]

    @tf.function(input_signature=signature)
    def fn(x):
        return tf.identity(layer(x), name="y")

    with _lean_tf2onnx():
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=signature, opset=17)
    return proto, proto.graph.input[0].name, proto.graph.output[0].name


@pytest.mark.slow
def test_fused_group_norm_is_accurate_on_long_rows():
    """The fused one-group GroupNorm (fusions._fuse_group_norms) over the 8.26 M values of one
    row, the size of the released model's first time-branch DConv norm (85995 steps x 96
    channels): within 2e-6 of float64, where onnxruntime's own LayerNormalization (and
    InstanceNormalization) over that row is off by about 1e-3 (its variance accumulates in
    float32); and equal to the Keras layer."""
    from onnx import TensorProto, helper

    from kerasep.export.onnx.fusions import fuse_hybrid_core
    from kerasep.layers.htdemucs_blocks import GroupNorm

    channels = 96
    layer = GroupNorm(1, epsilon=1e-5)
    layer.build((None, None, channels))
    rng = np.random.default_rng(3)
    layer.set_weights([rng.uniform(0.5, 1.5, channels).astype(np.float32),
                       rng.uniform(-0.2, 0.2, channels).astype(np.float32)])
    proto, x_name, y_name = _one_layer_core(layer, channels)
    proto, counts = fuse_hybrid_core(proto)
    assert counts["GroupNorm"] == 1
    assert [n.op_type for n in proto.graph.node].count("ReduceMean") == 0
    x = (0.05 + 0.3 * rng.standard_normal((1, 85995, channels))).astype(np.float32)
    gamma, beta = (w.astype(np.float64) for w in layer.get_weights())
    xd = x.astype(np.float64)
    exact = (xd - xd.mean()) / np.sqrt(xd.var() + 1e-5) * gamma + beta
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    fused = session.run(None, {x_name: x})[0]
    assert np.max(np.abs(fused - exact)) / np.max(np.abs(exact)) < 2e-6
    keras_out = np.asarray(layer(x))
    assert np.max(np.abs(fused - keras_out)) / np.max(np.abs(keras_out)) < 2e-6

    # what the fusion avoids: onnxruntime's LayerNormalization over the same row
    n = x.size
    ln = helper.make_model(helper.make_graph(
        [helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=1, epsilon=1e-5)], "ln",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
        initializer=[helper.make_tensor("g", TensorProto.FLOAT, [n], np.ones(n, np.float32)),
                     helper.make_tensor("b", TensorProto.FLOAT, [n], np.zeros(n, np.float32))]),
        opset_imports=[helper.make_opsetid("", 17)])
    plain = ort.InferenceSession(ln.SerializeToString(), providers=["CPUExecutionProvider"])
    normalised = (xd - xd.mean()) / np.sqrt(xd.var() + 1e-5)
    drift = np.max(np.abs(plain.run(None, {"x": x.reshape(1, n)})[0].reshape(x.shape) - normalised))
    assert drift / np.max(np.abs(normalised)) > 1e-4


@pytest.mark.slow
def test_released_size_export_matches_keras(tmp_path):
    """The released HT-Demucs layout (955717e8: 48 channels, bottom 512, 5 Transformer layers of
    8 heads, 7.8 s segment; Keras-initialised weights) exported with every fusion, on one whole
    segment of the real excerpt (tests/data/audio_example.mp3 looped): the spectrogram
    normalisation over 2.75 M values, time-branch GroupNorms over 8.26 M. Within 1e-4 of Keras."""
    from kerasep import audio

    model = HTDemucs(targets=SOURCES, dconv_mode=3, bottom_channels=512, segment=7.8)
    model.build((None, 2, None))
    path = export.export(model, tmp_path / "released.onnx")
    ops = _op_types(path)
    assert ops[("", "LayerNormalization")] > 0 and ops[("com.microsoft", "Gelu")] > 0 and ops[("", "Erf")] == 0
    mix = audio.load(Path(__file__).parents[1] / "data" / "audio_example.mp3", sample_rate=44100, nb_channels=2)
    n = model.training_length
    x = np.ascontiguousarray(np.tile(mix, (-(-n // mix.shape[0]), 1))[:n].T[None])
    reference = {t: np.asarray(v) for t, v in model(x, training=False).items()}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert _relative(reference, dict(zip(SOURCES, session.run(None, {"waveform": x})))) <= 1e-4


@pytest.mark.slow
def test_hybrid_int8_export_is_not_fused(tmp_path, real_mixture):
    """The int8 export quantises the unfused core (onnxruntime.quantization's type inference
    stops at com.microsoft:Gelu): it loads, runs, and stays near the Keras model."""
    model = _tiny()
    path = export.export(model, tmp_path / "tiny_int8.onnx", precision="int8")
    ops = _op_types(path)
    assert ops[("com.microsoft", "Gelu")] == 0 and ops[("", "Erf")] > 0
    x = np.ascontiguousarray(real_mixture.T[None, :, :44100])
    reference = {t: np.asarray(v) for t, v in model(x, training=False).items()}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert _relative(reference, dict(zip(SOURCES, session.run(None, {"waveform": x})))) < 0.05
