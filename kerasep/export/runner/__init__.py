"""Separate audio files with a kerasep ONNX export, without TensorFlow.

    python -m kerasep.export.runner unet-2stems.onnx song.mp3 other.wav -o separated
           [--format wav|flac|mp3|ogg] [--bitrate 320k | --quality Q] [--stems vocals,...]
           [--chunk-seconds S] [--overwrite] [--cpu] [-q]

Needs only ``numpy``, ``onnxruntime`` (or ``onnxruntime-gpu``: the CUDA execution provider is
used when present) and ``soundfile``; ``tqdm`` (progress bar) and ``scipy`` (band-limited
resampling of inputs at another sample rate; a numpy FFT resampler is used without it) are
optional. Neither importing nor running it imports TensorFlow or anything else of kerasep: this
package is self-contained (its modules import each other relatively, so they also run from a
zip). For a deployment without kerasep, ``kerasep export MODEL -o MODEL.onnx --with-runner`` (or
``kerasep.export.export(..., with_runner=True)``) writes it beside the model as one file, the
zipapp ``run_onnx.pyz`` (:func:`kerasep.export.write_runner`); then ``python run_onnx.pyz
MODEL.onnx song.wav``.

Outputs: ``OUTDIR/<input name>/<target>.<wav|flac|mp3|ogg>`` (WAV/FLAC: 16-bit PCM at the
model's sample rate; MP3: constant bitrate, 320 kbit/s unless ``--bitrate``; Ogg Vorbis:
variable bitrate, ``--quality``), the layout of ``kerasep separate``; an input named
``mixture.*`` (MUSDB18-HQ's ``<track>/mixture.wav``) is named after its folder. Each file is
written to a temporary name and renamed when complete, with the mode a plain ``open`` would
give it (``0o666 & ~umask``); existing outputs are never replaced without ``--overwrite``.

Long inputs are processed in chunks as :mod:`kerasep.inference` does. Models that declare
``kerasep.chunk_alignment``/``kerasep.chunk_context`` in their metadata (the U-Net: one patch)
get chunk borders on their patch grid with one patch of real audio as context on each side, which
reproduces whole-file processing exactly; models that declare ``kerasep.chunk_weighting``
``"triangular"`` (HTDemucs) get demucs' ``apply_model`` segments of ``kerasep.chunk_segment``
samples overlapping by ``kerasep.chunk_overlap`` (:mod:`.segments`); other models get 5 s of
context and linear cross-fades.
Chunk planning (:func:`plan_chunks`, :func:`crossfade_weights`), resampling (:func:`resample`)
and output naming (:func:`output_paths`) have this one implementation: the rest of kerasep
imports them from here.

Modules: :mod:`.common` (constants, :class:`RunnerError`, :func:`option`), :mod:`.session`
(:class:`OnnxSeparator`), :mod:`.chunks` (chunk plan, :func:`separate_array`), :mod:`.segments`
(demucs' triangular segments), :mod:`.audio_io`
(decoding, :func:`resample`), :mod:`.temporaries` (umask, owner tokens, stale temporaries),
:mod:`.outputs` (naming, encoder options, error messages, :class:`OutputSet`), :mod:`.separate`
(:func:`separate_file`) and :mod:`.cli` (:func:`main`); every name is re-exported here.
"""
import os  # noqa: F401  (``runner.os``: tests patch os functions through it)

from . import common  # noqa: F401
from . import session  # noqa: F401
from . import segments  # noqa: F401
from . import chunks  # noqa: F401
from . import audio_io  # noqa: F401
from . import temporaries  # noqa: F401
from . import outputs  # noqa: F401
from . import separate  # noqa: F401
from . import cli  # noqa: F401
from .common import (DEFAULT_CHUNK_SECONDS, DEFAULT_CROSSFADE_CHUNK_SECONDS, DEFAULT_CONTEXT_SECONDS,
                     WRITE_BLOCK, READABLE, OUTPUT_FORMATS, MP3_BITRATES, DEFAULT_MP3_BITRATE, RunnerError,
                     INTERFACE, option, option_name)  # noqa: F401
from .session import providers, OnnxSeparator  # noqa: F401
from .segments import (segment_samples, triangular_weights, segment_length, segment_feed_shapes,
                       iter_triangular)  # noqa: F401
from .chunks import (plan_chunks, crossfade_weights, _plan, feed_shapes, iter_separate, separate_array,
                     _progress)  # noqa: F401
from .audio_io import (resample, wav_declared_frames, truncation_tolerance, truncation_message,
                       _declared_frames, load_audio, FileAudio, open_audio)  # noqa: F401
from .temporaries import (_IMPORT_UMASK, current_umask, _proc_start, owner_token, OWNED_NAME, work_folder,
                          owner_alive, sweep_stale)  # noqa: F401
from .outputs import (output_name, output_paths, parse_bitrate, encoder_options, check_subtype, select_stems,
                      _ERRNO_WORDS, os_error_message, write_failure, estimated_bytes, check_free_space,
                      cleanup_on_sigterm, _fsync, OutputSet)  # noqa: F401
from .separate import separate_file  # noqa: F401
from .cli import (_prog, positive_seconds, unit_interval, build_parser, main, _main)  # noqa: F401

