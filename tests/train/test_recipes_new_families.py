"""The training recipes of the transformer families, ``zoo/htdemucs/train.py`` and
``zoo/bs_roformer/train.py``: their configs build the upstream architectures and name the
upstream settings; a ``--small`` run of 2 epochs on the real MUSDB18-HQ fixture track (training
and validation on that one track) lowers the loss or changes the weights, writes the history,
the best checkpoint and a resumable backup, and saves a ``model.keras`` that ``kerasep.zoo.load``
reads and that separates the real mixture."""
import csv
import importlib.util
import math

import numpy as np
import pytest

from testing import REPO

ZOO = REPO / "zoo"
SOURCES = ["drums", "bass", "other", "vocals"]


def recipe(name):
    """``zoo/<name>/train.py`` as a module."""
    spec = importlib.util.spec_from_file_location(f"recipe_new_{name}", ZOO / name / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_run(name, musdb_hq_root, out, epochs=2):
    """``zoo/<name>/train.py --small`` for ``epochs`` on the real track; returns the history rows."""
    args = ["--data", str(musdb_hq_root), "--small", "--subset", "test", "--no-split", "-q", "--is-wav",
            "--output", str(out), "--epochs", str(epochs)]
    assert recipe(name).main(args) == 0
    with open(out / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def initial_weights(mod, out):
    """The untrained separator of ``out``'s run config, same seed as the run (weights as numpy)."""
    from kerasep import train as kt

    cfg = kt.load_config(out / "train_config.json")
    kt.seed_everything(cfg["training"]["seed"], cfg["training"]["deterministic"])
    return kt.build_separator(cfg["model"])


def check_run(out, stems, mixture_wav, rows, family):
    from kerasep import audio, separate, train as kt, zoo

    assert [int(r["epoch"]) for r in rows] == [0, 1]
    for r in rows:
        assert math.isfinite(float(r["loss"])) and math.isfinite(float(r["val_loss"])), r
    for name in ("checkpoints/best.weights.h5", "backup/training_metadata.json", "history.json"):
        assert (out / name).is_file(), name
    assert kt.resume_epoch(out / "backup") == 2
    model = zoo.load(str(out / "model.keras"))
    assert type(model).__name__ == family and model.stems == stems
    mix = audio.load(str(mixture_wav), duration=2.0)
    sep = separate(mix, model=model)
    assert list(sep) == stems
    for name, y in sep.items():
        assert y.shape == (88200, 2) and y.dtype == np.float32 and np.isfinite(y).all(), name
        assert np.abs(y).max() > 0, name
    return model


def weights_changed(model, fresh):
    trained, init = model.get_weights(), fresh.get_weights()
    assert len(trained) == len(init)
    return sum(not np.array_equal(a, b) for a, b in zip(trained, init)), len(init)


# --- HT-Demucs --------------------------------------------------------------------------------------

def test_htdemucs_config_builds_the_released_architecture_and_names_demucs_settings():
    from kerasep import train as kt, zoo

    cfg = kt.load_config(ZOO / "htdemucs" / "train_config.json")
    assert cfg["model"] == "htdemucs"
    d, t = cfg["data"], cfg["training"]
    assert (t["domain"], t["loss"], t["optimizer"], t["lr"], t["weight_decay"], t["clipnorm"]) == (
        "waveform", "waveform_l1", "adam", 3e-4, 0.0, None)
    assert t["ema_momentum"] == 0.9999 and t["epochs"] == 360
    assert t["mixed_precision"] is False  # HTDemucs does not run under mixed_float16 yet
    assert sorted(d["augmentations"]) == ["channelswap", "gain", "signflip"] and d["gain_range"] == [0.25, 1.25]
    assert (d["remix_group_size"], d["random_track_mix"]) == (4, False)  # demucs' Remix(group_size=4)
    assert (d["max_shift"], d["is_wav"]) == (1.0, True)
    # 800 steps of 32 chunks on 8 devices over the 86 tracks of MUSDB18's train split
    mod = recipe("htdemucs")
    args = mod.parse_args(["--data", "x", "--output", "y"])
    eight = mod.build_config(args, replicas=8)["data"]
    assert eight["batch_size"] == 32 and 86 * eight["samples_per_track"] // 32 == 800
    assert mod.build_config(args)["data"]["batch_size"] == 4
    # the architecture: the zoo entry's model, the released size (41,984,456 parameters, as
    # demucs 4.1.0's HTDemucs with the release's arguments), its segment = the training chunks
    model = kt.build_separator(cfg["model"])  # built, as every zoo.build
    entry = zoo.build(zoo.registry.MODELS["htdemucs"]["config"], family="htdemucs")
    assert model.count_params() == entry.count_params() == 41984456
    assert model.segment == d["seq_duration"] == d["valid_seq_duration"]


@pytest.mark.slow
def test_htdemucs_recipe_small_run(musdb_hq_root, musdb_hq_track, tmp_path):
    out = tmp_path / "htdemucs"
    rows = small_run("htdemucs", musdb_hq_root, out)
    model = check_run(out, SOURCES, musdb_hq_track / "mixture.wav", rows, "HTDemucs")
    assert model.channels == 8 and model.depth == 2
    fresh = initial_weights(recipe("htdemucs"), out)
    changed, total = weights_changed(model, fresh)
    assert changed > total // 2, (changed, total)
    assert float(rows[1]["loss"]) < float(rows[0]["loss"]) or changed, rows


# --- BS-RoFormer ------------------------------------------------------------------------------------

def test_bs_roformer_config_builds_msst_architecture_and_names_its_settings():
    torch = pytest.importorskip("torch")
    bs_roformer = pytest.importorskip("bs_roformer")
    from kerasep import losses, train as kt

    cfg = kt.load_config(ZOO / "bs_roformer" / "train_config.json")
    d, t = cfg["data"], cfg["training"]
    assert (t["domain"], t["loss"], t["optimizer"], t["lr"], t["clipnorm"]) == (
        "waveform", "waveform_multi_stft_l1", "adam", 5e-5, None)
    assert (t["lr_decay_patience"], t["lr_decay_gamma"], t["epochs"]) == (2, 0.95, 1000)
    assert t["mixed_precision"] is False  # BSRoformer does not run under mixed_float16 yet
    loss = losses.get(t["loss"], **t["loss_args"])
    assert (loss.window_sizes, loss.hop_length, loss.min_n_fft, loss.stft_weight) == (
        [4096, 2048, 1024, 512, 256], 147, 2048, 1.0)
    assert round(d["seq_duration"] * 44100) == 131584 and d["batch_size"] == 10
    assert (d["augmentations"], d["gain_range"], d["random_track_mix"]) == (["gain"], [0.5, 1.5], True)
    assert 86 * d["samples_per_track"] // d["batch_size"] in range(990, 1010)  # MSST: 1000 steps
    # the architecture: as lucidrains' BSRoformer (MSST's model class) with the YAML's arguments
    model = kt.build_separator(cfg["model"])
    c = cfg["model"]["config"]
    assert model.stems == ["vocals"] and c["stft_n_fft"] == loss.min_n_fft
    reference = bs_roformer.BSRoformer(
        dim=c["dim"], depth=c["depth"], stereo=True, num_stems=1, time_transformer_depth=1, freq_transformer_depth=1,
        freqs_per_bands=tuple(c["freqs_per_bands"]), dim_head=c["dim_head"], heads=c["heads"],
        stft_n_fft=c["stft_n_fft"], stft_hop_length=c["stft_hop_length"], stft_win_length=c["stft_win_length"],
        mask_estimator_depth=c["mask_estimator_depth"])
    trainable = sum(p.numel() for p in reference.parameters() if p.requires_grad)  # not the rotary frequencies
    assert model.count_params() == trainable == 24591276
    del torch


@pytest.mark.slow
def test_bs_roformer_recipe_small_run(musdb_hq_root, musdb_hq_track, tmp_path):
    out = tmp_path / "bs_roformer"
    rows = small_run("bs_roformer", musdb_hq_root, out)
    model = check_run(out, ["vocals"], musdb_hq_track / "mixture.wav", rows, "BSRoformer")
    assert model.dim == 16 and model.stft_n_fft == 256
    changed, total = weights_changed(model, initial_weights(recipe("bs_roformer"), out))
    assert changed > total // 2, (changed, total)
    assert float(rows[1]["loss"]) < float(rows[0]["loss"]), rows  # Adam at 5e-5 from the start
