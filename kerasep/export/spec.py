"""How a separator is exported: its "spectral front/back end" and its trainable core.

Exporters (:mod:`kerasep.export.onnx`) never look inside a model's ``call``. They ask
:func:`export_spec` for a plain dict that says which part is a neural network (exported with
tf2onnx) and which parts are signal processing (re-built with ONNX's own operators):

Spectral models (``"kind": "spectral"``) — STFT → magnitude → core → masks → inverse STFT:

- ``n_fft``, ``hop_length``, ``padding`` (``"spleeter"``, ``"center"``, ``"valid"``),
  ``pad_mode`` (``"constant"``/``"reflect"``): the :class:`kerasep.layers.STFT` framing.
  ``n_fft`` must be a multiple of ``hop_length`` (true of Spleeter and Open-Unmix).
- ``nb_bins``: bins fed to the core (``F``); ``mask_extension``: ``"zeros"`` or ``"average"`` for
  the bins above it (:class:`kerasep.layers.ApplyMask`).
- ``power``: the core sees ``|X| ** power``.
- ``core``: a functional Keras model returning ``{target: tensor}`` for every name in
  ``targets``; ``core_layout`` says how it sees the spectrogram:

  * ``"patches"``: ``(batch * nb_patches, T, nb_bins, nb_channels)``, frames cut into
    ``patch_frames`` (``T``)-frame patches, the last one zero-padded (the U-Net);
  * ``"frames"``: ``(batch, nb_channels, nb_frames, nb_bins)``, any number of frames;
  * ``"stft"``: the complex STFT itself, ``(batch, nb_channels, nb_frames, nb_bins, 2)`` (Open-Unmix:
    its core holds the target models and the Wiener filter).

- ``core_output``: ``"magnitude"`` (estimates turned into ratio masks across targets with
  ``separation_exponent`` and ``eps``, :class:`kerasep.layers.RatioMask`) or ``"mask"`` (the core
  returns the masks themselves) or ``"stft"`` (the core returns each stem's complex STFT
  ``(batch, nb_channels, nb_frames, nb_bins, 2)``, inverted as is).
- ``targets`` (every core output, in order), ``output_targets`` (the stems the export returns).

Waveform models (``"kind": "waveform"``, e.g. Demucs): the whole Keras model is converted by
tf2onnx; it must not use RFFT/IRFFT ops (tf2onnx cannot convert an inverse STFT).

Every spec also carries ``sample_rate``, ``nb_channels`` and the chunking facts the runners
need: ``chunk_alignment`` and ``chunk_context`` (samples; exact chunking) when the model has them.

A model family plugs in by defining ``export_spec(self) -> dict`` (returning the keys above), or
by registering a builder with :func:`register_spec`.
"""

_BUILDERS = {}


def register_spec(cls, builder):
    """Use ``builder(model) -> dict`` for instances of ``cls`` (for families that cannot add an
    ``export_spec`` method themselves)."""
    _BUILDERS[cls] = builder


def _unet_spec(model):
    return {
        "kind": "spectral",
        "n_fft": model.n_fft,
        "hop_length": model.hop_length,
        "padding": "spleeter",
        "pad_mode": "constant",
        "nb_bins": model.F,
        "mask_extension": model.mask_extension,
        "power": 1.0,
        "core": model.core,
        "core_layout": "patches",
        "patch_frames": model.T,
        "core_output": "magnitude",
        "separation_exponent": model.separation_exponent,
        "eps": model.eps,
    }


def _common(model):
    targets = list(model.targets)
    out = {
        "family": type(model).__name__,
        "targets": targets,
        "output_targets": list(getattr(model, "output_targets", None) or targets),
        "sample_rate": int(model.sample_rate),
        "nb_channels": int(model.nb_channels),
    }
    for key in ("chunk_alignment", "chunk_context"):
        value = getattr(model, key, None)
        if value is not None:
            out[key] = int(value)
    return out


def export_spec(model):
    """The export description of ``model`` (see the module docstring).

    Raises:
        TypeError: ``model`` lacks the attributes every separator has (``targets``,
            ``sample_rate``, ``nb_channels``).
    """
    missing = [a for a in ("targets", "sample_rate", "nb_channels") if not hasattr(model, a)]
    if missing:
        raise TypeError(
            f"cannot export {type(model).__name__}: a kerasep separator needs the attributes "
            f"targets, sample_rate and nb_channels; missing {missing}"
        )
    spec = _common(model)
    if hasattr(model, "export_spec"):
        own = dict(model.export_spec())
    else:
        from kerasep.models.unet import UNetSeparator

        builder = _BUILDERS.get(type(model))
        if builder is not None:
            own = dict(builder(model))
        elif isinstance(model, UNetSeparator):
            own = _unet_spec(model)
        else:
            own = {"kind": "waveform"}
    spec.update(own)
    if spec["kind"] not in ("spectral", "waveform"):
        raise ValueError(f"export spec kind must be 'spectral' or 'waveform'. Received: {spec['kind']!r}")
    return spec
