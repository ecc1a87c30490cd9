"""Losses and metrics against numpy formulas; serialisation round trips."""
import numpy as np
import pytest

from kerasep import losses, metrics
from kerasep.backend import keras, tf

rng = np.random.default_rng(0)
S = rng.standard_normal((3, 2, 2048)).astype(np.float32)
E = (S + 0.3 * rng.standard_normal(S.shape)).astype(np.float32)


def np_sdr(s, e):
    return 10 * np.log10(np.sum(s * s, -1) / np.sum((s - e) ** 2, -1))


def np_si_sdr(s, e):
    s = s - s.mean(-1, keepdims=True)
    e = e - e.mean(-1, keepdims=True)
    a = np.sum(s * e, -1, keepdims=True) / np.sum(s * s, -1, keepdims=True)
    t = a * s
    return 10 * np.log10(np.sum(t * t, -1) / np.sum((e - t) ** 2, -1))


def np_mag(x, n_fft, hop):
    x = np.pad(x, [(0, 0), (0, 0), (n_fft // 2, n_fft // 2)])
    win = np.hanning(n_fft + 1)[:-1]  # periodic Hann, as tf.signal.hann_window
    n = 1 + (x.shape[-1] - n_fft) // hop
    frames = np.stack([x[..., i * hop : i * hop + n_fft] for i in range(n)], axis=-2)
    return np.abs(np.fft.rfft(frames * win, axis=-1))


def test_spectrogram_losses_on_magnitudes_and_waveforms():
    a, b = np.abs(S), np.abs(E)
    np.testing.assert_allclose(float(losses.SpectrogramMSE()(a, b)), np.mean((a - b) ** 2), rtol=1e-5)
    np.testing.assert_allclose(float(losses.SpectrogramL1()(a, b)), np.mean(np.abs(a - b)), rtol=1e-5)
    ms, me = np_mag(S, 256, 64), np_mag(E, 256, 64)
    np.testing.assert_allclose(float(losses.SpectrogramMSE(256, 64)(S, E)), np.mean((ms - me) ** 2), rtol=1e-4)
    np.testing.assert_allclose(float(losses.SpectrogramL1(256, 64)(S, E)), np.mean(np.abs(ms - me)), rtol=1e-4)
    with pytest.raises(ValueError, match="give both n_fft and hop_length"):
        losses.SpectrogramMSE(n_fft=256)


def test_waveform_losses():
    np.testing.assert_allclose(float(losses.WaveformL1()(S, E)), np.mean(np.abs(S - E)), rtol=1e-5)
    assert float(losses.WaveformL1()(S, S)) == 0.0
    np.testing.assert_allclose(float(losses.SISDRLoss()(S, E)), -np.mean(np_si_sdr(S, E)), rtol=1e-4)
    # scale invariance
    np.testing.assert_allclose(float(losses.SISDRLoss()(S, 3.0 * E)), float(losses.SISDRLoss()(S, E)), rtol=1e-4)
    mr = losses.MultiResolutionSTFT(fft_sizes=(128, 256), hop_sizes=(32, 64))
    assert float(mr(S, S)) < 1e-4 < float(mr(S, E))
    # by hand for one resolution: spectral convergence + log-magnitude L1, per example then mean
    one = losses.MultiResolutionSTFT(fft_sizes=(256,), hop_sizes=(64,))
    ms, me = np_mag(S, 256, 64).reshape(3, -1), np_mag(E, 256, 64).reshape(3, -1)
    sc = np.linalg.norm(ms - me, axis=1) / np.linalg.norm(ms, axis=1)
    lm = np.mean(np.abs(np.log(ms + 1e-7) - np.log(me + 1e-7)), axis=1)
    np.testing.assert_allclose(float(one(S, E)), np.mean(sc + lm), rtol=1e-3)


def test_losses_get_and_serialisation():
    assert sorted(losses.LOSSES) == ["multi_resolution_stft", "si_sdr", "spectrogram_l1", "spectrogram_mse", "waveform_l1",
                                    "waveform_multi_stft_l1"]
    for name, cls in losses.LOSSES.items():
        loss = losses.get(name)
        clone = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(clone) is cls and clone.get_config() == loss.get_config()
    with pytest.raises(ValueError, match="unknown loss 'l3'"):
        losses.get("l3")


def test_losses_under_float16_inputs():
    v = losses.SpectrogramL1(256, 64)(tf.constant(S, tf.float16), tf.constant(E, tf.float16))
    assert v.dtype == tf.float32 and np.isfinite(float(v))


def test_metrics():
    m = metrics.SDR()
    m.update_state(S, E)
    np.testing.assert_allclose(float(m.result()), np.mean(np_sdr(S, E)), rtol=1e-4)
    m2 = metrics.SISDR()
    m2.update_state(S, E)
    np.testing.assert_allclose(float(m2.result()), np.mean(np_si_sdr(S, E)), rtol=1e-4)
    assert isinstance(keras.metrics.deserialize(keras.metrics.serialize(m)), metrics.SDR)
