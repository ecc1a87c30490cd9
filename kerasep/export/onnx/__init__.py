"""Single-file ONNX export of a whole separator: waveform in, every stem's waveform out.

tf2onnx cannot convert an STFT/inverse-STFT pair (it handles RFFT only before ComplexAbs and has
no IRFFT handler, and writes an invalid file while reporting success). So only the trainable
core (Conv2D/BN/... on spectrogram patches; see :mod:`kerasep.export.spec`) goes through tf2onnx,
and the signal processing around it is written directly with ONNX operators (opset
:data:`OPSET`):

- framing: padding as :class:`kerasep.layers.STFT`, the signal cut into ``hop``-sample blocks and
  ``n_fft / hop`` shifted block slices concatenated (no gather, any length);
- real FFT: for patch models (the U-Net, streamed patch by patch in a ``Scan``) a two-stage
  (four-step) FFT written as two matrix products (:func:`dsp._rfft_matmul`), which onnxruntime runs
  3-4× faster than its ``DFT`` operator; elsewhere the ``DFT`` operator on ``n_fft / 2`` complex
  points (even/odd samples packed as real/imag) followed by the split that turns it into the
  ``n_fft``-point real FFT. Only the bins the model uses are formed;
- magnitude, patching, ratio masks and mask extension as in the Keras layers;
- inverse real FFT: the same two matrix products backwards (:func:`dsp._irfft_matmul`), or the
  packing run backwards (``n_fft / 2``-point inverse ``DFT``); then windowed overlap-add by
  summing shifted block copies, division by the squared-window envelope, and the crop to the
  input length.

The U-Net core is converted channels-first (no NHWC↔NCHW transposes at run time), its
``ConvTranspose`` layers are rewritten as sub-pixel convolutions
(:func:`rewrites._subpixel_conv_transposes`), and inside the ``Scan`` body it keeps its weights and a
declared input shape, so that onnxruntime runs its convolutions in the blocked NCHWc layout.

Input ``waveform``: ``(batch, nb_channels, nb_timesteps)`` float32, batch and length dynamic.
Outputs: one ``(batch, nb_channels, nb_timesteps)`` tensor per stem, named by target.
Metadata (``metadata_props``): ``kerasep.*`` keys, see :func:`metadata`.

One concern a module:

- :mod:`~kerasep.export.onnx.graph`: the ONNX graph writer (``_Graph``);
- :mod:`~kerasep.export.onnx.dsp`: framing, FFTs (``DFT`` operator or matrix products),
  overlap-add, magnitude and masks written in ONNX;
- :mod:`~kerasep.export.onnx.bridge`: the tf2onnx conversion of the core and its scoped,
  version-guarded patch of tf2onnx internals (:class:`UnsupportedVersionError` outside the
  versions it was written for);
- :mod:`~kerasep.export.onnx.rewrites`: sub-pixel ``ConvTranspose`` rewrite, float16 and int8;
- :mod:`~kerasep.export.onnx.attention`: attention chains as onnxruntime's ``MultiHeadAttention``
  (the RoFormers' ``core_rewrites``);
- :mod:`~kerasep.export.onnx.layouts`: the whole graph for each layout (spectral, patch stream,
  waveform); :mod:`~kerasep.export.onnx.hybrid`: the ``"hybrid"`` layout (HT-Demucs: demucs'
  spectrogram pair in ONNX operators around a two-input, two-output core);
- :mod:`~kerasep.export.onnx.save`: :func:`to_onnx`, :func:`save_onnx` and the smoke test;
  :func:`metadata` and :func:`weights_sha256` live in :mod:`kerasep.export.metadata` (shared
  with the SavedModel export).
"""
from kerasep.export.metadata import OPSET, metadata, weights_sha256
from kerasep.export.onnx.bridge import UnsupportedVersionError
from kerasep.export.onnx.save import save_onnx, to_onnx

__all__ = ["save_onnx", "to_onnx", "metadata", "weights_sha256", "OPSET", "UnsupportedVersionError"]
