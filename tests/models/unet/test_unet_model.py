import numpy as np
import pytest

from kerasep.backend import keras, tf
from kerasep.models import UNetSeparator, build_unet_core

from testing import TINY_UNET, tiny_unet


def test_core_shapes_and_names():
    core = build_unet_core(["a", "b"], nb_channels=2, T=64, F=128, conv_n_filters=[2, 2, 2, 2, 2, 2])
    out = core(np.ones((3, 64, 128, 2), "float32"))
    assert set(out) == {"a", "b"}
    assert out["a"].shape == (3, 64, 128, 2)
    names = {l.name for l in core.layers}
    for expected in ("a_enc0_conv", "a_enc4_bn", "a_enc5_conv", "a_dec0_deconv", "a_dec5_bn", "a_mask_conv"):
        assert expected in names
    # masks are sigmoid × input: never above the mixture, never negative
    x = np.abs(np.random.RandomState(0).randn(1, 64, 128, 2)).astype("float32")
    y = np.asarray(core(x)["a"])
    assert np.all(y >= 0) and np.all(y <= x + 1e-6)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(targets=[]), "targets"),
        (dict(targets=["a", "a"]), "targets"),
        (dict(targets=list("abcdef")), "targets"),
        (dict(T=100), "T"),
        (dict(F=96 + 1), "F"),
        (dict(conv_activation="gelu"), "activation"),
    ],
)
def test_core_validates_arguments(kwargs, match):
    args = dict(targets=["a"], T=64, F=64)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        build_unet_core(**args)


@pytest.mark.parametrize("length", [1, 1000, 64 * 64 * 3 + 17])
def test_separator_any_length_and_masks_sum_to_mixture(length):
    model = tiny_unet()
    x = np.random.RandomState(length).randn(2, 2, length).astype("float32") * 0.1
    out = model(x)
    assert set(out) == set(TINY_UNET["targets"])
    for y in out.values():
        assert y.shape == (2, 2, length)
    # ratio masks sum to one, the bins above F are zeroed: the stems add up to the mixture
    # low-passed to F bins
    total = sum(np.asarray(v) for v in out.values())
    from kerasep.layers import ISTFT, STFT

    low = np.asarray(ISTFT(256, 64)(STFT(256, 64, nb_bins=64)(x), length=x))
    np.testing.assert_allclose(total, low, atol=1e-5)


def test_output_targets_subset():
    model = tiny_unet(output_targets=["drums"])
    out = model(np.zeros((1, 2, 500), "float32"))
    assert list(out) == ["drums"]
    with pytest.raises(ValueError, match="output_targets"):
        tiny_unet(output_targets=["bass"])


def test_config_round_trip_and_keras_file(tmp_path):
    model = tiny_unet(mask_extension="average", separation_exponent=1.0)
    x = np.random.RandomState(0).randn(1, 2, 4000).astype("float32")
    ref = model(x)
    clone = UNetSeparator.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    path = tmp_path / "m.keras"
    model.save(path)
    from kerasep import zoo

    restored = zoo.load(str(path))
    assert isinstance(restored, UNetSeparator)
    out = restored(x)
    for t in TINY_UNET["targets"]:
        np.testing.assert_allclose(np.asarray(out[t]), np.asarray(ref[t]), atol=1e-6)


def test_core_trains_with_fit():
    model = tiny_unet()
    core = model.core
    rng = np.random.RandomState(0)
    mix = np.abs(rng.randn(8, 64, 64, 2)).astype("float32")
    targets = {t: mix * (i + 1) / 6.0 for i, t in enumerate(TINY_UNET["targets"])}
    core.compile(optimizer=keras.optimizers.Adam(1e-3), loss={t: "mae" for t in TINY_UNET["targets"]})
    before = core.evaluate(mix, targets, verbose=0)
    core.fit(tf.data.Dataset.from_tensor_slices((mix, targets)).batch(4), epochs=3, verbose=0)
    after = core.evaluate(mix, targets, verbose=0)
    assert after < before
