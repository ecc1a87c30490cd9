"""Signal processing written with ONNX operators on a :class:`~kerasep.export.onnx.graph._Graph`.

- framing (:func:`_frames`): padding as :class:`kerasep.layers.STFT`, the signal cut into
  ``hop``-sample blocks, ``r = ceil(n_fft / hop)`` shifted block slices concatenated (and cut to
  ``n_fft`` samples when ``hop`` does not divide ``n_fft``), Hann window (:func:`_hann`);
- real FFT through the ``DFT`` operator on ``n_fft / 2`` packed complex points (:func:`_rfft`,
  :func:`_irfft`), or as two matrix products, the four-step FFT (:func:`_fft_split`,
  :func:`_rfft_matmul`, :func:`_irfft_matmul`);
- windowed overlap-add and the squared-window envelope (:func:`_windowed_ola`,
  :func:`_overlap_add`): each frame zero-padded to ``r * hop`` samples, cut into ``r`` blocks of
  ``hop``, the ``r`` block columns shifted and summed;
- magnitude and ratio masks as the Keras layers (:func:`_magnitude`, :func:`_ratio_masks`).

Any ``hop_length`` works (e.g. 441 samples with ``n_fft`` 2048): frames and overlap-add are
``r`` slices, pads and one sum, never a per-sample gather or scatter. (The matrix-product FFT
of the patch stream, :func:`_fft_split`, needs ``hop`` to divide ``n_fft``; otherwise the
``DFT``-operator path is taken.)
"""
import numpy as np


def _hann(n_fft):
    n = np.arange(n_fft, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)


def _typed_const(g, value, dtype, hint):
    """A constant in ``dtype``: ``g.const`` for float32 (stored once); float64 values get their
    own initializer (``g.const`` stores floats as float32)."""
    if np.dtype(dtype) != np.float64:
        return g.const(value, np.float32, hint)
    from onnx import numpy_helper

    name = g.name(hint)
    g.initializers.append(numpy_helper.from_array(np.asarray(value, np.float64), name))
    return name


def _blocks_per_frame(n_fft, hop):
    """``r = ceil(n_fft / hop)``: the ``hop``-sample blocks a frame of ``n_fft`` samples touches
    when frames start on block boundaries."""
    return -(-n_fft // hop)


def _padded_window(n_fft, hop, power=1):
    """The Hann window to the ``power``, zero-padded to ``r * hop`` samples (``r`` from
    :func:`_blocks_per_frame`)."""
    w = _hann(n_fft) ** power
    return np.pad(w, (0, _blocks_per_frame(n_fft, hop) * hop - n_fft))


def _frames(g, x, spec):
    """``x`` (batch, nb_channels, nb_timesteps) → windowed frames (batch, nb_channels, nb_frames,
    n_fft), and ``nb_frames`` (1-element int64). Frame ``f`` is padded samples ``[f * hop,
    f * hop + n_fft)``: the ``r = ceil(n_fft / hop)`` blocks ``f .. f + r - 1`` of ``hop``
    samples concatenated, cut to ``n_fft``. With ``spec["stft_dtype"] == "float64"`` the
    waveform is cast to float64 first and the frames are float64 (pass ``dtype=np.float64`` to
    :func:`_rfft` then)."""
    n_fft, hop, padding = spec["n_fft"], spec["hop_length"], spec["padding"]
    r = _blocks_per_frame(n_fft, hop)
    dtype = np.float64 if spec.get("stft_dtype", "float32") == "float64" else np.float32
    if dtype == np.float64:
        x = g.op("Cast", x, to=11)  # DOUBLE
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
    frames = g.op("Concat", *shifted, axis=3) if r > 1 else shifted[0]  # (b, c, nb_frames, r * hop)
    if r * hop != n_fft:
        frames = g.slice(frames, 0, n_fft, 3)
    frames = g.op("Mul", frames, _typed_const(g, _hann(n_fft), dtype, "window"))
    return frames, nb_frames


def _rfft(g, frames, n_fft, nb_bins, dtype=np.float32):
    """Real FFT of ``frames`` (..., n_fft) → (real, imag), each (..., nb_bins), via an
    ``n_fft/2``-point complex DFT of the even/odd-packed frames; ``dtype``: the frames' float
    type (float32, or float64 frames from :func:`_frames`)."""
    h = n_fft // 2
    z = g.op("Reshape", frames, g.ints(0, 0, 0, h, 2))  # even samples real, odd imag
    z = g.op("DFT", z, axis=3, inverse=0, onesided=0)  # (b, c, f, h, 2)
    k = np.arange(nb_bins)
    zk = g.take(z, k % h, 3)
    zr = g.take(z, (h - k) % h, 3)
    a, b = (g.op("Squeeze", g.slice(zk, i, i + 1, 4), g.ints(4)) for i in (0, 1))
    c, d = (g.op("Squeeze", g.slice(zr, i, i + 1, 4), g.ints(4)) for i in (0, 1))
    theta = 2.0 * np.pi * k / n_fft
    half = _typed_const(g, 0.5, dtype, "half")
    sin = _typed_const(g, 0.5 * np.sin(theta), dtype, "sin")
    cos = _typed_const(g, 0.5 * np.cos(theta), dtype, "cos")
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
    """Frames (b, c, nb_frames, n_fft) × window, overlap-added by summing ``r = ceil(n_fft / hop)``
    shifted block copies → (b, c, nb_frames + r - 1, 1, hop) (not divided by the envelope). When
    ``hop`` does not divide ``n_fft`` the frames are zero-padded to ``r * hop`` samples first."""
    r = _blocks_per_frame(n_fft, hop)
    frames = g.op("Mul", frames, g.const(_hann(n_fft), np.float32, "window"))
    if r * hop != n_fft:
        frames = g.pad_axis(frames, 4, 3, 0, r * hop - n_fft)
    blocks = g.op("Reshape", frames, g.ints(0, 0, 0, r, hop))
    parts = [g.pad_axis(g.slice(blocks, k, k + 1, 3), 5, 2, k, r - 1 - k) for k in range(r)]
    return g.op("Sum", *parts) if r > 1 else parts[0]


def _overlap_add(g, frames, nb_frames, length, spec):
    """Windowed overlap-add of ``frames`` (b, c, nb_frames, n_fft), divided by the squared-window
    envelope (as :class:`kerasep.layers.ISTFT`), cropped to ``length`` samples."""
    n_fft, hop, padding = spec["n_fft"], spec["hop_length"], spec["padding"]
    r = _blocks_per_frame(n_fft, hop)
    signal = _windowed_ola(g, frames, n_fft, hop)  # (b, c, nb_frames + r - 1, 1, hop)
    # envelope[j] = sum_k w²[k-th block] * [0 <= j - k < nb_frames]
    j = g.op("Range", g.const(np.int64(0)), g.op("Squeeze", g.op("Add", nb_frames, g.ints(r - 1)), g.ints(0)),
             g.const(np.int64(1)))
    jk = g.op("Sub", g.op("Unsqueeze", j, g.ints(1)), g.const(np.arange(r)[None, :], np.int64))
    inside = g.op("And", g.op("GreaterOrEqual", jk, g.ints(0)), g.op("Less", jk, nb_frames))
    w2 = _padded_window(n_fft, hop, power=2).reshape(r, hop)
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
    direction). None when no split exists, or when ``hop`` does not divide ``n_fft`` (the
    matrix-product path lays each frame out as ``n_fft / hop`` whole blocks)."""
    if n_fft % hop:
        return None
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
