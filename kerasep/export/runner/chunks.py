"""Chunked separation, the plan :mod:`kerasep.inference` shares: :func:`plan_chunks`,
:func:`crossfade_weights`, the faded segments of MSST's ``demix`` (:func:`faded_plan`,
:func:`iter_faded`), :func:`iter_separate`, :func:`separate_array`."""
import numpy as np

from . import segments
from .common import DEFAULT_CHUNK_SECONDS, DEFAULT_CONTEXT_SECONDS, DEFAULT_CROSSFADE_CHUNK_SECONDS, RunnerError, positive_seconds_option


# --------------------------------------------------------------------------------------------
# Chunked separation (same plan as kerasep.inference)
# --------------------------------------------------------------------------------------------


def plan_chunks(nb_timesteps, chunk, context, alignment=1):
    """``[(keep_start, keep_end, in_start, in_end)]``: the model sees ``[in_start, in_end)`` and
    ``[keep_start, keep_end)`` of its output is kept. ``chunk`` and ``context`` are rounded up to
    multiples of ``alignment``.

    No model input is longer than ``chunk + 2 * context`` (a middle chunk with its context on both
    sides), which bounds memory. The first and the last chunk have context on one side only, so
    they keep ``chunk + context`` samples instead of ``chunk`` (an input of up to ``chunk + 2 *
    context`` samples is one chunk): fewer chunk borders, whose context is computed twice."""
    alignment = max(1, int(alignment))
    chunk = max(alignment, -(-int(chunk) // alignment) * alignment)
    context = -(-int(context) // alignment) * alignment
    plan = []
    start = 0
    while start < nb_timesteps:
        last = nb_timesteps - start <= chunk + context + (context if start == 0 else 0)
        end = nb_timesteps if last else start + chunk + (context if start == 0 else 0)
        plan.append((start, end, max(0, start - context), min(nb_timesteps, end + context)))
        start = end
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


# --------------------------------------------------------------------------------------------
# Faded segments (Music-Source-Separation-Training's demix, the band-split RoFormers)
# --------------------------------------------------------------------------------------------


def faded_window(segment, fade_in=True, fade_out=True):
    """The ``(segment,)`` float32 weights of one MSST segment: ones, rising linearly from 0 to 1
    over the first ``fade = segment // 10`` samples (``fade_in``) and falling from 1 to 0 over
    the last ``fade`` (``fade_out``), both ends included (``linspace(0, 1, fade)``)."""
    w = np.ones(segment, np.float32)
    fade = segment // 10
    if fade > 0:
        if fade_out:
            w[-fade:] = np.linspace(1, 0, fade, dtype=np.float32)
        if fade_in:
            w[:fade] = np.linspace(0, 1, fade, dtype=np.float32)
    return w


def faded_plan(nb_timesteps, segment, num_overlap):
    """MSST's ``demix`` plan for an input of ``nb_timesteps`` samples: ``(pad, chunks)``.

    ``step = segment // num_overlap``, ``border = segment - step``; the input is reflect-padded
    by ``pad = border`` samples at both ends when it is longer than ``2 * border`` (else
    ``pad = 0``), giving ``N = nb_timesteps + 2 * pad`` samples. Segments start at ``0, step,
    2 * step, ... < N``; ``chunks`` lists ``(start, length, fade_in, fade_out)`` in padded
    coordinates (``length = min(segment, N - start)`` samples of real or reflected audio; the
    first segment is not faded in, the one with ``start + step >= N`` not faded out unless it is
    also the first, as in MSST) for the
    segments that reach the unpadded input ``[pad, pad + nb_timesteps)`` (the others only touch
    the padding that is cut away)."""
    segment, num_overlap = int(segment), int(num_overlap)
    step = segment // num_overlap
    if segment < 1 or step < 1:
        raise ValueError(f"a faded segment plan needs segment >= 1 and segment // num_overlap >= 1 samples. "
                         f"Received: segment={segment}, num_overlap={num_overlap}")
    border = segment - step
    pad = border if nb_timesteps > 2 * border and border > 0 else 0
    total = nb_timesteps + 2 * pad
    chunks = []
    for start in range(0, total, step):
        length = min(segment, total - start)
        if start < pad + nb_timesteps and start + length > pad:
            # MSST un-fades the first segment's start, else (elif) the last one's end
            chunks.append((start, length, start != 0, start == 0 or start + step < total))
    return pad, chunks


def _reflect(index, n):
    """Indices into ``[0, n)`` of positions ``index`` reflected at both ends (``numpy.pad`` /
    ``torch`` ``"reflect"``, no edge repeat; one reflection, as at most ``n - 1`` is padded)."""
    index = np.abs(index)
    return np.where(index > n - 1, 2 * (n - 1) - index, index)


def faded_input(mix, pad, start, length, segment):
    """The ``(segment, nb_channels)`` float32 model input of the MSST segment at padded position
    ``start``: ``length`` samples of the input reflect-padded by ``pad`` at both ends, then (a
    segment cut by the end) extended to ``segment`` samples by reflecting it when ``length >
    segment // 2``, else by zeros. Reads only the samples it needs from ``mix`` (a sliceable
    ``(nb_timesteps, nb_channels)`` array, e.g. a :class:`kerasep.diskaudio.DiskArray`)."""
    n, total = mix.shape[0], mix.shape[0] + 2 * pad
    reflect = length < segment and length > segment // 2
    positions = np.arange(start, start + (segment if reflect else length))
    if reflect:  # torch.nn.functional.pad(part, (0, segment - length), "reflect") at the end
        positions = np.where(positions > total - 1, 2 * (total - 1) - positions, positions)
    source = positions - pad
    if pad:
        source = _reflect(source, n)
    lo, hi = int(source.min()), int(source.max()) + 1
    block = np.asarray(mix[lo:hi], np.float32)
    out = np.zeros((segment, mix.shape[1]), np.float32)
    out[: len(source)] = block[source - lo]
    return out


def iter_faded(call, mix, segment, num_overlap, progress=None):
    """Separate ``mix`` ``(nb_timesteps, nb_channels)`` as MSST's ``demix`` does (one segment
    per model call; :func:`faded_plan`, :func:`faded_window`): each segment's outputs weighted by
    its window, summed, divided by the sum of the windows (0 where that is 0) and cut to the
    input. ``call(x)`` maps a ``(1, nb_channels, segment)`` float32 array to ``{target: (1,
    nb_channels, segment)}`` arrays. An input of at most ``segment // num_overlap`` samples (one
    segment in MSST's plan, which would zero- or reflect-pad it to ``segment``) is one call on the
    input as it is, so that it equals whole-file separation, as the other chunk policies do. Yields ``(start, {target: (m, nb_channels)})`` blocks in order
    that tile the input; memory is bounded by a few segments whatever the input's length.
    ``progress``: an optional tqdm-like bar updated in seconds at ``rate`` given as
    ``progress=(bar, rate)``."""
    n, nb_channels = mix.shape[0], mix.shape[1]
    if n <= int(segment) // int(num_overlap):  # one segment: the model on the input as it is
        y = call(np.ascontiguousarray(np.asarray(mix[0:n], np.float32).T)[None])
        if progress is not None:
            progress[0].update(n / progress[1])
        yield 0, {t: np.asarray(v)[0].T for t, v in y.items()}
        return
    pad, chunks = faded_plan(n, segment, num_overlap)
    base, acc, weight = 0, {}, np.zeros(0, np.float32)  # outputs from `base` (unpadded) on
    for k, (start, length, fade_in, fade_out) in enumerate(chunks):
        y = call(np.ascontiguousarray(faded_input(mix, pad, start, length, segment).T)[None])
        w = faded_window(segment, fade_in, fade_out)
        a, b = max(start, pad), min(start + length, pad + n)  # the kept part, padded coordinates
        end = b - pad - base
        if weight.shape[0] < end:
            weight = np.concatenate([weight, np.zeros(end - weight.shape[0], np.float32)])
        weight[a - pad - base : end] += w[a - start : b - start]
        for t, v in y.items():
            buf = acc.get(t, np.zeros((0, nb_channels), np.float32))
            if buf.shape[0] < end:
                buf = np.concatenate([buf, np.zeros((end - buf.shape[0], nb_channels), np.float32)])
            buf[a - pad - base : end] += np.asarray(v)[0, :, a - start : b - start].T * w[a - start : b - start, None]
            acc[t] = buf
        final = min(n, max(base, chunks[k + 1][0] - pad)) if k + 1 < len(chunks) else n
        if final > base:
            total = weight[: final - base, None]
            safe = np.where(total > 0, total, 1)
            yield base, {t: np.where(total > 0, buf[: final - base] / safe, 0).astype(np.float32)
                         for t, buf in acc.items()}
            acc = {t: buf[final - base :] for t, buf in acc.items()}
            weight = weight[final - base :]
            if progress is not None:
                progress[0].update((final - base) / progress[1])
            base = final


def _faded_params(model, chunk_seconds=None):
    """``(segment, num_overlap)`` of a model declaring ``chunk_weighting`` ``"faded"``: its
    ``chunk_segment`` (or ``chunk_seconds``) and ``num_overlap = round(1 / (1 - chunk_overlap))``
    (the export writes ``chunk_overlap = 1 - 1 / num_overlap``)."""
    segment = segments.segment_length(model, chunk_seconds)
    overlap = float(model.chunk_overlap)
    if not 0 <= overlap < 1:
        raise RunnerError(f"{model.path}: kerasep.chunk_overlap must be in [0, 1) for faded segments. "
                          f"Received: {overlap}")
    return segment, max(1, int(round(1.0 / (1.0 - overlap))))


def _plan(model, n, chunk_seconds=None):
    """``(exact, context, plan)`` of :func:`iter_separate` for ``n`` timesteps."""
    exact = model.chunk_context is not None
    if chunk_seconds is None:
        chunk_seconds = DEFAULT_CHUNK_SECONDS if exact else DEFAULT_CROSSFADE_CHUNK_SECONDS
    chunk_seconds = positive_seconds_option(chunk_seconds)
    rate = model.sample_rate
    context = model.chunk_context if exact else int(round(DEFAULT_CONTEXT_SECONDS * rate))
    return exact, context, plan_chunks(n, max(1, int(chunk_seconds * rate)), context, model.chunk_alignment)


def feed_shapes(model, n, chunk_seconds=None):
    """The distinct ``(1, nb_channels, m)`` arrays :func:`iter_separate` feeds ``model`` for an
    input of ``n`` timesteps."""
    if getattr(model, "chunk_weighting", None) == "triangular":
        return segments.segment_feed_shapes(model, n, chunk_seconds)
    if getattr(model, "chunk_weighting", None) == "faded":
        segment, num_overlap = _faded_params(model, chunk_seconds)
        return [(1, model.nb_channels, n if n <= segment // num_overlap else segment)]
    return sorted({(1, model.nb_channels, e - s) for _, _, s, e in _plan(model, n, chunk_seconds)[2]})


def iter_separate(model, mix, chunk_seconds=None, progress=False):
    """Separate ``mix`` ``(nb_timesteps, nb_channels)`` float32 at the model's rate chunk by
    chunk. Yields ``(start, {target: (n, nb_channels)})`` blocks in order that tile the input
    exactly (constant memory in the input length). A model declaring demucs' triangular segments
    (``chunk_weighting``) is cut as :func:`.segments.iter_triangular` says, one declaring MSST's
    faded segments (``"faded"``: the band-split RoFormers) as :func:`iter_faded` does."""
    n = mix.shape[0]
    rate = model.sample_rate
    if getattr(model, "chunk_weighting", None) == "faded":
        segment, num_overlap = _faded_params(model, chunk_seconds)
        bar = _progress(n / rate) if progress else None
        try:
            yield from iter_faded(model, mix, segment, num_overlap, None if bar is None else (bar, rate))
        finally:
            if bar is not None:
                bar.close()
        return
    if getattr(model, "chunk_weighting", None) == "triangular":
        bar = _progress(n / rate) if progress else None
        try:
            yield from segments.iter_triangular(model, mix, chunk_seconds, bar)
        finally:
            if bar is not None:
                bar.close()
        return
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
