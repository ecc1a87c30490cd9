"""Audio input/output: decoding, validation, resampling and atomic writing.

Every array this package returns or accepts is a ``float32`` array of shape
``(nb_timesteps, nb_channels)`` (the layout of soundfile and Spleeter), with samples nominally
in ``[-1, 1]``. Time arguments (``start``, ``duration``) are in seconds, sample rates in Hz.

Decoding
--------
- WAV, FLAC, OGG/Vorbis, MP3 and the other formats libsndfile understands are read with
  :mod:`soundfile`.
- MP4/M4A/AAC (and the MUSDB18 ``.stem.mp4`` files, whose first audio stream is the mixture)
  are decoded by an ``ffmpeg`` subprocess to raw ``float32`` PCM. ffmpeg is also the fallback
  when soundfile cannot open a file. Only the first audio stream (``-map 0:a:0``) is read.
- The file's own sample rate is kept through decoding; :func:`resample` (a band-limited
  polyphase filter, :func:`scipy.signal.resample_poly`) converts it afterwards, so every format
  is resampled the same way.

Every problem with the audio itself (missing, empty, undecodable or non-finite files, wrong
channel counts, bad shapes, refusing to overwrite) raises :class:`AudioError`, a
:class:`ValueError`, whose message names the file and says what was expected and what was found.

The package is split on its seams; the names below are re-exported here:

- :mod:`kerasep.audio.decode`: :func:`load`, :func:`load_with_rate`, :func:`info`, and the
  block decoder (:func:`~kerasep.audio.decode.decode_blocks`) used for bounded-memory reading.
- :mod:`kerasep.audio.validate`: :class:`AudioError`, :func:`check_audio` and the rate, channel
  and finite-sample checks the other modules share.
- :mod:`kerasep.audio.resample`: :func:`resample`.
- :mod:`kerasep.audio.write`: :func:`save`, :func:`save_blocks` (atomic writing).

This package must stay light: it never imports TensorFlow.
"""

from kerasep.audio.validate import AudioError, PathLike, check_audio  # noqa: F401
from kerasep.audio.decode import (  # noqa: F401
    BLOCK_TIMESTEPS,
    FFMPEG_EXTENSIONS,
    info,
    load,
    load_with_rate,
)
from kerasep.audio.write import SAVE_FORMATS, save, save_blocks, save_stems

# Last: importing the submodules above binds ``kerasep.audio.resample`` to the module
# kerasep/audio/resample.py; the public name is the function.
from kerasep.audio.resample import resample

AudioError.__module__ = __name__  # tracebacks say kerasep.audio.AudioError, as before the split

__all__ = [
    "AudioError",
    "load",
    "load_with_rate",
    "resample",
    "check_audio",
    "save",
    "save_blocks",
    "save_stems",
    "info",
    "SAVE_FORMATS",
]
