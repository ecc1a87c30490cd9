"""Multichannel Wiener filtering (the EM post-processing of norbert / Open-Unmix) in TF ops.

Pure functions first (:func:`wiener`, :func:`expectation_maximization`, :func:`mixture_phase_init`),
then a thin serialisable layer (:class:`WienerFilter`). Everything is written with real float
arithmetic on ``(real, imag)`` pairs (no complex dtypes, no ``tf.py_function``), so it is
differentiable with respect to the magnitude estimates and exports to SavedModel and ONNX.

Layouts (kerasep's one complex layout, a trailing ``(real, imag)`` axis):

- magnitude estimates: ``(batch, nb_targets, nb_channels, nb_frames, nb_bins)``, non-negative;
- mixture STFT: ``(batch, nb_channels, nb_frames, nb_bins, 2)``;
- result: ``(batch, nb_sources, nb_channels, nb_frames, nb_bins, 2)`` with
  ``nb_sources = nb_targets + residual``.

Any model that estimates magnitudes can use it: Open-Unmix's targets, or the U-Net's masked
magnitudes over its first ``F`` bins (crop the mixture STFT to the same bins; this is Spleeter's
``--mwf`` option).

The algorithm is the one of ``openunmix.filtering.wiener``: initial estimates (the magnitudes with
the mixture's phase, or soft masks), an optional residual source (mixture minus the rest), then
``niter`` EM iterations that re-estimate each source's power spectral density ``v_j`` and spatial
covariance ``R_j`` and apply the multichannel Wiener gain ``v_j R_j C_xx^{-1}``. Like Open-Unmix,
filtering is done independently on windows of ``wiener_win_len`` frames (time-varying spatial
models, bounded memory), each rescaled so that its largest mixture magnitude is at most
``scale_factor``. Numerical safety: ``C_xx`` gets ``sqrt(eps)`` on its diagonal, covariance
weights ``eps``, silent bins take phase zero, and determinants are floored.
"""
import functools

from kerasep.backend import keras, tf

_TINY = 1e-37  # floor for |det|^2 (float32's smallest normal is ~1.2e-38)


def _check_args(niter, wiener_win_len, eps, scale_factor):
    if int(niter) != niter or niter < 0:
        raise ValueError(f"`niter` must be an integer >= 0. Received: niter={niter}")
    if wiener_win_len is not None and (int(wiener_win_len) != wiener_win_len or wiener_win_len < 1):
        raise ValueError(
            f"`wiener_win_len` must be a positive integer or None. Received: wiener_win_len={wiener_win_len}"
        )
    if eps <= 0:
        raise ValueError(f"`eps` must be > 0. Received: eps={eps}")
    if scale_factor <= 0:
        raise ValueError(f"`scale_factor` must be > 0. Received: scale_factor={scale_factor}")


def mixture_phase_init(mag_estimates, mix_stft):
    """Magnitude estimates with the mixture's phase.

    Args:
        mag_estimates: ``(batch, nb_targets, nb_channels, nb_frames, nb_bins)``.
        mix_stft: ``(batch, nb_channels, nb_frames, nb_bins, 2)``.

    Returns:
        ``(real, imag)``, each ``(batch, nb_targets, nb_channels, nb_frames, nb_bins)``. Bins where
        the mixture is exactly zero get phase 0 (as ``atan2(0, 0) = 0``).
    """
    xr, xi = mix_stft[..., 0], mix_stft[..., 1]
    energy = xr * xr + xi * xi
    nonzero = energy > 0
    mag = tf.sqrt(tf.where(nonzero, energy, tf.ones_like(energy)))
    cos = tf.where(nonzero, xr / mag, tf.ones_like(xr))
    sin = tf.where(nonzero, xi / mag, tf.zeros_like(xi))
    return mag_estimates * cos[:, None], mag_estimates * sin[:, None]


def softmask_init(mag_estimates, mix_stft, eps=1e-10):
    """Ratio masks ``v_j / (eps + sum_k v_k)`` applied to the complex mixture (same shapes as
    :func:`mixture_phase_init`)."""
    mask = mag_estimates / (eps + tf.reduce_sum(mag_estimates, axis=1, keepdims=True))
    return mask * mix_stft[:, None, ..., 0], mask * mix_stft[:, None, ..., 1]


def _invert(cxx):
    """Inverse of 1x1 or 2x2 complex matrices given as ``{(row, col): (real, imag)}``."""
    nb_channels = int(round(len(cxx) ** 0.5))
    if nb_channels == 1:
        ar, ai = cxx[0, 0]
        norm = tf.maximum(ar * ar + ai * ai, _TINY)
        return {(0, 0): (ar / norm, -ai / norm)}
    (ar, ai), (br, bi) = cxx[0, 0], cxx[0, 1]
    (cr, ci), (dr, di) = cxx[1, 0], cxx[1, 1]
    det_r = ar * dr - ai * di - (br * cr - bi * ci)
    det_i = ar * di + ai * dr - (br * ci + bi * cr)
    norm = tf.maximum(det_r * det_r + det_i * det_i, _TINY)
    inv_r, inv_i = det_r / norm, -det_i / norm  # 1 / det

    def times(sign, zr, zi):
        return sign * (inv_r * zr - inv_i * zi), sign * (inv_r * zi + inv_i * zr)

    return {
        (0, 0): times(1.0, dr, di),
        (0, 1): times(-1.0, br, bi),
        (1, 0): times(-1.0, cr, ci),
        (1, 1): times(1.0, ar, ai),
    }


def expectation_maximization(yr, yi, xr, xi, iterations=1, eps=1e-10):
    """EM refinement of source STFT estimates (the simplified scheme of norbert / Open-Unmix).

    Args:
        yr, yi: initial source estimates, each ``(batch, nb_sources, nb_channels, nb_frames, nb_bins)``.
        xr, xi: mixture STFT, each ``(batch, nb_channels, nb_frames, nb_bins)``.
        iterations: EM iterations (static).
        eps: regularisation (``C_xx`` gets ``sqrt(eps)`` on its diagonal).

    The spatial covariances are estimated over all frames given (one window).

    Returns:
        ``(yr, yi)`` refined, same shapes.
    """
    nb_channels = xr.shape[1]
    if nb_channels not in (1, 2):
        raise ValueError(
            f"the Wiener filter supports 1 or 2 channels; found nb_channels={nb_channels}"
        )
    reg = tf.sqrt(tf.constant(eps, xr.dtype))
    chans = range(nb_channels)
    x = [(xr[:, c][:, None], xi[:, c][:, None]) for c in chans]  # (batch, 1, frames, bins)
    for _ in range(iterations):
        y = [(yr[:, :, c], yi[:, :, c]) for c in chans]  # (batch, sources, frames, bins)
        # power spectral densities: mean energy over channels
        v = tf.add_n([r * r + i * i for r, i in y]) / float(nb_channels)
        weight = eps + tf.reduce_sum(v, axis=2, keepdims=True)  # (batch, sources, 1, bins)
        # spatial covariances R_j[c1, c2] = sum_t y_c1 conj(y_c2) / weight
        cov = {}
        for c1 in chans:
            for c2 in chans:
                (ar, ai), (br, bi) = y[c1], y[c2]
                cov[c1, c2] = (
                    tf.reduce_sum(ar * br + ai * bi, axis=2, keepdims=True) / weight,
                    tf.reduce_sum(ai * br - ar * bi, axis=2, keepdims=True) / weight,
                )
        # mixture covariance C_xx = reg I + sum_j v_j R_j: (batch, frames, bins)
        cxx = {}
        for (c1, c2), (rr, ri) in cov.items():
            real = tf.reduce_sum(v * rr, axis=1)
            cxx[c1, c2] = (real + reg if c1 == c2 else real, tf.reduce_sum(v * ri, axis=1))
        inv = {k: (r[:, None], i[:, None]) for k, (r, i) in _invert(cxx).items()}
        # gains G_j = v_j R_j C_xx^{-1}, then y_j = G_j x
        new_r, new_i = [], []
        for c1 in chans:
            out_r = out_i = 0.0
            for c2 in chans:
                gr = gi = 0.0
                for c3 in chans:
                    (rr, ri), (qr, qi) = cov[c1, c3], inv[c3, c2]
                    gr = gr + rr * qr - ri * qi
                    gi = gi + rr * qi + ri * qr
                gr, gi = gr * v, gi * v
                mr, mi = x[c2]
                out_r = out_r + gr * mr - gi * mi
                out_i = out_i + gr * mi + gi * mr
            new_r.append(out_r)
            new_i.append(out_i)
        yr, yi = tf.stack(new_r, axis=2), tf.stack(new_i, axis=2)
    return yr, yi


def _shape(t):
    """Static dims where known, dynamic ones elsewhere (keeps static shapes through reshapes)."""
    dynamic = tf.shape(t)
    return [d if d is not None else dynamic[k] for k, d in enumerate(t.shape)]


def _to_windows(t, axis, win):
    """Pad the frame ``axis`` to a multiple of ``win`` and fold the windows into the batch axis:
    ``(batch, ..., nb_frames, ...)`` → ``(batch * nb_windows, ..., win, ...)``."""
    rank = t.shape.rank
    nb_frames = tf.shape(t)[axis]
    paddings = [[0, 0]] * rank
    paddings[axis] = [0, (win - nb_frames % win) % win]  # no negative modulo (ONNX)
    t = tf.pad(t, paddings)
    shape = _shape(t)
    t = tf.reshape(t, shape[:axis] + [-1, win] + shape[axis + 1 :])
    perm = [0, axis] + [d for d in range(1, rank + 1) if d != axis]
    t = tf.transpose(t, perm)  # (batch, nb_windows, ..., win, ...)
    return tf.reshape(t, [-1] + _shape(t)[2:])


def _from_windows(t, batch, axis, nb_frames):
    """Inverse of :func:`_to_windows`, cropped to ``nb_frames`` (``axis``: the frame axis of the
    un-windowed tensor)."""
    rank = t.shape.rank
    t = tf.reshape(t, [batch, -1] + _shape(t)[1:])  # (batch, nb_windows, ..., win, ...)
    perm = [0] + list(range(2, axis + 1)) + [1] + list(range(axis + 1, rank + 1))
    t = tf.transpose(t, perm)  # (batch, ..., nb_windows, win, ...)
    shape = _shape(t)
    t = tf.reshape(t, shape[:axis] + [-1] + shape[axis + 2 :])
    size = [-1] * rank
    size[axis] = nb_frames
    return tf.slice(t, [0] * rank, tf.stack(size))


def wiener(
    mag_estimates,
    mix_stft,
    niter=1,
    softmask=False,
    residual=False,
    wiener_win_len=300,
    eps=1e-10,
    scale_factor=10.0,
    jit_compile=False,
):
    """Multichannel Wiener filtering of a mixture STFT from source magnitude estimates.

    Args:
        mag_estimates: ``(batch, nb_targets, nb_channels, nb_frames, nb_bins)`` non-negative
            magnitude estimates (or a list of ``nb_targets`` tensors
            ``(batch, nb_channels, nb_frames, nb_bins)``).
        mix_stft: ``(batch, nb_channels, nb_frames, nb_bins, 2)`` mixture STFT, same bins.
        niter: EM iterations; 0 keeps the initial estimates.
        softmask: initial estimates from ratio masks instead of magnitudes with the mixture phase.
        residual: add a source ``mixture - sum(targets)`` (before EM).
        wiener_win_len: frames per independently filtered window (``None``: the whole input).
        eps: regularisation.
        scale_factor: each window is scaled down so its largest mixture magnitude is at most this.
        jit_compile: filter each window in one XLA-compiled function (windowed EM only; the
            window's shape is fixed, so it compiles once per process and layout). XLA fuses the
            EM's many elementwise ops into a few loops over the window (about 3x faster on CPU
            at Open-Unmix's 300 frames x 2049 bins). The ONNX export traces the plain ops.

    Returns:
        ``(batch, nb_sources, nb_channels, nb_frames, nb_bins, 2)`` source STFTs.
    """
    _check_args(niter, wiener_win_len, eps, scale_factor)
    if isinstance(mag_estimates, (list, tuple)):
        mag_estimates = tf.stack(list(mag_estimates), axis=1)
    mag_estimates = tf.convert_to_tensor(mag_estimates)
    mix_stft = tf.cast(tf.convert_to_tensor(mix_stft), mag_estimates.dtype)
    if mag_estimates.shape.rank != 5 or mix_stft.shape.rank != 5 or mix_stft.shape[-1] != 2:
        raise ValueError(
            "expected mag_estimates (batch, nb_targets, nb_channels, nb_frames, nb_bins) and "
            "mix_stft (batch, nb_channels, nb_frames, nb_bins, 2); found shapes "
            f"{mag_estimates.shape} and {mix_stft.shape}"
        )
    nb_targets = mag_estimates.shape[1]
    if niter > 0 and (nb_targets or 0) + int(residual) < 2:
        raise ValueError(
            "EM (niter > 0) needs at least two sources: estimate two targets or set residual=True. "
            f"Found nb_targets={nb_targets}, residual={residual}"
        )
    batch, nb_frames = tf.shape(mix_stft)[0], tf.shape(mix_stft)[2]
    if not (niter > 0 and wiener_win_len is not None):
        return _filter(mag_estimates, mix_stft, niter, softmask, residual, eps, scale_factor)
    # One window at a time (a loop, not one batched op): memory stays that of a single window
    # whatever the input length.
    win = int(wiener_win_len)
    mag_w = _to_windows(mag_estimates, 3, win)  # (batch * nb_windows, targets, channels, win, bins)
    mix_w = _to_windows(mix_stft, 2, win)  # (batch * nb_windows, channels, win, bins, 2)
    nb_sources = None if nb_targets is None else nb_targets + int(residual)
    filt = _compiled_filter(niter, softmask, residual, eps, scale_factor) if jit_compile else functools.partial(
        _filter, niter=niter, softmask=softmask, residual=residual, eps=eps, scale_factor=scale_factor)
    out = tf.map_fn(
        lambda pair: filt(pair[0][None], pair[1][None])[0],
        (mag_w, mix_w),
        fn_output_signature=tf.TensorSpec(
            [nb_sources, mix_stft.shape[1], win, mix_stft.shape[3], 2], mag_estimates.dtype
        ),
        parallel_iterations=1,
    )
    return _from_windows(out, batch, 3, nb_frames)


@functools.lru_cache(maxsize=16)
def _compiled_filter(niter, softmask, residual, eps, scale_factor):
    """:func:`_filter` with these settings as one XLA-compiled ``tf.function``."""

    def filt(mag_estimates, mix_stft):
        return _filter(mag_estimates, mix_stft, niter, softmask, residual, eps, scale_factor)

    return tf.function(filt, jit_compile=True)


def _filter(mag_estimates, mix_stft, niter, softmask, residual, eps, scale_factor):
    """Initial estimates, residual and EM over all the frames given (one window)."""
    if softmask:
        yr, yi = softmask_init(mag_estimates, mix_stft, eps)
    else:
        yr, yi = mixture_phase_init(mag_estimates, mix_stft)
    xr, xi = mix_stft[..., 0], mix_stft[..., 1]
    if residual:
        yr = tf.concat([yr, (xr - tf.reduce_sum(yr, axis=1))[:, None]], axis=1)
        yi = tf.concat([yi, (xi - tf.reduce_sum(yi, axis=1))[:, None]], axis=1)
    if niter > 0:
        # max(1, max|x| / scale_factor), written so that its gradient is finite everywhere
        peak = tf.reduce_max(xr * xr + xi * xi, axis=[1, 2, 3], keepdims=True)
        scale = tf.sqrt(tf.maximum(peak, scale_factor**2)) / scale_factor  # (n, 1, 1, 1)
        yr, yi = expectation_maximization(
            yr / scale[:, None], yi / scale[:, None], xr / scale, xi / scale, niter, eps
        )
        yr, yi = yr * scale[:, None], yi * scale[:, None]
    return tf.stack([yr, yi], axis=-1)  # (n, nb_sources, nb_channels, frames, bins, 2)

@keras.saving.register_keras_serializable(package="kerasep")
class WienerFilter(keras.layers.Layer):
    """Layer form of :func:`wiener` (no weights).

    Args:
        niter, softmask, residual, wiener_win_len, eps, scale_factor: see :func:`wiener`.

    Call arguments:
        mag_estimates: ``(batch, nb_targets, nb_channels, nb_frames, nb_bins)`` (or a list of
            ``(batch, nb_channels, nb_frames, nb_bins)``).
        mix_stft: ``(batch, nb_channels, nb_frames, nb_bins, 2)``.
        jit_compile: see :func:`wiener`.

    Output shape:
        ``(batch, nb_targets + residual, nb_channels, nb_frames, nb_bins, 2)``.
    """

    def __init__(
        self,
        niter=1,
        softmask=False,
        residual=False,
        wiener_win_len=300,
        eps=1e-10,
        scale_factor=10.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_args(niter, wiener_win_len, eps, scale_factor)
        self.niter = int(niter)
        self.softmask = bool(softmask)
        self.residual = bool(residual)
        self.wiener_win_len = None if wiener_win_len is None else int(wiener_win_len)
        self.eps = float(eps)
        self.scale_factor = float(scale_factor)

    def call(self, mag_estimates, mix_stft, jit_compile=False):
        return wiener(
            mag_estimates,
            mix_stft,
            niter=self.niter,
            softmask=self.softmask,
            residual=self.residual,
            wiener_win_len=self.wiener_win_len,
            eps=self.eps,
            scale_factor=self.scale_factor,
            jit_compile=jit_compile,
        )

    def compute_output_shape(self, mag_shape, mix_shape=None):
        if isinstance(mag_shape, list):
            nb_targets, (batch, channels, frames, bins) = len(mag_shape), mag_shape[0]
        else:
            batch, nb_targets, channels, frames, bins = mag_shape
        sources = None if nb_targets is None else nb_targets + int(self.residual)
        return (batch, sources, channels, frames, bins, 2)

    def get_config(self):
        config = super().get_config()
        config.update(
            niter=self.niter,
            softmask=self.softmask,
            residual=self.residual,
            wiener_win_len=self.wiener_win_len,
            eps=self.eps,
            scale_factor=self.scale_factor,
        )
        return config
