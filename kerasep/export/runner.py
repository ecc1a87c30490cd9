#!/usr/bin/env python
"""Separate audio files with a kerasep ONNX export, without TensorFlow.

    python -m kerasep.export.runner unet-2stems.onnx song.mp3 other.wav -o separated
           [--format wav|flac|mp3|ogg] [--bitrate 320k | --quality Q] [--stems vocals,...]
           [--chunk-seconds S] [--overwrite] [--cpu] [-q]

Needs only ``numpy``, ``onnxruntime`` (or ``onnxruntime-gpu``: the CUDA execution provider is
used when present) and ``soundfile``; ``tqdm`` (progress bar) and ``scipy`` (band-limited
resampling of inputs at another sample rate; a numpy FFT resampler is used without it) are
optional. Neither importing nor running it imports TensorFlow or anything else of kerasep: this
one file is self-contained. For a deployment without kerasep, ``kerasep export MODEL -o
MODEL.onnx --with-runner`` (or ``kerasep.export.export(..., with_runner=True)``) writes a copy
of it beside the model as ``run_onnx.py``; then ``python run_onnx.py MODEL.onnx song.wav``.

Outputs: ``OUTDIR/<input name>/<target>.<wav|flac|mp3|ogg>`` (WAV/FLAC: 16-bit PCM at the
model's sample rate; MP3: constant bitrate, 320 kbit/s unless ``--bitrate``; Ogg Vorbis:
variable bitrate, ``--quality``), the layout of ``kerasep separate``; an input named
``mixture.*`` (MUSDB18-HQ's ``<track>/mixture.wav``) is named after its folder. Each file is
written to a temporary name and renamed when complete, with the mode a plain ``open`` would
give it (``0o666 & ~umask``); existing outputs are never replaced without ``--overwrite``.

Long inputs are processed in chunks as :mod:`kerasep.inference` does. Models that declare
``kerasep.chunk_alignment``/``kerasep.chunk_context`` in their metadata (the U-Net: one patch)
get chunk borders on their patch grid with one patch of real audio as context on each side, which
reproduces whole-file processing exactly; other models get 5 s of context and linear cross-fades.
Chunk planning (:func:`plan_chunks`, :func:`crossfade_weights`), resampling (:func:`resample`)
and output naming (:func:`output_paths`) have this one implementation: the rest of kerasep
imports them from here.
"""
import argparse
import errno
import json
import math
import os
import re
import secrets
import shutil
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

#: Chunks are rounded up to whole patches and get one patch of context each side (about 3 extra
#: patches of work per chunk border): long chunks waste little on context, and the exported U-Net
#: streams patches so memory grows only with the chunk's input and outputs (measured on a 10-minute
#: input, unet-2stems: peak RSS 791 MiB with 120 s chunks, 858 MiB with 240 s, 949 MiB with 300 s).
DEFAULT_CHUNK_SECONDS = 240.0
#: Models without an exact chunk grid (crossfaded chunks; their graphs take a chunk whole, so
#: memory grows with the chunk: umxhq on a 10-minute input, `kerasep separate --backend onnx`
#: peak RSS 1.46 GiB with 20 s chunks, 1.97 GiB with 30 s, 3.42 GiB with 120 s).
DEFAULT_CROSSFADE_CHUNK_SECONDS = 20.0
DEFAULT_CONTEXT_SECONDS = 5.0  # crossfade context for models without an exact chunk grid
WRITE_BLOCK = 1 << 20  # samples converted and written at a time
READABLE = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif")
#: Output formats: name -> (soundfile format, allowed subtypes, default subtype).
OUTPUT_FORMATS = {
    "wav": ("WAV", ("PCM_16", "PCM_24", "FLOAT"), "PCM_16"),
    "flac": ("FLAC", ("PCM_16", "PCM_24"), "PCM_16"),
    "mp3": ("MP3", ("MPEG_LAYER_III",), "MPEG_LAYER_III"),
    "ogg": ("OGG", ("VORBIS",), "VORBIS"),
}
#: MPEG-1 layer III bitrates (kbit/s), the ones an MP3 at 32, 44.1 or 48 kHz can have.
MP3_BITRATES = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
DEFAULT_MP3_BITRATE = 320


class RunnerError(RuntimeError):
    """A problem with the model file, the input or the outputs; the message says which."""


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


def providers():
    """CUDA first when onnxruntime-gpu provides it, then CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    chosen = [p for p in ("CUDAExecutionProvider",) if p in available]
    return chosen + ["CPUExecutionProvider"]


class OnnxSeparator:
    """An exported separator loaded in onnxruntime.

    Args:
        path: the ``.onnx`` file written by ``kerasep export``.
        providers: onnxruntime execution providers (default: CUDA when available, else CPU).

    Attributes:
        sample_rate, nb_channels, targets, chunk_alignment, chunk_context, metadata.
    """

    def __init__(self, path, providers=None):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise RunnerError(f"no such ONNX model file: {path}")
        if path.stat().st_size == 0:
            raise RunnerError(f"{path}: empty file, expected an ONNX model")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # Idle worker threads sleep instead of spinning: on a busy or shared CPU spinning threads
        # steal the cores the work needs (measured 1.8x faster here under load; see README).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Without the arena, memory freed between chunks of different lengths is returned instead
        # of fragmenting a growing arena (measured: 945 MiB flat vs 1206 MiB and growing).
        options.enable_cpu_mem_arena = False
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=providers or globals()["providers"]()
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
            raise RunnerError(
                f"{path}: cannot load the ONNX model (truncated, corrupted or not an ONNX file): {exc}"
            ) from None
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        self.metadata = meta
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != "waveform" or "kerasep.sample_rate" not in meta:
            raise RunnerError(
                f"{path}: not a kerasep separator export (expected one input 'waveform' and "
                f"kerasep.* metadata; found inputs {[i.name for i in inputs]})"
            )
        self.path = str(path)
        self.sample_rate = int(meta["kerasep.sample_rate"])
        self.nb_channels = int(meta["kerasep.nb_channels"])
        self.targets = json.loads(meta["kerasep.targets"])
        outputs = [o.name for o in self.session.get_outputs()]
        if sorted(outputs) != sorted(self.targets):
            raise RunnerError(f"{path}: outputs {outputs} do not match the declared targets {self.targets}")
        self.chunk_alignment = int(meta.get("kerasep.chunk_alignment", 1))
        self.chunk_context = int(meta["kerasep.chunk_context"]) if "kerasep.chunk_context" in meta else None
        #: The declared input shape: an int where a dimension is fixed, None where it is free.
        self.input_shape = [d if isinstance(d, int) and d > 0 else None for d in (inputs[0].shape or [])]
        if len(self.input_shape) != 3 or self.input_shape[1] not in (None, self.nb_channels):
            raise RunnerError(f"{path}: input 'waveform' is declared with shape {inputs[0].shape}, expected "
                              f"(batch, {self.nb_channels}, nb_timesteps)")

    def check_feed(self, shapes, what="this input"):
        """RunnerError before any work when a fixed dimension of the model's input does not take
        one of ``shapes`` (the ``(batch, nb_channels, nb_timesteps)`` it would be fed)."""
        for shape in shapes:
            for axis, (want, got) in enumerate(zip(self.input_shape, shape)):
                if want is not None and want != got:
                    raise RunnerError(
                        f"{self.path}: its input 'waveform' is fixed to shape "
                        f"{[d if d is not None else '?' for d in self.input_shape]} (axis {axis}: {want}), but "
                        f"{what} would be fed as {tuple(shape)}; export the model with a free time axis "
                        f"(kerasep export does), or pass --chunk-seconds to match "
                        f"{want / self.sample_rate:g} s")

    def check_input(self, waveform):
        """Validate a model input ``(batch, nb_channels, nb_timesteps)`` float32 array."""
        if not isinstance(waveform, np.ndarray):
            raise RunnerError(f"expected a numpy array, found {type(waveform).__name__}")
        if waveform.dtype != np.float32:
            raise RunnerError(f"expected dtype float32, found {waveform.dtype}")
        if waveform.ndim != 3:
            raise RunnerError(
                f"expected a waveform of rank 3 (batch, nb_channels, nb_timesteps), found rank "
                f"{waveform.ndim} with shape {waveform.shape}"
            )
        if waveform.shape[1] != self.nb_channels:
            raise RunnerError(
                f"expected {self.nb_channels} channels (axis 1 of (batch, nb_channels, nb_timesteps)), "
                f"found {waveform.shape[1]} (shape {waveform.shape})"
            )
        if waveform.shape[0] < 1 or waveform.shape[2] < 1:
            raise RunnerError(f"expected at least one example and one sample, found shape {waveform.shape}")

    def __call__(self, waveform):
        """``(batch, nb_channels, nb_timesteps)`` float32 → ``{target: same shape}``."""
        self.check_input(waveform)
        self.check_feed([waveform.shape], "the waveform")
        outs = self.session.run(None, {"waveform": np.ascontiguousarray(waveform)})
        return dict(zip([o.name for o in self.session.get_outputs()], outs))


# --------------------------------------------------------------------------------------------
# Chunked separation (same plan as kerasep.inference)
# --------------------------------------------------------------------------------------------


def plan_chunks(nb_timesteps, chunk, context, alignment=1):
    """``[(keep_start, keep_end, in_start, in_end)]``: the model sees ``[in_start, in_end)`` and
    ``[keep_start, keep_end)`` of its output is kept. ``chunk`` and ``context`` are rounded up to
    multiples of ``alignment``."""
    alignment = max(1, int(alignment))
    chunk = max(alignment, -(-int(chunk) // alignment) * alignment)
    context = -(-int(context) // alignment) * alignment
    plan = []
    for start in range(0, nb_timesteps, chunk):
        end = min(start + chunk, nb_timesteps)
        plan.append((start, end, max(0, start - context), min(nb_timesteps, end + context)))
    return plan


def crossfade_weights(s, e, plan, k):
    """Weights ``(e - s,)`` of chunk ``k`` of ``plan`` (input ``[s, e)``): linear fades over the
    overlaps with the neighbouring chunks' inputs, so consecutive chunks' weights sum to one."""
    w = np.ones(e - s, np.float32)
    if k > 0:
        m = plan[k - 1][3] - s
        if m > 0:
            w[:m] = (np.arange(m, dtype=np.float32) + 0.5) / m
    if k < len(plan) - 1:
        m = e - plan[k + 1][2]
        if m > 0:
            w[-m:] = 1.0 - (np.arange(m, dtype=np.float32) + 0.5) / m
    return w


def _plan(model, n, chunk_seconds=None):
    """``(exact, context, plan)`` of :func:`iter_separate` for ``n`` timesteps."""
    exact = model.chunk_context is not None
    if chunk_seconds is None:
        chunk_seconds = DEFAULT_CHUNK_SECONDS if exact else DEFAULT_CROSSFADE_CHUNK_SECONDS
    try:
        chunk_seconds = float(chunk_seconds)
    except (TypeError, ValueError):
        chunk_seconds = float("nan")
    if not 0 < chunk_seconds < float("inf"):
        raise RunnerError(f"{option_name('chunk_seconds')}: "
                          f"expected a finite number of seconds > 0. Received: {chunk_seconds}")
    rate = model.sample_rate
    context = model.chunk_context if exact else int(round(DEFAULT_CONTEXT_SECONDS * rate))
    return exact, context, plan_chunks(n, max(1, int(chunk_seconds * rate)), context, model.chunk_alignment)


def feed_shapes(model, n, chunk_seconds=None):
    """The distinct ``(1, nb_channels, m)`` arrays :func:`iter_separate` feeds ``model`` for an
    input of ``n`` timesteps."""
    return sorted({(1, model.nb_channels, e - s) for _, _, s, e in _plan(model, n, chunk_seconds)[2]})


def iter_separate(model, mix, chunk_seconds=None, progress=False):
    """Separate ``mix`` ``(nb_timesteps, nb_channels)`` float32 at the model's rate chunk by
    chunk. Yields ``(start, {target: (n, nb_channels)})`` blocks in order that tile the input
    exactly (constant memory in the input length)."""
    n = mix.shape[0]
    rate = model.sample_rate
    exact, context, plan = _plan(model, n, chunk_seconds)
    bar = _progress(n / rate) if progress else None
    base, buf = 0, {}  # crossfade: output from `base` on that later chunks still add to
    try:
        for k, (ks, ke, s, e) in enumerate(plan):
            y = model(np.ascontiguousarray(mix[s:e].T)[None])
            if exact:
                blocks = {t: v[0, :, ks - s : ke - s].T for t, v in y.items()}
                del y
                yield ks, blocks
                del blocks  # (with the caller's reference) frees this chunk's outputs before the next call
            else:
                w = crossfade_weights(s, e, plan, k)[:, None]
                final = plan[k + 1][2] if k + 1 < len(plan) else n
                for t, v in y.items():
                    acc = buf.get(t, np.zeros((0, mix.shape[1]), np.float32))
                    if acc.shape[0] < e - base:
                        acc = np.concatenate([acc, np.zeros((e - base - acc.shape[0], mix.shape[1]), np.float32)])
                    acc[s - base : e - base] += v[0].T * w
                    buf[t] = acc
                yield base, {t: acc[: final - base] for t, acc in buf.items()}
                buf = {t: acc[final - base :] for t, acc in buf.items()}
                base = final
            if bar is not None:
                bar.update((ke - ks) / rate)
    finally:
        if bar is not None:
            bar.close()


def separate_array(model, mix, chunk_seconds=None, progress=False):
    """``{target: (nb_timesteps, nb_channels) float32}`` for a validated ``mix``."""
    out = {t: np.zeros(mix.shape, np.float32) for t in model.targets}
    for start, blocks in iter_separate(model, mix, chunk_seconds, progress):
        for t, v in blocks.items():
            out[t][start : start + v.shape[0]] = v
        blocks = v = None
    return out


def _progress(total):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="s", desc="separating",
                bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s audio [{elapsed}<{remaining}]")


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


#: Which interface error messages name options for: ``"python"`` (keywords, ``downmix=True``) or
#: ``"cli"`` (flags, ``--downmix``); a command's ``main`` sets ``"cli"`` while it runs.
INTERFACE = {"name": "python"}


def option(keyword, value=True):
    """How the user of the interface in use says ``keyword=value``: ``--allow-truncated`` on the
    command line (:data:`INTERFACE`), ``allow_truncated=True`` in Python."""
    if INTERFACE["name"] == "cli":
        flag = "--" + keyword.replace("_", "-")
        return flag if value is True else f"{flag} {value}"
    return f"{keyword}={value!r}"


def option_name(keyword):
    """``--chunk-seconds`` on the command line, ``chunk_seconds`` in Python."""
    return "--" + keyword.replace("_", "-") if INTERFACE["name"] == "cli" else keyword


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


def output_name(inp):
    """The folder name of ``inp``'s stems: the file name without its extension (and without
    ``.stem.mp4``), except that ``mixture.*`` is named after its parent folder, as MUSDB18-HQ
    lays tracks out (``<track>/mixture.wav`` -> ``<track>``)."""
    path = Path(inp)
    name = path.name
    name = name[: -len(".stem.mp4")] if name.endswith(".stem.mp4") else Path(name).stem
    if name == "mixture" and path.absolute().parent.name:
        name = path.absolute().parent.name
    return name


def output_paths(inp, outdir, targets, fmt):
    """``{target: OUTDIR/<name>/<target>.<fmt>}`` as ``kerasep separate`` names them
    (``<name>``: :func:`output_name`)."""
    return {t: Path(outdir) / output_name(inp) / f"{t}.{fmt}" for t in targets}


def parse_bitrate(value):
    """``"320k"``, ``"320"`` or ``320`` -> 320 (kbit/s); RunnerError unless an MPEG-1 layer III
    bitrate (:data:`MP3_BITRATES`)."""
    text = str(value).strip().lower()
    text = text[:-4] if text.endswith("kbps") else text[:-1] if text.endswith("k") else text
    try:
        kbps = int(text)
    except ValueError:
        kbps = None
    if kbps not in MP3_BITRATES:
        raise RunnerError(f"--bitrate: expected one of the MP3 bitrates {', '.join(f'{b}k' for b in MP3_BITRATES)}. "
                          f"Received: {value!r}")
    return kbps


def encoder_options(fmt, sample_rate, bitrate=None, quality=None):
    """soundfile keyword arguments (``compression_level``, ``bitrate_mode``) for ``fmt``.

    - mp3, ``bitrate`` (default 320k): constant bitrate, exact. libsndfile (1.1+) maps its
      ``compression_level`` c to the LAME bitrate ``320 - c * (320 - 32)`` kbit/s for MPEG-1
      (32, 44.1, 48 kHz); the inverse is used here, so the file has exactly that bitrate.
    - mp3, ``quality`` q in [0, 1] (1 best): variable bitrate, LAME VBR quality ``10 * (1 - q)``.
    - ogg: Vorbis is variable-bitrate only in libsndfile, no kbit/s can be asked for:
      ``quality`` q in [0, 1] (1 best) is Vorbis' quality (``oggenc -q 10 * q``); without it,
      libsndfile's default. ``bitrate`` is refused.
    - wav, flac: lossless PCM, neither applies.
    """
    if fmt not in OUTPUT_FORMATS:
        raise RunnerError(f"--format: expected one of {list(OUTPUT_FORMATS)}. Received: {fmt!r}")
    if bitrate is not None and quality is not None:
        raise RunnerError("--bitrate and --quality exclude each other (constant vs variable bitrate)")
    if quality is not None:
        try:
            quality = float(quality)
        except (TypeError, ValueError):
            quality = float("nan")
        if not 0.0 <= quality <= 1.0:
            raise RunnerError(f"--quality: expected a number in [0, 1] (1 best). Received: {quality!r}")
    if fmt in ("wav", "flac"):
        if bitrate is not None or quality is not None:
            flag = "--bitrate" if bitrate is not None else "--quality"
            raise RunnerError(f"{flag} applies to --format mp3 or ogg only; {fmt} is lossless "
                              "(use --subtype for its sample format)")
        return {}
    if fmt == "ogg":
        if bitrate is not None:
            raise RunnerError("--bitrate: Ogg Vorbis is written with variable bitrate only (libsndfile has no "
                              "bitrate setting for it); use --quality 0..1 instead (1 best)")
        return {} if quality is None else {"compression_level": 1.0 - quality}
    # mp3
    if quality is not None:
        # LAME refuses VBR quality 10 (compression 1.0): 0.999 is its lowest quality
        return {"compression_level": min(0.999, 1.0 - quality), "bitrate_mode": "VARIABLE"}
    if int(sample_rate) not in (32000, 44100, 48000):
        raise RunnerError(f"--bitrate: exact MP3 bitrates need a 32, 44.1 or 48 kHz output, the model's rate is "
                          f"{sample_rate} Hz; use --quality instead")
    kbps = DEFAULT_MP3_BITRATE if bitrate is None else parse_bitrate(bitrate)
    # libsndfile: bitrate = 320 - c * 288 (truncated); a quarter kbit/s above the target survives the
    # truncation, and c <= 0.999 because libsndfile first applies c as a VBR quality (1.0 is refused).
    level = min(0.999, max(0.0, (320 - kbps - 0.25) / 288))
    return {"compression_level": level, "bitrate_mode": "CONSTANT"}


def check_subtype(fmt, subtype):
    """The subtype to write for ``fmt`` (its default when ``subtype`` is None); RunnerError if
    ``fmt`` does not take it."""
    if fmt not in OUTPUT_FORMATS:
        raise RunnerError(f"--format: expected one of {list(OUTPUT_FORMATS)}. Received: {fmt!r}")
    _, allowed, default = OUTPUT_FORMATS[fmt]
    if subtype is None:
        return default
    subtype = str(subtype).upper()
    if subtype not in allowed:
        raise RunnerError(f"--subtype for {fmt} must be one of {list(allowed)}. Received: {subtype!r}")
    return subtype


def select_stems(targets, stems=None, two_stems=None):
    """The stems to write among a model's ``targets``: ``two_stems`` S gives ``[S, "no_S"]``
    (``no_S``: the sum of the other targets); ``stems`` (a list or a comma-separated string)
    then picks among those, in that order. RunnerError naming the flag for an unknown stem."""
    final = list(targets)
    if two_stems is not None:
        if two_stems not in final:
            raise RunnerError(f"--two-stems: unknown stem {two_stems!r}; expected one of {final}")
        final = [two_stems, f"no_{two_stems}"]
    if stems is None:
        return final
    names = [s.strip() for s in stems.split(",")] if isinstance(stems, str) else [str(s) for s in stems]
    names = [s for s in names if s]
    if not names:
        raise RunnerError(f"--stems: expected a comma-separated list of stems among {final}. Received: {stems!r}")
    for s in names:
        if s not in final:
            raise RunnerError(f"--stems: unknown stem {s!r}; expected one of {final}")
    return [s for s in final if s in names]


_IMPORT_UMASK = os.umask(0o022)  # read once at import (os.umask can only be read by setting it) ...
os.umask(_IMPORT_UMASK)  # ... and restored at once


def current_umask():
    """The process umask: read from ``/proc/self/status`` where Linux shows it (no change to the
    process, and a later ``os.umask`` is honoured), else the one read at import."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return _IMPORT_UMASK


# --------------------------------------------------------------------------------------------
# Owned temporaries, OS errors in words, all-or-nothing outputs (shared with the rest of kerasep)
# --------------------------------------------------------------------------------------------


def _proc_start(pid):
    """The start time of process ``pid`` (clock ticks since boot, field 22 of
    ``/proc/<pid>/stat``), or None where there is no such process or no /proc."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def owner_token():
    """``kerasep-<pid>-<start>-<random>``: the name part of every temporary kerasep leaves while
    it works (output temporaries, work folders), so that a later run can tell whether the
    process that made it is still alive (:func:`owner_alive`); ``<start>`` (the process' start
    time, 0 without /proc) tells a reused pid from the owner."""
    return f"kerasep-{os.getpid()}-{_proc_start(os.getpid()) or 0}-{secrets.token_hex(4)}"


#: Names made with :func:`owner_token`: output temporaries ``.<name>.kerasep-P-S-R.tmp`` (``.tmp.keras``
#: for Keras archives; ``.bak`` backups while a set is renamed into place), work folders
#: ``kerasep-<kind>-P-S-R``.
OWNED_NAME = re.compile(r"^(?:\.(?P<target>.+)\.kerasep|kerasep-[a-z]+)-(?P<pid>\d+)-(?P<start>\d+)-[0-9a-f]{8}"
                        r"(?P<suffix>\.tmp(?:\.[A-Za-z0-9]+)?|\.bak)?$")


def work_folder(root, kind="separate"):
    """A new folder ``root/kerasep-<kind>-<pid>-<start>-<random>`` for intermediates, after the
    dead owners' leftovers in ``root`` are removed (:func:`sweep_stale`). The caller removes it
    (``shutil.rmtree``); a kill -9 leaves it for the next run to remove."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sweep_stale(root)
    folder = root / f"kerasep-{kind}-{owner_token()[len('kerasep-'):]}"
    folder.mkdir(mode=0o700)
    return folder


def owner_alive(pid, start=0):
    """Whether process ``pid`` (started at ``start``, 0: unknown) is still running."""
    pid, start = int(pid), int(start)
    if pid == os.getpid():
        return True
    if os.path.isdir("/proc/self"):
        found = _proc_start(pid)
        return found is not None and (start == 0 or found == start)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def sweep_stale(directory):
    """Remove the temporaries in ``directory`` (:data:`OWNED_NAME`) whose owner process is dead
    (killed mid-write, say); a live process' are never touched. A dead owner's ``.bak`` backup
    whose target is missing is put back (the owner died renaming a set into place). Returns the
    paths removed or restored; errors are ignored (the next run tries again)."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        m = OWNED_NAME.match(entry.name)
        if m is None or owner_alive(m["pid"], m["start"]):
            continue
        try:
            if m["suffix"] == ".bak" and m["target"] and not os.path.lexists(os.path.join(directory, m["target"])):
                os.replace(entry.path, os.path.join(directory, m["target"]))
            elif entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(entry.path)
        except OSError:
            pass
    return removed


_ERRNO_WORDS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "input/output error (a failing disk or a lost network mount?)",
    errno.EFBIG: "file too large for this file system",
    errno.ENAMETOOLONG: "file name too long",
    errno.EMFILE: "too many open files",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder, expected a file",
    errno.EXDEV: "cannot rename across file systems",
}


def os_error_message(exc, path, doing="writing"):
    """An OSError in plain words: ``"no space left on device while writing PATH"``."""
    words = _ERRNO_WORDS.get(getattr(exc, "errno", None)) or getattr(exc, "strerror", None) or str(exc)
    return f"{words} while {doing} {path}"


def write_failure(exc, path, what="file"):
    """The message for a failed write of ``path``: OSErrors by errno; libsndfile's errors (which
    say only "System error.") by what the file system says: no free space, read-only, no
    permission."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return os_error_message(exc, path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        st = os.statvfs(directory)
        if st.f_bavail * st.f_frsize < (1 << 16) or st.f_favail == 0:
            return os_error_message(OSError(errno.ENOSPC, "no space"), path)
        if st.f_flag & getattr(os, "ST_RDONLY", 1):
            return os_error_message(OSError(errno.EROFS, "read-only"), path)
    except (OSError, AttributeError):
        pass
    if not os.access(directory, os.W_OK):
        return os_error_message(OSError(errno.EACCES, "denied"), path)
    return f"could not write the {what} {path}: {exc}"


def estimated_bytes(fmt, subtype, nb_timesteps, nb_channels, sample_rate, bitrate=None, quality=None):
    """The size of one output file where it is known before writing (WAV: exact; MP3 at a
    constant bitrate: exact up to the frame padding), else None (FLAC, Ogg, VBR)."""
    if fmt == "wav":
        width = {"PCM_16": 2, "PCM_24": 3, "FLOAT": 4}.get(subtype or "PCM_16", 4)
        return 44 + int(nb_timesteps) * int(nb_channels) * width
    if fmt == "mp3" and quality is None:
        kbps = DEFAULT_MP3_BITRATE if bitrate is None else parse_bitrate(bitrate)
        return int(kbps * 1000 / 8 * nb_timesteps / sample_rate)
    return None


def check_free_space(folder, needed, what, error=None):
    """Before any work: ``error`` (default :class:`RunnerError`) when the file system of
    ``folder`` (or of its nearest existing parent) has less than ``needed`` bytes free, saying
    how much is needed and how much is free."""
    anchor = Path(folder)
    while not anchor.exists() and anchor.parent != anchor:
        anchor = anchor.parent
    try:
        st = os.statvfs(anchor)
    except (OSError, AttributeError):  # no statvfs (Windows): the write itself will say
        return
    free = st.f_bavail * st.f_frsize
    if needed > free:
        raise (error or RunnerError)(
            f"no space left on device for {what} in {folder}: about {needed / 1e6:.2f} MB needed, "
            f"{free / 1e6:.2f} MB free (nothing was written)")


class cleanup_on_sigterm:
    """``with cleanup_on_sigterm():`` SIGTERM (``kill``, a job scheduler's stop) raises
    ``SystemExit(143)`` in the main thread instead of ending the process at once, so temporaries
    are removed and an :class:`OutputSet` rolls back on the way out, as on Ctrl-C. Elsewhere
    than the main thread, or where signals cannot be set, it does nothing."""

    def __enter__(self):
        import signal
        import threading

        self.saved = None
        if threading.current_thread() is threading.main_thread():
            def terminate(signum, frame):
                raise SystemExit(128 + signum)

            try:
                self.saved = signal.signal(signal.SIGTERM, terminate)
            except (ValueError, OSError, AttributeError):
                self.saved = None
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            import signal

            signal.signal(signal.SIGTERM, self.saved)
        return False


def _fsync(path, directory=False):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


class OutputSet:
    """All-or-nothing outputs: ``with OutputSet({key: path}, overwrite) as temps:`` gives a
    temporary file beside each path (``.<name>.kerasep-<pid>-<start>-<random>.tmp``, see
    :func:`owner_token`) for the block to write; when the block ends without an error, every
    temporary is fsynced, given the mode a plain ``open`` gives (``0o666 & ~umask``) and renamed
    onto its path, together: if any rename fails, those already done are undone (a replaced
    file is restored from its hard-linked backup). On any failure, the block's included, every
    temporary is removed, and so is every folder the set created: nothing that was there before
    is changed, nothing partial is left. A dead owner's leftovers in the output folders are
    removed first (:func:`sweep_stale`).

    Errors are raised as ``error`` (default :class:`RunnerError`), in plain words
    (:func:`write_failure`)."""

    def __init__(self, paths, overwrite=False, error=None):
        self.paths = {k: Path(p) for k, p in paths.items()}
        self.overwrite = overwrite
        self.error = error or RunnerError
        self.temps, self.created = {}, []
        self.token = owner_token()

    def _makedirs(self, folder):
        missing = []
        while not folder.exists() and folder.parent != folder:
            missing.append(folder)
            folder = folder.parent
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:
                continue
            except OSError as exc:
                raise self.error(os_error_message(exc, d, "creating the folder")) from None
            self.created.append(d)

    def __enter__(self):
        try:
            for k, p in self.paths.items():
                if p.is_dir():
                    raise self.error(f"{p}: expected a file path, found a folder")
                if os.path.lexists(p) and not self.overwrite:
                    raise self.error(f"output exists: {p} (use --overwrite to replace)")
                self._makedirs(p.parent)
                sweep_stale(p.parent)
                tmp = p.parent / f".{p.name}.{self.token}.tmp"
                try:
                    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                except OSError as exc:
                    raise self.error(os_error_message(exc, tmp)) from None
                self.temps[k] = tmp
        except BaseException:
            self.rollback()
            raise
        return dict(self.temps)

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.rollback()
            return False
        try:
            self.commit()
        except BaseException:
            self.rollback()
            raise
        return False

    def commit(self):
        mode = 0o666 & ~current_umask()
        for k, tmp in self.temps.items():
            try:
                _fsync(tmp)
                os.chmod(tmp, mode)  # soundfile may have recreated it with its own mode
            except OSError as exc:
                raise self.error(write_failure(exc, self.paths[k])) from None
        done = []  # (path, backup or None), to undo
        failing = None
        try:
            for k, p in self.paths.items():
                failing = p
                tmp, backup = self.temps[k], None
                if os.path.lexists(p):
                    if not self.overwrite:
                        raise self.error(f"output exists: {p} (use --overwrite to replace)")
                    backup = p.parent / f".{p.name}.{self.token}.bak"
                    try:
                        os.link(p, backup)
                    except OSError:  # no hard links here: the old file itself becomes the backup
                        os.replace(p, backup)
                    os.replace(tmp, p)
                else:
                    try:
                        os.link(tmp, p)  # fails if the target appeared meanwhile: never an overwrite
                    except FileExistsError:
                        raise self.error(f"output exists: {p} (use --overwrite to replace)") from None
                    except OSError:  # file system without hard links
                        os.replace(tmp, p)
                    else:
                        os.unlink(tmp)
                done.append((p, backup))
        except BaseException as exc:
            for done_path, backup in reversed(done):
                try:
                    if backup is not None:
                        os.replace(backup, done_path)
                    else:
                        os.unlink(done_path)
                except OSError:
                    pass
            if isinstance(exc, OSError):
                raise self.error(write_failure(exc, failing)) from None
            raise
        finally:
            for k, p in self.paths.items():
                backup = p.parent / f".{p.name}.{self.token}.bak"
                if os.path.lexists(backup) and os.path.lexists(p):
                    try:
                        os.unlink(backup)
                    except OSError:
                        pass
        self.temps = {}
        for folder in {p.parent for p in self.paths.values()}:
            _fsync(folder, directory=True)

    def rollback(self):
        for tmp in self.temps.values():
            try:
                os.unlink(tmp)
            except OSError:
                pass
        self.temps = {}
        for d in reversed(self.created):
            try:
                d.rmdir()  # only if empty: never what another process put there
            except OSError:
                pass
        self.created = []


def separate_file(model, inp, outdir, fmt="wav", overwrite=False, chunk_seconds=None, progress=False,
                  subtype=None, stems=None, two_stems=None, bitrate=None, quality=None, allow_truncated=False):
    """Separate one file into ``OUTDIR/<name>/<stem>.<fmt>``; returns ``{stem: path}``.

    ``fmt``: ``"wav"``, ``"flac"``, ``"mp3"`` or ``"ogg"``; ``subtype``: ``"PCM_16"``
    (default), ``"PCM_24"`` or (wav only) ``"FLOAT"``; PCM and lossy output is clipped to
    [-1, 1]. ``bitrate``, ``quality``: mp3/ogg encoder settings (:func:`encoder_options`).
    ``stems``, ``two_stems``: which stems to write (:func:`select_stems`; default all the
    model's targets).

    Every output is streamed to a temporary file beside its final name, and all are renamed
    into place together once every chunk is written (:class:`OutputSet`): a failure (a full
    disk, a kill) leaves no partial output and changes nothing that was there. An input that
    decodes shorter than it declares is an error unless ``allow_truncated``. The model's fixed
    input dimensions are checked against the chunks before any folder is created."""
    import soundfile as sf

    subtype = check_subtype(fmt, subtype)
    options = encoder_options(fmt, model.sample_rate, bitrate, quality)
    names = select_stems(model.targets, stems, two_stems)
    paths = output_paths(inp, outdir, names, fmt)
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise RunnerError(f"output exists: {', '.join(existing)} (use {option('overwrite')} to replace)")
    for p in paths.values():
        anchor = p.parent
        while not anchor.exists() and anchor.parent != anchor:
            anchor = anchor.parent
        if not anchor.is_dir():
            raise RunnerError(f"{p}: cannot write there, {anchor} is a file")
    mix = open_audio(inp, model.sample_rate, model.nb_channels, allow_truncated)
    try:
        # the model's fixed input dimensions against what it will be fed: before any output folder
        model_check = getattr(model, "check_feed", None)
        if model_check is not None:
            model_check(feed_shapes(model, mix.shape[0], chunk_seconds), f"{inp} ({mix.shape[0]} samples)")
        size = estimated_bytes(fmt, subtype, mix.shape[0], model.nb_channels, model.sample_rate, bitrate, quality)
        if size is not None:  # a full disk is said before the separation, not after it
            check_free_space(next(iter(paths.values())).parent, size * len(paths), f"the stems of {inp}")
        files = {}
        with OutputSet(paths, overwrite) as temps:
            try:
                for t, p in paths.items():
                    try:
                        files[t] = sf.SoundFile(str(temps[t]), "w", samplerate=model.sample_rate,
                                                channels=model.nb_channels, subtype=subtype,
                                                format=OUTPUT_FORMATS[fmt][0], **options)
                    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError
                        raise RunnerError(write_failure(exc, p, f"{fmt} file")) from None
                written = 0
                for start, blocks in iter_separate(model, mix, chunk_seconds, progress):
                    if start != written:  # pragma: no cover - the plan tiles the input
                        raise RunnerError(f"internal error: chunk starts at {start}, expected {written}")
                    for t in names:
                        if t in blocks:
                            v = blocks[t]
                        else:  # no_<stem> of --two-stems: the sum of the other targets
                            v = sum(b for k, b in blocks.items() if k != t[len("no_"):])
                        for i in range(0, v.shape[0], WRITE_BLOCK):  # bounded temporaries
                            part = v[i : i + WRITE_BLOCK]
                            part = part if subtype == "FLOAT" else np.clip(part, -1.0, 1.0)
                            try:
                                if files[t].write(part) not in (None, len(part)):
                                    raise OSError(errno.EIO, "short write")
                            except (OSError, RuntimeError) as exc:
                                raise RunnerError(write_failure(exc, paths[t], f"{fmt} file")) from None
                    written += next(iter(blocks.values())).shape[0]
                    blocks = v = part = None  # the chunk's outputs are freed before the next model call
                for t, f in files.items():
                    try:
                        f.close()
                    except (OSError, RuntimeError) as exc:
                        raise RunnerError(write_failure(exc, paths[t], f"{fmt} file")) from None
            finally:
                for f in files.values():
                    if not f.closed:
                        try:
                            f.close()
                        except Exception:
                            pass
    finally:
        if isinstance(mix, FileAudio):
            mix.file.close()
    return paths


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _prog():
    """The command's name in usage and error messages: ``python -m kerasep.export.runner`` in
    kerasep, else the script's file name (``run_onnx.py`` beside an exported model)."""
    if __spec__ is not None and __spec__.name == "kerasep.export.runner":
        return "python -m kerasep.export.runner"
    if __name__ == "__main__" and sys.argv and sys.argv[0].endswith(".py"):
        return os.path.basename(sys.argv[0])
    return "run_onnx.py"


def positive_seconds(text):
    """``argparse`` type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds > 0. Received: {text!r}")
    return value


def unit_interval(text):
    """``argparse`` type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] (1 best). Received: {text!r}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        prog=_prog(), description="Separate audio files with a kerasep ONNX export (no TensorFlow)."
    )
    parser.add_argument("model", help="the .onnx file written by `kerasep export`")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files (wav/flac/ogg/mp3)")
    parser.add_argument("-o", "--output", default="separated", help="output folder (default ./separated)")
    parser.add_argument("--format", choices=list(OUTPUT_FORMATS), default="wav")
    parser.add_argument("--bitrate", default=None, metavar="KBPS",
                        help="mp3 only: constant bitrate, exact, e.g. 320k (default), 192k, 128k")
    parser.add_argument("--quality", type=float, default=None, metavar="Q",
                        help="mp3/ogg: variable bitrate quality in [0, 1], 1 best (ogg Vorbis has no "
                             "exact bitrate setting; default: libsndfile's)")
    parser.add_argument("--stems", default=None, metavar="A,B",
                        help="write only these stems (comma-separated), e.g. vocals")
    parser.add_argument("--chunk-seconds", type=positive_seconds, default=None,
                        help=f"process at most S seconds at a time (default {DEFAULT_CHUNK_SECONDS:g} for "
                             f"models with exact chunking (the U-Net), {DEFAULT_CROSSFADE_CHUNK_SECONDS:g} otherwise)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--allow-truncated", action="store_true",
                        help="separate what decodes of an input shorter than its header declares (default: refused)")
    parser.add_argument("--cpu", action="store_true", help="use the CPU provider even if CUDA is available")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    saved, INTERFACE["name"] = INTERFACE["name"], "cli"
    try:
        with cleanup_on_sigterm():
            return _main(parser, args)
    finally:
        INTERFACE["name"] = saved


def _main(parser, args):
    name = parser.prog.split()[-1]  # "kerasep.export.runner" or "run_onnx.py"
    try:
        model = OnnxSeparator(args.model, providers=["CPUExecutionProvider"] if args.cpu else None)
    except RunnerError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.model}: {', '.join(model.targets)} at {model.sample_rate} Hz on "
          f"{model.session.get_providers()[0]}", file=sys.stderr)
    failures = 0
    for inp in args.inputs:
        try:
            paths = separate_file(model, inp, args.output, args.format, args.overwrite,
                                  args.chunk_seconds, progress=not args.quiet, stems=args.stems,
                                  bitrate=args.bitrate, quality=args.quality,
                                  allow_truncated=args.allow_truncated)
            for p in paths.values():
                print(f"  wrote {p}", file=sys.stderr)
        except RunnerError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            failures += 1
        except OSError as exc:
            print(f"{name}: {os_error_message(exc, exc.filename or args.output, 'separating ' + str(inp) + ' into')}",
                  file=sys.stderr)
            failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
