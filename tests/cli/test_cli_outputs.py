"""`kerasep separate` outputs: --format mp3/ogg with --bitrate/--quality, --stems (with and
without --two-stems), file modes from the umask, for both backends; `kerasep export` file modes.
Tiny models on real audio (the first 1.5 s of Spleeter's example song)."""
import json
import os
import subprocess

import numpy as np
import pytest
import soundfile as sf

from kerasep import cli
from testing import models, song  # noqa: F401  (shared fixtures)
from testing import tiny_unet

STEMS = ["vocals", "drums", "rest"]


def run_cli(*args):
    return cli.main([str(a) for a in args])


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def listing(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) if folder.exists() else []


def bitrate(path):
    proc = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=bit_rate", "-of", "json", str(path)],
                          capture_output=True, text=True, check=True)
    return int(json.loads(proc.stdout)["format"]["bit_rate"])


@pytest.mark.parametrize("backend", ["keras", "onnx"])
def test_mp3_at_exact_bitrate_and_ogg_quality(backend, models, song, tmp_path):
    out = tmp_path / "mp3"
    assert run_cli("separate", song, "-m", models[backend], "--backend", backend, "-o", out, "-q",
                   "--format", "mp3", "--bitrate", "128k") == 0
    assert listing(out) == ["song"] + [f"song/{s}.mp3" for s in sorted(STEMS)]  # no temporary file left
    for s in STEMS:
        assert sf.info(out / "song" / f"{s}.mp3").format == "MP3"
        assert abs(bitrate(out / "song" / f"{s}.mp3") - 128000) < 0.03 * 128000
    y, sr = sf.read(out / "song" / "vocals.mp3", dtype="float32")
    assert sr == 44100 and y.shape[1] == 2 and np.abs(y).max() > 0
    out = tmp_path / "ogg"
    assert run_cli("separate", song, "-m", models[backend], "--backend", backend, "-o", out, "-q",
                   "--format", "ogg", "--quality", "0.8") == 0
    info = sf.info(out / "song" / "drums.ogg")
    assert (info.format, info.subtype, info.samplerate) == ("OGG", "VORBIS", 44100)


@pytest.mark.parametrize("flags, message", [
    (["--format", "ogg", "--bitrate", "128k"], "--bitrate: Ogg Vorbis is written with variable bitrate only"),
    (["--format", "wav", "--bitrate", "128k"], "--bitrate applies to --format mp3 or ogg only"),
    (["--format", "mp3", "--bitrate", "100k"], "--bitrate: expected one of the MP3 bitrates"),
    (["--format", "mp3", "--quality", "1.5"], r"--quality: expected a number in [0, 1]"),
    (["--format", "mp3", "--subtype", "PCM_24"], "--subtype applies to --format wav or flac"),
    (["--format", "mp3", "--bitrate", "128k", "--quality", "0.5"], "--bitrate and --quality exclude each other"),
])
def test_encoder_flags_refused_before_any_work(flags, message, song, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("separate", song, "-m", tmp_path / "none.keras", "-o", out, *flags) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("backend", ["keras", "onnx"])
def test_stems_subset(backend, models, song, tmp_path, capsys):
    model = models[backend]
    out = tmp_path / "out"
    assert run_cli("separate", song, "-m", model, "--backend", backend, "-o", out, "-q",
                   "--stems", "rest, vocals") == 0
    assert listing(out / "song") == ["rest.wav", "vocals.wav"]
    # with --two-stems, --stems picks among the final stems (STEM, no_STEM)
    out = tmp_path / "two"
    assert run_cli("separate", song, "-m", model, "--backend", backend, "-o", out, "-q",
                   "--two-stems", "drums", "--stems", "no_drums") == 0
    assert listing(out / "song") == ["no_drums.wav"]
    full = tmp_path / "full"
    assert run_cli("separate", song, "-m", model, "--backend", backend, "-o", full, "-q") == 0
    rest = sum(sf.read(full / "song" / f"{s}.wav", dtype="float32")[0] for s in ("vocals", "rest"))
    no_drums = sf.read(out / "song" / "no_drums.wav", dtype="float32")[0]
    np.testing.assert_allclose(no_drums, rest, atol=3 / 32768)  # two 16-bit roundings
    capsys.readouterr()
    assert run_cli("separate", song, "-m", model, "--backend", backend, "-o", tmp_path / "bad", "--stems", "piano") == 2
    assert f"--stems: unknown stem 'piano'; expected one of {STEMS}" in capsys.readouterr().err
    assert run_cli("separate", song, "-m", model, "--backend", backend, "-o", tmp_path / "bad",
                   "--two-stems", "drums", "--stems", "vocals") == 2
    assert "--stems: unknown stem 'vocals'; expected one of ['drums', 'no_drums']" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_stems_of_a_zoo_name_checked_before_loading(song, tmp_path, capsys, monkeypatch):
    from kerasep import zoo

    monkeypatch.setattr(zoo, "load", lambda *a, **k: pytest.fail("loaded the model"))
    assert run_cli("separate", song, "-m", "unet-2stems", "-o", tmp_path, "--stems", "drums") == 2
    assert "--stems: unknown stem 'drums'; expected one of ['vocals', 'accompaniment']" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["keras", "onnx"])
def test_separate_outputs_get_the_umask_mode(backend, models, song, tmp_path, umask022):
    out = tmp_path / "out"
    assert run_cli("separate", song, "-m", models[backend], "--backend", backend, "-o", out, "-q",
                   "--format", "flac") == 0
    modes = {p.name: p.stat().st_mode & 0o777 for p in (out / "song").iterdir()}
    assert modes == {f"{s}.flac": 0o644 for s in STEMS}


def test_exports_get_the_umask_mode(tmp_path, umask022):
    from kerasep import export

    model = tiny_unet()
    for name in ("tiny.keras", "tiny.onnx"):
        assert export.export(model, tmp_path / name, with_runner=name.endswith(".onnx"))
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
    assert (tmp_path / "run_onnx.pyz").stat().st_mode & 0o777 == 0o755
    saved = tmp_path / "tiny_saved_model"
    export.export(model, saved, format="saved_model")
    modes = {p.relative_to(saved).as_posix(): p.stat().st_mode & 0o777 for p in [saved, *saved.rglob("*")]}
    assert modes["."] == 0o755 and modes["saved_model.pb"] == 0o644 and modes["variables"] == 0o755
    assert set(modes.values()) == {0o644, 0o755}
    assert all(m == 0o644 for k, m in modes.items() if (saved / k).is_file())


def test_standalone_runner_takes_the_same_output_flags(models, song, tmp_path, capsys, umask022):
    """python -m kerasep.export.runner (and its run_onnx.pyz zipapp): --format mp3/ogg, --bitrate,
    --quality, --stems as `kerasep separate --backend onnx`."""
    from kerasep.export import runner

    out = tmp_path / "out"
    assert runner.main([str(models["onnx"]), str(song), "-o", str(out), "-q", "--format", "mp3",
                        "--bitrate", "192k", "--stems", "vocals"]) == 0
    assert listing(out) == ["song", "song/vocals.mp3"]
    assert abs(bitrate(out / "song" / "vocals.mp3") - 192000) < 0.03 * 192000
    assert (out / "song" / "vocals.mp3").stat().st_mode & 0o777 == 0o644
    assert runner.main([str(models["onnx"]), str(song), "-o", str(out), "--format", "ogg", "--bitrate", "192k"]) == 1
    assert "--bitrate: Ogg Vorbis" in capsys.readouterr().err
    assert listing(out) == ["song", "song/vocals.mp3"]
