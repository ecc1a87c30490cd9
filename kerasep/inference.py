"""Separation of files and arrays of any length in bounded memory.

:func:`separate` cuts long inputs into chunks as the model's
:class:`~kerasep.models.separator.ChunkPolicy` (``model.chunking``) says:

- ``"patch_grid"`` (Spleeter-style U-Nets: STFT → masks of ``T``-frame patches → iSTFT): streamed
  block by block on the model's own patch grid through ``model.stream_block``; each patch goes
  through the network once and the inverse STFT is overlap-added across blocks, which equals
  whole-file processing at a bounded memory cost.
- ``"exact"``: chunk borders on the model's alignment with ``context`` samples of real audio on
  both sides, only the middle kept: equals whole-file processing.
- ``"crossfade"`` (Open-Unmix): ``context_seconds`` of context and a linear cross-fade over it.
- ``"segment"`` (Demucs): fixed-length segments overlapping by the policy's fraction, with linear
  cross-fades.

``shifts`` averages randomly time-shifted runs and ``two_stems`` folds the targets into one stem
and the rest. Chunk planning and cross-fade weights are the ONNX runner's
(:mod:`kerasep.export.runner`), so both engines cut a song the same way.
"""
import functools
import math
from pathlib import Path

import numpy as np

from kerasep import audio as _audio
from kerasep.export.runner import crossfade_weights, plan_chunks
from kerasep.models.separator import check_separator

__all__ = ["separate", "separate_array", "plan_chunks"]


def as_separator(model, weights=None):
    """A separator from a zoo name, a ``.keras``/``.th`` path (loaded once, cached) or a model."""
    if isinstance(model, (str, Path)):
        return _load_cached(str(model), weights)
    return check_separator(model)


@functools.lru_cache(maxsize=4)
def _load_cached(name, weights):
    from kerasep import zoo

    return zoo.load(name, weights=weights)


@functools.lru_cache(maxsize=8)
def _compiled(model):
    from kerasep.backend import tf

    spec = tf.TensorSpec((None, model.nb_channels, None), tf.float32, name="waveform")
    return tf.function(lambda x: model(x, training=False), input_signature=[spec])


def _zeros(nb_timesteps, nb_channels):
    return np.zeros((nb_timesteps, nb_channels), np.float32)


#: Timesteps per slice when whole outputs are combined (shifts, two stems, window envelope).
_SLICE = 1 << 20


def _slices(n):
    """``(start, stop)`` of consecutive ``_SLICE``-timestep slices of ``[0, n)``."""
    for start in range(0, n, _SLICE):
        yield start, min(start + _SLICE, n)


def separate_array(mix, model, chunk_seconds=None, progress=False, context_seconds=None, shifts=0,
                   two_stems=None, seed=None, alloc=None):
    """Separate a validated ``(nb_timesteps, nb_channels)`` array at the model's rate.

    ``mix`` only needs ``shape`` and contiguous slicing ``mix[i:j]``, so it may be a
    :class:`kerasep.diskaudio.DiskArray`; with ``alloc=`` making the outputs (e.g.
    ``functools.partial(DiskArray.zeros, directory=...)``) memory stays bounded by one chunk
    whatever the input's length.

    Models whose ``chunking`` is ``"segment"`` (Demucs) are run on segments of ``chunk_seconds``
    (default: the policy's ``segment_seconds``) seconds, consecutive segments sharing the
    policy's ``overlap`` of their length, cross-faded linearly (demucs' ``apply_model`` with
    ``split=True``).

    Args:
        shifts: if > 0, average the estimates of ``shifts`` runs on the input delayed by a random
            0 to 0.5 s (demucs' shift trick; makes the model closer to time-equivariant).
        two_stems: a target name ``s``: return ``{s: ..., "no_" + s: sum of the other targets}``.
        seed: seed of the random shifts (reproducible output).
        alloc: ``alloc(nb_timesteps, nb_channels)`` → a zero-filled output array supporting
            slice reads and writes (default: ``np.zeros``).

    Returns ``{target: (nb_timesteps, nb_channels) float32}`` arrays made by ``alloc``.
    """
    model = check_separator(model)
    alloc = alloc or _zeros
    rate = model.sample_rate
    n = mix.shape[0]
    shifts = int(shifts or 0)
    if shifts < 0:
        raise ValueError(f"shifts must be >= 0. Received: {shifts}")
    chunk_seconds = model.chunking.chunk_seconds(chunk_seconds)
    targets = model.stems
    if two_stems is not None and two_stems not in targets:
        raise ValueError(f"two_stems must be one of the model's targets {targets}. Received: {two_stems!r}")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n * max(1, shifts) / rate, unit="s", unit_scale=False, desc="separating",
                   bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s audio [{elapsed}<{remaining}]")
    try:
        if not shifts:
            out = _separate_chunks(mix, model, targets, chunk_seconds, context_seconds, bar, alloc)
        else:
            rng = np.random.default_rng(seed)
            max_shift = int(0.5 * rate)
            out = {t: alloc(n, mix.shape[1]) for t in targets}
            for _ in range(shifts):
                delay = max_shift - int(rng.integers(0, max_shift + 1))
                shifted = _Delayed(mix, delay)
                est = _separate_chunks(shifted, model, targets, chunk_seconds, context_seconds, bar, alloc,
                                       scale=n / shifted.shape[0])
                for t in targets:
                    for a, b in _slices(n):
                        out[t][a:b] += est[t][delay + a : delay + b] / shifts
                    _release(est[t])
    finally:
        if bar is not None:
            bar.close()
    if two_stems is not None:
        rest = alloc(n, mix.shape[1])
        for a, b in _slices(n):
            rest[a:b] = sum(out[t][a:b] for t in targets if t != two_stems)
        for t in targets:
            if t != two_stems:
                _release(out[t])
        out = {two_stems: out[two_stems], f"no_{two_stems}": rest}
    return out


def _release(array):
    """Free a disk-backed intermediate output now (plain arrays are left to the collector)."""
    if hasattr(array, "delete"):
        array.delete()


class _Delayed:
    """``mix`` delayed by ``delay`` samples (zeros first), sliceable like ``mix``: the shifted
    inputs of ``shifts`` without a padded copy."""

    def __init__(self, mix, delay):
        self.mix, self.delay = mix, int(delay)
        self.shape = (mix.shape[0] + self.delay,) + tuple(mix.shape[1:])

    def __getitem__(self, key):
        start, stop, _ = key.indices(self.shape[0])
        out = np.zeros((max(0, stop - start),) + self.shape[1:], np.float32)
        a, b = max(start, self.delay), max(stop, self.delay)
        out[a - start : b - start] = self.mix[a - self.delay : b - self.delay]
        return out


def _separate_chunks(mix, model, targets, chunk_seconds, context_seconds, bar, alloc, scale=1.0):
    policy = model.chunking
    if policy.kind == "patch_grid":
        return _separate_patch_grid(mix, model, policy, targets, chunk_seconds, bar, alloc, scale)
    rate = model.sample_rate
    n = mix.shape[0]
    exact = policy.kind == "exact"
    if exact:
        chunk, context = int(chunk_seconds * rate), policy.context
    elif policy.kind == "segment" and context_seconds is None:
        # Segments of chunk_seconds; consecutive ones overlap by policy.overlap of a segment.
        segment = int(chunk_seconds * rate)
        context = int(round(segment * policy.overlap / 2))
        chunk = max(1, segment - 2 * context)
    else:
        chunk = int(chunk_seconds * rate)
        context = int(round((policy.context_seconds if context_seconds is None else context_seconds) * rate))
    plan = plan_chunks(n, chunk, context, policy.alignment)
    fn = _compiled(model)
    out = {t: alloc(n, mix.shape[1]) for t in targets}
    for k, (ks, ke, s, e) in enumerate(plan):
        x = np.ascontiguousarray(mix[s:e].T)[None]  # (1, nb_channels, nb_timesteps)
        y = fn(x)
        w = None if exact else crossfade_weights(s, e, plan, k)[:, None]
        for t in targets:
            est = y[t].numpy()[0].T  # (nb_timesteps, nb_channels)
            if exact:
                out[t][ks:ke] = est[ks - s : ke - s]
            else:  # weights of consecutive chunks sum to one everywhere
                out[t][s:e] += est * w
        if bar is not None:
            bar.update((ke - ks) * scale / rate)
    return out


#: Most ``T``-frame patches per block on the patch grid: each patch is computed once whatever the
#: block size, so bigger blocks cost memory without saving time.
PATCH_GRID_MAX_PATCHES = 2


@functools.lru_cache(maxsize=8)
def _stream_fn(model):
    from kerasep.backend import tf

    spec = tf.TensorSpec((None, model.nb_channels, None), tf.float32, name="segment")
    return tf.function(model.stream_block, input_signature=[spec])


def _separate_patch_grid(mix, model, policy, targets, chunk_seconds, bar, alloc, scale=1.0):
    """Stream ``mix`` through a patch-grid model in blocks of whole patches.

    Spleeter frame ``k`` covers input samples ``[k * hop - n_fft, k * hop)``; patch ``p`` holds
    frames ``[p * T, (p + 1) * T)``. Each block computes the STFT of its frames only (unpadded),
    the masks of its patches and their windowed inverse frames, overlap-added into the output;
    the sum is divided by the window envelope at the end. Every patch goes through the U-Net
    exactly once, on the same patch grid as whole-file processing, so the result equals the
    model's whole-file output (up to float rounding) at a cost independent of the block size.
    """
    from kerasep.layers.stft import window_envelope

    n, nb_channels = mix.shape
    n_fft, hop, T = policy.n_fft, policy.hop_length, policy.patch_frames
    rate = model.sample_rate
    nb_frames = -(-(n + n_fft) // hop)  # Spleeter's frame count for the whole input
    patches = int(chunk_seconds * rate) // (T * hop)
    step = T * min(max(1, patches), PATCH_GRID_MAX_PATCHES)
    fn = _stream_fn(model)
    out = {t: alloc(n, nb_channels) for t in targets}
    for k0 in range(0, nb_frames, step):
        k1 = min(k0 + step, nb_frames)
        s0, s1 = k0 * hop - n_fft, (k1 - 1) * hop  # frames [k0, k1) span samples [s0, s1)
        a, b = max(s0, 0), min(s1, n)
        segment = np.zeros((1, nb_channels, s1 - s0), np.float32)  # zeros outside the input
        segment[0, :, a - s0 : b - s0] = mix[a:b].T
        y = fn(segment)
        for t in targets:
            out[t][a:b] += y[t].numpy()[0, :, a - s0 : b - s0].T
        if bar is not None:
            bar.update((min(k1 * hop - n_fft, n) - max(k0 * hop - n_fft, 0)) * scale / rate)
    for a, b in _slices(n):  # divide in slices: no full-length temporary
        env = window_envelope(n_fft, hop, a, b, offset=n_fft)[:, None]
        for t in targets:
            out[t][a:b] /= env
    return out


def separate(
    audio_or_path,
    model="unet-2stems",
    sample_rate=None,
    chunk_seconds=None,
    progress=False,
    weights=None,
    downmix=False,
    shifts=0,
    two_stems=None,
    seed=None,
):
    """Separate a song into stems.

    Args:
        audio_or_path: a path to an audio file (wav/flac/ogg/mp3/m4a/stem.mp4), or a float
            array ``(nb_timesteps, nb_channels)`` (mono ``(nb_timesteps,)`` is accepted).
        model: a zoo name (e.g. ``"unet-2stems"``), a ``.keras`` path, or a loaded model.
        sample_rate: the array's rate in Hz (default: the model's). Arrays at another rate are
            resampled to the model's rate and the stems back to ``sample_rate``.
        chunk_seconds: process at most this many seconds at a time (memory bound; default: the
            model's ``chunking.default_chunk_seconds``; Demucs: its segment length).
        progress: show a tqdm progress bar.
        weights: optional local weights (folder, archive or wheel) for a zoo name.
        downmix: accept more than two channels by mixing them down.
        shifts: average over this many randomly shifted runs (demucs' shift trick; 0 = off).
        two_stems: a target name ``s``: return only ``s`` and ``"no_" + s`` (the sum of the
            other targets), e.g. ``"vocals"`` → ``{"vocals", "no_vocals"}``.
        seed: seed of the random shifts.

    Returns:
        ``{target: float32 array (nb_timesteps, nb_channels)}`` at the input's rate and length.

    Raises:
        kerasep.audio.AudioError: unreadable, empty or non-finite audio, wrong channel count.
    """
    model = as_separator(model, weights)
    rate = model.sample_rate
    if isinstance(audio_or_path, (str, Path)):
        mix = _audio.load(audio_or_path, sample_rate=rate, nb_channels=model.nb_channels, downmix=downmix)
        in_rate = rate
    else:
        mix = _audio.check_audio(audio_or_path, nb_channels=model.nb_channels, downmix=downmix)
        in_rate = rate if sample_rate is None else int(sample_rate)
        if in_rate != rate:
            mix = _audio.resample(mix, in_rate, rate)
    stems = separate_array(mix, model, chunk_seconds=chunk_seconds, progress=progress, shifts=shifts,
                           two_stems=two_stems, seed=seed)
    if in_rate != rate:
        n = audio_or_path.shape[0]
        stems = {t: _fit_length(_audio.resample(y, rate, in_rate), n) for t, y in stems.items()}
    return stems


def _fit_length(y, n):
    if y.shape[0] >= n:
        return y[:n]
    return np.pad(y, ((0, n - y.shape[0]), (0, 0)))
