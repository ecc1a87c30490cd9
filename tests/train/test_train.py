"""Training on the real MUSDB18 fixture track (used for both training and validation: the
fixture has a single 6 s test track): fits lower the validation loss, the .keras result loads
and separates, SIGKILL + resume equals an uninterrupted run, MirroredStrategy over two logical
CPUs and MultiWorkerMirroredStrategy over two local worker processes; the patches of Keras
internals that multi-worker fits need are undone after fit and refused on other Keras versions."""
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from testing import MIXTURE_MP3, REPO

GROUPS = {"vocals": ["vocals"], "accompaniment": ["drums", "bass", "other"]}
SMALL_UNET = {"family": "unet", "config": {"targets": ["vocals", "accompaniment"], "n_fft": 512, "hop_length": 128,
                                           "T": 16, "F": 64, "conv_n_filters": [4, 8, 16], "dropout": 0.0}}
SMALL_UMX = {"family": "openunmix", "config": {"targets": ["vocals", "accompaniment"], "n_fft": 512, "hop_length": 128,
                                               "hidden_size": 16, "nb_layers": 1, "max_bin": 128, "niter": 0}}


def config(model=SMALL_UNET, epochs=3, samples_per_track=8, **training):
    return {
        "model": model,
        "data": {"source": "musdb", "is_wav": True, "targets": GROUPS,
                 "train": {"subset": "test", "split": None}, "valid": {"subset": "test", "split": None},
                 "seq_duration": 0.5, "samples_per_track": samples_per_track, "batch_size": 4,
                 "valid_seq_duration": 1.0, "valid_batch_size": 2},
        "training": dict({"epochs": epochs, "lr": 0.003, "seed": 1}, **training),
    }


def env():
    e = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
             TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    e.pop("TF_CONFIG", None)
    return e


@pytest.mark.slow
def test_cli_fit_small_unet_lowers_validation_loss_and_separates(musdb_hq_root, tmp_path):
    from kerasep import cli, separate, train, zoo

    cfg = tmp_path / "unet.json"
    cfg.write_text(json.dumps(config()))
    out = tmp_path / "run"
    assert cli.main(["train", str(cfg), "--data", str(musdb_hq_root), "--output", str(out), "-q"]) == 0
    hist = json.loads((out / "history.json").read_text())
    assert len(hist["val_loss"]) == 3 and hist["val_loss"][-1] < hist["val_loss"][0]
    for name in ("model.keras", "checkpoints/best.weights.h5", "backup/training_metadata.json", "history.csv",
                 "train_config.json"):
        assert (out / name).is_file(), name
    assert any((out / "logs").rglob("events.out.tfevents*"))  # TensorBoard
    recorded = train.load_config(out / "train_config.json")  # the run's config loads back as a config
    assert recorded["model"] == config()["model"] and recorded["training"]["epochs"] == 3
    model = zoo.load(str(out / "model.keras"))
    assert type(model).__name__ == "UNetSeparator" and model.n_fft == 512
    stems = separate(str(MIXTURE_MP3), model=model)
    assert set(stems) == {"vocals", "accompaniment"} and stems["vocals"].shape == (479832, 2)
    assert np.isfinite(stems["vocals"]).all() and np.abs(stems["vocals"]).max() > 0
    # bad input through the CLI: clear message, exit code 2
    assert cli.main(["train", str(cfg), "--data", str(tmp_path / "nope"), "--output", str(tmp_path / "r2")]) == 2


@pytest.mark.slow
def test_fit_small_openunmix_lowers_validation_loss(musdb_hq_root, tmp_path):
    from kerasep import train, zoo

    sep, hist = train.train(config(SMALL_UMX), musdb_hq_root, tmp_path / "umx", verbose=0, tensorboard=False)
    assert hist["val_loss"][-1] < hist["val_loss"][0]
    # the input-statistics pass set input_norm from the training mixtures
    shift = sep.target_models["vocals"].get_layer("input_norm").weights
    assert any(np.abs(w.numpy()).max() > 0 and not np.allclose(w.numpy(), 1.0) for w in shift)
    assert type(zoo.load(str(tmp_path / "umx" / "model.keras"))).__name__ == "OpenUnmixSeparator"


def test_config_errors(tmp_path):
    from kerasep import train

    with pytest.raises(train.ConfigError, match="needs a 'model' entry"):
        train.load_config({})
    with pytest.raises(train.ConfigError, match=r"unknown training key\(s\) \['epoch'\]"):
        train.load_config({"model": "unet-2stems", "training": {"epoch": 3}})
    with pytest.raises(train.ConfigError, match="training config not found"):
        train.load_config(tmp_path / "x.json")
    cfg = train.load_config(REPO / "zoo" / "unet-2stems" / "train_config.json")
    assert cfg["model"] == "unet-2stems" and cfg["training"]["loss"] == "spectrogram_l1"


@pytest.mark.parametrize("model", [SMALL_UNET, SMALL_UMX], ids=["unet", "openunmix"])
def test_features_in_the_train_step_equal_features_in_the_pipeline(model):
    # fit_model takes waveform batches and computes the features in its train step: the same
    # step, bit for bit, as the feature model trained on features computed beforehand
    import tensorflow as tf
    from kerasep import losses, train
    from kerasep.backend import keras
    from kerasep.models import UNetSeparator

    sep = train.build_separator(model)
    adapter = train.Adapter(sep, "spectrogram")
    rng = np.random.default_rng(0)
    mix = tf.constant(rng.normal(size=(2, 2, 6000)).astype(np.float32))
    ys = {t: mix * (0.3 if t == "vocals" else 0.7) for t in adapter.targets}
    # the features are the separator's own (what it computes when it separates), bit for bit
    spec = sep.stft(mix)
    own = sep.to_patches(sep.magnitude(spec)) if isinstance(sep, UNetSeparator) else sep.mix_magnitude(spec)
    np.testing.assert_array_equal(adapter.featurize(mix, ys)[0].numpy(), own.numpy())
    initial = [w.numpy() for w in adapter.feature_model.weights]

    def step(model, x, y):
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss={t: losses.SpectrogramL1() for t in adapter.targets})
        loss = model.train_on_batch(x, y, return_dict=True)
        return loss, [w.numpy() for w in adapter.feature_model.weights]

    loss_a, after_a = step(adapter.fit_model, mix, ys)
    for w, v in zip(adapter.feature_model.weights, initial):
        w.assign(v)
    loss_b, after_b = step(adapter.feature_model, *adapter.featurize(mix, ys))
    assert loss_a == loss_b
    assert any(not np.array_equal(a, b) for a, b in zip(after_a, initial))
    for a, b in zip(after_a, after_b):
        np.testing.assert_array_equal(a, b)
    # cached validation features (rank 4) go to the model as they are
    assert adapter.fit_model.evaluate(*adapter.featurize(mix, ys), verbose=0, return_dict=True)["loss"] > 0


def test_features_are_float32_under_mixed_precision():
    import tensorflow as tf
    from kerasep import train
    from kerasep.backend import keras

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        sep = train.build_separator(SMALL_UNET)
        adapter = train.Adapter(sep, "spectrogram")
        x, y = adapter.featurize(tf.zeros([1, 2, 4000]), {t: tf.zeros([1, 2, 4000]) for t in adapter.targets})
        assert x.dtype == tf.float32 and x.shape == (3, 16, 64, 2) and y["vocals"].dtype == tf.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _tiny_fit_model():
    import tensorflow as tf
    from kerasep.backend import keras

    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Dense(1)(inp))
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((8, 3), np.float32), np.zeros((8, 1), np.float32)
    return model, tf.data.Dataset.from_tensor_slices((x, y)).batch(4)


def test_installed_keras_is_supported():
    # an upgrade past the range the patches were written for fails here first
    from kerasep.train import patches

    patches.check_keras_version()


def test_multiworker_patches_are_undone_after_fit_returns_and_after_it_raises():
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tf_trainer
    from kerasep.backend import keras
    from kerasep.train import patches

    original = tf_trainer.reduce_per_replica

    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("boom")

    for callbacks in ([], [Boom()]):
        model, ds = _tiny_fit_model()
        raises = pytest.raises(RuntimeError, match="boom") if callbacks else contextlib.nullcontext()
        with raises:
            with patches.multiworker_fit(model, ds, tf.distribute.get_strategy()):
                assert tf_trainer.reduce_per_replica is not original
                assert "_maybe_symbolic_build" in vars(model)
                model.fit(ds, epochs=2, verbose=0, callbacks=callbacks, shuffle=False)  # logs: the patch
        assert tf_trainer.reduce_per_replica is original
        assert "_maybe_symbolic_build" not in vars(model)
        assert model.built and model.optimizer.built  # the prebuild stays


@pytest.mark.parametrize("version", ["3.16.0", "3.14.2", "4.0.0"])
def test_multiworker_patches_refuse_other_keras_versions(monkeypatch, version):
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tf_trainer
    from kerasep.backend import keras
    from kerasep.train import patches

    original = tf_trainer.reduce_per_replica
    model, ds = _tiny_fit_model()
    monkeypatch.setattr(keras, "__version__", version)
    message = rf"written for keras >=3\.15,<3\.16; found keras {re.escape(version)}"
    with pytest.raises(RuntimeError, match=message):
        with patches.multiworker_fit(model, ds, tf.distribute.get_strategy()):
            pytest.fail("the patches were installed")
    # nothing was patched or built
    assert tf_trainer.reduce_per_replica is original and "_maybe_symbolic_build" not in vars(model)
    assert not model.optimizer.built


def test_non_chief_callbacks_write_only_their_own_folder(tmp_path):
    from kerasep import train

    out, aside = tmp_path / "run", tmp_path / "run" / "worker-tmp-1"
    callbacks = train.make_callbacks(out, train.DEFAULT_TRAINING, tensorboard=False, progress=False, worker_dir=aside)
    model, ds = _tiny_fit_model()
    model.fit(ds, validation_data=ds, epochs=2, verbose=0, callbacks=callbacks, shuffle=False)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert all(aside in p.parents for p in files), files
    written = {str(p.relative_to(aside)) for p in files}
    for name in ("history.csv", "backup/training_metadata.json", "backup/latest.weights.h5",
                 "checkpoints/best.weights.h5"):
        assert name in written, name
    assert train.resume_epoch(aside / "backup") == 2 and train.resume_epoch(out / "backup") == 0


def _weights(path):
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


@pytest.mark.slow
def test_sigkill_and_resume_gives_the_same_weights(musdb_hq_root, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(config(epochs=4, samples_per_track=4)))

    def cmd(out):
        return [sys.executable, "-m", "kerasep.cli", "train", str(cfg), "--data", str(musdb_hq_root),
                "--output", str(out), "-q"]

    straight = subprocess.Popen(cmd(tmp_path / "straight"), env=env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
    killed = subprocess.Popen(cmd(tmp_path / "killed"), env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    meta = tmp_path / "killed" / "backup" / "training_metadata.json"
    deadline = time.time() + 400
    while time.time() < deadline and killed.poll() is None:
        try:
            if json.loads(meta.read_text())["epoch"] >= 2:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    assert killed.poll() is None, "the run finished before it could be killed"
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(60) == -signal.SIGKILL
    epoch_at_kill = json.loads(meta.read_text())["epoch"]
    assert 2 <= epoch_at_kill < 4
    resumed = subprocess.run(cmd(tmp_path / "killed"), env=env(), capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _, err = straight.communicate(timeout=400)
    assert straight.returncode == 0, err[-3000:]
    # the resumed run printed only the epochs after the backup
    assert f"epoch {epoch_at_kill + 1}/4" in resumed.stderr and "epoch 1/4" not in resumed.stderr
    a = _weights(tmp_path / "straight" / "backup" / "latest.weights.h5")
    b = _weights(tmp_path / "killed" / "backup" / "latest.weights.h5")
    assert a.keys() == b.keys() and len(a) > 10
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    ha = (tmp_path / "straight" / "history.csv").read_text().splitlines()
    hb = (tmp_path / "killed" / "history.csv").read_text().splitlines()
    assert ha == hb  # same losses, epoch by epoch
    # the resumed run's history.json has every epoch, those before the kill included
    ja = json.loads((tmp_path / "straight" / "history.json").read_text())
    jb = json.loads((tmp_path / "killed" / "history.json").read_text())
    assert len(ja["val_loss"]) == 4 and ja.keys() == jb.keys()
    for k in ja:
        np.testing.assert_allclose(jb[k], ja[k], rtol=1e-6, err_msg=k)


CHILD = r"""
import json, sys
mode, cfg, data, out = sys.argv[1:5]
import tensorflow as tf
if mode == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from kerasep import train
    strategy = train.make_strategy("mirrored")
else:
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    from kerasep import train
from keras.src.backend.tensorflow import trainer as tf_trainer
original = tf_trainer.reduce_per_replica
print("REPLICAS", strategy.num_replicas_in_sync, flush=True)
_, h = train.train(json.loads(open(cfg).read()), data, out, strategy=strategy, verbose=0, tensorboard=False)
print("HISTORY", json.dumps(h), flush=True)
print("RESTORED", tf_trainer.reduce_per_replica is original, flush=True)
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _history(stdout):
    line = [l for l in stdout.splitlines() if l.startswith("HISTORY ")]
    assert line, stdout[-2000:]
    return json.loads(line[0][len("HISTORY "):])


@pytest.mark.slow
def test_mirrored_and_multiworker_strategies_agree(musdb_hq_root, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(config(epochs=1, samples_per_track=4)))
    args = [str(cfg), str(musdb_hq_root)]
    # one after the other: on a loaded 2-core machine, three TensorFlow processes at once can miss
    # the coordination service's heartbeats
    mirrored = subprocess.run([sys.executable, str(script), "mirrored", *args, str(tmp_path / "m")], env=env(),
                              capture_output=True, text=True, timeout=500)
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    workers = []
    for i in range(2):
        e = dict(env(), TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))
        workers.append(subprocess.Popen([sys.executable, str(script), "multi", *args, str(tmp_path / "w")], env=e,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outs = [p.communicate(timeout=500) for p in workers]
    finally:
        for p in workers:
            if p.poll() is None:
                p.kill()
    assert mirrored.returncode == 0, mirrored.stderr[-3000:]
    outs = [(mirrored.stdout, mirrored.stderr)] + outs
    for rc, (o, e) in zip([0] + [p.returncode for p in workers], outs):
        assert rc == 0, e[-3000:]
        assert "REPLICAS 2" in o and "RESTORED True" in o
    hm, h0, h1 = (_history(o) for o, _ in outs)
    # two replicas with the global batch split in two: the same numbers either way
    assert h0 == h1
    np.testing.assert_allclose(hm["loss"], h0["loss"], rtol=1e-5)
    np.testing.assert_allclose(hm["val_loss"], h0["val_loss"], rtol=1e-5)
    assert (tmp_path / "w" / "model.keras").is_file() and (tmp_path / "m" / "model.keras").is_file()
    # the chief backs up in the run folder, the other worker in its own folder
    assert train_resume_epochs(tmp_path / "w") == [1, 1]


def train_resume_epochs(run):
    from kerasep import train

    return [train.resume_epoch(run / "backup")] + [train.resume_epoch(p) for p in run.glob("worker-tmp-*/backup")]
