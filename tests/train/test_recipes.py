"""The training recipes ``zoo/umxhq/train.py`` and ``zoo/demucs/train.py``: their configs name the
zoo architectures and the upstream settings, and a ``--small`` run of 2 epochs on the real MUSDB18
fixture track (training and validation on that one track) writes a history, a resumable backup
and a ``model.keras`` that ``kerasep.zoo.load`` reads and that separates the real mixture. For
Open-Unmix, the input-statistics pass set every target's input normalisation to the training
data's per-bin mean/std before the first epoch."""
import csv
import importlib.util
import math

import numpy as np
import pytest

from testing import REPO

ZOO = REPO / "zoo"


def smoke(musdb_hq_root):
    """The recipes' arguments for a ``--small`` run on the real track."""
    return ["--data", str(musdb_hq_root), "--small", "--subset", "test", "--no-split", "-q"]


def recipe(name):
    """``zoo/<name>/train.py`` as a module."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", ZOO / name / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def history(out):
    with open(out / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def check_separates(path, stems, mixture_wav):
    """``model.keras`` loads with ``kerasep.zoo.load`` and separates 2 s of ``mixture_wav``."""
    from kerasep import audio, separate, zoo

    model = zoo.load(str(path))
    mix = audio.load(str(mixture_wav), duration=2.0)
    assert mix.shape == (88200, 2)
    out = separate(mix, model=model)
    assert list(out) == stems
    for name, y in out.items():
        assert y.shape == (88200, 2) and y.dtype == np.float32, name
        assert np.isfinite(y).all() and np.abs(y).max() > 0, name
    return model


def test_configs_name_the_zoo_models_and_upstream_settings():
    from kerasep import train, zoo
    from kerasep.models import Demucs

    umx = train.load_config(ZOO / "umxhq" / "train_config.json")
    assert umx["model"] == "umxhq" and umx["data"]["is_wav"]
    assert (umx["data"]["seq_duration"], umx["data"]["samples_per_track"], umx["data"]["batch_size"]) == (6.0, 64, 16)
    assert umx["data"]["augmentations"] == ["gain", "channelswap"] and umx["data"]["random_track_mix"]
    t = umx["training"]
    assert (t["domain"], t["loss"], t["lr"], t["weight_decay"]) == ("spectrogram", "spectrogram_mse", 1e-3, 1e-5)
    assert (t["lr_decay_gamma"], t["lr_decay_patience"], t["patience"]) == (0.3, 80, 140)

    dm = train.load_config(ZOO / "demucs" / "train_config.json")
    assert dm["model"] == "demucs"
    t = dm["training"]
    assert (t["domain"], t["loss"], t["optimizer"], t["lr"]) == ("waveform", "waveform_l1", "adam", 3e-4)
    d = dm["data"]
    assert sorted(d["augmentations"]) == ["channelswap", "gain", "signflip"] and d["random_track_mix"]
    assert d["max_shift"] == 1.0
    # chunks: demucs' model.valid_length(10 s) of the zoo architecture (layers not built: fast)
    sep = Demucs(**zoo.info("demucs")["config"])
    assert round(d["seq_duration"] * sep.sample_rate) == sep.valid_length(10 * sep.sample_rate)


def test_demucs_batch_is_per_device():
    mod = recipe("demucs")
    args = mod.parse_args(["--data", "x", "--output", "y"])
    assert mod.build_config(args)["data"]["batch_size"] == 4
    assert mod.build_config(args, replicas=16)["data"]["batch_size"] == 64  # demucs 2: 64 on 16 GPUs
    args = mod.parse_args(["--data", "x", "--output", "y", "--per-device-batch", "8"])
    assert mod.build_config(args, replicas=2)["data"]["batch_size"] == 16


@pytest.mark.slow
def test_umxhq_recipe_small_run(musdb_hq_root, musdb_hq_track, tmp_path):
    from kerasep import train as kt

    out = tmp_path / "umxhq"
    assert recipe("umxhq").main(smoke(musdb_hq_root) + ["--output", str(out), "--epochs", "2"]) == 0
    rows = history(out)
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert all(math.isfinite(float(r["val_loss"])) for r in rows)
    for name in ("checkpoints/best.weights.h5", "backup/training_metadata.json", "input_statistics.npz"):
        assert (out / name).is_file(), name
    model = check_separates(out / "model.keras", ["vocals", "drums", "bass", "other"], musdb_hq_track / "mixture.wav")

    # the same data, the same pass, on a fresh (untrained) separator
    cfg = kt.load_config(out / "train_config.json")  # the run's config loads back as a config
    fresh = kt.build_separator(cfg["model"])
    adapter = kt.Adapter(fresh, "spectrogram")
    norm = fresh.target_models["vocals"].get_layer("input_norm")
    assert np.all(norm.shift.numpy() == 0) and np.all(norm.scale.numpy() == 1)  # initial values
    train_ds, _, steps, _ = kt.make_datasets(cfg, musdb_hq_root, adapter)
    mean, std = kt.input_statistics(adapter, train_ds.take(steps))
    n = fresh.max_bin
    assert mean.shape[0] >= n and np.ptp(mean[:n]) > 0 and np.ptp(std[:n]) > 0
    # what the recipe's pass set before the first epoch: the data's statistics
    recorded = np.load(out / "input_statistics.npz")
    assert np.abs(recorded["mean"]).max() > 0 and not np.allclose(recorded["std"], 1.0)  # not 0/1 any more
    np.testing.assert_allclose(recorded["mean"], mean[:n], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(recorded["std"], std[:n], rtol=1e-5)
    # after 4 Adam steps every target's input_norm is still that, not the initial 0/1
    for target in model.targets:
        layer = model.target_models[target].get_layer("input_norm")
        shift, scale = layer.shift.numpy(), layer.scale.numpy()
        assert np.abs(shift + mean[:n]).max() < 0.05 * np.abs(mean[:n]).max(), target
        assert np.median(np.abs(scale * std[:n] - 1)) < 0.05, target


@pytest.mark.slow
def test_demucs_recipe_small_run_and_rerun(musdb_hq_root, musdb_hq_track, tmp_path):
    from kerasep import train as kt

    mod = recipe("demucs")
    out = tmp_path / "demucs"
    args = smoke(musdb_hq_root) + ["--is-wav", "--output", str(out), "--epochs", "2"]
    assert mod.main(args) == 0
    rows = history(out)
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert all(math.isfinite(float(r["val_loss"])) for r in rows)
    assert kt.resume_epoch(out / "backup") == 2
    mixture_wav = musdb_hq_track / "mixture.wav"
    model = check_separates(out / "model.keras", ["drums", "bass", "other", "vocals"], mixture_wav)
    assert type(model).__name__ == "Demucs" and model.channels == 4
    # the same command again resumes from the backup: both epochs are done, nothing is retrained
    best = out / "checkpoints" / "best.weights.h5"
    stamp, csv_text = best.stat().st_mtime_ns, (out / "history.csv").read_text()
    assert mod.main(args) == 0
    assert best.stat().st_mtime_ns == stamp and (out / "history.csv").read_text() == csv_text
    check_separates(out / "model.keras", ["drums", "bass", "other", "vocals"], mixture_wav)
