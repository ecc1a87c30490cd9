"""Fine-tuning ``unet-2stems`` from Deezer's pretrained weights on the real MUSDB18-HQ track:
``kerasep train zoo/unet-2stems/finetune_config.json`` with flags only improves museval SDR on
the track, keeps the BatchNorm statistics; six steps at lr 1e-5 do not raise the spectrogram L1
of a fixed batch (they did before ``freeze_batchnorm``: the user's report, reproduced); the shipped
from-scratch recipe runs on the track with flags only.

Chunks of 2 s: any chunk up to 11.79 s is one 512-frame patch of the 4096/1024 STFT (Spleeter
framing, ``ceil((n + 4096) / 1024)`` frames, zero-padded to the patch), so a shorter chunk costs
the same per example; the short ones give more distinct chunks of the 6 s track."""
import json

import numpy as np
import pytest

from testing import REPO

FINETUNE = REPO / "zoo" / "unet-2stems" / "finetune_config.json"
TRAIN = REPO / "zoo" / "unet-2stems" / "train_config.json"


def _museval_sdr(model, root):
    """Median-over-frames museval SDR (BSSEval v4, 1 s windows) of vocals and accompaniment on
    the fixture's track."""
    import musdb
    from kerasep import evaluate, separate

    track = musdb.DB(root=str(root), subsets="test", is_wav=True).tracks[0]
    estimates = separate(track.audio.astype(np.float32), model=model)
    scores, _ = evaluate.evaluate_track(track, estimates)
    sdr = evaluate.per_track_median(scores)
    return {t: sdr[t] for t in ("vocals", "accompaniment")}


def _bn_state(model):
    from kerasep import train

    return {v.path: v.numpy() for bn in train.batchnorm_layers(model.core) for v in bn.weights}


@pytest.mark.slow
def test_finetuning_from_pretrained_weights_improves_sdr(musdb_hq_root, unet_2stems, tmp_path, capsys):
    from kerasep import cli, zoo

    out = tmp_path / "finetune"
    code = cli.main(["train", str(FINETUNE), "--data", str(musdb_hq_root), "--subset", "test",
                     "--seq-duration", "2", "--batch-size", "2", "--samples-per-track", "4", "--epochs", "4",
                     "--lr", "5e-5", "-o", str(out), "-q"])
    assert code == 0
    err = capsys.readouterr().err
    assert "best val_loss" in err and "from scratch" not in err
    hist = json.loads((out / "history.json").read_text())
    assert len(hist["val_loss"]) == 4 and hist["val_loss"][-1] < hist["val_loss"][0]
    recorded = json.loads((out / "train_config.json").read_text())
    assert recorded["run"]["freeze_batchnorm"] is True
    assert recorded["model"] == {"zoo": "unet-2stems", "pretrained": True}

    tuned = zoo.load(str(out / "model.keras"))
    # BatchNorm untouched (moving statistics, gamma, beta); the convolutions moved
    before, after = _bn_state(unet_2stems), _bn_state(tuned)
    assert before.keys() == after.keys() and len(before) == 2 * 11 * 4
    for k in before:
        np.testing.assert_array_equal(before[k], after[k], err_msg=k)
    kernel = "vocals_dec0_deconv"
    assert not np.array_equal(unet_2stems.core.get_layer(kernel).kernel.numpy(),
                              tuned.core.get_layer(kernel).kernel.numpy())

    sdr_before = _museval_sdr(unet_2stems, musdb_hq_root)
    sdr_after = _museval_sdr(tuned, musdb_hq_root)
    print(f"museval SDR before {sdr_before}, after {sdr_after}")
    # the card's numbers for the pretrained model on this track
    assert sdr_before == pytest.approx({"vocals": 4.175, "accompaniment": 11.815}, abs=2e-3)
    gain = {t: sdr_after[t] - sdr_before[t] for t in sdr_before}
    assert np.mean(list(gain.values())) > 0.1, gain  # measured: vocals +0.48, accompaniment +0.11 dB
    assert min(gain.values()) > -0.05, gain


def _fixed_batch(musdb_hq_track):
    """Two 2 s chunks of the real track: the mixture and the vocals / accompaniment stems,
    ``(2, 2, 88200)`` waveforms."""
    import soundfile as sf

    stems = {name: sf.read(musdb_hq_track / f"{name}.wav", dtype="float32", frames=4 * 44100)[0]
             for name in ("mixture", "drums", "bass", "other", "vocals")}

    def chunks(x):
        return np.stack([x[:88200].T, x[88200:].T])

    ys = {"vocals": chunks(stems["vocals"]),
          "accompaniment": chunks(stems["drums"] + stems["bass"] + stems["other"])}
    return chunks(stems["mixture"]), ys


@pytest.mark.slow
@pytest.mark.parametrize("freeze", [True, False], ids=["freeze_batchnorm", "batchnorm_training"])
def test_six_steps_at_lr_1e5_do_not_raise_the_l1(musdb_hq_track, spleeter_weights, freeze):
    import tensorflow as tf
    from kerasep import losses, train
    from kerasep.backend import keras

    sep = train.build_separator({"zoo": "unet-2stems", "pretrained": True})
    adapter = train.Adapter(sep, "spectrogram")
    if freeze:
        train.freeze_batchnorm(adapter.feature_model)
    mix, ys = _fixed_batch(musdb_hq_track)
    x, y = adapter.featurize(tf.constant(mix), {t: tf.constant(v) for t, v in ys.items()})
    adapter.fit_model.compile(optimizer=keras.optimizers.Adam(1e-5),
                              loss={t: losses.SpectrogramL1() for t in adapter.targets})
    l1_before = adapter.fit_model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    stats = _bn_state(sep)
    batches = tf.data.Dataset.from_tensors((mix, ys)).repeat(6)
    adapter.fit_model.fit(batches, epochs=1, verbose=0, shuffle=False)
    l1_after = adapter.fit_model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    print(f"freeze_batchnorm={freeze}: spectrogram L1 {l1_before:.4f} -> {l1_after:.4f}")
    moved = [k for k, v in _bn_state(sep).items() if not np.array_equal(v, stats[k])]
    if freeze:
        assert l1_after <= l1_before
        assert moved == []
    else:  # what plain compile/fit did: the statistics of six small batches replace the learnt ones
        assert l1_after > 1.2 * l1_before
        assert any("moving_variance" in k for k in moved)


@pytest.mark.slow
def test_pretrained_with_an_architecture_override(unet_2stems):
    from kerasep import train
    from kerasep.backend import keras

    sep = train.build_separator({"zoo": "unet-2stems", "pretrained": True, "config": {"dropout": 0.0}})
    assert sep.dropout == 0.0
    assert not [l for l in sep.core.layers if isinstance(l, keras.layers.Dropout)]
    assert [w.path for w in sep.weights] == [w.path for w in unet_2stems.weights]
    for a, b in zip(sep.weights, unet_2stems.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    with pytest.raises(train.ConfigError, match=r"model\.config: the overrides \{'conv_n_filters'"):
        train.build_separator({"zoo": "unet-2stems", "pretrained": True,
                               "config": {"conv_n_filters": [8, 16, 32, 64, 128, 256]}})


@pytest.mark.slow
def test_the_from_scratch_recipe_runs_on_the_track_with_flags_only(musdb_hq_root, tmp_path, capsys):
    from kerasep import cli

    out = tmp_path / "scratch"
    code = cli.main(["train", str(TRAIN), "--data", str(musdb_hq_root), "--subset", "test", "--is-wav",
                     "--seq-duration", "5", "--batch-size", "1", "--samples-per-track", "1", "--epochs", "1",
                     "-o", str(out), "-q"])
    assert code == 0, capsys.readouterr().err
    hist = json.loads((out / "history.json").read_text())
    assert len(hist["val_loss"]) == 1 and np.isfinite(hist["val_loss"][0])
    recorded = json.loads((out / "train_config.json").read_text())
    assert recorded["run"]["freeze_batchnorm"] is False  # from scratch: BatchNorm trains, as before
    assert recorded["data"]["train"] == {"subset": "test", "split": None} and recorded["data"]["is_wav"]
