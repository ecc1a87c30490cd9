"""The scripts in ``examples/`` run as a user runs them (a subprocess, ``--smoke``) and write
what their docstrings promise, on the real audio of ``tests/data`` and the MUSDB18 excerpt."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from testing import REPO

EXAMPLES = REPO / "examples"
NAMES = ("separate_and_plot.py", "finetune.py", "custom_separator.py", "export_and_serve.py")


def run_example(name, *args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{name} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def _stem(path, seconds):
    audio, rate = sf.read(path, dtype="float32")
    assert rate == 44100 and audio.shape == (int(seconds * 44100), 2), (path, audio.shape)
    assert np.all(np.isfinite(audio)) and np.abs(audio).max() > 0, path
    return audio


@pytest.mark.parametrize("name", NAMES)
def test_examples_are_documented(name):
    text = (EXAMPLES / name).read_text()
    doc = re.match(r'\s*"""(.*?)"""', text, re.S)
    assert doc and "Run:" in doc.group(1) and f"examples/{name}" in doc.group(1) and "--smoke" in doc.group(1)
    assert f"`{name}`" in (EXAMPLES / "README.md").read_text()


@pytest.mark.slow
def test_separate_and_plot(spleeter_weights, tmp_path):
    out = run_example("separate_and_plot.py", "--smoke", "-o", tmp_path / "out", cwd=tmp_path)
    folder = tmp_path / "out" / "audio_example"
    stems = {s: _stem(folder / f"{s}.wav", 5.0) for s in ("vocals", "accompaniment")}
    assert not np.allclose(stems["vocals"], stems["accompaniment"])
    png = folder / "masks.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(png) in out
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(png).shape
    assert height > width / 2  # three panels: the mixture and two masks


@pytest.mark.slow
def test_finetune_with_the_driver(spleeter_weights, musdb_hq_root, tmp_path):
    out = tmp_path / "run"
    stdout = run_example("finetune.py", "--data", musdb_hq_root / "test", "--smoke", "-o", out, cwd=tmp_path)
    history = json.loads((out / "history.json").read_text())
    assert len(history["val_loss"]) == 1 and np.isfinite(history["val_loss"][0])
    recorded = json.loads((out / "train_config.json").read_text())
    assert recorded["model"] == {"zoo": "unet-2stems", "pretrained": True} and recorded["run"]["freeze_batchnorm"]
    assert (out / "model.keras").is_file() and "separated 4 s" in stdout


@pytest.mark.slow
def test_finetune_with_plain_keras_keeps_batchnorm(spleeter_weights, musdb_hq_root, tmp_path):
    from kerasep import zoo
    from kerasep.backend import tf

    out = tmp_path / "run"
    stdout = run_example("finetune.py", "--data", musdb_hq_root / "test", "--smoke", "--plain-keras", "-o", out,
                         cwd=tmp_path)
    assert "step 2/2" in stdout
    tuned = zoo.load(str(out / "model.keras")).core
    reader = tf.train.load_checkpoint(str(spleeter_weights / "model"))
    np.testing.assert_array_equal(tuned.get_layer("vocals_enc0_bn").moving_mean.numpy(),
                                  reader.get_tensor("batch_normalization/moving_mean"))
    np.testing.assert_array_equal(tuned.get_layer("vocals_dec0_bn").gamma.numpy(),
                                  reader.get_tensor("batch_normalization_6/gamma"))
    assert not np.array_equal(tuned.get_layer("vocals_dec0_deconv").kernel.numpy(),
                              reader.get_tensor("conv2d_transpose/kernel"))


@pytest.mark.slow
def test_custom_separator(musdb_hq_track, tmp_path):
    stdout = run_example("custom_separator.py", "--track", musdb_hq_track, "--smoke", "-o", tmp_path / "out",
                         cwd=tmp_path)
    before, after = map(float, re.search(r"L1 on the first batch: ([\d.]+) before, ([\d.]+) after", stdout).groups())
    assert after < before
    assert (tmp_path / "out" / "custom.keras").is_file()
    for s in ("vocals", "accompaniment"):
        _stem(tmp_path / "out" / f"{s}.wav", 4.0)


@pytest.mark.slow
def test_export_and_serve(tmp_path):
    stdout = run_example("export_and_serve.py", "--smoke", "-o", tmp_path / "out", cwd=tmp_path)
    report = json.loads(re.search(r"served without TensorFlow: (\{.*\})", stdout).group(1))
    assert report["exit_status"] == 0 and report["tensorflow_imported"] is False
    assert report["targets"] == ["vocals", "accompaniment"]
    assert report["shapes"] == {t: [5 * 44100, 2] for t in report["targets"]}
    out = tmp_path / "out"
    assert (out / "model.onnx").is_file() and (out / "run_onnx.pyz").is_file()
    for s in ("vocals", "accompaniment"):
        _stem(out / "separated" / "song" / f"{s}.wav", 5.0)
