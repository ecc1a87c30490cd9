"""Separation of files and arrays of any length in bounded memory.

:func:`separate` cuts long inputs into chunks; each chunk is processed with ``context`` samples
of real audio on both sides, and only its middle is kept. For models that declare
``chunk_alignment``/``chunk_context``, chunk borders fall on the model's own patch grid and the
result equals whole-file processing, so there are no seams. Spleeter-style U-Nets (STFT → masks of
``T``-frame patches → iSTFT) are streamed block by block on that grid instead: each patch goes
through the network once (no context recomputed) and the inverse STFT is overlap-added across
blocks, which equals whole-file processing at a bounded memory cost.
Models without such attributes get ``context_seconds`` of context and a linear cross-fade over
it, as in overlap-add separation. Models declaring ``segment_seconds``/``segment_overlap``
(Demucs) run on fixed-length segments overlapping by that fraction, with linear cross-fades;
``shifts`` averages randomly time-shifted runs and ``two_stems`` folds the targets into one stem
and the rest.
"""
import functools
import math
from pathlib import Path

import numpy as np

from kerasep import audio as _audio

#: Default chunk length, in seconds (rounded up to the model's alignment).
DEFAULT_CHUNK_SECONDS = 60.0


def _as_model(model, weights=None):
    if isinstance(model, (str, Path)):
        return _load_cached(str(model), weights)
    return model


@functools.lru_cache(maxsize=4)
def _load_cached(name, weights):
    from kerasep import zoo

    return zoo.load(name, weights=weights)


@functools.lru_cache(maxsize=8)
def _compiled(model):
    from kerasep.backend import tf

    spec = tf.TensorSpec((None, model.nb_channels, None), tf.float32, name="waveform")
    return tf.function(lambda x: model(x, training=False), input_signature=[spec])


def plan_chunks(nb_timesteps, chunk, context, alignment=1):
    """Split ``[0, nb_timesteps)`` into chunks.

    Args:
        nb_timesteps: total samples.
        chunk: wanted samples per chunk (rounded up to a multiple of ``alignment``).
        context: samples of context on each side (rounded up to a multiple of ``alignment``).
        alignment: chunk borders are multiples of it.

    Returns:
        list of ``(keep_start, keep_end, in_start, in_end)`` in samples: the model sees
        ``[in_start, in_end)`` and its output ``[keep_start, keep_end)`` is kept.
    """
    alignment = max(1, int(alignment))
    chunk = max(alignment, -(-int(chunk) // alignment) * alignment)
    context = -(-int(context) // alignment) * alignment
    plan = []
    for start in range(0, nb_timesteps, chunk):
        end = min(start + chunk, nb_timesteps)
        plan.append((start, end, max(0, start - context), min(nb_timesteps, end + context)))
    return plan


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

    Models declaring ``segment_seconds``/``segment_overlap`` (Demucs) are run on segments of
    ``chunk_seconds`` (default: the model's ``segment_seconds``) seconds, consecutive segments
    sharing ``segment_overlap`` of their length, cross-faded linearly (demucs' ``apply_model``
    with ``split=True``).

    Args:
        shifts: if > 0, average the estimates of ``shifts`` runs on the input delayed by a random
            0 to 0.5 s (demucs' shift trick; makes the model closer to time-equivariant).
        two_stems: a target name ``s``: return ``{s: ..., "no_" + s: sum of the other targets}``.
        seed: seed of the random shifts (reproducible output).
        alloc: ``alloc(nb_timesteps, nb_channels)`` → a zero-filled output array supporting
            slice reads and writes (default: ``np.zeros``).

    Returns ``{target: (nb_timesteps, nb_channels) float32}`` arrays made by ``alloc``.
    """
    alloc = alloc or _zeros
    fn = _compiled(model)
    rate = model.sample_rate
    n = mix.shape[0]
    shifts = int(shifts or 0)
    if shifts < 0:
        raise ValueError(f"shifts must be >= 0. Received: {shifts}")
    segmented = not hasattr(model, "chunk_context") and hasattr(model, "segment_seconds")
    if chunk_seconds is None:
        chunk_seconds = (model.segment_seconds if segmented
                         else getattr(model, "default_chunk_seconds", DEFAULT_CHUNK_SECONDS))
    chunk_seconds = float(chunk_seconds)
    if chunk_seconds <= 0:
        raise ValueError(f"chunk_seconds must be > 0. Received: {chunk_seconds}")
    targets = list(getattr(model, "output_targets", None) or model.targets)
    if two_stems is not None and two_stems not in targets:
        raise ValueError(f"two_stems must be one of the model's targets {targets}. Received: {two_stems!r}")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n * max(1, shifts) / rate, unit="s", unit_scale=False, desc="separating",
                   bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s audio [{elapsed}<{remaining}]")
    try:
        if not shifts:
            out = _separate_chunks(mix, model, fn, targets, chunk_seconds, context_seconds, segmented, bar,
                                   alloc)
        else:
            rng = np.random.default_rng(seed)
            max_shift = int(0.5 * rate)
            out = {t: alloc(n, mix.shape[1]) for t in targets}
            for _ in range(shifts):
                delay = max_shift - int(rng.integers(0, max_shift + 1))
                shifted = _Delayed(mix, delay)
                est = _separate_chunks(shifted, model, fn, targets, chunk_seconds, context_seconds,
                                       segmented, bar, alloc, scale=n / shifted.shape[0])
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


def _separate_chunks(mix, model, fn, targets, chunk_seconds, context_seconds, segmented, bar, alloc,
                     scale=1.0):
    rate = model.sample_rate
    n = mix.shape[0]
    if _on_patch_grid(model):
        return _separate_patch_grid(mix, model, targets, chunk_seconds, bar, alloc, scale)
    alignment = getattr(model, "chunk_alignment", 1)
    exact = hasattr(model, "chunk_context")
    if exact:
        chunk = int(chunk_seconds * rate)
        context = model.chunk_context
    elif segmented and context_seconds is None:
        # Segments of chunk_seconds; consecutive ones overlap by segment_overlap of a segment.
        segment = int(chunk_seconds * rate)
        context = int(round(segment * model.segment_overlap / 2))
        chunk = max(1, segment - 2 * context)
    else:
        chunk = int(chunk_seconds * rate)
        context = int(round((5.0 if context_seconds is None else context_seconds) * rate))
    plan = plan_chunks(n, chunk, context, alignment)
    out = {t: alloc(n, mix.shape[1]) for t in targets}
    for k, (ks, ke, s, e) in enumerate(plan):
        x = np.ascontiguousarray(mix[s:e].T)[None]  # (1, nb_channels, nb_timesteps)
        y = fn(x)
        for t in targets:
            est = y[t].numpy()[0].T  # (nb_timesteps, nb_channels)
            if exact:
                out[t][ks:ke] = est[ks - s : ke - s]
            else:
                _crossfade_into(out[t], est, s, e, ks, ke, plan, k)
        if bar is not None:
            bar.update((ke - ks) * scale / rate)
    return out


#: Most ``T``-frame patches per block on the patch grid: each patch is computed once whatever the
#: block size, so bigger blocks cost memory without saving time.
PATCH_GRID_MAX_PATCHES = 2


def _on_patch_grid(model):
    """Spleeter-style models (STFT → masks of ``T``-frame patches → iSTFT) that can be streamed
    block by block on their own patch grid."""
    framing = getattr(getattr(model, "stft", None), "padding", None)  # the block maths assume it
    return framing == "spleeter" and all(
        hasattr(model, a) for a in ("estimate_masks", "apply_mask", "T", "F", "n_fft", "hop_length")
    )


@functools.lru_cache(maxsize=8)
def _patch_block_fn(model):
    """``segment (1, nb_channels, (nb_frames - 1) * hop + n_fft)`` → ``{target: overlap-added
    windowed frames}``, not yet divided by the window envelope: frames are unpadded ("valid")
    so that consecutive blocks of frames sum to the whole-file overlap-add."""
    from kerasep.backend import tf
    from kerasep.layers.stft import STFT, hann_window

    n_fft, hop = model.n_fft, model.hop_length
    nb_bins = model.F if getattr(model, "mask_extension", "zeros") == "zeros" else None
    stft = STFT(n_fft, hop, padding="valid", nb_bins=nb_bins, name="block_stft")
    targets = list(getattr(model, "output_targets", None) or model.targets)
    spec = tf.TensorSpec((None, model.nb_channels, None), tf.float32, name="segment")

    @tf.function(input_signature=[spec])
    def block(segment):
        stft_ = stft(segment)  # (1, nb_channels, nb_frames, nb_bins, 2)
        masks = model.estimate_masks(stft_, training=False)
        window = hann_window(n_fft)
        out = {}
        for t in targets:
            masked = model.apply_mask(stft_, masks[t])
            frames = tf.signal.irfft(tf.complex(masked[..., 0], masked[..., 1]), fft_length=[n_fft])
            out[t] = tf.signal.overlap_and_add(frames * window, hop)
        return out

    return block


def _window_envelope(model, start, stop):
    """Overlap-added squared window at samples ``[start, stop)`` of the input: inside the input
    every covering Spleeter frame exists, so it is periodic with period ``hop_length``."""
    from kerasep.layers.stft import hann_window

    n_fft, hop = model.n_fft, model.hop_length
    w2 = np.square(np.asarray(hann_window(n_fft)))
    period = np.array([w2[r::hop].sum() for r in range(hop)], np.float32)
    period[period <= 1e-11] = 1.0  # as ISTFT: leave samples no window covers undivided
    return period[(np.arange(start, stop) + n_fft) % hop]


def _separate_patch_grid(mix, model, targets, chunk_seconds, bar, alloc, scale=1.0):
    """Stream ``mix`` through a patch-grid model in blocks of whole patches.

    Spleeter frame ``k`` covers input samples ``[k * hop - n_fft, k * hop)``; patch ``p`` holds
    frames ``[p * T, (p + 1) * T)``. Each block computes the STFT of its frames only (unpadded),
    the masks of its patches and their windowed inverse frames, overlap-added into the output;
    the sum is divided by the window envelope at the end. Every patch goes through the U-Net
    exactly once, on the same patch grid as whole-file processing, so the result equals the
    model's whole-file output (up to float rounding) at a cost independent of the block size.
    """
    n, nb_channels = mix.shape
    n_fft, hop, T = model.n_fft, model.hop_length, model.T
    rate = model.sample_rate
    nb_frames = -(-(n + n_fft) // hop)  # Spleeter's frame count for the whole input
    patches = int(chunk_seconds * rate) // (T * hop)
    step = T * min(max(1, patches), PATCH_GRID_MAX_PATCHES)
    fn = _patch_block_fn(model)
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
        env = _window_envelope(model, a, b)[:, None]
        for t in targets:
            out[t][a:b] /= env
    return out


def _crossfade_into(dst, est, s, e, ks, ke, plan, k):
    """Overlap-add ``est`` (covering ``[s, e)``) into ``dst`` with linear fades in the overlaps
    between consecutive chunks, so that weights sum to one everywhere."""
    w = np.ones(e - s, np.float32)
    if k > 0:  # fade in over the overlap with the previous chunk's input
        prev_e = plan[k - 1][3]
        m = prev_e - s
        if m > 0:
            w[:m] = (np.arange(m, dtype=np.float32) + 0.5) / m
    if k < len(plan) - 1:
        nxt_s = plan[k + 1][2]
        m = e - nxt_s
        if m > 0:
            w[-m:] = 1.0 - (np.arange(m, dtype=np.float32) + 0.5) / m
    dst[s:e] += est * w[:, None]


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
            model's ``default_chunk_seconds``, else 60; Demucs: its segment length).
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
    model = _as_model(model, weights)
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
