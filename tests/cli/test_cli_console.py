"""What the `kerasep` commands print: no TensorFlow C++ log lines (unless -v), download and
export progress, `kerasep list`'s aligned table with the weights' cache state."""
import io
import os
import re
import subprocess
import sys

import pytest
import soundfile as sf

from kerasep import audio, cli
from testing import MIXTURE_MP3, tiny_unet

TF_NOISE = re.compile(r"cuInit|absl|^[IWE]\d{4} \d\d:\d\d:", re.M)


def kerasep(*args, env=None):
    env = dict(os.environ if env is None else env)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the user sets none: the CLI's default applies
    return subprocess.run([sys.executable, "-m", "kerasep.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=600)


def test_no_tensorflow_log_lines_in_list_and_separate(tmp_path):
    proc = kerasep("list")
    assert proc.returncode == 0 and not TF_NOISE.search(proc.stderr), proc.stderr
    model = tmp_path / "tiny.keras"
    tiny_unet().save(model)
    song = tmp_path / "song.wav"
    sf.write(song, audio.load(MIXTURE_MP3, duration=1.0), 44100)
    proc = kerasep("separate", song, "-m", model, "-o", tmp_path / "out", "-q")
    assert proc.returncode == 0, proc.stderr
    assert not TF_NOISE.search(proc.stderr), proc.stderr
    assert "wrote" in proc.stderr and (tmp_path / "out" / "song" / "vocals.wav").is_file()


def test_stderr_filter_drops_only_tensorflow_lines(capfd):
    f = cli._StderrFilter()
    try:
        for text in (
            "I0000 00:00:1796146599.746974    7360 cudart_stub.cc:31] Could not find cuda drivers\n",
            "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
            "E0000 00:00:1796146613.824143    7656 cuda_platform.cc:52] failed call to cuInit: UNKNOWN\n",
            "kerasep separate: a real error\n",
            "\rseparating:  50%|#####     |",
            "\rseparating: 100%|##########|\n",
            "Idle line that starts like a log line\n",
        ):
            os.write(2, text.encode())
    finally:
        f.close()
    err = capfd.readouterr().err
    assert err == ("kerasep separate: a real error\n\rseparating:  50%|#####     |\rseparating: 100%|##########|\n"
                   "Idle line that starts like a log line\n")


def test_verbose_keeps_the_log_level(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    assert cli.main(["list", "-v"]) == 0
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    assert cli.main(["list"]) == 0
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")  # the user's own choice is kept
    assert cli.main(["list"]) == 0 and os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1"


class FakeResponse(io.BytesIO):
    def __init__(self, data, length):
        super().__init__(data)
        self.headers = {} if length is None else {"Content-Length": str(length)}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.mark.parametrize("length", [3 << 20, None])
def test_download_progress_bar(length, tmp_path, monkeypatch, capsys):
    import hashlib

    from kerasep.zoo import weights

    data = os.urandom(3 << 20)
    monkeypatch.setattr(weights.urllib.request, "urlopen", lambda url, timeout: FakeResponse(data, length))
    monkeypatch.setattr(weights, "progress", True)
    weights._download("https://example.org/w/model.bin", tmp_path / "a", hashlib.sha256(data).hexdigest(),
                      expected_size=None)
    err = capsys.readouterr().err
    assert "downloading model.bin" in err
    if length:  # the server's size: a bar with a total
        assert "100%" in err and "3.00M/3.00M" in err
    else:  # no size known: a counter
        assert "3.00M" in err and "%" not in err
    # "auto" (the default): no bar when stderr is not a terminal (here: captured)
    monkeypatch.setattr(weights, "progress", "auto")
    weights._download("https://example.org/w/model.bin", tmp_path / "b", hashlib.sha256(data).hexdigest())
    assert capsys.readouterr().err == ""
    assert (tmp_path / "b").read_bytes() == data


def test_first_onnx_export_says_so_and_times_it(tmp_path, monkeypatch, capsys):
    from kerasep import export

    monkeypatch.setenv("KERASEP_HOME", str(tmp_path))
    written = []
    def fake_export(name, path, **kwargs):
        written.append(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"onnx")

    monkeypatch.setattr(export, "export", fake_export)
    path = cli._onnx_model_path("unet-2stems", None)
    err = capsys.readouterr().err
    key = cli.onnx_cache_record("unet-2stems")["key"]  # versions and weights (tests/hostile: the key)
    assert path == tmp_path / "onnx" / f"unet-2stems-{key}.onnx" and written == [path]
    assert re.search(r"exporting unet-2stems to .* \(first run only, ~1 min\)\nexported unet-2stems in \d+ s", err)
    assert cli._onnx_model_path("unet-2stems", None) == path and capsys.readouterr().err == ""  # cached


def test_list_shows_cached_weights_in_aligned_columns(tmp_path, monkeypatch, capsys):
    from kerasep.zoo import registry

    monkeypatch.setenv("KERASEP_HOME", str(tmp_path))
    folder = tmp_path / "weights" / "spleeter-2stems"
    folder.mkdir(parents=True)
    for name in registry.WEIGHT_SOURCES["spleeter-2stems"]["files"]:
        (folder / name).write_bytes(b"")  # present: list looks at names only, never hashes or downloads
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "STEMS", "LICENCE", "WEIGHTS", "DESCRIPTION"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == set(registry.available())
    column = lines[0].index("WEIGHTS")
    for name, line in rows.items():
        state = line[column:].split()[0]
        key = registry.MODELS[name].get("weights")
        assert state == ("cached" if key == "spleeter-2stems" else "download" if key else "-"), line
        assert line[lines[0].index("STEMS"):].startswith(", ".join(registry.stems(name)) + "  "), line
    assert sorted(p.name for p in folder.iterdir()) == sorted(registry.WEIGHT_SOURCES["spleeter-2stems"]["files"])
