import numpy as np
import pytest

from kerasep.backend import tf
from kerasep.layers.wiener import WienerFilter, wiener
from reference.openunmix_ref import import_openunmix
from testing import run_layer_serialization_test


def _inputs(seed=0, batch=1, targets=3, channels=2, frames=37, bins=33):
    rng = np.random.RandomState(seed)
    mix = (rng.randn(batch, channels, frames, bins, 2) * 3).astype("float32")
    mags = np.abs(rng.randn(batch, targets, channels, frames, bins) * 2).astype("float32")
    return mags, mix


def _reference(mags, mix, niter, softmask, residual, win):
    """openunmix's per-window loop (as its Separator runs it) for batch item 0."""
    import torch

    _, filtering = import_openunmix()
    v = torch.from_numpy(mags[0].transpose(2, 3, 1, 0).copy())  # (frames, bins, channels, targets)
    x = torch.from_numpy(mix[0].transpose(1, 2, 0, 3).copy())  # (frames, bins, channels, 2)
    frames = x.shape[0]
    win = win or frames
    outs = []
    for pos in range(0, frames, win):
        sl = slice(pos, min(frames, pos + win))
        outs.append(filtering.wiener(v[sl], x[sl], niter, softmask=softmask, residual=residual))
    y = torch.cat(outs).numpy()  # (frames, bins, channels, 2, sources)
    return y.transpose(4, 2, 0, 1, 3)  # (sources, channels, frames, bins, 2)


@pytest.mark.parametrize(
    "niter,softmask,residual,win,channels",
    [
        (1, False, False, 10, 2),
        (1, False, True, 10, 2),
        (2, True, False, None, 2),
        (0, False, True, 10, 2),
        (3, False, False, 16, 2),
        (1, False, False, 10, 1),
        (2, True, True, 7, 1),
    ],
)
def test_matches_openunmix_filtering(niter, softmask, residual, win, channels):
    mags, mix = _inputs(channels=channels)
    ours = wiener(mags, mix, niter=niter, softmask=softmask, residual=residual, wiener_win_len=win)
    ref = _reference(mags, mix, niter, softmask, residual, win)
    assert ours.shape == (1,) + ref.shape
    err = np.abs(ours.numpy()[0] - ref).max() / np.abs(ref).max()
    assert err < 1e-4, err


@pytest.mark.parametrize("softmask,residual", [(False, False), (True, True)])
def test_xla_compiled_windows_match(softmask, residual):
    """jit_compile=True (the TF inference path) filters each window as the plain ops do."""
    mags, mix = _inputs(seed=4, batch=2, frames=25)
    kwargs = dict(niter=2, softmask=softmask, residual=residual, wiener_win_len=10)
    want = wiener(mags, mix, **kwargs).numpy()
    got = tf.function(lambda a, b: wiener(a, b, jit_compile=True, **kwargs))(mags, mix).numpy()
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-5


def test_batch_items_are_independent_and_windows_exact():
    mags, mix = _inputs(batch=3, frames=25)
    both = wiener(mags, mix, niter=2, residual=True, wiener_win_len=10).numpy()
    for b in range(3):
        one = wiener(mags[b : b + 1], mix[b : b + 1], niter=2, residual=True, wiener_win_len=10)
        np.testing.assert_allclose(both[b], one.numpy()[0], rtol=1e-5, atol=1e-5)
    # a window covering everything equals wiener_win_len=None
    a = wiener(mags, mix, niter=1, wiener_win_len=25).numpy()
    b = wiener(mags, mix, niter=1, wiener_win_len=None).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_residual_sums_to_mixture_and_silence_is_safe():
    mags, mix = _inputs()
    y = wiener(mags, mix, niter=0, residual=True).numpy()
    np.testing.assert_allclose(y.sum(axis=1), mix, rtol=1e-5, atol=1e-4)
    # silent mixture and silent estimates: finite (zero) outputs and finite gradients
    zeros_mix = np.zeros_like(mix)
    zeros_mag = tf.Variable(np.zeros_like(mags))
    with tf.GradientTape() as tape:
        out = wiener(zeros_mag, zeros_mix, niter=2, residual=True, wiener_win_len=8)
        loss = tf.reduce_sum(out)
    grad = tape.gradient(loss, zeros_mag)
    assert np.all(np.isfinite(out.numpy())) and np.all(out.numpy() == 0)
    assert np.all(np.isfinite(grad.numpy()))


def test_differentiable_wrt_estimates():
    mags, mix = _inputs(frames=12)
    var = tf.Variable(mags)
    with tf.GradientTape() as tape:
        y = wiener(var, mix, niter=1, wiener_win_len=5)
        loss = tf.reduce_sum(tf.square(y[:, 0]))
    grad = tape.gradient(loss, var).numpy()
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0
    # central finite difference on one entry agrees with the analytic gradient
    idx = (0, 0, 1, 3, 4)
    h = 1e-2
    plus, minus = mags.copy(), mags.copy()
    plus[idx] += h
    minus[idx] -= h
    f = lambda m: float(tf.reduce_sum(tf.square(wiener(m, mix, niter=1, wiener_win_len=5)[:, 0])))
    numeric = (f(plus) - f(minus)) / (2 * h)
    assert abs(numeric - grad[idx]) <= 2e-2 * max(1.0, abs(numeric)), (numeric, grad[idx])


def test_dynamic_shapes_in_tf_function():
    layer = WienerFilter(niter=1, residual=True, wiener_win_len=6)
    fn = tf.function(
        layer,
        input_signature=[
            tf.TensorSpec((None, 2, 2, None, 17), tf.float32),
            tf.TensorSpec((None, 2, None, 17, 2), tf.float32),
        ],
    )
    for frames in (5, 6, 13):
        mags, mix = _inputs(batch=2, targets=2, frames=frames, bins=17)
        out = fn(mags, mix)
        np.testing.assert_allclose(out.numpy(), layer(mags, mix).numpy(), rtol=1e-5, atol=1e-5)
        assert out.shape == (2, 3, 2, frames, 17, 2)


def test_layer_config_and_errors():
    mags, mix = _inputs(frames=9)
    run_layer_serialization_test(WienerFilter(niter=2, softmask=True, residual=True, wiener_win_len=4),
                                 mags, mix)
    with pytest.raises(ValueError, match="niter"):
        WienerFilter(niter=-1)
    with pytest.raises(ValueError, match="wiener_win_len"):
        WienerFilter(wiener_win_len=0)
    with pytest.raises(ValueError, match="two sources"):
        wiener(mags[:, :1], mix, niter=1)
    with pytest.raises(ValueError, match="1 or 2 channels"):
        wiener(np.ones((1, 2, 3, 4, 5), "float32"), np.ones((1, 3, 4, 5, 2), "float32"), niter=1)
    with pytest.raises(ValueError, match="expected mag_estimates"):
        wiener(mags[0], mix, niter=1)


def test_with_unet_estimates():
    """Spleeter's --mwf: U-Net magnitude estimates over its F bins, Wiener-filtered."""
    from kerasep.models import UNetSeparator

    model = UNetSeparator(targets=["vocals", "accompaniment"], n_fft=256, hop_length=64, T=64,
                          F=64, conv_n_filters=[2, 2, 2, 2, 2, 2])
    model.build((None, 2, None))
    wave = np.random.RandomState(0).randn(1, 2, 6000).astype("float32")
    spec = model.stft(wave)  # (1, 2, frames, F, 2)
    masks = model.estimate_masks(spec)
    mag = model.magnitude(spec)
    est = [masks[t] * mag for t in model.targets]
    y = wiener(est, spec, niter=1, wiener_win_len=50)
    assert y.shape == (1, 2) + tuple(spec.shape[1:])
    assert np.all(np.isfinite(y.numpy()))
