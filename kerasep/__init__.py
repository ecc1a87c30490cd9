"""kerasep: music source separation models for Keras.

Glossary used in every docstring:

- ``batch``: number of examples in a batch.
- ``nb_channels``: audio channels (2 for stereo).
- ``nb_timesteps``: audio samples per channel.
- ``nb_frames``: STFT frames.
- ``nb_bins``: STFT frequency bins kept by a model (``n_fft // 2 + 1`` for a full STFT).
- ``nb_targets``: separated sources (``targets``, e.g. ``["vocals", "accompaniment"]``).

Audio arrays handed to or returned by the high-level API (:func:`kerasep.separate`,
:mod:`kerasep.audio`) are ``float32`` arrays of shape ``(nb_timesteps, nb_channels)``, as in
Spleeter and soundfile. Keras models take waveforms as ``(batch, nb_channels, nb_timesteps)``.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "separate", "zoo", "audio"]


def __getattr__(name):
    # Lazy imports keep `import kerasep` cheap (TensorFlow loads on first use).
    if name == "separate":
        from kerasep.inference import separate

        return separate
    if name in ("zoo", "audio", "layers", "models", "inference"):
        import importlib

        return importlib.import_module(f"kerasep.{name}")
    raise AttributeError(f"module 'kerasep' has no attribute {name!r}")
