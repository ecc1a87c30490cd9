"""The model: :class:`OnnxSeparator` (an exported separator in onnxruntime) and :func:`providers`."""
import json
from pathlib import Path

import numpy as np

from .common import RunnerError


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


def providers():
    """CUDA first when onnxruntime-gpu provides it, then CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    chosen = [p for p in ("CUDAExecutionProvider",) if p in available]
    return chosen + ["CPUExecutionProvider"]


class OnnxSeparator:
    """An exported separator loaded in onnxruntime.

    Args:
        path: the ``.onnx`` file written by ``kerasep export``.
        providers: onnxruntime execution providers (default: CUDA when available, else CPU).

    Attributes:
        sample_rate, nb_channels, targets, chunk_alignment, chunk_context, chunk_weighting,
        chunk_segment, chunk_overlap, metadata.
    """

    def __init__(self, path, providers=None):
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise RunnerError(f"no such ONNX model file: {path}")
        if path.stat().st_size == 0:
            raise RunnerError(f"{path}: empty file, expected an ONNX model")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # Idle worker threads sleep instead of spinning: on a busy or shared CPU spinning threads
        # steal the cores the work needs (measured 1.8x faster here under load; see README).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Without the arena, memory freed between chunks of different lengths is returned instead
        # of fragmenting a growing arena (measured: 945 MiB flat vs 1206 MiB and growing).
        options.enable_cpu_mem_arena = False
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=providers or globals()["providers"]()
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
            raise RunnerError(
                f"{path}: cannot load the ONNX model (truncated, corrupted or not an ONNX file): {exc}"
            ) from None
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        self.metadata = meta
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != "waveform" or "kerasep.sample_rate" not in meta:
            raise RunnerError(
                f"{path}: not a kerasep separator export (expected one input 'waveform' and "
                f"kerasep.* metadata; found inputs {[i.name for i in inputs]})"
            )
        self.path = str(path)
        self.sample_rate = int(meta["kerasep.sample_rate"])
        self.nb_channels = int(meta["kerasep.nb_channels"])
        self.targets = json.loads(meta["kerasep.targets"])
        outputs = [o.name for o in self.session.get_outputs()]
        if sorted(outputs) != sorted(self.targets):
            raise RunnerError(f"{path}: outputs {outputs} do not match the declared targets {self.targets}")
        self.chunk_alignment = int(meta.get("kerasep.chunk_alignment", 1))
        self.chunk_context = int(meta["kerasep.chunk_context"]) if "kerasep.chunk_context" in meta else None
        # demucs' segments (.segments): weighting, segment (samples) and overlap fraction
        self.chunk_weighting = meta.get("kerasep.chunk_weighting")
        self.chunk_segment = int(meta["kerasep.chunk_segment"]) if "kerasep.chunk_segment" in meta else None
        self.chunk_overlap = float(meta.get("kerasep.chunk_overlap", 0.0))
        if self.chunk_weighting == "triangular" and not (self.chunk_segment or 0) > 0:
            raise RunnerError(f"{path}: kerasep.chunk_weighting 'triangular' needs kerasep.chunk_segment > 0 "
                              f"samples; found {meta.get('kerasep.chunk_segment')!r}")
        #: The declared input shape: an int where a dimension is fixed, None where it is free.
        self.input_shape = [d if isinstance(d, int) and d > 0 else None for d in (inputs[0].shape or [])]
        if len(self.input_shape) != 3 or self.input_shape[1] not in (None, self.nb_channels):
            raise RunnerError(f"{path}: input 'waveform' is declared with shape {inputs[0].shape}, expected "
                              f"(batch, {self.nb_channels}, nb_timesteps)")

    def check_feed(self, shapes, what="this input"):
        """RunnerError before any work when a fixed dimension of the model's input does not take
        one of ``shapes`` (the ``(batch, nb_channels, nb_timesteps)`` it would be fed)."""
        for shape in shapes:
            for axis, (want, got) in enumerate(zip(self.input_shape, shape)):
                if want is not None and want != got:
                    raise RunnerError(
                        f"{self.path}: its input 'waveform' is fixed to shape "
                        f"{[d if d is not None else '?' for d in self.input_shape]} (axis {axis}: {want}), but "
                        f"{what} would be fed as {tuple(shape)}; export the model with a free time axis "
                        f"(kerasep export does), or pass --chunk-seconds to match "
                        f"{want / self.sample_rate:g} s")

    def check_input(self, waveform):
        """Validate a model input ``(batch, nb_channels, nb_timesteps)`` float32 array."""
        if not isinstance(waveform, np.ndarray):
            raise RunnerError(f"expected a numpy array, found {type(waveform).__name__}")
        if waveform.dtype != np.float32:
            raise RunnerError(f"expected dtype float32, found {waveform.dtype}")
        if waveform.ndim != 3:
            raise RunnerError(
                f"expected a waveform of rank 3 (batch, nb_channels, nb_timesteps), found rank "
                f"{waveform.ndim} with shape {waveform.shape}"
            )
        if waveform.shape[1] != self.nb_channels:
            raise RunnerError(
                f"expected {self.nb_channels} channels (axis 1 of (batch, nb_channels, nb_timesteps)), "
                f"found {waveform.shape[1]} (shape {waveform.shape})"
            )
        if waveform.shape[0] < 1 or waveform.shape[2] < 1:
            raise RunnerError(f"expected at least one example and one sample, found shape {waveform.shape}")

    def __call__(self, waveform):
        """``(batch, nb_channels, nb_timesteps)`` float32 → ``{target: same shape}``."""
        self.check_input(waveform)
        self.check_feed([waveform.shape], "the waveform")
        outs = self.session.run(None, {"waveform": np.ascontiguousarray(waveform)})
        return dict(zip([o.name for o in self.session.get_outputs()], outs))
