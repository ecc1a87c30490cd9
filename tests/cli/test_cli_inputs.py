"""`kerasep separate`: folder inputs, MUSDB18-HQ naming, and everything refused before any work
(name collisions, existing outputs, output folders that are files or cannot be written), for
both backends. Tiny models on real audio (the first 1.5 s of Spleeter's example song)."""
import os

import numpy as np
import pytest
import soundfile as sf

from kerasep import audio, cli
from testing import MIXTURE_MP3, TRACK, tiny_unet

STEMS = ["vocals", "drums", "rest"]


def run_cli(*args):
    return cli.main([str(a) for a in args])


@pytest.fixture(scope="module")
def clip():
    """1.5 s of real audio (44.1 kHz stereo)."""
    return audio.load(MIXTURE_MP3, duration=1.5)


def write_clip(clip, *paths):
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        sf.write(p, clip, 44100, subtype="PCM_16")


@pytest.fixture(scope="module")
def tiny_keras(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.keras"
    tiny_unet().save(path)
    return path


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    from kerasep import export

    path = tmp_path_factory.mktemp("tiny_onnx") / "tiny.onnx"
    export.export(tiny_unet(), path)
    return path


def files_under(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) \
        if folder.exists() else []


def test_folder_input_top_level_by_default_and_glob(tiny_keras, clip, tmp_path, capsys):
    songs = tmp_path / "songs"
    write_clip(clip, songs / "b.wav", songs / "a.flac", songs / "live" / "c.wav")
    (songs / "notes.txt").write_text("not audio")
    out = tmp_path / "out"
    assert run_cli("separate", songs, "-m", tiny_keras, "-o", out, "-q") == 0
    err = capsys.readouterr().err
    assert f"{songs}: 2 audio file(s) found" in err
    assert err.index("a.flac") < err.index("b.wav")  # sorted
    assert files_under(out) == [f"{n}/{s}.wav" for n in ("a", "b") for s in sorted(STEMS)]
    out2 = tmp_path / "out2"
    assert run_cli("separate", songs, "--glob", "**/*.wav", "-m", tiny_keras, "-o", out2, "-q") == 0
    assert "2 audio file(s) found (--glob '**/*.wav')" in capsys.readouterr().err
    assert sorted({p.split("/")[0] for p in files_under(out2)}) == ["b", "c"]
    # an output folder inside the input folder: its stems are not inputs of the next run
    inside = songs / "separated"
    for _ in range(2):
        assert run_cli("separate", songs, "--glob", "**/*.wav", "-m", tiny_keras, "-o", inside, "-q",
                       "--overwrite") == 0
        assert "2 audio file(s) found" in capsys.readouterr().err


def test_folder_without_audio_is_a_clear_error(tiny_keras, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    out = tmp_path / "out"
    assert run_cli("separate", empty, "-m", tiny_keras, "-o", out) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and "'*'" in err and "--glob" in err
    assert run_cli("separate", empty, "--glob", "**/*.mp3", "-m", tiny_keras, "-o", out) == 2
    assert "'**/*.mp3'" in capsys.readouterr().err
    assert not out.exists()


def test_musdb_hq_mixture_named_after_its_track(tiny_keras, musdb_hq_root, tmp_path, capsys):
    from kerasep.export.runner import output_name

    assert output_name("a/Some Track/mixture.wav") == "Some Track"
    assert output_name("a/song.stem.mp4") == "song" and output_name("x/vocals.wav") == "vocals"
    out = tmp_path / "out"
    assert run_cli("separate", musdb_hq_root, "--glob", "**/mixture.wav", "-m", tiny_keras, "-o", out, "-q",
                   "--stems", "vocals") == 0
    assert "1 audio file(s) found" in capsys.readouterr().err
    assert files_under(out) == [f"{TRACK}/vocals.wav"]


@pytest.mark.parametrize("backend", ["keras", "onnx"])
def test_name_collision_refused_before_any_work(backend, clip, tmp_path, capsys):
    a, b = tmp_path / "a" / "song.wav", tmp_path / "b" / "song.flac"
    write_clip(clip, a, b)
    out = tmp_path / "out"
    # the model does not exist: the refusal comes before it is looked for
    assert run_cli("separate", a, b, "-m", tmp_path / "none.keras", "-o", out, "--backend", backend) == 2
    err = capsys.readouterr().err
    assert str(a) in err and str(b) in err and str(out / "song") in err and "--output" in err
    assert not out.exists()
    # the same file twice is separated once, not a collision
    files, error = cli._expand_inputs([a, a], "*", out)
    assert files == [a] and error is None


@pytest.mark.parametrize("backend", ["keras", "onnx"])
def test_existing_outputs_of_a_model_file_refused_before_separating(backend, tiny_keras, tiny_onnx, clip,
                                                                    tmp_path, capsys, monkeypatch):
    from kerasep import inference
    from kerasep.export import runner

    model = tiny_keras if backend == "keras" else tiny_onnx
    first, second = tmp_path / "first.wav", tmp_path / "second.wav"
    write_clip(clip, first, second)
    out = tmp_path / "out"
    (out / "second").mkdir(parents=True)
    sf.write(out / "second" / "drums.wav", np.zeros((10, 2), np.float32), 44100)
    calls = []
    monkeypatch.setattr(inference, "separate_array", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(runner.chunks, "iter_separate", lambda *a, **k: calls.append(a))
    assert run_cli("separate", first, second, "-m", model, "-o", out, "--backend", backend) == 1
    err = capsys.readouterr().err
    assert str(out / "second" / "drums.wav") in err and "--overwrite" in err
    assert calls == [] and files_under(out) == ["second/drums.wav"]


@pytest.mark.parametrize("backend", ["keras", "onnx"])
def test_output_folder_that_is_a_file_refused(backend, clip, tmp_path, capsys):
    song = tmp_path / "song.wav"
    write_clip(clip, song)
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    assert run_cli("separate", song, "-m", tmp_path / "none.keras", "-o", a_file, "--backend", backend) == 2
    assert f"--output: {a_file} is a file" in capsys.readouterr().err
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "song").write_text("x")  # where the stems' folder would be
    assert run_cli("separate", song, "-m", tmp_path / "none.keras", "-o", tmp_path / "out", "--backend", backend) == 2
    assert f"{tmp_path / 'out' / 'song'}: it is a file" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["keras", "onnx"])
def test_unwritable_output_folder_refused(backend, clip, tmp_path, capsys, monkeypatch):
    song = tmp_path / "song.wav"
    write_clip(clip, song)
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: what os.access would say for another user
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m: False if os.fspath(p) == str(locked) else real(p, m))
    else:
        locked.chmod(0o555)
    try:
        assert run_cli("separate", song, "-m", tmp_path / "none.keras", "-o", locked / "out",
                       "--backend", backend) == 2
    finally:
        locked.chmod(0o755)
    assert f"no write permission in {locked}" in capsys.readouterr().err
    assert files_under(locked) == []
