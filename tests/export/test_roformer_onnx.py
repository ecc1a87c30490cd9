"""ONNX and SavedModel exports of the band-split RoFormers at their released STFT (``stft_n_fft``
2048, ``stft_hop_length`` 441: a hop that does not divide n_fft, centred reflect-padded frames),
tiny networks, against the Keras model on the real MUSDB18 excerpt at an odd length."""
import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

# the released STFT; a tiny network (dim 16, one axial layer)
TINY_RELEASED_STFT = dict(dim=16, depth=1, time_transformer_depth=1, freq_transformer_depth=1, dim_head=8,
                          heads=2, stft_n_fft=2048, stft_hop_length=441, stft_win_length=2048,
                          mask_estimator_depth=1, dim_freqs_in=1025)
# uneven BS bands summing to 1025 bins
BS_BANDS = (8, 8, 16, 32, 64, 128, 256, 513)


def _model(family):
    from kerasep.backend import keras
    from kerasep.models.roformer import BSRoformer, MelBandRoformer

    keras.utils.set_random_seed(0)
    if family == "bs":
        model = BSRoformer(targets=["vocals", "other"], freqs_per_bands=BS_BANDS, **TINY_RELEASED_STFT)
    elif family == "mel":
        model = MelBandRoformer(targets=["vocals"], num_bands=8, **TINY_RELEASED_STFT)
    else:  # a single-stem release file as zoo.load reads it: the target and MSST's instrumental residual
        model = BSRoformer(targets=["vocals"], freqs_per_bands=BS_BANDS, residual="instrumental",
                           **TINY_RELEASED_STFT)
    model.build((None, 2, None))
    return model


def _rel(out, reference):
    """max |out - reference| over all stems, relative to the reference's peak."""
    assert sorted(out) == sorted(reference)
    peak = max(float(np.max(np.abs(v))) for v in reference.values())
    return max(float(np.max(np.abs(np.asarray(out[k]) - reference[k]))) for k in reference) / peak


@pytest.mark.slow  # ~20 s each on 2 busy cores (two exports)
@pytest.mark.parametrize("family", ["bs", "mel", "bs-residual"])
def test_roformer_exports_at_released_stft(real_mixture, tmp_path, family):
    import onnxruntime as ort

    from kerasep import export
    from kerasep.backend import tf
    from kerasep.export import runner
    from kerasep.export.saved_model import load_saved_model

    model = _model(family)
    assert model.stft_n_fft % model.stft_hop_length  # the case this file is about
    # 1 s of the real mixture plus an odd tail: not a multiple of the hop
    x = np.ascontiguousarray(real_mixture[: 44100 + 37].T[None])  # (1, 2, 44137)
    reference = {k: np.asarray(v) for k, v in model(x, training=False).items()}
    for y in reference.values():
        assert y.shape == x.shape and np.isfinite(y).all() and np.max(np.abs(y)) > 1e-3

    onnx_path = export.export(model, tmp_path / f"{family}_roformer.onnx")
    ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])  # loads as a plain file
    session = runner.OnnxSeparator(onnx_path)  # the TF-free runner
    assert session.targets == model.stems and session.sample_rate == 44100
    onnx_rel = _rel(session(x), reference)
    assert onnx_rel <= 1e-4, onnx_rel

    sm_path = export.export(model, tmp_path / f"{family}_roformer_sm", format="saved_model")
    fn, _ = load_saved_model(sm_path)
    out = {k: v.numpy() for k, v in fn(waveform=tf.constant(x)).items()}
    sm_rel = _rel(out, reference)
    assert sm_rel <= 1e-4, sm_rel
    print(f"{family}: onnx {onnx_rel:.2e}, saved_model {sm_rel:.2e} max relative difference")


def test_large_core_conversion(real_mixture, tmp_path, monkeypatch):
    """The conversion large cores get (tf2onnx ``large_model``, weights inlined back into the one
    file, :data:`kerasep.export.onnx.bridge.LARGE_CORE_BYTES`), forced on a tiny RoFormer: a single
    self-contained file equal to the Keras model."""
    import onnx

    from kerasep import export
    from kerasep.export import runner
    from kerasep.export.onnx import bridge

    calls = []
    inline = bridge._inline_external_tensors
    monkeypatch.setattr(bridge, "LARGE_CORE_BYTES", 0)
    monkeypatch.setattr(bridge, "_inline_external_tensors", lambda *a: calls.append(1) or inline(*a))
    model = _model("bs")
    x = np.ascontiguousarray(real_mixture[: 22050 + 37].T[None])
    reference = {k: np.asarray(v) for k, v in model(x, training=False).items()}
    path = export.export(model, tmp_path / "large.onnx")
    assert calls, "the large-model conversion was not taken"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["large.onnx"]  # no external data files
    proto = onnx.load(str(path), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert _rel(runner.OnnxSeparator(path)(x), reference) <= 1e-4


def test_capability_accepts_released_stft():
    """``kerasep separate --backend auto`` asks :func:`kerasep.export.capability.onnx_problem`:
    a hop that does not divide n_fft is no reason to fall back to Keras any more."""
    from kerasep.export.capability import _spectral_problem
    from kerasep.export.spec import export_spec

    assert _spectral_problem(export_spec(_model("mel"))) is None
    assert "even n_fft" in _spectral_problem(dict(n_fft=2047, hop_length=441))


@pytest.mark.parametrize("num_overlap", [2, 4])
def test_runner_cuts_roformer_exports_as_msst_demix(real_mixture, tmp_path, num_overlap):
    """An exported RoFormer declares MSST's faded segments (``kerasep.chunk_weighting`` "faded",
    ``chunk_segment`` = ``chunk_size``, ``chunk_overlap`` = 1 - 1 / ``num_overlap``), so the TF-free
    runner cuts a song as :func:`kerasep.inference.separate_array` does: equal on 1.5 s of the real
    mixture cut into 0.25 s segments; ``--backend auto`` may take ONNX for it."""
    from kerasep import export, inference
    from kerasep.backend import keras
    from kerasep.export import runner
    from kerasep.export.capability import onnx_problem
    from kerasep.models.roformer import BSRoformer

    keras.utils.set_random_seed(0)
    tiny = dict(TINY_RELEASED_STFT, stft_n_fft=512, stft_hop_length=128, stft_win_length=512, dim_freqs_in=257)
    model = BSRoformer(targets=["vocals", "other"], freqs_per_bands=(16, 16, 32, 64, 129), chunk_size=11025,
                       num_overlap=num_overlap, **tiny)
    model.build((None, 2, None))
    assert onnx_problem(model) is None
    session = runner.OnnxSeparator(export.export(model, tmp_path / "roformer.onnx"))
    assert session.chunk_weighting == "faded" and session.chunk_segment == 11025
    mix = np.ascontiguousarray(real_mixture[: 66150 + 13])
    ours = inference.separate_array(mix, model)
    theirs = runner.separate_array(session, mix)
    rel = _rel(theirs, {k: np.asarray(v) for k, v in ours.items()})
    assert rel <= 1e-4, rel


def test_attention_fused_in_export(real_mixture, monkeypatch):
    """Each attention of the exported core is one ``com.microsoft.MultiHeadAttention``
    (:func:`kerasep.export.onnx.attention.fuse_attention`), with the same outputs as the chain of
    five operators tf2onnx writes; a converter output the rewrite does not recognise is an error."""
    import onnxruntime as ort

    from kerasep.export.onnx import attention
    from kerasep.export.onnx.save import to_onnx

    model = _model("bs")
    x = np.ascontiguousarray(real_mixture[: 22050 + 37].T[None])

    def run(proto):
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        return dict(zip([o.name for o in session.get_outputs()], session.run(None, {"waveform": x})))

    fused = to_onnx(model)
    ops = [n.op_type for n in fused.graph.node]
    assert ops.count("MultiHeadAttention") == 2 and "Softmax" not in ops  # depth 1: a time and a band attention
    with monkeypatch.context() as m:
        m.setattr(attention, "fuse_attention", lambda proto, **kwargs: proto)
        plain = to_onnx(model)
    assert [n.op_type for n in plain.graph.node].count("Softmax") == 2
    assert _rel(run(fused), run(plain)) <= 1e-5

    with pytest.raises(RuntimeError, match="found 2 attention blocks in the converted core, expected 3"):
        attention.fuse_attention(plain, heads=2, dim_head=8, expected=3)
    # int8: onnxruntime's quantiser cannot type the contrib operator's outputs, the chain stays
    int8 = to_onnx(model, precision="int8")
    assert "MultiHeadAttention" not in [n.op_type for n in int8.graph.node]
    assert run(int8).keys() == run(plain).keys()
