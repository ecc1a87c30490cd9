"""Evaluation on MUSDB18 with museval (BSSEval v4, as in SiSEC 2018) and the MDX global SDR.

``kerasep evaluate MODEL --musdb PATH --subset test`` runs :func:`evaluate`:

- every track's mixture is separated (:func:`kerasep.inference.separate_array`), and the
  estimates are scored with ``museval.eval_mus_track`` (framewise SDR/SIR/ISR/SAR on 1 s
  windows; vocals/drums/bass/other as one 4-source problem and vocals/accompaniment as a second
  one, museval's own rule). A model with the single target ``vocals`` is evaluated with
  ``accompaniment = mixture − vocals`` (the complement), as Spleeter's 2-stems evaluation does.
- ``<output>/<subset>/<track>.json``: museval's per-track JSON (written atomically);
- ``<output>/summary.json`` and the printed table: median over frames, then median over tracks,
  per target and metric (museval's ``EvalStore.agg_frames_tracks_scores``);
- ``<output>/mdx_sdr.json``: the MDX challenge's global SDR per track and target,
  ``10 log10(Σ s² / Σ (s − ŝ)²)`` over the whole track, and its mean over tracks;
- ``<output>/sdr_per_track.png``: median SDR per track and target (needs matplotlib, installed
  with the ``musdb`` extra; skipped with a warning without it).
"""
from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np

MUSDB_TARGETS = ("vocals", "drums", "bass", "other", "accompaniment")
METRICS = ("SDR", "SIR", "ISR", "SAR")
#: The files :func:`evaluate` writes at the top of its output folder (and ``<subset>/*.json``).
RESULT_FILES = ("summary.json", "mdx_sdr.json", "sdr_per_track.png")


def existing_results(output_dir, subset="test"):
    """Earlier results in ``output_dir`` that :func:`evaluate` would replace: its
    :data:`RESULT_FILES` and per-track ``<subset>/*.json`` (sorted paths)."""
    out = Path(output_dir)
    found = [out / name for name in RESULT_FILES if (out / name).exists()]
    if (out / subset).is_dir():
        found += sorted((out / subset).glob("*.json"))
    return found


def results_name(model):
    """The default results folder name for ``model`` (``evaluation/<name>``): the run folder's
    name for ``runs/NAME/model.keras`` (what ``kerasep train`` writes), else the file's stem for
    a ``.keras``/``.th`` path, else the zoo name."""
    path = Path(str(model))
    if path.suffix in (".keras", ".th"):
        if path.name == "model.keras" and path.absolute().parent.name:
            return path.absolute().parent.name
        return path.stem
    return str(model)


def _file_mode():
    from kerasep.export.runner import current_umask

    return 0o666 & ~current_umask()


def _atomic_write(path, text):
    """``text`` to ``path`` through a temporary file renamed into place, with the mode a plain
    ``open`` gives (``0o666 & ~umask``, not mkstemp's 0600)."""
    from kerasep.export.runner import owner_token, sweep_stale

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(path.parent)
    tmp = str(path.parent / f".{path.name}.{owner_token()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def global_sdr(reference, estimate, eps=1e-7):
    """MDX global SDR in dB of one source: ``10 log10((Σ s² + eps) / (Σ (s − ŝ)² + eps))`` over
    all samples and channels of arrays ``(nb_timesteps, nb_channels)``."""
    s = np.asarray(reference, np.float64)
    e = np.asarray(estimate, np.float64)
    if s.shape != e.shape:
        raise ValueError(f"global_sdr: the estimate's shape {e.shape} differs from the reference's {s.shape}")
    return float(10 * np.log10((np.sum(s * s) + eps) / (np.sum((s - e) ** 2) + eps)))


def complete_estimates(estimates, mixture):
    """museval needs two or more estimates: a lone ``vocals`` estimate gets its complement
    ``accompaniment = mixture − vocals``. Other keys pass through; non-MUSDB keys are dropped."""
    est = {k: np.asarray(v, np.float32) for k, v in estimates.items() if k in MUSDB_TARGETS}
    if set(est) == {"vocals"}:
        mixture = np.asarray(mixture, np.float32)
        vocals = check_estimate("vocals", est["vocals"], (None, mixture.shape[-1]))  # any length
        est["accompaniment"] = mixture[: len(vocals)] - vocals
    if len(est) < 2:
        raise ValueError(
            f"museval scores two or more MUSDB targets {list(MUSDB_TARGETS)}; the model gives {sorted(estimates)}"
        )
    return est


def check_estimate(name, estimate, reference_shape, rate=44100, pad=False, crop=False):
    """``estimate`` as a float32 ``(nb_timesteps, nb_channels)`` array matching the reference's
    ``reference_shape``, checked before any scoring: the rank, the channel count (a
    ``(nb_channels, nb_timesteps)`` array is named as such), then the length; a shorter estimate
    is zero-padded only with ``pad``, a longer one cropped only with ``crop`` (else ValueError
    giving both lengths)."""
    v = np.asarray(estimate)
    n, channels = reference_shape[0], int(reference_shape[1])  # n None: any length
    n = len(v) if n is None else int(n)
    want = f"({'nb_timesteps' if reference_shape[0] is None else n}, {channels})"
    if v.dtype.kind not in "fiu" or v.ndim != 2:
        raise ValueError(f"estimate {name!r}: expected a float array (nb_timesteps, {channels}), "
                         f"found dtype {v.dtype} and shape {v.shape}")
    if v.shape[1] != channels:
        transposed = v.shape[0] == channels
        raise ValueError(f"estimate {name!r}: expected shape (nb_timesteps, nb_channels) = {want}, "
                         f"found {v.shape}" + ("; it looks like (nb_channels, nb_timesteps): pass its transpose"
                                                if transposed else ""))
    v = v.astype(np.float32, copy=False)
    if len(v) < n:
        if not pad:
            raise ValueError(f"estimate {name!r}: {len(v)} timesteps ({len(v) / rate:.3f} s), the reference has {n} "
                             f"({n / rate:.3f} s): {n - len(v)} short; pass {_option('pad')} to zero-pad it")
        v = np.concatenate([v, np.zeros((n - len(v), channels), np.float32)])
    elif len(v) > n:
        if not crop:
            raise ValueError(f"estimate {name!r}: {len(v)} timesteps ({len(v) / rate:.3f} s), the reference has {n} "
                             f"({n / rate:.3f} s): {len(v) - n} too many; pass {_option('crop')} to crop it")
        v = v[:n]
    return v


def _option(keyword):
    from kerasep.export.runner import option

    return option(keyword)


def evaluate_track(track, estimates, win=1.0, hop=1.0, pad=False, crop=False):
    """museval's BSSEval v4 scores (a ``museval.TrackStore``) and the MDX SDRs
    ``{target: dB}`` of ``estimates`` ``{target: (nb_timesteps, nb_channels)}`` for a musdb
    track. Each estimate is checked against the track (:func:`check_estimate`): its shape, and its
    length, zero-padded only with ``pad`` and cropped only with ``crop``."""
    import museval

    shape = np.shape(track.audio)
    rate = int(getattr(track, "rate", 44100))
    fixed = {k: check_estimate(k, v, shape, rate, pad=pad, crop=crop) for k, v in estimates.items()}
    scores = museval.eval_mus_track(track, fixed, output_dir=None, win=win, hop=hop)
    mdx = {k: global_sdr(track.targets[k].audio, v) for k, v in fixed.items() if k in track.targets}
    return scores, mdx


def summary(stores):
    """``{target: {metric: median over tracks of the median over frames}}`` for museval
    TrackStores (museval's ``EvalStore``)."""
    import museval

    agg = museval.EvalStore(frames_agg="median", tracks_agg="median")
    for s in stores:
        agg.add_track(s)
    table = agg.agg_frames_tracks_scores()
    out = {}
    for (target, metric), value in table.items():
        out.setdefault(target, {})[metric] = None if value is None or math.isnan(value) else float(value)
    return out


def format_table(table):
    lines = [f"{'target':14s}" + "".join(f"{m:>9s}" for m in METRICS)]
    for target in sorted(table):
        row = table[target]
        cells = "".join(f"{row[m]:9.3f}" if row.get(m) is not None else f"{'nan':>9s}" for m in METRICS)
        lines.append(f"{target:14s}{cells}")
    return "\n".join(lines)


def per_track_median(store, metric="SDR"):
    df = store.df
    df = df[df["metric"] == metric]
    return {t: float(g["score"].median()) for t, g in df.groupby("target")}


def plot_per_track(per_track, path):
    """Grouped bar chart: median SDR per track and target. Returns the path, or None without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        warnings.warn("no PNG plot: matplotlib is not installed (pip install 'kerasep[musdb]')")
        return None
    names = list(per_track)
    targets = sorted({t for v in per_track.values() for t in v})
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(names) * len(targets) + 2), 4.5))
    width = 0.8 / max(1, len(targets))
    for i, t in enumerate(targets):
        vals = [per_track[n].get(t, np.nan) for n in names]
        ax.bar(np.arange(len(names)) + i * width, vals, width, label=t)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2)
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("SDR (dB, median over frames)")
    ax.set_title("BSSEval v4 SDR per track")
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    from kerasep.export.runner import owner_token

    tmp = path.with_name(f".{path.name}.{owner_token()}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.chmod(tmp, _file_mode())
    os.replace(tmp, path)
    return path


def evaluate(
    model,
    musdb_root,
    output_dir,
    subset="test",
    split=None,
    is_wav=False,
    tracks=None,
    chunk_seconds=None,
    plots=True,
    progress=False,
    log=print,
    overwrite=False,
):
    """Separate and score a MUSDB18 subset.

    Args:
        model: a zoo name, a ``.keras`` path or a model object.
        musdb_root: MUSDB18 folder (``is_wav=True`` for MUSDB18-HQ).
        output_dir: where the JSON files and the plot go.
        subset, split: musdb's subset and (train subset only) official split.
        tracks: optional list of track names to evaluate (default all).
        chunk_seconds: separation chunk length (bounded memory).
        overwrite: replace earlier results in ``output_dir``; without it they are refused
            (FileExistsError) before any separation.

    Returns:
        ``{"summary": {target: {metric: dB}}, "mdx": {...}, "tracks": [names]}``.
    """
    from kerasep import audio as _audio
    from kerasep.data.musdb import _db
    from kerasep.inference import as_separator, separate_array

    earlier = existing_results(output_dir, subset)
    if earlier and not overwrite:
        raise FileExistsError(f"{output_dir} holds earlier results ({', '.join(map(str, earlier[:3]))}"
                              f"{', ...' if len(earlier) > 3 else ''}); pass overwrite=True (--overwrite) to replace them")
    model = as_separator(model)
    db = _db(musdb_root, subset, split, is_wav)
    selected = [t for t in db.tracks if tracks is None or t.name in set(tracks)]
    if tracks is not None:
        missing = sorted(set(tracks) - {t.name for t in selected})
        if missing:
            raise ValueError(f"no such track(s) in {musdb_root}/{subset}: {missing}; found {[t.name for t in db.tracks]}")
    if not selected:
        raise ValueError(f"no MUSDB18 tracks in {Path(musdb_root) / subset}")
    out = Path(output_dir)
    stores, mdx, per_track = [], {}, {}
    for track in selected:
        mix = np.asarray(track.audio, np.float32)
        rate = int(track.rate)
        x = mix if rate == model.sample_rate else _audio.resample(mix, rate, model.sample_rate)
        est = separate_array(_audio.check_audio(x, track.name, nb_channels=model.nb_channels), model,
                             chunk_seconds=chunk_seconds, progress=progress)
        if rate != model.sample_rate:
            est = {k: _audio.resample(v, model.sample_rate, rate) for k, v in est.items()}
        est = complete_estimates(est, mix)
        # resampling back to the track's rate may round the length by a sample or two: only then
        resampled = rate != model.sample_rate
        store, sdrs = evaluate_track(track, est, pad=resampled, crop=resampled)
        _atomic_write(out / subset / f"{track.name}.json", store.json)
        stores.append(store)
        mdx[track.name] = sdrs
        per_track[track.name] = per_track_median(store)
        log(f"{track.name}: " + ", ".join(f"{t} SDR {v:.2f}" for t, v in sorted(per_track[track.name].items())))
    table = summary(stores)
    targets = sorted({t for v in mdx.values() for t in v})
    mdx_mean = {t: float(np.mean([v[t] for v in mdx.values() if t in v])) for t in targets}
    _atomic_write(out / "summary.json", json.dumps({"median_frames_median_tracks": table}, indent=2))
    _atomic_write(out / "mdx_sdr.json", json.dumps({"per_track": mdx, "mean": mdx_mean}, indent=2))
    if plots:
        plot_per_track(per_track, out / "sdr_per_track.png")
    log("BSSEval v4 (median over frames, median over tracks)")
    log(format_table(table))
    log("MDX global SDR (mean over tracks): " + ", ".join(f"{t} {v:.3f}" for t, v in mdx_mean.items()))
    return {"summary": table, "mdx": {"per_track": mdx, "mean": mdx_mean}, "tracks": [t.name for t in selected]}
