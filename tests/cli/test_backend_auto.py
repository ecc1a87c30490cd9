"""``kerasep separate --backend auto`` (the default) and ``kerasep.separate(backend=...)``: ONNX
when onnxruntime imports and the model exports with its own chunking, else Keras; the export
verified and cached once; the same stems either way."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from kerasep import cli
from kerasep.backend import tf
from kerasep.models.separator import ChunkPolicy, Separator
from testing import REPO, tiny_unet

pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")


def run_cli(*args):
    return cli.main([str(a) for a in args])


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERASEP_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def clip(tmp_path_factory, musdb_hq_track):
    """2 s of the real MUSDB18 mixture, float WAV (the stems are compared as written)."""
    mix, rate = sf.read(musdb_hq_track / "mixture.wav", dtype="float32", frames=2 * 44100)
    path = tmp_path_factory.mktemp("clip") / "clip.wav"
    sf.write(path, mix, rate, subtype="FLOAT")
    return path


@pytest.fixture(scope="module")
def tiny_keras(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.keras"
    tiny_unet().save(path)
    return path


def _stems(folder):
    return {p.stem: sf.read(p, dtype="float32")[0] for p in sorted(folder.glob("*.wav"))}


def test_auto_exports_once_and_runs_onnx(home, clip, tiny_keras, tmp_path, capsys):
    assert run_cli("separate", clip, "-m", tiny_keras, "-o", tmp_path / "a", "-q", "-v", "--subtype", "FLOAT") == 0
    err = capsys.readouterr().err
    cached = sorted((home / "onnx").glob("tiny-*.onnx"))
    assert len(cached) == 1 and cached[0].with_suffix(".json").is_file()
    assert f"exporting tiny.keras to ONNX (once; cached in {home / 'onnx'})" in err
    assert re.search(r"exported tiny\.keras in \d+ s \(checked against Keras on a probe: relative error", err)
    assert f"backend: onnx (onnxruntime; {cached[0]})" in err
    # the second run takes the cached, verified file: no export
    assert run_cli("separate", clip, "-m", tiny_keras, "-o", tmp_path / "b", "-q", "-v", "--subtype", "FLOAT") == 0
    err = capsys.readouterr().err
    assert "exporting" not in err and "backend: onnx" in err
    a, b = _stems(tmp_path / "a" / "clip"), _stems(tmp_path / "b" / "clip")
    assert sorted(a) == ["drums", "rest", "vocals"] and all(np.array_equal(a[t], b[t]) for t in a)
    # Keras-only flags take the Keras backend
    assert run_cli("separate", clip, "-m", tiny_keras, "-o", tmp_path / "c", "-q", "-v", "--shifts", "1") == 0
    assert "backend: keras (--shifts runs on the Keras backend only)" in capsys.readouterr().err


def test_auto_takes_keras_when_onnxruntime_cannot_be_imported(home, clip, tiny_keras, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "onnxruntime.py").write_text("raise ImportError('onnxruntime blocked by the test')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker), str(REPO)]), KERASEP_HOME=str(home))
    res = subprocess.run([sys.executable, "-m", "kerasep.cli", "separate", str(clip), "-m", str(tiny_keras),
                          "-o", str(tmp_path / "out"), "-q", "-v"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "backend: keras (onnxruntime cannot be imported (pip install 'kerasep[onnx]'))" in res.stderr
    assert not (home / "onnx").exists()
    assert sorted(_stems(tmp_path / "out" / "clip")) == ["drums", "rest", "vocals"]


def test_auto_takes_keras_for_a_model_the_runner_cannot_cut_alike(home, clip, tmp_path, capsys):
    from kerasep.models.demucs import Demucs

    model = Demucs(depth=2, channels=4, segment_seconds=1.0)
    model.build((None, 2, None))
    path = tmp_path / "small_demucs.keras"
    model.save(path)
    assert run_cli("separate", clip, "-m", path, "-o", tmp_path / "out", "-q", "-v") == 0
    err = capsys.readouterr().err
    assert "backend: keras (the ONNX runner would cut it otherwise than its chunk policy ('segment'" in err
    assert "exporting" not in err and not (home / "onnx").exists()


class InverseFFTSeparator(Separator):
    """One stem, ``irfft(rfft(x))``: an exact chunk grid, but a graph tf2onnx cannot convert."""

    targets = ["same"]
    nb_channels, sample_rate = 2, 44100
    chunking = ChunkPolicy("exact", alignment=1, context=0)

    def call(self, x, training=False):
        n = tf.shape(x)[-1]
        return {"same": tf.signal.irfft(tf.signal.rfft(x), fft_length=[n])}


def test_capability_refuses_unconvertible_graphs_without_exporting(home, monkeypatch):
    from kerasep import export
    from kerasep.export.cache import onnx_engine
    from kerasep.export.capability import onnx_problem

    monkeypatch.setattr(export, "export", lambda *a, **k: pytest.fail("exported"))
    assert onnx_problem(tiny_unet()) is None
    assert "IRFFT" in onnx_problem(InverseFFTSeparator()) and "tf2onnx cannot convert" in onnx_problem(InverseFFTSeparator())
    with pytest.raises(ValueError, match="backend='onnx' is not available for this model: .*IRFFT"):
        onnx_engine(InverseFFTSeparator(), backend="onnx")
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'keras', 'onnx'\). Received: backend='tf'"):
        onnx_engine(InverseFFTSeparator(), backend="tf")


def test_a_failing_probe_check_is_not_cached_and_auto_falls_back(home, clip, tiny_keras, tmp_path, capsys,
                                                                monkeypatch):
    from kerasep.export import capability

    real = capability.verify_export

    def strict(model, path, **kwargs):
        return real(model, path, tolerance=-1.0)  # every export fails the check

    monkeypatch.setattr(capability, "verify_export", strict)
    assert run_cli("separate", clip, "-m", tiny_keras, "-o", tmp_path / "out", "-q", "-v") == 0
    err = capsys.readouterr().err
    assert "differs from the Keras model on a 1 s probe" in err and "separating with Keras" in err
    assert "backend: keras (the ONNX export failed" in err
    assert list((home / "onnx").glob("*.onnx")) == []


@pytest.mark.slow
def test_unet_2stems_same_stems_on_every_backend(unet_2stems, clip, tmp_path, capsys):
    """The CLI's default (auto → ONNX) and --backend keras, and the Python API's three choices,
    on the real MUSDB18 mixture with the pretrained weights (the export cached in the session's
    KERASEP_HOME)."""
    import kerasep

    assert run_cli("separate", clip, "-o", tmp_path / "auto", "-q", "-v", "--subtype", "FLOAT") == 0
    assert "backend: onnx" in capsys.readouterr().err
    assert run_cli("separate", clip, "-o", tmp_path / "keras", "-q", "-v", "--subtype", "FLOAT",
                   "--backend", "keras") == 0
    auto, keras = _stems(tmp_path / "auto" / "clip"), _stems(tmp_path / "keras" / "clip")
    assert sorted(auto) == ["accompaniment", "vocals"]
    assert max(float(np.max(np.abs(auto[t] - keras[t]))) for t in auto) <= 1e-4
    api = {b: kerasep.separate(clip, model="unet-2stems", backend=b) for b in ("auto", "keras", "onnx")}
    for b in ("auto", "onnx"):
        assert max(float(np.max(np.abs(api[b][t] - api["keras"][t]))) for t in auto) <= 1e-4
    assert max(float(np.max(np.abs(api["keras"][t] - keras[t]))) for t in auto) <= 1e-6
    with pytest.raises(ValueError, match="shifts are not available with backend='onnx'"):
        kerasep.separate(clip, model="unet-2stems", backend="onnx", shifts=1)


def _sdr(estimate, reference):
    return 10 * np.log10(np.sum(reference ** 2) / max(np.sum((estimate - reference) ** 2), 1e-30))


def test_auto_runs_onnx_on_inputs_only_ffmpeg_decodes_and_on_downmix(home, tiny_keras, tmp_path, capsys):
    """The README's first command: ``--example`` is the MUSDB18 ``.stem.mp4``, which soundfile (the
    runner's reader) cannot decode: it is decoded by ffmpeg to a disk-backed array and separated by
    the ONNX runner, with the stems Keras writes (≥ 60 dB SDR apart: the random tiny U-Net's ratio
    masks amplify the engines' float rounding to ~1e-3 of the peak); ``--downmix`` of a 6-channel
    file alike."""
    from pathlib import Path

    import stempeg

    name = Path(stempeg.example_stem_path()).name.split(".")[0]
    for backend in ("auto", "keras"):
        assert run_cli("separate", "--example", "-m", tiny_keras, "-o", tmp_path / backend, "-q", "-v",
                       "--subtype", "FLOAT", "--backend", backend) == 0
        assert ("backend: onnx" in capsys.readouterr().err) == (backend == "auto")
    auto, keras = _stems(tmp_path / "auto" / name), _stems(tmp_path / "keras" / name)
    assert sorted(auto) == ["drums", "rest", "vocals"]
    assert min(_sdr(auto[t], keras[t]) for t in auto) >= 60
    assert not list((home / "tmp").glob("*/*")), "the decoded input is removed"

    six = tmp_path / "six.wav"
    mix, rate = sf.read(REPO / "tests" / "data" / "audio_example.mp3", dtype="float32", frames=44100)
    sf.write(six, np.concatenate([mix, 0.5 * mix, -mix], axis=1), rate, subtype="FLOAT")
    assert run_cli("separate", six, "-m", tiny_keras, "-o", tmp_path / "dm", "-q", "-v", "--subtype", "FLOAT") == 1
    assert "pass --downmix" in capsys.readouterr().err
    for backend in ("auto", "keras"):
        assert run_cli("separate", six, "-m", tiny_keras, "-o", tmp_path / f"dm_{backend}", "-q", "-v",
                       "--subtype", "FLOAT", "--downmix", "--backend", backend) == 0
    assert "backend: onnx" in capsys.readouterr().err
    auto, keras = _stems(tmp_path / "dm_auto" / "six"), _stems(tmp_path / "dm_keras" / "six")
    assert sorted(auto) == ["drums", "rest", "vocals"]
    assert min(_sdr(auto[t], keras[t]) for t in auto) >= 60


def test_auto_takes_keras_for_families_faster_on_keras(home, tmp_path):
    """The RoFormers' ``auto_backend`` is "keras" (their TF path measured faster than onnxruntime):
    ``auto`` takes Keras for a zoo name (decided from the registry, before anything loads) and
    for a model file once loaded, saying why; ``backend="onnx"`` still exports."""
    from kerasep.export.cache import onnx_engine
    from kerasep.models.roformer import BSRoformer

    model = BSRoformer(targets=["vocals"], dim=8, depth=1, dim_head=4, heads=2, stft_n_fft=256, stft_hop_length=64,
                       stft_win_length=256, dim_freqs_in=129, freqs_per_bands=(64, 65), chunk_size=22050)
    model.build((None, 2, None))
    loads = []
    session, keras_model, reason = onnx_engine("bs-roformer-viperx-1297", backend="auto",
                                               load=lambda name: loads.append(name) or model)
    assert session is None and keras_model is model and loads == ["bs-roformer-viperx-1297"]
    assert reason == "BSRoformer runs faster on Keras than in onnxruntime (--backend onnx to choose ONNX)"
    path = tmp_path / "roformer.keras"
    model.save(path)
    session, keras_model, reason = onnx_engine(str(path), backend="auto", load=lambda p: model)
    assert session is None and "runs faster on Keras" in reason
    assert not (home / "onnx").exists() or not list((home / "onnx").glob("*.onnx"))
    session, _, _ = onnx_engine(str(path), backend="onnx", load=lambda p: model)
    assert session is not None and session.targets == ["vocals"]
