"""Sample-rate conversion: :func:`resample`.

Band-limited polyphase resampling (:func:`scipy.signal.resample_poly`) of ``float32``
``(nb_timesteps, nb_channels)`` arrays between integer rates in Hz. :func:`kerasep.audio.load`
uses it after decoding, so every format is resampled the same way, and
:func:`kerasep.diskaudio.resample_to_disk` block by block.

The arithmetic is in one place, :func:`kerasep.export.runner.resample` (the standalone ONNX
runner's, which needs only numpy), so kerasep and an exported model's runner resample alike;
this module checks the arguments and hands the runner ``float32`` samples.
"""

from __future__ import annotations

import numpy as np

from kerasep.audio.validate import AudioError, check_rate
from kerasep.export.runner import resample as _runner_resample

__all__ = ["resample"]


def resample(audio, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling from ``orig_sr`` to ``target_sr`` Hz.

    Uses :func:`scipy.signal.resample_poly` with the reduced ratio ``target_sr / orig_sr``
    (e.g. 44100 -> 22050 is up=1, down=2; 44100 -> 48000 is up=160, down=147) and its default
    Kaiser-windowed anti-aliasing filter, so content above the lower Nyquist frequency is
    removed rather than aliased. The filtering is :func:`kerasep.export.runner.resample` on the
    samples converted to ``float32`` (``resample_poly`` filters in its input's precision).

    Parameters
    ----------
    audio : array_like
        ``(nb_timesteps, nb_channels)`` or ``(nb_timesteps,)`` floating-point waveform. Any
        number of channels; channels are resampled independently.
    orig_sr, target_sr : int
        Sample rates in Hz (positive integers).

    Returns
    -------
    np.ndarray
        New ``float32`` array with the same number of dimensions and channels and
        ``ceil(nb_timesteps * target_sr / orig_sr)`` timesteps (a copy even when the rates are
        equal).
    """
    orig_sr = check_rate(orig_sr, "orig_sr")
    target_sr = check_rate(target_sr, "target_sr")
    arr = np.asarray(audio)
    if arr.dtype.kind != "f" or arr.ndim not in (1, 2):
        raise AudioError(
            "resample: expected a floating-point array of shape (nb_timesteps, nb_channels) or "
            f"(nb_timesteps,), found dtype {arr.dtype} and shape {arr.shape}"
        )
    if orig_sr == target_sr:
        return arr.astype(np.float32, copy=True)  # the runner would return its input itself
    if arr.shape[0] == 0:
        return np.zeros((0,) + arr.shape[1:], dtype=np.float32)
    return _runner_resample(arr.astype(np.float32, copy=False), orig_sr, target_sr)
