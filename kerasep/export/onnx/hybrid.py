"""The ``"hybrid"`` layout (Hybrid Transformer Demucs): the waveform and its spectrogram both go
into the network, which returns a spectral and a time estimate, summed after the inverse
spectrogram.

The exported graph, input ``waveform`` ``(batch, nb_channels, nb_timesteps)`` at any length:

1. zero-padding on the right to ``pad_to`` samples when the input is shorter (HTDemucs'
   ``use_train_segment``; the padded length ``P = max(nb_timesteps, pad_to)``);
2. demucs' ``_spec`` (:class:`kerasep.layers.htdemucs_blocks.HTSpectrogram`), at dynamic length:
   ``nb_frames = ceil(P / hop)``, reflect padding of ``3 hop / 2`` on the left and ``3 hop / 2 +
   nb_frames * hop - P`` on the right (zeros first where the input is too short to reflect, as
   demucs' ``pad1d``), the centred reflect-padded STFT (:func:`dsp._frames`, :func:`dsp._rfft`,
   periodic Hann, ``1 / sqrt(n_fft)``), frames ``2 .. 2 + nb_frames`` and bins ``0 .. n_fft / 2 - 1``;
3. the core (tf2onnx, :func:`_convert_hybrid_core`): ``{"waveform": (batch, nb_channels, P),
   "spectrogram": (batch, nb_channels, n_fft / 2, nb_frames, 2)}`` → ``{"spectrogram": (batch,
   S * nb_channels, n_fft / 2, nb_frames, 2), "waveform": (batch, S * nb_channels, P)}``, the
   stems' channels source-major (``S = len(targets)``); at float32 its GroupNorms, LayerNorms,
   GELUs, attention scales and pointwise convolutions written as fewer passes
   (:func:`kerasep.export.onnx.fusions.fuse_hybrid_core`),
   the remaining whole-tensor means as blocked sums (:func:`_blocked_means`: onnxruntime's own
   drift by ~1e-4 over a spectrogram);
4. demucs' ``_ispec`` (:class:`~kerasep.layers.htdemucs_blocks.HTInverseSpectrogram`): two zero
   frames each side and a zero Nyquist bin restored, the imaginary part of the DC bin dropped
   (``torch.istft`` and TF's ``irfft`` ignore it; :func:`dsp._irfft` would not), inverse real FFT
   times ``sqrt(n_fft)``, windowed overlap-add divided by the squared-window envelope
   (:func:`dsp._overlap_add`) at ``hop * nb_frames + 3 hop`` samples, ``3 hop / 2`` dropped on the
   left, ``P`` kept;
5. plus the time estimate, cropped to ``nb_timesteps``, one output per target.
"""
import math

import numpy as np

from kerasep.export.onnx.bridge import _inline_external_tensors, _lean_tf2onnx
from kerasep.export.onnx.dsp import _frames, _irfft, _overlap_add, _rfft
from kerasep.export.onnx.fusions import MEAN_BLOCK, fuse_hybrid_core
from kerasep.export.onnx.graph import _Graph, _onnx
from kerasep.export.onnx.layouts import _finish
from kerasep.export.onnx.rewrites import _to_float16, _to_int8


def _convert_hybrid_core(spec, opset):
    """tf2onnx conversion of the two-input core of a ``"hybrid"`` spec (see the module docstring).

    Returns ``(proto, (waveform_in, spectrogram_in), (spectrogram_out, waveform_out))``: the model
    and its input and output names. The weights travel as ``large_model`` external tensors and are
    put back in the one proto (:func:`bridge._inline_external_tensors`), as for waveform models."""
    import tf2onnx

    from kerasep.backend import tf

    core, nb_channels, nb_bins = spec["core"], int(spec["nb_channels"]), int(spec["n_fft"]) // 2
    signature = [tf.TensorSpec([None, nb_channels, None], tf.float32, name="core_waveform"),
                 tf.TensorSpec([None, nb_channels, nb_bins, None, 2], tf.float32, name="core_spectrogram")]

    @tf.function(input_signature=signature)
    def fn(waveform, spectrogram):
        out = core({"waveform": waveform, "spectrogram": spectrogram}, training=False)
        return [tf.identity(out["spectrogram"], name="core_spectrogram_out"),
                tf.identity(out["waveform"], name="core_waveform_out")]

    with _lean_tf2onnx():
        proto, storage = tf2onnx.convert.from_function(fn, input_signature=signature, opset=opset,
                                                       large_model=True,
                                                       custom_op_handlers={"Erfc": (_erfc_handler, [])})
    _inline_external_tensors(proto, storage)
    inputs = [i.name for i in proto.graph.input]
    outputs = [o.name for o in proto.graph.output]
    if len(inputs) != 2 or len(outputs) != 2:
        raise RuntimeError(f"tf2onnx produced {len(inputs)} inputs / {len(outputs)} outputs for the hybrid "
                           f"core; expected 2 / 2 (inputs {inputs}, outputs {outputs})")
    wave_in = next((n for n in inputs if "waveform" in n), None)
    spec_in = next((n for n in inputs if "spectrogram" in n), None)
    if None in (wave_in, spec_in):
        raise RuntimeError(f"cannot tell the hybrid core's inputs {inputs} apart")
    return proto, (wave_in, spec_in), tuple(outputs)  # outputs in fn's order


def _blocked_means(proto):
    """Rewrite the core's ``ReduceMean(axes=[1], keepdims=0)`` of rank-2 ``(batch, n)`` tensors
    (:func:`kerasep.layers.htdemucs_blocks.flat_moments`: the normalisation of the whole
    spectrogram, GroupNorm) as partial sums of :data:`MEAN_BLOCK` elements, then the sum of those,
    divided by ``n``. onnxruntime's ``ReduceMean`` accumulates sequentially in float32: over the
    2.75 M values of a 7.8 s spectrogram its mean square is off by 5.6e-4 relative (TensorFlow's:
    2.6e-8), which shifted the released model's spectral branch by 1e-4 relative. Returns
    ``proto``, changed in place."""
    from onnx import TensorProto, helper, numpy_helper, shape_inference

    inferred = shape_inference.infer_shapes(proto)
    rank = {v.name: len(v.type.tensor_type.shape.dim) for v in
            list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
            if v.type.tensor_type.HasField("shape")}
    del inferred
    graph = proto.graph
    k = "blocked_mean/block"
    graph.initializer.extend([numpy_helper.from_array(np.array([MEAN_BLOCK], np.int64), k),
                              numpy_helper.from_array(np.array([0, -1, MEAN_BLOCK], np.int64), k + "_shape"),
                              numpy_helper.from_array(np.array([1], np.int64), k + "_one"),
                              numpy_helper.from_array(np.array([2], np.int64), k + "_two"),
                              numpy_helper.from_array(np.array([0, 0, 0], np.int64), k + "_zeros")])
    nodes = []
    for i, node in enumerate(graph.node):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if not (node.op_type == "ReduceMean" and list(attrs.get("axes", [])) == [1]
                and attrs.get("keepdims", 1) == 0 and rank.get(node.input[0]) == 2):
            nodes.append(node)
            continue
        p, x = f"blocked_mean/{i}/", node.input[0]

        def op(kind, *inputs, **kw):
            out = p + f"{kind}_{len(nodes)}"
            nodes.append(helper.make_node(kind, list(inputs), [out], name=out, **kw))
            return out

        n = op("Shape", x, start=1, end=2)
        size = op("Mul", op("Div", op("Add", n, op("Sub", k, k + "_one")), k), k)  # ceil(n / block) * block
        padded = op("Pad", x, op("Concat", k + "_zeros", op("Sub", size, n), axis=0))  # zeros at the end
        partial = op("ReduceSum", op("Reshape", padded, k + "_shape"), k + "_two", keepdims=0)  # (b, blocks)
        total = op("ReduceSum", partial, k + "_one", keepdims=0)
        nodes.append(helper.make_node("Div", [total, op("Cast", n, to=TensorProto.FLOAT)], list(node.output),
                                      name=node.name))
    del graph.node[:]
    graph.node.extend(nodes)
    return proto


def _erfc_handler(ctx, node, name, args):
    """tf2onnx handler for TF's ``Erfc`` (exact GELU, ``0.5 x erfc(-x / sqrt(2))``), which tf2onnx
    lacks: ``1 - Erf(x)`` (absolute error of float32 ``erf``, about 1e-7)."""
    from tf2onnx import utils

    dtype = ctx.get_dtype(node.input[0])
    erf = ctx.make_node("Erf", [node.input[0]], name=utils.make_name(node.name + "_erf"))
    one = ctx.make_const(utils.make_name(node.name + "_one"), np.array(1.0, utils.map_onnx_to_numpy_type(dtype)))
    outputs, shapes, dtypes = node.output, [ctx.get_shape(node.output[0])], [dtype]
    ctx.remove_node(node.name)
    ctx.make_node("Sub", [one.output[0], erf.output[0]], outputs=outputs, name=node.name, shapes=shapes,
                  dtypes=dtypes)


def _demucs_spec(g, mix, padded, n_fft, hop):
    """demucs' ``_spec`` of ``mix`` ``(batch, nb_channels, P)`` (``padded``: ``P`` as a 1-element
    int64) → ``(batch, nb_channels, n_fft / 2, nb_frames, 2)`` and ``nb_frames``."""
    nb_frames = g.op("Div", g.op("Add", padded, g.ints(hop - 1)), g.ints(hop))
    left = g.ints(3 * hop // 2)
    right = g.op("Sub", g.op("Add", left, g.op("Mul", nb_frames, g.ints(hop))), padded)
    # pad1d: an input no longer than the larger padding is first zero-padded to one sample more
    # than it, the zeros taken from the right padding first
    extra = g.op("Max", g.op("Add", g.op("Sub", g.op("Max", left, right), padded), g.ints(1)), g.ints(0))
    extra_right = g.op("Min", right, extra)
    extra_left = g.op("Sub", extra, extra_right)
    x = g.pad_axis(mix, 3, 2, extra_left, extra_right)
    x = g.pad_axis(x, 3, 2, g.op("Sub", left, extra_left), g.op("Sub", right, extra_right), mode="reflect")
    frames, _ = _frames(g, x, {"n_fft": n_fft, "hop_length": hop, "padding": "center", "pad_mode": "reflect"})
    frames = g.slice(frames, g.ints(2), g.op("Add", nb_frames, g.ints(2)), 2)  # (b, c, nb_frames, n_fft)
    real, imag = _rfft(g, frames, n_fft, n_fft // 2)  # (b, c, nb_frames, n_fft / 2)
    scale = g.const(np.float32(1.0 / math.sqrt(n_fft)))
    z = g.op("Concat", g.op("Unsqueeze", g.op("Mul", real, scale), g.ints(4)),
             g.op("Unsqueeze", g.op("Mul", imag, scale), g.ints(4)), axis=4)
    return g.op("Transpose", z, perm=[0, 1, 3, 2, 4]), nb_frames


def _demucs_ispec(g, z, nb_frames, padded, n_fft, hop):
    """demucs' ``_ispec`` of ``z`` ``(batch, channels, n_fft / 2, nb_frames, 2)`` → ``(batch,
    channels, P)`` (``padded``: ``P``)."""
    nb_bins = n_fft // 2
    z = g.op("Transpose", z, perm=[0, 1, 3, 2, 4])  # (b, c, nb_frames, nb_bins, 2)
    real = g.op("Squeeze", g.slice(z, 0, 1, 4), g.ints(4))
    imag = g.op("Squeeze", g.slice(z, 1, 2, 4), g.ints(4))
    keep = np.ones(nb_bins, np.float32)
    keep[0] = 0.0  # the DC bin's imaginary part: ignored by an inverse real FFT
    imag = g.op("Mul", imag, g.const(keep, hint="dc_imag"))
    real, imag = (g.pad_axis(v, 4, 2, 2, 2) for v in (real, imag))  # two zero frames each side
    frames = _irfft(g, real, imag, n_fft, nb_bins)  # Nyquist bin zero
    frames = g.op("Mul", frames, g.const(np.float32(math.sqrt(n_fft))))
    pad = 3 * hop // 2
    total = g.op("Add", g.op("Mul", nb_frames, g.ints(hop)), g.ints(2 * pad))
    signal = _overlap_add(g, frames, g.op("Add", nb_frames, g.ints(4)), total,
                          {"n_fft": n_fft, "hop_length": hop, "padding": "center"})
    return g.slice(signal, g.ints(pad), g.op("Add", padded, g.ints(pad)), 2)


def _hybrid_graph(spec, opset, precision="float32"):
    """The whole ``"hybrid"`` graph (see the module docstring) as an ``onnx.ModelProto``. With
    ``precision`` ``"float16"`` or ``"int8"`` only the core is converted (the spectrogram pair
    stays float32)."""
    onnx = _onnx()
    from onnx import TensorProto, compose, helper

    n_fft, hop = int(spec["n_fft"]), int(spec["hop_length"])
    if n_fft % 4 or hop * 4 != n_fft:
        raise NotImplementedError(f"the hybrid ONNX layout needs hop_length = n_fft / 4 (demucs' _spec); "
                                  f"found n_fft={n_fft}, hop_length={hop}")
    targets, nb_channels = list(spec["targets"]), int(spec["nb_channels"])
    core_proto, (wave_in, spec_in), (spec_out, wave_out) = _convert_hybrid_core(spec, opset)
    if precision == "float32":
        # not before the reduced-precision conversions: quantize_dynamic's type inference stops
        # at the com.microsoft Gelu (int8 failed), float16 is not converted op by op for them
        core_proto, _ = fuse_hybrid_core(core_proto)
    core_proto = _blocked_means(core_proto)
    if precision == "float16":
        core_proto = _to_float16(core_proto)
    elif precision == "int8":
        core_proto = _to_int8(core_proto)
    core_proto = compose.add_prefix(core_proto, "core/")
    wave_in, spec_in, spec_out, wave_out = ("core/" + n for n in (wave_in, spec_in, spec_out, wave_out))

    g = _Graph()
    x = "waveform"
    batch, length = g.dim(x, 0), g.dim(x, 2)
    pad_to = int(spec.get("pad_to") or 0)
    if pad_to > 0:  # shorter inputs are zero-padded to the training segment
        padded = g.op("Max", length, g.ints(pad_to))
        mix = g.pad_axis(x, 3, 2, 0, g.op("Sub", padded, length))
    else:
        padded, mix = length, x
    z, nb_frames = _demucs_spec(g, mix, padded, n_fft, hop)
    g.op("Identity", mix, out=wave_in)
    g.op("Identity", z, out=spec_in)
    pre_nodes, g.nodes = list(g.nodes), []

    out = g.op("Add", _demucs_ispec(g, spec_out, nb_frames, padded, n_fft, hop), wave_out)
    out = g.slice(out, 0, length, 2)
    out = g.op("Reshape", out, g.op("Concat", batch, g.ints(len(targets), nb_channels), length, axis=0))
    stems = spec["output_targets"]
    for target in stems:
        i = targets.index(target)
        g.op("Squeeze", g.slice(out, i, i + 1, 1), g.ints(1), out=target)

    wave = helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", nb_channels, "nb_timesteps"])
    outs = [helper.make_tensor_value_info(t, TensorProto.FLOAT, ["batch", nb_channels, "nb_timesteps"])
            for t in stems]
    graph = helper.make_graph(pre_nodes + list(core_proto.graph.node) + g.nodes, "kerasep_separator", [wave],
                              outs, initializer=g.initializers + list(core_proto.graph.initializer))
    return _finish(onnx, graph, core_proto, opset)
