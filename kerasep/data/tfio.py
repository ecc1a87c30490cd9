"""Optional in-graph decoding with tensorflow-io.

tensorflow-io's last release (0.37.1) is built against TensorFlow 2.17; with other versions its
kernels fail to load (undefined symbols). :data:`AVAILABLE` is probed once, lazily, inside a
``try`` that catches every failure, so importing kerasep never depends on it. When it loads,
:func:`decode` reads WAV/FLAC/OGG/MP3 with ``tfio.audio.AudioIOTensor`` (TensorFlow ops);
everything else, and every file when it does not load, goes through :mod:`kerasep.audio`.
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

#: Extensions tensorflow-io's audio reader handles.
TFIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")

_STATE = {}


def probe():
    """``(available, reason)``: whether tensorflow-io imports and its audio kernels run."""
    if "result" not in _STATE:
        try:
            from kerasep.backend import tf  # noqa: F401
            import tensorflow_io as tfio  # noqa: F401

            # Loading the op library is lazy in tfio: touch an op to surface undefined symbols.
            tfio.audio.AudioIOTensor  # noqa: B018
            _STATE["result"] = (True, f"tensorflow-io {getattr(tfio, '__version__', '?')}")
            _STATE["module"] = tfio
        except Exception as e:  # ImportError, NotImplementedError, tf.errors.NotFoundError, ...
            _STATE["result"] = (False, f"{type(e).__name__}: {e}"[:500])
    return _STATE["result"]


def available() -> bool:
    return probe()[0]


def should_use(path, decoder: str = "auto") -> bool:
    ext = os.path.splitext(str(path))[1].lower()
    if decoder == "kerasep":
        return False
    if decoder == "tfio":
        ok, why = probe()
        if not ok:
            from kerasep.data.tracks import DatasetError

            raise DatasetError(f"decoder='tfio' but tensorflow-io does not load here ({why})")
        if ext not in TFIO_EXTENSIONS:
            from kerasep.data.tracks import DatasetError

            raise DatasetError(f"decoder='tfio' reads {TFIO_EXTENSIONS}, not {ext!r} ({path})")
        return True
    return ext in TFIO_EXTENSIONS and ext != ".wav" and available()


def decode(path, sample_rate: Optional[int] = None, nb_channels: Optional[int] = 2):
    """Decode ``path`` with tensorflow-io ops → ``(float32 (nb_timesteps, nb_channels), rate)``.

    Channel adaptation and resampling follow :mod:`kerasep.audio` (same functions)."""
    from kerasep import audio as _audio

    ok, why = probe()
    if not ok:
        raise RuntimeError(f"tensorflow-io is not usable: {why}")
    tfio = _STATE["module"]
    from kerasep.backend import tf

    t = tfio.audio.AudioIOTensor(str(path))
    rate = int(t.rate.numpy())
    a = t.to_tensor()
    if a.dtype != tf.float32:
        scale = {tf.int16: 32768.0, tf.int32: 2147483648.0, tf.uint8: 128.0}.get(a.dtype, 1.0)
        a = tf.cast(a, tf.float32) / scale
    audio = np.ascontiguousarray(a.numpy(), dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[:, None]
    audio = _audio.check_audio(audio, name=str(path), nb_channels=nb_channels)
    if sample_rate is not None and sample_rate != rate:
        audio = _audio.resample(audio, rate, sample_rate)
        rate = int(sample_rate)
    return audio.astype(np.float32, copy=False), rate
