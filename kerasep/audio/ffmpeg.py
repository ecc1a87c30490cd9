"""The ffmpeg/ffprobe subprocess helpers of :mod:`kerasep.audio.decode`.

:func:`_ffprobe` reads the sample rate, channel count and duration of a file's first audio
stream; :func:`_ffmpeg_blocks` decodes that stream to raw ``float32`` PCM block by block.
Failures of a tool that ran are :class:`_FFmpegFailure` (the detail, with ffmpeg's stderr
trimmed); a missing tool is an :class:`~kerasep.audio.validate.AudioError` naming the file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from typing import Optional

import numpy as np

from kerasep.audio.validate import AudioError

_STDERR_TAIL = 600  # characters of ffmpeg's stderr quoted in error messages

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


def _ffmpeg_blocks(path: str, start: float, duration: Optional[float], why: str, block: int):
    """Start decoding the first audio stream with ffmpeg, at its own rate and channel count.

    Returns ``(rate, channels, blocks, duration)`` (``duration``: the seconds ffprobe declares, or
    None); ``blocks`` yields ``float32 (m, channels)`` arrays of at
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

    return rate, channels, blocks(), meta["duration"]
