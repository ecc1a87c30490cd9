"""``tf.data`` pipelines of (mixture, {target: source}) waveform chunks.

Elements are ``(mix, {target: y})`` with ``mix`` and each ``y`` float32 of shape
``(nb_channels, nb_timesteps)`` (batched: ``(batch, nb_channels, nb_timesteps)``), the layout
kerasep models take. The mixture is the sum of the (augmented) sources; a target is the sum of
the sources it groups (``{"accompaniment": ["drums", "bass", "other"]}``).

Training (:func:`training_dataset`) is an endless, deterministic stream: an epoch is
``steps_per_epoch(...)`` batches, sample ``i`` is example ``i % batch_size`` of batch
``i // batch_size``, and every random choice for it (which track, where, gains...) comes from
stateless RNGs seeded with ``(seed, i)``. Every block of ``nb_tracks`` consecutive samples is a
seeded permutation of the tracks, so each epoch has each track ``samples_per_track`` times
(when ``batch_size`` divides ``nb_tracks * samples_per_track``; within one otherwise). Because
nothing depends on the order in which ``tf.data`` threads run, parallel reading stays
reproducible, and a resumed run starts at ``start_epoch`` and sees exactly the samples an
uninterrupted run would have seen. Use it with
``model.fit(ds, steps_per_epoch=steps_per_epoch(...))``.

Validation (:func:`validation_dataset`) is finite and fixed: consecutive chunks of
``seq_duration`` seconds of every track, or whole tracks when ``seq_duration=None``.

Tracks are decoded once (``AUTOTUNE`` parallel map) into a :class:`~kerasep.data.tracks.TrackCache`
(in memory, or ``.npy`` files under ``cache_dir`` read through memory maps). The training stream
then does little per batch: a per-sample map draws the random choices (a few scalar ops), and
one call per batch copies every chunk out of the decoded tracks with its augmentations applied
during the copy (gain × sign factor, channel order; see :func:`kerasep.data.augment.draw`) and
sums the mixture and the targets. Both maps are ``AUTOTUNE`` parallel with deterministic order,
and batches are prefetched. Features (STFT magnitudes) are best computed in the train step, on
the accelerator (what :mod:`kerasep.train` does); ``featurize`` computes them in ``tf.data``
instead.

Short tracks (fewer samples than a chunk) follow ``short_tracks``: ``"error"`` (default, the
error lists them), ``"skip"`` (dropped with a warning) or ``"pad"`` (zero-padded at the end).
"""
from __future__ import annotations

import math
import warnings
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from kerasep.backend import tf
from kerasep.data import augment as _augment
from kerasep.data.tracks import DatasetError, Track, TrackCache, decode_all

TargetsArg = Union[Sequence[str], Dict[str, Sequence[str]]]


def normalize_targets(targets: TargetsArg, available: Sequence[str]) -> Dict[str, List[str]]:
    """``["vocals"]`` or ``{"accompaniment": ["drums", "bass", "other"]}`` → ``{target: [sources]}``."""
    if isinstance(targets, dict):
        groups = {str(t): list(s) if not isinstance(s, str) else [s] for t, s in targets.items()}
    else:
        groups = {str(t): [str(t)] for t in targets}
    if not groups:
        raise DatasetError("`targets` is empty; name at least one target")
    for t, srcs in groups.items():
        bad = [s for s in srcs if s not in available]
        if bad or not srcs:
            raise DatasetError(f"target {t!r} uses source(s) {bad or srcs} not in the dataset's sources {list(available)}")
    return groups


def _options():
    opts = tf.data.Options()
    opts.deterministic = True
    opts.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return opts


class _Reader:
    """Cuts chunks from decoded tracks (numpy side of the pipeline)."""

    def __init__(self, arrays, pad):
        self.arrays = arrays
        self.pad = pad

    def read(self, track_ids, starts, length):
        length = int(length)
        nb_sources = len(track_ids)
        nb_channels = self.arrays[0].shape[2]
        out = np.zeros((nb_sources, length, nb_channels), np.float32)
        for s, (t, start) in enumerate(zip(track_ids, starts)):
            a = self.arrays[int(t)]
            piece = a[s, int(start) : int(start) + length]
            out[s, : piece.shape[0]] = piece
        return out

    def read_batch(self, track_ids, starts, scales, swaps, length):
        """A batch of augmented chunks, channels first: ``(batch, nb_sources, nb_channels, length)``.

        Source ``s`` of example ``b`` is ``length`` samples of track ``track_ids[b, s]`` from
        ``starts[b, s]`` (zeros past the end), channel-reversed where ``swaps[b, s]``, times
        ``scales[b, s]``: cutting, the transposition to the models' layout and the
        augmentations are one copy of the samples."""
        length = int(length)
        batch, nb_sources = track_ids.shape
        nb_channels = self.arrays[0].shape[2]
        out = np.empty((batch, nb_sources, nb_channels, length), np.float32)
        for b in range(batch):
            for s in range(nb_sources):
                a = self.arrays[int(track_ids[b, s])]
                start = int(starts[b, s])
                piece = a[s, start : start + length].T  # (nb_channels, <= length), a view
                if swaps[b, s]:
                    piece = piece[::-1]
                n = piece.shape[1]
                np.multiply(piece, scales[b, s], out=out[b, s, :, :n])
                if n < length:
                    out[b, s, :, n:] = 0.0
        return out


def _prepare(tracks, cache_dir, length, short_tracks, what):
    if not tracks:
        raise DatasetError(f"{what}: no tracks")
    if short_tracks not in ("error", "skip", "pad"):
        raise DatasetError(f"short_tracks must be 'error', 'skip' or 'pad'. Received: {short_tracks!r}")
    rates = {t.rate for t in tracks}
    if len(rates) > 1:
        raise DatasetError(f"{what}: tracks have different sample rates {sorted(rates)}; resample them to one rate")
    names = tracks[0].sources
    for t in tracks:
        if t.sources != names:
            raise DatasetError(f"{what}: track {t.name!r} has sources {t.sources}, expected {names}")
    arrays = decode_all(tracks, TrackCache(cache_dir))
    channels = {t.name: a.shape[2] for t, a in zip(tracks, arrays)}
    if len(set(channels.values())) > 1:
        raise DatasetError(f"{what}: tracks have different channel counts {channels}")
    if length is not None:
        short = {t.name: a.shape[1] for t, a in zip(tracks, arrays) if a.shape[1] < length}
        if short and short_tracks == "error":
            raise DatasetError(
                f"{what}: {len(short)} track(s) shorter than a chunk of {length} samples "
                f"({length / tracks[0].rate:.3f} s): { {k: v for k, v in list(short.items())[:5]} } samples; "
                "use a shorter seq_duration, or short_tracks='skip' or 'pad'"
            )
        if short and short_tracks == "skip":
            warnings.warn(f"{what}: skipping {len(short)} track(s) shorter than {length} samples: {list(short)}")
            keep = [i for i, t in enumerate(tracks) if t.name not in short]
            if not keep:
                raise DatasetError(f"{what}: every track is shorter than {length} samples")
            tracks = [tracks[i] for i in keep]
            arrays = [arrays[i] for i in keep]
    return tracks, arrays


def _to_example(groups, source_names):
    index = {s: i for i, s in enumerate(source_names)}

    def fn(sources):  # (nb_sources, nb_timesteps, nb_channels)
        sources = tf.ensure_shape(sources, [len(source_names), None, None])
        mix = tf.transpose(tf.reduce_sum(sources, axis=0))
        ys = {
            t: tf.transpose(tf.add_n([sources[index[s]] for s in srcs]))
            for t, srcs in groups.items()
        }
        return mix, ys

    return fn


def steps_per_epoch(nb_tracks: int, samples_per_track: int, batch_size: int) -> int:
    """Batches per training epoch: ``nb_tracks * samples_per_track // batch_size`` (at least 1)."""
    return max(1, (nb_tracks * samples_per_track) // batch_size)


def training_dataset(
    tracks: List[Track],
    targets: TargetsArg,
    seq_duration: float = 6.0,
    samples_per_track: int = 64,
    batch_size: int = 16,
    augmentations: Sequence[str] = ("gain", "channelswap"),
    max_shift: float = 0.0,
    random_track_mix: bool = False,
    seed: int = 42,
    start_epoch: int = 0,
    cache_dir=None,
    short_tracks: str = "error",
    featurize=None,
    gain_range: Sequence[float] = (0.25, 1.25),
    remix_group_size: Optional[int] = None,
):
    """The endless training stream (see the module docstring).

    Args:
        tracks: from :func:`~kerasep.data.musdb.musdb_tracks` or
            :func:`~kerasep.data.folders.folder_tracks`.
        targets: target names (sources of the dataset) or ``{target: [sources]}``.
        seq_duration: chunk length in seconds.
        samples_per_track: chunks per track and epoch.
        batch_size: chunks per batch.
        augmentations: among ``"gain"`` (uniform in ``gain_range``), ``"channelswap"``, ``"signflip"``.
        max_shift: random time shift in seconds: each source is cut at its own offset in
            ``[0, max_shift]`` (0 disables).
        random_track_mix: each source comes from an independently drawn track (and position).
        seed: seeds every random choice.
        start_epoch: first epoch of the stream (resuming a run).
        cache_dir: on-disk cache of decoded tracks (default: in memory).
        short_tracks: ``"error"``, ``"skip"`` or ``"pad"``.
        featurize: optional function applied to each batch ``(mix, ys) -> (x, y)`` in
            ``tf.data`` (e.g. ``kerasep.train.Adapter(...).featurize``). ``kerasep.train``
            computes features in the train step instead, which keeps this pipeline light.
        gain_range: ``(low, high)``, ``0 <= low < high``: the ``"gain"`` factors (Open-Unmix and
            demucs 0.25–1.25, MSST's loudness 0.5–1.5).
        remix_group_size: demucs' ``Remix``: each batch is cut into groups of this many
            consecutive chunks and every source is permuted at random among the chunks of its
            group (new mixtures of the group's sources; :func:`~kerasep.data.augment.remix_indices`).
            Must divide ``batch_size``; None (default) or 1: off.

    Returns:
        ``tf.data.Dataset`` of batches ``(mix (batch, nb_channels, nb_timesteps), {target: ...})``.
    """
    augmentations = _augment.check(augmentations)
    gain_range = tuple(float(g) for g in gain_range)
    if len(gain_range) != 2 or not 0 <= gain_range[0] < gain_range[1]:
        raise DatasetError(f"gain_range must be (low, high) with 0 <= low < high. Received: {gain_range}")
    if remix_group_size is not None and (int(remix_group_size) < 1 or batch_size % int(remix_group_size)):
        raise DatasetError(f"remix_group_size must divide batch_size. Received: remix_group_size={remix_group_size}, "
                           f"batch_size={batch_size}")
    if seq_duration is None or seq_duration <= 0:
        raise DatasetError(f"seq_duration must be > 0 seconds for training. Received: {seq_duration}")
    if samples_per_track < 1 or batch_size < 1:
        raise DatasetError(f"samples_per_track and batch_size must be >= 1. Received: {samples_per_track}, {batch_size}")
    rate = tracks[0].rate if tracks else 0
    seq_len = int(round(seq_duration * rate))
    shift = int(round(max_shift * rate))
    chunk = seq_len + shift
    tracks, arrays = _prepare(tracks, cache_dir, chunk, short_tracks, "training data")
    source_names = tracks[0].sources
    groups = normalize_targets(targets, source_names)
    nb_tracks, nb_sources, nb_channels = len(tracks), len(source_names), int(arrays[0].shape[2])
    lengths = tf.constant([a.shape[1] for a in arrays], tf.int64)
    reader = _Reader(arrays, short_tracks == "pad")
    seed = int(seed)
    index = {name: i for i, name in enumerate(source_names)}
    members = [[index[name] for name in srcs] for srcs in groups.values()]

    def draw(i):
        """Every random choice for sample ``i`` (no audio): tracks, starts, gains, flips."""
        # each block of nb_tracks consecutive samples is a seeded permutation of the tracks, so
        # an epoch visits every track exactly samples_per_track times (O(nb_tracks) per sample)
        block, j = i // nb_tracks, i % nb_tracks
        perm = tf.argsort(tf.random.stateless_uniform([nb_tracks], seed=tf.stack([tf.constant(seed, tf.int64), block])))
        track = tf.cast(tf.gather(perm, j), tf.int64)
        s = tf.stack([tf.constant(seed, tf.int64), i])
        if random_track_mix:
            others = tf.random.stateless_uniform([nb_sources - 1], seed=_augment._fold(s, 1), maxval=nb_tracks, dtype=tf.int64)
            ids = tf.concat([[track], others], axis=0)
        else:
            ids = tf.fill([nb_sources], track)
        room = tf.maximum(tf.gather(lengths, ids) - chunk, 0) + 1
        u = tf.random.stateless_uniform([nb_sources if random_track_mix else 1], seed=_augment._fold(s, 2), dtype=tf.float64)
        starts = tf.cast(tf.floor(u * tf.cast(room, tf.float64)), tf.int64)
        starts = tf.minimum(tf.broadcast_to(starts, [nb_sources]), room - 1)
        if shift:  # each source cut at its own offset in [0, shift] within the chunk
            starts += tf.cast(_augment.shift_offsets(_augment._fold(s, 3), nb_sources, shift), tf.int64)
        scale, swap = _augment.draw(_augment._fold(s, 4), nb_sources, augmentations, gain_range)
        return ids, starts, scale, swap

    def read(ids, starts, scales, swaps):
        src = reader.read_batch(ids, starts, scales, swaps, seq_len)  # (batch, sources, channels, time)
        mix = src.sum(axis=1)
        ys = [src[:, m[0]].copy() if len(m) == 1 else src[:, m].sum(axis=1) for m in members]
        return [mix] + ys

    def example(ids, starts, scales, swaps):
        outs = tf.numpy_function(read, [ids, starts, scales, swaps], [tf.float32] * (1 + len(groups)), stateful=False)
        outs = [tf.ensure_shape(o, [batch_size, nb_channels, seq_len]) for o in outs]
        return outs[0], dict(zip(groups, outs[1:]))

    first = int(start_epoch) * steps_per_epoch(nb_tracks, samples_per_track, batch_size) * batch_size
    ds = tf.data.Dataset.counter(start=first, dtype=tf.int64)
    ds = ds.map(draw, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=True)
    if remix_group_size and int(remix_group_size) > 1:
        group = int(remix_group_size)

        def remix(b, ids, starts, scales, swaps):
            """Source s of item i taken from item idx[i, s] of its group (every draw of that source)."""
            idx = _augment.remix_indices(tf.stack([tf.constant(seed, tf.int64), -1 - b]), batch_size, nb_sources, group)
            take = lambda x: tf.transpose(tf.gather(tf.transpose(x), tf.transpose(idx), batch_dims=1))  # noqa: E731
            return take(ids), take(starts), take(scales), take(swaps)

        batches = tf.data.Dataset.counter(start=first // batch_size, dtype=tf.int64)
        ds = tf.data.Dataset.zip((batches, ds)).map(lambda b, d: remix(b, *d), num_parallel_calls=tf.data.AUTOTUNE,
                                                     deterministic=True)
    ds = ds.map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if featurize is not None:
        ds = ds.map(featurize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(_options())


def validation_dataset(
    tracks: List[Track],
    targets: TargetsArg,
    seq_duration: Optional[float] = None,
    batch_size: int = 1,
    cache_dir=None,
    short_tracks: str = "pad",
    featurize=None,
    cache_features: bool = True,
):
    """Fixed validation data: consecutive ``seq_duration`` chunks of every track (the last
    partial chunk is dropped unless a track is shorter than one chunk, which ``short_tracks``
    handles: ``"pad"`` by default), or whole tracks (``seq_duration=None``, then
    ``batch_size`` must be 1 unless all tracks have one length).

    With ``featurize``, features are computed once and cached (in memory, or in a ``tf.data``
    cache file under ``cache_dir``)."""
    rate = tracks[0].rate if tracks else 0
    seq_len = None if seq_duration is None else int(round(seq_duration * rate))
    tracks, arrays = _prepare(tracks, cache_dir, seq_len, short_tracks, "validation data")
    groups = normalize_targets(targets, tracks[0].sources)
    nb_sources = len(tracks[0].sources)
    items = []
    for t, a in enumerate(arrays):
        if seq_len is None:
            items.append((t, 0, a.shape[1]))
        else:
            k = max(1, a.shape[1] // seq_len)
            items.extend((t, c * seq_len, seq_len) for c in range(k))
    reader = _Reader(arrays, True)
    table = np.array(items, np.int64)

    def read(row):
        ids = tf.fill([nb_sources], row[0])
        starts = tf.fill([nb_sources], row[1])
        x = tf.numpy_function(reader.read, [ids, starts, row[2]], tf.float32, stateful=False)
        return tf.ensure_shape(x, [nb_sources, seq_len, None])

    ds = tf.data.Dataset.from_tensor_slices(table)
    ds = ds.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.map(_to_example(groups, tracks[0].sources), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size)
    if featurize is not None:
        ds = ds.map(featurize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if cache_features:
            path = ""
            if cache_dir is not None:
                import hashlib
                import os

                key = hashlib.sha1(repr((items, [t.key for t in tracks], seq_len, batch_size, sorted(groups.items()))).encode()).hexdigest()[:12]
                os.makedirs(cache_dir, exist_ok=True)
                path = os.path.join(str(cache_dir), f"valid-features-{key}")
            ds = ds.cache(path)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(_options())
