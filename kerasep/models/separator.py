"""The contract every kerasep separator fulfils.

A model family subclasses :class:`Separator` and declares, as data and methods, everything the
rest of the library needs; inference, training, export, evaluation and the CLI ask the model
through this contract and never probe its attributes:

- ``targets``, ``sample_rate``, ``nb_channels``: set in ``__init__`` (config arguments).
- :attr:`Separator.stems`: the names of the waveforms ``call`` returns, in order.
- :attr:`Separator.chunking`: a :class:`ChunkPolicy`, how :mod:`kerasep.inference` (and the
  ONNX runner) cut a long input for this model.
- :meth:`Separator.training_face`: what ``model.fit`` trains in the spectrogram domain (a
  :class:`TrainingFace`); the waveform domain trains the separator itself and needs nothing.
- :meth:`Separator.export_spec`: what stays a network and what becomes signal processing in an
  export (see :mod:`kerasep.export.spec` for the keys).

``call(waveform)`` maps ``(batch, nb_channels, nb_timesteps)`` float32 waveforms at
``sample_rate`` to ``{stem: (batch, nb_channels, nb_timesteps)}`` for every name in ``stems``.
"""
import dataclasses
from typing import Callable, Optional

from kerasep.backend import keras

CHUNK_KINDS = ("patch_grid", "exact", "crossfade", "segment")
#: How ``"segment"`` chunks are combined: ``"linear"`` cross-fades over the overlaps;
#: ``"triangular"``: demucs' ``apply_model`` transition weights; ``"faded"``: the windows of
#: Music-Source-Separation-Training's ``demix`` (the band-split RoFormer checkpoints).
WEIGHTINGS = ("linear", "triangular", "faded")


class NotASeparatorError(TypeError):
    """A model handed to kerasep does not fulfil the :class:`Separator` contract."""


@dataclasses.dataclass(frozen=True)
class ChunkPolicy:
    """How a long input is cut into model calls; :mod:`kerasep.inference` executes it.

    Attributes:
        kind: one of

            * ``"patch_grid"``: streamed block by block on the model's own grid of
              ``patch_frames``-frame STFT patches (``n_fft``/``hop_length``, Spleeter framing)
              through :meth:`Separator.stream_block`; every patch is computed once and the
              result equals whole-file processing.
            * ``"exact"``: chunk borders on multiples of ``alignment`` samples, ``context``
              samples of real audio each side, the middle kept: equals whole-file processing.
            * ``"crossfade"``: borders on multiples of ``alignment``, ``context_seconds`` of
              context each side, consecutive chunks cross-faded linearly over the overlap.
            * ``"segment"``: segments of ``segment_seconds`` (the model's training length)
              overlapping by ``overlap`` of their length, cross-faded linearly
              (``weighting="linear"``) or combined as demucs' ``apply_model`` does
              (``weighting="triangular"``: segments start every ``int((1 - overlap) * L)``
              samples, ``L`` the segment length; each output is weighted by the triangle
              ``[1, 2, …, L // 2, L - L // 2, …, 1] / (L - L // 2)`` (cut to the segment's length
              at the end) and the sum divided by the sum of the weights; a segment shorter
              than ``L`` at the end is run on ``L`` samples centred on it (real audio before it,
              zeros after the input), its middle kept; an input no longer than the stride
              (a single segment) is run as it is, so it equals ``call``), or
              (``weighting="faded"``) as Music-Source-Separation-Training's ``demix``: segments
              of ``L`` samples every ``L // num_overlap``, the input reflect-padded by
              ``border = L - L // num_overlap`` at both ends (when longer than ``2 * border``),
              each output weighted by a window of ones faded in and out linearly over
              ``L // 10`` samples (no fade-in on the first segment, no fade-out on the last), the
              sum divided by the sum of the windows; an input of at most ``L // num_overlap``
              samples is one call on the input as it is
              (:func:`kerasep.export.runner.chunks.iter_faded`).
        alignment: chunk borders are multiples of this many samples.
        context: samples of context each side (``"exact"``, ``"patch_grid"``).
        context_seconds: context each side in seconds (``"crossfade"``).
        segment_seconds, overlap: segment length in seconds and overlap fraction (``"segment"``).
        default_chunk_seconds: chunk length used when the caller gives none (``"segment"``:
            ``segment_seconds``).
        n_fft, hop_length, patch_frames: the STFT patch grid (``"patch_grid"``).
        weighting: ``"linear"`` (default), ``"triangular"`` or ``"faded"`` (``"segment"`` only).
        num_overlap: ``"faded"`` only: segments start every ``L // num_overlap`` samples
            (``overlap`` is then ``1 - 1 / num_overlap``).
    """

    kind: str
    alignment: int = 1
    context: int = 0
    context_seconds: float = 5.0
    segment_seconds: Optional[float] = None
    overlap: float = 0.0
    default_chunk_seconds: float = 60.0
    n_fft: Optional[int] = None
    hop_length: Optional[int] = None
    patch_frames: Optional[int] = None
    weighting: str = "linear"
    num_overlap: Optional[int] = None

    def __post_init__(self):
        if self.weighting not in WEIGHTINGS or (self.weighting != "linear" and self.kind != "segment"):
            raise ValueError(f"ChunkPolicy.weighting must be one of {WEIGHTINGS} ('triangular' for kind "
                             f"'segment' only). Received: kind={self.kind!r}, weighting={self.weighting!r}")
        if self.kind not in CHUNK_KINDS:
            raise ValueError(f"ChunkPolicy.kind must be one of {CHUNK_KINDS}. Received: kind={self.kind!r}")
        if int(self.alignment) < 1 or int(self.context) < 0:
            raise ValueError(
                f"ChunkPolicy needs alignment >= 1 and context >= 0 samples. Received: "
                f"alignment={self.alignment}, context={self.context}"
            )
        if self.kind == "segment" and not (
            self.segment_seconds and self.segment_seconds > 0 and 0 <= self.overlap < 1
        ):
            raise ValueError(
                "a 'segment' ChunkPolicy needs segment_seconds > 0 and 0 <= overlap < 1. Received: "
                f"segment_seconds={self.segment_seconds}, overlap={self.overlap}"
            )
        if self.weighting == "faded" and not (isinstance(self.num_overlap, int) and self.num_overlap >= 1):
            raise ValueError(f"a 'faded' ChunkPolicy needs an integer num_overlap >= 1. Received: "
                             f"num_overlap={self.num_overlap!r}")
        if self.kind == "patch_grid" and not (self.n_fft and self.hop_length and self.patch_frames):
            raise ValueError("a 'patch_grid' ChunkPolicy needs n_fft, hop_length and patch_frames")

    @property
    def is_exact(self):
        """Chunked output equals whole-file output (``"patch_grid"`` and ``"exact"``)."""
        return self.kind in ("patch_grid", "exact")

    def chunk_seconds(self, requested=None):
        """The chunk length to use, in seconds: ``requested`` (validated) or the default."""
        if requested is None:
            return float(self.segment_seconds if self.kind == "segment" else self.default_chunk_seconds)
        value = float(requested)
        if not value > 0:
            raise ValueError(f"chunk_seconds must be > 0. Received: {requested}")
        return value


@dataclasses.dataclass
class TrainingFace:
    """What ``model.fit`` trains in the spectrogram domain.

    Attributes:
        feature_model: the ``keras.Model`` trained on features (the U-Net core, the Open-Unmix
            target models); its weights are the separator's.
        featurize: ``(mix, {target: y}) -> (x, {target: y_features})`` on waveform batches
            ``(batch, nb_channels, nb_timesteps)``, computed in float32 inside the train step.
        targets: the names ``feature_model`` returns (the keys of the loss dict).
        default_loss: :mod:`kerasep.losses` name used when the config gives none.
        prepare: optional ``prepare(dataset) -> dict`` run once on the training batches before
            the first epoch (Open-Unmix: its input-statistics pass); returns what it measured.
    """

    feature_model: keras.Model
    featurize: Callable
    targets: list
    default_loss: str
    prepare: Optional[Callable] = None


class Separator(keras.Model):
    """Base class of every kerasep separator (see the module docstring for the contract).

    Subclasses set ``self.targets``, ``self.sample_rate`` and ``self.nb_channels`` in
    ``__init__`` and override :attr:`chunking`; the other members have defaults.

    Attributes:
        zoo_name: the zoo name the model was loaded under (set by :func:`kerasep.zoo.load`),
            else None.
        auto_backend: the engine ``backend="auto"`` (``kerasep separate``'s default) takes for
            this family: ``"onnx"`` (a verified cached export in onnxruntime, when installed) or
            ``"keras"`` for families whose Keras path measured faster side by side
            (``benchmarks/sweep.py``).
    """

    zoo_name = None
    auto_backend = "onnx"

    @property
    def stems(self):
        """Names of the waveforms ``call`` returns, in order (default: ``targets``)."""
        return list(self.targets)

    @property
    def chunking(self):
        """The :class:`ChunkPolicy` inference uses (default: 60 s chunks, 5 s cross-faded context)."""
        return ChunkPolicy("crossfade")

    def training_face(self):
        """The spectrogram-domain :class:`TrainingFace`; families without one raise."""
        raise NotImplementedError(
            f"{type(self).__name__} has no spectrogram-domain training path; use training.domain='waveform'"
        )

    def export_spec(self):
        """The family part of the export description (:mod:`kerasep.export.spec`); default: the
        whole model is one waveform network."""
        return {"kind": "waveform"}

    def stream_block(self, segment):
        """``"patch_grid"`` models only: the un-normalised overlap-added stems of one block of
        whole patches (see :func:`kerasep.inference.separate_array`)."""
        raise NotImplementedError(f"{type(self).__name__} does not stream on a patch grid")


def check_separator(model, what="model"):
    """``model`` if it fulfils the contract, else :class:`NotASeparatorError` saying what it is."""
    if not isinstance(model, Separator):
        raise NotASeparatorError(
            f"{what} must be a kerasep separator (a kerasep.models.Separator subclass such as "
            f"UNetSeparator, OpenUnmixSeparator or Demucs). Received: {type(model).__name__}"
        )
    return model


def float32_twin(layer):
    """``layer`` itself when it computes in float32, else a float32 copy of it (weightless
    signal layers under a ``mixed_float16`` policy: ``rfft`` refuses float16)."""
    if layer.compute_dtype == "float32":
        return layer
    config = dict(layer.get_config(), dtype="float32", name=f"{layer.name}_float32")
    return type(layer).from_config(config)
