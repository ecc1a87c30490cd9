"""demucs' ``apply_model`` segments (HTDemucs: ``ChunkPolicy("segment", weighting="triangular")``),
as :func:`kerasep.inference.separate_array` cuts a song for that policy: :func:`segment_samples`,
:func:`triangular_weights`, :func:`segment_length`, :func:`segment_feed_shapes`,
:func:`iter_triangular`.

A model file declares the policy in its metadata: ``kerasep.chunk_weighting`` ``"triangular"``,
``kerasep.chunk_segment`` (the segment ``L``, samples: the training segment) and
``kerasep.chunk_overlap`` (the overlap fraction, 0.25).
"""
import numpy as np

from .common import positive_seconds_option


def segment_samples(seconds, rate):
    """``int(seconds * rate)`` as demucs computes it from a ``Fraction`` segment (7.8 s at 44100 Hz
    → 343980): a product within 1e-6 of an integer is that integer; at least 1."""
    x = float(seconds) * rate
    return max(1, int(round(x)) if abs(x - round(x)) < 1e-6 else int(x))


def triangular_weights(segment):
    """demucs' ``apply_model`` transition weights of a ``segment``-sample segment, ``(segment,)``
    float32: ``[1, 2, …, L // 2, L - L // 2, …, 1]`` over its maximum."""
    w = np.concatenate([np.arange(1, segment // 2 + 1), np.arange(segment - segment // 2, 0, -1)])
    return (w / w.max()).astype(np.float32)


def segment_length(model, chunk_seconds=None):
    """The segment in samples: ``chunk_seconds`` at the model's rate when given (validated, the
    error names the option), else the model's ``chunk_segment``."""
    if chunk_seconds is None:
        return int(model.chunk_segment)
    return segment_samples(positive_seconds_option(chunk_seconds), model.sample_rate)


def _stride(segment, overlap):
    return max(1, int((1 - float(overlap)) * segment))


def segment_feed_shapes(model, n, chunk_seconds=None):
    """The distinct ``(1, nb_channels, m)`` arrays :func:`iter_triangular` feeds ``model`` for ``n``
    timesteps: the input itself when it is no longer than one stride, else whole segments."""
    segment = segment_length(model, chunk_seconds)
    if n <= _stride(segment, model.chunk_overlap):
        return [(1, model.nb_channels, n)]
    return [(1, model.nb_channels, segment)]


def _window(mix, start, stop):
    """``mix[start:stop]`` ``(stop - start, nb_channels)`` float32, zeros outside the input."""
    n = mix.shape[0]
    out = np.zeros((stop - start, mix.shape[1]), np.float32)
    a, b = max(start, 0), min(stop, n)
    if a < b:
        out[a - start : b - start] = mix[a:b]
    return out


def iter_triangular(model, mix, chunk_seconds=None, bar=None):
    """Separate ``mix`` ``(nb_timesteps, nb_channels)`` as demucs' ``apply_model(split=True,
    overlap=...)`` on one model, the plan of :func:`kerasep.inference.separate_array`: segments of
    ``L`` samples (:func:`segment_length`) start every ``int((1 - overlap) * L)``; a segment cut by
    the end of the input (``length < L``) is run on the ``L`` samples centred on it (real audio
    before, zeros past the input) and its middle kept; each output is weighted by
    :func:`triangular_weights` (cut to ``length``), summed in segment order, and divided by the
    sum of the weights. An input no longer than one stride is one call on the input as it is.

    ``model(x)``: ``(1, nb_channels, m)`` float32 → ``{target: (1, nb_channels, m)}``. Yields
    ``(start, {target: (k, nb_channels)})`` blocks in order that tile the input; a block is
    final once no later segment reaches it, so memory stays within about one segment of outputs.
    ``bar``: an optional tqdm-like progress bar, updated in seconds of audio."""
    n, nb_channels = mix.shape[0], mix.shape[1]
    rate = model.sample_rate
    segment = segment_length(model, chunk_seconds)
    stride = _stride(segment, model.chunk_overlap)
    if n <= stride:
        y = model(np.ascontiguousarray(np.asarray(mix[0:n], np.float32).T)[None])
        if bar is not None:
            bar.update(n / rate)
        yield 0, {t: np.asarray(v)[0].T for t, v in y.items()}
        return
    weight = triangular_weights(segment)
    offsets = list(range(0, n, stride))
    base, acc, total = 0, {}, np.zeros(0, np.float32)  # sums over [base, base + len(total))
    for k, offset in enumerate(offsets):
        length = min(segment, n - offset)
        trim = (segment - length) // 2
        y = model(np.ascontiguousarray(_window(mix, offset - trim, offset - trim + segment).T)[None])
        w = weight[:length]
        lo, hi = offset - base, offset + length - base
        if total.shape[0] < hi:
            total = np.concatenate([total, np.zeros(hi - total.shape[0], np.float32)])
        total[lo:hi] += w
        for t, v in y.items():
            buf = acc.get(t, np.zeros((0, nb_channels), np.float32))
            if buf.shape[0] < hi:
                buf = np.concatenate([buf, np.zeros((hi - buf.shape[0], nb_channels), np.float32)])
            buf[lo:hi] += np.asarray(v)[0].T[trim : trim + length] * w[:, None]
            acc[t] = buf
        del y
        final = offsets[k + 1] if k + 1 < len(offsets) else n  # no later segment reaches before it
        yield base, {t: buf[: final - base] / total[: final - base, None] for t, buf in acc.items()}
        if bar is not None:
            bar.update((final - base) / rate)
        acc = {t: buf[final - base :] for t, buf in acc.items()}
        total = total[final - base :]
        base = final
