"""Exports (.keras, SavedModel, single-file ONNX) of a small U-Net trained with ``fit``, loaded
back and compared with the Keras model on real audio; the standalone onnxruntime runner."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import MUSDB_HQ_ROOT, REPO, TRACK

pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

RUNNER = REPO / "export" / "run_onnx.py"
TOL = 1e-4
TINY = dict(T=64, F=64, n_fft=256, hop_length=64, conv_n_filters=(8, 16, 32), dropout=0.5)


def _max_diff(a, b):
    return {t: float(np.max(np.abs(np.asarray(a[t]) - np.asarray(b[t])))) for t in a}


@pytest.fixture(scope="module")
def stems(shared_data):
    from kerasep import audio

    folder = MUSDB_HQ_ROOT / "test" / TRACK
    return {name: audio.load(folder / f"{name}.wav") for name in ("mixture", "vocals")}


@pytest.fixture(scope="module")
def trained(stems):
    """A user-built U-Net whose core is trained for one ``fit`` step on real patches."""
    from kerasep.backend import keras, tf
    from kerasep.models import UNetSeparator

    keras.utils.set_random_seed(0)
    model = UNetSeparator(**TINY)
    model.build((None, 2, None))

    def patches(y):
        spec = model.stft(np.ascontiguousarray(y[:44100].T)[None])
        return model.to_patches(model.magnitude(spec))[:2]

    x = patches(stems["mixture"])
    vocals = patches(stems["vocals"])
    model.core.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mae")
    model.core.fit(x, {"vocals": vocals, "accompaniment": tf.nn.relu(x - vocals)}, epochs=1, verbose=0)
    return model


def _batch(mix, length):
    """Two different real excerpts of ``length`` samples: (2, nb_channels, length)."""
    a = mix[:length].T
    b = mix[-length:].T
    return np.ascontiguousarray(np.stack([a, b]), dtype=np.float32)


def _keras(model, x):
    return {t: v.numpy() for t, v in model(x, training=False).items()}


def _onnx_run(path_or_proto, x):
    import onnxruntime as ort

    data = path_or_proto if isinstance(path_or_proto, (str, Path)) else path_or_proto.SerializeToString()
    sess = ort.InferenceSession(str(data) if isinstance(data, Path) else data, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"waveform": x})))


# Lengths: one sample, not multiples of the hop (64) or the patch (64 * 64 samples), several
# patches, and the whole 6 s excerpt.
LENGTHS = (1, 1001, 3 * 4096 + 77, None)


@pytest.fixture(scope="module")
def tiny_onnx(trained, tmp_path_factory):
    from kerasep import export

    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    return Path(export.export(trained, path))


def test_onnx_matches_keras(trained, tiny_onnx, stems):
    mix = stems["mixture"]
    for length in LENGTHS:
        x = _batch(mix, length or mix.shape[0])
        diff = _max_diff(_keras(trained, x), _onnx_run(tiny_onnx, x))
        assert max(diff.values()) <= TOL, (length, diff)


def test_onnx_file_contents(trained, tiny_onnx):
    import onnx

    import kerasep
    from kerasep.export.onnx import OPSET

    proto = onnx.load(str(tiny_onnx))
    assert [i.name for i in proto.graph.input] == ["waveform"]
    assert [o.name for o in proto.graph.output] == ["vocals", "accompaniment"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 2, "nb_timesteps"]
    assert {o.domain: o.version for o in proto.opset_import}[""] >= OPSET >= 17
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["kerasep.version"] == kerasep.__version__
    assert meta["kerasep.sample_rate"] == "44100"
    assert json.loads(meta["kerasep.targets"]) == ["vocals", "accompaniment"]
    assert meta["kerasep.chunk_alignment"] == meta["kerasep.chunk_context"] == str(64 * 64)
    sha = json.loads(meta["kerasep.weights_sha256"])
    assert sha["source"] == "variables" and len(sha["sha256"]) == 64
    # no TensorFlow-only or unconverted ops left behind
    assert not [n.op_type for n in proto.graph.node if n.domain not in ("", "ai.onnx")]


def test_mask_extension_average(stems):
    from kerasep.export.onnx import to_onnx
    from kerasep.models import UNetSeparator

    model = UNetSeparator(**dict(TINY, mask_extension="average"))
    model.build((None, 2, None))
    # Untrained weights give near-zero estimates, where ratio masks are ill-conditioned and the
    # "average" extension spreads their float32 rounding over every upper bin: a relative bound.
    x = _batch(stems["mixture"], 5000)
    ref = _keras(model, x)
    out = _onnx_run(to_onnx(model), x)
    scale = max(float(np.abs(v).max()) for v in ref.values())
    assert max(_max_diff(ref, out).values()) <= 1e-3 * scale


def test_keras_export_roundtrip(trained, stems, tmp_path):
    from kerasep import export, zoo

    path = export.export(trained, tmp_path / "tiny.keras")
    with pytest.raises(FileExistsError):
        export.export(trained, tmp_path / "tiny.keras")
    again = zoo.load(path)
    x = _batch(stems["mixture"], 3 * 4096 + 77)
    assert max(_max_diff(_keras(trained, x), _keras(again, x)).values()) <= TOL


@pytest.fixture(scope="module")
def tiny_saved_model(trained, tmp_path_factory):
    from kerasep import export

    return Path(export.export(trained, tmp_path_factory.mktemp("sm") / "tiny_sm", format="saved_model"))


def test_saved_model_roundtrip(trained, tiny_saved_model, stems):
    from kerasep.backend import tf
    from kerasep.export.saved_model import load_saved_model

    loaded = tf.saved_model.load(str(tiny_saved_model))
    fn = loaded.signatures["serving_default"]
    assert list(fn.structured_input_signature[1]) == ["waveform"]
    assert sorted(fn.structured_outputs) == ["accompaniment", "vocals"]
    mix = stems["mixture"]
    for length in (1001, mix.shape[0]):
        x = _batch(mix, length)
        out = {t: v.numpy() for t, v in fn(waveform=tf.constant(x)).items()}
        assert max(_max_diff(_keras(trained, x), out).values()) <= TOL
    _, meta = load_saved_model(tiny_saved_model)
    assert meta["kerasep.sample_rate"] == "44100"
    assert json.loads(meta["kerasep.targets"]) == ["vocals", "accompaniment"]


def test_saved_model_corrupted(tiny_saved_model, tmp_path):
    import shutil

    from kerasep.export.saved_model import SavedModelError, load_saved_model

    path = tmp_path / "damaged"
    shutil.copytree(tiny_saved_model, path)
    pb = path / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[:100])
    with pytest.raises(SavedModelError, match="truncated or corrupted"):
        load_saved_model(path)
    with pytest.raises(SavedModelError, match="not a SavedModel"):
        load_saved_model(tmp_path / "missing")


def test_reduced_precision_exports_run(trained, stems, tmp_path):
    from kerasep import export

    x = _batch(stems["mixture"], 3 * 4096 + 77)
    ref = _keras(trained, x)
    for precision in ("float16", "int8"):
        path = export.export(trained, tmp_path / f"tiny_{precision}.onnx", precision=precision)
        out = _onnx_run(Path(path), x)
        for t in ref:
            err = np.sum((out[t] - ref[t]) ** 2) / np.sum(ref[t] ** 2)
            assert out[t].dtype == np.float32 and err < 0.1, (precision, t, err)
    with pytest.raises(ValueError, match="only available for format='onnx'"):
        export.export(trained, tmp_path / "x.keras", precision="float16")


def test_waveform_model_generic_path(stems):
    """A separator with no STFT (Demucs-like) goes through tf2onnx whole."""
    from kerasep.backend import keras
    from kerasep.export.onnx import to_onnx

    class TinyWave(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.targets, self.sample_rate, self.nb_channels = ["a", "b"], 44100, 2
            self.conv = keras.layers.Conv1D(4, 9, padding="same")

        def call(self, x, training=False):
            h = self.conv(keras.ops.transpose(x, (0, 2, 1)))
            m = keras.ops.sigmoid(h)
            a = keras.ops.transpose(m[..., :2], (0, 2, 1)) * x
            return {"a": a, "b": x - a}

    model = TinyWave()
    x = _batch(stems["mixture"], 1001)
    ref = _keras(model, x)
    out = _onnx_run(to_onnx(model), x)
    assert max(_max_diff(ref, out).values()) <= TOL


# --- patches of third-party internals, module boundaries -----------------------------------


def _tf2onnx_patched():
    """Which of the ONNX export's patches of tf2onnx / numpy are in place right now."""
    import tf2onnx.optimizer.optimizer_base as base

    optimize = vars(base.GraphOptimizerBase)["optimize"]
    return {"optimize": optimize.__module__ != "tf2onnx.optimizer.optimizer_base",
            "numpy.product": "product" in vars(np) and np.product is np.prod}


def test_tf2onnx_patches_scoped(tiny_onnx):
    from kerasep.export.onnx import bridge

    # an export ran (tiny_onnx): nothing of it is left patched
    assert _tf2onnx_patched() == {"optimize": False, "numpy.product": False}
    shim = not hasattr(np, "product")  # numpy 2
    with pytest.raises(KeyError, match="inside"):
        with bridge._lean_tf2onnx():
            assert _tf2onnx_patched() == {"optimize": True, "numpy.product": shim}
            raise KeyError("inside")
    assert _tf2onnx_patched() == {"optimize": False, "numpy.product": False}


def test_tf2onnx_patches_refuse_unsupported_versions(trained, monkeypatch):
    import tf2onnx

    from kerasep.export.onnx import UnsupportedVersionError, bridge, to_onnx

    monkeypatch.setattr(tf2onnx, "__version__", "1.18.0")
    with pytest.raises(UnsupportedVersionError, match=r"tf2onnx 1\.18\.0 is installed.*tf2onnx>=1\.17,<1\.18"):
        to_onnx(trained)
    monkeypatch.setattr(tf2onnx, "__version__", "1.16.0")
    with pytest.raises(UnsupportedVersionError, match=r"tf2onnx 1\.16\.0"):
        with bridge._lean_tf2onnx():
            pass
    monkeypatch.setattr(tf2onnx, "__version__", "1.17.0")
    if not hasattr(np, "product"):  # the numpy.product shim applies (numpy 2)
        monkeypatch.setattr(np, "__version__", "3.0.0")
        with pytest.raises(UnsupportedVersionError, match=r"numpy 3\.0\.0 is installed.*numpy>=2\.0,<3\.0"):
            with bridge._lean_tf2onnx():
                pass
    assert _tf2onnx_patched() == {"optimize": False, "numpy.product": False}  # refused before patching


def _fresh_python(code, **kwargs):
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, **kwargs)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_saved_model_export_never_imports_onnx(tmp_path):
    _fresh_python("import kerasep.export.saved_model, sys\n"
                  "assert 'kerasep.export.onnx' not in sys.modules and 'tf2onnx' not in sys.modules\n")
    # a whole SavedModel export too: no onnx, tf2onnx or kerasep.export.onnx loaded
    _fresh_python(
        "import sys\n"
        "from kerasep import export\n"
        "from kerasep.models import UNetSeparator\n"
        f"model = UNetSeparator(**{TINY!r})\n"
        "model.build((None, 2, None))\n"
        f"export.export(model, {str(tmp_path / 'sm')!r}, format='saved_model')\n"
        "loaded = sorted(m for m in ('onnx', 'tf2onnx', 'kerasep.export.onnx') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    assert (tmp_path / "sm" / "saved_model.pb").is_file()


# --- the standalone runner ------------------------------------------------------------------


def _load_runner():
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_onnx_under_test", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_runner_copy_in_package_is_identical():
    # kerasep.export.runner (used by `kerasep separate --backend onnx`) ships the same file.
    assert (REPO / "kerasep" / "export" / "runner.py").read_bytes() == RUNNER.read_bytes()


def test_runner_subprocess_without_tensorflow(trained, tiny_onnx, tmp_path):
    """The runner separates a real file in a process that never imports TensorFlow, chunked,
    and matches kerasep.separate (same chunking) on the same model."""
    from kerasep import audio, inference

    src = MUSDB_HQ_ROOT / "test" / TRACK / "mixture.wav"
    out = tmp_path / "out"
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['run_onnx.py', {str(tiny_onnx)!r}, {str(src)!r}, '-o', {str(out)!r},"
        " '--chunk-seconds', '0.5', '-q', '--format', 'wav']\n"
        "try:\n"
        f"    runpy.run_path({str(RUNNER)!r}, run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "print('TF_LOADED' if 'tensorflow' in sys.modules or 'kerasep' in sys.modules else 'TF_ABSENT')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "TF_ABSENT" in res.stdout
    mix = audio.load(src)
    ref = inference.separate_array(mix, trained, chunk_seconds=0.5)
    for t in ("vocals", "accompaniment"):
        got = audio.load(out / "mixture" / f"{t}.wav")
        # 16-bit PCM output: compare at the quantisation step
        assert got.shape == ref[t].shape
        assert np.max(np.abs(got - np.clip(ref[t], -1, 1))) <= 1.0 / 32768 + TOL


def test_runner_chunking_exact_and_crossfade(trained, tiny_onnx, stems):
    from kerasep import inference

    runner = _load_runner()
    model = runner.OnnxSeparator(tiny_onnx)
    mix = stems["mixture"][: 3 * 44100 + 11]
    whole = model(np.ascontiguousarray(mix.T)[None])
    chunked = runner.separate_array(model, mix, chunk_seconds=0.3)
    for t in model.targets:
        assert np.max(np.abs(chunked[t] - whole[t][0].T)) <= TOL
    # a model without an exact chunk grid: context + linear crossfades, as kerasep.inference
    model.chunk_context, model.chunk_alignment = None, 1
    runner.DEFAULT_CONTEXT_SECONDS = 0.2
    got = runner.separate_array(model, mix, chunk_seconds=0.5)
    plan = inference.plan_chunks(mix.shape[0], int(0.5 * 44100), int(0.2 * 44100), 1)
    assert len(plan) > 3
    for t in model.targets:
        ref = np.zeros_like(mix)
        for k, (ks, ke, s, e) in enumerate(plan):
            est = model(np.ascontiguousarray(mix[s:e].T)[None])[t][0].T
            inference._crossfade_into(ref, est, s, e, ks, ke, plan, k)
        assert np.max(np.abs(got[t] - ref)) <= 1e-6


def test_runner_bad_model_files(tiny_onnx, tmp_path):
    runner = _load_runner()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(tiny_onnx.read_bytes()[: tiny_onnx.stat().st_size // 2])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(os.urandom(4096))
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    for path, match in ((truncated, "truncated, corrupted"), (garbage, "truncated, corrupted"),
                        (empty, "empty file"), (tmp_path / "missing.onnx", "no such ONNX")):
        with pytest.raises(runner.RunnerError, match=match):
            runner.OnnxSeparator(path)


def test_runner_bad_inputs(tiny_onnx, tmp_path):
    import soundfile as sf

    runner = _load_runner()
    model = runner.OnnxSeparator(tiny_onnx)
    good = np.zeros((1, 2, 1000), np.float32)
    for bad, match in ((good[0], "rank 3"), (good.astype(np.float64), "dtype float32"),
                       (np.zeros((1, 3, 1000), np.float32), "expected 2 channels"),
                       (good.tolist(), "numpy array")):
        with pytest.raises(runner.RunnerError, match=match):
            model(bad)
    # a 3-channel file: clear error and no output written
    wav = tmp_path / "three.wav"
    sf.write(wav, np.zeros((4000, 3), np.float32), 44100)
    out = tmp_path / "out"
    with pytest.raises(runner.RunnerError, match="expected 2 channel"):
        runner.separate_file(model, wav, out)
    assert not any(p.is_file() for p in out.rglob("*")) if out.exists() else True
    # mono is duplicated; existing outputs are kept unless overwrite
    mono = tmp_path / "mono.flac"
    sf.write(mono, (0.1 * np.sin(np.arange(5000) / 7.0)).astype(np.float32), 44100)
    paths = runner.separate_file(model, mono, out, fmt="flac")
    assert sorted(p.name for p in paths.values()) == ["accompaniment.flac", "vocals.flac"]
    with pytest.raises(runner.RunnerError, match="output exists"):
        runner.separate_file(model, mono, out, fmt="flac")
    runner.separate_file(model, mono, out, fmt="flac", overwrite=True)
    assert not list(out.rglob("*.tmp"))


def test_cli_export_and_separate_onnx(trained, tmp_path):
    from kerasep import cli
    from kerasep.export import save_keras

    keras_path = save_keras(trained, tmp_path / "tiny.keras")
    onnx_path = tmp_path / "tiny.onnx"
    assert cli.main(["export", keras_path, "--format", "onnx", "-o", str(onnx_path)]) == 0
    assert cli.main(["export", keras_path, "-o", str(onnx_path)]) == 1  # exists
    assert cli.main(["export", "no-such-model", "-o", str(tmp_path / "x.onnx")]) == 2
    src = MUSDB_HQ_ROOT / "test" / TRACK / "vocals.wav"
    out = tmp_path / "sep"
    assert cli.main(["separate", str(src), "-m", str(onnx_path), "--backend", "onnx", "-o", str(out), "-q"]) == 0
    assert sorted(p.name for p in (out / "vocals").iterdir()) == ["accompaniment.wav", "vocals.wav"]
