"""The `kerasep` command line on real audio, including bad input."""
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from kerasep import audio, cli
from testing import MIXTURE_MONO_MP3, MIXTURE_MP3


def run_cli(*args):
    return cli.main([str(a) for a in args])


def test_list(capsys):
    assert run_cli("list") == 0
    out = capsys.readouterr().out
    assert "unet-2stems" in out and "MIT" in out


@pytest.mark.slow
def test_separate_writes_stems_and_refuses_overwrite(unet_2stems, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("separate", MIXTURE_MP3, MIXTURE_MONO_MP3, "-o", out, "-q", "--chunk-seconds", 5) == 0
    for name in ("audio_example", "audio_example_mono"):
        for stem in ("vocals", "accompaniment"):
            y, sr = sf.read(out / name / f"{stem}.wav", dtype="float32")
            assert sr == 44100 and y.shape == (479832, 2)
    # the stems add up to (a low-passed copy of) the mixture
    mix = audio.load(MIXTURE_MP3)
    total = sum(sf.read(out / "audio_example" / f"{s}.wav", dtype="float32")[0] for s in ("vocals", "accompaniment"))
    assert np.corrcoef(total[:, 0], mix[:, 0])[0, 1] > 0.99

    before = (out / "audio_example" / "vocals.wav").read_bytes()
    assert run_cli("separate", MIXTURE_MP3, "-o", out, "-q") == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "audio_example" / "vocals.wav").read_bytes() == before
    assert run_cli("separate", MIXTURE_MP3, "-o", out, "-q", "--overwrite", "--format", "flac") == 0
    assert (out / "audio_example" / "vocals.flac").is_file()
    vocals_model = tmp_path / "v"
    assert run_cli("separate", MIXTURE_MP3, "-m", "unet-vocals", "-o", vocals_model, "-q") == 0
    assert sorted(p.name for p in (vocals_model / "audio_example").iterdir()) == ["vocals.wav"]


def _bad_inputs(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(os.urandom(3000))
    nan = tmp_path / "nan.wav"
    x = np.zeros((44100, 2), np.float32)
    x[100, 1] = np.nan
    sf.write(nan, x, 44100, subtype="FLOAT")
    zero = tmp_path / "zero.wav"
    sf.write(zero, np.zeros((0, 2), np.float32), 44100)
    six = tmp_path / "six.wav"
    sf.write(six, np.zeros((4410, 6), np.float32), 44100)
    return {"empty": empty, "garbage": garbage, "nan": nan, "zero": zero, "six": six}


@pytest.mark.slow
def test_bad_inputs_give_clear_errors_and_no_output(unet_2stems, tmp_path, capsys):
    bad = _bad_inputs(tmp_path)
    expected = {"empty": "empty", "garbage": "garbage.mp3", "nan": "NaN", "zero": "no samples|0 samples|zero", "six": "6"}
    import re

    for key, path in bad.items():
        out = tmp_path / f"out_{key}"
        assert run_cli("separate", path, "-o", out, "-q") == 1, key
        err = capsys.readouterr().err
        assert str(path.name) in err, (key, err)
        assert re.search(expected[key], err, re.I), (key, err)
        leftovers = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
        assert leftovers == [], (key, leftovers)
    # a 6-channel file separates when a downmix is asked for
    assert run_cli("separate", bad["six"], "-o", tmp_path / "dm", "-q", "--downmix") == 0


def test_missing_input_and_unknown_model(tmp_path, capsys):
    assert run_cli("separate", tmp_path / "nope.wav", "-o", tmp_path) == 2
    assert "no such input" in capsys.readouterr().err
    assert run_cli("separate", MIXTURE_MP3, "-m", "unet-9stems", "-o", tmp_path) == 2
    assert "unet-2stems" in capsys.readouterr().err
    assert run_cli("separate", "-o", tmp_path) == 2


def test_console_script_entry_point():
    proc = subprocess.run([sys.executable, "-m", "kerasep.cli", "list"], capture_output=True, text=True)
    assert proc.returncode == 0 and "unet-vocals" in proc.stdout
