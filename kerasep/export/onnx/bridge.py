"""The tf2onnx bridge: the trainable core (or a whole waveform model) converted by tf2onnx.

:func:`_convert_core` converts the spectrogram core of a spectral separator (channels-first for
the U-Net); :func:`_lean_tf2onnx` is the patch of tf2onnx internals every conversion runs
under, scoped (the originals are back when the conversion ends, also on error) and guarded by
the versions it was written for (:data:`TF2ONNX_SUPPORTED`, :data:`NUMPY_SUPPORTED`: another
installed version raises :class:`UnsupportedVersionError` before anything is patched);
:func:`_inline_external_tensors` puts tf2onnx ``large_model`` tensors back into one
self-contained model.
"""
import contextlib
import re

import numpy as np

#: tf2onnx versions ``[lowest, first unsupported)`` whose internals :func:`_lean_tf2onnx`
#: replaces (``GraphOptimizerBase.optimize``'s body is tf2onnx-private): written for and tested
#: with 1.17.
TF2ONNX_SUPPORTED = ((1, 17), (1, 18))
#: numpy versions ``[lowest, first unsupported)`` the ``numpy.product`` shim is written for
#: (numpy 2 removed ``product``; numpy 1 has it and is not patched).
NUMPY_SUPPORTED = ((2, 0), (3, 0))
#: Cores whose weights exceed this many bytes (float32) are converted with tf2onnx's
#: ``large_model`` (weights kept out of the TensorFlow graph it imports, no grappler pass), then
#: inlined back into the one file: the released-size BS-RoFormer (159.8 M parameters) peaked
#: above 8.5 GB RSS the default way, 5.5 GB this way; unet-2stems (83 MB file) 5.8 GB the default
#: way, 1.8 GB this way (the same operators, outputs equal to the bit). 0: every core.
LARGE_CORE_BYTES = 0


class UnsupportedVersionError(RuntimeError):
    """An installed package is outside the versions a kerasep patch of its internals was written
    for; the message names the package, the version found and the versions supported."""


def _version_tuple(version):
    """``"1.17.0"`` → ``(1, 17, 0)``; a pre-release or local tag ends it (``"1.18.0rc1"`` →
    ``(1, 18, 0)``, ``"2.1.dev0"`` → ``(2, 1)``)."""
    parts = []
    for piece in str(version).split("."):
        digits = re.match(r"\d*", piece).group()
        if not digits:
            break
        parts.append(int(digits))
        if digits != piece:
            break
    return tuple(parts)


def _require(package, version, supported, patch):
    """Raise :class:`UnsupportedVersionError` unless ``version`` of ``package`` lies in
    ``supported`` (``(lowest, first unsupported)``), the range ``patch`` was written for."""
    low, high = supported
    if low <= _version_tuple(version) < high:
        return
    wanted = f"{package}>={'.'.join(map(str, low))},<{'.'.join(map(str, high))}"
    raise UnsupportedVersionError(
        f"{package} {version} is installed, but the ONNX export's {patch} was written for "
        f"{wanted}; install a supported version (pip install '{wanted}')"
    )


_MISSING = object()


@contextlib.contextmanager
def _patched(owner, name, value):
    """``owner.name = value`` (a module's or a class's own attribute) inside the block; the
    original, or its absence, is restored when the block ends, also when it raises."""
    saved = vars(owner).get(name, _MISSING)
    setattr(owner, name, value)
    try:
        yield
    finally:
        if saved is _MISSING:
            delattr(owner, name)
        else:
            setattr(owner, name, saved)


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
    ``numpy.product`` (removed in numpy 2, still called by tf2onnx's ``large_model`` path).

    Both patches last for the block only (restored also on error), and are refused with
    :class:`UnsupportedVersionError` outside :data:`TF2ONNX_SUPPORTED` / :data:`NUMPY_SUPPORTED`."""
    import tf2onnx
    import tf2onnx.optimizer.optimizer_base as base

    _require("tf2onnx", tf2onnx.__version__, TF2ONNX_SUPPORTED, "patch of tf2onnx's optimizer loop")
    shim = not hasattr(np, "product")
    if shim:
        _require("numpy", np.__version__, NUMPY_SUPPORTED, "numpy.product shim for tf2onnx")

    def optimize(self, graph, iteration):
        self.opt_iteration = iteration
        graph = self._optimize(graph)
        graph.delete_unused_nodes(graph.outputs)
        return graph

    with contextlib.ExitStack() as patches:
        patches.enter_context(_patched(base.GraphOptimizerBase, "optimize", optimize))
        if shim:
            patches.enter_context(_patched(np, "product", np.prod))
        yield


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
        # the signature's input only (the captured weights are inputs too under large_model)
        layout = dict(inputs_as_nchw=[t.name for t in concrete.inputs[: len(signature)]],
                      outputs_as_nchw=[t.name for t in concrete.outputs])
    large = 4 * core.count_params() > LARGE_CORE_BYTES
    with _lean_tf2onnx():
        proto, storage = tf2onnx.convert.from_function(fn, input_signature=signature, opset=opset,
                                                       large_model=large, **layout)
    if large:
        _inline_external_tensors(proto, storage)
    inputs = [i.name for i in proto.graph.input]
    outputs = [o.name for o in proto.graph.output]
    if len(inputs) != 1 or len(outputs) != len(targets):
        raise RuntimeError(
            f"tf2onnx produced {len(inputs)} inputs / {len(outputs)} outputs for the core; "
            f"expected 1 / {len(targets)}"
        )
    return proto, inputs[0], outputs
