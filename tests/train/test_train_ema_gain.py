"""``training.ema_momentum`` (the weights' moving average validates and is kept) and
``data.gain_range`` (the ``"gain"`` augmentation's factors)."""
import numpy as np
import pytest

from kerasep import train
from kerasep.backend import keras, tf


def _model(ema):
    inp = keras.Input((3,))
    model = keras.Model(inp, keras.layers.Dense(1)(inp))
    opt = keras.optimizers.SGD(0.1, use_ema=ema is not None, ema_momentum=ema or 0.99)
    model.compile(optimizer=opt, loss="mse")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32)).astype(np.float32)
    return model, tf.data.Dataset.from_tensor_slices((x, y)).batch(4)


def _h5(path):
    import h5py

    out = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.append((name, obj[()])) if isinstance(obj, h5py.Dataset) else None)
    return dict(out)


def test_ema_callback_sits_between_backup_and_checkpoint(tmp_path):
    t = dict(train.DEFAULT_TRAINING, ema_momentum=0.9)
    kinds = [type(c).__name__ for c in train.make_callbacks(tmp_path, t, tensorboard=False, progress=False)]
    assert kinds.index("BackupAndRestore") < kinds.index("SwapEMAWeights") < kinds.index("ModelCheckpoint")
    plain = [type(c).__name__ for c in train.make_callbacks(tmp_path / "b", train.DEFAULT_TRAINING,
                                                            tensorboard=False, progress=False)]
    assert "SwapEMAWeights" not in plain


def test_ema_is_validated_and_checkpointed_while_the_backup_keeps_raw_weights(tmp_path):
    t = dict(train.DEFAULT_TRAINING, ema_momentum=0.8, epochs=1)
    model, ds = _model(0.8)
    raw_after = {}

    class Raw(keras.callbacks.Callback):  # first in the list: sees the raw weights at epoch end
        def on_epoch_end(self, epoch, logs=None):
            raw_after["w"] = [v.numpy().copy() for v in self.model.trainable_variables]
            ema = self.model.optimizer._model_variables_moving_average
            raw_after["ema"] = [v.numpy().copy() for v in ema]

    callbacks = [Raw()] + train.make_callbacks(tmp_path, t, tensorboard=False, progress=False)
    hist = model.fit(ds, validation_data=ds, epochs=1, verbose=0, callbacks=callbacks, shuffle=False)
    raw, ema = raw_after["w"], raw_after["ema"]
    assert not np.allclose(raw[0], ema[0])  # 4 steps at 0.8: the average lags the weights
    # the validation loss is the average's
    probe, _ = _model(None)
    probe.set_weights(ema)
    np.testing.assert_allclose(hist.history["val_loss"][0], probe.evaluate(ds, verbose=0), rtol=1e-5)
    # the best checkpoint holds the average, the backup the raw weights (an exact resume)
    best = _h5(tmp_path / "checkpoints" / "best.weights.h5")
    backup = _h5(tmp_path / "backup" / "latest.weights.h5")
    kernel = "layers/dense/vars/0"
    np.testing.assert_allclose(best[kernel], ema[0], rtol=1e-6)
    np.testing.assert_allclose(backup[kernel], raw[0], rtol=1e-6)
    # the backup's optimizer state holds the average (SGD: iterations, learning rate, then the averages)
    np.testing.assert_allclose(backup["optimizer/vars/2"], ema[0], rtol=1e-6)
    # after fit the model holds the average (what the driver saves, from the best checkpoint)
    np.testing.assert_allclose(model.trainable_variables[0].numpy(), ema[0], rtol=1e-6)


def test_ema_and_gain_range_schema():
    cfg = train.load_config({"model": "unet-2stems", "training": {"ema_momentum": 0.999},
                             "data": {"gain_range": [0.5, 1.5]}})
    assert cfg["training"]["ema_momentum"] == 0.999 and cfg["data"]["gain_range"] == [0.5, 1.5]
    assert train.load_config({"model": "unet-2stems"})["data"]["gain_range"] == [0.25, 1.25]
    for bad, field in (({"training": {"ema_momentum": 1.0}}, "training.ema_momentum"),
                       ({"training": {"ema_momentum": 0}}, "training.ema_momentum"),
                       ({"data": {"gain_range": [1.5, 0.5]}}, "data.gain_range"),
                       ({"data": {"gain_range": [0.5]}}, "data.gain_range"),
                       ({"data": {"gain_range": [-1, 1]}}, "data.gain_range.0")):
        with pytest.raises(train.ConfigError, match=field.replace(".", r"\.")):
            train.load_config(dict({"model": "unet-2stems"}, **bad))


def test_gain_range_sets_the_gain_factors():
    from kerasep.data import augment

    seeds = [tf.constant([7, k], tf.int64) for k in range(200)]
    scales = np.concatenate([augment.draw(s, 4, ["gain"], (0.5, 1.5))[0].numpy() for s in seeds])
    assert 0.5 <= scales.min() < 0.55 and 1.45 < scales.max() < 1.5
    default = np.concatenate([augment.draw(s, 4, ["gain"])[0].numpy() for s in seeds])
    assert 0.25 <= default.min() < 0.3 and 1.2 < default.max() < 1.25
    # the same uniform draws, rescaled: u in [0, 1) -> low + u (high - low)
    np.testing.assert_allclose((scales - 0.5), (default - 0.25), rtol=1e-5, atol=1e-6)


def test_remix_indices_permute_each_source_within_its_group():
    from kerasep.data import augment

    idx = augment.remix_indices(tf.constant([3, 9], tf.int64), 12, 4, 4).numpy()
    assert idx.shape == (12, 4)
    for g in range(3):
        for s in range(4):
            assert sorted(idx[4 * g : 4 * g + 4, s]) == list(range(4 * g, 4 * g + 4))
    assert len({tuple(idx[:, s]) for s in range(4)}) > 1  # the sources are shuffled independently


def test_remix_group_size_reshuffles_sources_within_batch_groups(musdb_hq_root):
    from kerasep import data

    tracks = data.musdb_tracks(musdb_hq_root, subset="test", split=None, is_wav=True)
    targets = {s: [s] for s in ("drums", "bass", "other", "vocals")}

    def first_batch(**kw):
        ds = data.training_dataset(tracks, targets, seq_duration=0.5, samples_per_track=8, batch_size=8,
                                   augmentations=["gain", "signflip"], seed=5, **kw)
        mix, ys = next(iter(ds))
        return mix.numpy(), {k: v.numpy() for k, v in ys.items()}

    mix0, ys0 = first_batch()
    mix1, ys1 = first_batch(remix_group_size=4)
    for name in targets:
        for g in (slice(0, 4), slice(4, 8)):  # the same chunks of each source, in another order
            np.testing.assert_allclose(ys1[name][g].sum(0), ys0[name][g].sum(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mix1, sum(ys1.values()), rtol=1e-5, atol=1e-6)
    assert not np.allclose(mix1, mix0)  # new mixtures
    with pytest.raises(data.DatasetError, match="remix_group_size must divide batch_size"):
        data.training_dataset(tracks, targets, seq_duration=0.5, batch_size=6, remix_group_size=4)
    with pytest.raises(train.ConfigError, match=r"data\.remix_group_size: 3 does not divide data\.batch_size 16"):
        train.load_config({"model": "unet-2stems", "data": {"remix_group_size": 3}})
