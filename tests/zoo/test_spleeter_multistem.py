"""Spleeter's 4-stems and 5-stems releases: zoo entries, conversion of TF1 checkpoints with their
variable layout, the softmax U-Net, and weights pinned only through the release archive.

The real checkpoints cannot be fetched on the build machine. The checkpoints here are written
with ``tf.compat.v1.train.Saver`` from a TF1 graph whose variables are created in the order of
Spleeter's ``apply_unet`` (``spleeter/model/functions/unet.py``) and named as TF1 Keras names
layers (one counter per layer class over the whole graph: ``conv2d``, ``conv2d_1``, ...), with
random values; that naming is derived here independently of the converter's
``variable_mapping``."""
import hashlib
import io
import json
import tarfile

import numpy as np
import pytest

from kerasep import zoo
from kerasep.zoo import registry, weights

SPLEETER_ORDER = {  # spleeter/resources/*.json instrument_list
    "unet-4stems": ["vocals", "drums", "bass", "other"],
    "unet-4stems-16kHz": ["vocals", "drums", "bass", "other"],
    "unet-5stems": ["vocals", "piano", "drums", "bass", "other"],
    "unet-5stems-16kHz": ["vocals", "piano", "drums", "bass", "other"],
}
BN = ("gamma", "beta", "moving_mean", "moving_variance")


def spleeter_variables(instruments, filters=(16, 32, 64, 128, 256, 512), nb_channels=2, seed=0):
    """``{tf1_name: array}`` and ``{tf1_name: (kerasep_layer, weight)}`` for Spleeter's graph.

    Walks ``apply_unet`` layer by layer, instrument after instrument, giving each layer the
    TF1 Keras name of its class counter."""
    rng = np.random.RandomState(seed)
    counters = {}
    values, where = {}, {}

    def layer(cls, shapes, target_layer):
        i = counters.get(cls, 0)
        counters[cls] = i + 1
        name = cls if i == 0 else f"{cls}_{i}"
        for w, shape in shapes.items():
            values[f"{name}/{w}"] = rng.standard_normal(shape).astype("float32")
            if w == "moving_variance":
                values[f"{name}/{w}"] = np.abs(values[f"{name}/{w}"]) + 0.5
            where[f"{name}/{w}"] = (target_layer, w)

    def conv(cin, cout, k, target_layer):
        layer("conv2d", {"kernel": (k, k, cin, cout), "bias": (cout,)}, target_layer)

    def bn(c, target_layer):
        layer("batch_normalization", {w: (c,) for w in BN}, target_layer)

    for t in instruments:
        cin = nb_channels
        for i, f in enumerate(filters):  # conv1/batch1 ... conv6/batch6
            conv(cin, f, 5, f"{t}_enc{i}_conv")
            bn(f, f"{t}_enc{i}_bn" if i < len(filters) - 1 else None)  # batch6: never consumed
            cin = f
        ups = list(filters[-2::-1]) + [1]  # up1 ... up6
        skips = list(filters[-2::-1]) + [0]  # conv5 ... conv1 concatenated after up1 ... up5
        cin = filters[-1]
        for i, f in enumerate(ups):
            layer("conv2d_transpose", {"kernel": (5, 5, f, cin), "bias": (f,)}, f"{t}_dec{i}_deconv")
            bn(f, f"{t}_dec{i}_bn")
            cin = f + skips[i]
        conv(1, nb_channels, 4, f"{t}_mask_conv")  # up7 (or the mask logits of softmax_unet)
    return values, where


def save_tf1_checkpoint(folder, values):
    """A TF1 checkpoint ``folder/model`` (+ ``global_step``, as Spleeter's Estimator saves)."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        variables = [tf.compat.v1.get_variable(n, initializer=v) for n, v in values.items()]
        tf.compat.v1.train.get_or_create_global_step()
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            assert len(variables) == len(values)
            saver.save(sess, str(folder / "model"), write_meta_graph=False)
    return folder


def _weight(core, layer, name):
    return next(w for w in core.get_layer(layer).weights if w.path.split("/")[-1] == name)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """One full-size TF1 checkpoint per release (4stems, 5stems) with Spleeter's layout."""
    out = {}
    for stems, instruments in (("4stems", SPLEETER_ORDER["unet-4stems"]), ("5stems", SPLEETER_ORDER["unet-5stems"])):
        values, where = spleeter_variables(instruments, seed=len(instruments))
        folder = save_tf1_checkpoint(tmp_path_factory.mktemp(f"tf1-{stems}-layout"), values)
        out[stems] = (folder, values, where)
    return out


@pytest.mark.parametrize("name", sorted(SPLEETER_ORDER))
def test_zoo_entries_follow_spleeter_configs(name):
    entry = registry.get(name)
    config = entry["config"]
    stems = "5stems" if "5stems" in name else "4stems"
    assert config["targets"] == SPLEETER_ORDER[name] and registry.stems(name) == SPLEETER_ORDER[name]
    assert entry["weights"] == f"spleeter-{stems}" and entry["license"] == "MIT"
    assert (config["conv_activation"], config["deconv_activation"]) == ("elu", "elu")
    assert config["F"] == (1536 if name.endswith("16kHz") else 1024) and config["T"] == 512
    assert config.get("mask_activation", "sigmoid") == ("softmax" if stems == "5stems" else "sigmoid")
    source = registry.weight_source(entry["weights"])
    assert source["archive"]["url"] == f"https://github.com/deezer/spleeter/releases/download/v1.4.0/{stems}.tar.gz"
    assert source["archive"]["sha256"] == {
        "4stems": "3adb4a50ad4eb18c7c4d65fcf4cf2367a07d48408a5eb7d03cd20067429dfaa8",
        "5stems": "25a1e87eb5f75cc72a4d2d5467a0a50ac75f05611f877c278793742513cc7218",
    }[stems]
    assert source["files"] == {"model.index": None, "model.data-00000-of-00001": None}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["unet-4stems", "unet-5stems", "unet-5stems-16kHz"])
def test_tf1_layout_round_trip(name, checkpoints, tmp_path):
    """Every variable of a checkpoint with Spleeter's layout lands in its Keras layer; the
    16 kHz variant loads the same checkpoint (the convolutions do not depend on F)."""
    stems = "5stems" if "5stems" in name else "4stems"
    folder, values, where = checkpoints[stems]
    model = zoo.build(name)
    zoo.load_weights(model, registry.MODELS[name]["weights"], folder)
    checked = 0
    for tf1_name, (layer, w) in where.items():
        if layer is None:
            continue
        np.testing.assert_array_equal(_weight(model.core, layer, w).numpy(), values[tf1_name], err_msg=tf1_name)
        checked += 1
    n = len(SPLEETER_ORDER[name])
    assert checked == n * (7 * 2 + 6 * 2 + 11 * 4)
    # the index offsets of the last instrument, spelled out
    last = SPLEETER_ORDER[name][-1]
    s = n - 1
    np.testing.assert_array_equal(model.core.get_layer(f"{last}_mask_conv").kernel.numpy(), values[f"conv2d_{7 * s + 6}/kernel"])
    np.testing.assert_array_equal(model.core.get_layer(f"{last}_dec0_deconv").kernel.numpy(),
                                  values[f"conv2d_transpose_{6 * s}/kernel"])
    np.testing.assert_array_equal(model.core.get_layer(f"{last}_dec5_bn").moving_variance.numpy(),
                                  values[f"batch_normalization_{12 * s + 11}/moving_variance"])


@pytest.mark.slow
def test_checkpoint_of_another_release_is_refused(checkpoints):
    from kerasep.zoo.converters import spleeter

    tensors = spleeter.read_checkpoint(checkpoints["4stems"][0] / "model")
    with pytest.raises(ValueError, match="does not match a 5-target U-Net"):
        spleeter.convert_weights(zoo.build("unet-5stems"), tensors)


@pytest.mark.slow
def test_4stems_separates_the_real_mixture(checkpoints, real_mixture):
    """The converted 4-stems model on the real MUSDB18 excerpt: the four stems, finite, the
    mixture's shape, and the ratio masks share the mixture out (stems sum to it below F)."""
    import kerasep

    model = zoo.build("unet-4stems")
    zoo.load_weights(model, "spleeter-4stems", checkpoints["4stems"][0])
    stems = kerasep.separate(real_mixture, model=model)
    assert list(stems) == ["vocals", "drums", "bass", "other"]
    for name, y in stems.items():
        assert y.shape == real_mixture.shape and np.all(np.isfinite(y)), name
        assert np.abs(y).max() > 0, name
    # four different U-Nets: four different stems
    assert min(np.abs(stems[a] - stems[b]).max() for a in stems for b in stems if a < b) > 1e-4


def test_softmax_unet_masks_sum_to_one():
    """Spleeter's softmax_unet: the branches' masks are a softmax across targets (each
    estimate ≤ the input, their sum the input); the sigmoid U-Net has no such constraint."""
    from kerasep.models.unet import UNetSeparator, build_unet_core

    kw = dict(targets=["a", "b", "c"], T=32, F=32, conv_n_filters=[4, 8], conv_activation="elu",
              deconv_activation="elu")
    x = np.random.RandomState(0).rand(2, 32, 32, 2).astype("float32")
    out = build_unet_core(mask_activation="softmax", **kw)(x)
    np.testing.assert_allclose(sum(np.asarray(v) for v in out.values()), x, rtol=1e-5, atol=1e-6)
    assert all(np.all(np.asarray(v) <= x + 1e-6) for v in out.values())
    sig = build_unet_core(**kw)(x)
    assert np.abs(sum(np.asarray(v) for v in sig.values()) - x).max() > 1e-2
    with pytest.raises(ValueError, match="mask_activation"):
        build_unet_core(mask_activation="tanh", **kw)
    model = UNetSeparator(n_fft=128, hop_length=32, mask_activation="softmax", **kw)
    assert UNetSeparator.from_config(model.get_config()).mask_activation == "softmax"


# --- weights pinned only through the release archive -------------------------------------------

@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERASEP_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def archive_only(tmp_path, monkeypatch):
    """A small source like spleeter-4stems: only the archive's sha256 is known."""
    files = {"model.index": b"index" * 20, "model.data-00000-of-00001": bytes(range(256)) * 8}
    tar_path = tmp_path / "4stems.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tf_:
        for n, b in list(files.items()) + [("checkpoint", b"x")]:
            info = tarfile.TarInfo(f"./{n}")
            info.size = len(b)
            tf_.addfile(info, io.BytesIO(b))
    raw = tar_path.read_bytes()
    spec = {"format": "spleeter-tf1", "files": {n: None for n in files}, "checkpoint": "model",
            "archive": {"url": tar_path.as_uri(), "sha256": hashlib.sha256(raw).hexdigest()}}
    monkeypatch.setitem(registry.WEIGHT_SOURCES, "archive-only", spec)
    return files, tar_path, spec


def test_archive_pinned_files_are_recorded_and_checked(home, archive_only, monkeypatch, capsys):
    files, tar_path, spec = archive_only
    folder = weights.resolve("archive-only")
    recorded = json.loads((folder / weights.RECORDED).read_text())
    assert recorded == {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}
    for n, b in files.items():
        assert (folder / n).read_bytes() == b
    # from the cache, with the network source gone, the recorded digests are checked
    monkeypatch.setitem(spec, "archive", dict(spec["archive"], url="https://invalid.invalid/4stems.tar.gz"))
    assert weights.resolve("archive-only", download=False) == folder
    (folder / "model.index").write_bytes(b"tampered")
    with pytest.raises(weights.WeightsError):
        weights.resolve("archive-only", download=False)
    assert "discarding invalid cache" in capsys.readouterr().err and not folder.exists()


def test_archive_pinned_cache_without_record_is_discarded(home, archive_only, capsys):
    folder = weights.resolve("archive-only")
    (folder / weights.RECORDED).unlink()
    with pytest.raises(weights.WeightsError):
        weights.resolve("archive-only", download=False)
    assert "recorded" in capsys.readouterr().err


def test_archive_pinned_user_paths(home, archive_only, tmp_path):
    files, tar_path, spec = archive_only
    loose = tmp_path / "loose"
    loose.mkdir()
    for n, b in files.items():
        (loose / n).write_bytes(b)
    with pytest.raises(weights.WeightsError, match="pinned only through the release archive"):
        weights.resolve("archive-only", path=loose, download=False)
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tf_:
        tf_.add(loose / "model.index", arcname="model.index")
        tf_.add(loose / "model.data-00000-of-00001", arcname="model.data-00000-of-00001")
    with pytest.raises(weights.WeightsError, match="sha256 mismatch"):
        weights.resolve("archive-only", path=other, download=False)
    folder = weights.resolve("archive-only", path=tar_path, download=False)
    assert json.loads((folder / weights.RECORDED).read_text())["model.index"] == hashlib.sha256(files["model.index"]).hexdigest()


@pytest.mark.slow
def test_tiny_5stems_layout_fulfils_the_contract(real_mixture, tmp_path):
    """The 5-stems architecture (ELU, softmax masks over 5 targets) at a tiny size: config and
    ``.keras`` round trips, chunked == whole-file, ONNX parity (tests/testing.py)."""
    from testing import run_separator_test

    from kerasep.backend import keras
    from kerasep.models import UNetSeparator

    keras.utils.set_random_seed(0)
    config = dict(registry.MODELS["unet-5stems"]["config"], n_fft=256, hop_length=64, T=64, F=64,
                  conv_n_filters=[4, 4, 8, 8, 8, 8])
    model = UNetSeparator(**config)
    model.build((None, 2, None))
    assert model.stems == SPLEETER_ORDER["unet-5stems"]
    run_separator_test(model, real_mixture[:44100], tmp_path, chunk_seconds=0.3, exports=("onnx",))


def test_archive_pinned_source_offline_says_to_pass_the_archive(home, monkeypatch):
    spec = registry.WEIGHT_SOURCES["spleeter-4stems"]
    monkeypatch.setitem(registry.WEIGHT_SOURCES, "spleeter-4stems",
                        dict(spec, archive=dict(spec["archive"], url="https://invalid.invalid/4stems.tar.gz")))
    with pytest.raises(weights.WeightsError) as info:
        zoo.load("unet-4stems")
    msg = str(info.value)
    assert "https://invalid.invalid/4stems.tar.gz" in msg and "--weights" in msg and "loose files are refused" in msg
    assert spec["archive"]["sha256"] in msg
