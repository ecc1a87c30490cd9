"""The ONNX graph writer the exported signal processing is written with: :class:`_Graph`
(``g.op("Add", a, b)`` returns the output's name; identical constants are stored once, shape
helpers, run-of-slices indexing, padding along one axis).

``onnx`` is imported lazily: importing this module needs only numpy.
"""
import hashlib

import numpy as np


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
