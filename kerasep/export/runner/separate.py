"""One file end to end: :func:`separate_file`."""
import errno

import numpy as np

from .audio_io import FileAudio, open_audio
from . import chunks  # chunks.iter_separate: looked up there (tests patch it)
from .chunks import feed_shapes
from .common import OUTPUT_FORMATS, RunnerError, WRITE_BLOCK, option
from .outputs import (OutputSet, check_free_space, check_subtype, encoder_options, estimated_bytes, output_paths,
                      select_stems, write_failure)


def separate_file(model, inp, outdir, fmt="wav", overwrite=False, chunk_seconds=None, progress=False,
                  subtype=None, stems=None, two_stems=None, bitrate=None, quality=None, allow_truncated=False,
                  opener=None):
    """Separate one file into ``OUTDIR/<name>/<stem>.<fmt>``; returns ``{stem: path}``.

    ``fmt``: ``"wav"``, ``"flac"``, ``"mp3"`` or ``"ogg"``; ``subtype``: ``"PCM_16"``
    (default), ``"PCM_24"`` or (wav only) ``"FLOAT"``; PCM and lossy output is clipped to
    [-1, 1]. ``bitrate``, ``quality``: mp3/ogg encoder settings (:func:`encoder_options`).
    ``stems``, ``two_stems``: which stems to write (:func:`select_stems`; default all the
    model's targets). ``opener``: ``opener(inp, sample_rate, nb_channels, allow_truncated)``
    returning the input as a sliceable ``(nb_timesteps, nb_channels)`` float32 array, for formats
    soundfile cannot read (default :func:`open_audio`).

    Every output is streamed to a temporary file beside its final name, and all are renamed
    into place together once every chunk is written (:class:`OutputSet`): a failure (a full
    disk, a kill) leaves no partial output and changes nothing that was there. An input that
    decodes shorter than it declares is an error unless ``allow_truncated``. The model's fixed
    input dimensions are checked against the chunks before any folder is created."""
    import soundfile as sf

    subtype = check_subtype(fmt, subtype)
    options = encoder_options(fmt, model.sample_rate, bitrate, quality)
    names = select_stems(model.targets, stems, two_stems)
    paths = output_paths(inp, outdir, names, fmt)
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise RunnerError(f"output exists: {', '.join(existing)} (use {option('overwrite')} to replace)")
    for p in paths.values():
        anchor = p.parent
        while not anchor.exists() and anchor.parent != anchor:
            anchor = anchor.parent
        if not anchor.is_dir():
            raise RunnerError(f"{p}: cannot write there, {anchor} is a file")
    mix = (opener or open_audio)(inp, model.sample_rate, model.nb_channels, allow_truncated)
    try:
        # the model's fixed input dimensions against what it will be fed: before any output folder
        model_check = getattr(model, "check_feed", None)
        if model_check is not None:
            model_check(feed_shapes(model, mix.shape[0], chunk_seconds), f"{inp} ({mix.shape[0]} samples)")
        size = estimated_bytes(fmt, subtype, mix.shape[0], model.nb_channels, model.sample_rate, bitrate, quality)
        if size is not None:  # a full disk is said before the separation, not after it
            check_free_space(next(iter(paths.values())).parent, size * len(paths), f"the stems of {inp}")
        files = {}
        with OutputSet(paths, overwrite) as temps:
            try:
                for t, p in paths.items():
                    try:
                        files[t] = sf.SoundFile(str(temps[t]), "w", samplerate=model.sample_rate,
                                                channels=model.nb_channels, subtype=subtype,
                                                format=OUTPUT_FORMATS[fmt][0], **options)
                    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError
                        raise RunnerError(write_failure(exc, p, f"{fmt} file")) from None
                written = 0
                for start, blocks in chunks.iter_separate(model, mix, chunk_seconds, progress):
                    if start != written:  # pragma: no cover - the plan tiles the input
                        raise RunnerError(f"internal error: chunk starts at {start}, expected {written}")
                    for t in names:
                        if t in blocks:
                            v = blocks[t]
                        else:  # no_<stem> of --two-stems: the sum of the other targets
                            v = sum(b for k, b in blocks.items() if k != t[len("no_"):])
                        for i in range(0, v.shape[0], WRITE_BLOCK):  # bounded temporaries
                            part = v[i : i + WRITE_BLOCK]
                            part = part if subtype == "FLOAT" else np.clip(part, -1.0, 1.0)
                            try:
                                if files[t].write(part) not in (None, len(part)):
                                    raise OSError(errno.EIO, "short write")
                            except (OSError, RuntimeError) as exc:
                                raise RunnerError(write_failure(exc, paths[t], f"{fmt} file")) from None
                    written += next(iter(blocks.values())).shape[0]
                    blocks = v = part = None  # the chunk's outputs are freed before the next model call
                for t, f in files.items():
                    try:
                        f.close()
                    except (OSError, RuntimeError) as exc:
                        raise RunnerError(write_failure(exc, paths[t], f"{fmt} file")) from None
            finally:
                for f in files.values():
                    if not f.closed:
                        try:
                            f.close()
                        except Exception:
                            pass
    finally:
        if isinstance(mix, FileAudio):
            mix.file.close()
    return paths
