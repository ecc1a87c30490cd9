"""Fine-tuning configs without real weights: the ``model`` entry's schema and its errors (named by
field path), pretrained weights loaded through ``kerasep.zoo.load``, ``training.freeze_batchnorm``
(inference-mode BatchNorm: moving statistics used and never updated; from scratch nothing
changes), the ``kerasep train`` flags (checked when parsed, applied over the config) and the
history of a run folder merged across calls."""
import json

import numpy as np
import pytest

from testing import REPO, tiny_unet

FINETUNE = REPO / "zoo" / "unet-2stems" / "finetune_config.json"
TRAIN = REPO / "zoo" / "unet-2stems" / "train_config.json"


@pytest.mark.parametrize("model, message", [
    ({"zoo": "unet-3stems", "pretrained": True}, r"model\.zoo: unknown zoo name 'unet-3stems'; expected one of \["),
    ("unet-3stems", r"model\.zoo: unknown zoo name 'unet-3stems'"),
    ({"zoo": "unet-2stems", "pretrained": "yes"}, r"model\.pretrained must be true or false\. Received: 'yes'"),
    ({"zoo": "unet-2stems", "pretrain": True}, r"model: unknown key\(s\) \['pretrain'\]"),
    ({"family": "unet", "pretrained": True}, r"model: unknown key\(s\) \['pretrained'\].*needs a zoo model"),
    ({"family": "unet3", "config": {}}, r"model\.family: unknown model family 'unet3'"),
    ({"zoo": "unet-2stems", "family": "unet"}, r"model: give either 'zoo'.*or 'family'"),
    ({"config": {}}, r"model needs a 'zoo' name or a 'family'"),
    ({"zoo": "unet-2stems", "pretrained": True, "config": {"dropuot": 0.0}},
     r"model\.config: unknown argument\(s\) \['dropuot'\] of zoo model 'unet-2stems'"),
    ({"zoo": "unet-2stems", "pretrained": True, "config": [1]}, r"model\.config must be a dict"),
    ({"zoo": "unet-2stems", "weights": "/x"}, r"model\.weights: .*only read with model\.pretrained=true"),
    (3, r"model must be a zoo name"),
])
def test_model_entry_errors_name_the_field(model, message):
    from kerasep import train

    with pytest.raises(train.ConfigError, match=message):
        train.load_config({"model": model})


@pytest.mark.parametrize("raw, message", [
    ([{"model": "unet-2stems"}], r"a training config is a dict or a JSON file path\. Received: list"),
    ({"model": "unet-2stems", "data": [1]}, r"data must be a JSON object of data keys\. Received: \[1\]"),
    ({"model": "unet-2stems", "training": "fast"}, r"training must be a JSON object"),
    ({"model": {"family": ["unet"]}}, r"model\.family: unknown model family \['unet'\]"),
])
def test_config_shape_errors_are_config_errors(raw, message):
    from kerasep import train

    with pytest.raises(train.ConfigError, match=message):
        train.load_config(raw)


def test_model_entry_forms():
    from kerasep import train, zoo

    entry = zoo.info("unet-2stems")
    assert train.model_spec("unet-2stems") == train.model_spec({"zoo": "unet-2stems"}) == {
        "zoo": "unet-2stems", "family": "unet", "config": entry["config"], "overrides": {},
        "pretrained": False, "weights": None}
    spec = train.model_spec({"zoo": "unet-2stems", "pretrained": True, "config": {"dropout": 0.0}})
    assert spec["pretrained"] and spec["config"] == dict(entry["config"], dropout=0.0)
    assert spec["overrides"] == {"dropout": 0.0}
    assert not train.model_spec({"family": "unet", "config": {"T": 16}})["pretrained"]
    with pytest.raises(train.ConfigError, match=r"training\.freeze_batchnorm must be true, false or null"):
        train.load_config({"model": "unet-2stems", "training": {"freeze_batchnorm": "yes"}})
    # the shipped fine-tuning config: pretrained unet-2stems, BatchNorm frozen, one 512-frame patch a chunk
    cfg = train.load_config(FINETUNE)
    assert cfg["model"] == {"zoo": "unet-2stems", "pretrained": True}
    assert cfg["training"]["freeze_batchnorm"] is True and cfg["data"]["source"] == "folder"
    arch = entry["config"]
    n = round(cfg["data"]["seq_duration"] * arch["sample_rate"])
    assert -(-(n + arch["n_fft"]) // arch["hop_length"]) == arch["T"]  # Spleeter framing: ceil((n + n_fft) / hop)


def test_pretrained_weights_come_through_zoo_load(monkeypatch):
    from kerasep import train, zoo

    calls = []

    def fake_load(name, weights=None, download=True):
        calls.append((name, weights))
        model = tiny_unet()
        model.zoo_name = name
        return model

    monkeypatch.setattr(zoo, "load", fake_load)
    sep = train.build_separator({"zoo": "unet-2stems", "pretrained": True, "weights": "/local/2stems.tar.gz"})
    assert calls == [("unet-2stems", "/local/2stems.tar.gz")]
    assert sep.n_fft == 256 and sep.zoo_name is None  # the fine-tuned copy is no longer the zoo's
    # the architecture alone never loads weights
    assert train.build_separator("unet-2stems").n_fft == 4096 and len(calls) == 1


def _bn_stats(model):
    from kerasep import train

    return [(v.path, v.numpy().copy()) for bn in train.batchnorm_layers(model)
            for v in (bn.moving_mean, bn.moving_variance)]


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_batchnorm_runs_batchnorm_in_inference_mode(freeze):
    import tensorflow as tf
    from kerasep import losses, train
    from kerasep.backend import keras

    sep = tiny_unet(dropout=0.0)
    adapter = train.Adapter(sep, "spectrogram")
    bns = train.batchnorm_layers(adapter.feature_model)
    assert len(bns) == 3 * (5 + 6)  # per target: 5 encoder + 6 decoder BatchNorms
    if freeze:
        assert train.freeze_batchnorm(adapter.feature_model) == bns
    rng = np.random.default_rng(0)
    mix = tf.constant(rng.normal(size=(2, 2, 8000)).astype(np.float32))
    ys = {t: mix * 0.3 for t in adapter.targets}
    x, y = adapter.featurize(mix, ys)
    # inference-mode BatchNorm normalises with the moving statistics also when training=True
    same = np.array_equal(adapter.feature_model(x, training=True)["vocals"].numpy(),
                          adapter.feature_model(x, training=False)["vocals"].numpy())
    assert same == freeze
    before = _bn_stats(sep)
    gammas = [bn.gamma.numpy().copy() for bn in bns]
    convs = [w.numpy().copy() for w in adapter.feature_model.weights if "kernel" in w.path]
    adapter.fit_model.compile(optimizer=keras.optimizers.Adam(1e-2),
                              loss={t: losses.SpectrogramL1() for t in adapter.targets})
    adapter.fit_model.fit(tf.data.Dataset.from_tensors((mix, ys)).repeat(3), epochs=1, verbose=0)
    after = _bn_stats(sep)
    unchanged = all(np.array_equal(a, b) for (_, a), (_, b) in zip(before, after))
    assert unchanged == freeze
    assert all(np.array_equal(g, bn.gamma.numpy()) for g, bn in zip(gammas, bns)) == freeze
    # the convolutions train either way
    assert any(not np.array_equal(c, w.numpy()) for c, w in
               zip(convs, [w for w in adapter.feature_model.weights if "kernel" in w.path]))


def test_freeze_batchnorm_reaches_the_openunmix_target_models():
    from kerasep import train

    sep = train.build_separator({"family": "openunmix", "config": {
        "targets": ["vocals", "accompaniment"], "n_fft": 512, "hop_length": 128, "hidden_size": 16,
        "nb_layers": 1, "max_bin": 128, "niter": 0}})
    adapter = train.Adapter(sep, "spectrogram")
    frozen = train.freeze_batchnorm(adapter.feature_model)
    assert sorted(bn.name for bn in frozen) == sorted(["bn1", "bn2", "bn3"] * 2)
    for target in sep.targets:
        for name in ("bn1", "bn2", "bn3"):
            assert not sep.target_models[target].get_layer(name).trainable
        assert sep.target_models[target].get_layer("fc1").trainable


def _parse(*flags):
    from kerasep import cli

    return cli.build_parser().parse_args(["train", str(FINETUNE), "--data", "d", *flags])


@pytest.mark.parametrize("flag, value", [
    ("--lr", "0"), ("--lr", "-1e-5"), ("--lr", "nan"), ("--epochs", "0"), ("--epochs", "2.5"),
    ("--batch-size", "-2"), ("--seq-duration", "0"), ("--seq-duration", "inf"), ("--samples-per-track", "x"),
])
def test_train_flags_are_checked_when_parsed(flag, value, capsys):
    with pytest.raises(SystemExit) as exc:
        _parse(f"{flag}={value}")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and repr(value) in err and ("> 0" in err or ">= 1" in err)


def _run_train(monkeypatch, config, *flags):
    """``kerasep train CONFIG --data d FLAGS`` with ``kerasep.train.train`` replaced: the config
    it would train on, and the exit code and message."""
    from kerasep import cli, train

    seen = {}

    def fake_train(cfg, data_root, output_dir=None, epochs=None, verbose="auto"):
        seen.update(cfg=cfg, data=data_root, output=output_dir, epochs=epochs)
        return None, {"val_loss": [0.5, 0.25, float("nan")], "loss": [1.0, 0.5, 0.4]}

    monkeypatch.setattr(train, "train", fake_train)
    code = cli.main(["train", str(config), "--data", "d", "-o", "out", *flags])
    return code, seen.get("cfg"), seen


def test_train_flags_override_the_config(monkeypatch, capsys):
    # the shipped from-scratch recipe on the MUSDB18-HQ test track, with flags only
    code, cfg, seen = _run_train(monkeypatch, TRAIN, "--subset", "test", "--is-wav", "--seq-duration", "5",
                                 "--batch-size", "2", "--samples-per-track", "3", "--lr", "3e-4", "--epochs", "2")
    assert code == 0 and seen["epochs"] == 2
    d, t = cfg["data"], cfg["training"]
    assert d["is_wav"] and d["train"] == {"subset": "test", "split": None} and d["valid"] == {"subset": "test", "split": None}
    assert (d["seq_duration"], d["valid_seq_duration"], d["batch_size"], d["samples_per_track"]) == (5.0, 5.0, 2, 3)
    assert t["lr"] == 3e-4
    err = capsys.readouterr().err
    assert "'unet-2stems' from scratch" in err and '"pretrained": true' in err
    assert "best val_loss 0.25" in err  # the nan of an epoch is not the best
    # the train subset keeps MUSDB18's official split unless --no-split
    _, cfg, _ = _run_train(monkeypatch, TRAIN, "--subset", "train")
    assert cfg["data"]["train"]["split"] == "train" and cfg["data"]["valid"]["split"] == "valid"
    _, cfg, _ = _run_train(monkeypatch, TRAIN, "--no-split")
    assert cfg["data"]["train"] == {"subset": "train", "split": None}
    capsys.readouterr()
    # the fine-tuning config on a MUSDB18-HQ folder: its test/ sub-folder; whole-track validation stays
    code, cfg, _ = _run_train(monkeypatch, FINETUNE, "--subset", "test", "--seq-duration", "2")
    assert code == 0 and cfg["data"]["train"] == {"subset": "test"} and cfg["data"]["valid"] == {"subset": "test"}
    assert cfg["data"]["seq_duration"] == 2.0 and cfg["data"]["valid_seq_duration"] is None
    assert "from scratch" not in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--is-wav", "--no-split"])
def test_musdb_flags_on_a_folder_config_are_refused(monkeypatch, capsys, flag):
    code, cfg, _ = _run_train(monkeypatch, FINETUNE, flag)
    assert code == 2 and cfg is None
    assert f"kerasep train: {flag} applies to data.source 'musdb'" in capsys.readouterr().err


def test_no_validation_loss_is_said_so(monkeypatch, capsys):
    from kerasep import cli, train

    monkeypatch.setattr(train, "train", lambda *a, **k: (None, {"loss": [1.0]}))
    assert cli.main(["train", str(FINETUNE), "--data", "d", "-o", "out"]) == 0
    assert "(no validation loss recorded)" in capsys.readouterr().err


def test_merged_history_reads_the_earlier_epochs(tmp_path):
    from kerasep import train

    (tmp_path / "history.csv").write_text("epoch,learning_rate,loss,val_loss\n0,0.001,2.0,1.5\n1,0.001,1.0,0.5\n"
                                          "2,0.001,0.9,0.7\n")
    new = {"loss": [0.8], "val_loss": [0.6], "learning_rate": [0.001]}
    # resumed at epoch 2: epochs 0 and 1 from the CSV (its row of epoch 2 is the run's own)
    assert train.merged_history(tmp_path, 2, new) == {
        "loss": [2.0, 1.0, 0.8], "val_loss": [1.5, 0.5, 0.6], "learning_rate": [0.001, 0.001, 0.001]}
    # a finished run rerun: nothing new, every epoch from before
    assert train.merged_history(tmp_path, 3, {})["val_loss"] == [1.5, 0.5, 0.7]
    assert train.merged_history(tmp_path, 0, new) == new
    # keys the CSV lacks (learning_rate is logged after the CSV row) come from history.json
    (tmp_path / "history.csv").write_text("epoch,loss,val_loss\n0,2.0,1.5\n1,1.0,0.5\n")
    (tmp_path / "history.json").write_text(json.dumps({"loss": [2.0, 1.0], "val_loss": [1.5, 0.5],
                                                       "learning_rate": [0.01, 0.003]}))
    assert train.merged_history(tmp_path, 2, new)["learning_rate"] == [0.01, 0.003, 0.001]
    # no CSV: the previous history.json; neither: nothing to merge
    (tmp_path / "history.csv").unlink()
    (tmp_path / "history.json").unlink()
    assert train.merged_history(tmp_path, 2, new) == new
    (tmp_path / "history.json").write_text(json.dumps({"loss": [3.0, 2.0], "val_loss": [2.5, 1.5]}))
    assert train.merged_history(tmp_path, 2, new) == {
        "loss": [3.0, 2.0, 0.8], "val_loss": [2.5, 1.5, 0.6], "learning_rate": [None, None, 0.001]}
