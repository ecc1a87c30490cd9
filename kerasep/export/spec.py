"""How a separator is exported: its "spectral front/back end" and its trainable core.

Exporters (:mod:`kerasep.export.onnx`) never look inside a model's ``call``. They ask
:func:`export_spec` for a plain dict that says which part is a neural network (exported with
tf2onnx) and which parts are signal processing (re-built with ONNX's own operators):

Spectral models (``"kind": "spectral"``) — STFT → magnitude → core → masks → inverse STFT:

- ``n_fft``, ``hop_length``, ``padding`` (``"spleeter"``, ``"center"``, ``"valid"``),
  ``pad_mode`` (``"constant"``/``"reflect"``): the :class:`kerasep.layers.STFT` framing.
  Any ``hop_length`` (the ONNX export needs an even ``n_fft``).
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
- ``core_rewrites`` (optional): functions ``ModelProto -> ModelProto`` applied in order to the
  converted core of a float32 export (not at float16 or int8: their converters know standard
  operators only), e.g. the RoFormers' fused attention
  (:func:`kerasep.export.onnx.attention.fuse_attention`).

Waveform models (``"kind": "waveform"``, e.g. Demucs): the whole Keras model is converted by
tf2onnx; it must not use RFFT/IRFFT ops (tf2onnx cannot convert an inverse STFT).

Hybrid models (``"kind": "hybrid"``, HT-Demucs; :mod:`kerasep.export.onnx.hybrid`) — the network
takes the waveform and its spectrogram and returns a spectral and a time estimate, summed after
the inverse spectrogram:

- ``n_fft``, ``hop_length`` (``n_fft / 4``): demucs' ``_spec``/``_ispec`` framing
  (:class:`kerasep.layers.htdemucs_blocks.HTSpectrogram`: ``nb_frames = ceil(P / hop)``, reflect
  padding, ``n_fft / 2`` bins, normalised by ``sqrt(n_fft)``);
- ``pad_to``: inputs shorter than this many samples are zero-padded to it before the
  spectrogram (the training segment; 0: no padding), outputs cropped back;
- ``core``: a functional Keras model ``{"waveform": (batch, nb_channels, P), "spectrogram":
  (batch, nb_channels, n_fft / 2, nb_frames, 2)}`` → ``{"spectrogram": (batch, S * nb_channels,
  n_fft / 2, nb_frames, 2), "waveform": (batch, S * nb_channels, P)}``, the stems' channels
  source-major in ``targets`` order (``S`` targets, ``P`` the padded length);
- ``chunk_segment`` (samples), ``chunk_overlap`` (fraction), ``chunk_weighting``
  (``"triangular"``): demucs' ``apply_model`` segments, written to the metadata for the runner
  (:mod:`kerasep.export.runner.segments`).

Every spec also carries ``family`` (the class name), ``targets``/``output_targets`` as above
(``output_targets`` are the separator's ``stems``), ``sample_rate``, ``nb_channels`` and, for
models whose chunked output is exact (``model.chunking.is_exact``), the chunking facts the
runners need: ``chunk_alignment`` and ``chunk_context`` (samples).

A model family plugs in by subclassing :class:`kerasep.models.Separator` and overriding
``export_spec(self) -> dict`` (the family keys above; the default is ``{"kind": "waveform"}``).
"""
from kerasep.models.separator import check_separator

KINDS = ("spectral", "waveform", "hybrid")


def export_spec(model):
    """The export description of the separator ``model`` (see the module docstring).

    Raises:
        kerasep.models.NotASeparatorError: ``model`` is not a kerasep separator.
        ValueError: the family's spec has an unknown ``kind``.
    """
    model = check_separator(model, "the model to export")
    stems = model.stems
    spec = {
        "family": type(model).__name__,
        "targets": list(model.targets),
        "output_targets": stems,
        "sample_rate": int(model.sample_rate),
        "nb_channels": int(model.nb_channels),
    }
    policy = model.chunking
    if policy.is_exact:
        spec["chunk_alignment"] = int(policy.alignment)
        spec["chunk_context"] = int(policy.context)
    spec.update(dict(model.export_spec()))
    if spec["kind"] not in KINDS:
        raise ValueError(f"export spec kind must be one of {KINDS}. Received: {spec['kind']!r}")
    return spec
