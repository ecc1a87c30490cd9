"""The run folder's history across calls: a second ``train()`` on the same folder (resuming from
the backup) writes a ``history.json`` with every epoch, the earlier ones included, and a rerun of
a finished run trains nothing and reports the real best validation loss (not nan)."""
import json

import numpy as np
import pytest

GROUPS = {"vocals": ["vocals"], "accompaniment": ["drums", "bass", "other"]}
SMALL_UNET = {"family": "unet", "config": {"targets": ["vocals", "accompaniment"], "n_fft": 512, "hop_length": 128,
                                           "T": 16, "F": 64, "conv_n_filters": [4, 8, 16], "dropout": 0.0}}


def config(epochs):
    return {
        "model": SMALL_UNET,
        "data": {"source": "musdb", "is_wav": True, "targets": GROUPS,
                 "train": {"subset": "test", "split": None}, "valid": {"subset": "test", "split": None},
                 "seq_duration": 0.5, "samples_per_track": 4, "batch_size": 4,
                 "valid_seq_duration": 1.0, "valid_batch_size": 2},
        "training": {"epochs": epochs, "lr": 0.003, "seed": 1},
    }


@pytest.mark.slow
def test_history_json_covers_every_epoch_across_calls(musdb_hq_root, tmp_path, capsys):
    from kerasep import cli, train

    out = tmp_path / "run"
    _, first = train.train(config(2), musdb_hq_root, out, verbose=0, tensorboard=False)
    assert len(first["val_loss"]) == 2
    assert json.loads((out / "history.json").read_text()) == first
    # the same folder, two more epochs: resumes at epoch 2, the history keeps epochs 0 and 1
    _, second = train.train(config(4), musdb_hq_root, out, verbose=0, tensorboard=False)
    saved = json.loads((out / "history.json").read_text())
    assert saved == second and len(saved["val_loss"]) == 4
    for key in ("loss", "val_loss", "vocals_loss", "val_accompaniment_loss"):
        np.testing.assert_allclose(saved[key][:2], first[key], rtol=1e-6, err_msg=key)
    # the CSV (written epoch by epoch) and history.json agree
    rows = (out / "history.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2", "3"]
    # a rerun of the finished run: nothing to train, the real best val_loss of the folder
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(config(4)))
    capsys.readouterr()
    assert cli.main(["train", str(cfg), "--data", str(musdb_hq_root), "--output", str(out), "-q"]) == 0
    err = capsys.readouterr().err
    assert "epoch " not in err  # no epoch ran
    assert f"(best val_loss {min(saved['val_loss']):.5g})" in err and "nan" not in err
    assert json.loads((out / "history.json").read_text()) == saved
