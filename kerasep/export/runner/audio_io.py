"""Audio input: decoding (:func:`load_audio`, :class:`FileAudio`), truncation checks, :func:`resample`."""
import math
from fractions import Fraction
from pathlib import Path

import numpy as np

from .common import READABLE, RunnerError, option


# --------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------


def resample(audio, orig_sr, target_sr):
    """``(nb_timesteps, nb_channels)`` from ``orig_sr`` to ``target_sr`` Hz (band-limited:
    scipy's polyphase filter as kerasep.audio, or a numpy FFT resampler without scipy)."""
    if orig_sr == target_sr:
        return audio
    n_out = int(math.ceil(audio.shape[0] * target_sr / orig_sr))
    try:
        from scipy.signal import resample_poly
    except ImportError:
        spec = np.fft.rfft(audio, axis=0)
        n_in = audio.shape[0]
        n_fft_out = int(round(n_in * target_sr / orig_sr))
        keep = min(spec.shape[0], n_fft_out // 2 + 1)
        out_spec = np.zeros((n_fft_out // 2 + 1, audio.shape[1]), spec.dtype)
        out_spec[:keep] = spec[:keep]
        y = np.fft.irfft(out_spec, n=n_fft_out, axis=0) * (n_fft_out / n_in)
        y = np.pad(y, ((0, max(0, n_out - y.shape[0])), (0, 0)))[:n_out]
        return np.ascontiguousarray(y, dtype=np.float32)
    ratio = Fraction(int(target_sr), int(orig_sr))
    y = resample_poly(audio, ratio.numerator, ratio.denominator, axis=0)
    return np.ascontiguousarray(y[:n_out], dtype=np.float32)


def wav_declared_frames(path):
    """The frames a RIFF/WAVE file's header declares (its data chunk's size over the block
    alignment), or None (not a plain WAV, or a streaming size of 0 / 0xFFFFFFFF). libsndfile
    and ffprobe both report the frames actually present, so a cut WAV is told only by this."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            align = None
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], int.from_bytes(chunk[4:], "little")
                if cid == b"fmt ":
                    fmt = f.read(size)
                    align = int.from_bytes(fmt[12:14], "little") if len(fmt) >= 14 else None
                    if size % 2:
                        f.seek(1, 1)
                elif cid == b"data":
                    return None if not align or size in (0, 0xFFFFFFFF) else size // align
                else:
                    f.seek(size + size % 2, 1)
    except OSError:
        return None


def truncation_tolerance(declared, rate):
    """Samples a decode may fall short of the declared length (decoder delay and padding of
    lossy codecs, container rounding): 0.1 s plus 0.2 %."""
    return int(0.1 * rate + 0.002 * declared)


def truncation_message(path, decoded, declared, rate):
    return (f"{path}: truncated or damaged: decoded {decoded / rate:.2f} s ({decoded} samples at {rate} Hz) "
            f"but the file declares {declared / rate:.2f} s ({declared} samples); "
            f"pass {option('allow_truncated')} to separate the part that decodes")


def _declared_frames(path, info):
    """The frames ``path`` declares: its WAV header's, else soundfile's (the FLAC STREAMINFO,
    an MP3's Xing/LAME header or its size over the bitrate)."""
    frames = wav_declared_frames(path)
    return frames if frames is not None else (info.frames if info.frames > 0 else None)


def load_audio(path, sample_rate, nb_channels, allow_truncated=False):
    """Decode ``path`` with soundfile → ``(nb_timesteps, nb_channels)`` float32 at ``sample_rate``.
    Mono input is duplicated to stereo models; other channel mismatches are errors. A file that
    decodes shorter than it declares (or fails mid-stream) is an error unless
    ``allow_truncated``, which keeps what decodes."""
    import soundfile as sf

    path = Path(path)
    if path.is_dir():
        raise RunnerError(f"{path}: expected an audio file, found a folder")
    if path.exists() and not path.is_file():
        raise RunnerError(f"{path}: not a regular file; expected an audio file")
    if not path.is_file():
        raise RunnerError(f"no such input file: {path}")
    try:
        f = sf.SoundFile(str(path))
    except Exception as exc:
        raise RunnerError(
            f"{path}: cannot decode with soundfile ({exc}); readable formats: "
            f"{', '.join(READABLE)} (convert others with ffmpeg)"
        ) from None
    with f:
        rate, declared = f.samplerate, _declared_frames(str(path), f)
        parts, n = [], 0
        while True:
            try:
                block = f.read(1 << 18, dtype="float32", always_2d=True)
            except Exception as exc:
                if allow_truncated and n:
                    break
                more = "" if declared is None else f" after {n / rate:.2f} s of the declared {declared / rate:.2f} s"
                raise RunnerError(f"{path}: damaged or truncated: decoding failed{more} ({exc}); "
                                  f"pass {option('allow_truncated')} to separate the part that decodes") from None
            if not len(block):
                break
            parts.append(block)
            n += len(block)
    audio = np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)
    if audio.shape[0] == 0:
        raise RunnerError(f"{path}: no samples")
    if declared is not None and not allow_truncated and n < declared - truncation_tolerance(declared, rate):
        raise RunnerError(truncation_message(path, n, declared, rate))
    if not np.isfinite(audio).all():
        raise RunnerError(f"{path}: non-finite samples (NaN or inf)")
    if audio.shape[1] != nb_channels:
        if audio.shape[1] == 1:
            audio = np.repeat(audio, nb_channels, axis=1)
        else:
            raise RunnerError(
                f"{path}: expected {nb_channels} channel(s) (or mono), found {audio.shape[1]}"
            )
    return resample(audio, rate, sample_rate)


class FileAudio:
    """A file read lazily, chunk by chunk: ``audio[s:e]`` → ``(e - s, nb_channels)`` float32
    (mono duplicated). Used for wav/flac/aiff at the model's rate, whose seeking is exact, so a
    long input is never held in memory whole. A read that comes back short (a file cut after
    its header was written) raises :class:`RunnerError`."""

    SEEKABLE = (".wav", ".flac", ".aiff", ".aif")

    def __init__(self, path, nb_channels):
        import soundfile as sf

        self.file = sf.SoundFile(str(path))
        self.path, self.nb_channels = path, nb_channels
        self.shape = (self.file.frames, nb_channels)

    def __getitem__(self, index):
        start, stop, _ = index.indices(self.shape[0])
        try:
            self.file.seek(start)
            block = self.file.read(stop - start, dtype="float32", always_2d=True)
        except Exception as exc:
            raise RunnerError(f"{self.path}: damaged or truncated: decoding failed at {start / self.file.samplerate:.2f} s "
                              f"({exc}); pass {option('allow_truncated')} to separate the part that decodes") from None
        if len(block) < stop - start:
            raise RunnerError(truncation_message(self.path, start + len(block), self.shape[0], self.file.samplerate))
        if not np.isfinite(block).all():
            raise RunnerError(f"{self.path}: non-finite samples (NaN or inf)")
        if block.shape[1] != self.nb_channels:
            block = np.repeat(block, self.nb_channels, axis=1)
        return block


def open_audio(path, sample_rate, nb_channels, allow_truncated=False):
    """A lazy :class:`FileAudio` when the file allows it, else the decoded array (:func:`load_audio`).
    A WAV whose header declares more frames than it holds is refused before any work (unless
    ``allow_truncated``)."""
    import soundfile as sf

    path = Path(path)
    if path.is_file() and path.suffix.lower() in FileAudio.SEEKABLE and not allow_truncated:
        try:
            info = sf.info(str(path))
        except Exception:
            info = None
        if info is not None and info.samplerate == sample_rate and info.frames > 0 and \
                info.channels in (1, nb_channels):
            declared = _declared_frames(str(path), info)
            if declared is not None and info.frames < declared - truncation_tolerance(declared, info.samplerate):
                raise RunnerError(truncation_message(path, info.frames, declared, info.samplerate))
            return FileAudio(path, nb_channels)
    return load_audio(path, sample_rate, nb_channels, allow_truncated)
