"""Acceptance: real-size Open-Unmix (umxhq architecture, random weights shared through the
converter) against the ``openunmix`` package on the real MUSDB18 track (fixture ``musdb_hq_track``)."""
import numpy as np
import pytest
import soundfile as sf

from kerasep.backend import tf
from kerasep.models import OpenUnmixSeparator
from kerasep.zoo.converters import openunmix as convert
from reference.openunmix_ref import import_openunmix, random_openunmix

TARGETS = ["vocals", "drums", "bass", "other"]


def sdr(ref, est):
    return 10 * np.log10(np.sum(ref**2) / np.sum((ref - est) ** 2))


@pytest.mark.slow
def test_umxhq_size_parity_on_musdb_track(musdb_hq_track):
    import torch

    model_mod, _ = import_openunmix()
    audio, rate = sf.read(musdb_hq_track / "mixture.wav", dtype="float32")
    assert rate == 44100 and audio.shape[1] == 2
    wave = np.ascontiguousarray(audio.T)[None]  # (1, nb_channels, nb_timesteps)

    refs = {t: random_openunmix(k, 2049, 2, 512, 3, max_bin=1487) for k, t in enumerate(TARGETS)}
    states = {t: m.state_dict() for t, m in refs.items()}
    config = convert.convert_config(states)
    assert config["max_bin"] == 1487 and config["hidden_size"] == 512 and config["nb_layers"] == 3
    ours = OpenUnmixSeparator(**config, niter=1, wiener_win_len=300)
    ours.build((None, 2, None))
    convert.convert_weights(ours, states)

    @tf.function
    def run(x):
        mag = ours.mix_magnitude(ours.stft(x))
        return mag, ours.estimate_spectrograms(mag), ours(x)

    mag, estimates, stems = run(wave)
    mag, estimates = mag.numpy(), estimates.numpy()

    # per-target spectrogram models on the same input magnitude
    with torch.no_grad():
        x = torch.from_numpy(mag.transpose(0, 1, 3, 2).copy())  # openunmix: (batch, ch, bins, frames)
        for j, t in enumerate(TARGETS):
            want = refs[t](x).numpy().transpose(0, 1, 3, 2)
            rel = np.abs(estimates[:, j] - want).max() / np.abs(want).max()
            print(f"{t}: spectrogram max relative difference {rel:.2e}")
            assert rel <= 1e-4, (t, rel)

    # the full separator, Wiener EM with niter=1
    separator = model_mod.Separator(refs, niter=1, n_fft=4096, n_hop=1024, nb_channels=2,
                                    wiener_win_len=300).eval()
    with torch.no_grad():
        want = separator(torch.from_numpy(wave)).numpy()
    for j, t in enumerate(TARGETS):
        assert np.sum(want[0, j] ** 2) > 0
        value = sdr(want[0, j], stems[t].numpy()[0])
        print(f"{t}: separator SDR ours vs openunmix {value:.1f} dB")
        assert value >= 40, t
