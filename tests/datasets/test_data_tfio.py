"""The tensorflow-io decoding path. In the main environment (TensorFlow 2.21) tensorflow-io does
not load: the probe must say so without breaking anything. In the pinned second environment
(``.ci/tfio_env.sh``: TensorFlow 2.17 + tensorflow-io 0.37.1) the same tests decode with it.
Synthetic FLAC/WAV files only, so this runs without ffmpeg or musdb."""
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf


def test_import_kerasep_never_depends_on_tfio():
    code = "import kerasep, kerasep.data; from kerasep.data import tfio; print(tfio.probe()[0])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] in ("True", "False")


@pytest.fixture
def stems(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "song"
    d.mkdir()
    audio = {}
    for name, fmt in (("vocals", "FLAC"), ("drums", "FLAC"), ("bass", "WAV")):
        a = (rng.uniform(-0.5, 0.5, (8000, 2)) * 32767).astype(np.int16)
        ext = ".flac" if fmt == "FLAC" else ".wav"
        sf.write(d / f"{name}{ext}", a, 8000, format=fmt, subtype="PCM_16")
        audio[name] = a.astype(np.float32) / 32768
    return tmp_path, audio


def test_folder_decoding_matches_soundfile(stems):
    from kerasep import data
    from kerasep.data import tfio

    root, ref = stems
    names = ["vocals", "drums", "bass"]
    auto = data.folder_tracks(root, names)[0].load()[0]
    plain = data.folder_tracks(root, names, decoder="kerasep")[0].load()[0]
    for k, n in enumerate(names):
        np.testing.assert_allclose(plain[k], ref[n], atol=1e-6)
        np.testing.assert_allclose(auto[k], ref[n], atol=1e-6)
    if tfio.available():
        a, rate = tfio.decode(root / "song" / "vocals.flac")
        assert rate == 8000
        np.testing.assert_allclose(a, ref["vocals"], atol=1e-6)
        forced = data.folder_tracks(root, ["vocals", "drums"], decoder="tfio")[0].load()[0]
        np.testing.assert_allclose(forced[0], ref["vocals"], atol=1e-6)
    else:
        with pytest.raises(data.DatasetError, match="tensorflow-io does not load"):
            data.folder_tracks(root, ["vocals", "drums"], decoder="tfio")[0].load()


def test_training_stream_on_tfio_decoded_folder(stems):
    from kerasep import data

    root, _ = stems
    tracks = data.folder_tracks(root, ["vocals", "drums", "bass"])
    ds = data.training_dataset(tracks, ["vocals", "drums"], seq_duration=0.1, samples_per_track=2, batch_size=2, seed=0)
    x, y = next(iter(ds))
    assert x.shape == (2, 2, 800) and set(y) == {"vocals", "drums"}
