"""Decoding audio files: :func:`load`, :func:`load_with_rate`, :func:`info` and the block decoder.

- WAV, FLAC, OGG/Vorbis, MP3 and the other formats libsndfile understands are read with
  :mod:`soundfile`.
- MP4/M4A/AAC (and the MUSDB18 ``.stem.mp4`` files, whose first audio stream is the mixture)
  are decoded by an ``ffmpeg`` subprocess to raw ``float32`` PCM. ffmpeg is also the fallback
  when soundfile cannot open a file. Only the first audio stream (``-map 0:a:0``) is read.
- The file's own sample rate is kept through decoding; :func:`kerasep.audio.resample` converts
  it afterwards, so every format is resampled the same way.

:func:`decode_blocks` is the seam for bounded-memory reading (:mod:`kerasep.diskaudio`): it
yields a file's raw samples block by block at its own rate and channel count, unvalidated;
:func:`load_with_rate` decodes whole files and validates them (:mod:`kerasep.audio.validate`).
Arrays are ``float32 (nb_timesteps, nb_channels)``; times in seconds, rates in Hz.
"""

from __future__ import annotations

import math
import os
import shutil
import warnings
from typing import Optional, Tuple

import numpy as np
import soundfile

from kerasep.audio.ffmpeg import _FFmpegFailure, _ffmpeg_blocks, _ffprobe  # noqa: F401 (also re-exported)
from kerasep.audio.resample import resample
from kerasep.export.runner import option, os_error_message, truncation_message, truncation_tolerance, wav_declared_frames
from kerasep.audio.validate import (
    AudioError,
    PathLike,
    adapt_channels,
    check_finite,
    check_nb_channels,
    check_rate,
)

__all__ = [
    "load",
    "load_with_rate",
    "info",
    "check_path",
    "decode_blocks",
    "BLOCK_TIMESTEPS",
    "FFMPEG_EXTENSIONS",
]

#: Extensions decoded by ffmpeg directly (libsndfile does not read these containers).
FFMPEG_EXTENSIONS = frozenset(
    {".mp4", ".m4a", ".m4b", ".aac", ".mov", ".mkv", ".mka", ".webm", ".wma", ".ac3", ".alac"}
)


def check_path(path) -> str:
    """Return ``path`` (str, bytes or os.PathLike) as a ``str`` after checking that it names
    an existing, non-empty file; :class:`AudioError` (naming the path) if not."""
    try:
        spath = os.fspath(path)
    except TypeError:
        raise AudioError(
            f"expected a path to an audio file, found {type(path).__name__}"
        ) from None
    if isinstance(spath, bytes):
        spath = os.fsdecode(spath)
    if not os.path.exists(spath):
        raise AudioError(f"{spath}: no such file")
    if os.path.isdir(spath):
        raise AudioError(f"{spath}: expected an audio file, found a directory")
    if not os.path.isfile(spath):  # reading a FIFO or a device would block or never end
        raise AudioError(f"{spath}: not a regular file (a device, FIFO or socket); expected an audio file")
    try:
        size = os.path.getsize(spath)
    except OSError as e:
        raise AudioError(f"{spath}: cannot read file: {e.strerror or e}") from e
    if size == 0:
        raise AudioError(f"{spath}: file is empty (0 bytes)")
    try:  # a file that cannot be read is said so, not reported as undecodable by both decoders
        with open(spath, "rb") as f:
            f.read(1)
    except OSError as e:
        raise AudioError(f"{spath}: {os_error_message(e, spath, 'reading')}") from None
    return spath


#: Timesteps per block when audio is decoded, resampled or written block by block.
BLOCK_TIMESTEPS = 1 << 18


def _soundfile_blocks(f: "soundfile.SoundFile", path: str, duration: Optional[float], block: int):
    """Blocks of an open (and positioned) soundfile, closing it at the end."""
    with f:
        left = None if duration is None else max(1, int(round(duration * f.samplerate)))
        while left is None or left > 0:
            try:
                data = f.read(block if left is None else min(block, left), dtype="float32", always_2d=True)
            except (soundfile.LibsndfileError, RuntimeError) as e:
                raise AudioError(f"{path}: {_UNDECODABLE} (soundfile: {_soundfile_error(e, path)})") from None
            if not len(data):
                return
            yield data
            if left is not None:
                left -= len(data)


def _soundfile_error(e: Exception, path: str) -> str:
    msg = str(e).replace(f"Error opening {path!r}: ", "").strip().rstrip(".")
    # libsndfile says this about unrecognised data even though the file exists
    if "possibly a pipe" in msg:
        msg = "format not recognised"
    return msg


_UNDECODABLE = "could not decode file: it is corrupt or not in a supported audio format"


def _ffmpeg_guarded(path, start, duration, why, block, soundfile_error=None):
    """:func:`_ffmpeg_blocks` with every ffmpeg failure, at start or mid-stream, as an
    :class:`AudioError` naming the file (and soundfile's own error when ffmpeg was the fallback)."""
    prefix = "" if soundfile_error is None else f"soundfile: {soundfile_error}; "
    try:
        rate, channels, blocks, declared = _ffmpeg_blocks(path, start, duration, why, block)
    except _FFmpegFailure as e:
        raise AudioError(f"{path}: {_UNDECODABLE} ({prefix}{e})") from None

    def guarded():
        try:
            yield from blocks
        except _FFmpegFailure as e:
            raise AudioError(f"{path}: {_UNDECODABLE} ({prefix}{e})") from None

    return rate, channels, guarded(), None if declared is None else int(round(declared * rate))


def _checked(blocks, path: str, rate: int, expected: Optional[int], allow_truncated: bool):
    """``blocks`` passed through, then their total checked against the ``expected`` samples
    the container declares: a shortfall beyond the codec's slack
    (:func:`~kerasep.export.runner.truncation_tolerance`), or a decode failing mid-stream, is an
    :class:`AudioError` naming both numbers, or with ``allow_truncated`` a warning (what decoded
    is kept)."""
    n = 0
    try:
        for b in blocks:
            n += len(b)
            yield b
    except AudioError as e:
        if not n:
            raise
        if not allow_truncated:
            raise AudioError(f"{e}; it fails after {n / rate:.2f} s"
                             + ("" if expected is None else f" of the declared {expected / rate:.2f} s")
                             + f": pass {option('allow_truncated')} to keep the part that decodes") from None
        warnings.warn(f"{path}: damaged: decoding stopped after {n / rate:.2f} s ({e}); kept what decoded "
                      f"({option('allow_truncated')})", UserWarning, stacklevel=2)
        return
    if expected is not None and expected > 0 and n < expected - truncation_tolerance(expected, rate):
        if not allow_truncated:
            raise AudioError(truncation_message(path, n, expected, rate))
        warnings.warn(f"{path}: truncated: decoded {n / rate:.2f} s of the declared {expected / rate:.2f} s; "
                      f"kept what decoded ({option('allow_truncated')})", UserWarning, stacklevel=2)


def _expected(declared: Optional[int], rate: int, start: float, duration: Optional[float]) -> Optional[int]:
    """The samples a read of ``[start, start + duration)`` should give, from the declared total."""
    if declared is None or declared <= 0:
        return None
    left = declared - int(round(start * rate))
    if duration is not None:
        left = min(left, max(1, int(round(duration * rate))))
    return left if left > 0 else None


def decode_blocks(path: str, start: float = 0.0, duration: Optional[float] = None,
                   block: int = BLOCK_TIMESTEPS, allow_truncated: bool = False):
    """Decode ``path`` at its own rate and channel count, block by block.

    ``path`` is a ``str`` (e.g. from :func:`check_path`); ``start`` and ``duration`` are in
    seconds of the file's time (``duration=None``: to the end).

    Returns ``(rate, channels, blocks)``: the file's sample rate in Hz and channel count, and an
    iterator of ``float32 (m, channels)`` arrays of at most ``block`` timesteps, consecutive in
    the file (no validation of the samples: see :func:`kerasep.audio.validate.check_finite`
    and :func:`kerasep.audio.validate.adapt_channels`). soundfile reads what libsndfile
    understands; MP4-family containers go to ffmpeg, which is also the fallback when soundfile
    cannot open a file. Errors are :class:`AudioError` naming the file.

    The decoded length is checked against the one the container declares (a WAV header's data
    size, libsndfile's frame count for FLAC and MP3, ffprobe's duration for the rest): a file
    that decodes short, or fails mid-stream, raises :class:`AudioError` with both numbers when
    the iterator ends, unless ``allow_truncated`` (then a :class:`UserWarning`, and what decoded
    is kept).
    """
    rate, channels, blocks, declared = _decode_blocks(path, start, duration, block)
    return rate, channels, _checked(blocks, path, rate, _expected(declared, rate, start, duration), allow_truncated)


def _decode_blocks(path, start, duration, block):
    ext = os.path.splitext(path)[1].lower()
    if ext in FFMPEG_EXTENSIONS:
        return _ffmpeg_guarded(path, start, duration, f"decoding '{ext}' files uses ffmpeg", block)
    try:
        f = soundfile.SoundFile(path)
        try:
            first = int(round(start * f.samplerate))
            if first and f.frames > 0 and first >= f.frames:
                duration = 0.0  # past the end: no samples
            elif first:
                f.seek(first)
        except BaseException:
            f.close()
            raise
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        sf_error = _soundfile_error(e, path)
    else:
        if duration == 0.0:  # start past the end
            f.close()
            return f.samplerate, f.channels, iter(()), None
        declared = wav_declared_frames(path)
        declared = declared if declared is not None else (f.frames if 0 < f.frames < 1 << 62 else None)
        return f.samplerate, f.channels, _soundfile_blocks(f, path, duration, block), declared
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        raise AudioError(
            f"{path}: {_UNDECODABLE} (soundfile: {sf_error}); ffmpeg, the fallback decoder, "
            "was not found on the PATH (install ffmpeg to read more formats)"
        )
    return _ffmpeg_guarded(path, start, duration, "the fallback decoder is ffmpeg", block, sf_error)


def _decode(path: str, start: float, duration: Optional[float],
            allow_truncated: bool = False) -> Tuple[np.ndarray, int]:
    rate, channels, blocks = decode_blocks(path, start, duration, allow_truncated=allow_truncated)
    parts = list(blocks)
    if not parts:
        return np.zeros((0, channels), np.float32), rate
    audio = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return audio, rate


def load_with_rate(
    path: PathLike,
    sample_rate: Optional[int] = 44100,
    nb_channels: Optional[int] = 2,
    downmix: bool = False,
    start: float = 0.0,
    duration: Optional[float] = None,
    allow_truncated: bool = False,
) -> Tuple[np.ndarray, int]:
    """Decode an audio file; return the waveform and its sample rate.

    Parameters
    ----------
    path : str or os.PathLike
        Audio file. WAV/FLAC/OGG/MP3 (and other libsndfile formats) are read by soundfile;
        MP4/M4A/AAC and MUSDB18 ``.stem.mp4`` files by ffmpeg (first audio stream only: the
        mixture, for stems); ffmpeg is also the fallback when soundfile fails.
    sample_rate : int or None
        Rate in Hz to return the audio at; the file is resampled (band-limited, see
        :func:`resample`) when its rate differs. ``None`` keeps the file's rate.
    nb_channels : {2, 1, None}
        Channels to return: ``2`` duplicates mono files, ``1`` averages stereo files, ``None``
        keeps the file's 1 or 2 channels.
    downmix : bool
        Accept files with more than 2 channels by averaging all channels to mono (then
        duplicating to stereo unless ``nb_channels=1``). Without it they raise
        :class:`AudioError`.
    start : float
        Offset in seconds (in the file's time) to start reading at.
    duration : float or None
        Seconds to read from ``start``; ``None`` reads to the end. A file that ends earlier
        returns what it has.
    allow_truncated : bool
        Accept a file that decodes shorter than its container declares (cut or damaged), with
        a warning, keeping what decodes. Without it that is an :class:`AudioError` giving both
        lengths.

    Returns
    -------
    audio : np.ndarray
        ``float32`` array of shape ``(nb_timesteps, nb_channels)``.
    rate : int
        Sample rate of ``audio`` in Hz (``sample_rate``, or the file's rate when that is None).

    Raises
    ------
    AudioError
        If the file does not exist, is empty, cannot be decoded (or needs ffmpeg and ffmpeg is
        missing), holds no samples in the requested range, holds NaN/inf samples, has an
        unsupported channel count, or if an argument is out of range.
    """
    if sample_rate is not None:
        sample_rate = check_rate(sample_rate, "sample_rate")
    nb_channels = check_nb_channels(nb_channels)
    try:
        start = float(start)
        ok = math.isfinite(start) and start >= 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise AudioError(f"start must be a finite number of seconds >= 0, found {start!r}")
    if duration is not None:
        try:
            duration = float(duration)
            ok = math.isfinite(duration) and duration > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise AudioError(
                f"duration must be None or a finite number of seconds > 0, found {duration!r}"
            )
    spath = check_path(path)

    audio, rate = _decode(spath, start, duration, allow_truncated)
    if audio.shape[0] == 0:
        where = f" after start={start:g} s" if start > 0 else ""
        raise AudioError(f"{spath}: contains no audio samples{where} (0 timesteps)")
    check_finite(audio, spath, rate)
    audio = adapt_channels(audio, spath, nb_channels, downmix)
    if sample_rate is not None and sample_rate != rate:
        audio = resample(audio, rate, sample_rate)
        rate = sample_rate
    return np.ascontiguousarray(audio, dtype=np.float32), int(rate)


def load(
    path: PathLike,
    sample_rate: Optional[int] = 44100,
    nb_channels: Optional[int] = 2,
    downmix: bool = False,
    start: float = 0.0,
    duration: Optional[float] = None,
    allow_truncated: bool = False,
) -> np.ndarray:
    """Decode an audio file to a ``float32`` array of shape ``(nb_timesteps, nb_channels)``.

    Same arguments and errors as :func:`load_with_rate`, which also returns the sample rate
    (useful with ``sample_rate=None``, which keeps the file's own rate).

    Examples
    --------
    >>> audio = load("song.mp3")                      # doctest: +SKIP
    >>> audio.shape, audio.dtype                      # doctest: +SKIP
    ((479832, 2), dtype('float32'))
    """
    return load_with_rate(
        path,
        sample_rate=sample_rate,
        nb_channels=nb_channels,
        downmix=downmix,
        start=start,
        duration=duration,
        allow_truncated=allow_truncated,
    )[0]


def info(path: PathLike) -> dict:
    """Describe an audio file without decoding it.

    Returns
    -------
    dict
        ``sample_rate`` (int, Hz), ``nb_channels`` (int), ``nb_timesteps`` (int, samples per
        channel), ``duration`` (float, seconds) and ``format`` (str). For files read through
        ffprobe (MP4/M4A/AAC, or when soundfile fails) ``nb_timesteps`` is derived from the
        container's duration and may differ from the decoded length by a few samples (or be
        ``None`` with ``duration`` when the container does not say).

    Raises
    ------
    AudioError
        If the file does not exist, is empty or cannot be read.
    """
    spath = check_path(path)
    ext = os.path.splitext(spath)[1].lower()
    sf_error = None
    if ext not in FFMPEG_EXTENSIONS:
        try:
            i = soundfile.info(spath)
            return {
                "sample_rate": int(i.samplerate),
                "nb_channels": int(i.channels),
                "nb_timesteps": int(i.frames),
                "duration": float(i.frames) / i.samplerate if i.samplerate else 0.0,
                "format": i.format,
            }
        except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
            sf_error = _soundfile_error(e, spath)
    why = f"reading '{ext}' files uses ffprobe" if sf_error is None else (
        f"soundfile could not read it ({sf_error}) and the fallback is ffprobe"
    )
    try:
        meta = _ffprobe(spath, why)
    except _FFmpegFailure as e:
        detail = f"soundfile: {sf_error}; {e}" if sf_error else str(e)
        raise AudioError(f"{spath}: could not read file: it is corrupt or not in a supported "
                         f"audio format ({detail})") from None
    dur = meta["duration"]
    return {
        "sample_rate": meta["sample_rate"],
        "nb_channels": meta["nb_channels"],
        "nb_timesteps": None if dur is None else int(round(dur * meta["sample_rate"])),
        "duration": dur,
        "format": meta["format"],
    }

