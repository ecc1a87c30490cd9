"""Fusions of a tf2onnx-converted HT-Demucs core (:func:`fuse_hybrid_core`): the Keras layers
tf2onnx spells out op by op, each written again as fewer passes over its tensor.

- GroupNorm with one group (:class:`kerasep.layers.htdemucs_blocks.GroupNorm`, DConv's norms):
  tf2onnx's form reads and writes the activation about nine times (reshapes, two mean passes,
  the difference twice, the square, three affine passes); :func:`_fuse_group_norms` computes the
  statistics with one contiguous ``ReduceSum`` / ``ReduceSumSquare`` over the channels followed
  by blocked sums of the per-position partial sums (:func:`blocked_sum`: float32 sums of at most
  ``MEAN_BLOCK`` values at every level, as accurate as TensorFlow's), then ``(x - mean) *
  (rstd * gamma) + beta``. onnxruntime's own ``LayerNormalization`` / ``InstanceNormalization``
  are not used there: over one row of a released-size time-branch activation (8.3 M values)
  their inverse standard deviation is off by 2.7e-4 relative.
- ``keras.layers.LayerNormalization`` over the last axis (the transformer's norms, a few hundred
  values per row) → ONNX ``LayerNormalization`` (opset 17).
- exact GELU, ``0.5 x erfc(-x / sqrt(2))`` (tf2onnx and :func:`hybrid._erfc_handler`: six
  passes) → ``com.microsoft:Gelu`` (onnxruntime's contrib op, ``0.5 x (1 + erf(x / sqrt(2)))``).
- the attention scores' scale, a scalar ``Mul`` on the ``(batch, heads, queries, keys)``
  product, moved onto the matrix product's first operand (the queries, ``keys / head_dim``
  times fewer values).
- convolutions: a ``Conv1D``'s bias, which tf2onnx adds after its ``Squeeze``, into the
  ``Conv`` (:func:`_fold_conv_biases`); 1 x 1 convolutions (DConv's second, the encoders'
  ``rewrite``) as ``MatMul`` on the channels-last tensor, without the layout transposes and
  onnxruntime's blocked-layout reorders around them (:func:`_pointwise_convs_as_matmuls`).

Each rewrite matches its pattern node by node (operator types, constants, the data path) and
leaves anything else as it was; what the rewritten nodes no longer need is dropped. Exact up to
float rounding (GELU through ``erf`` instead of ``erfc``: absolute differences about 1e-7).
"""
import collections

import numpy as np

#: Values per partial sum of :func:`blocked_sum` (and of ``hybrid._blocked_means``).
MEAN_BLOCK = 1024
#: The opset domain of onnxruntime's contrib operators (``Gelu``).
MS_DOMAIN = "com.microsoft"


class _Net:
    """Producer / consumer / constant look-ups over ``proto.graph`` and the writer of new nodes
    (:meth:`op`); :meth:`commit` puts the new nodes in and drops unused ones."""

    def __init__(self, proto, prefix):
        from onnx import numpy_helper

        self.proto, self.graph, self.prefix = proto, proto.graph, prefix
        self.inits = {i.name: i for i in self.graph.initializer}
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.consumers = collections.defaultdict(list)
        for n in self.graph.node:
            for i in dict.fromkeys(n.input):  # a node reading a tensor twice counts once
                self.consumers[i].append(n)
        self.outputs = {o.name for o in self.graph.output}
        self._constants = {}
        for n in self.graph.node:
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                self._constants[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        self.after = collections.defaultdict(list)  # id(anchor node) -> new nodes to put after it
        self.renamed = {}  # old tensor name -> new tensor name (consumers rewired at commit)
        self.new_inits = []
        self._n = 0

    def const(self, name):
        """The value of constant tensor ``name`` (initializer or ``Constant``), else None."""
        from onnx import numpy_helper

        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        return self._constants.get(name)

    def scalar(self, name):
        value = self.const(name)
        return float(value.reshape(())) if value is not None and value.size == 1 else None

    def made_by(self, name, *op_types):
        node = self.producer.get(name)
        return node if node is not None and node.op_type in op_types else None

    def only_use(self, name):
        """The one node reading ``name``, or None (several readers, or a graph output)."""
        found = self.consumers.get(name, [])
        return found[0] if len(found) == 1 and name not in self.outputs else None

    def split(self, node):
        """``(other input, constant value)`` of a binary node with one constant input."""
        a, b = node.input
        for x, c in ((a, b), (b, a)):
            value = self.const(c)
            if value is not None and self.const(x) is None:
                return x, value
        return None, None

    def add_const(self, value, hint):
        from onnx import numpy_helper

        self._n += 1
        name = f"{self.prefix}/{hint}_{self._n}"
        self.new_inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, anchor, op_type, *inputs, domain=None, **attrs):
        """A new node after ``anchor`` (a node of the graph); returns its output's name."""
        from onnx import helper

        self._n += 1
        name = f"{self.prefix}/{op_type}_{self._n}"
        kw = {"domain": domain} if domain else {}
        self.after[id(anchor)].append(helper.make_node(op_type, list(inputs), [name], name=name, **kw, **attrs))
        return name

    def replace(self, old, new):
        """Readers of tensor ``old`` read ``new`` instead (at :meth:`commit`)."""
        self.renamed[old] = new

    def commit(self):
        from onnx import helper

        graph = self.graph
        nodes = []
        for node in graph.node:
            nodes.append(node)
            nodes.extend(self.after.get(id(node), []))
        for node in nodes:
            for k, name in enumerate(node.input):
                while name in self.renamed:
                    name = self.renamed[name]
                node.input[k] = name
        for out in graph.output:
            if out.name in self.renamed:  # a renamed graph output: an Identity keeps its name
                source = out.name
                while source in self.renamed:
                    source = self.renamed[source]
                nodes = [n for n in nodes if out.name not in n.output]
                nodes.append(helper.make_node("Identity", [source], [out.name], name=f"{self.prefix}/out_{out.name}"))
        # drop what nothing reads any more (the replaced patterns and their shape arithmetic)
        needed = {o.name for o in graph.output}
        kept = []
        for node in reversed(nodes):
            if any(o in needed for o in node.output) or not node.output:
                kept.append(node)
                needed.update(i for i in node.input if i)
                for attr in node.attribute:  # subgraphs read outer names
                    for sub in ([attr.g] if attr.type == attr.GRAPH else list(attr.graphs)):
                        needed.update(i for n in sub.node for i in n.input)
        kept.reverse()
        del graph.node[:]
        graph.node.extend(kept)
        inits = [i for i in list(graph.initializer) + self.new_inits if i.name in needed]
        del graph.initializer[:]
        graph.initializer.extend(inits)
        return self.proto


def _attr(node, name, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def blocked_sum(net, anchor, x):
    """Sum over axis 1 of ``x`` ``(batch, n)`` as float32 partial sums of :data:`MEAN_BLOCK`
    values (zero-padded to a whole number of blocks), then the sum of those: ``(batch,)``.
    onnxruntime's ``ReduceSum`` / ``ReduceMean`` over one long row accumulate sequentially (over
    2.75 M values: 5.6e-4 relative for a mean square)."""
    op = net.op
    block = net.add_const(np.array([MEAN_BLOCK], np.int64), "block")
    n = op(anchor, "Shape", x, start=1, end=2)
    size = op(anchor, "Mul", op(anchor, "Div", op(anchor, "Add", n, net.add_const(
        np.array([MEAN_BLOCK - 1], np.int64), "block_m1")), block), block)  # ceil(n / block) * block
    pads = op(anchor, "Concat", net.add_const(np.zeros(3, np.int64), "zeros"), op(anchor, "Sub", size, n), axis=0)
    blocks = op(anchor, "Reshape", op(anchor, "Pad", x, pads),
                net.add_const(np.array([0, -1, MEAN_BLOCK], np.int64), "blocks"))
    partial = op(anchor, "ReduceSum", blocks, net.add_const(np.array([2], np.int64), "axis2"), keepdims=0)
    return op(anchor, "ReduceSum", partial, net.add_const(np.array([1], np.int64), "axis1"), keepdims=0)


def _chain_reaches(net, name, target, through=("Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze")):
    """Whether tensor ``name`` is ``target`` seen through data-preserving reshapes/transposes."""
    for _ in range(8):
        if name == target:
            return True
        node = net.made_by(name, *through)
        if node is None:
            return False
        name = node.input[0]
    return False


def _fuse_group_norms(net, ranks):
    """One-group GroupNorm (see the module docstring). Pattern (tf2onnx of
    ``GroupNorm._apply_normalization``, groups 1): ``R = Reshape(x)``; ``mean``, ``var`` =
    ``ReduceMean(axes=[1], keepdims=0)`` of ``R`` flattened and of the squared difference;
    ``Reshape(((R - mean) * Reciprocal(Sqrt(var + eps))) * gamma + beta)``, ``gamma`` and
    ``beta`` constants of shape ``(1, ..., 1, C)``. Returns the number rewritten."""
    done = 0
    for node in list(net.graph.node):
        if node.op_type != "Reshape":
            continue
        add = net.made_by(node.input[0], "Add")
        if add is None or net.only_use(add.output[0]) is not node:
            continue
        mul2_out, beta = net.split(add)
        mul2 = net.made_by(mul2_out, "Mul") if mul2_out else None
        if mul2 is None or beta is None or net.only_use(mul2_out) is not add:
            continue
        mul1_out, gamma = net.split(mul2)
        mul1 = net.made_by(mul1_out, "Mul") if mul1_out else None
        if mul1 is None or gamma is None or gamma.ndim < 3 or gamma.shape[-2] != 1 or beta.shape != gamma.shape:
            continue
        if any(d != 1 for d in gamma.shape[:-1]):
            continue
        sub = recip = None
        for a, b in (mul1.input, reversed(mul1.input)):
            if net.made_by(a, "Sub") and net.made_by(b, "Reciprocal"):
                sub, recip = net.made_by(a, "Sub"), net.made_by(b, "Reciprocal")
        if sub is None:
            continue
        reshape_in = net.made_by(sub.input[0], "Reshape")
        if reshape_in is None:
            continue
        x = reshape_in.input[0]
        mean = net.made_by(sub.input[1], "Reshape")
        mean = mean and net.made_by(mean.input[0], "ReduceMean")
        sqrt = net.made_by(recip.input[0], "Sqrt")
        eps_add = sqrt and net.made_by(sqrt.input[0], "Add")
        if mean is None or eps_add is None:
            continue
        var_in, eps = net.split(eps_add)
        var = net.made_by(var_in, "Reshape") if var_in else None
        var = var and net.made_by(var.input[0], "ReduceMean")
        square = var and net.made_by(var.input[0], "Mul")
        diff = square and square.input[0] == square.input[1] and net.made_by(square.input[0], "Sub")
        if not diff or eps is None or eps.size != 1:
            continue
        if not all(list(_attr(m, "axes", [])) == [1] and _attr(m, "keepdims", 1) == 0 for m in (mean, var)):
            continue
        if not (_chain_reaches(net, mean.input[0], reshape_in.output[0])
                and _chain_reaches(net, diff.input[0], reshape_in.output[0])):
            continue
        rank = ranks.get(x)
        channels = gamma.shape[-1]
        if rank is None or rank < 2 or rank != gamma.ndim - 1:
            continue
        op, anchor = net.op, add
        last = net.add_const(np.array([-1], np.int64), "last")
        flat = net.add_const(np.array([0, -1], np.int64), "flat")
        stat = net.add_const(np.array([-1] + [1] * (rank - 1), np.int64), "stat_shape")
        count = op(anchor, "Cast", op(anchor, "ReduceProd", op(anchor, "Shape", x, start=1), keepdims=0),
                   to=1)  # values per example, float
        total = blocked_sum(net, anchor, op(anchor, "Reshape", op(anchor, "ReduceSum", x, last, keepdims=0), flat))
        mean_b = op(anchor, "Reshape", op(anchor, "Div", total, count), stat)
        centred = op(anchor, "Sub", x, mean_b)
        squares = blocked_sum(net, anchor, op(anchor, "Reshape", op(anchor, "ReduceSumSquare", centred, axes=[-1],
                                                                       keepdims=0), flat))  # opset 17: axes attribute
        variance = op(anchor, "Div", squares, count)
        rstd = op(anchor, "Reciprocal", op(anchor, "Sqrt", op(anchor, "Add", variance, net.add_const(
            np.array(eps.reshape(()), np.float32), "eps"))))
        scale = op(anchor, "Mul", op(anchor, "Reshape", rstd, stat),
                   net.add_const(gamma.reshape(channels).astype(np.float32), "gamma"))
        out = op(anchor, "Add", op(anchor, "Mul", centred, scale),
                 net.add_const(beta.reshape(channels).astype(np.float32), "beta"))
        # the pattern's last Reshape (to the input's shape, or merged by tf2onnx with the next
        # one) now reads the result, in the input's shape and element order
        net.replace(add.output[0], out)
        done += 1
    return done


def _fuse_layer_norms(net, ranks):
    """``keras.layers.LayerNormalization`` over the last axis of a rank-3 tensor, as tf2onnx
    writes it: ``mean = GlobalAveragePool(x)``, ``var = GlobalAveragePool((x - mean)^2)``, ``m =
    Reciprocal(Sqrt(var + eps)) * gamma``, ``x * m + (beta - mean * m)`` (the last as ``Neg(mean)
    * m + beta``). Returns the number rewritten."""
    done = 0
    for pool in list(net.graph.node):
        if pool.op_type != "GlobalAveragePool" or ranks.get(pool.input[0]) != 3:
            continue
        x, mean = pool.input[0], pool.output[0]
        users = net.consumers.get(mean, [])
        sub = next((u for u in users if u.op_type == "Sub" and list(u.input) == [x, mean]), None)
        neg = next((u for u in users if u.op_type == "Neg"), None)
        if sub is None or neg is None or len(users) != 2:
            continue
        square = net.only_use(sub.output[0])
        if square is None or square.op_type != "Mul" or list(square.input) != [sub.output[0]] * 2:
            continue
        var = net.only_use(square.output[0])
        eps_add = var and var.op_type == "GlobalAveragePool" and net.only_use(var.output[0])
        if not eps_add or eps_add.op_type != "Add":
            continue
        _, eps = net.split(eps_add)
        sqrt = net.only_use(eps_add.output[0])
        recip = sqrt and sqrt.op_type == "Sqrt" and net.only_use(sqrt.output[0])
        scale = recip and recip.op_type == "Reciprocal" and net.only_use(recip.output[0])
        if eps is None or eps.size != 1 or not scale or scale.op_type != "Mul":
            continue
        _, gamma = net.split(scale)
        if gamma is None or gamma.ndim != 3 or gamma.shape[:2] != (1, 1):
            continue
        users = net.consumers.get(scale.output[0], [])
        mul_x = next((u for u in users if u.op_type == "Mul" and x in u.input), None)
        mul_m = next((u for u in users if u.op_type == "Mul" and neg.output[0] in u.input), None)
        if len(users) != 2 or mul_x is None or mul_m is None:
            continue
        add_b = net.only_use(mul_m.output[0])
        if add_b is None or add_b.op_type != "Add":
            continue
        _, beta = net.split(add_b)
        final = net.only_use(add_b.output[0])
        if beta is None or beta.shape != gamma.shape or final is None or final.op_type != "Add":
            continue
        if sorted(final.input) != sorted([mul_x.output[0], add_b.output[0]]):
            continue
        channels = gamma.shape[-1]
        out = net.op(final, "LayerNormalization", x, net.add_const(gamma.reshape(channels).astype(np.float32), "gamma"),
                     net.add_const(beta.reshape(channels).astype(np.float32), "beta"), axis=-1,
                     epsilon=float(eps.reshape(())))
        net.replace(final.output[0], out)
        done += 1
    return done


def _fuse_gelus(net):
    """``Mul(Mul(x, 0.5), Sub(1, Erf(Mul(Neg(x), 1 / sqrt(2)))))`` (exact GELU through
    ``erfc``) → ``com.microsoft:Gelu(x)``. Returns the number rewritten."""
    done = 0
    for erf in list(net.graph.node):
        if erf.op_type != "Erf":
            continue
        scaled = net.made_by(erf.input[0], "Mul")
        arg, inv_sqrt2 = net.split(scaled) if scaled else (None, None)
        neg = net.made_by(arg, "Neg") if arg else None
        if neg is None or inv_sqrt2 is None or inv_sqrt2.size != 1:
            continue
        if abs(float(inv_sqrt2.reshape(())) - 0.5 ** 0.5) > 1e-6:
            continue
        x = neg.input[0]
        erfc = net.only_use(erf.output[0])
        if erfc is None or erfc.op_type != "Sub" or erfc.input[1] != erf.output[0] or net.scalar(erfc.input[0]) != 1.0:
            continue
        final = net.only_use(erfc.output[0])
        if final is None or final.op_type != "Mul":
            continue
        half_out = next((i for i in final.input if i != erfc.output[0]), None)
        half = net.made_by(half_out, "Mul") if half_out else None
        if half is None:
            continue
        other, value = net.split(half)
        if other != x or value is None or value.size != 1 or float(value.reshape(())) != 0.5:
            continue
        net.replace(final.output[0], net.op(final, "Gelu", x, domain=MS_DOMAIN))
        done += 1
    return done


def _fold_attention_scales(net):
    """``Softmax(Mul(view(MatMul(a, b)), s))``, ``s`` a scalar constant and ``view`` Reshape /
    Squeeze / Unsqueeze nodes each read only by the next, → ``Softmax(view(MatMul(a * s, b)))``:
    the attention scores' scale on the queries (``keys / head_dim`` times fewer values than the
    scores). Returns the number rewritten."""
    done = 0
    for mul in list(net.graph.node):
        if mul.op_type != "Mul":
            continue
        users = net.consumers.get(mul.output[0], [])
        if len(users) != 1 or users[0].op_type != "Softmax":
            continue
        y, s = net.split(mul)
        if y is None or s is None or s.size != 1:
            continue
        name, matmul = y, None
        for _ in range(4):
            node = net.producer.get(name)
            if node is None or net.only_use(name) is None:
                break
            if node.op_type == "MatMul":
                matmul = node
                break
            if node.op_type not in ("Reshape", "Squeeze", "Unsqueeze"):
                break
            name = node.input[0]
        source = matmul and net.producer.get(matmul.input[0])
        if source is None:
            continue
        matmul.input[0] = net.op(source, "Mul", matmul.input[0],
                                 net.add_const(np.array(s.reshape(()), np.float32), "scale"))
        net.replace(mul.output[0], y)
        done += 1
    return done


def _fold_conv_biases(net):
    """``Add(Squeeze(Conv(x, w), axes=[2]), b)``, ``b`` a per-output-channel constant ``(1, O, 1)``
    or ``(O, 1)``, → ``Squeeze(Conv(x, w, b))`` (tf2onnx writes a Keras ``Conv1D`` as a 2-D
    ``Conv`` between ``Unsqueeze`` and ``Squeeze``, its bias after the ``Squeeze``, where
    onnxruntime's Conv + Add fusion does not see it). Returns the number rewritten."""
    done = 0
    for add in list(net.graph.node):
        if add.op_type != "Add":
            continue
        squeezed, bias = net.split(add)
        squeeze = net.made_by(squeezed, "Squeeze") if squeezed else None
        if squeeze is None or bias is None or net.only_use(squeezed) is not add:
            continue
        axes = net.const(squeeze.input[1]) if len(squeeze.input) > 1 else _attr(squeeze, "axes")
        conv = net.made_by(squeeze.input[0], "Conv")
        if conv is None or axes is None or list(np.ravel(axes) % 4) != [2] or len(conv.input) != 2:
            continue
        if net.only_use(conv.output[0]) is not squeeze:
            continue
        w = net.const(conv.input[1])
        if w is None or w.ndim != 4 or bias.shape not in ((1, w.shape[0], 1), (w.shape[0], 1)):
            continue
        conv.input.append(net.add_const(bias.reshape(w.shape[0]).astype(np.float32), "conv_bias"))
        net.replace(add.output[0], squeeze.output[0])
        done += 1
    return done


def _pointwise_convs_as_matmuls(net):
    """A 1 x 1 ``Conv`` that tf2onnx put between layout transposes, channels-last ``x`` in and
    out, → ``MatMul(x, w^T) + b``: ``Transpose(Unsqueeze(x, [1]), [0, 3, 1, 2])`` → ``Conv`` →
    ``Squeeze([2])`` → ``Transpose([0, 2, 1])`` (a ``Conv1D``, ``x`` ``(batch, time, C)``), or
    ``Transpose(x, [0, 3, 1, 2])`` → ``Conv`` → ``Transpose([0, 2, 3, 1])`` (a ``Conv2D``). The
    two transposes, onnxruntime's blocked-layout reorders around the convolution and the
    ``Squeeze`` go. Returns the number rewritten."""
    done = 0
    for conv in list(net.graph.node):
        if conv.op_type != "Conv" or len(conv.input) not in (2, 3):
            continue
        w = net.const(conv.input[1])
        if w is None or w.ndim != 4 or w.shape[2:] != (1, 1) or _attr(conv, "group", 1) != 1:
            continue
        if any(v != 1 for v in list(_attr(conv, "strides", [1, 1])) + list(_attr(conv, "dilations", [1, 1]))):
            continue
        if any(_attr(conv, "pads", [0, 0, 0, 0])):  # (auto_pad pads a 1 x 1, stride-1 kernel by nothing)
            continue
        bias = net.const(conv.input[2]) if len(conv.input) == 3 else None
        if len(conv.input) == 3 and bias is None:
            continue
        before = net.made_by(conv.input[0], "Transpose")
        if before is None or list(_attr(before, "perm", [])) != [0, 3, 1, 2]:
            continue
        def readers(name, perm):
            """The transpose back to channels-last among ``name``'s readers, and its ``Shape``
            readers (whole shapes only), or ``(None, None)`` when it has any other reader."""
            found = net.consumers.get(name, [])
            back = [n for n in found if n.op_type == "Transpose" and list(_attr(n, "perm", [])) == perm]
            shapes = [n for n in found if n.op_type == "Shape" and not n.attribute]
            if name in net.outputs or len(back) != 1 or len(back) + len(shapes) != len(found):
                return None, None
            return back[0], shapes

        x, back, shapes, to_first = None, None, None, None
        found = net.consumers.get(conv.output[0], [])
        if len(found) == 1 and found[0].op_type == "Squeeze" and conv.output[0] not in net.outputs:
            squeeze = found[0]
            axes = net.const(squeeze.input[1]) if len(squeeze.input) > 1 else _attr(squeeze, "axes")
            unsqueeze = net.made_by(before.input[0], "Unsqueeze")
            u_axes = unsqueeze and (net.const(unsqueeze.input[1]) if len(unsqueeze.input) > 1
                                    else _attr(unsqueeze, "axes"))
            # axes of the rank-4 tensor, as tf2onnx writes them (2 or -2; 1 or -3)
            if (axes is not None and list(np.ravel(axes) % 4) == [2] and u_axes is not None
                    and list(np.ravel(u_axes) % 4) == [1]):
                back, shapes = readers(squeeze.output[0], [0, 2, 1])
                x, to_first = unsqueeze.input[0], [0, 2, 1]
        else:
            back, shapes = readers(conv.output[0], [0, 2, 3, 1])
            x, to_first = before.input[0], [0, 3, 1, 2]
        if back is None:
            continue
        weight = np.ascontiguousarray(w[:, :, 0, 0].T).astype(np.float32)  # (C, O)
        y = net.op(back, "MatMul", x, net.add_const(weight, "pointwise"))
        if bias is not None:
            y = net.op(back, "Add", y, net.add_const(bias.reshape(-1).astype(np.float32), "pointwise_bias"))
        net.replace(back.output[0], y)
        for shape in shapes:  # the channels-first shape, from the result's
            net.replace(shape.output[0], net.op(back, "Gather", net.op(back, "Shape", y),
                                                net.add_const(np.array(to_first, np.int64), "to_first"), axis=0))
        done += 1
    return done


def fuse_hybrid_core(proto):
    """The fusions of the module docstring on a tf2onnx core ``proto`` (changed in place).
    Returns ``(proto, counts)``, ``counts`` ``{"GroupNorm": n, "LayerNormalization": n,
    "Gelu": n, "attention scale": n, "conv bias": n, "pointwise conv": n}``."""
    from onnx import helper, shape_inference

    inferred = shape_inference.infer_shapes(proto)
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in
             list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
             if v.type.tensor_type.HasField("shape")}
    del inferred
    counts = {}
    net = _Net(proto, "fused/norm")
    counts["GroupNorm"] = _fuse_group_norms(net, ranks)
    counts["LayerNormalization"] = _fuse_layer_norms(net, ranks)
    net.commit()
    net = _Net(proto, "fused/gelu")
    counts["Gelu"] = _fuse_gelus(net)
    counts["attention scale"] = _fold_attention_scales(net)
    counts["conv bias"] = _fold_conv_biases(net)
    net.commit()
    net = _Net(proto, "fused/pointwise")
    counts["pointwise conv"] = _pointwise_convs_as_matmuls(net)
    net.commit()
    if counts["Gelu"] and not any(o.domain == MS_DOMAIN for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return proto, counts
