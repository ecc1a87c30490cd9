"""Writing audio files: :func:`save` and :func:`save_blocks`, atomically.

Output checks (format from the extension, subtype, rate: :data:`SAVE_FORMATS`) happen before
anything touches the disk; the samples are validated as :func:`kerasep.audio.check_audio` does
(whole arrays) or block by block (:func:`save_blocks`), then written to a temporary file beside
the target that is fsynced and renamed onto it, so readers only ever see the old file or the
complete new one, and an existing file is never replaced without ``overwrite=True``. The file
gets the mode a plain ``open`` would give it (``0o666 & ~umask``).

Lossy outputs (``.mp3``, ``.ogg``) take encoder settings: ``bitrate`` (mp3 only: constant
bitrate, exact, default 320 kbit/s) or ``quality`` in [0, 1] (variable bitrate; Ogg Vorbis has
no bitrate setting in libsndfile); the mapping is :func:`kerasep.export.runner.encoder_options`.
"""

from __future__ import annotations

import errno
import os
import warnings
from typing import Optional

import numpy as np
import soundfile

from kerasep.export.runner import OUTPUT_FORMATS, OutputSet, RunnerError, encoder_options, write_failure
from kerasep.audio.validate import (
    AudioError,
    PathLike,
    check_audio,
    check_finite,
    check_nb_channels,
    check_rate,
)

__all__ = ["save", "save_blocks", "save_stems", "SAVE_FORMATS"]

#: Formats :func:`save` writes: extension -> (soundfile format, allowed subtypes, default subtype).
SAVE_FORMATS = {f".{name}": spec for name, spec in OUTPUT_FORMATS.items()}


def _exists_error(path: str) -> AudioError:
    return AudioError(
        f"{path}: file already exists; pass overwrite=True (--overwrite on the command line) "
        "to replace it"
    )


def _encoder(spath, sample_rate, bitrate, quality):
    """soundfile's encoder keyword arguments for ``spath`` (AudioError naming the file)."""
    try:
        return encoder_options(os.path.splitext(spath)[1].lower()[1:], sample_rate, bitrate, quality)
    except RunnerError as e:
        raise AudioError(f"{spath}: {e}") from None


def _check_output(path, subtype, sample_rate):
    """Validate an output path, subtype and rate: ``(path as str, format, subtype, rate)``."""
    try:
        spath = os.fsdecode(os.fspath(path))
    except TypeError:
        raise AudioError(f"expected an output path, found {type(path).__name__}") from None
    ext = os.path.splitext(spath)[1].lower()
    if ext not in SAVE_FORMATS:
        supported = ", ".join(sorted(SAVE_FORMATS))
        raise AudioError(
            f"{spath}: unsupported output format {ext or '(no extension)'!r}; "
            f"supported extensions are {supported}"
        )
    fmt, subtypes, default_subtype = SAVE_FORMATS[ext]
    subtype = default_subtype if subtype is None else str(subtype).upper()
    if subtype not in subtypes:
        raise AudioError(
            f"{spath}: unsupported subtype {subtype!r} for {ext} files; "
            f"expected one of {', '.join(subtypes)}"
        )
    return spath, fmt, subtype, check_rate(sample_rate, "sample_rate")


def _atomic_write(spath: str, fmt: str, overwrite: bool, write) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``spath``, fsync it and rename it onto
    ``spath``; on any failure (``write`` raising included) the temporary file is removed and an
    existing ``spath`` is left untouched (:func:`_atomic_write_all` of one file)."""
    _atomic_write_all({spath: (fmt, write)}, overwrite)


def _atomic_write_all(outputs, overwrite: bool) -> None:
    """``outputs`` ``{path: (format, write)}``: every ``write(tmp)`` to a temporary file beside
    its path (``.<name>.kerasep-<pid>-<start>-<random>.tmp``), then all renamed into place
    together (:class:`kerasep.export.runner.OutputSet`): on any failure every temporary is
    removed and nothing that was there changes. OS errors are said in words ("no space left on
    device while writing PATH")."""
    for spath in outputs:
        if os.path.isdir(spath):
            raise AudioError(f"{spath}: expected a file path, found a directory")
        if os.path.lexists(spath) and not overwrite:
            raise _exists_error(spath)
    try:
        with OutputSet({p: p for p in outputs}, overwrite, error=AudioError) as temps:
            for spath, (fmt, write) in outputs.items():
                try:
                    write(str(temps[spath]))
                except (OSError, RuntimeError) as e:  # soundfile's LibsndfileError is a RuntimeError
                    raise AudioError(write_failure(e, spath, f"{fmt} file")) from e
    except AudioError as e:
        if "output exists" in str(e) and not overwrite:
            raise _exists_error(next(p for p in outputs if os.path.lexists(p))) from None
        raise


def save(
    path: PathLike,
    audio,
    sample_rate: int = 44100,
    subtype: Optional[str] = None,
    overwrite: bool = False,
    bitrate=None,
    quality: Optional[float] = None,
) -> str:
    """Write a waveform to a WAV, FLAC, MP3 or Ogg Vorbis file, atomically.

    The audio is validated (:func:`check_audio`) before anything touches the disk. It is then
    written to a temporary file ``.<name>.<random>.tmp`` in the target's directory, flushed to
    disk (fsync) and renamed onto ``path``, so readers only ever see the old file or the complete
    new one; if anything fails the temporary file is removed and an existing ``path`` is left
    untouched.

    Parameters
    ----------
    path : str or os.PathLike
        Output file; the format comes from the extension (``.wav``, ``.flac``, ``.mp3`` or
        ``.ogg``, any case).
        Missing parent directories are created.
    audio : array_like
        ``(nb_timesteps, nb_channels)`` (1 or 2 channels) or ``(nb_timesteps,)`` floating-point
        waveform, nominally in ``[-1, 1]``.
    sample_rate : int
        Sample rate in Hz stored in the file.
    subtype : str or None
        Sample encoding. WAV: ``"PCM_16"`` (default), ``"PCM_24"`` or ``"FLOAT"`` (32-bit
        float, not clipped). FLAC: ``"PCM_16"`` (default) or ``"PCM_24"``. PCM subtypes clip
        samples to ``[-1, 1]`` (with a :class:`UserWarning` giving the count).
    overwrite : bool
        Replace ``path`` if it exists. Without it an existing file is an error.
    bitrate : str or int or None
        ``.mp3`` only: constant bitrate in kbit/s (``"320k"``, default 320, or ``192``...).
    quality : float or None
        ``.mp3``/``.ogg``: variable-bitrate quality in [0, 1], 1 best.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    AudioError
        If the extension or subtype is unsupported, the audio is invalid (non-finite samples,
        bad shape, no samples, more than 2 channels), ``path`` exists and ``overwrite`` is
        False, or writing fails (the cause is chained).
    """
    spath, fmt, subtype, sample_rate = _check_output(path, subtype, sample_rate)
    options = _encoder(spath, sample_rate, bitrate, quality)
    data = check_audio(audio, name=f"audio to save to {spath}")
    if subtype != "FLOAT":
        nb_clipped = int(np.count_nonzero(np.abs(data) > 1.0))
        if nb_clipped:
            warnings.warn(
                f"{spath}: clipping {nb_clipped} samples outside [-1, 1] for {subtype} output",
                UserWarning,
                stacklevel=2,
            )
            data = np.clip(data, -1.0, 1.0)

    _atomic_write(spath, fmt, overwrite,
                  lambda tmp: soundfile.write(tmp, data, sample_rate, subtype=subtype, format=fmt, **options))
    return spath


def save_blocks(
    path: PathLike,
    blocks,
    sample_rate: int,
    nb_channels: int,
    subtype: Optional[str] = None,
    overwrite: bool = False,
    bitrate=None,
    quality: Optional[float] = None,
) -> str:
    """:func:`save` for a waveform given block by block, in bounded memory.

    ``blocks`` yields consecutive ``(m, nb_channels)`` floating-point arrays (e.g.
    ``DiskArray.blocks()``); they are validated as they come (finite samples, shape), clipped
    for PCM subtypes (one :class:`UserWarning` with the total count) and written to the
    temporary file, which replaces ``path`` only once every block is written: an invalid block
    leaves nothing behind. Same formats, subtypes, atomicity and errors as :func:`save`.
    """
    spath, fmt, write, clipped = _blocks_writer(path, blocks, sample_rate, nb_channels, subtype, bitrate, quality)
    _atomic_write(spath, fmt, overwrite, write)
    _warn_clipped(spath, clipped[0], subtype)
    return spath


def save_stems(
    paths,
    blocks,
    sample_rate: int,
    nb_channels: int,
    subtype: Optional[str] = None,
    overwrite: bool = False,
    bitrate=None,
    quality: Optional[float] = None,
) -> dict:
    """:func:`save_blocks` for a song's stems, all or nothing: ``paths`` ``{stem: path}``,
    ``blocks`` ``{stem: iterable of blocks}``. Each stem is written to a temporary file beside
    its path; they are renamed into place together only once every one is complete, and on any
    failure (invalid samples, a full disk, an interrupt) all are removed and nothing that was
    there changes. Returns ``{stem: path}``."""
    writers, clipped = {}, {}
    for stem, path in paths.items():
        spath, fmt, write, count = _blocks_writer(path, blocks[stem], sample_rate, nb_channels, subtype,
                                                  bitrate, quality)
        writers[spath] = (fmt, write)
        clipped[spath] = count
    _atomic_write_all(writers, overwrite)
    for spath, count in clipped.items():
        _warn_clipped(spath, count[0], subtype)
    return {stem: os.fsdecode(os.fspath(p)) for stem, p in paths.items()}


def _warn_clipped(spath, nb_clipped, subtype):
    if nb_clipped:
        warnings.warn(f"{spath}: clipping {nb_clipped} samples outside [-1, 1] for {subtype} output",
                      UserWarning, stacklevel=3)


def _blocks_writer(path, blocks, sample_rate, nb_channels, subtype, bitrate, quality):
    """``(path, format, write(tmp), [nb_clipped])`` for :func:`save_blocks`, checked before
    anything touches the disk."""
    spath, fmt, subtype, sample_rate = _check_output(path, subtype, sample_rate)
    options = _encoder(spath, sample_rate, bitrate, quality)
    nb_channels = check_nb_channels(nb_channels)
    name = f"audio to save to {spath}"
    clipped_count = [0]

    def write(tmp):
        offset = 0
        with soundfile.SoundFile(tmp, "w", sample_rate, nb_channels, subtype=subtype, format=fmt, **options) as f:
            for block in blocks:
                block = np.asarray(block)
                if block.dtype.kind != "f" or block.ndim != 2 or block.shape[1] != nb_channels:
                    raise AudioError(f"{name}: expected float blocks of shape (m, {nb_channels}), "
                                     f"found dtype {block.dtype} and shape {block.shape} at timestep {offset}")
                check_finite(block, name, sample_rate, offset)
                if subtype != "FLOAT":
                    clipped = np.abs(block) > 1.0
                    if clipped.any():
                        clipped_count[0] += int(np.count_nonzero(clipped))
                        block = np.clip(block, -1.0, 1.0)
                if f.write(block) not in (None, len(block)):
                    raise OSError(errno.EIO, "short write")
                offset += len(block)
        if offset == 0:
            raise AudioError(f"{name}: contains no audio (0 timesteps)")

    return spath, fmt, write, clipped_count
