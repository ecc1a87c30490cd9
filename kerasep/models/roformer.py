"""Band-split RoFormers: BS-RoFormer (Lu et al. 2023, arXiv 2309.02612) and Mel-Band RoFormer
(Wang et al. 2023, arXiv 2310.01809).

The complex STFT of each channel (``torch.stft`` framing: centred, reflect padding, periodic Hann
window, ``win_length == n_fft``, not normalised) is split into frequency bands; each band's real
and imaginary parts (all channels together) are projected to ``dim`` features
(:class:`~kerasep.layers.band_split.BandSplit`); an axial RoPE Transformer
(:class:`~kerasep.layers.roformer_blocks.AxialRoformer`) alternates attention across time and
across bands; per-band MLP heads (:class:`~kerasep.layers.band_split.MaskEstimator`) estimate a
complex mask per stem, which multiplies the mixture's STFT before the inverse STFT.

- :class:`BSRoformer`: fixed, non-overlapping bands (``freqs_per_bands``), one ``final_norm``.
- :class:`MelBandRoformer`: ``num_bands`` overlapping bands, the supports of a Slaney mel
  filterbank (:func:`~kerasep.layers.band_split.mel_bands`); the masks of a frequency that
  several bands share are averaged; every transformer ends with an RMSNorm.

Arguments follow ZFTurbo's Music-Source-Separation-Training (MSST) ``model:`` section (the
YAML configs of the released checkpoints; :func:`kerasep.zoo.converters.roformer.config_from_yaml`
reads them) and the state-dict layout of lucidrains' ``BS-RoFormer`` 0.3.x, which MSST's
checkpoints share (:func:`kerasep.zoo.converters.roformer.convert_state`). Supported: what the
released configs use (``linear_transformer_depth=0``, ``skip_connection=False``,
``stft_normalized=False``, ``stft_win_length == stft_n_fft``, no ``freq_range``/``zero_dc``);
anything else raises ``ValueError("not supported: option=value")``.

Stereo as the checkpoints: channels are interleaved with frequencies (``'b s f t c -> b (f s) t
c'``), so a band of ``f`` frequencies has ``2 * f * nb_channels`` input features. Stems: the
model returns ``{target: waveform}`` for the ``targets`` (MSST's ``num_stems`` heads, in order).
"""
import functools

import numpy as np

from kerasep.backend import keras, tf
from kerasep.layers.band_split import BandSplit, MaskEstimator, RMSNorm, mel_bands
from kerasep.layers.roformer_blocks import AxialRoformer
from kerasep.layers.stft import ISTFT, STFT
from kerasep.models.separator import ChunkPolicy, Separator

#: BS-RoFormer's band layout of the released 44.1 kHz / n_fft 2048 checkpoints (62 bands, 1025 bins).
DEFAULT_FREQS_PER_BANDS = tuple([2] * 24 + [4] * 12 + [12] * 8 + [24] * 8 + [48] * 8 + [128, 129])

#: Loss-only options of the MSST configs: accepted and stored, no effect on the network.
LOSS_OPTIONS = dict(multi_stft_resolution_loss_weight=1.0,
                    multi_stft_resolutions_window_sizes=(4096, 2048, 1024, 512, 256),
                    multi_stft_hop_size=147, multi_stft_normalized=False)


def _not_supported(option, value, family):
    return ValueError(f"not supported: {option}={value!r} (kerasep's {family} implements the options of the "
                      f"released MSST checkpoints)")


class _BandRoformer(Separator):
    """Shared body of :class:`BSRoformer` and :class:`MelBandRoformer` (see the module doc)."""

    family_name = None
    # TF ran one released BS-RoFormer chunk 1.34x faster than our ONNX export in onnxruntime
    # (benchmarks/results/2026-12-01/bs_roformer*.txt: 10 s sweep 187.5 s vs 242.5 s; one chunk
    # 190.7 s vs 328.6 s, fused attention 349.7 s): softmax, norms and GELU outside the GEMMs.
    auto_backend = "keras"
    norm_output = False  # RMSNorm at the end of each transformer (Mel-Band) or a final_norm (BS)

    def __init__(self, targets=("vocals",), nb_channels=2, sample_rate=44100, dim=512, depth=12,
                 time_transformer_depth=1, freq_transformer_depth=1, linear_transformer_depth=0, dim_head=64,
                 heads=8, attn_dropout=0.1, ff_dropout=0.1, flash_attn=True, dim_freqs_in=1025, stft_n_fft=2048,
                 stft_hop_length=441, stft_win_length=2048, stft_normalized=False, mask_estimator_depth=2,
                 mlp_expansion_factor=4, skip_connection=False, use_torch_checkpoint=False, chunk_size=352800,
                 num_overlap=2, multi_stft_resolution_loss_weight=1.0,
                 multi_stft_resolutions_window_sizes=(4096, 2048, 1024, 512, 256), multi_stft_hop_size=147,
                 multi_stft_normalized=False, residual=None, **kwargs):
        super().__init__(**kwargs)
        family = type(self).__name__
        self.targets = [str(t) for t in targets]
        if not self.targets or len(set(self.targets)) != len(self.targets):
            raise ValueError(f"`targets` must be distinct names, at least one. Received: targets={targets}")
        self.residual = None if residual is None else str(residual)
        if self.residual is not None and (not self.residual or self.residual in self.targets):
            raise ValueError(f"`residual` must be a stem name other than the targets {self.targets}. "
                             f"Received: residual={residual!r}")
        self.nb_channels, self.sample_rate = int(nb_channels), int(sample_rate)
        if self.nb_channels not in (1, 2):
            raise ValueError(f"nb_channels must be 1 (MSST stereo: false) or 2 (stereo: true). "
                             f"Received: nb_channels={nb_channels}")
        self.dim, self.depth = int(dim), int(depth)
        self.time_transformer_depth, self.freq_transformer_depth = int(time_transformer_depth), int(
            freq_transformer_depth)
        self.linear_transformer_depth = int(linear_transformer_depth)
        self.dim_head, self.heads = int(dim_head), int(heads)
        self.attn_dropout, self.ff_dropout, self.flash_attn = float(attn_dropout), float(ff_dropout), bool(flash_attn)
        self.dim_freqs_in = int(dim_freqs_in)
        self.stft_n_fft, self.stft_hop_length = int(stft_n_fft), int(stft_hop_length)
        self.stft_win_length, self.stft_normalized = int(stft_win_length), bool(stft_normalized)
        self.mask_estimator_depth, self.mlp_expansion_factor = int(mask_estimator_depth), int(mlp_expansion_factor)
        self.skip_connection, self.use_torch_checkpoint = bool(skip_connection), bool(use_torch_checkpoint)
        self.chunk_size, self.num_overlap = int(chunk_size), int(num_overlap)
        self.multi_stft_resolution_loss_weight = float(multi_stft_resolution_loss_weight)
        self.multi_stft_resolutions_window_sizes = [int(w) for w in multi_stft_resolutions_window_sizes]
        self.multi_stft_hop_size, self.multi_stft_normalized = int(multi_stft_hop_size), bool(multi_stft_normalized)
        if self.linear_transformer_depth:
            raise _not_supported("linear_transformer_depth", self.linear_transformer_depth, family)
        if self.skip_connection:
            raise _not_supported("skip_connection", self.skip_connection, family)
        if self.stft_normalized:
            raise _not_supported("stft_normalized", self.stft_normalized, family)
        if self.stft_win_length != self.stft_n_fft:
            raise _not_supported("stft_win_length", f"{self.stft_win_length} (!= stft_n_fft {self.stft_n_fft})",
                                 family)
        if self.num_overlap < 1 or self.chunk_size < self.num_overlap:
            raise ValueError(f"chunk_size and num_overlap must be >= 1 with chunk_size // num_overlap >= 1 "
                             f"(MSST's audio.chunk_size, inference.num_overlap). Received: chunk_size={chunk_size}, "
                             f"num_overlap={num_overlap}")
        self.nb_bins = self.stft_n_fft // 2 + 1

        # computed in float64, then cast to float32 for the network: the band split's RMSNorm rescales
        # near-silent bands by their tiny norm, which makes float32 FFT rounding there visible (released
        # Mel-Band size, real excerpt: 1.02e-4 of the peak from lucidrains' model with a float32 STFT,
        # 7.4e-5 with this one; tests/models/roformer/test_roformer_full_size.py)
        self.stft = STFT(self.stft_n_fft, self.stft_hop_length, padding="center", pad_mode="reflect", dtype="float64",
                         name="stft")
        self.istft = ISTFT(self.stft_n_fft, self.stft_hop_length, padding="center", name="istft")
        band_dims = [2 * f * self.nb_channels for f in self._freqs_per_band()]
        self.band_dims = band_dims
        self.band_split = BandSplit(self.dim, band_dims, name="band_split")
        self.transformer = AxialRoformer(
            self.dim, self.depth, self.time_transformer_depth, self.freq_transformer_depth, heads=self.heads,
            dim_head=self.dim_head, attn_dropout=self.attn_dropout, ff_dropout=self.ff_dropout,
            norm_output=self.norm_output, name="transformer")
        self.final_norm = None if self.norm_output else RMSNorm(self.dim, name="final_norm")
        self.mask_estimators = [
            MaskEstimator(self.dim, band_dims, self._hidden_layers(), self.mlp_expansion_factor,
                          name=f"mask_estimator_{i}") for i in range(len(self.targets))]

    # --- family specifics ---------------------------------------------------------------------------

    def _freqs_per_band(self):
        raise NotImplementedError

    def _hidden_layers(self):
        raise NotImplementedError

    def _split(self, z):
        """``(batch, nb_frames, nb_bins * nb_channels, 2)`` → band features ``(batch, nb_frames,
        sum(band_dims))``."""
        raise NotImplementedError

    def _merge(self, masks):
        """Band masks ``(batch, nb_stems, nb_frames, sum(band_dims))`` → per-bin complex masks
        ``(batch, nb_stems, nb_frames, nb_bins * nb_channels, 2)``."""
        raise NotImplementedError

    # --- Separator contract ---------------------------------------------------------------------------

    @property
    def stems(self):
        """``targets``, then ``residual`` when set (the mixture minus the targets' sum)."""
        return list(self.targets) + ([self.residual] if self.residual else [])

    @property
    def chunking(self):
        """The checkpoints' own chunking, Music-Source-Separation-Training's ``demix``: segments of
        ``chunk_size`` samples starting every ``chunk_size // num_overlap``, the song reflect-padded
        by ``chunk_size - chunk_size // num_overlap`` at both ends, each segment's output weighted by
        ones faded linearly over ``chunk_size // 10`` samples at both ends (not at the song's first
        and last segment), the weighted sum divided by the sum of the weights
        (``ChunkPolicy(weighting="faded")``)."""
        return ChunkPolicy("segment", segment_seconds=self.chunk_size / self.sample_rate,
                           overlap=1.0 - 1.0 / self.num_overlap, weighting="faded", num_overlap=self.num_overlap)

    # --- Keras ----------------------------------------------------------------------------------------

    def build(self, input_shape=None):
        self.band_split.build(None)
        self.transformer.build(None)
        if self.final_norm is not None:
            self.final_norm.build((None, None, None, self.dim))
        for estimator in self.mask_estimators:
            estimator.build(None)
        super().build(input_shape)

    def separate_stft(self, spec, training=False):
        """The network between the STFTs: the mixture's complex STFT ``(batch, nb_channels,
        nb_frames, nb_bins, 2)`` → the stems' ``(batch, nb_stems, nb_channels, nb_frames, nb_bins,
        2)`` (masked mixture STFTs, stems in ``targets`` order)."""
        spec = tf.convert_to_tensor(spec, tf.float32)
        shape = tf.shape(spec)
        batch, frames = shape[0], shape[2]
        C, F = self.nb_channels, self.nb_bins
        # channels interleaved with the frequencies: (batch, frames, F * C, 2), index f * C + c
        z = tf.reshape(tf.transpose(spec, [0, 2, 3, 1, 4]), [batch, frames, F * C, 2])
        x = self.band_split(self._split(z))  # (batch, frames, bands, dim)
        x = self.transformer(x, training=training)
        if self.final_norm is not None:
            x = self.final_norm(x)
        masks = tf.stack([est(x) for est in self.mask_estimators], axis=1)  # (batch, S, frames, D)
        masks = self._merge(masks)  # (batch, S, frames, F * C, 2)
        zr, zi = z[:, None, ..., 0], z[:, None, ..., 1]
        mr, mi = masks[..., 0], masks[..., 1]
        y = tf.stack([zr * mr - zi * mi, zr * mi + zi * mr], axis=-1)
        y = tf.reshape(y, [batch, len(self.targets), frames, F, C, 2])
        return tf.transpose(y, [0, 1, 4, 2, 3, 5])

    def call(self, waveform, training=False):
        mix = tf.convert_to_tensor(waveform, tf.float32)  # (batch, C, n)
        shape = tf.shape(mix)
        batch, length = shape[0], shape[2]
        spec = tf.cast(self.stft(tf.cast(mix, tf.float64)), tf.float32)  # (batch, C, frames, F, 2)
        y = self.separate_stft(spec, training=training)  # (batch, S, C, frames, F, 2)
        nb_stems = len(self.targets)
        ys = tf.shape(y)
        y = tf.reshape(y, [batch * nb_stems, self.nb_channels, ys[3], self.nb_bins, 2])
        out = self.istft(y, length)  # (batch * S, C, n)
        out = tf.reshape(out, [batch, nb_stems, self.nb_channels, length])
        stems = {t: out[:, i] for i, t in enumerate(self.targets)}
        if self.residual:  # MSST's instrumental: the mixture minus the estimate, in the waveform domain
            stems[self.residual] = mix - tf.reduce_sum(out, axis=1)
        return stems

    def export_spec(self):
        """STFT and inverse STFT as signal processing around a core ``(batch, nb_channels,
        nb_frames, nb_bins, 2)`` mixture STFT → ``{stem: STFT}`` (:mod:`kerasep.export.spec`), at
        any ``stft_hop_length`` (the released 441 samples with ``stft_n_fft`` 2048 included). A
        ``residual`` stem is the mixture's STFT minus the targets' (the inverse STFT is linear and
        inverts the STFT: the waveform difference of :meth:`call`)."""
        from kerasep.export.onnx.attention import fuse_attention

        inputs = keras.Input((self.nb_channels, None, self.nb_bins, 2), name="mix_stft")
        outputs = _SeparateSTFT(self, name="separate_stft")(inputs)
        return {
            "kind": "spectral",
            "n_fft": self.stft_n_fft,
            "hop_length": self.stft_hop_length,
            "padding": "center",
            "pad_mode": "reflect",
            "nb_bins": self.nb_bins,
            "mask_extension": "zeros",
            "power": 1.0,
            "core": keras.Model(inputs, outputs, name=f"{type(self).__name__.lower()}_core"),
            "core_layout": "stft",
            "core_output": "stft",
            "targets": self.stems,  # the residual too: the core returns its STFT
            # the forward STFT in float64: the band split's RMSNorm turns float32 rounding in near-silent
            # bands into visible output differences (released size, real audio, against a float64 Keras
            # STFT: 7.2e-4 relative with a float32 ONNX STFT, 1.3e-6 with float64)
            "stft_dtype": "float64",
            # the runner cuts songs as MSST's demix (kerasep.export.runner.chunks.iter_faded)
            "chunk_segment": int(self.chunk_size),
            "chunk_overlap": 1.0 - 1.0 / self.num_overlap,
            "chunk_weighting": "faded",
            # float32 exports: each attention as onnxruntime's MultiHeadAttention, not five operators
            # over the whole score tensor (kerasep.export.onnx.attention; benchmarks/roformer_flops.py)
            "core_rewrites": [functools.partial(
                fuse_attention, heads=self.heads, dim_head=self.dim_head,
                expected=self.depth * (self.time_transformer_depth + self.freq_transformer_depth))],
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            targets=list(self.targets), nb_channels=self.nb_channels, sample_rate=self.sample_rate, dim=self.dim,
            depth=self.depth, time_transformer_depth=self.time_transformer_depth,
            freq_transformer_depth=self.freq_transformer_depth,
            linear_transformer_depth=self.linear_transformer_depth, dim_head=self.dim_head, heads=self.heads,
            attn_dropout=self.attn_dropout, ff_dropout=self.ff_dropout, flash_attn=self.flash_attn,
            dim_freqs_in=self.dim_freqs_in, stft_n_fft=self.stft_n_fft, stft_hop_length=self.stft_hop_length,
            stft_win_length=self.stft_win_length, stft_normalized=self.stft_normalized,
            mask_estimator_depth=self.mask_estimator_depth, mlp_expansion_factor=self.mlp_expansion_factor,
            skip_connection=self.skip_connection, use_torch_checkpoint=self.use_torch_checkpoint,
            chunk_size=self.chunk_size, num_overlap=self.num_overlap,
            multi_stft_resolution_loss_weight=self.multi_stft_resolution_loss_weight,
            multi_stft_resolutions_window_sizes=list(self.multi_stft_resolutions_window_sizes),
            multi_stft_hop_size=self.multi_stft_hop_size, multi_stft_normalized=self.multi_stft_normalized,
            residual=self.residual,
        )
        return config


class _SeparateSTFT(keras.layers.Layer):
    """Export helper (not serialised): :meth:`_BandRoformer.separate_stft` as one layer returning
    ``{stem: (batch, nb_channels, nb_frames, nb_bins, 2)}``. The imaginary parts of the DC and
    Nyquist bins (non-zero after a complex mask) are zeroed: ``torch.istft`` and TF's ``irfft``
    ignore them, the ONNX exporter's inverse FFT (:func:`kerasep.export.onnx.dsp._irfft`) does not."""

    def __init__(self, separator, **kwargs):
        super().__init__(**kwargs)
        self.separator = separator

    def call(self, mix_stft):
        spec = self.separator.separate_stft(mix_stft, training=False)
        nb_bins = self.separator.nb_bins
        keep = np.ones((nb_bins, 2), np.float32)
        keep[0, 1] = 0.0
        if self.separator.stft_n_fft % 2 == 0:
            keep[-1, 1] = 0.0
        spec = spec * tf.constant(keep)
        stems = {stem: spec[:, j] for j, stem in enumerate(self.separator.targets)}
        if self.separator.residual:
            mix = tf.convert_to_tensor(mix_stft, tf.float32) * tf.constant(keep)
            stems[self.separator.residual] = mix - tf.reduce_sum(spec, axis=1)
        return stems

    def compute_output_shape(self, input_shape):
        return {stem: tuple(input_shape) for stem in self.separator.stems}


@keras.saving.register_keras_serializable(package="kerasep")
class BSRoformer(_BandRoformer):
    """Waveform → stems with BS-RoFormer (band-split RoPE Transformer).

    Args (MSST ``model:`` names, released ``model_bs_roformer_ep_317_sdr_12.9755`` defaults):
        targets: stem names, one mask estimator each (MSST ``num_stems`` = ``len(targets)``;
            single-stem checkpoints: ``training.target_instrument``).
        nb_channels: 2 (MSST ``stereo: true``) or 1.
        sample_rate: 44100.
        dim (512), depth (12): width and number of (time, band) transformer pairs.
        time_transformer_depth, freq_transformer_depth (1, 1): layers per transformer.
        freqs_per_bands: STFT bins of each band, summing to ``stft_n_fft // 2 + 1``
            (:data:`DEFAULT_FREQS_PER_BANDS`).
        dim_head (64), heads (8), attn_dropout, ff_dropout (0.1, training only).
        stft_n_fft (2048), stft_hop_length (441), stft_win_length (== stft_n_fft).
        mask_estimator_depth (2): Dense layers of each band's mask MLP.
        mlp_expansion_factor (4): hidden width ``dim * mlp_expansion_factor`` of the mask MLPs.
        chunk_size (352800 samples), num_overlap (2): the checkpoints' inference chunking (MSST
            ``audio.chunk_size``, ``inference.num_overlap``; :attr:`chunking`).
        residual: optional name of an extra stem, the mixture minus the sum of the targets
            (MSST's ``--extract_instrumental``; single-stem YAMLs name it after the other
            ``training.instruments`` entry, e.g. ``"other"``).
        flash_attn, dim_freqs_in, use_torch_checkpoint, multi_stft_*: accepted for MSST config
            compatibility; they do not change the network.
        linear_transformer_depth (0), skip_connection (False), stft_normalized (False): only
            these values are supported.

    Input shape: ``(batch, nb_channels, nb_timesteps)`` float32 waveform at ``sample_rate``.

    Output: ``{stem: (batch, nb_channels, nb_timesteps)}`` for the ``stems`` (targets, residual).

    Sublayers (named for the converter): ``stft``, ``band_split``, ``transformer`` (``time_{i}``,
    ``freq_{i}``), ``final_norm``, ``mask_estimator_{s}``, ``istft``.
    """

    def __init__(self, targets=("vocals",), freqs_per_bands=DEFAULT_FREQS_PER_BANDS, **kwargs):
        self.freqs_per_bands = [int(f) for f in freqs_per_bands]
        n_fft = int(kwargs.get("stft_n_fft", 2048))
        if len(self.freqs_per_bands) < 2 or sum(self.freqs_per_bands) != n_fft // 2 + 1:
            raise ValueError(
                f"freqs_per_bands must have at least 2 bands summing to stft_n_fft // 2 + 1 = {n_fft // 2 + 1}. "
                f"Received: {len(self.freqs_per_bands)} bands summing to {sum(self.freqs_per_bands)}")
        super().__init__(targets=targets, **kwargs)

    def _freqs_per_band(self):
        return self.freqs_per_bands

    def _hidden_layers(self):
        return self.mask_estimator_depth - 1

    def _split(self, z):
        shape = tf.shape(z)
        return tf.reshape(z, [shape[0], shape[1], self.nb_bins * self.nb_channels * 2])

    def _merge(self, masks):
        shape = tf.shape(masks)
        return tf.reshape(masks, [shape[0], shape[1], shape[2], self.nb_bins * self.nb_channels, 2])

    def get_config(self):
        config = super().get_config()
        config.update(freqs_per_bands=list(self.freqs_per_bands))
        return config


@keras.saving.register_keras_serializable(package="kerasep")
class MelBandRoformer(_BandRoformer):
    """Waveform → stems with Mel-Band RoFormer (overlapping mel bands).

    Args: as :class:`BSRoformer`, with ``num_bands`` (60) mel bands instead of ``freqs_per_bands``
    (computed from ``sample_rate`` and ``stft_n_fft`` as the reference: :func:`~kerasep.layers.
    band_split.mel_bands`), ``mask_estimator_depth`` counting hidden layers (each band's MLP has
    ``mask_estimator_depth + 1`` Dense layers, as the reference) and defaults of the released
    ``model_mel_band_roformer_ep_3005_sdr_11.4360`` (``dim=384``, ``depth=12``).

    Sublayers: as :class:`BSRoformer` without ``final_norm`` (each transformer ends with an RMSNorm).
    """

    norm_output = True

    def __init__(self, targets=("vocals",), num_bands=60, dim=384, **kwargs):
        self.num_bands = int(num_bands)
        n_fft = int(kwargs.get("stft_n_fft", 2048))
        sample_rate = int(kwargs.get("sample_rate", 44100))
        self.freqs_per_band_mask, self.freq_indices = mel_bands(sample_rate, n_fft, self.num_bands)
        super().__init__(targets=targets, dim=dim, **kwargs)
        C = self.nb_channels
        # indices into the (F * C) interleaved axis, each band's frequencies then channels
        self.gather_indices = (self.freq_indices[:, None] * C + np.arange(C)[None, :]).reshape(-1)
        counts = self.freqs_per_band_mask.sum(axis=0).astype(np.float32)  # bands per frequency
        self.band_counts = np.repeat(np.maximum(counts, 1e-8), C).astype(np.float32)

    def _freqs_per_band(self):
        return self.freqs_per_band_mask.sum(axis=1).astype(int).tolist()

    def _hidden_layers(self):
        return self.mask_estimator_depth

    def _split(self, z):
        x = tf.gather(z, tf.constant(self.gather_indices, tf.int32), axis=2)  # (batch, frames, N, 2)
        shape = tf.shape(x)
        return tf.reshape(x, [shape[0], shape[1], len(self.gather_indices) * 2])

    def _merge(self, masks):
        shape = tf.shape(masks)
        batch, stems, frames = shape[0], shape[1], shape[2]
        n = len(self.gather_indices)
        m = tf.reshape(masks, [batch, stems, frames, n, 2])
        m = tf.transpose(m, [3, 0, 1, 2, 4])  # (N, batch, S, frames, 2)
        summed = tf.math.unsorted_segment_sum(m, tf.constant(self.gather_indices, tf.int32),
                                              self.nb_bins * self.nb_channels)
        summed = summed / tf.constant(self.band_counts)[:, None, None, None, None]
        return tf.transpose(summed, [1, 2, 3, 0, 4])  # (batch, S, frames, F * C, 2)

    def get_config(self):
        config = super().get_config()
        config.update(num_bands=self.num_bands)
        return config


__all__ = ["BSRoformer", "MelBandRoformer", "DEFAULT_FREQS_PER_BANDS"]
