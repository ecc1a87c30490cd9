import numpy as np
import pytest
import scipy.signal

from kerasep import audio
from kerasep.layers import ISTFT, STFT, ApplyMask, Magnitude, RatioMask
from kerasep.layers.stft import nb_frames
from testing import MIXTURE_MP3, run_layer_serialization_test


@pytest.fixture(scope="module")
def real_audio():
    x = audio.load(MIXTURE_MP3)  # (nb_timesteps, 2)
    return np.ascontiguousarray(x.T[None])  # (1, 2, nb_timesteps)


@pytest.mark.parametrize("padding", ["spleeter", "center"])
@pytest.mark.parametrize("n_fft,hop", [(4096, 1024), (2048, 512), (512, 128)])
def test_stft_istft_round_trip_on_real_audio(real_audio, padding, n_fft, hop):
    x = real_audio[..., : 44100 * 3 + 777]  # not a multiple of the hop
    spec = STFT(n_fft, hop, padding=padding, pad_mode="reflect" if padding == "center" else "constant")(x)
    assert spec.shape == (1, 2, nb_frames(x.shape[-1], n_fft, hop, padding), n_fft // 2 + 1, 2)
    y = np.asarray(ISTFT(n_fft, hop, padding=padding)(spec, length=x))
    assert y.shape == x.shape
    rel = np.linalg.norm(y - x) / np.linalg.norm(x)
    assert rel < 1e-5, rel


def test_stft_matches_scipy_oracle(real_audio):
    """Frames and bins agree with scipy's STFT (periodic Hann, no scaling, same framing)."""
    x = real_audio[0, 0, : 44100]
    n_fft, hop = 1024, 256
    ours = np.asarray(STFT(n_fft, hop, padding="center", pad_mode="constant")(x[None, None]))[0, 0]
    ours = ours[..., 0] + 1j * ours[..., 1]  # (nb_frames, nb_bins)
    _, _, ref = scipy.signal.stft(
        x, window="hann", nperseg=n_fft, noverlap=n_fft - hop, boundary="zeros",
        padded=False, scaling="spectrum", detrend=False, return_onesided=True,
    )
    ref = ref.T * scipy.signal.get_window("hann", n_fft).sum()  # undo scipy's scaling
    n = min(len(ref), len(ours))
    np.testing.assert_allclose(ours[:n], ref[:n], atol=2e-4 * np.abs(ref).max())


def test_spleeter_framing_prepends_one_frame_of_zeros():
    x = np.zeros((1, 1, 5000), np.float32)
    x[0, 0, 0] = 1.0  # impulse at t=0 appears in frames whose window covers n_fft + 0
    spec = np.asarray(STFT(1024, 256, padding="spleeter")(x))[0, 0]
    energy = (spec**2).sum(axis=(-1, -2))
    # frame k covers padded samples [k*hop, k*hop + n_fft): the impulse at padded index 1024
    # lies in frames 1..4 (frame 0 ends just before it, and sits at the window's zero in frame 4)
    assert energy[0] == 0.0
    assert np.all(energy[1:4] > 0)
    assert spec.shape[0] == nb_frames(5000, 1024, 256, "spleeter") == -(-(5000 + 1024) // 256)


def test_istft_treats_missing_bins_as_zero(real_audio):
    x = real_audio[..., :20000]
    full = STFT(512, 128)(x)
    cropped = STFT(512, 128, nb_bins=100)(x)
    zeroed = np.asarray(full).copy()
    zeroed[..., 100:, :] = 0
    a = np.asarray(ISTFT(512, 128)(cropped, length=x))
    b = np.asarray(ISTFT(512, 128)(zeroed, length=x))
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_magnitude_and_masks():
    spec = np.random.RandomState(0).randn(2, 2, 5, 7, 2).astype("float32")
    mag = np.asarray(Magnitude()(spec))
    np.testing.assert_allclose(mag, np.hypot(spec[..., 0], spec[..., 1]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(Magnitude(power=2)(spec)), mag**2, rtol=1e-5)
    a, b = np.abs(spec[..., 0]), np.abs(spec[..., 1])
    ma, mb = (np.asarray(m) for m in RatioMask(2.0)([a, b]))
    np.testing.assert_allclose(ma + mb, 1.0, atol=1e-6)
    np.testing.assert_allclose(ma, (a**2 + 5e-11) / (a**2 + b**2 + 1e-10), rtol=1e-5)
    masked = np.asarray(ApplyMask("zeros")(spec, ma[..., :4]))
    assert masked.shape == (2, 2, 5, 4, 2)
    np.testing.assert_allclose(masked, spec[..., :4, :] * ma[..., :4, None], rtol=1e-6)
    avg = np.asarray(ApplyMask("average")(spec, ma[..., :4]))
    np.testing.assert_allclose(avg[..., 4:, :], spec[..., 4:, :] * ma[..., :4].mean(-1)[..., None, None], rtol=1e-5)


def test_layers_serialise():
    x = np.random.RandomState(1).randn(1, 2, 3000).astype("float32")
    run_layer_serialization_test(STFT(256, 64, padding="center", pad_mode="reflect", nb_bins=50), x)
    spec = STFT(256, 64)(x)
    run_layer_serialization_test(ISTFT(256, 64), spec, length=3000)
    run_layer_serialization_test(Magnitude(power=2.0), spec)
    run_layer_serialization_test(RatioMask(1.0, eps=1e-8), [np.abs(x), np.abs(x) * 2])
    run_layer_serialization_test(ApplyMask("average"), spec, np.ones((1, 2, spec.shape[2], 10), "float32"))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(n_fft=1024, hop_length=2048), "hop_length"),
        (dict(n_fft=1024, hop_length=256, padding="same"), "padding"),
        (dict(n_fft=1024, hop_length=256, pad_mode="edge"), "pad_mode"),
        (dict(n_fft=1024, hop_length=256, nb_bins=600), "nb_bins"),
    ],
)
def test_stft_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        STFT(**kwargs)
