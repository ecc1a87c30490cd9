"""Per-layout assembly of the whole exported graph, waveform in, every stem's waveform out.

- :func:`_spectral_graph`: STFT → core → masks → inverse STFT for a spectral separator whose
  core takes frames, the complex STFT, or patches under other framing than Spleeter's (run
  patch by patch in a ``Scan``, :func:`_scan_core`);
- :func:`_patch_stream_graph`: Spleeter framing and a patch core (the U-Net), streamed patch by
  patch in a ``Scan`` with the overlap-add carried between steps;
- :func:`_waveform_graph`: models with no STFT (Demucs), through tf2onnx whole.
"""
import numpy as np

from kerasep.export.onnx.bridge import _convert_core, _inline_external_tensors, _lean_tf2onnx
from kerasep.export.onnx.dsp import (
    _blocks_per_frame,
    _fft_split,
    _frames,
    _irfft,
    _irfft_matmul,
    _magnitude,
    _overlap_add,
    _padded_window,
    _ratio_masks,
    _rfft,
    _rfft_matmul,
    _windowed_ola,
)
from kerasep.export.onnx.graph import _Graph, _onnx
from kerasep.export.onnx.rewrites import _subpixel_conv_transposes, _to_float16, _to_int8


def _spectral_graph(spec, opset, precision="float32"):
    onnx = _onnx()
    from onnx import compose, helper, TensorProto

    stream = spec["core_layout"] == "patches" and spec["padding"] == "spleeter"
    core_proto, core_in, core_outs = _convert_core(spec, opset, nchw=stream)
    if precision == "float32":  # the float16 and int8 conversions know standard operators only
        for rewrite in spec.get("core_rewrites", ()):
            core_proto = rewrite(core_proto)
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
    if n_fft % 2:
        raise NotImplementedError(f"ONNX export needs an even n_fft (its real FFT packs sample pairs); "
                                  f"found n_fft={n_fft}, hop_length={hop}")
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
    if spec.get("stft_dtype", "float32") == "float64":  # the forward STFT in float64, the rest float32
        real, imag = _rfft(g, frames, n_fft, full if ext == "average" else nb_bins, dtype=np.float64)
        real, imag = g.op("Cast", real, to=1), g.op("Cast", imag, to=1)
    else:
        real, imag = _rfft(g, frames, n_fft, full if ext == "average" else nb_bins)
    if ext == "average":
        real_f, imag_f = g.slice(real, 0, nb_bins, 3), g.slice(imag, 0, nb_bins, 3)
    else:
        real_f, imag_f = real, imag
    energy = g.op("Add", g.op("Mul", real_f, real_f), g.op("Mul", imag_f, imag_f))
    mag = _magnitude(g, energy, spec)  # (b, c, f, nb_bins)

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
        masks = _ratio_masks(g, core_outs, spec)
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
    r = _blocks_per_frame(n_fft, hop)
    nb_bins, targets, nb_channels = spec["nb_bins"], spec["targets"], spec["nb_channels"]
    full = n_fft // 2 + 1
    ext = spec.get("mask_extension", "zeros")
    block, tail = t * hop, n_fft - hop
    if tail > block:
        raise NotImplementedError(f"patches of {t} frames are shorter than a window (n_fft={n_fft})")

    # --- Scan body: one segment (b, c, (T - 1) * hop + n_fft) → {target: windowed OLA} ---
    b = _Graph(prefix="body")
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
    envelope = _padded_window(n_fft, hop, power=2).reshape(r, hop).sum(axis=0)  # periodic inside the input
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
