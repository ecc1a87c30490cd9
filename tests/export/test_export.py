"""Exports (.keras, SavedModel, single-file ONNX) of a small U-Net trained with ``fit``, loaded
back and compared with the Keras model on real audio; the standalone onnxruntime runner
(:mod:`kerasep.export.runner`, also as the ``run_onnx.pyz`` zipapp ``with_runner=True`` writes)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from testing import REPO

pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

TOL = 1e-4
TINY = dict(T=64, F=64, n_fft=256, hop_length=64, conv_n_filters=(8, 16, 32), dropout=0.5)


def _max_diff(a, b):
    return {t: float(np.max(np.abs(np.asarray(a[t]) - np.asarray(b[t])))) for t in a}


@pytest.fixture(scope="module")
def stems(musdb_hq_track):
    from kerasep import audio

    return {name: audio.load(musdb_hq_track / f"{name}.wav") for name in ("mixture", "vocals")}


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
    from kerasep.models import Separator

    class TinyWave(Separator):  # the contract's defaults: one waveform network, crossfaded chunks
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


def test_non_separator_refused(tmp_path):
    """A plain keras.Model is refused with the contract named, not probed for attributes."""
    from kerasep import export
    from kerasep.backend import keras
    from kerasep.models import NotASeparatorError

    plain = keras.Sequential([keras.Input((2, 8)), keras.layers.Dense(8)])
    with pytest.raises(NotASeparatorError, match="kerasep separator"):
        export.export(plain, tmp_path / "never_written.onnx")
    assert not list(tmp_path.iterdir())


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


def test_runner_imports_neither_tensorflow_nor_kerasep():
    _fresh_python("import kerasep.export.runner, sys\n"
                  "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
                  "import kerasep.export\n"
                  "assert 'tensorflow' not in sys.modules and 'onnx' not in sys.modules\n")
    modules = sorted((REPO / "kerasep" / "export" / "runner").glob("*.py"))
    assert len(modules) > 2 and all(len(p.read_text().splitlines()) < 500 for p in modules)
    for path in modules:
        source = path.read_text()
        # self-contained: a deployment gets these modules in one zipapp (numpy, onnxruntime, soundfile)
        assert "import kerasep" not in source and "from kerasep" not in source, path.name
    assert not (REPO / "export" / "run_onnx.py").exists()  # one source, no copy in the repo
    assert not (REPO / "export" / "run_onnx.pyz").exists()


def _blocked(folder, *packages):
    """A folder for PYTHONPATH in which importing ``packages`` fails (and leaves a marker)."""
    for name in packages:
        (folder / name).mkdir(parents=True)
        marker = folder / f"{name}.imported"
        (folder / name / "__init__.py").write_text(
            f"open({str(marker)!r}, 'w').close()\nraise ImportError('{name} is blocked in this test')\n"
        )
    return folder


def _read_stems(folder, targets):
    import soundfile as sf

    return {t: sf.read(str(folder / f"{t}.wav"), dtype="int16")[0] for t in targets}


def test_export_with_runner_runs_without_tensorflow_or_kerasep(trained, stems, tmp_path):
    """``with_runner=True`` writes ``run_onnx.pyz`` beside the model; it separates a file in a
    clean process where TensorFlow and kerasep cannot be imported, as the in-process runner
    does; ``python -m kerasep.export.runner`` does the same without TensorFlow."""
    import soundfile as sf

    from kerasep import export
    from kerasep.export import runner

    deploy = tmp_path / "deploy"
    onnx_path = Path(export.export(trained, deploy / "tiny.onnx", with_runner=True))
    script = deploy / "run_onnx.pyz"
    assert script.read_bytes() == export.runner_archive()
    assert os.access(script, os.X_OK)
    wav = tmp_path / "short.wav"
    sf.write(str(wav), stems["mixture"][: 2 * 44100 + 123], 44100)

    model = runner.OnnxSeparator(onnx_path, providers=["CPUExecutionProvider"])
    runner.separate_file(model, wav, tmp_path / "ref", chunk_seconds=0.5)  # in process
    ref = _read_stems(tmp_path / "ref" / "short", model.targets)
    args = [str(onnx_path), str(wav), "--chunk-seconds", "0.5", "--cpu", "-q"]
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    work = tmp_path / "elsewhere"  # outside the repository
    work.mkdir()
    runs = {
        "copy": ([str(script)], _blocked(tmp_path / "no_tf_no_kerasep", "tensorflow", "kerasep")),
        "module": (["-m", "kerasep.export.runner"], _blocked(tmp_path / "no_tf", "tensorflow")),
    }
    for label, (command, blocked) in runs.items():
        out = tmp_path / f"out_{label}"
        res = subprocess.run([sys.executable, *command, *args, "-o", str(out)], cwd=work, capture_output=True,
                             text=True, timeout=300, env=dict(env, PYTHONPATH=str(blocked)))
        assert res.returncode == 0, (label, res.stderr[-3000:])
        assert not list(blocked.glob("*.imported")), (label, "tensorflow or kerasep was imported")
        got = _read_stems(out / "short", model.targets)
        for t in model.targets:
            assert got[t].shape == ref[t].shape == (2 * 44100 + 123, 2)
            assert np.max(np.abs(got[t].astype(np.int32) - ref[t])) <= 1, (label, t)  # 16-bit PCM
    res = subprocess.run([sys.executable, "-m", "kerasep.export.runner", "--help"], cwd=work, capture_output=True,
                         text=True, timeout=120, env=dict(env, PYTHONPATH=str(runs["module"][1])))
    assert res.returncode == 0 and "usage: python -m kerasep.export.runner" in res.stdout
    res = subprocess.run([sys.executable, str(script), "--help"], cwd=work, capture_output=True, text=True,
                         timeout=120, env=dict(env, PYTHONPATH=str(runs["copy"][1])))
    assert res.returncode == 0 and "usage: run_onnx.pyz" in res.stdout


def test_write_runner_refuses_a_different_file(trained, tmp_path):
    from kerasep import export

    source = export.runner_archive()
    path = Path(export.write_runner(tmp_path))
    assert path == tmp_path / "run_onnx.pyz" and path.read_bytes() == source
    assert export.write_runner(tmp_path) == str(path)  # identical: kept
    path.write_text("print('a local edit')\n")
    with pytest.raises(FileExistsError, match="run_onnx.pyz exists"):
        export.write_runner(tmp_path)
    # refused before exporting anything
    with pytest.raises(FileExistsError, match="run_onnx.pyz exists"):
        export.export(trained, tmp_path / "tiny.onnx", with_runner=True)
    assert not (tmp_path / "tiny.onnx").exists()
    assert path.read_text() == "print('a local edit')\n"
    export.write_runner(tmp_path, overwrite=True)
    assert path.read_bytes() == source and not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(ValueError, match="only available for format='onnx'"):
        export.export(trained, tmp_path / "tiny.keras", with_runner=True)


def test_runner_matches_kerasep_separate(trained, tiny_onnx, stems):
    """The runner's chunked separation equals kerasep.separate's (same chunking) on the same model."""
    from kerasep import inference
    from kerasep.export import runner

    mix = stems["mixture"]
    got = runner.separate_array(runner.OnnxSeparator(tiny_onnx), mix, chunk_seconds=0.5)
    ref = inference.separate_array(mix, trained, chunk_seconds=0.5)
    for t in ("vocals", "accompaniment"):
        assert got[t].shape == ref[t].shape
        assert np.max(np.abs(got[t] - np.asarray(ref[t]))) <= TOL


def test_runner_chunking_exact_and_crossfade(tiny_onnx, stems, monkeypatch):
    from kerasep.export import runner

    model = runner.OnnxSeparator(tiny_onnx)
    mix = stems["mixture"][: 3 * 44100 + 11]
    whole = model(np.ascontiguousarray(mix.T)[None])
    chunked = runner.separate_array(model, mix, chunk_seconds=0.3)
    for t in model.targets:
        assert np.max(np.abs(chunked[t] - whole[t][0].T)) <= TOL
    # a model without an exact chunk grid: context + linear crossfades whose weights sum to one
    model.chunk_context, model.chunk_alignment = None, 1
    monkeypatch.setattr(runner.chunks, "DEFAULT_CONTEXT_SECONDS", 0.2)  # where _plan reads it
    got = runner.separate_array(model, mix, chunk_seconds=0.5)
    plan = runner.plan_chunks(mix.shape[0], int(0.5 * 44100), int(0.2 * 44100), 1)
    assert len(plan) > 3
    total = np.zeros(mix.shape[0], np.float32)
    for k, (_, _, s, e) in enumerate(plan):
        total[s:e] += runner.crossfade_weights(s, e, plan, k)
    assert np.allclose(total, 1.0, atol=1e-6)
    for t in model.targets:
        ref = np.zeros_like(mix)
        for k, (_, _, s, e) in enumerate(plan):
            est = model(np.ascontiguousarray(mix[s:e].T)[None])[t][0].T
            ref[s:e] += est * runner.crossfade_weights(s, e, plan, k)[:, None]
        assert np.max(np.abs(got[t] - ref)) <= 1e-6


def test_runner_bad_model_files(tiny_onnx, tmp_path):
    from kerasep.export import runner

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

    from kerasep.export import runner

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


def test_cli_export_and_separate_onnx(trained, tmp_path, musdb_hq_track):
    from kerasep import cli
    from kerasep.export import save_keras

    keras_path = save_keras(trained, tmp_path / "tiny.keras")
    onnx_path = tmp_path / "tiny.onnx"
    assert cli.main(["export", keras_path, "--format", "onnx", "-o", str(onnx_path)]) == 0
    assert cli.main(["export", keras_path, "-o", str(onnx_path)]) == 1  # exists
    assert cli.main(["export", "no-such-model", "-o", str(tmp_path / "x.onnx")]) == 2
    src = musdb_hq_track / "vocals.wav"
    out = tmp_path / "sep"
    assert cli.main(["separate", str(src), "-m", str(onnx_path), "--backend", "onnx", "-o", str(out), "-q"]) == 0
    assert sorted(p.name for p in (out / "vocals").iterdir()) == ["accompaniment.wav", "vocals.wav"]
