"""Hybrid Transformer Demucs (kerasep.models.HTDemucs) against demucs 4.1.0's HTDemucs, its
blocks, its converter and the Separator contract."""
import numpy as np
import pytest
from testing import run_separator_test

from kerasep.backend import keras
from kerasep.layers.htdemucs_blocks import (
    DConv,
    GroupNorm,
    HDecoderBlock,
    HEncoderBlock,
    HTInverseSpectrogram,
    HTSpectrogram,
    LayerScale,
    ScaledEmbedding,
)
from kerasep.layers.transformer_blocks import CrossTransformer, sin_embedding, sin_embedding_2d
from kerasep.models.htdemucs import HTDemucs
from kerasep.zoo.converters.htdemucs import convert_htdemucs_state

torch = pytest.importorskip("torch")
htdemucs_ref = pytest.importorskip("demucs.htdemucs")
transformer_ref = pytest.importorskip("demucs.transformer")

SOURCES = ["drums", "bass", "other", "vocals"]
RATE = 44100


def _torch_htdemucs(seed=0, **kwargs):
    """demucs' HTDemucs in eval mode, seeded, with its near-identity parameters (LayerScales at
    1e-3/1e-4, unit norms, a small frequency embedding) randomised so every branch counts."""
    torch.manual_seed(seed)
    model = htdemucs_ref.HTDemucs(sources=SOURCES, **kwargs).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("scale"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            elif "norm" in name:
                p.add_(0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("embedding.weight"):
                p.mul_(10.0)
    return model


def _state(model):
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def _ours(**kwargs):
    model = HTDemucs(targets=SOURCES, **kwargs)
    model.build((None, 2, None))
    return model


def run_layer_serialization_test(layer, *args, **kwargs):
    """Config and generic-serialisation round trips of a (weighted) layer: the clone, given the
    layer's weights, computes the same outputs."""
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    a = layer(*args, **kwargs)
    clone(*args, **kwargs)
    clone.set_weights(layer.get_weights())
    b = clone(*args, **kwargs)
    pairs = zip(a, b) if isinstance(a, (list, tuple)) else [(a, b)]
    for x, y in pairs:
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-6)
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(restored) is type(layer) and restored.get_config() == config


# --- signal layers -------------------------------------------------------------------------------

@pytest.mark.parametrize("length", [44100, 30001, 700, 200])
def test_spectrogram_matches_demucs(length):
    ref = htdemucs_ref.HTDemucs(sources=["a"], channels=8, depth=2, t_layers=0, nfft=1024)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, length)).astype(np.float32)
    z_ref = ref._spec(torch.from_numpy(x)).numpy()  # (1, 2, 512, frames) complex
    z = np.asarray(HTSpectrogram(1024)(x))
    assert z.shape == z_ref.shape + (2,)
    np.testing.assert_allclose(z[..., 0] + 1j * z[..., 1], z_ref, atol=2e-5 * np.abs(z_ref).max())
    y_ref = ref._ispec(torch.from_numpy(z_ref), length).numpy()
    y = np.asarray(HTInverseSpectrogram(1024)(z, length=length))
    assert y.shape == (1, 2, length)
    np.testing.assert_allclose(y, y_ref, atol=2e-5 * np.abs(y_ref).max())


def test_sin_embeddings_match_demucs():
    ref1 = transformer_ref.create_sin_embedding(37, 16, max_period=10000.0)[:, 0].numpy()  # (T, C)
    np.testing.assert_allclose(np.asarray(sin_embedding(37, 16)), ref1, atol=1e-5)
    ref2 = transformer_ref.create_2d_sin_embedding(16, 5, 7, max_period=10000.0)[0].numpy()  # (C, Fr, T)
    ours = np.asarray(sin_embedding_2d(16, 5, 7))  # (T, Fr, C)
    np.testing.assert_allclose(ours, np.transpose(ref2, (2, 1, 0)), atol=1e-5)


def test_group_norm_matches_torch_precision():
    rng = np.random.default_rng(0)
    # per-channel offsets large next to the spread: Keras' GroupNormalization loses ~1e-5 here
    x = (0.1 * rng.standard_normal((2, 256, 40, 8)) + 3 * rng.standard_normal((2, 1, 1, 8))).astype(np.float32)
    ref = torch.nn.functional.group_norm(torch.from_numpy(x.transpose(0, 3, 1, 2)).double(), 4, eps=1e-5)
    ref = ref.numpy().transpose(0, 2, 3, 1)
    ours = np.asarray(GroupNorm(4, epsilon=1e-5)(x))
    assert np.abs(ours - ref).max() < 2e-6


# --- blocks --------------------------------------------------------------------------------------

def test_blocks_shapes_and_serialisation():
    rng = np.random.default_rng(0)
    xf = rng.standard_normal((1, 64, 5, 8)).astype(np.float32)  # (batch, bins, frames, channels)
    xt = rng.standard_normal((1, 101, 8)).astype(np.float32)  # (batch, time, channels)

    enc = HEncoderBlock(8, 16, freq=True, norm_groups=4, dconv=True, name="enc")
    assert tuple(enc(xf).shape) == (1, 16, 5, 16)
    run_layer_serialization_test(enc, xf)
    tenc = HEncoderBlock(8, 16, freq=False, dconv=True, name="tenc")
    assert tuple(tenc(xt).shape) == (1, 26, 16)  # ceil(101 / 4)
    run_layer_serialization_test(tenc, xt)

    dec = HDecoderBlock(16, 8, freq=True, dconv=True, name="dec")
    skip = enc(xf)
    z, pre = dec(skip, skip)
    assert tuple(z.shape) == (1, 64, 5, 8) and tuple(pre.shape) == (1, 16, 5, 16)
    tdec = HDecoderBlock(16, 8, freq=False, last=True, name="tdec")
    ts = tenc(xt)
    z, _ = tdec(ts, ts, length=101)
    assert tuple(z.shape) == (1, 101, 8)
    assert tdec.get_config()["last"] is True and type(tdec).from_config(tdec.get_config()).last

    dconv = DConv(16, compress=4, depth=2, name="dconv")
    run_layer_serialization_test(dconv, rng.standard_normal((2, 30, 16)).astype(np.float32))
    run_layer_serialization_test(LayerScale(8, 0.5), xt)
    emb = ScaledEmbedding(64, 8, name="emb")
    assert tuple(emb(np.arange(64)).shape) == (64, 8)
    run_layer_serialization_test(emb, np.arange(64))
    run_layer_serialization_test(GroupNorm(2, epsilon=1e-5), xt)
    run_layer_serialization_test(HTSpectrogram(256), rng.standard_normal((1, 2, 2000)).astype(np.float32))

    tr = CrossTransformer(8, heads=2, layers=3, cross_first=True, name="tr")
    a, b = tr(xf[:, :4], xt)
    assert tuple(a.shape) == (1, 4, 5, 8) and tuple(b.shape) == (1, 101, 8)
    run_layer_serialization_test(tr, xf[:, :4], xt)


# --- the model against demucs ----------------------------------------------------------------------

# Small configs exercising every branch: (a) the released layout (nfft 4096, depth 4, DConv in
# encoder and decoder, self/cross attention); (b) bottom_channels (released: 512), cross attention
# first, odd layer count; (c) the time branch merged into the frequency branch (nfft 1024, depth 4),
# GroupNorm in every layer, decoder-only DConv.
PARITY_CONFIGS = {
    "released_layout": dict(channels=8, depth=4, nfft=4096, dconv_mode=3, t_layers=2, t_heads=2, segment=1.0),
    "bottom_channels": dict(channels=8, depth=4, nfft=4096, dconv_mode=3, t_layers=3, t_heads=2, segment=1.0,
                            bottom_channels=16, t_cross_first=True),
    "merged_branches": dict(channels=8, depth=4, nfft=1024, dconv_mode=2, t_layers=2, t_heads=2, segment=1.0,
                            norm_starts=0),
}


def _parity(kwargs, mix):
    ref = _torch_htdemucs(**kwargs)
    x = np.ascontiguousarray(mix.T[None])  # (1, 2, nb_timesteps)
    with torch.no_grad():
        expected = ref(torch.from_numpy(x)).numpy()  # (1, S, 2, nb_timesteps)
    model = _ours(**kwargs)
    convert_htdemucs_state(model, _state(ref))
    out = model(x, training=False)
    ours = np.stack([np.asarray(out[t]) for t in SOURCES], axis=1)
    assert ours.shape == expected.shape
    max_abs = float(np.abs(ours - expected).max())
    return max_abs, max_abs / float(np.abs(expected).max())


@pytest.mark.parametrize("name", sorted(PARITY_CONFIGS))
def test_htdemucs_matches_demucs(name, real_mixture):
    """One training segment (1 s) of the real MUSDB18 mixture through both models."""
    kwargs = PARITY_CONFIGS[name]
    max_abs, rel = _parity(kwargs, real_mixture[: int(kwargs["segment"] * RATE)])
    assert rel <= 1e-4, (name, max_abs, rel)


def test_htdemucs_matches_demucs_short_input(real_mixture):
    """An input shorter than the training segment is padded to it and cropped back, as demucs."""
    max_abs, rel = _parity(PARITY_CONFIGS["released_layout"], real_mixture[:30001])
    assert rel <= 1e-4, (max_abs, rel)


@pytest.mark.slow
def test_htdemucs_matches_demucs_released_size(real_mixture):
    """The released layout at full size (48 channels, 512 bottom channels, 5 Transformer layers of
    8 heads, 41,984,456 parameters, 7.8 s segment) on the 2 s mixture, padded to the segment."""
    kwargs = dict(dconv_mode=3, bottom_channels=512, t_dropout=0.02, segment=7.8)
    ref = _torch_htdemucs(**kwargs)
    assert sum(p.numel() for p in ref.parameters()) == 41984456
    x = np.ascontiguousarray(real_mixture.T[None])
    with torch.no_grad():
        expected = ref(torch.from_numpy(x)).numpy()
    model = _ours(**kwargs)
    convert_htdemucs_state(model, _state(ref))
    assert model.count_params() == 41984456
    out = model(x, training=False)
    ours = np.stack([np.asarray(out[t]) for t in SOURCES], axis=1)
    assert np.abs(ours - expected).max() / np.abs(expected).max() <= 1e-4


def test_htdemucs_matches_demucs_training_mode(real_mixture):
    """Training mode runs at the input's own length (no padding to the segment), as demucs in
    ``train()``: a length that is no multiple of the hop. No dropout (``t_dropout=0``)."""
    kwargs = PARITY_CONFIGS["released_layout"]
    ref = _torch_htdemucs(**kwargs).train()
    x = np.ascontiguousarray(real_mixture[:50001].T[None])
    with torch.no_grad():
        expected = ref(torch.from_numpy(x)).numpy()
    model = _ours(**kwargs)
    convert_htdemucs_state(model, _state(ref))
    out = model(x, training=True)
    ours = np.stack([np.asarray(out[t]) for t in SOURCES], axis=1)
    assert np.abs(ours - expected).max() / np.abs(expected).max() <= 1e-4


def test_htdemucs_gradients_reach_every_weight(real_mixture):
    from kerasep.backend import tf

    model = _ours(channels=8, depth=3, nfft=512, dconv_mode=3, t_layers=2, t_heads=2, bottom_channels=8,
                  t_dropout=0.1, segment=0.25)
    x = tf.constant(np.ascontiguousarray(real_mixture[:11025].T[None]))
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        loss = tf.add_n([tf.reduce_mean(tf.abs(out[t] - x)) for t in SOURCES])
    grads = tape.gradient(loss, model.trainable_weights)
    missing = [w.path for w, g in zip(model.trainable_weights, grads) if g is None]
    assert not missing, missing
    assert all(np.isfinite(np.asarray(tf.convert_to_tensor(g))).all() for g in grads)


# --- converter -------------------------------------------------------------------------------------

def test_converter_reports_missing_mismatched_and_unused_tensors():
    kwargs = dict(channels=8, depth=2, nfft=256, t_layers=1, t_heads=2, segment=0.1)
    state = _state(htdemucs_ref.HTDemucs(sources=SOURCES, **kwargs))
    model = _ours(**kwargs)
    convert_htdemucs_state(model, state)  # complete and consistent

    missing = dict(state)
    del missing["encoder.0.conv.weight"]
    with pytest.raises(ValueError, match=r"missing 1 tensor.*encoder\.0\.conv\.weight"):
        convert_htdemucs_state(model, missing)
    wrong = dict(state, **{"tdecoder.1.conv_tr.weight": np.zeros((3, 3, 3), np.float32)})
    with pytest.raises(ValueError, match=r"tdecoder\.1\.conv_tr\.weight.*\(3, 3, 3\).*expects"):
        convert_htdemucs_state(model, wrong)
    extra = dict(state, **{"crosstransformer.extra": np.zeros(1, np.float32)})
    with pytest.raises(ValueError, match=r"does not use.*crosstransformer\.extra"):
        convert_htdemucs_state(model, extra)


@pytest.mark.parametrize("option, value", [
    ("cac", False), ("wiener_iters", 1), ("multi_freqs", [0.5]), ("t_emb", "cape"),
    ("t_sparse_self_attn", True), ("channels_time", 16),
])
def test_unsupported_options_raise(option, value):
    kwargs = dict(end_iters=1) if option == "wiener_iters" else {}
    with pytest.raises(ValueError, match=f"not supported: {option}="):
        HTDemucs(**{option: value}, **kwargs)


def test_released_configs_build_unweighted():
    """The released layouts (htdemucs / _ft: 4 sources, htdemucs_6s: 6) construct."""
    for targets in (SOURCES, SOURCES + ["guitar", "piano"]):
        model = HTDemucs(targets=targets, dconv_mode=3, bottom_channels=512, t_dropout=0.02, segment=7.8)
        assert model.stems == targets and model.transformer_channels == 512
        assert model.training_length == 343980
        assert model.chunking.kind == "segment" and model.chunking.segment_seconds == 7.8


# --- the Separator contract ------------------------------------------------------------------------

@pytest.mark.slow
def test_htdemucs_contract(real_mixture, tmp_path):
    """ONNX (the "hybrid" layout, through the TF-free runner) and SavedModel exports included, on
    the real excerpt at a length that is no multiple of the 1 s segment."""
    model = _ours(channels=8, depth=3, nfft=512, dconv_mode=3, t_layers=1, t_heads=2, bottom_channels=8,
                  segment=1.0)
    assert model.chunking.kind == "segment" and model.chunking.overlap == 0.25
    run_separator_test(model, real_mixture, tmp_path, chunk_seconds=0.5, family="htdemucs")
