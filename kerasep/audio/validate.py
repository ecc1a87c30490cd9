"""Validation of audio arrays and of the arguments that describe them.

The checks every other part of :mod:`kerasep.audio` (and :mod:`kerasep.diskaudio`) builds on:
sample rates (:func:`check_rate`), channel counts (:func:`check_nb_channels`), finite samples
(:func:`check_finite`), mapping to 1 or 2 channels (:func:`adapt_channels`) and the whole
in-memory waveform check (:func:`check_audio`). Every problem raises :class:`AudioError`, a
:class:`ValueError` whose message names the file or array, what was expected and what was found.

Arrays are ``(nb_timesteps, nb_channels)``, sample rates in Hz.
"""

from __future__ import annotations

import os
from typing import Optional, Union

import numpy as np


def _option(keyword):
    """``--downmix`` when a command line is running, ``downmix=True`` in Python."""
    from kerasep.export.runner import option

    return option(keyword)

__all__ = [
    "AudioError",
    "check_rate",
    "check_nb_channels",
    "check_finite",
    "adapt_channels",
    "check_audio",
]

#: Type of the path arguments of :mod:`kerasep.audio`.
PathLike = Union[str, "os.PathLike[str]"]


class AudioError(ValueError):
    """An audio file or array cannot be used as asked.

    Raised for missing, empty, undecodable or zero-length files, non-finite samples, arrays of
    the wrong shape, unsupported channel counts or output formats, a missing ``ffmpeg``, and
    refusals to overwrite. The message names the file (or array) and the problem.
    """


def check_rate(rate, what: str) -> int:
    """Return a sample rate as a positive ``int`` number of Hz.

    ``rate`` may be any number equal to a positive integer (``44100``, ``44100.0``,
    ``np.int64(44100)``; not a bool). ``what`` names the argument in the message
    (e.g. ``"sample_rate"``). Raises :class:`AudioError` otherwise.
    """
    try:
        ok = not isinstance(rate, bool) and float(rate) == int(rate) and int(rate) > 0
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise AudioError(f"{what} must be a positive integer number of Hz, found {rate!r}")
    return int(rate)


def check_nb_channels(nb_channels) -> Optional[int]:
    """Return a wanted channel count: ``1``, ``2`` or ``None`` (keep the input's 1 or 2).

    Raises :class:`AudioError` for anything else (bools included).
    """
    if nb_channels is None:
        return None
    if isinstance(nb_channels, bool) or nb_channels not in (1, 2):
        raise AudioError(f"nb_channels must be 1, 2 or None, found {nb_channels!r}")
    return int(nb_channels)


def check_finite(
    audio: np.ndarray, name: str, rate: Optional[int] = None, offset: Optional[int] = None
) -> None:
    """Raise :class:`AudioError` if ``audio`` holds NaN or inf samples.

    ``audio`` is ``(nb_timesteps, nb_channels)``; the message, prefixed with ``name``, gives the
    number of NaN and inf samples and the timestep and channel of the first one (and its time in
    seconds when ``rate``, in Hz, is given). ``offset``: for a block of a longer signal, the
    timestep of ``audio[0]`` in that signal, so positions are reported in the whole signal.
    """
    finite = np.isfinite(audio)
    if finite.all():
        return
    bad = np.argwhere(~finite)
    timestep, channel = (int(i) for i in bad[0])
    total = f"{audio.size}"
    if offset is not None:
        timestep += offset
        total += f" in the block starting at timestep {offset}"
    nb_nan = int(np.isnan(audio).sum())
    nb_inf = len(bad) - nb_nan
    when = f" (t={timestep / rate:.3f} s)" if rate else ""
    raise AudioError(
        f"{name}: expected finite samples, found {len(bad)} non-finite "
        f"({nb_nan} NaN, {nb_inf} inf) out of {total}; first at timestep {timestep}"
        f"{when}, channel {channel}"
    )


def adapt_channels(
    audio: np.ndarray, name: str, nb_channels: Optional[int], downmix: bool
) -> np.ndarray:
    """Map a ``(nb_timesteps, C)`` array to ``(nb_timesteps, nb_channels)``.

    ``nb_channels`` is ``1``, ``2`` or ``None`` (keep 1 or 2 channels as they are), as returned
    by :func:`check_nb_channels`; ``name`` prefixes error messages. The result is ``audio``
    itself when nothing changes, else a new array (averages are computed in float64 and
    returned as ``float32``):

    - 1 -> 2: the mono channel is duplicated.
    - 2 -> 1: the two channels are averaged.
    - C > 2: :class:`AudioError` unless ``downmix``; with ``downmix`` all channels are averaged
      to mono, then duplicated to stereo (``nb_channels`` 2 or ``None``).
    """
    found = audio.shape[1]
    if found == 0:
        raise AudioError(f"{name}: expected 1 or 2 channels, found 0")
    if found > 2:
        if not downmix:
            raise AudioError(
                f"{name}: expected 1 or 2 channels, found {found}; "
                f"pass {_option('downmix')} to mix down to stereo (channels are averaged)"
            )
        audio = audio.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
        found = 1
        if nb_channels is None:
            nb_channels = 2
    if nb_channels is None or nb_channels == found:
        return audio
    if nb_channels == 2:  # found == 1
        return np.repeat(audio, 2, axis=1)
    # nb_channels == 1, found == 2
    return audio.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)


def check_audio(
    audio,
    name: str = "audio",
    nb_channels: Optional[int] = None,
    downmix: bool = False,
) -> np.ndarray:
    """Validate an in-memory waveform and return it as ``float32 (nb_timesteps, nb_channels)``.

    Parameters
    ----------
    audio : array_like
        Waveform of shape ``(nb_timesteps, nb_channels)``, or ``(nb_timesteps,)`` for mono
        (returned as ``(nb_timesteps, 1)`` before channel adaptation). Floating-point samples,
        nominally in ``[-1, 1]``.
    name : str
        What to call the array in error messages (e.g. a file name).
    nb_channels : {1, 2, None}
        Channels wanted. ``2`` duplicates mono, ``1`` averages stereo, ``None`` keeps 1 or 2
        channels as they are.
    downmix : bool
        Allow more than 2 channels by averaging them all to mono (then duplicating to stereo
        when ``nb_channels`` is 2 or ``None``). Without it, more than 2 channels is an error.

    Returns
    -------
    np.ndarray
        ``float32`` array of shape ``(nb_timesteps, nb_channels)``, C-contiguous. It may share
        memory with ``audio`` when nothing had to change; treat it as read-only.

    Raises
    ------
    AudioError
        If the array is not 1-D or 2-D, looks transposed (``(channels, nb_timesteps)``), has no
        samples, is not real floating point, has non-finite samples, or has an unsupported
        number of channels.
    """
    nb_channels = check_nb_channels(nb_channels)
    try:
        arr = np.asarray(audio)
    except (TypeError, ValueError) as e:
        raise AudioError(f"{name}: expected a numeric array, could not convert it: {e}") from e
    if arr.dtype.kind not in "f":
        if arr.dtype.kind in "iub":
            hint = (
                "; integer PCM must be scaled to [-1, 1] first "
                f"(e.g. audio / {2 ** (8 * arr.dtype.itemsize - 1)})"
                if arr.dtype.kind in "iu"
                else ""
            )
            raise AudioError(
                f"{name}: expected floating-point samples, found dtype {arr.dtype}{hint}"
            )
        raise AudioError(f"{name}: expected real floating-point samples, found dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    elif arr.ndim != 2:
        raise AudioError(
            f"{name}: expected an array of shape (nb_timesteps, nb_channels) or (nb_timesteps,), "
            f"found {arr.ndim} dimensions with shape {arr.shape}"
        )
    elif arr.shape[0] < arr.shape[1] and (arr.shape[0] <= 2 < arr.shape[1] or arr.shape[1] > 64):
        # (2, N) or (1, N) with N > 2, or many more "channels" than timesteps
        more = " (and downmix=True for more than 2 channels)" if arr.shape[0] > 2 else ""
        raise AudioError(
            f"{name}: expected shape (nb_timesteps, nb_channels), found {arr.shape}, which looks "
            f"like (nb_channels, nb_timesteps); pass audio.T instead{more}"
        )
    if arr.shape[0] == 0:
        raise AudioError(f"{name}: contains no audio (0 timesteps, shape {arr.shape})")
    arr = arr.astype(np.float32, copy=False)
    check_finite(arr, name)
    arr = adapt_channels(arr, name, nb_channels, downmix)
    return np.ascontiguousarray(arr)
