"""Hybrid Transformer Demucs (Demucs v4; Rouard, Massa & Défossez, ICASSP 2023).

Two U-Nets run side by side: a **frequency branch** on the normalised complex spectrogram
(complex-as-channels, :class:`~kerasep.layers.htdemucs_blocks.HTSpectrogram`) whose encoder
layers stride along frequency only, and a **time branch** on the normalised waveform whose
layers stride along time. At the bottleneck a cross-domain Transformer
(:class:`~kerasep.layers.transformer_blocks.CrossTransformer`) mixes them; the decoders mirror
the encoders with skip connections; the output is the inverse spectrogram of the frequency
branch plus the time branch. Matches ``demucs.htdemucs.HTDemucs`` of demucs 4.x (weights
converted by :func:`kerasep.zoo.converters.htdemucs.convert_htdemucs_state`).

Supported options are those of the released models (``htdemucs``, ``htdemucs_ft``,
``htdemucs_6s``): ``cac=True``, no Wiener filtering, no ``multi_freqs`` band splitting, ``t_emb=
"sin"``, dense attention, LayerNorm inputs, ``dconv_mode`` 0–3, optional ``bottom_channels``,
either ``t_cross_first``, GroupNorm from ``norm_starts``. A layer where the frequency branch
reaches a single bin (``nb_bins <= kernel_size``) merges the time branch into it (demucs'
``empty`` time layer). Anything else raises ``ValueError("not supported: <option>=<value>")``.

Length (``use_train_segment=True``, as released): at inference an input shorter than the training
segment (``segment`` seconds) is zero-padded to it, run, and cropped back, as demucs does; a
longer one is run at its own length (demucs refuses it; the model itself has no length limit).
"""

from kerasep.backend import keras, tf
from kerasep.layers.htdemucs_blocks import (
    HDecoderBlock,
    HEncoderBlock,
    HTInverseSpectrogram,
    HTSpectrogram,
    ScaledEmbedding,
    flat_moments,
)
from kerasep.layers.transformer_blocks import CrossTransformer
from kerasep.models.separator import ChunkPolicy, Separator

#: demucs' source order for its released 4-source models (``htdemucs_6s`` adds guitar, piano).
HTDEMUCS_SOURCES = ["drums", "bass", "other", "vocals"]

# Options the released models fix, with the only value supported here.
_FIXED = dict(cac=True, wiener_iters=0, end_iters=0, t_emb="sin", t_norm_in_group=False, t_group_norm=False,
              t_sin_random_shift=0, t_sparse_self_attn=False, t_sparse_cross_attn=False, t_auto_sparsity=False,
              channels_time=None)


def _not_supported(option, value):
    return ValueError(f"not supported: {option}={value!r} (kerasep's HTDemucs implements the options of "
                      f"the released htdemucs models)")


@keras.saving.register_keras_serializable(package="kerasep")
class HTDemucs(Separator):
    """Waveform → stems with Hybrid Transformer Demucs.

    Arguments follow ``demucs.htdemucs.HTDemucs`` (same names and defaults) except ``targets`` (
    demucs' ``sources``), ``nb_channels`` (``audio_channels``), ``sample_rate`` (``samplerate``)
    and ``segment_overlap`` (inference only). The released models use, as far as demucs 4.1.0's
    sources tell (``grids/mmi.py``, ``grids/mmi_ft.py``; the packages' own ``kwargs`` are read by
    :func:`kerasep.zoo.converters.htdemucs.load_package`), the defaults with ``dconv_mode=3``,
    ``bottom_channels=512``, ``t_dropout=0.02`` and a 7.8 s segment (343980 samples).

    Args:
        targets: source names in output order.
        nb_channels: audio channels (2).
        sample_rate: model rate in Hz (44100).
        channels: channels of the first layer (48); ``growth``: per-layer factor (2).
        nfft: FFT size (4096), hop ``nfft // 4``.
        depth: encoder/decoder layers (4).
        rewrite: 1×1 (``context``) rewrite convolutions + GLU.
        freq_emb: weight of the frequency embedding added after the first frequency layer (0.2;
            0 for none); ``emb_scale`` (10), ``emb_smooth`` (True): see
            :class:`~kerasep.layers.htdemucs_blocks.ScaledEmbedding`.
        kernel_size, stride: encoder/decoder convolutions (8, 4); ``time_stride``: unused by the
            supported layouts (2, kept for the config).
        context: decoder rewrite half-width (1); ``context_enc``: encoder's (0).
        norm_starts, norm_groups: GroupNorm in layers ``>= norm_starts`` (4, 4).
        dconv_mode: DConv residual branches in the encoder (bit 1) and/or decoder (bit 2);
            ``dconv_depth``, ``dconv_comp``, ``dconv_init``: their depth, compression, LayerScale init.
        bottom_channels: if > 0, 1×1 convolutions to/from that width around the Transformer.
        t_layers, t_heads, t_hidden_scale, t_dropout, t_cross_first, t_norm_in, t_norm_first,
        t_norm_out, t_layer_scale, t_gelu, t_max_period, t_weight_pos_embed: the Transformer
            (:class:`~kerasep.layers.transformer_blocks.CrossTransformer`).
        t_max_positions, t_weight_decay, t_lr, t_cape_*, t_mask_*, t_sparse_attn_window,
        t_global_window, t_sparsity, multi_freqs_depth, wiener_residual: accepted for config
            compatibility; they do not change the supported network.
        rescale: at initialisation, rescale convolution weights towards std ``rescale`` (0.1).
        segment: training segment in seconds (10; released models 7.8).
        use_train_segment: pad shorter inputs to the training segment at inference.
        segment_overlap: overlap of consecutive segments in :func:`kerasep.separate` (0.25).

    Input shape: ``(batch, nb_channels, nb_timesteps)`` float32 waveform at ``sample_rate``.

    Output: ``{target: (batch, nb_channels, nb_timesteps)}``.

    Sublayers (named for converters): ``spectrogram``, ``encoder_{i}`` / ``decoder_{i}``
    (frequency branch, ``decoder_0`` innermost as demucs' ``decoder`` list), ``tencoder_{i}`` /
    ``tdecoder_{i}`` (time branch), ``freq_emb``, ``channel_upsampler[_t]``,
    ``channel_downsampler[_t]``, ``crosstransformer``, ``ispectrogram``.
    """

    def __init__(
        self,
        targets=tuple(HTDEMUCS_SOURCES),
        nb_channels=2,
        sample_rate=44100,
        channels=48,
        channels_time=None,
        growth=2,
        nfft=4096,
        wiener_iters=0,
        end_iters=0,
        wiener_residual=False,
        cac=True,
        depth=4,
        rewrite=True,
        multi_freqs=None,
        multi_freqs_depth=3,
        freq_emb=0.2,
        emb_scale=10,
        emb_smooth=True,
        kernel_size=8,
        time_stride=2,
        stride=4,
        context=1,
        context_enc=0,
        norm_starts=4,
        norm_groups=4,
        dconv_mode=1,
        dconv_depth=2,
        dconv_comp=8,
        dconv_init=1e-3,
        bottom_channels=0,
        t_layers=5,
        t_emb="sin",
        t_hidden_scale=4.0,
        t_heads=8,
        t_dropout=0.0,
        t_max_positions=10000,
        t_norm_in=True,
        t_norm_in_group=False,
        t_group_norm=False,
        t_norm_first=True,
        t_norm_out=True,
        t_max_period=10000.0,
        t_weight_decay=0.0,
        t_lr=None,
        t_layer_scale=True,
        t_gelu=True,
        t_weight_pos_embed=1.0,
        t_sin_random_shift=0,
        t_cape_mean_normalize=True,
        t_cape_augment=True,
        t_cape_glob_loc_scale=(5000.0, 1.0, 1.4),
        t_sparse_self_attn=False,
        t_sparse_cross_attn=False,
        t_mask_type="diag",
        t_mask_random_seed=42,
        t_sparse_attn_window=500,
        t_global_window=100,
        t_sparsity=0.95,
        t_auto_sparsity=False,
        t_cross_first=False,
        rescale=0.1,
        segment=10.0,
        use_train_segment=True,
        segment_overlap=0.25,
        **kwargs,
    ):
        super().__init__(**kwargs)
        given = dict(cac=cac, wiener_iters=wiener_iters, end_iters=end_iters, t_emb=t_emb,
                     t_norm_in_group=t_norm_in_group, t_group_norm=t_group_norm,
                     t_sin_random_shift=t_sin_random_shift, t_sparse_self_attn=t_sparse_self_attn,
                     t_sparse_cross_attn=t_sparse_cross_attn, t_auto_sparsity=t_auto_sparsity,
                     channels_time=channels_time)
        for option, value in given.items():
            if value != _FIXED[option]:
                raise _not_supported(option, value)
        if multi_freqs:
            raise _not_supported("multi_freqs", multi_freqs)
        targets = list(targets)
        if not targets or len(set(targets)) != len(targets):
            raise ValueError(f"`targets` must be distinct names, at least one. Received: targets={targets}")
        for label, value in (("nb_channels", nb_channels), ("channels", channels), ("depth", depth),
                             ("nfft", nfft), ("kernel_size", kernel_size), ("stride", stride)):
            if int(value) != value or value < 1:
                raise ValueError(f"`{label}` must be a positive integer. Received: {label}={value}")
        if nfft % 4:
            raise ValueError(f"`nfft` must be a multiple of 4. Received: nfft={nfft}")
        if dconv_mode not in (0, 1, 2, 3):
            raise ValueError(f"`dconv_mode` must be 0, 1, 2 or 3. Received: dconv_mode={dconv_mode}")
        if not 0 <= segment_overlap < 1 or not segment > 0:
            raise ValueError(f"need segment > 0 and 0 <= segment_overlap < 1. Received: segment={segment}, "
                             f"segment_overlap={segment_overlap}")

        self.targets = targets
        self.nb_channels, self.sample_rate = int(nb_channels), int(sample_rate)
        self.channels, self.channels_time, self.growth = int(channels), channels_time, growth
        self.nfft, self.hop_length = int(nfft), int(nfft) // 4
        self.wiener_iters, self.end_iters, self.wiener_residual = int(wiener_iters), int(end_iters), bool(
            wiener_residual)
        self.cac, self.depth, self.rewrite = bool(cac), int(depth), bool(rewrite)
        self.multi_freqs, self.multi_freqs_depth = list(multi_freqs or []), int(multi_freqs_depth)
        self.freq_emb_scale, self.emb_scale, self.emb_smooth = float(freq_emb), float(emb_scale), bool(emb_smooth)
        self.kernel_size, self.time_stride, self.stride = int(kernel_size), int(time_stride), int(stride)
        self.context, self.context_enc = int(context), int(context_enc)
        self.norm_starts, self.norm_groups = int(norm_starts), int(norm_groups)
        self.dconv_mode, self.dconv_depth = int(dconv_mode), int(dconv_depth)
        self.dconv_comp, self.dconv_init = float(dconv_comp), float(dconv_init)
        self.bottom_channels = int(bottom_channels)
        self.t_layers, self.t_emb, self.t_hidden_scale = int(t_layers), t_emb, float(t_hidden_scale)
        self.t_heads, self.t_dropout, self.t_max_positions = int(t_heads), float(t_dropout), int(t_max_positions)
        self.t_norm_in, self.t_norm_in_group, self.t_group_norm = bool(t_norm_in), t_norm_in_group, t_group_norm
        self.t_norm_first, self.t_norm_out, self.t_max_period = bool(t_norm_first), bool(t_norm_out), float(
            t_max_period)
        self.t_weight_decay, self.t_lr = float(t_weight_decay), t_lr
        self.t_layer_scale, self.t_gelu = bool(t_layer_scale), bool(t_gelu)
        self.t_weight_pos_embed, self.t_sin_random_shift = float(t_weight_pos_embed), int(t_sin_random_shift)
        self.t_cape_mean_normalize, self.t_cape_augment = bool(t_cape_mean_normalize), bool(t_cape_augment)
        self.t_cape_glob_loc_scale = [float(v) for v in t_cape_glob_loc_scale]
        self.t_sparse_self_attn, self.t_sparse_cross_attn = t_sparse_self_attn, t_sparse_cross_attn
        self.t_mask_type, self.t_mask_random_seed = t_mask_type, int(t_mask_random_seed)
        self.t_sparse_attn_window, self.t_global_window = int(t_sparse_attn_window), int(t_global_window)
        self.t_sparsity, self.t_auto_sparsity = float(t_sparsity), t_auto_sparsity
        self.t_cross_first, self.rescale = bool(t_cross_first), float(rescale)
        self.segment, self.use_train_segment = float(segment), bool(use_train_segment)
        self.segment_overlap = float(segment_overlap)

        # === Layers (demucs' construction loop) ===
        self.spectrogram = HTSpectrogram(self.nfft, name="spectrogram")
        self.ispectrogram = HTInverseSpectrogram(self.nfft, name="ispectrogram")
        self.encoder, self.tencoder, decoder, tdecoder = [], [], [], []
        self.freq_emb = None
        chin = self.nb_channels
        chin_z = 2 * chin
        chout = chout_z = self.channels
        freqs = self.nfft // 2
        dconv_kw = dict(dconv_compress=self.dconv_comp, dconv_depth=self.dconv_depth, dconv_init=self.dconv_init)
        self.merged = False
        for index in range(self.depth):
            if freqs <= 1:
                raise _not_supported(
                    "depth", f"{self.depth} (layer {index} would be a time layer after the merge of the "
                    "branches; HTDemucs' Transformer needs a frequency axis)")
            groups = self.norm_groups if index >= self.norm_starts else 0
            ker, pad, last_freq = self.kernel_size, True, False
            if freqs <= self.kernel_size:
                ker, pad, last_freq = freqs, False, True
                chout_z = max(chout, chout_z)
                chout = chout_z
            common = dict(norm_groups=groups, rewrite=self.rewrite, **dconv_kw)
            self.encoder.append(HEncoderBlock(
                chin_z, chout_z, ker, self.stride, freq=True, pad=pad, dconv=bool(self.dconv_mode & 1),
                context=self.context_enc, name=f"encoder_{index}", **common))
            self.tencoder.append(HEncoderBlock(
                chin, chout, self.kernel_size, self.stride, freq=False, pad=True, empty=last_freq,
                dconv=bool(self.dconv_mode & 1), context=self.context_enc, name=f"tencoder_{index}", **common))
            if index == 0:
                chin = self.nb_channels * len(targets)
                chin_z = 2 * chin
            decoder.insert(0, (chout_z, chin_z, ker, pad, index == 0, common))
            tdecoder.insert(0, (chout, chin, last_freq, index == 0, common))
            chin, chin_z = chout, chout_z
            chout, chout_z = int(self.growth * chout), int(self.growth * chout_z)
            if last_freq:
                self.merged = True
                freqs = 1
            else:
                freqs //= self.stride
            if index == 0 and self.freq_emb_scale:
                self.freq_emb = ScaledEmbedding(freqs, chin_z, scale=self.emb_scale, smooth=self.emb_smooth,
                                                name="freq_emb")
        self.decoder = [
            HDecoderBlock(i, o, last, k, self.stride, freq=True, pad=p, dconv=bool(self.dconv_mode & 2),
                          context=self.context, name=f"decoder_{j}", **c)
            for j, (i, o, k, p, last, c) in enumerate(decoder)
        ]
        self.tdecoder = [
            HDecoderBlock(i, o, last, self.kernel_size, self.stride, freq=False, pad=True, empty=empty,
                          dconv=bool(self.dconv_mode & 2), context=self.context, name=f"tdecoder_{j}", **c)
            for j, (i, o, empty, last, c) in enumerate(tdecoder)
        ]
        self.bottleneck_channels = chin_z
        transformer_channels = int(self.channels * self.growth ** (self.depth - 1))
        if transformer_channels != chin_z:
            raise _not_supported("depth", f"{self.depth} with nfft={self.nfft} (bottleneck width {chin_z} != "
                                 f"channels * growth ** (depth - 1) = {transformer_channels})")
        self.channel_upsampler = self.channel_downsampler = None
        self.channel_upsampler_t = self.channel_downsampler_t = None
        if self.bottom_channels:
            def dense(units, name):
                return keras.layers.Dense(units, name=name)

            self.channel_upsampler = dense(self.bottom_channels, "channel_upsampler")
            self.channel_downsampler = dense(transformer_channels, "channel_downsampler")
            self.channel_upsampler_t = dense(self.bottom_channels, "channel_upsampler_t")
            self.channel_downsampler_t = dense(transformer_channels, "channel_downsampler_t")
            transformer_channels = self.bottom_channels
        self.transformer_channels = transformer_channels
        self.crosstransformer = None
        if self.t_layers > 0:
            self.crosstransformer = CrossTransformer(
                transformer_channels, heads=self.t_heads, layers=self.t_layers, hidden_scale=self.t_hidden_scale,
                cross_first=self.t_cross_first, dropout=self.t_dropout, norm_in=self.t_norm_in,
                norm_first=self.t_norm_first, norm_out=self.t_norm_out, layer_scale=self.t_layer_scale,
                gelu_activation=self.t_gelu, max_period=self.t_max_period,
                weight_pos_embed=self.t_weight_pos_embed, name="crosstransformer")

    # --- Separator contract ----------------------------------------------------------------------

    @property
    def chunking(self):
        """Segments of the training length (``segment`` seconds) overlapping by ``segment_overlap``
        with demucs' ``apply_model`` triangular transition weights (``weighting="triangular"``)."""
        return ChunkPolicy("segment", segment_seconds=self.segment, overlap=self.segment_overlap,
                           weighting="triangular")

    @property
    def training_length(self):
        """The training segment in samples (``int(segment * sample_rate)``, as demucs)."""
        return int(self.segment * self.sample_rate + 1e-6)

    def export_spec(self):
        """``"kind": "hybrid"`` (:mod:`kerasep.export.spec`): the spectrogram pair and the padding to
        ``pad_to`` samples rebuilt by the exporter around a functional core (:meth:`separate_hybrid`,
        this model's weights), ``{"waveform": mix, "spectrogram": z}`` → ``{"spectrogram", "waveform"}``."""
        mix = keras.Input((self.nb_channels, None), name="waveform")
        z = keras.Input((self.nb_channels, self.nfft // 2, None, 2), name="spectrogram")
        spec, wave = _HybridCore(self, name="separate_hybrid")([mix, z])
        core = keras.Model({"waveform": mix, "spectrogram": z}, {"spectrogram": spec, "waveform": wave},
                           name="htdemucs_core")
        return {"kind": "hybrid", "n_fft": self.nfft, "hop_length": self.hop_length, "core": core,
                "pad_to": self.training_length if self.use_train_segment else 0,
                "chunk_segment": self.training_length, "chunk_overlap": self.segment_overlap,
                "chunk_weighting": "triangular"}

    # --- Keras -----------------------------------------------------------------------------------

    def build(self, input_shape=None):
        for block in self.encoder + self.tencoder + self.decoder + self.tdecoder:
            block.build(None)
        if self.freq_emb is not None:
            self.freq_emb.build(None)
        if self.bottom_channels:
            width = int(self.channels * self.growth ** (self.depth - 1))
            for layer, ch in ((self.channel_upsampler, width), (self.channel_upsampler_t, width),
                              (self.channel_downsampler, self.bottom_channels),
                              (self.channel_downsampler_t, self.bottom_channels)):
                layer.build((None, None, ch))
        if self.crosstransformer is not None:
            self.crosstransformer.build(None)
        if not self.built and self.rescale:
            self._rescale_init(self.rescale)
        super().build(input_shape)

    def _rescale_init(self, reference):
        """demucs' ``rescale_module`` on the encoder/decoder convolutions (the Transformer and the
        bottom 1×1 convolutions are created after it in demucs, so they are left alone): divide
        each kernel and bias by ``sqrt(std(kernel) / reference)`` (unbiased std)."""
        convs = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv1DTranspose,
                 keras.layers.Conv2DTranspose)
        for block in self.encoder + self.tencoder + self.decoder + self.tdecoder:
            for layer in block._flatten_layers(include_self=False, recursive=True):
                if not isinstance(layer, convs):
                    continue
                k = tf.convert_to_tensor(layer.kernel)
                n = tf.cast(tf.size(k), tf.float32)
                if int(n) < 2:
                    continue
                std = tf.sqrt(tf.reduce_sum(tf.square(k - tf.reduce_mean(k))) / (n - 1.0))
                scale = tf.sqrt(std / reference)
                layer.kernel.assign(k / scale)
                layer.bias.assign(tf.convert_to_tensor(layer.bias) / scale)

    @staticmethod
    def _mean_std(x):
        """Mean and unbiased std (torch's ``x.std``) of each batch item, ``(batch, 1, 1[, 1])``."""
        mean, var = flat_moments(x)
        n = tf.cast(tf.size(x) // tf.shape(x)[0], tf.float32)
        std = tf.sqrt(var * n / tf.maximum(n - 1.0, 1.0))
        shape = [-1] + [1] * (len(x.shape) - 1)
        return tf.reshape(mean, shape), tf.reshape(std, shape)

    def call(self, waveform, training=False):
        mix = tf.convert_to_tensor(waveform, tf.float32)  # (batch, nb_channels, nb_timesteps)
        length = tf.shape(mix)[2]
        if self.use_train_segment and not training:
            target = tf.maximum(length, self.training_length)
            mix = tf.pad(mix, [[0, 0], [0, 0], [0, target - length]])
        spec, wave = self.separate_hybrid(mix, self.spectrogram(mix), training=training)
        out = (self.ispectrogram(spec, tf.shape(mix)[2]) + wave)[:, :, :length]
        out = tf.reshape(out, [tf.shape(mix)[0], len(self.targets), self.nb_channels, length])
        return {t: out[:, i] for i, t in enumerate(self.targets)}

    def separate_hybrid(self, mix, z, training=False):
        """The network between the spectrogram and its inverse (what the ONNX export converts).

        ``mix``: ``(batch, nb_channels, nb_timesteps)``; ``z``: its :class:`HTSpectrogram`
        ``(batch, nb_channels, nfft // 2, nb_frames, 2)``. Returns the spectral estimate ``(batch,
        S * nb_channels, nfft // 2, nb_frames, 2)`` and the time estimate ``(batch, S * nb_channels,
        nb_timesteps)`` (source-major channels, ``S = len(targets)``), summed after the inverse."""
        batch, nb_sources = tf.shape(mix)[0], len(self.targets)
        # complex as channels, channel = 2 * c + (real, imag): (batch, bins, frames, 2 * C)
        x = tf.transpose(z, [0, 2, 3, 1, 4])
        shape = tf.shape(x)
        x = tf.reshape(x, [batch, shape[1], shape[2], 2 * self.nb_channels])
        mean, std = self._mean_std(x)
        x = (x - mean) / (1e-5 + std)
        xt = tf.transpose(mix, [0, 2, 1])  # (batch, nb_timesteps, C)
        meant, stdt = self._mean_std(xt)
        xt = (xt - meant) / (1e-5 + stdt)

        saved, saved_t, lengths_t = [], [], []
        for index, (encode, tencode) in enumerate(zip(self.encoder, self.tencoder)):
            lengths_t.append(tf.shape(xt)[1])
            xt = tencode(xt)
            inject = None
            if tencode.empty:
                inject = xt
            else:
                saved_t.append(xt)
            x = encode(x, inject)
            if index == 0 and self.freq_emb is not None:
                emb = self.freq_emb(tf.range(tf.shape(x)[1]))  # (bins, channels)
                x = x + self.freq_emb_scale * emb[None, :, None, :]
            saved.append(x)

        if self.crosstransformer is not None:
            if self.bottom_channels:
                x = self.channel_upsampler(x)
                xt = self.channel_upsampler_t(xt)
            x, xt = self.crosstransformer(x, xt, training=training)
            if self.bottom_channels:
                x = self.channel_downsampler(x)
                xt = self.channel_downsampler_t(xt)

        for decode, tdecode in zip(self.decoder, self.tdecoder):
            x, pre = decode(x, saved.pop(-1))
            length_t = lengths_t.pop(-1)
            if tdecode.empty:
                xt, _ = tdecode(pre[:, 0], None, length_t)  # the single bin
            else:
                xt, _ = tdecode(xt, saved_t.pop(-1), length_t)

        # x: (batch, bins, frames, S * 2 * C) → (batch, S * C, bins, frames, 2)
        x = x * std + mean
        shape = tf.shape(x)
        x = tf.reshape(x, [batch, shape[1], shape[2], nb_sources * self.nb_channels, 2])
        x = tf.transpose(x, [0, 3, 1, 2, 4])
        return x, tf.transpose(xt, [0, 2, 1]) * stdt + meant

    def get_config(self):
        config = super().get_config()
        config.update(
            targets=self.targets, nb_channels=self.nb_channels, sample_rate=self.sample_rate,
            channels=self.channels, channels_time=self.channels_time, growth=self.growth, nfft=self.nfft,
            wiener_iters=self.wiener_iters, end_iters=self.end_iters, wiener_residual=self.wiener_residual,
            cac=self.cac, depth=self.depth, rewrite=self.rewrite, multi_freqs=self.multi_freqs,
            multi_freqs_depth=self.multi_freqs_depth, freq_emb=self.freq_emb_scale, emb_scale=self.emb_scale,
            emb_smooth=self.emb_smooth, kernel_size=self.kernel_size, time_stride=self.time_stride,
            stride=self.stride, context=self.context, context_enc=self.context_enc,
            norm_starts=self.norm_starts, norm_groups=self.norm_groups, dconv_mode=self.dconv_mode,
            dconv_depth=self.dconv_depth, dconv_comp=self.dconv_comp, dconv_init=self.dconv_init,
            bottom_channels=self.bottom_channels, t_layers=self.t_layers, t_emb=self.t_emb,
            t_hidden_scale=self.t_hidden_scale, t_heads=self.t_heads, t_dropout=self.t_dropout,
            t_max_positions=self.t_max_positions, t_norm_in=self.t_norm_in, t_norm_in_group=self.t_norm_in_group,
            t_group_norm=self.t_group_norm, t_norm_first=self.t_norm_first, t_norm_out=self.t_norm_out,
            t_max_period=self.t_max_period, t_weight_decay=self.t_weight_decay, t_lr=self.t_lr,
            t_layer_scale=self.t_layer_scale, t_gelu=self.t_gelu, t_weight_pos_embed=self.t_weight_pos_embed,
            t_sin_random_shift=self.t_sin_random_shift, t_cape_mean_normalize=self.t_cape_mean_normalize,
            t_cape_augment=self.t_cape_augment, t_cape_glob_loc_scale=self.t_cape_glob_loc_scale,
            t_sparse_self_attn=self.t_sparse_self_attn, t_sparse_cross_attn=self.t_sparse_cross_attn,
            t_mask_type=self.t_mask_type, t_mask_random_seed=self.t_mask_random_seed,
            t_sparse_attn_window=self.t_sparse_attn_window, t_global_window=self.t_global_window,
            t_sparsity=self.t_sparsity, t_auto_sparsity=self.t_auto_sparsity, t_cross_first=self.t_cross_first,
            rescale=self.rescale, segment=self.segment, use_train_segment=self.use_train_segment,
            segment_overlap=self.segment_overlap,
        )
        return config


class _HybridCore(keras.layers.Layer):
    """Export helper (not serialised): ``[mix, z]`` → :meth:`HTDemucs.separate_hybrid`."""

    def __init__(self, separator, **kwargs):
        super().__init__(**kwargs)
        self.separator = separator

    def call(self, inputs):
        return self.separator.separate_hybrid(inputs[0], inputs[1], training=False)


# SeparatorBag (demucs' BagOfModels of HTDemucs: htdemucs_ft) is registered with the family.
from kerasep.models import bag as _bag  # noqa: E402,F401
