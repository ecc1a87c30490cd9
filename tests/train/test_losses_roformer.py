"""``kerasep.losses.WaveformMultiSTFTL1`` (the band-split RoFormers' loss) against torch: the
same formula written with ``torch.stft``/``F.l1_loss``, and the loss lucidrains' ``BSRoformer``
(the ``BS-RoFormer`` package, the layout of MSST's checkpoints) returns from ``forward(mix,
target)``."""
import numpy as np
import pytest

from kerasep import losses
from kerasep.backend import keras, tf

torch = pytest.importorskip("torch")
F = torch.nn.functional

rng = np.random.default_rng(1)


def torch_loss(y, y_hat, window_sizes=(4096, 2048, 1024, 512, 256), hop=147, min_n_fft=2048, weight=1.0):
    """lucidrains' formula on ``(batch, nb_channels, nb_timesteps)`` numpy arrays."""
    t, p = torch.from_numpy(y), torch.from_numpy(y_hat)
    total = F.l1_loss(p, t)
    spectral = 0.0
    for w in window_sizes:
        kw = dict(n_fft=max(w, min_n_fft), win_length=w, hop_length=hop, window=torch.hann_window(w),
                  return_complex=True, normalized=False)
        spectral = spectral + F.l1_loss(torch.stft(p.reshape(-1, p.shape[-1]), **kw),
                                        torch.stft(t.reshape(-1, t.shape[-1]), **kw))
    return float(total + weight * spectral)


def signals(batch=2, channels=2, n=6000):
    y = (0.3 * rng.standard_normal((batch, channels, n))).astype(np.float32)
    y_hat = (y + 0.1 * rng.standard_normal(y.shape)).astype(np.float32)
    y[:, :, :1500] = 0.0  # digital silence, predicted exactly: |STFT difference| = 0 in those frames
    y_hat[:, :, :1500] = 0.0
    return y, y_hat


def test_equals_the_torch_formula_at_the_papers_resolutions():
    y, y_hat = signals()
    loss = losses.get("waveform_multi_stft_l1")
    assert isinstance(loss, losses.WaveformMultiSTFTL1)
    assert (loss.window_sizes, loss.hop_length, loss.min_n_fft) == ([4096, 2048, 1024, 512, 256], 147, 2048)
    got = float(loss(y, y_hat))
    np.testing.assert_allclose(got, torch_loss(y, y_hat), rtol=2e-5)
    # per example: the torch value of each example alone
    per = loss.call(tf.constant(y), tf.constant(y_hat)).numpy()
    for b in range(len(y)):
        np.testing.assert_allclose(per[b], torch_loss(y[b : b + 1], y_hat[b : b + 1]), rtol=2e-5)
    # other settings: weight 0.5, one resolution below min_n_fft (window inside a longer frame)
    other = losses.WaveformMultiSTFTL1(window_sizes=(300, 1024), hop_length=100, min_n_fft=512, stft_weight=0.5)
    np.testing.assert_allclose(float(other(y, y_hat)),
                               torch_loss(y, y_hat, (300, 1024), 100, 512, 0.5), rtol=2e-5)
    # only the waveform L1 with stft_weight 0
    np.testing.assert_allclose(float(losses.WaveformMultiSTFTL1(stft_weight=0)(y, y_hat)),
                               np.mean(np.abs(y - y_hat)), rtol=1e-6)


def test_gradient_is_finite_on_exact_silence_and_matches_torch():
    y, y_hat = signals(batch=1, n=5000)
    loss = losses.WaveformMultiSTFTL1(window_sizes=(1024, 256), min_n_fft=512)
    p = tf.Variable(y_hat)
    with tf.GradientTape() as tape:
        value = loss(y, p)
    grad = tape.gradient(value, p).numpy()
    assert np.isfinite(grad).all() and np.abs(grad).max() > 0

    pt = torch.from_numpy(y_hat).requires_grad_(True)
    t = torch.from_numpy(y)
    total = F.l1_loss(pt, t)
    for w in (1024, 256):
        kw = dict(n_fft=max(w, 512), win_length=w, hop_length=147, window=torch.hann_window(w), return_complex=True)
        total = total + F.l1_loss(torch.stft(pt[0], **kw), torch.stft(t[0], **kw))
    total.backward()
    ref = pt.grad.numpy()
    # away from the silence (where either side's subgradient of |0| is a convention)
    np.testing.assert_allclose(grad[..., 2500:], ref[..., 2500:], rtol=1e-3, atol=1e-9 + 1e-3 * np.abs(ref).max())


def test_equals_lucidrains_bs_roformer_training_loss():
    bs_roformer = pytest.importorskip("bs_roformer")
    torch.manual_seed(0)
    model = bs_roformer.BSRoformer(dim=16, depth=1, stereo=True, num_stems=1, time_transformer_depth=1,
                                   freq_transformer_depth=1, freqs_per_bands=(4, 4, 8, 16, 32, 65), dim_head=8,
                                   heads=2, attn_dropout=0.0, ff_dropout=0.0, flash_attn=False, stft_n_fft=256,
                                   stft_hop_length=64, stft_win_length=256, mask_estimator_depth=1,
                                   multi_stft_resolution_loss_weight=0.7)
    model.eval()
    mix = torch.from_numpy((0.3 * rng.standard_normal((2, 2, 8192))).astype(np.float32))
    target = torch.from_numpy((0.2 * rng.standard_normal((2, 2, 8192))).astype(np.float32))
    with torch.no_grad():
        recon = model(mix)  # (batch, nb_channels, nb_timesteps) for one stem
        reference = float(model(mix, target=target))
    ours = losses.WaveformMultiSTFTL1(min_n_fft=256, stft_weight=0.7)
    value = float(ours(target.numpy(), recon.numpy()[..., : target.shape[-1]]))
    np.testing.assert_allclose(value, reference, rtol=2e-5)


def test_serialises_and_refuses_bad_arguments():
    loss = losses.WaveformMultiSTFTL1(window_sizes=(512, 256), hop_length=64, min_n_fft=512, stft_weight=0.25)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(again, losses.WaveformMultiSTFTL1)
    assert again.get_config() == loss.get_config()
    y, y_hat = signals(batch=1, n=3000)
    assert float(again(y, y_hat)) == float(loss(y, y_hat))
    with pytest.raises(ValueError, match="window_sizes"):
        losses.WaveformMultiSTFTL1(window_sizes=())
    with pytest.raises(ValueError, match="hop_length"):
        losses.WaveformMultiSTFTL1(hop_length=0)
    with pytest.raises(ValueError, match="stft_weight"):
        losses.WaveformMultiSTFTL1(stft_weight=-1)
