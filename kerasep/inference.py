"""Separation of files and arrays of any length in bounded memory.

:func:`separate` cuts long inputs into chunks; each chunk is processed with ``context`` samples
of real audio on both sides, and only its middle is kept. For models that declare
``chunk_alignment``/``chunk_context`` (the U-Net: one ``T``-frame patch), chunk borders fall on
the model's own patch grid and the result equals whole-file processing, so there are no seams.
Models without such attributes get ``context_seconds`` of context and a linear cross-fade over
it, as in overlap-add separation.
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


def separate_array(mix, model, chunk_seconds=None, progress=False, context_seconds=None):
    """Separate a validated ``(nb_timesteps, nb_channels)`` array at the model's rate.

    Returns ``{target: (nb_timesteps, nb_channels) float32}``.
    """
    fn = _compiled(model)
    rate = model.sample_rate
    n = mix.shape[0]
    chunk_seconds = DEFAULT_CHUNK_SECONDS if chunk_seconds is None else float(chunk_seconds)
    if chunk_seconds <= 0:
        raise ValueError(f"chunk_seconds must be > 0. Received: {chunk_seconds}")
    alignment = getattr(model, "chunk_alignment", 1)
    exact = hasattr(model, "chunk_context")
    if exact:
        context = model.chunk_context
    else:
        context = int(round((5.0 if context_seconds is None else context_seconds) * rate))
    plan = plan_chunks(n, int(chunk_seconds * rate), context, alignment)
    targets = list(getattr(model, "output_targets", None) or model.targets)
    out = {t: np.zeros((n, mix.shape[1]), np.float32) for t in targets}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n / rate, unit="s", unit_scale=False, desc="separating",
                   bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s audio [{elapsed}<{remaining}]")
    try:
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
                bar.update((ke - ks) / rate)
    finally:
        if bar is not None:
            bar.close()
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
):
    """Separate a song into stems.

    Args:
        audio_or_path: a path to an audio file (wav/flac/ogg/mp3/m4a/stem.mp4), or a float
            array ``(nb_timesteps, nb_channels)`` (mono ``(nb_timesteps,)`` is accepted).
        model: a zoo name (e.g. ``"unet-2stems"``), a ``.keras`` path, or a loaded model.
        sample_rate: the array's rate in Hz (default: the model's). Arrays at another rate are
            resampled to the model's rate and the stems back to ``sample_rate``.
        chunk_seconds: process at most this many seconds at a time (memory bound; default 60).
        progress: show a tqdm progress bar.
        weights: optional local weights (folder, archive or wheel) for a zoo name.
        downmix: accept more than two channels by mixing them down.

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
    stems = separate_array(mix, model, chunk_seconds=chunk_seconds, progress=progress)
    if in_rate != rate:
        n = audio_or_path.shape[0]
        stems = {t: _fit_length(_audio.resample(y, rate, in_rate), n) for t, y in stems.items()}
    return stems


def _fit_length(y, n):
    if y.shape[0] >= n:
        return y[:n]
    return np.pad(y, ((0, n - y.shape[0]), (0, 0)))
