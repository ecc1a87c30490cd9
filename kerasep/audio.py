"""Audio input/output: decoding, validation, resampling and atomic writing.

Every array this module returns or accepts is a ``float32`` array of shape
``(nb_timesteps, nb_channels)`` (the layout of soundfile and Spleeter), with samples nominally
in ``[-1, 1]``. Time arguments (``start``, ``duration``) are in seconds, sample rates in Hz.

Decoding
--------
- WAV, FLAC, OGG/Vorbis, MP3 and the other formats libsndfile understands are read with
  :mod:`soundfile`.
- MP4/M4A/AAC (and the MUSDB18 ``.stem.mp4`` files, whose first audio stream is the mixture)
  are decoded by an ``ffmpeg`` subprocess to raw ``float32`` PCM. ffmpeg is also the fallback
  when soundfile cannot open a file. Only the first audio stream (``-map 0:a:0``) is read.
- The file's own sample rate is kept through decoding; :func:`resample` (a band-limited
  polyphase filter, :func:`scipy.signal.resample_poly`) converts it afterwards, so every format
  is resampled the same way.

Every problem with the audio itself (missing, empty, undecodable or non-finite files, wrong
channel counts, bad shapes, refusing to overwrite) raises :class:`AudioError`, a
:class:`ValueError`, whose message names the file and says what was expected and what was found.

This module must stay light: it never imports TensorFlow.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import warnings
from fractions import Fraction
from typing import Optional, Tuple, Union

import numpy as np
import soundfile

__all__ = [
    "AudioError",
    "load",
    "load_with_rate",
    "resample",
    "check_audio",
    "save",
    "save_blocks",
    "info",
    "SAVE_FORMATS",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Extensions decoded by ffmpeg directly (libsndfile does not read these containers).
FFMPEG_EXTENSIONS = frozenset(
    {".mp4", ".m4a", ".m4b", ".aac", ".mov", ".mkv", ".mka", ".webm", ".wma", ".ac3", ".alac"}
)

#: Formats :func:`save` writes: extension -> (soundfile format, allowed subtypes, default subtype).
SAVE_FORMATS = {
    ".wav": ("WAV", ("PCM_16", "PCM_24", "FLOAT"), "PCM_16"),
    ".flac": ("FLAC", ("PCM_16", "PCM_24"), "PCM_16"),
}

_STDERR_TAIL = 600  # characters of ffmpeg's stderr quoted in error messages


class AudioError(ValueError):
    """An audio file or array cannot be used as asked.

    Raised for missing, empty, undecodable or zero-length files, non-finite samples, arrays of
    the wrong shape, unsupported channel counts or output formats, a missing ``ffmpeg``, and
    refusals to overwrite. The message names the file (or array) and the problem.
    """


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _check_rate(rate, what: str) -> int:
    """Return ``rate`` as a positive ``int`` or raise :class:`AudioError`."""
    try:
        ok = not isinstance(rate, bool) and float(rate) == int(rate) and int(rate) > 0
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise AudioError(f"{what} must be a positive integer number of Hz, found {rate!r}")
    return int(rate)


def _check_nb_channels(nb_channels) -> Optional[int]:
    if nb_channels is None:
        return None
    if isinstance(nb_channels, bool) or nb_channels not in (1, 2):
        raise AudioError(f"nb_channels must be 1, 2 or None, found {nb_channels!r}")
    return int(nb_channels)


def _check_finite(
    audio: np.ndarray, name: str, rate: Optional[int] = None, offset: Optional[int] = None
) -> None:
    """Raise :class:`AudioError` if ``audio`` (2-D) holds NaN or inf samples.

    ``offset``: for a block of a longer signal, the timestep of ``audio[0]`` in that signal.
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


def _adapt_channels(
    audio: np.ndarray, name: str, nb_channels: Optional[int], downmix: bool
) -> np.ndarray:
    """Map a ``(nb_timesteps, C)`` array to ``nb_channels`` channels.

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
                "pass downmix=True to mix down to stereo (channels are averaged)"
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
    nb_channels = _check_nb_channels(nb_channels)
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
    _check_finite(arr, name)
    arr = _adapt_channels(arr, name, nb_channels, downmix)
    return np.ascontiguousarray(arr)


# --------------------------------------------------------------------------------------------
# Resampling
# --------------------------------------------------------------------------------------------


def resample(audio, orig_sr: int, target_sr: int) -> np.ndarray:
    """Band-limited resampling from ``orig_sr`` to ``target_sr`` Hz.

    Uses :func:`scipy.signal.resample_poly` with the reduced ratio ``target_sr / orig_sr``
    (e.g. 44100 -> 22050 is up=1, down=2; 44100 -> 48000 is up=160, down=147) and its default
    Kaiser-windowed anti-aliasing filter, so content above the lower Nyquist frequency is
    removed rather than aliased.

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
    orig_sr = _check_rate(orig_sr, "orig_sr")
    target_sr = _check_rate(target_sr, "target_sr")
    arr = np.asarray(audio)
    if arr.dtype.kind != "f" or arr.ndim not in (1, 2):
        raise AudioError(
            "resample: expected a floating-point array of shape (nb_timesteps, nb_channels) or "
            f"(nb_timesteps,), found dtype {arr.dtype} and shape {arr.shape}"
        )
    if orig_sr == target_sr:
        return arr.astype(np.float32, copy=True)
    ratio = Fraction(target_sr, orig_sr)
    up, down = ratio.numerator, ratio.denominator
    if arr.shape[0] == 0:
        return np.zeros((0,) + arr.shape[1:], dtype=np.float32)
    from scipy.signal import resample_poly  # scipy.signal is slow-ish to import; load lazily

    out = resample_poly(arr.astype(np.float32, copy=False), up, down, axis=0)
    return np.ascontiguousarray(out, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def _check_path(path) -> str:
    """Return ``path`` as a str after checking that it is a readable, non-empty file."""
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
    try:
        size = os.path.getsize(spath)
    except OSError as e:
        raise AudioError(f"{spath}: cannot read file: {e.strerror or e}") from e
    if size == 0:
        raise AudioError(f"{spath}: file is empty (0 bytes)")
    return spath


def _tool(name: str, path: str, why: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise AudioError(
            f"{path}: {why}, which needs `{name}`, but `{name}` was not found on the PATH; "
            "install ffmpeg (e.g. `apt-get install ffmpeg`, `brew install ffmpeg` or "
            "`conda install ffmpeg`)"
        )
    return exe


def _ffmpeg_input(path: str) -> str:
    # "file:" stops ffmpeg from reading a leading "-" as an option or "name:" as a protocol.
    return "file:" + os.path.abspath(path)


class _FFmpegFailure(Exception):
    """ffmpeg/ffprobe ran but could not read the file (``str(self)`` is the detail)."""


def _tail(stderr: bytes, path: str) -> str:
    text = stderr.decode("utf-8", "replace").strip()
    text = text.replace(_ffmpeg_input(path) + ": ", "").replace(_ffmpeg_input(path), "<input>")
    text = re.sub(r"\[[^\]@]+ @ 0x[0-9a-fA-F]+\] ", "", text)  # "[mp3 @ 0x55d0...] "
    text = " / ".join(line.strip() for line in text.splitlines() if line.strip())
    if len(text) > _STDERR_TAIL:
        text = "..." + text[-_STDERR_TAIL:]
    return text or "(no error output)"


def _ffprobe(path: str, why: str) -> dict:
    """Sample rate, channels and duration of the first audio stream, via ffprobe."""
    exe = _tool("ffprobe", path, why)
    cmd = [
        exe, "-v", "error", "-select_streams", "a:0",
        "-show_entries", "stream=sample_rate,channels,duration:format=duration,format_name",
        "-of", "json", _ffmpeg_input(path),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise _FFmpegFailure(f"ffprobe: {_tail(proc.stderr, path)}")
    try:
        meta = json.loads(proc.stdout.decode("utf-8", "replace") or "{}")
    except json.JSONDecodeError as e:
        raise _FFmpegFailure(f"ffprobe: unreadable output: {e}") from e
    streams = meta.get("streams") or []
    if not streams:
        raise _FFmpegFailure("ffprobe: expected an audio stream, found none")
    stream = streams[0]
    try:
        rate = int(stream["sample_rate"])
        channels = int(stream["channels"])
    except (KeyError, TypeError, ValueError):
        raise _FFmpegFailure(
            "ffprobe: could not read the sample rate and channel count of the first audio "
            f"stream (it reported {stream})"
        ) from None
    if rate <= 0 or channels <= 0:
        raise _FFmpegFailure(
            "ffprobe: expected a positive sample rate and channel count, found "
            f"{rate} Hz and {channels} channels"
        )
    duration = None
    for source in (stream, meta.get("format") or {}):
        try:
            duration = float(source["duration"])
            break
        except (KeyError, TypeError, ValueError):
            continue
    fmt = (meta.get("format") or {}).get("format_name", "unknown")
    return {"sample_rate": rate, "nb_channels": channels, "duration": duration, "format": fmt}


#: Timesteps per block when audio is decoded, resampled or written block by block.
BLOCK_TIMESTEPS = 1 << 18


def _ffmpeg_blocks(path: str, start: float, duration: Optional[float], why: str, block: int):
    """Start decoding the first audio stream with ffmpeg, at its own rate and channel count.

    Returns ``(rate, channels, blocks)``; ``blocks`` yields ``float32 (m, channels)`` arrays of at
    most ``block`` timesteps. ffmpeg reports a failure only when it exits, so a corrupt file may
    raise :class:`_FFmpegFailure` after some blocks.
    """
    exe = _tool("ffmpeg", path, why)
    meta = _ffprobe(path, why)
    rate, channels = meta["sample_rate"], meta["nb_channels"]
    cmd = [exe, "-nostdin", "-v", "error", "-i", _ffmpeg_input(path)]
    # Output-side seeking (after -i) decodes from the beginning and drops samples: slower than
    # input seeking but sample-exact and identical to slicing a full decode.
    if start > 0:
        cmd += ["-ss", f"{start:.6f}"]
    if duration is not None:
        cmd += ["-t", f"{duration:.6f}"]
    cmd += ["-map", "0:a:0", "-vn", "-sn", "-dn", "-f", "f32le", "-acodec", "pcm_f32le", "-"]

    def blocks():
        frame_bytes = 4 * channels
        with tempfile.TemporaryFile() as stderr:  # a file: a full stderr pipe would block ffmpeg
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL)
            try:
                rest = b""
                while True:
                    raw = proc.stdout.read(block * frame_bytes)
                    if not raw:
                        break
                    raw = rest + raw
                    whole = len(raw) - len(raw) % frame_bytes
                    rest = raw[whole:]
                    if whole:
                        yield np.frombuffer(raw[:whole], dtype="<f4").reshape(-1, channels).astype(np.float32)
                proc.stdout.close()
                returncode = proc.wait()
            finally:
                if proc.poll() is None:  # the consumer stopped early, or an error
                    proc.kill()
                    proc.wait()
            if returncode != 0:
                stderr.seek(0)
                raise _FFmpegFailure(f"ffmpeg: {_tail(stderr.read(), path)}")
            if rest:
                raise _FFmpegFailure(
                    f"ffmpeg: returned a trailing {len(rest)} bytes, not a whole number of "
                    f"{channels}-channel float32 frames (did the channel layout change mid-stream?)"
                )

    return rate, channels, blocks()


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
        rate, channels, blocks = _ffmpeg_blocks(path, start, duration, why, block)
    except _FFmpegFailure as e:
        raise AudioError(f"{path}: {_UNDECODABLE} ({prefix}{e})") from None

    def guarded():
        try:
            yield from blocks
        except _FFmpegFailure as e:
            raise AudioError(f"{path}: {_UNDECODABLE} ({prefix}{e})") from None

    return rate, channels, guarded()


def _decode_blocks(path: str, start: float = 0.0, duration: Optional[float] = None,
                   block: int = BLOCK_TIMESTEPS):
    """Decode ``path`` at its own rate and channel count, block by block.

    Returns ``(rate, channels, blocks)``: ``blocks`` yields ``float32 (m, channels)`` arrays of at
    most ``block`` timesteps (no validation of the samples). soundfile reads what libsndfile
    understands; MP4-family containers go to ffmpeg, which is also the fallback when soundfile
    cannot open a file. Errors are :class:`AudioError` naming the file.
    """
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
            return f.samplerate, f.channels, iter(())
        return f.samplerate, f.channels, _soundfile_blocks(f, path, duration, block)
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        raise AudioError(
            f"{path}: {_UNDECODABLE} (soundfile: {sf_error}); ffmpeg, the fallback decoder, "
            "was not found on the PATH (install ffmpeg to read more formats)"
        )
    return _ffmpeg_guarded(path, start, duration, "the fallback decoder is ffmpeg", block, sf_error)


def _decode(path: str, start: float, duration: Optional[float]) -> Tuple[np.ndarray, int]:
    rate, channels, blocks = _decode_blocks(path, start, duration)
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
        sample_rate = _check_rate(sample_rate, "sample_rate")
    nb_channels = _check_nb_channels(nb_channels)
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
    spath = _check_path(path)

    audio, rate = _decode(spath, start, duration)
    if audio.shape[0] == 0:
        where = f" after start={start:g} s" if start > 0 else ""
        raise AudioError(f"{spath}: contains no audio samples{where} (0 timesteps)")
    _check_finite(audio, spath, rate)
    audio = _adapt_channels(audio, spath, nb_channels, downmix)
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
    spath = _check_path(path)
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


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _fsync_path(path: str, directory: bool = False) -> None:
    if directory:
        if os.name != "posix":
            return  # directories cannot be opened for fsync on Windows
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass  # some filesystems refuse fsync on directories; the rename is still atomic
        finally:
            os.close(fd)
        return
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _exists_error(path: str) -> AudioError:
    return AudioError(
        f"{path}: file already exists; pass overwrite=True (--overwrite on the command line) "
        "to replace it"
    )


def _check_output(path, subtype, sample_rate):
    """Validate an output path, subtype and rate: ``(path as str, format, subtype, rate)``."""
    try:
        spath = os.fsdecode(os.fspath(path))
    except TypeError:
        raise AudioError(f"expected an output path, found {type(path).__name__}") from None
    ext = os.path.splitext(spath)[1].lower()
    if ext not in SAVE_FORMATS:
        supported = ", ".join(sorted(SAVE_FORMATS))
        raise AudioError(
            f"{spath}: unsupported output format {ext or '(no extension)'!r}; "
            f"supported extensions are {supported}"
        )
    fmt, subtypes, default_subtype = SAVE_FORMATS[ext]
    subtype = default_subtype if subtype is None else str(subtype).upper()
    if subtype not in subtypes:
        raise AudioError(
            f"{spath}: unsupported subtype {subtype!r} for {ext} files; "
            f"expected one of {', '.join(subtypes)}"
        )
    return spath, fmt, subtype, _check_rate(sample_rate, "sample_rate")


def _atomic_write(spath: str, fmt: str, overwrite: bool, write) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``spath``, fsync it and rename it onto
    ``spath``; on any failure (``write`` raising included) the temporary file is removed and an
    existing ``spath`` is left untouched."""
    if os.path.isdir(spath):
        raise AudioError(f"{spath}: expected a file path, found a directory")
    if os.path.lexists(spath) and not overwrite:
        raise _exists_error(spath)
    directory = os.path.dirname(os.path.abspath(spath))
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise AudioError(f"{spath}: cannot create directory {directory}: {e.strerror or e}") from e

    base = os.path.basename(spath)
    tmp = None
    try:
        # Create the temporary file ourselves (O_EXCL, mode 0o666 minus umask) so it gets the
        # same permissions a plain open() would give the target.
        for _ in range(100):
            candidate = os.path.join(directory, f".{base}.{secrets.token_hex(4)}.tmp")
            try:
                fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                continue
            os.close(fd)
            tmp = candidate
            break
        else:  # pragma: no cover - 100 random-name collisions
            raise AudioError(f"{spath}: could not create a temporary file in {directory}")
        write(tmp)
        _fsync_path(tmp)
        if overwrite:
            os.replace(tmp, spath)
        else:
            # os.link fails if the target appeared meanwhile: no overwrite even in a race.
            try:
                os.link(tmp, spath)
            except FileExistsError:
                raise _exists_error(spath) from None
            except OSError:  # filesystem without hard links
                if os.path.lexists(spath):
                    raise _exists_error(spath) from None
                os.replace(tmp, spath)
            else:
                os.unlink(tmp)
        tmp = None
        _fsync_path(directory, directory=True)
    except (OSError, RuntimeError) as e:
        raise AudioError(f"{spath}: could not write {fmt} file: {e}") from e
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def save(
    path: PathLike,
    audio,
    sample_rate: int = 44100,
    subtype: Optional[str] = None,
    overwrite: bool = False,
) -> str:
    """Write a waveform to a WAV or FLAC file, atomically.

    The audio is validated (:func:`check_audio`) before anything touches the disk. It is then
    written to a temporary file ``.<name>.<random>.tmp`` in the target's directory, flushed to
    disk (fsync) and renamed onto ``path``, so readers only ever see the old file or the complete
    new one; if anything fails the temporary file is removed and an existing ``path`` is left
    untouched.

    Parameters
    ----------
    path : str or os.PathLike
        Output file; the format comes from the extension (``.wav`` or ``.flac``, any case).
        Missing parent directories are created.
    audio : array_like
        ``(nb_timesteps, nb_channels)`` (1 or 2 channels) or ``(nb_timesteps,)`` floating-point
        waveform, nominally in ``[-1, 1]``.
    sample_rate : int
        Sample rate in Hz stored in the file.
    subtype : str or None
        Sample encoding. WAV: ``"PCM_16"`` (default), ``"PCM_24"`` or ``"FLOAT"`` (32-bit
        float, not clipped). FLAC: ``"PCM_16"`` (default) or ``"PCM_24"``. PCM subtypes clip
        samples to ``[-1, 1]`` (with a :class:`UserWarning` giving the count).
    overwrite : bool
        Replace ``path`` if it exists. Without it an existing file is an error.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    AudioError
        If the extension or subtype is unsupported, the audio is invalid (non-finite samples,
        bad shape, no samples, more than 2 channels), ``path`` exists and ``overwrite`` is
        False, or writing fails (the cause is chained).
    """
    spath, fmt, subtype, sample_rate = _check_output(path, subtype, sample_rate)
    data = check_audio(audio, name=f"audio to save to {spath}")
    if subtype.startswith("PCM"):
        nb_clipped = int(np.count_nonzero(np.abs(data) > 1.0))
        if nb_clipped:
            warnings.warn(
                f"{spath}: clipping {nb_clipped} samples outside [-1, 1] for {subtype} output",
                UserWarning,
                stacklevel=2,
            )
            data = np.clip(data, -1.0, 1.0)

    _atomic_write(spath, fmt, overwrite,
                  lambda tmp: soundfile.write(tmp, data, sample_rate, subtype=subtype, format=fmt))
    return spath


def save_blocks(
    path: PathLike,
    blocks,
    sample_rate: int,
    nb_channels: int,
    subtype: Optional[str] = None,
    overwrite: bool = False,
) -> str:
    """:func:`save` for a waveform given block by block, in bounded memory.

    ``blocks`` yields consecutive ``(m, nb_channels)`` floating-point arrays (e.g.
    ``DiskArray.blocks()``); they are validated as they come (finite samples, shape), clipped
    for PCM subtypes (one :class:`UserWarning` with the total count) and written to the
    temporary file, which replaces ``path`` only once every block is written: an invalid block
    leaves nothing behind. Same formats, subtypes, atomicity and errors as :func:`save`.
    """
    spath, fmt, subtype, sample_rate = _check_output(path, subtype, sample_rate)
    nb_channels = _check_nb_channels(nb_channels)
    name = f"audio to save to {spath}"
    nb_clipped = 0

    def write(tmp):
        nonlocal nb_clipped
        offset = 0
        with soundfile.SoundFile(tmp, "w", sample_rate, nb_channels, subtype=subtype, format=fmt) as f:
            for block in blocks:
                block = np.asarray(block)
                if block.dtype.kind != "f" or block.ndim != 2 or block.shape[1] != nb_channels:
                    raise AudioError(f"{name}: expected float blocks of shape (m, {nb_channels}), "
                                     f"found dtype {block.dtype} and shape {block.shape} at timestep {offset}")
                _check_finite(block, name, sample_rate, offset)
                if subtype.startswith("PCM"):
                    clipped = np.abs(block) > 1.0
                    if clipped.any():
                        nb_clipped += int(np.count_nonzero(clipped))
                        block = np.clip(block, -1.0, 1.0)
                f.write(block)
                offset += len(block)
        if offset == 0:
            raise AudioError(f"{name}: contains no audio (0 timesteps)")

    _atomic_write(spath, fmt, overwrite, write)
    if nb_clipped:
        warnings.warn(f"{spath}: clipping {nb_clipped} samples outside [-1, 1] for {subtype} output",
                      UserWarning, stacklevel=2)
    return spath
