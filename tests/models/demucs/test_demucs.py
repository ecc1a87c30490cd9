"""Demucs: blocks, sinc resampling vs julius, model vs the demucs package (PyTorch CPU, same
weights through our converter) on the real MUSDB18 track, checkpoint trust model, inference
(segments, shifts, two stems), zoo entries and CLI."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from testing import REPO, SegmentedSeparator

torch = pytest.importorskip("torch")  # test extra; never a runtime dependency

from reference.demucs_v2_ref import apply_v2, load_v2_module  # noqa: E402

from kerasep.backend import keras  # noqa: E402
from kerasep.layers.glu_blocks import GLU, ResampleFrac, center_trim  # noqa: E402
from kerasep.models.demucs import Demucs  # noqa: E402
from kerasep.zoo.converters import demucs as conv  # noqa: E402

SOURCES = ["drums", "bass", "other", "vocals"]
SMALL = dict(channels=4, depth=4)


@pytest.fixture(scope="module")
def mixture(musdb_hq_track):
    """The real MUSDB18 test track's mixture, (nb_timesteps, 2) float32, 44.1 kHz, 6 s."""
    x, rate = sf.read(musdb_hq_track / "mixture.wav", dtype="float32")
    assert rate == 44100 and x.shape[1] == 2
    return x


def _batch(mix, seconds=None):
    x = mix if seconds is None else mix[: int(seconds * 44100)]
    return np.ascontiguousarray(x.T)[None]  # (1, nb_channels, nb_timesteps)


def _run(model, x):
    """The model in graph mode (its LSTM loop is far too slow step by step in eager mode)."""
    from kerasep.inference import _compiled

    return {t: v.numpy() for t, v in _compiled(model)(x).items()}


def _rel(ours, ref):
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def _state(module):
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


def _from_package(package):
    config = conv.convert_config(package)
    model = Demucs(**config)
    model.build((None, model.nb_channels, None))
    return conv.convert_weights(model, package["state"])


# --- layers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("old_sr,new_sr", [(1, 2), (2, 1), (3, 2), (4, 5)])
def test_resample_frac_matches_julius(mixture, old_sr, new_sr):
    import julius

    x = mixture[1000:5001]  # odd length, real audio
    ours = ResampleFrac(old_sr, new_sr)(x[None]).numpy()[0]
    ref = julius.resample_frac(torch.from_numpy(np.ascontiguousarray(x.T)), old_sr, new_sr).numpy().T
    assert ours.shape == ref.shape == ((x.shape[0] * new_sr) // old_sr, 2)
    assert np.abs(ours - ref).max() < 1e-5


def test_resample_layers_config_and_identity():
    layer = ResampleFrac(2, 4, zeros=12, rolloff=0.9, name="r")
    again = ResampleFrac.from_config(layer.get_config())
    assert (again.old_sr, again.new_sr, again.zeros, again.rolloff) == (2, 4, 12, 0.9)
    x = np.random.default_rng(0).standard_normal((1, 37, 3)).astype(np.float32)
    np.testing.assert_array_equal(ResampleFrac(3, 3)(x).numpy(), x)
    with pytest.raises(ValueError, match="positive integers"):
        ResampleFrac(1.5, 2)


def test_glu_and_center_trim():
    x = np.random.default_rng(1).standard_normal((2, 5, 6)).astype(np.float32)
    ref = torch.nn.functional.glu(torch.from_numpy(x), dim=-1).numpy()
    np.testing.assert_allclose(GLU()(x).numpy(), ref, rtol=1e-6, atol=1e-7)
    seq = np.arange(10, dtype=np.float32).reshape(1, 10, 1)
    # odd surplus: the extra step goes on the right (as demucs' center_trim)
    np.testing.assert_array_equal(np.asarray(center_trim(keras.ops.convert_to_tensor(seq), 7)).ravel(), [1, 2, 3, 4, 5, 6, 7])
    with pytest.raises(ValueError, match="even size"):
        GLU().compute_output_shape((None, 4, 3))


# --- model ----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant,context", [("v2", 3), ("v3", 1)])
def test_valid_length_matches_demucs(variant, context):
    import demucs.demucs as dd

    ours = Demucs(variant=variant, context=context, depth=4, channels=4)
    if variant == "v2":
        ref = load_v2_module().Demucs(SOURCES, depth=4, channels=4, context=context)
    else:
        ref = dd.Demucs(SOURCES, depth=4, channels=4, context=context, dconv_mode=0)
    for n in (1, 7, 100, 4097, 44100, 44101):
        assert ours.valid_length(n) == ref.valid_length(n)
        assert int(ours.valid_length(keras.ops.convert_to_tensor(n, "int32"))) == ref.valid_length(n)


def test_model_shapes_config_and_keras_round_trip(tmp_path):
    model = Demucs(targets=["a", "b"], nb_channels=1, **SMALL)
    x = np.random.default_rng(2).standard_normal((2, 1, 3001)).astype(np.float32)
    y = model(x)
    assert sorted(y) == ["a", "b"] and all(v.shape == (2, 1, 3001) for v in y.values())
    assert Demucs.from_config(model.get_config()).get_config() == model.get_config()
    path = tmp_path / "demucs.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    z = again(x)
    for t in y:
        np.testing.assert_allclose(z[t].numpy(), y[t].numpy(), rtol=1e-5, atol=1e-6)


def test_rescale_init_moves_weight_std():
    model = Demucs(**SMALL, rescale=0.1)
    model.build((None, 2, None))
    plain = Demucs(**SMALL, rescale=0)
    plain.build((None, 2, None))
    k = model.encoder[3].conv.kernel.numpy()
    k0 = plain.encoder[3].conv.kernel.numpy()
    # demucs' rescale: std -> sqrt(std * reference); both are ~U(+-1/sqrt(fan_in)) before
    assert abs(k.std() - np.sqrt(k0.std() * 0.1)) < 0.2 * np.sqrt(k0.std() * 0.1)


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="variant"):
        Demucs(variant="v4")
    with pytest.raises(ValueError, match="stride"):
        Demucs(stride=9, kernel_size=8)
    with pytest.raises(ValueError, match="GroupNorm"):
        Demucs(norm_starts=2)
    with pytest.raises(ValueError, match="targets"):
        Demucs(targets=["a", "a"])


# --- parity with the demucs package (same random weights through our converter) ---------------


@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(normalize=True, gelu=True, norm_starts=2, context=2),
    ],
    ids=["v2-like", "gelu-groupnorm-normalize"],
)
def test_parity_demucs_package_class(mixture, options):
    """``demucs.demucs.Demucs`` (demucs 4.1.0) with DConv off, on the real MUSDB18 mixture."""
    import demucs.demucs as dd

    torch.manual_seed(0)
    kwargs = dict(channels=4, depth=4, lstm_layers=2, dconv_mode=0, gelu=False, norm_starts=99,
                  context=1, normalize=False)
    kwargs.update(options)
    ref = dd.Demucs(SOURCES, **kwargs).eval()
    model = _from_package({"klass": "demucs.demucs.Demucs", "args": [SOURCES], "kwargs": kwargs,
                           "state": _state(ref)})
    x = _batch(mixture)
    with torch.no_grad():
        expected = ref(torch.from_numpy(x)).numpy()
    ours = _run(model, x)
    for i, t in enumerate(SOURCES):
        assert _rel(ours[t], expected[:, i]) <= 1e-4, t


def test_parity_demucs2_checkpoint_file(mixture, tmp_path):
    """demucs 2.0.3's ``demucs.model.Demucs`` (the released v2 architecture): a package written
    by ``torch.save`` as demucs 2 does, read back without executing code, on the real track."""
    import argparse

    v2 = load_v2_module()
    torch.manual_seed(1)
    ref = v2.Demucs(SOURCES, channels=4, depth=4, normalize=True).eval()
    args, kwargs = ref._init_args_kwargs
    path = tmp_path / "demucs2.th"
    torch.save({"klass": type(ref), "args": args, "kwargs": kwargs, "state": ref.state_dict(),
                "training_args": argparse.Namespace(models=Path("models"), lr=3e-4)}, path)
    model = conv.load_checkpoint(path)
    assert model.variant == "v2" and model.normalize and model.targets == SOURCES
    x = _batch(mixture)
    expected = apply_v2(ref, torch.from_numpy(x)).numpy()
    ours = _run(model, x)
    for i, t in enumerate(SOURCES):
        assert _rel(ours[t], expected[:, i]) <= 1e-4, t


def test_bare_state_dict_infers_released_layout(mixture, tmp_path):
    v2 = load_v2_module()
    torch.manual_seed(2)
    ref = v2.Demucs(SOURCES, channels=4, depth=4).eval()
    path = tmp_path / "state.th"
    torch.save(ref.state_dict(), path)
    package = conv.read_checkpoint(path)
    assert package["klass"] is None
    config = conv.convert_config(package)
    assert config["channels"] == 4 and config["depth"] == 4 and config["context"] == 3
    assert config["targets"] == SOURCES and config["lstm_layers"] == 2 and config["variant"] == "v2"
    model = _from_package(package)
    x = _batch(mixture, 2.0)
    expected = apply_v2(ref, torch.from_numpy(x)).numpy()
    ours = _run(model, x)
    for i, t in enumerate(SOURCES):
        assert _rel(ours[t], expected[:, i]) <= 1e-4, t


@pytest.mark.slow
def test_parity_realistic_size_released_architecture(mixture):
    """The released demucs48_hq architecture (48 channels, depth 6, 2×BLSTM of 1536 units,
    ~150 M parameters) with random weights, vs demucs 2.0.3, on the real track."""
    v2 = load_v2_module()
    torch.manual_seed(3)
    ref = v2.Demucs(SOURCES, channels=48).eval()
    model = _from_package({"klass": None, "args": [], "kwargs": {}, "state": _state(ref)})
    assert model.channels == 48 and model.depth == 6
    x = _batch(mixture)
    expected = apply_v2(ref, torch.from_numpy(x)).numpy()
    ours = _run(model, x)
    for i, t in enumerate(SOURCES):
        assert _rel(ours[t], expected[:, i]) <= 1e-4, t


# --- converter errors and the trust model -----------------------------------------------------


class _Touch:
    """Pickles as a call of ``Path.touch`` (code that runs on load with the full unpickler)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_checkpoint_needing_code_is_refused_unless_trusted(tmp_path):
    v2 = load_v2_module()
    ref = v2.Demucs(SOURCES, channels=4, depth=2)
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.th"
    torch.save({"klass": type(ref), "args": [SOURCES], "kwargs": {"channels": 4, "depth": 2},
                "state": ref.state_dict(), "extra": _Touch(marker)}, path)
    with pytest.raises(conv.UntrustedCheckpointError, match="refers to code: builtins.getattr"):
        conv.read_checkpoint(path)
    assert not marker.exists()
    package = conv.read_checkpoint(path, trust=True)  # the caller vouches for the file
    assert marker.exists() and package["klass"] == "demucs.model.Demucs"


def test_converter_rejects_unsupported_and_mismatched(tmp_path):
    with pytest.raises(ValueError, match="HDemucs"):
        conv.convert_config({"klass": "demucs.hdemucs.HDemucs", "args": [], "kwargs": {}, "state": {}})
    with pytest.raises(ValueError, match="dconv_mode=1"):
        conv.convert_config({"klass": "demucs.demucs.Demucs", "args": [SOURCES], "kwargs": {}, "state": {}})
    torch.save({"klass": None, "args": [], "kwargs": {}, "state": {"__quantized": True}}, tmp_path / "q.th")
    with pytest.raises(ValueError, match="quantized"):
        conv.read_checkpoint(tmp_path / "q.th")
    v2 = load_v2_module()
    state = _state(v2.Demucs(SOURCES, channels=4, depth=2))
    model = Demucs(channels=8, depth=2)
    model.build((None, 2, None))
    with pytest.raises(ValueError, match=r"encoder\.0\.0\.weight: expected shape \(8, 2, 8\) but found \(4, 2, 8\)"):
        conv.convert_weights(model, state)
    small = Demucs(channels=4, depth=2, lstm_layers=0)
    small.build((None, 2, None))
    with pytest.raises(ValueError, match="no place in this model"):
        conv.convert_weights(small, state)
    with pytest.raises(FileNotFoundError):
        conv.read_checkpoint(tmp_path / "missing.th")


# --- inference: segments, shifts, two stems ----------------------------------------------------


def test_segments_shifts_and_two_stems_on_known_answers(mixture):
    from kerasep.inference import separate_array

    model = SegmentedSeparator()
    out = separate_array(mixture, model)  # 1 s segments overlapping by 25 %, cross-faded
    np.testing.assert_allclose(out["vocals"], 0.4 * mixture, atol=1e-6)
    out = separate_array(mixture, model, shifts=3, seed=0)
    np.testing.assert_allclose(out["drums"], 0.1 * mixture, atol=1e-6)
    two = separate_array(mixture, model, two_stems="vocals", chunk_seconds=2.0)
    assert sorted(two) == ["no_vocals", "vocals"]
    np.testing.assert_allclose(two["no_vocals"], 0.6 * mixture, atol=1e-6)
    with pytest.raises(ValueError, match="two_stems must be one of"):
        separate_array(mixture, model, two_stems="guitar")


def test_separate_demucs_segments_and_shifts(mixture):
    import kerasep

    torch.manual_seed(4)
    model = Demucs(**SMALL, segment_seconds=3.0)
    model.build((None, 2, None))
    whole = _run(model, _batch(mixture))
    one = kerasep.separate(mixture, model=model, chunk_seconds=9.0)  # 0.75 * 9 s > 6.1 s: one segment
    seg = kerasep.separate(mixture, model=model)  # 3 s segments, 25 % overlap
    for t in SOURCES:
        np.testing.assert_allclose(one[t], whole[t][0].T, rtol=1e-5, atol=1e-6)
        assert seg[t].shape == mixture.shape and np.isfinite(seg[t]).all()
    a = kerasep.separate(mixture, model=model, shifts=2, seed=7, two_stems="vocals")
    b = kerasep.separate(mixture, model=model, shifts=2, seed=7, two_stems="vocals")
    np.testing.assert_array_equal(a["vocals"], b["vocals"])
    assert sorted(a) == ["no_vocals", "vocals"]


# --- zoo and CLI -------------------------------------------------------------------------------


@pytest.mark.slow
def test_zoo_entries_build_release_architecture():
    from kerasep import zoo
    from kerasep.zoo import registry

    names = [n for n, e in registry.MODELS.items() if e["family"] == "demucs"]
    assert {"demucs", "demucs48-hq", "demucs-extra"} <= set(names)
    for name in names:
        entry = registry.MODELS[name]
        spec = registry.WEIGHT_SOURCES[entry["weights"]]
        (fname, digest), = spec["files"].items()
        assert spec["url"].endswith("/" + fname) and fname.endswith(f"-{digest}.th")
        card = REPO / "zoo" / name
        assert json.loads((card / "config.json").read_text()) == json.loads(json.dumps(entry))
        assert (card / "card.md").is_file()
    model = zoo.build("demucs")
    assert model.count_params() == 265_646_728  # demucs 2's Demucs(channels=64) has the same
    assert model.targets == SOURCES


@pytest.fixture()
def local_demucs_source(monkeypatch, tmp_path, kerasep_home):
    """A registry weight source for a small random demucs 2 checkpoint saved like the released
    files (bare state dict named ``<name>-<sha256[:8]>.th``), and a zoo entry using it."""
    from kerasep.zoo import registry, weights

    v2 = load_v2_module()
    torch.manual_seed(5)
    ref = v2.Demucs(SOURCES, channels=4, depth=3).eval()
    raw = tmp_path / "tiny.th"
    torch.save(ref.state_dict(), raw)
    digest = weights.sha256sum(raw)[:8]
    path = tmp_path / f"tiny-{digest}.th"
    raw.rename(path)
    monkeypatch.setitem(registry.WEIGHT_SOURCES, "demucs-tiny-test", {
        "format": "demucs-th", "description": "test", "license": "MIT",
        "files": {path.name: digest}, "url": "https://invalid.example/" + path.name,
    })
    config = dict(registry.MODELS["demucs"]["config"], channels=4, depth=3)
    monkeypatch.setitem(registry.MODELS, "demucs-tiny-test", {
        "family": "demucs", "description": "test", "config": config, "weights": "demucs-tiny-test",
        "license": "MIT",
    })
    monkeypatch.setenv("KERASEP_HOME", str(tmp_path / "home"))
    return ref, path


def test_zoo_load_from_local_file_with_sha256_prefix(local_demucs_source, mixture, tmp_path):
    from kerasep import zoo

    ref, path = local_demucs_source
    model = zoo.load("demucs-tiny-test", weights=path, download=False)
    x = _batch(mixture, 1.0)
    expected = apply_v2(ref, torch.from_numpy(x)).numpy()
    for i, t in enumerate(SOURCES):
        assert _rel(_run(model, x)[t], expected[:, i]) <= 1e-4
    # cached now: loads without the path; a tampered copy is rejected
    zoo.load("demucs-tiny-test", download=False)
    bad = tmp_path / "bad.th"
    bad.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    (Path(os.environ["KERASEP_HOME"]) / "weights" / "demucs-tiny-test" / path.name).unlink()
    with pytest.raises(zoo.WeightsError, match="sha256 mismatch"):
        zoo.load("demucs-tiny-test", weights=bad, download=False)


def test_cli_two_stems_and_shifts(local_demucs_source, tmp_path, musdb_hq_track):
    from kerasep.cli import main

    _, path = local_demucs_source
    src = tmp_path / "mix.wav"
    x, rate = sf.read(musdb_hq_track / "mixture.wav", dtype="float32")
    sf.write(src, x[: 2 * rate], rate)
    out = tmp_path / "out"
    argv = ["separate", str(src), "-m", "demucs-tiny-test", "--weights", str(path), "-o", str(out),
            "--two-stems", "vocals", "--shifts", "1", "--seed", "0", "-q"]
    assert main(argv) == 0
    written = sorted(p.name for p in (out / "mix").iterdir())
    assert written == ["no_vocals.wav", "vocals.wav"]
    assert sf.info(out / "mix" / "vocals.wav").frames == 2 * rate
    assert main(argv) == 1  # refuses to overwrite
    assert main(argv[:-7] + ["--two-stems", "guitar", "-q"]) == 2


# --- export (kerasep.export): SavedModel and single-file ONNX ----------------------------------


@pytest.mark.slow
def test_export_saved_model_and_onnx_match_demucs(mixture, tmp_path):
    """Same weights as ``demucs.demucs.Demucs``; the exported files run on the real track (any
    length, batch) and match the PyTorch reference."""
    import demucs.demucs as dd
    import onnxruntime as ort

    from kerasep import export
    from kerasep.backend import tf

    torch.manual_seed(6)
    kwargs = dict(channels=4, depth=4, lstm_layers=2, dconv_mode=0, gelu=False, norm_starts=99, context=1,
                  normalize=True)
    ref = dd.Demucs(SOURCES, **kwargs).eval()
    model = _from_package({"klass": "demucs.demucs.Demucs", "args": [SOURCES], "kwargs": kwargs,
                           "state": _state(ref)})
    x = np.concatenate([_batch(mixture, 3.0), _batch(mixture[44100:], 3.0)])  # batch of 2
    with torch.no_grad():
        expected = ref(torch.from_numpy(x)).numpy()

    onnx_path = export.export(model, tmp_path / "demucs.onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["demucs.onnx"]  # one self-contained file
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"waveform": x})))
    sm = tf.saved_model.load(export.export(model, tmp_path / "demucs_saved_model"))
    served = sm.signatures["serving_default"](waveform=tf.constant(x))
    for i, t in enumerate(SOURCES):
        assert got[t].shape == x.shape
        assert _rel(got[t], expected[:, i]) <= 1e-4, t
        assert _rel(served[t].numpy(), expected[:, i]) <= 1e-4, t
    odd = _batch(mixture, 1.2345)  # another, odd length: dynamic time axis
    y = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"waveform": odd})))
    assert y["vocals"].shape == odd.shape
