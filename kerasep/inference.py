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
  cross-fades, or (``weighting="triangular"``, HTDemucs) demucs' ``apply_model`` transition
  weights normalised by their sum, or (``weighting="faded"``, the band-split RoFormers)
  Music-Source-Separation-Training's ``demix``: reflect padding, segments every ``chunk_size //
  num_overlap`` samples, windows faded over ``chunk_size // 10``, normalised by their sum.
- a :class:`~kerasep.models.bag.SeparatorBag` (demucs' ``BagOfModels``): every member separates the
  song with its own policy and random shifts; the estimates are averaged per source with the
  bag's weights.

``shifts`` averages randomly time-shifted runs and ``two_stems`` folds the targets into one stem
and the rest. Chunk planning and cross-fade weights are the ONNX runner's
(:mod:`kerasep.export.runner`), so both engines cut a song the same way.
"""
import collections
import functools
import math
from pathlib import Path

import numpy as np

from kerasep import audio as _audio
from kerasep.export.runner import crossfade_weights, plan_chunks
from kerasep.export.runner.chunks import iter_faded
from kerasep.export.runner.segments import iter_triangular, triangular_weights  # noqa: F401 (public here)
from kerasep.export.runner.segments import segment_samples as _segment_samples
from kerasep.models.bag import SeparatorBag
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


#: Traces of the inference functions, counted when ``tf.function`` traces them (``"call"``:
#: ``model(x)`` on chunks and segments; ``"stream_block"``: patch-grid blocks). A separation
#: that retraces per chunk shows here.
TRACES = collections.Counter()


@functools.lru_cache(maxsize=8)
def _compiled(model):
    from kerasep.backend import tf

    spec = tf.TensorSpec((None, model.nb_channels, None), tf.float32, name="waveform")

    def call(x):
        TRACES["call"] += 1
        return model(x, training=False)

    return tf.function(call, input_signature=[spec])


def _zeros(nb_timesteps, nb_channels):
    return np.zeros((nb_timesteps, nb_channels), np.float32)


#: Timesteps per slice when whole outputs are combined (shifts, two stems, window envelope).
_SLICE = 1 << 20


def _slices(n):
    """``(start, stop)`` of consecutive ``_SLICE``-timestep slices of ``[0, n)``."""
    for start in range(0, n, _SLICE):
        yield start, min(start + _SLICE, n)


def separate_array(mix, model, chunk_seconds=None, progress=False, context_seconds=None, shifts=0,
                   two_stems=None, seed=None, alloc=None, jit_compile=False):
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
        jit_compile: ``"patch_grid"`` models: run each block XLA-compiled (one compilation: every
            block has the same shape). Other policies ignore it.

    Returns ``{target: (nb_timesteps, nb_channels) float32}`` arrays made by ``alloc``.
    """
    model = check_separator(model)
    alloc = alloc or _zeros
    rate = model.sample_rate
    n = mix.shape[0]
    shifts = int(shifts or 0)
    if shifts < 0:
        raise ValueError(f"shifts must be >= 0. Received: {shifts}")
    requested = chunk_seconds
    chunk_seconds = model.chunking.chunk_seconds(chunk_seconds)
    targets = model.stems
    if two_stems is not None and two_stems not in targets:
        raise ValueError(f"two_stems must be one of the model's targets {targets}. Received: {two_stems!r}")
    bar = None
    if progress:
        from tqdm import tqdm

        runs = max(1, shifts) * (len(model.members) if isinstance(model, SeparatorBag) else 1)
        bar = tqdm(total=n * runs / rate, unit="s", unit_scale=False, desc="separating",
                   bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s audio [{elapsed}<{remaining}]")
    rng = np.random.default_rng(seed) if shifts else None
    try:
        if isinstance(model, SeparatorBag):
            out = _separate_bag(mix, model, targets, requested, context_seconds, shifts, rng, bar, alloc)
        else:
            out = _separate_shifted(mix, model, targets, chunk_seconds, context_seconds, shifts, rng, bar, alloc,
                                    jit_compile)
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


def _separate_shifted(mix, model, targets, chunk_seconds, context_seconds, shifts, rng, bar, alloc, jit_compile=False):
    """One separator over ``mix``; with ``shifts``, the average of that many runs on ``mix``
    delayed by a random ``0 .. 0.5 s`` (demucs' ``apply_model(shifts=...)``: the input padded
    by ``max_shift`` zeros, cut at a random ``offset`` in ``[0, max_shift]``, the output moved
    back by ``max_shift - offset``)."""
    n = mix.shape[0]
    if not shifts:
        return _separate_chunks(mix, model, targets, chunk_seconds, context_seconds, bar, alloc,
                                jit_compile=jit_compile)
    max_shift = int(0.5 * model.sample_rate)
    out = {t: alloc(n, mix.shape[1]) for t in targets}
    for _ in range(shifts):
        delay = max_shift - int(rng.integers(0, max_shift + 1))
        shifted = _Delayed(mix, delay)
        est = _separate_chunks(shifted, model, targets, chunk_seconds, context_seconds, bar, alloc,
                               scale=n / shifted.shape[0], jit_compile=jit_compile)
        for t in targets:
            for a, b in _slices(n):
                out[t][a:b] += est[t][delay + a : delay + b] / shifts
            _release(est[t])
    return out


def _separate_bag(mix, bag, targets, chunk_seconds, context_seconds, shifts, rng, bar, alloc):
    """demucs' ``apply_model`` on a ``BagOfModels``: each member over the whole song (its own
    chunk policy, its own random shifts), weighted per source, divided by the total weights."""
    n = mix.shape[0]
    out = {t: alloc(n, mix.shape[1]) for t in targets}
    for member, row in zip(bag.members, bag.source_weights):
        seconds = member.chunking.chunk_seconds(chunk_seconds)
        est = _separate_shifted(mix, member, targets, seconds, context_seconds, shifts, rng, bar, alloc)
        for k, t in enumerate(targets):
            if row[k]:
                for a, b in _slices(n):
                    out[t][a:b] += est[t][a:b] * np.float32(row[k])
            _release(est[t])
    for k, t in enumerate(targets):
        for a, b in _slices(n):
            out[t][a:b] /= np.float32(bag.totals[k])
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


def _separate_chunks(mix, model, targets, chunk_seconds, context_seconds, bar, alloc, scale=1.0, jit_compile=False):
    policy = model.chunking
    if policy.kind == "patch_grid":
        return _separate_patch_grid(mix, model, policy, targets, chunk_seconds, bar, alloc, scale, jit_compile)
    if policy.kind == "segment" and policy.weighting == "triangular" and context_seconds is None:
        return _separate_triangular(mix, model, policy, targets, chunk_seconds, bar, alloc, scale)
    if policy.kind == "segment" and policy.weighting == "faded" and context_seconds is None:
        return _separate_faded(mix, model, policy, targets, chunk_seconds, bar, alloc, scale)
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


def _separate_triangular(mix, model, policy, targets, chunk_seconds, bar, alloc, scale=1.0):
    """demucs' ``apply_model(split=True, overlap=policy.overlap)`` on one model: segments of
    ``L = int(chunk_seconds * rate)`` samples every ``int((1 - overlap) * L)``, each output
    weighted by :func:`triangular_weights` (cut to the segment's length), the sum divided by the
    sum of the weights; a segment cut by the end of the input is run on the ``L`` samples centred
    on it and its middle kept; an input no longer than one stride is one model call on the input
    itself (equals ``model(mix)``). The ONNX runner's plan
    (:func:`~kerasep.export.runner.segments.iter_triangular`), so both engines cut alike;
    finished blocks are written as they come."""
    fn = _compiled(model)
    view = _SegmentView(lambda x: {t: v.numpy() for t, v in fn(x).items()}, model,
                        _segment_samples(chunk_seconds, model.sample_rate), policy.overlap)
    out = {t: alloc(mix.shape[0], mix.shape[1]) for t in targets}
    progress = None if bar is None else _Scaled(bar, scale)
    for start, blocks in iter_triangular(view, mix, bar=progress):
        for t in targets:
            out[t][start : start + blocks[t].shape[0]] = blocks[t]
    return out


class _SegmentView:
    """What :func:`~kerasep.export.runner.segments.iter_triangular` asks of a model: a call
    ``(1, nb_channels, m)`` → ``{target: array}``, ``sample_rate``, ``nb_channels``,
    ``chunk_segment`` (samples) and ``chunk_overlap``."""

    def __init__(self, call, model, segment, overlap):
        self._call = call
        self.sample_rate, self.nb_channels = model.sample_rate, model.nb_channels
        self.chunk_segment, self.chunk_overlap = int(segment), float(overlap)

    def __call__(self, x):
        return self._call(x)


def _separate_faded(mix, model, policy, targets, chunk_seconds, bar, alloc, scale=1.0):
    """Music-Source-Separation-Training's ``demix`` on one model (``weighting="faded"``):
    segments of ``L = chunk_seconds * rate`` samples (the checkpoint's ``chunk_size`` by
    default) every ``L // policy.num_overlap``, the input reflect-padded by ``L - L //
    num_overlap`` at both ends, each output weighted by :func:`~kerasep.export.runner.chunks.
    faded_window`, the sum divided by the sum of the windows (the shared
    :func:`~kerasep.export.runner.chunks.iter_faded`); finished blocks are written as they come."""
    rate = model.sample_rate
    segment = _segment_samples(chunk_seconds, rate)
    fn = _compiled(model)
    out = {t: alloc(mix.shape[0], mix.shape[1]) for t in targets}

    def call(x):
        return {t: v.numpy() for t, v in fn(x).items()}

    progress = None if bar is None else (_Scaled(bar, scale), rate)
    for start, blocks in iter_faded(call, mix, segment, policy.num_overlap, progress):
        for t in targets:
            out[t][start : start + blocks[t].shape[0]] = blocks[t]
    return out


class _Scaled:
    """A progress bar whose updates are multiplied by ``scale`` (shifted runs are longer)."""

    def __init__(self, bar, scale):
        self.bar, self.scale = bar, scale

    def update(self, amount):
        self.bar.update(amount * self.scale)


#: Most ``T``-frame patches per block on the patch grid: each patch is computed once whatever the
#: block size, so bigger blocks cost memory without saving time.
PATCH_GRID_MAX_PATCHES = 2


@functools.lru_cache(maxsize=8)
def _stream_fn(model, jit_compile=False):
    """``model.stream_block`` as one ``tf.function`` (XLA-compiled with ``jit_compile``; XLA
    compiles once per block shape, and every block but a song shorter than one has the same)."""
    from kerasep.backend import tf

    spec = tf.TensorSpec((None, model.nb_channels, None), tf.float32, name="segment")

    def block(segment):
        TRACES["stream_block"] += 1
        return model.stream_block(segment)

    return tf.function(block, input_signature=[spec], jit_compile=bool(jit_compile))


def _separate_patch_grid(mix, model, policy, targets, chunk_seconds, bar, alloc, scale=1.0, jit_compile=False):
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
    # whole patches per block, no more than the song has: every block is fed as the same
    # (1, nb_channels, (step - 1) * hop + n_fft) segment, the last one zero-padded (its frames
    # past the input are all-zero, as the zero-padded patches of whole-file processing, and
    # they add nothing inside the input), so a compiled block function sees one shape
    step = T * min(max(1, patches), PATCH_GRID_MAX_PATCHES, -(-nb_frames // T))
    fn = _stream_fn(model, bool(jit_compile))
    out = {t: alloc(n, nb_channels) for t in targets}
    for k0 in range(0, nb_frames, step):
        k1 = min(k0 + step, nb_frames)
        s0, s1 = k0 * hop - n_fft, (k1 - 1) * hop  # frames [k0, k1) span samples [s0, s1)
        a, b = max(s0, 0), min(s1, n)
        segment = np.zeros((1, nb_channels, (step - 1) * hop + n_fft), np.float32)  # zeros outside the input
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
    allow_truncated=False,
    backend="auto",
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
        allow_truncated: separate what decodes of a file whose decoded length is shorter than
            the length its container declares (default: an error naming both).
        backend: ``"auto"`` (default): the ONNX runner when onnxruntime, onnx and tf2onnx are
            installed and the model can go that way with its own chunking (the U-Nets; exported
            once into ``$KERASEP_HOME/onnx/`` and checked against Keras on a probe before it is
            cached), else Keras; a model object runs in Keras unless ``"onnx"``; ``"keras"``;
            ``"onnx"`` (an error saying why when the model cannot). An ``.onnx`` path as
            ``model`` runs in onnxruntime. ``shifts`` need Keras.

    Returns:
        ``{target: float32 array (nb_timesteps, nb_channels)}`` at the input's rate and length.

    Raises:
        kerasep.audio.AudioError: unreadable, empty or non-finite audio, wrong channel count.
    """
    from kerasep.export.cache import onnx_engine, separate_session

    session, model, _ = onnx_engine(model, weights, backend, shifts, load=lambda m: as_separator(m, weights))
    model = model if session is None else session  # both have sample_rate, nb_channels
    rate = model.sample_rate
    if isinstance(audio_or_path, (str, Path)):
        mix = _audio.load(audio_or_path, sample_rate=rate, nb_channels=model.nb_channels, downmix=downmix,
                          allow_truncated=allow_truncated)
        in_rate = rate
    else:
        mix = _audio.check_audio(audio_or_path, nb_channels=model.nb_channels, downmix=downmix)
        in_rate = rate if sample_rate is None else int(sample_rate)
        if in_rate != rate:
            mix = _audio.resample(mix, in_rate, rate)
    if session is not None:
        stems = separate_session(session, mix, chunk_seconds, progress, two_stems)
    else:
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

