"""Fused attention in a converted core: tf2onnx writes Keras' ``softmax(q @ k^T * scale) @ v`` as
five operators (``Transpose``, ``MatMul``, ``Mul``, ``Softmax``, ``MatMul``) that onnxruntime runs
one after another over the whole ``(batch, heads, steps, steps)`` score tensor (1.3 GB per time
attention of the released BS-RoFormer at one 8 s chunk: written, scaled, normalised and read back
from memory). :func:`fuse_attention` replaces each such chain by onnxruntime's
``com.microsoft.MultiHeadAttention``, whose CPU kernel computes, normalises and applies the scores
one ``(batch, head)`` block at a time while it is in cache, between the transposes to and from its
``(batch, steps, heads * dim_head)`` layout.

Used by the band-split RoFormers' export (``export_spec()["core_rewrites"]``); the file then
needs onnxruntime (the contrib operator is not in the ONNX standard at the exported opset).
"""
import numpy as np

#: The domain and opset version of onnxruntime's contrib operators.
MS_DOMAIN = ("com.microsoft", 1)


def fuse_attention(proto, heads, dim_head, expected=None):
    """Rewrite, in place, every ``MatMul(Softmax(MatMul(q, Transpose(k, perm=[0, 1, 3, 2])) *
    c), v)`` of ``proto`` (``q``, ``k``, ``v``: ``(batch, heads, steps, dim_head)``, ``c`` a
    scalar constant, softmax over the last axis) as ``com.microsoft.MultiHeadAttention(num_heads=
    heads, scale=c)``. Intermediate results with another consumer keep the chain as it is.
    ``expected``: the number of attention blocks the model has; a different number found raises
    ``RuntimeError`` (the converter wrote a pattern this rewrite does not know). Returns ``proto``."""
    from onnx import helper, numpy_helper

    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    consumers = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in graph.output}

    def only_use(name):
        return name not in outputs and len(consumers.get(name, [])) == 1

    def scalar(name):
        if name in inits:
            value = numpy_helper.to_array(inits[name])
        elif name in producer and producer[name].op_type == "Constant":
            value = numpy_helper.to_array(producer[name].attribute[0].t)
        else:
            return None
        return float(value.reshape(-1)[0]) if value.size == 1 else None

    def attr(node, name, default):
        for a in node.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default

    plans = {}  # id(second MatMul) -> (q, k, v, scale, nodes replaced)
    for softmax in graph.node:
        if softmax.op_type != "Softmax" or attr(softmax, "axis", -1) not in (-1, 3):
            continue
        mul = producer.get(softmax.input[0])
        if mul is None or mul.op_type != "Mul" or not only_use(mul.output[0]):
            continue
        first = [producer.get(i) for i in mul.input]
        scale = [scalar(i) for i in mul.input]
        if first[0] is not None and first[0].op_type == "MatMul" and scale[1] is not None:
            matmul, c = first[0], scale[1]
        elif first[1] is not None and first[1].op_type == "MatMul" and scale[0] is not None:
            matmul, c = first[1], scale[0]
        else:
            continue
        transpose = producer.get(matmul.input[1])
        if (not only_use(matmul.output[0]) or transpose is None or transpose.op_type != "Transpose"
                or list(attr(transpose, "perm", [])) != [0, 1, 3, 2]):
            continue
        after = consumers.get(softmax.output[0], [])
        if len(after) != 1 or after[0].op_type != "MatMul" or after[0].input[0] != softmax.output[0] \
                or softmax.output[0] in outputs:
            continue
        replaced = [matmul, mul, softmax, after[0]]
        if only_use(transpose.output[0]):
            replaced.append(transpose)
        plans[id(after[0])] = (matmul.input[0], transpose.input[0], after[0].input[1], c, replaced)
    if expected is not None and len(plans) != expected:
        raise RuntimeError(f"fuse_attention: found {len(plans)} attention blocks in the converted core, expected "
                           f"{expected} (the converter's output changed; the rewrite knows MatMul, Mul by a "
                           f"scalar, Softmax on the last axis, MatMul)")
    if not plans:
        return proto

    flat = f"attention/flat_shape_{heads}x{dim_head}"
    split = f"attention/head_shape_{heads}x{dim_head}"
    graph.initializer.extend([numpy_helper.from_array(np.array([0, 0, heads * dim_head], np.int64), flat),
                              numpy_helper.from_array(np.array([0, 0, heads, dim_head], np.int64), split)])
    dropped = {id(n) for plan in plans.values() for n in plan[4]}
    nodes = []
    for node in graph.node:
        plan = plans.get(id(node))
        if plan is None:
            if id(node) not in dropped:
                nodes.append(node)
            continue
        q, k, v, c, _ = plan
        base = node.name or node.output[0]
        flats = []
        for label, x in (("q", q), ("k", k), ("v", v)):  # (b, h, s, d) -> (b, s, h * d)
            nodes.append(helper.make_node("Transpose", [x], [f"{base}/{label}_bshd"], name=f"{base}/{label}_bshd",
                                          perm=[0, 2, 1, 3]))
            nodes.append(helper.make_node("Reshape", [f"{base}/{label}_bshd", flat], [f"{base}/{label}_flat"],
                                          name=f"{base}/{label}_flat"))
            flats.append(f"{base}/{label}_flat")
        nodes.append(helper.make_node("MultiHeadAttention", flats, [f"{base}/mha"], name=f"{base}/mha",
                                      domain=MS_DOMAIN[0], num_heads=int(heads), scale=float(c)))
        nodes.append(helper.make_node("Reshape", [f"{base}/mha", split], [f"{base}/mha_bshd"],
                                      name=f"{base}/mha_bshd"))
        nodes.append(helper.make_node("Transpose", [f"{base}/mha_bshd"], [node.output[0]], name=f"{base}/mha_bhsd",
                                      perm=[0, 2, 1, 3]))
    del graph.node[:]
    graph.node.extend(nodes)
    if not any(o.domain == MS_DOMAIN[0] for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid(*MS_DOMAIN))
    return proto
