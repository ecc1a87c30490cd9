"""Waveforms on disk, for separating songs of any length in bounded memory.

A :class:`DiskArray` is a ``float32 (nb_timesteps, nb_channels)`` waveform kept in a raw file
and read or written by slices with plain file reads and writes (no memory map: only the slices
in use are in memory). ``kerasep separate`` decodes each input into one
(:func:`decode_to_disk`: blocks of the decoder, resampled block by block), separates it into
others (:func:`kerasep.inference.separate_array` with ``alloc=``) and writes the stems block by
block (:func:`kerasep.audio.save_blocks`), so its peak memory does not grow with the song.

This module must stay light: it never imports TensorFlow.
"""
import math
import os
import tempfile
from fractions import Fraction

import numpy as np

from kerasep import audio as _audio
from kerasep.audio.decode import check_path, decode_blocks
from kerasep.audio.validate import adapt_channels, check_finite, check_nb_channels, check_rate

__all__ = ["DiskArray", "decode_to_disk", "resample_to_disk"]


class DiskArray:
    """A ``float32 (nb_timesteps, nb_channels)`` waveform in a raw file.

    Supports ``len``, ``shape``, reading ``a[i:j]`` (a new array), writing ``a[i:j] = x``
    (broadcast to ``(j - i, nb_channels)``) and so ``a[i:j] += x``; only contiguous slices.
    The file is removed by :meth:`delete` (or with the temporary folder it lives in).
    """

    dtype = np.dtype(np.float32)
    ndim = 2

    def __init__(self, path, nb_channels, nb_timesteps=0):
        self.path = os.fspath(path)
        self.nb_channels = int(nb_channels)
        self._len = int(nb_timesteps)
        self._file = open(self.path, "r+b")

    @classmethod
    def zeros(cls, nb_timesteps, nb_channels, directory=None):
        """A new array of zeros in a temporary file in ``directory`` (sparse where the
        filesystem allows: untouched zeros cost no disk)."""
        fd, path = tempfile.mkstemp(suffix=".f32", prefix="kerasep-", dir=directory)
        try:
            os.ftruncate(fd, int(nb_timesteps) * int(nb_channels) * 4)
        finally:
            os.close(fd)
        return cls(path, nb_channels, nb_timesteps)

    @property
    def shape(self):
        return (self._len, self.nb_channels)

    def __len__(self):
        return self._len

    def _bounds(self, key):
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError(f"DiskArray supports contiguous slices a[i:j] only. Received: {key!r}")
        start, stop, _ = key.indices(self._len)
        return start, max(start, stop)

    def __getitem__(self, key):
        start, stop = self._bounds(key)
        self._file.seek(start * self.nb_channels * 4)
        data = np.fromfile(self._file, dtype="<f4", count=(stop - start) * self.nb_channels)
        return data.reshape(stop - start, self.nb_channels)

    def __setitem__(self, key, value):
        start, stop = self._bounds(key)
        value = np.broadcast_to(np.asarray(value, np.float32), (stop - start, self.nb_channels))
        self._file.seek(start * self.nb_channels * 4)
        self._file.write(np.ascontiguousarray(value, "<f4").tobytes())

    def append(self, block):
        """Write ``block (m, nb_channels)`` after the end."""
        self._len += len(block)
        self[self._len - len(block) : self._len] = block

    def blocks(self, size=_audio.BLOCK_TIMESTEPS):
        """Yield consecutive ``(<= size, nb_channels)`` arrays covering the whole array."""
        for start in range(0, self._len, size):
            yield self[start : start + size]

    def __array__(self, dtype=None, copy=None):
        data = self[:]
        return data if dtype is None else data.astype(dtype)

    def delete(self):
        """Close and remove the file."""
        self._file.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __repr__(self):
        return f"DiskArray({self.path!r}, shape={self.shape})"


def resample_to_disk(src, orig_sr, target_sr, directory=None, block=_audio.BLOCK_TIMESTEPS):
    """:func:`kerasep.audio.resample` of ``src`` (any array sliceable as ``src[i:j]``, e.g. a
    :class:`DiskArray`) into a new :class:`DiskArray`, one block at a time.

    Each output block is computed from its input samples plus enough context on both sides to
    cover the resampling filter, with windows aligned so that the polyphase filter sees the same
    phases as on the whole signal: the result equals whole-signal resampling up to float
    rounding, at a memory cost of one block.
    """
    ratio = Fraction(int(target_sr), int(orig_sr))
    up, down = ratio.numerator, ratio.denominator
    n_in = len(src)
    n_out = -(-n_in * up // down)
    # scipy's filter spans half_len = 10 * max(up, down) taps on each side at the up-sampled rate,
    # i.e. half_len / up input samples; a context that is a multiple of `down` keeps the
    # window's first output on the global output grid.
    context = down * math.ceil((10 * max(up, down) / up + 1) / down)
    step = up * max(1, block // up)  # output blocks start on multiples of up: integer input offsets
    out = DiskArray.zeros(n_out, src.shape[1], directory)
    for j0 in range(0, n_out, step):
        j1 = min(j0 + step, n_out)
        i0 = j0 // up * down  # first input sample of the block (exact: j0 % up == 0)
        w0 = max(0, i0 - context)
        w1 = min(n_in, -(-j1 * down // up) + context)
        y = _audio.resample(np.asarray(src[w0:w1]), orig_sr, target_sr)
        first = j0 - w0 * up // down  # w0 * up / down is an integer: w0 is 0 or i0 - context
        out[j0:j1] = y[first : first + j1 - j0]
    return out


def decode_to_disk(path, directory=None, sample_rate=44100, nb_channels=2, downmix=False,
                   allow_truncated=False):
    """:func:`kerasep.audio.load` into a :class:`DiskArray`, in bounded memory.

    The file is decoded block by block (each block checked for NaN/inf and mapped to
    ``nb_channels`` as :func:`kerasep.audio.load` does), then resampled block by block when its
    rate differs from ``sample_rate``. Same errors as :func:`kerasep.audio.load`; on an error no
    temporary file is left behind. A file that decodes shorter than its container declares is
    an :class:`~kerasep.audio.AudioError` naming both lengths unless ``allow_truncated``.
    """
    sample_rate = check_rate(sample_rate, "sample_rate")
    nb_channels = check_nb_channels(nb_channels)
    spath = check_path(path)
    rate, _, blocks = decode_blocks(spath, allow_truncated=allow_truncated)
    raw = DiskArray.zeros(0, nb_channels or 2, directory)
    try:
        for block in blocks:
            check_finite(block, spath, rate, offset=len(raw))
            block = adapt_channels(block, spath, nb_channels, downmix)
            if len(raw) == 0 and block.shape[1] != raw.nb_channels:  # nb_channels=None: the file's
                raw.nb_channels = block.shape[1]
            raw.append(block)
        if len(raw) == 0:
            raise _audio.AudioError(f"{spath}: contains no audio samples (0 timesteps)")
        if rate == sample_rate:
            return raw
        try:
            return resample_to_disk(raw, rate, sample_rate, directory)
        finally:
            raw.delete()
    except BaseException:
        raw.delete()
        raise
