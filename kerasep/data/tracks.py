"""Track lists: what every kerasep data source produces, and the decoded-audio cache.

A :class:`Track` names a piece of music and knows how to decode its isolated sources. Sources
(:mod:`kerasep.data.musdb`, :mod:`kerasep.data.folders`) only list and validate tracks; the
pipeline (:mod:`kerasep.data.dataset`) decodes each track once (in parallel) into a
:class:`TrackCache` and then cuts chunks from the cached arrays.

Decoded arrays are ``float32`` of shape ``(nb_sources, nb_timesteps, nb_channels)``.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np


class DatasetError(ValueError):
    """A dataset cannot be used as asked: missing or empty folder, missing stem file, stems with
    different sample rates, channel counts or lengths, tracks shorter than a chunk. The message
    names the track/file, what was expected and what was found."""


class Track:
    """One piece of music with isolated sources.

    Args:
        name: track name (unique within a dataset).
        sources: source names, e.g. ``["drums", "bass", "other", "vocals"]``.
        loader: ``loader() -> (array, rate)`` with ``array`` float32
            ``(nb_sources, nb_timesteps, nb_channels)`` in the order of ``sources``.
        rate: sample rate in Hz (known before decoding).
        key: a string identifying the decoded content (paths, sizes, mtimes) for the cache.
        nb_timesteps: decoded length when known before decoding (None otherwise).
    """

    def __init__(self, name, sources, loader, rate, key, nb_timesteps=None):
        self.name = str(name)
        self.sources = list(sources)
        self._loader = loader
        self.rate = int(rate)
        self.key = str(key)
        self.nb_timesteps = nb_timesteps

    def load(self):
        array, rate = self._loader()
        if int(rate) != self.rate:
            raise DatasetError(f"track {self.name!r}: decoded at {rate} Hz, expected {self.rate} Hz")
        return array, rate

    def __repr__(self):
        return f"Track({self.name!r}, sources={self.sources}, rate={self.rate})"


def file_key(path) -> str:
    st = os.stat(path)
    return f"{os.path.abspath(path)}:{st.st_size}:{int(st.st_mtime)}"


def check_stems(track_name: str, arrays: Sequence[np.ndarray], names: Sequence[str], length_mismatch: str):
    """Stack per-source ``(nb_timesteps, nb_channels)`` arrays, enforcing equal shapes.

    ``length_mismatch``: ``"error"`` (default) raises naming each stem's length; ``"crop"`` cuts
    every stem to the shortest one.
    """
    channels = {n: a.shape[1] for n, a in zip(names, arrays)}
    if len(set(channels.values())) > 1:
        raise DatasetError(f"track {track_name!r}: stems have different channel counts {channels}")
    lengths = {n: a.shape[0] for n, a in zip(names, arrays)}
    if len(set(lengths.values())) > 1:
        if length_mismatch == "crop":
            n = min(lengths.values())
            arrays = [a[:n] for a in arrays]
        else:
            raise DatasetError(
                f"track {track_name!r}: stems have different lengths (samples) {lengths}; "
                "expected equal lengths (pass length_mismatch='crop' to cut them to the shortest)"
            )
    return np.stack(arrays).astype(np.float32, copy=False)


class TrackCache:
    """Decoded tracks, in memory or as ``.npy`` files under ``cache_dir`` (memory-mapped).

    The on-disk cache is keyed by the track's :attr:`Track.key` (paths, sizes, mtimes, sources,
    rate), so editing a file invalidates its entry. Files are written atomically.
    """

    def __init__(self, cache_dir: Optional[os.PathLike] = None):
        self.cache_dir = Path(cache_dir) if cache_dir else None
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._arrays = {}
        self._lock = threading.Lock()

    def _path(self, track: Track) -> Path:
        digest = hashlib.sha1(
            json.dumps([track.key, track.sources, track.rate]).encode()
        ).hexdigest()[:16]
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in track.name)[:60]
        return self.cache_dir / f"{safe}-{digest}.npy"

    def get(self, track: Track) -> np.ndarray:
        """The decoded ``(nb_sources, nb_timesteps, nb_channels)`` array (decoding on first use)."""
        with self._lock:
            if track.key in self._arrays:
                return self._arrays[track.key]
        array = None
        path = self._path(track) if self.cache_dir is not None else None
        if path is not None and path.is_file():
            try:
                array = np.load(path, mmap_mode="r")
            except (ValueError, OSError):
                array = None  # corrupt/truncated cache entry: decode again
        if array is None:
            array, _ = track.load()
            if path is not None:
                fd, tmp = tempfile.mkstemp(dir=self.cache_dir, suffix=".tmp.npy")
                with os.fdopen(fd, "wb") as f:
                    np.save(f, array)
                os.replace(tmp, path)
                array = np.load(path, mmap_mode="r")
        with self._lock:
            self._arrays[track.key] = array
        return array


def decode_all(tracks: List[Track], cache: TrackCache) -> List[np.ndarray]:
    """Decode every track into ``cache`` with a ``tf.data`` map (``AUTOTUNE`` parallel calls;
    ffmpeg/soundfile release the GIL), returning arrays in track order."""
    from kerasep.backend import tf

    if len(tracks) > 1:

        def _decode(i):
            cache.get(tracks[int(i)])
            return np.int64(i)

        ds = tf.data.Dataset.range(len(tracks)).map(
            lambda i: tf.numpy_function(_decode, [i], tf.int64),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        try:
            for _ in ds:
                pass
        except tf.errors.InvalidArgumentError as e:  # re-raise the Python error from the worker
            _raise_inner(e, tracks, cache)
    return [cache.get(t) for t in tracks]


def _raise_inner(error, tracks, cache):
    # tf.numpy_function wraps exceptions; decode serially to surface the original error.
    for t in tracks:
        cache.get(t)
    raise error
