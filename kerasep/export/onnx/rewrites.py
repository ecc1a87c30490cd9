"""Rewrites of a converted ONNX core: sub-pixel convolutions in place of ``ConvTranspose``
(:func:`_subpixel_conv_transposes`), and the reduced-precision conversions (:func:`_to_float16`,
:func:`_to_int8`) applied to the network only.
"""
import os
import tempfile

import numpy as np

from kerasep.export.onnx.graph import _onnx


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
