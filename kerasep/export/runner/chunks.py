"""Chunked separation, the plan :mod:`kerasep.inference` shares: :func:`plan_chunks`,
:func:`crossfade_weights`, :func:`iter_separate`, :func:`separate_array`."""
import numpy as np

from .common import DEFAULT_CHUNK_SECONDS, DEFAULT_CONTEXT_SECONDS, DEFAULT_CROSSFADE_CHUNK_SECONDS, RunnerError, option_name


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
