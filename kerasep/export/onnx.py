"""Single-file ONNX export of a whole separator: waveform in, every stem's waveform out.

tf2onnx cannot convert an STFT/inverse-STFT pair (it handles RFFT only before ComplexAbs and has
no IRFFT handler, and writes an invalid file while reporting success). So only the trainable
core (Conv2D/BN/... on spectrogram patches; see :mod:`kerasep.export.spec`) goes through tf2onnx,
and the signal processing around it is written directly with ONNX operators (opset
:data:`OPSET`):

- framing: padding as :class:`kerasep.layers.STFT`, the signal cut into ``hop``-sample blocks and
  ``n_fft / hop`` shifted block slices concatenated (no gather, any length);
- real FFT: for patch models (the U-Net, streamed patch by patch in a ``Scan``) a two-stage
  (four-step) FFT written as two matrix products (:func:`_rfft_matmul`), which onnxruntime runs
  3-4× faster than its ``DFT`` operator; elsewhere the ``DFT`` operator on ``n_fft / 2`` complex
  points (even/odd samples packed as real/imag) followed by the split that turns it into the
  ``n_fft``-point real FFT. Only the bins the model uses are formed;
- magnitude, patching, ratio masks and mask extension as in the Keras layers;
- inverse real FFT: the same two matrix products backwards (:func:`_irfft_matmul`), or the
  packing run backwards (``n_fft / 2``-point inverse ``DFT``); then windowed overlap-add by
  summing shifted block copies, division by the squared-window envelope, and the crop to the
  input length.

The U-Net core is converted channels-first (no NHWC↔NCHW transposes at run time), its
``ConvTranspose`` layers are rewritten as sub-pixel convolutions
(:func:`_subpixel_conv_transposes`), and inside the ``Scan`` body it keeps its weights and a
declared input shape, so that onnxruntime runs its convolutions in the blocked NCHWc layout.

Input ``waveform``: ``(batch, nb_channels, nb_timesteps)`` float32, batch and length dynamic.
Outputs: one ``(batch, nb_channels, nb_timesteps)`` tensor per stem, named by target.
Metadata (``metadata_props``): ``kerasep.*`` keys, see :func:`metadata`.
"""
import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

#: ONNX opset of exported files (DFT needs >= 17; onnxruntime CPU/CUDA implement it).
OPSET = 17


def _onnx():
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("ONNX export needs `onnx` and `tf2onnx`: pip install 'kerasep[onnx]'") from exc
    return onnx


class _Graph:
    """A tiny ONNX graph writer: ``g.op("Add", a, b)`` returns the output's name."""

    def __init__(self, prefix="sp"):
        self.nodes = []
        self.initializers = []
        self.prefix = prefix
        self._n = 0
        self._consts = {}  # identical constants are stored once

    def name(self, hint):
        self._n += 1
        return f"{self.prefix}/{hint}_{self._n}"

    def const(self, value, dtype=None, hint="c"):
        from onnx import numpy_helper

        arr = np.asarray(value, dtype=dtype)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        key = (arr.dtype.str, arr.shape, hashlib.sha1(np.ascontiguousarray(arr).tobytes()).hexdigest())
        if key not in self._consts:
            self._consts[key] = self.name(hint)
            self.initializers.append(numpy_helper.from_array(arr, self._consts[key]))
        return self._consts[key]

    def ints(self, *values):
        return self.const(np.asarray(values, np.int64), hint="i")

    def op(self, op_type, *inputs, out=None, hint=None, **attrs):
        from onnx import helper

        out = out or self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=self.name(op_type), **attrs))
        return out

    # --- shape helpers (int64 scalars as 1-element tensors) ---
    def dim(self, x, axis):
        return self.op("Shape", x, start=axis, end=axis + 1)

    def slice(self, x, start, end, axis):
        s = start if isinstance(start, str) else self.ints(start)
        e = end if isinstance(end, str) else self.ints(end)
        return self.op("Slice", x, s, e, self.ints(axis))

    def take(self, x, indices, axis):
        """``x`` indexed by constant ``indices`` along ``axis``, as Slices of the runs of
        consecutive (ascending or descending) indices: much faster than Gather in onnxruntime."""
        indices = [int(i) for i in indices]
        runs, start = [], 0
        for i in range(1, len(indices) + 1):
            step = indices[start + 1] - indices[start] if start + 1 < len(indices) else 1
            if i < len(indices) and abs(step) == 1 and indices[i] - indices[i - 1] == step:
                continue
            runs.append((indices[start], indices[i - 1], step if i - 1 > start else 1))
            start = i
        parts = []
        for first, last, step in runs:
            end = last + step if last + step >= 0 else -(2 ** 63)
            parts.append(self.op("Slice", x, self.ints(first), self.ints(end), self.ints(axis), self.ints(step)))
        return parts[0] if len(parts) == 1 else self.op("Concat", *parts, axis=axis)

    def pad_axis(self, x, rank, axis, before, after, mode="constant"):
        """Pad ``x`` along ``axis`` (``before``/``after``: ints or 1-element int64 tensors)."""
        parts = []
        for value in (before, after):
            parts.append(value if isinstance(value, str) else self.ints(value))
        zero = self.ints(0)
        begin, end = [zero] * rank, [zero] * rank
        begin[axis], end[axis] = parts
        pads = self.op("Concat", *(begin + end), axis=0)
        return self.op("Pad", x, pads, mode=mode)


def _hann(n_fft):
    n = np.arange(n_fft, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)


def _frames(g, x, spec):
    """``x`` (batch, nb_channels, nb_timesteps) → windowed frames (batch, nb_channels, nb_frames,
    n_fft), and ``nb_frames`` (1-element int64)."""
    n_fft, hop, padding = spec["n_fft"], spec["hop_length"], spec["padding"]
    r = n_fft // hop
    if padding == "spleeter":
        x = g.pad_axis(x, 3, 2, n_fft, 0)
    elif padding == "center":
        mode = "reflect" if spec.get("pad_mode", "constant") == "reflect" else "constant"
        x = g.pad_axis(x, 3, 2, n_fft // 2, n_fft // 2, mode=mode)
    length = g.dim(x, 2)
    hop_c = g.ints(hop)
    if padding == "spleeter":  # tf.signal.frame(pad_end=True): ceil(length / hop) frames
        nb_frames = g.op("Div", g.op("Add", length, g.ints(hop - 1)), hop_c)
    else:
        nb_frames = g.op("Add", g.op("Div", g.op("Sub", length, g.ints(n_fft)), hop_c), g.ints(1))
    total = g.op("Mul", g.op("Add", nb_frames, g.ints(r - 1)), hop_c)
    extra = g.op("Max", g.op("Sub", total, length), g.ints(0))
    x = g.pad_axis(x, 3, 2, 0, extra)
    x = g.slice(x, 0, total, 2)
    blocks = g.op("Reshape", x, g.ints(0, 0, -1, hop))  # (b, c, nb_frames + r - 1, hop)
    shifted = [g.slice(blocks, g.ints(k), g.op("Add", nb_frames, g.ints(k)), 2) for k in range(r)]
    frames = g.op("Concat", *shifted, axis=3) if r > 1 else shifted[0]
    frames = g.op("Mul", frames, g.const(_hann(n_fft), np.float32, "window"))
    return frames, nb_frames


def _rfft(g, frames, n_fft, nb_bins):
    """Real FFT of ``frames`` (..., n_fft) → (real, imag), each (..., nb_bins), via an
    ``n_fft/2``-point complex DFT of the even/odd-packed frames."""
    h = n_fft // 2
    z = g.op("Reshape", frames, g.ints(0, 0, 0, h, 2))  # even samples real, odd imag
    z = g.op("DFT", z, axis=3, inverse=0, onesided=0)  # (b, c, f, h, 2)
    k = np.arange(nb_bins)
    zk = g.take(z, k % h, 3)
    zr = g.take(z, (h - k) % h, 3)
    a, b = (g.op("Squeeze", g.slice(zk, i, i + 1, 4), g.ints(4)) for i in (0, 1))
    c, d = (g.op("Squeeze", g.slice(zr, i, i + 1, 4), g.ints(4)) for i in (0, 1))
    theta = 2.0 * np.pi * k / n_fft
    half = g.const(np.float32(0.5))
    sin = g.const(0.5 * np.sin(theta), np.float32, "sin")
    cos = g.const(0.5 * np.cos(theta), np.float32, "cos")
    # X[k] = E + W^k O with E = (Z[k] + Z*[h-k]) / 2, O = (Z[k] - Z*[h-k]) / (2i), W = e^{-2πi/n}
    p, q = g.op("Sub", a, c), g.op("Add", b, d)
    real = g.op("Add", g.op("Mul", g.op("Add", a, c), half),
                g.op("Sub", g.op("Mul", q, cos), g.op("Mul", p, sin)))
    imag = g.op("Sub", g.op("Mul", g.op("Sub", b, d), half),
                g.op("Add", g.op("Mul", q, sin), g.op("Mul", p, cos)))
    return real, imag


def _irfft(g, real, imag, n_fft, nb_bins):
    """Inverse real FFT: bins (..., nb_bins) (missing bins up to n_fft/2 are zeros) → time
    frames (..., n_fft), via an ``n_fft/2``-point inverse DFT."""
    h = n_fft // 2
    if nb_bins < h + 1:
        real = g.pad_axis(real, 4, 3, 0, h + 1 - nb_bins)
        imag = g.pad_axis(imag, 4, 3, 0, h + 1 - nb_bins)
    k = np.arange(h)
    a, b = g.take(real, k, 3), g.take(imag, k, 3)
    c, d = g.take(real, h - k, 3), g.take(imag, h - k, 3)
    theta = 2.0 * np.pi * k / n_fft
    half = g.const(np.float32(0.5))
    sin = g.const(0.5 * np.sin(theta), np.float32, "sin")
    cos = g.const(0.5 * np.cos(theta), np.float32, "cos")
    # E = (X[k] + X*[h-k]) / 2, O = (X[k] - X*[h-k]) e^{+2πik/n} / 2, Z = E + iO
    p, q = g.op("Sub", a, c), g.op("Add", b, d)
    o_re = g.op("Sub", g.op("Mul", p, cos), g.op("Mul", q, sin))
    o_im = g.op("Add", g.op("Mul", p, sin), g.op("Mul", q, cos))
    z_re = g.op("Sub", g.op("Mul", g.op("Add", a, c), half), o_im)
    z_im = g.op("Add", g.op("Mul", g.op("Sub", b, d), half), o_re)
    z = g.op("Concat", g.op("Unsqueeze", z_re, g.ints(4)), g.op("Unsqueeze", z_im, g.ints(4)), axis=4)
    z = g.op("DFT", z, axis=3, inverse=1, onesided=0)  # (b, c, f, h, 2): even/odd samples
    return g.op("Reshape", z, g.ints(0, 0, 0, n_fft))


def _windowed_ola(g, frames, n_fft, hop):
    """Frames (b, c, nb_frames, n_fft) × window, overlap-added by summing ``n_fft / hop`` shifted
    block copies → (b, c, nb_frames + n_fft / hop - 1, 1, hop) (not divided by the envelope)."""
    r = n_fft // hop
    frames = g.op("Mul", frames, g.const(_hann(n_fft), np.float32, "window"))
    blocks = g.op("Reshape", frames, g.ints(0, 0, 0, r, hop))
    parts = [g.pad_axis(g.slice(blocks, k, k + 1, 3), 5, 2, k, r - 1 - k) for k in range(r)]
    return g.op("Sum", *parts) if r > 1 else parts[0]


def _overlap_add(g, frames, nb_frames, length, spec):
    """Windowed overlap-add of ``frames`` (b, c, nb_frames, n_fft), divided by the squared-window
    envelope (as :class:`kerasep.layers.ISTFT`), cropped to ``length`` samples."""
    n_fft, hop, padding = spec["n_fft"], spec["hop_length"], spec["padding"]
    r = n_fft // hop
    window = _hann(n_fft)
    signal = _windowed_ola(g, frames, n_fft, hop)  # (b, c, nb_frames + r - 1, 1, hop)
    # envelope[j] = sum_k w²[k-th block] * [0 <= j - k < nb_frames]
    j = g.op("Range", g.const(np.int64(0)), g.op("Squeeze", g.op("Add", nb_frames, g.ints(r - 1)), g.ints(0)),
             g.const(np.int64(1)))
    jk = g.op("Sub", g.op("Unsqueeze", j, g.ints(1)), g.const(np.arange(r)[None, :], np.int64))
    inside = g.op("And", g.op("GreaterOrEqual", jk, g.ints(0)), g.op("Less", jk, nb_frames))
    w2 = (window ** 2).reshape(r, hop)
    envelope = g.op("MatMul", g.op("Cast", inside, to=1), g.const(w2, np.float32, "w2"))
    tiny = g.const(np.float32(1e-11))
    envelope = g.op("Where", g.op("Greater", envelope, tiny), envelope, g.const(np.float32(1.0)))
    signal = g.op("Div", signal, g.op("Unsqueeze", envelope, g.ints(1)))
    signal = g.op("Reshape", signal, g.ints(0, 0, -1))
    start = {"spleeter": n_fft, "center": n_fft // 2, "valid": 0}[padding]
    end = g.op("Add", length, g.ints(start))
    missing = g.op("Max", g.op("Sub", end, g.dim(signal, 2)), g.ints(0))
    signal = g.pad_axis(signal, 3, 2, 0, missing)
    return g.slice(signal, start, end, 2)


@contextlib.contextmanager
def _lean_tf2onnx():
    """tf2onnx without its per-pass protobuf refresh.

    tf2onnx's optimizer loop (≈ 12 optimizers × 3+ iterations) ends every pass with
    ``graph.update_proto()``, which copies every constant tensor into the nodes' protobuf
    messages; protobuf (upb) keeps the replaced copies in the message arena, so each pass leaves
    one more copy of all the weights alive (measured: +60 MiB per pass for a 16.6 M-parameter
    Demucs, 13 GiB peak for 66 M parameters; the released 265.6 M-parameter model did not fit in
    24 GiB). The protos are only read when the model is written, and ``make_model`` refreshes
    them once then; the passes themselves work on tf2onnx's own node structures. Also supplies
    ``numpy.product`` (removed in numpy 2, still called by tf2onnx's ``large_model`` path)."""
    import tf2onnx.optimizer.optimizer_base as base

    original = base.GraphOptimizerBase.optimize

    def optimize(self, graph, iteration):
        self.opt_iteration = iteration
        graph = self._optimize(graph)
        graph.delete_unused_nodes(graph.outputs)
        return graph

    shim = not hasattr(np, "product")
    base.GraphOptimizerBase.optimize = optimize
    if shim:
        np.product = np.prod
    try:
        yield
    finally:
        base.GraphOptimizerBase.optimize = original
        if shim:
            del np.product


def _inline_external_tensors(proto, storage):
    """Move tf2onnx ``large_model`` external tensors (``storage.name_to_tensor_data``) into the
    initializers' ``raw_data``, emptying the storage as it goes (one copy alive at a time)."""
    from onnx import TensorProto

    if storage is None:
        return proto
    data = storage.name_to_tensor_data

    def inline(graph):
        for init in graph.initializer:
            if init.data_location == TensorProto.EXTERNAL:
                location = next(e.value for e in init.external_data if e.key == "location")
                init.raw_data = data.pop(location)
                del init.external_data[:]
                init.data_location = TensorProto.DEFAULT
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == attr.GRAPH:
                    inline(attr.g)
                elif attr.type == attr.GRAPHS:
                    for sub in attr.graphs:
                        inline(sub)
                elif attr.type == attr.TENSOR and attr.t.data_location == TensorProto.EXTERNAL:
                    location = next(e.value for e in attr.t.external_data if e.key == "location")
                    attr.t.raw_data = data.pop(location)
                    del attr.t.external_data[:]
                    attr.t.data_location = TensorProto.DEFAULT

    inline(proto.graph)
    if data:
        raise RuntimeError(f"tf2onnx left {len(data)} external tensors unreferenced: {sorted(data)[:5]}")
    return proto


def _convert_core(spec, opset, nchw=False):
    """tf2onnx conversion of the spectrogram core; returns (ModelProto, input name, output names
    in ``spec['targets']`` order). With ``nchw`` (4-D image cores: the U-Net) the core's input and
    outputs are channels-first, ``(batch, channels, T, F)``: tf2onnx's own NHWC↔NCHW transposes
    around the convolutions then cancel out instead of running on every call."""
    import tf2onnx

    from kerasep.backend import tf

    core, targets = spec["core"], spec["targets"]
    shape = list(core.inputs[0].shape)
    signature = [tf.TensorSpec([None] + shape[1:], tf.float32, name="core_input")]

    @tf.function(input_signature=signature)
    def fn(x):
        out = core(x, training=False)
        return [tf.identity(out[t], name=f"core_{i}") for i, t in enumerate(targets)]

    layout = {}
    if nchw:
        concrete = fn.get_concrete_function()
        layout = dict(inputs_as_nchw=[t.name for t in concrete.inputs],
                      outputs_as_nchw=[t.name for t in concrete.outputs])
    with _lean_tf2onnx():
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=signature, opset=opset, **layout)
    inputs = [i.name for i in proto.graph.input]
    outputs = [o.name for o in proto.graph.output]
    if len(inputs) != 1 or len(outputs) != len(targets):
        raise RuntimeError(
            f"tf2onnx produced {len(inputs)} inputs / {len(outputs)} outputs for the core; "
            f"expected 1 / {len(targets)}"
        )
    return proto, inputs[0], outputs


def _spectral_graph(spec, opset, precision="float32"):
    onnx = _onnx()
    from onnx import compose, helper, TensorProto

    stream = spec["core_layout"] == "patches" and spec["padding"] == "spleeter"
    core_proto, core_in, core_outs = _convert_core(spec, opset, nchw=stream)
    if precision == "float16":
        # Only the network goes to float16 (float32 in/out); the FFTs, masks and overlap-add
        # stay float32 (they need the accuracy).
        core_proto = _to_float16(_subpixel_conv_transposes(core_proto))
    elif precision == "int8":
        # quantised first: its ConvTranspose weights stay float32 (as before), then rewritten
        core_proto = _subpixel_conv_transposes(_to_int8(core_proto))
    else:
        core_proto = _subpixel_conv_transposes(core_proto)
    core_proto = compose.add_prefix(core_proto, "core/")
    core_in, core_outs = "core/" + core_in, ["core/" + o for o in core_outs]

    n_fft, hop = spec["n_fft"], spec["hop_length"]
    if n_fft % hop or n_fft % 2:
        raise NotImplementedError(
            f"ONNX export needs an even n_fft that is a multiple of hop_length; "
            f"found n_fft={n_fft}, hop_length={hop}"
        )
    if stream:
        return _finish(onnx, _patch_stream_graph(spec, core_proto, core_in, core_outs), core_proto, opset)
    nb_bins, targets = spec["nb_bins"], spec["targets"]
    nb_channels = spec["nb_channels"]
    full = n_fft // 2 + 1
    ext = spec.get("mask_extension", "zeros")
    g = _Graph()
    x = "waveform"
    batch, length = g.dim(x, 0), g.dim(x, 2)
    frames, nb_frames = _frames(g, x, spec)
    real, imag = _rfft(g, frames, n_fft, full if ext == "average" else nb_bins)
    if ext == "average":
        real_f, imag_f = g.slice(real, 0, nb_bins, 3), g.slice(imag, 0, nb_bins, 3)
    else:
        real_f, imag_f = real, imag
    energy = g.op("Add", g.op("Mul", real_f, real_f), g.op("Mul", imag_f, imag_f))
    power = float(spec.get("power", 1.0))
    if power == 1.0:
        mag = g.op("Sqrt", energy)
    elif power == 2.0:
        mag = energy
    else:
        mag = g.op("Pow", energy, g.const(np.float32(power / 2.0)))  # (b, c, f, nb_bins)

    layout = spec["core_layout"]
    if layout == "patches":
        t = int(spec["patch_frames"])
        m = g.op("Transpose", mag, perm=[0, 2, 3, 1])  # (b, f, nb_bins, c)
        pad = g.op("Mod", g.op("Sub", g.ints(t), g.op("Mod", nb_frames, g.ints(t))), g.ints(t))
        m = g.pad_axis(m, 4, 1, 0, pad)
        patches = g.op("Reshape", m, g.ints(-1, t, nb_bins, nb_channels))
    elif layout == "frames":
        g.op("Identity", mag, out=core_in)
    elif layout == "stft":  # the core takes the complex STFT itself: (b, c, f, nb_bins, 2)
        g.op("Concat", g.op("Unsqueeze", real_f, g.ints(4)), g.op("Unsqueeze", imag_f, g.ints(4)),
             axis=4, out=core_in)
    else:
        raise ValueError(f"core_layout must be 'patches', 'frames' or 'stft'. Received: {layout!r}")
    if layout == "patches":
        # The core runs patch by patch in a Scan: peak memory is one patch's activations whatever
        # the input length (so long chunks, with little context overhead, stay within bounds).
        core_nodes, core_outs = [], _scan_core(g, core_proto, core_in, core_outs, patches)
    else:
        core_nodes = list(core_proto.graph.node)
    pre_nodes = list(g.nodes)
    g.nodes = []

    if spec["core_output"] == "magnitude":
        p = float(spec.get("separation_exponent", 2.0))
        powered = [g.op("Mul", o, o) if p == 2.0 else g.op("Pow", o, g.const(np.float32(p))) for o in core_outs]
        total = powered[0]
        for extra in powered[1:]:
            total = g.op("Add", total, extra)
        eps = float(spec.get("eps", 1e-10))
        total = g.op("Add", total, g.const(np.float32(eps)))
        share = g.const(np.float32(eps / len(core_outs)))
        masks = [g.op("Div", g.op("Add", x_, share), total) for x_ in powered]
    elif spec["core_output"] == "mask":
        masks = list(core_outs)
    elif spec["core_output"] == "stft":  # the core returns each stem's STFT (b, c, f, nb_bins, 2)
        masks = [None] * len(core_outs)
    else:
        raise ValueError(
            f"core_output must be 'magnitude', 'mask' or 'stft'. Received: {spec['core_output']!r}"
        )
    masks = dict(zip(targets, masks))
    core_by_target = dict(zip(targets, core_outs))

    outputs = []
    for target in spec["output_targets"]:
        if spec["core_output"] == "stft":
            stem = core_by_target[target]
            y_re = g.op("Squeeze", g.slice(stem, 0, 1, 4), g.ints(4))
            y_im = g.op("Squeeze", g.slice(stem, 1, 2, 4), g.ints(4))
            out = _overlap_add(g, _irfft(g, y_re, y_im, n_fft, nb_bins), nb_frames, length, spec)
            g.op("Identity", out, out=target)
            outputs.append(target)
            continue
        mask = masks[target]
        if layout == "patches":
            mask = g.op("Reshape", mask, g.op("Concat", batch, g.ints(-1, nb_bins, nb_channels), axis=0))
            mask = g.slice(mask, 0, nb_frames, 1)
            mask = g.op("Transpose", mask, perm=[0, 3, 1, 2])  # (b, c, f, nb_bins)
        if ext == "average":
            mean = g.op("ReduceMean", mask, axes=[3], keepdims=1)
            shape = g.op("Concat", g.op("Shape", mask, end=3), g.ints(full - nb_bins), axis=0)
            mask = g.op("Concat", mask, g.op("Expand", mean, shape), axis=3)
            k = full
        else:
            k = nb_bins
        y_re, y_im = g.op("Mul", real, mask), g.op("Mul", imag, mask)
        frames_t = _irfft(g, y_re, y_im, n_fft, k)
        out = _overlap_add(g, frames_t, nb_frames, length, spec)
        g.op("Identity", out, out=target)
        outputs.append(target)
    post_nodes = g.nodes

    wave_in = helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", nb_channels, "nb_timesteps"])
    outs = [helper.make_tensor_value_info(t, TensorProto.FLOAT, ["batch", nb_channels, "nb_timesteps"])
            for t in outputs]
    graph = helper.make_graph(
        pre_nodes + core_nodes + post_nodes,
        "kerasep_separator",
        [wave_in],
        outs,
        initializer=g.initializers + list(core_proto.graph.initializer),
    )
    return _finish(onnx, graph, core_proto, opset)


def _finish(onnx, graph, core_proto, opset):
    from onnx import helper

    opsets = {o.domain: o.version for o in core_proto.opset_import}
    opsets[""] = max(opsets.get("", opset), opset)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
                              producer_name="kerasep")
    model.ir_version = min(model.ir_version, core_proto.ir_version) if core_proto.ir_version else model.ir_version
    onnx.checker.check_model(model)
    return model


def _ratio_masks(g, estimates, spec):
    p = float(spec.get("separation_exponent", 2.0))
    powered = [g.op("Mul", o, o) if p == 2.0 else g.op("Pow", o, g.const(np.float32(p))) for o in estimates]
    total = powered[0]
    for extra in powered[1:]:
        total = g.op("Add", total, extra)
    eps = float(spec.get("eps", 1e-10))
    total = g.op("Add", total, g.const(np.float32(eps)))
    share = g.const(np.float32(eps / len(estimates)))
    return [g.op("Div", g.op("Add", x_, share), total) for x_ in powered]


def _magnitude(g, energy, spec):
    power = float(spec.get("power", 1.0))
    if power == 1.0:
        return g.op("Sqrt", energy)
    if power == 2.0:
        return energy
    return g.op("Pow", energy, g.const(np.float32(power / 2.0)))


def _fft_split(n_fft, hop, nb_bins):
    """``(n1, n2, k1)`` for the two-stage (four-step) FFT as matrix products: ``n_fft = n1 * n2``
    with ``n1`` dividing ``hop`` (frames start on the ``n1``-sample grid), ``k1 = ceil(nb_bins /
    n2)`` output rows; the split with the fewest multiply-adds (``2 n2 + 4 k1`` per sample and
    direction). None when no split exists."""
    best = None
    for n1 in range(2, n_fft // 2 + 1):
        if n_fft % n1 or hop % n1:
            continue
        n2 = n_fft // n1
        k1 = -(-nb_bins // n2)
        if k1 > n1 // 2 + 1:  # bins past n_fft / 2 are never needed
            continue
        cost = (2 * n2 + 4 * k1, -n2)
        if best is None or cost < best[0]:
            best = (cost, (n1, n2, k1))
    return best and best[1]


def _rfft_matmul(g, segment, n_fft, hop, t, n1, n2, k1):
    """Windowed real FFT of the ``t`` frames of ``segment`` ``(b, c, (t - 1) * hop + n_fft)`` as
    two matrix products (the four-step FFT: ``n = i1 + n1 * i2``, ``k = j1 * n2 + j2``):

    1. the frames, laid out ``(i1, frame, i2)`` (one transpose of the segment, then ``n_fft / hop``
       shifted block slices), times per-``i1`` matrices ``(i2 → j2)`` that hold the window, the
       ``n2``-point DFT and the twiddle factors ``e^{-2πi j2 i1 / n_fft}``: one batched MatMul;
    2. one matrix ``(j1, re/im) × (i1, re/im)`` (the ``n1``-point DFT, only the ``k1`` rows of
       wanted bins) times the result seen as a ``(2 n1, frames * n2)`` matrix.

    Returns the spectrum ``(2, k1, M * n2)`` (real/imag, ``j1``, ``(frame, j2)``) with frames
    ``M = (b, c, t)``: bin ``j1 * n2 + j2`` of every frame. About 1.5 ``(n2 + 2 k1)`` multiply-adds
    per sample, dense GEMMs, instead of onnxruntime's ``DFT`` operator (3-4× slower here)."""
    r = n_fft // hop
    w = _hann(n_fft)
    i1, i2, j2 = np.arange(n1)[:, None, None], np.arange(n2)[None, :, None], np.arange(n2)[None, None, :]
    n = i1 + n1 * i2
    theta = 2.0 * np.pi * j2 * n / n_fft
    w1 = np.stack([w[n] * np.cos(theta), -w[n] * np.sin(theta)], axis=1)  # (n1, 2, i2, j2)
    phi = 2.0 * np.pi * np.arange(k1)[:, None] * np.arange(n1)[None, :] / n1  # (j1, i1)
    c, s_ = np.cos(phi), np.sin(phi)
    c2 = np.zeros((2, k1, n1, 2))
    c2[0, :, :, 0], c2[0, :, :, 1], c2[1, :, :, 0], c2[1, :, :, 1] = c, s_, -s_, c
    x = g.op("Reshape", segment, g.ints(0, 0, -1, n1))
    x = g.op("Transpose", x, perm=[3, 0, 1, 2])  # (n1, b, c, L / n1)
    blocks = g.op("Reshape", x, g.ints(0, 0, 0, t + r - 1, hop // n1))
    shifted = [g.slice(blocks, k, k + t, 3) for k in range(r)]
    frames = g.op("Concat", *shifted, axis=4) if r > 1 else shifted[0]  # (n1, b, c, t, n2)
    frames = g.op("Reshape", frames, g.ints(n1, 1, -1, n2))
    a = g.op("MatMul", frames, g.const(w1, np.float32, "fft_w1"))  # (n1, 2, M, n2)
    a = g.op("Reshape", a, g.ints(2 * n1, -1))
    x = g.op("MatMul", g.const(c2.reshape(2 * k1, 2 * n1), np.float32, "fft_c2"), a)  # (2 k1, M n2)
    return g.op("Reshape", x, g.ints(2, k1, -1))


def _irfft_matmul(g, spectrum, mask, nb_bins, n_fft, hop, t, nb_channels, n1, n2, k1):
    """``spectrum`` ``(2, k1, M * n2)`` (from :func:`_rfft_matmul`) times ``mask`` ``(b, c, t,
    nb_bins)`` (bins past ``nb_bins`` are zero), inverse real FFT, synthesis window and overlap-add
    of the ``t`` frames → ``(b, c, (t - 1) * hop + n_fft)`` (not divided by the window envelope).

    The same two stages backwards: one matrix ``(i1, re/im) × (re/im, j1)`` (``n1``-point inverse
    DFT, scaled 2 / n_fft), then per-``i1`` matrices ``(re/im, j2) → i2`` holding the twiddles, the
    ``n2``-point inverse DFT, the real part and the window. Bin 0 and ``n_fft / 2`` count once
    (their mask entries are halved), as ``irfft``."""
    r = n_fft // hop
    w = _hann(n_fft)
    nb = k1 * n2
    scale = np.ones(nb)
    scale[0] = 0.5
    if n_fft // 2 < nb:
        scale[n_fft // 2] = 0.5
    scale[nb_bins:] = 0.0  # beyond the mask, and anything past n_fft / 2
    phi = 2.0 * np.pi * np.arange(n1)[:, None] * np.arange(k1)[None, :] / n1  # (i1, j1)
    c, s_ = np.cos(phi), np.sin(phi)
    ha = np.zeros((n1, 2, 2, k1))
    ha[:, 0, 0], ha[:, 0, 1], ha[:, 1, 0], ha[:, 1, 1] = c, -s_, s_, c
    ha *= 2.0 / n_fft
    i1, j2, i2 = np.arange(n1)[:, None, None], np.arange(n2)[None, :, None], np.arange(n2)[None, None, :]
    n = i1 + n1 * i2
    psi = 2.0 * np.pi * j2 * n / n_fft
    p = np.stack([w[n] * np.cos(psi), -w[n] * np.sin(psi)], axis=1)  # (n1, 2, j2, i2)

    if nb_bins < nb:
        mask = g.pad_axis(mask, 4, 3, 0, nb - nb_bins)
    elif nb_bins > nb:
        mask = g.slice(mask, 0, nb, 3)
    mask = g.op("Mul", mask, g.const(scale, np.float32, "bin_scale"))
    mask = g.op("Reshape", mask, g.ints(0, 0, 0, k1, n2))
    mask = g.op("Transpose", mask, perm=[3, 0, 1, 2, 4])  # (k1, b, c, t, n2)
    y = g.op("Mul", spectrum, g.op("Reshape", mask, g.ints(1, k1, -1)))  # (2, k1, M n2)
    y = g.op("Reshape", y, g.ints(2 * k1, -1))
    parts = []
    for ri in range(2):  # real and imaginary parts: two products each, summed (no reduction pass)
        z = g.op("MatMul", g.const(ha[:, ri].reshape(n1, 2 * k1), np.float32, "ifft_ha"), y)  # (n1, M n2)
        parts.append(g.op("MatMul", g.op("Reshape", z, g.ints(n1, -1, n2)), g.const(p[:, ri], np.float32, "ifft_p")))
    z = g.op("Add", *parts)  # (n1, M, n2): windowed frames, n = i1 + n1 i2
    # overlap-add: frame f sample i1 + n1 * i2 lands on block (f + q) of the segment, q = i2 // (hop / n1)
    z = g.op("Reshape", z, g.ints(n1, -1, nb_channels, t, r, hop // n1))
    parts = [g.pad_axis(g.slice(z, q, q + 1, 4), 6, 3, q, r - 1 - q) for q in range(r)]
    z = g.op("Sum", *parts) if r > 1 else parts[0]  # (n1, b, c, t + r - 1, 1, hop / n1)
    z = g.op("Reshape", z, g.ints(n1, 0, 0, -1))
    z = g.op("Transpose", z, perm=[1, 2, 3, 0])  # (b, c, L / n1, n1)
    return g.op("Reshape", z, g.ints(0, 0, -1))


def _subpixel_conv_transposes(proto, min_out_channels=8):
    """Rewrite each 2-D ``ConvTranspose`` whose output is exactly ``stride`` × its input (the
    Keras ``padding="same"`` case) as one ``Conv`` per output phase (the kernel taps that reach
    it: 2×2, 2×3, 3×2 and 3×3 for a 5×5 kernel of stride 2, the same multiply-adds) whose outputs
    are interleaved by ``DepthToSpace``. onnxruntime runs these convolutions in its blocked NCHWc
    layout, about twice as fast as its ``ConvTranspose`` (GEMM + col2im) on the U-Net's decoder.
    Layers with fewer than ``min_out_channels`` outputs (the last one: 1) stay as they are (the
    blocked layout does not pay off there). Exact up to float rounding.

    A ``Relu`` then a per-channel ``Mul`` by positive constants after the layer (the decoder's
    activation and BatchNorm scale) are folded in: ``s * relu(y) = relu(s * y)``, so the scale
    goes into the phase weights and biases and each phase convolution ends in a fused ``Relu``
    (two full-resolution passes fewer)."""
    from onnx import helper, numpy_helper

    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}

    def attr(node, name, default=None):
        for a in node.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default

    consumers = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in graph.output}

    def only_consumer(name, op_type):
        found = consumers.get(name, [])
        if name in graph_outputs or len(found) != 1 or found[0].op_type != op_type:
            return None
        return found[0]

    def positive_channel_scale(mul, x, channels):
        other = [i for i in mul.input if i != x]
        if len(other) != 1 or other[0] not in inits:
            return None
        scale = numpy_helper.to_array(inits[other[0]])
        if scale.size != channels or scale.shape not in ((channels, 1, 1), (1, channels, 1, 1)) or not (scale > 0).all():
            return None
        return scale.reshape(channels).astype(np.float32)

    nodes, new_inits, dropped = [], [], set()
    for node in graph.node:
        if id(node) in dropped:
            continue
        weight = inits.get(node.input[1]) if node.op_type == "ConvTranspose" and len(node.input) > 1 else None
        w = numpy_helper.to_array(weight) if weight is not None else None
        plan = None
        if (w is not None and w.ndim == 4 and w.dtype == np.float32 and attr(node, "group", 1) == 1
                and list(attr(node, "dilations", [1, 1])) == [1, 1] and not attr(node, "output_padding")
                and not attr(node, "output_shape") and attr(node, "auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
                and w.shape[1] >= min_out_channels):
            strides = list(attr(node, "strides", [1, 1]))
            pads = list(attr(node, "pads", [0, 0, 0, 0]))
            plan = []
            for ax in range(2):
                s, k, pb, pe = strides[ax], w.shape[2 + ax], pads[ax], pads[ax + 2]
                if s != strides[0] or s < 2 or k - pb - pe != s:
                    plan = None
                    break
                # output o = s * m + phase takes input m + d through tap kk: s * (m + d) + kk - pb = o
                per = [{(ph + pb - kk) // s: kk for kk in range(k) if (ph + pb - kk) % s == 0} for ph in range(s)]
                if any(not taps or min(taps) > 0 or max(taps) < 0 for taps in per):
                    plan = None
                    break
                plan.append(per)
        if plan is None:
            nodes.append(node)
            continue
        s = strides[0]
        bias = [node.input[2]] if len(node.input) > 2 and node.input[2] else []
        base = node.name or node.output[0]
        output, scale = node.output[0], None
        relu = only_consumer(node.output[0], "Relu")
        mul = relu and only_consumer(relu.output[0], "Mul")
        if mul and (not bias or bias[0] in inits):
            scale = positive_channel_scale(mul, relu.output[0], w.shape[1])
        if scale is not None:
            w = w * scale[None, :, None, None]
            if bias:
                new_inits.append(numpy_helper.from_array(numpy_helper.to_array(inits[bias[0]]) * scale, base + "/bias"))
                bias = [base + "/bias"]
            dropped.update((id(relu), id(mul)))
            output = mul.output[0]
        phases = []
        for ph in range(s):
            for pw in range(s):
                th, tw = plan[0][ph], plan[1][pw]
                h0, w0 = min(th), min(tw)
                kern = np.zeros((w.shape[1], w.shape[0], max(th) - h0 + 1, max(tw) - w0 + 1), np.float32)
                for dh, kh in th.items():
                    for dw, kw in tw.items():
                        kern[:, :, dh - h0, dw - w0] = w[:, :, kh, kw].T
                name = f"{base}/phase{ph}{pw}"
                new_inits.append(numpy_helper.from_array(kern, name + "/weight"))
                nodes.append(helper.make_node(
                    "Conv", [node.input[0], name + "/weight"] + bias, [name], name=name,
                    kernel_shape=list(kern.shape[2:]), pads=[-h0, -w0, max(th), max(tw)]))
                if scale is not None:
                    nodes.append(helper.make_node("Relu", [name], [name + "/relu"], name=name + "/relu"))
                    name += "/relu"
                phases.append(name)
        nodes.append(helper.make_node("Concat", phases, [base + "/phases"], name=base + "/phases", axis=1))
        nodes.append(helper.make_node("DepthToSpace", [base + "/phases"], [output],
                                      name=base + "/interleave", blocksize=s, mode="DCR"))
    if not new_inits:
        return proto
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    kept = [i for i in graph.initializer if i.name in used] + new_inits
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return proto


def _patch_stream_graph(spec, core_proto, core_in, core_outs):
    """Spleeter framing + ``T``-frame patch core, streamed patch by patch in a Scan.

    Spleeter frame ``k`` covers padded samples ``[k * hop, k * hop + n_fft)``, so patch ``p`` needs
    the segment ``[p * T * hop, p * T * hop + (T - 1) * hop + n_fft)``. The Scan body takes one
    segment per step (batch kept; as the patch's block plus the first ``n_fft - hop`` samples of the
    next block), computes its ``T`` frames' STFT, the core, ratio masks, masking, inverse FFT and
    windowed overlap-add within the segment. Consecutive segments overlap by ``n_fft - hop``
    samples: each step adds the spill carried from the previous step (a Scan state) to the head of
    its segment, divides that finished block by the squared-window envelope (periodic inside the
    input, as every covering frame exists) and carries its own spill on. Outside, the blocks are
    joined and cropped. Frames past the input are all zeros, as the Keras model's zero-padded
    patches. Memory: one patch at a time, plus the input and outputs.
    """
    from onnx import TensorProto, helper

    n_fft, hop, t = spec["n_fft"], spec["hop_length"], int(spec["patch_frames"])
    r = n_fft // hop
    nb_bins, targets, nb_channels = spec["nb_bins"], spec["targets"], spec["nb_channels"]
    full = n_fft // 2 + 1
    ext = spec.get("mask_extension", "zeros")
    block, tail = t * hop, n_fft - hop
    if tail > block:
        raise NotImplementedError(f"patches of {t} frames are shorter than a window (n_fft={n_fft})")

    # --- Scan body: one segment (b, c, (T - 1) * hop + n_fft) → {target: windowed OLA} ---
    b = _Graph(prefix="body")
    seg_len = (t - 1) * hop + n_fft
    need = full if ext == "average" else nb_bins  # bins formed by the forward FFT
    split = _fft_split(n_fft, hop, need)
    if split is None:  # no usable factorisation: the DFT-operator path
        frames, _ = _frames(b, "body/segment", dict(spec, padding="valid"))
        real, imag = _rfft(b, frames, n_fft, need)
        real_f, imag_f = (b.slice(real, 0, nb_bins, 3), b.slice(imag, 0, nb_bins, 3)) if ext == "average" else (real, imag)
        mag = _magnitude(b, b.op("Add", b.op("Mul", real_f, real_f), b.op("Mul", imag_f, imag_f)), spec)
        b.op("Identity", mag, out=core_in)  # (b, c, T, nb_bins)
    else:
        n1, n2, k1 = split
        spectrum = _rfft_matmul(b, "body/segment", n_fft, hop, t, n1, n2, k1)  # (2, k1, M * n2)
        energy = b.op("ReduceSumSquare", b.op("Reshape", spectrum, b.ints(2, -1)), axes=[0], keepdims=0)
        mag = _magnitude(b, energy, spec)  # (k1 * M * n2,): bins k1 * n2 + k2 of frames M = (b, c, T)
        mag = b.op("Transpose", b.op("Reshape", mag, b.ints(k1, -1, nb_channels, t, n2)), perm=[1, 2, 3, 0, 4])
        mag = b.op("Reshape", mag, b.ints(0, 0, 0, -1))  # (b, c, T, k1 * n2) in bin order
        if k1 * n2 > nb_bins:
            mag = b.slice(mag, 0, nb_bins, 3)
        b.op("Identity", mag, out=core_in)
    pre = list(b.nodes)
    b.nodes = []
    if spec["core_output"] == "magnitude":
        masks = _ratio_masks(b, core_outs, spec)
    elif spec["core_output"] == "mask":
        masks = list(core_outs)
    else:
        raise ValueError(f"patch cores return 'magnitude' or 'mask'. Received: {spec['core_output']!r}")
    masks = dict(zip(targets, masks))  # each (b, c, T, nb_bins)
    envelope = (_hann(n_fft) ** 2).reshape(r, hop).sum(axis=0)  # periodic inside the input
    envelope[envelope <= 1e-11] = 1.0
    env = b.const(envelope.astype(np.float32), hint="envelope")
    state_ins, state_outs, scan_outs = [], [], []
    for target in spec["output_targets"]:
        mask = masks[target]
        k = nb_bins
        if ext == "average":
            mean = b.op("ReduceMean", mask, axes=[3], keepdims=1)
            shape = b.op("Concat", b.op("Shape", mask, end=3), b.ints(full - nb_bins), axis=0)
            mask = b.op("Concat", mask, b.op("Expand", mean, shape), axis=3)
            k = full
        if split is None:
            y = _irfft(b, b.op("Mul", real, mask), b.op("Mul", imag, mask), n_fft, k)
            ola = _windowed_ola(b, y, n_fft, hop)
        else:
            ola = _irfft_matmul(b, spectrum, mask, k, n_fft, hop, t, nb_channels, n1, n2, k1)
        ola = b.op("Reshape", ola, b.ints(0, 0, -1))  # (b, c, block + tail)
        # Overlap-add across patches: the carried spill of the previous segment joins the head
        # of this one; the head is final, divided by the envelope; this spill is carried on.
        carry = f"body/carry_in_{target}"
        b.slice(ola, block, block + tail, 2)
        b.op("Identity", b.nodes[-1].output[0], out=f"body/carry_out_{target}")
        head = b.op("Add", b.slice(ola, 0, block, 2), b.pad_axis(carry, 3, 2, 0, block - tail))
        head = b.op("Div", b.op("Reshape", head, b.ints(0, 0, -1, hop)), env)
        b.op("Reshape", head, b.ints(0, 0, -1), out=f"body/{target}")
        state_ins.append(helper.make_tensor_value_info(carry, TensorProto.FLOAT, ["batch", nb_channels, tail]))
        state_outs.append(helper.make_tensor_value_info(f"body/carry_out_{target}", TensorProto.FLOAT, None))
        scan_outs.append(helper.make_tensor_value_info(f"body/{target}", TensorProto.FLOAT, None))
    # The segment's shape is declared (and the core's weights live in the body, not the outer
    # graph): onnxruntime's layout optimisations (blocked NCHWc convolutions) need both.
    segment = [helper.make_node("Concat", ["body/block", "body/next"], ["body/segment"], name="body/segment", axis=2)]
    body = helper.make_graph(
        segment + pre + list(core_proto.graph.node) + b.nodes, "patch_step",
        state_ins + [helper.make_tensor_value_info("body/block", TensorProto.FLOAT, ["batch", nb_channels, block]),
                     helper.make_tensor_value_info("body/next", TensorProto.FLOAT, ["batch", nb_channels, tail])],
        state_outs + scan_outs, initializer=b.initializers + list(core_proto.graph.initializer),
    )

    # --- outer graph: cut the padded input in patch blocks, scan, join, crop ---
    g = _Graph()
    x = "waveform"
    length = g.dim(x, 2)
    padded = g.op("Add", length, g.ints(n_fft))
    nb_frames = g.op("Div", g.op("Add", padded, g.ints(hop - 1)), g.ints(hop))  # Spleeter: ceil
    nb_patches = g.op("Div", g.op("Add", nb_frames, g.ints(t - 1)), g.ints(t))
    main = g.op("Mul", nb_patches, g.ints(block))  # >= padded: the last tail is never needed
    xp = g.pad_axis(x, 3, 2, n_fft, g.op("Sub", main, padded))
    blocks = g.op("Transpose", g.op("Reshape", xp, g.ints(0, 0, -1, block)), perm=[2, 0, 1, 3])  # (P, b, c, block)
    nexts = g.slice(g.slice(blocks, 1, 2 ** 62, 0), 0, tail, 3)
    nexts = g.pad_axis(nexts, 4, 0, 0, 1)  # (P, b, c, tail): the start of the next block
    zeros = g.op("ConstantOfShape", g.op("Concat", g.op("Shape", x, end=2), g.ints(tail), axis=0))
    finals = [g.name(f"carry_{t_}") for t_ in spec["output_targets"]]
    stacked = [g.name(f"scan_{t_}") for t_ in spec["output_targets"]]
    g.nodes.append(helper.make_node("Scan", [zeros] * len(finals) + [blocks, nexts], finals + stacked,
                                    name=g.name("Scan"), num_scan_inputs=2, body=body))
    outputs = []
    for target, seg in zip(spec["output_targets"], stacked):
        signal = g.op("Reshape", g.op("Transpose", seg, perm=[1, 2, 0, 3]), g.ints(0, 0, -1))  # (b, c, P * block)
        g.slice(signal, g.ints(n_fft), g.op("Add", length, g.ints(n_fft)), 2)
        g.op("Identity", g.nodes[-1].output[0], out=target)
        outputs.append(target)
    wave_in = helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", nb_channels, "nb_timesteps"])
    outs = [helper.make_tensor_value_info(t_, TensorProto.FLOAT, ["batch", nb_channels, "nb_timesteps"])
            for t_ in outputs]
    return helper.make_graph(g.nodes, "kerasep_separator", [wave_in], outs, initializer=g.initializers)


def _scan_core(g, core_proto, core_in, core_outs, patches):
    """Append a Scan over the first axis of ``patches`` (nb_patches, T, F, C) whose body is the
    core (its initializers stay in the outer graph); returns the stacked outputs' names."""
    from onnx import TensorProto, helper

    body_in = "core/scan_patch"
    nodes = [helper.make_node("Unsqueeze", [body_in, "core/scan_axis0"], [core_in], name="core/scan_unsqueeze")]
    nodes += list(core_proto.graph.node)
    body_outs = []
    for i, name in enumerate(core_outs):
        out = f"core/scan_out_{i}"
        nodes.append(helper.make_node("Squeeze", [name, "core/scan_axis0"], [out], name=f"core/scan_squeeze_{i}"))
        body_outs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, None))
    axis0 = helper.make_tensor("core/scan_axis0", TensorProto.INT64, [1], [0])
    body = helper.make_graph(
        nodes, "core_per_patch", [helper.make_tensor_value_info(body_in, TensorProto.FLOAT, None)],
        body_outs, initializer=[axis0],
    )
    stacked = [g.name(f"core_out{i}") for i in range(len(core_outs))]
    g.nodes.append(helper.make_node("Scan", [patches], stacked, name=g.name("Scan"), num_scan_inputs=1, body=body))
    return stacked


def _waveform_graph(model, spec, opset):
    """Models with no STFT (e.g. Demucs): the whole Keras model through tf2onnx."""
    import tf2onnx

    from kerasep.backend import tf

    onnx = _onnx()
    targets = spec["output_targets"]
    signature = [tf.TensorSpec([None, spec["nb_channels"], None], tf.float32, name="waveform")]

    @tf.function(input_signature=signature)
    def fn(waveform):
        out = model(waveform, training=False)
        return {t: tf.identity(out[t], name=t) for t in targets}

    # large_model: tf2onnx keeps the weights out of the TensorFlow graph it imports and skips
    # grappler (each held more copies of them); they come back as external tensors, put back in
    # the one file below (the 2 GB protobuf limit is far: 265.6 M float32 weights ≈ 1.06 GB).
    with _lean_tf2onnx():
        proto, storage = tf2onnx.convert.from_function(fn, input_signature=signature, opset=opset,
                                                       large_model=True)
    _inline_external_tensors(proto, storage)
    names = {o.name: o.name for o in proto.graph.output}
    if set(names) != set(targets):  # rename outputs to the bare target names
        for o in proto.graph.output:
            base = o.name.split(":")[0]
            if base in targets:
                names[o.name] = base
        for node in proto.graph.node:
            node.output[:] = [names.get(n, n) for n in node.output]
        for o in proto.graph.output:
            o.name = names[o.name]
    onnx.checker.check_model(proto)
    return proto


def weights_sha256(model):
    """sha256 of the weights: the registry's source files for a zoo model (``{file: sha256}``),
    else of the model's variables (one digest over every weight array, in order)."""
    name = getattr(model, "zoo_name", None)
    if name:
        from kerasep.zoo import registry

        entry = registry.get(name)
        files = registry.weight_source(entry["weights"])["files"]
        return {"source": entry["weights"], "files": files}
    h = hashlib.sha256()
    for w in model.weights:
        h.update(np.ascontiguousarray(np.asarray(w.numpy() if hasattr(w, "numpy") else w)).tobytes())
    return {"source": "variables", "sha256": h.hexdigest()}


def metadata(model, spec, precision="float32"):
    """``metadata_props`` stored in exported files (all values are strings; lists/dicts JSON)."""
    import kerasep

    meta = {
        "kerasep.version": kerasep.__version__,
        "kerasep.family": spec["family"],
        "kerasep.model": getattr(model, "zoo_name", None) or model.name,
        "kerasep.sample_rate": str(spec["sample_rate"]),
        "kerasep.nb_channels": str(spec["nb_channels"]),
        "kerasep.targets": json.dumps(spec["output_targets"]),
        "kerasep.weights_sha256": json.dumps(weights_sha256(model)),
        "kerasep.precision": precision,
        "kerasep.opset": str(OPSET),
        "kerasep.input": "waveform (batch, nb_channels, nb_timesteps) float32",
    }
    for key in ("n_fft", "hop_length", "padding", "chunk_alignment", "chunk_context"):
        if key in spec:
            meta[f"kerasep.{key}"] = str(spec[key])
    return meta


def to_onnx(model, precision="float32", opset=OPSET):
    """The ``onnx.ModelProto`` of a whole separator (see the module docstring).

    Args:
        model: a kerasep separator (zoo model, user-built, trained with ``fit``).
        precision: ``"float32"``, ``"float16"`` (the core's weights and arithmetic in half
            precision, STFT/iSTFT and masks in float32; input/outputs stay float32) or ``"int8"``
            (dynamic int8 quantisation of the core's weights, onnxruntime.quantization).
    """
    from kerasep.export.spec import export_spec

    if precision not in ("float32", "float16", "int8"):
        raise ValueError(f"precision must be 'float32', 'float16' or 'int8'. Received: {precision!r}")
    spec = export_spec(model)
    if spec["kind"] == "spectral":
        proto = _spectral_graph(spec, opset, precision)
    else:
        proto = _waveform_graph(model, spec, opset)
        if precision == "float16":
            proto = _to_float16(proto)
        elif precision == "int8":
            proto = _to_int8(proto)
    onnx = _onnx()
    onnx.helper.set_model_props(proto, metadata(model, spec, precision))
    return proto


def _to_float16(proto):
    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        raise ImportError("float16 export needs onnxconverter-common: pip install onnxconverter-common") from exc
    return float16.convert_float_to_float16(proto, keep_io_types=True)


def _to_int8(proto):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "f32.onnx"), os.path.join(tmp, "int8.onnx")
        _onnx().save(proto, src)
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
        return _onnx().load(dst)


def save_onnx(model, path, precision="float32", check=True):
    """Export ``model`` to ``path`` (``.onnx``), atomically. With ``check`` the file is loaded
    back in onnxruntime and run once on a short input (an export that onnxruntime refuses is an
    error, never a silent success). Returns the path."""
    onnx = _onnx()
    path = Path(path)
    proto = to_onnx(model, precision=precision)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        onnx.save(proto, tmp)
        if check:
            _smoke_test(tmp, int(model.nb_channels))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return str(path)


def _smoke_test(path, nb_channels):
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        x = np.zeros((1, nb_channels, 3000), np.float32)
        outs = sess.run(None, {"waveform": x})
    except Exception as exc:
        raise RuntimeError(f"the exported ONNX file does not run in onnxruntime: {exc}") from exc
    for o in outs:
        if o.shape != x.shape:
            raise RuntimeError(f"exported ONNX output has shape {o.shape}; expected {x.shape}")
