"""Band-split RoFormers (kerasep.models.BSRoformer, MelBandRoformer) against lucidrains'
BS-RoFormer 0.3.10 (``bs_roformer.BSRoformer`` / ``MelBandRoformer``: the modules and state-dict
layout of MSST's released checkpoints), their blocks, the MSST converter and the Separator
contract."""
import numpy as np
import pytest
from testing import run_separator_test

from kerasep.backend import keras
from kerasep.layers.band_split import BandSplit, MaskEstimator, RMSNorm, mel_bands, mel_filterbank
from kerasep.layers.roformer_blocks import (
    AxialRoformer,
    RoformerAttention,
    RoformerFeedForward,
    RoformerTransformer,
    apply_rotary,
    rotary_cos_sin,
)
from kerasep.models.roformer import DEFAULT_FREQS_PER_BANDS, BSRoformer, MelBandRoformer
from kerasep.zoo.converters import roformer as conv



def _reference_version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("BS-RoFormer")
    except PackageNotFoundError:
        return None


# The reference: lucidrains' BS-RoFormer==0.3.10 (the MSST checkpoints' modules and layout). Another
# distribution's `bs_roformer` (bs-roformer-infer) or another version (1.x: hyper-connections) is not it.
try:
    import torch
except ImportError:  # pragma: no cover
    torch = None
ref = None
if torch is not None and _reference_version() == "0.3.10":
    import bs_roformer as ref
needs_ref = pytest.mark.skipif(ref is None, reason=f"needs torch and BS-RoFormer==0.3.10 (found "
                                                   f"{_reference_version()!r})")

RATE = 44100
# a small BS layout for n_fft 512 (257 bins), uneven bands like the released one
SMALL_BANDS = (2, 2, 4, 4, 8, 8, 16, 16, 32, 36, 129)
SMALL = dict(dim=32, depth=2, time_transformer_depth=1, freq_transformer_depth=2, dim_head=16, heads=2,
             stft_n_fft=512, stft_hop_length=128, stft_win_length=512)


def _randomise(model, seed):
    """The reference in eval mode with its RMSNorm gammas (all ones at init) randomised, so every
    norm weight counts in the comparison."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
    return model.eval()


def _state(model):
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


def _torch_bs(seed=0, nb_channels=2, targets=("vocals", "other"), **kwargs):
    torch.manual_seed(seed)
    kw = dict(SMALL, freqs_per_bands=SMALL_BANDS, mask_estimator_depth=2)
    kw.update(kwargs)
    model = ref.BSRoformer(stereo=nb_channels == 2, num_stems=len(targets), attn_dropout=0.0, ff_dropout=0.0, **kw)
    return _randomise(model, seed + 1), kw


def _torch_mel(seed=0, nb_channels=2, targets=("vocals", "other"), **kwargs):
    torch.manual_seed(seed)
    kw = dict(SMALL, num_bands=12, mask_estimator_depth=1)
    kw.update(kwargs)
    model = ref.MelBandRoformer(stereo=nb_channels == 2, num_stems=len(targets), attn_dropout=0.0, ff_dropout=0.0,
                                sample_rate=RATE, **kw)
    return _randomise(model, seed + 1), kw


def _compare(torch_model, ours, x, targets):
    """max abs and max relative (to the reference's peak) difference over all stems; the
    reference's inverse STFT drops the samples after the last whole hop, so the common prefix."""
    with torch.no_grad():
        r = torch_model(torch.from_numpy(x)).numpy()
    if len(targets) == 1:
        r = r[:, None]
    out = ours(x)
    n = r.shape[-1]
    abs_diff = max(float(np.max(np.abs(np.asarray(out[t])[..., :n] - r[:, i]))) for i, t in enumerate(targets))
    peak = max(float(np.max(np.abs(r[:, i]))) for i in range(len(targets)))
    return abs_diff, abs_diff / peak


def _chunk(real_mixture, nb_channels):
    x = np.ascontiguousarray(real_mixture.T[None])  # (1, 2, 88200)
    return x if nb_channels == 2 else np.ascontiguousarray(x.mean(axis=1, keepdims=True))


# --- blocks ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("rate,n_fft,n_mels", [(44100, 2048, 60), (44100, 512, 12), (48000, 1024, 24)])
def test_mel_filterbank_matches_librosa(rate, n_fft, n_mels):
    librosa = pytest.importorskip("librosa")
    expected = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels)
    ours = mel_filterbank(rate, n_fft, n_mels)
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-9)
    assert np.array_equal(ours > 0, expected > 0)


@needs_ref
@pytest.mark.parametrize("n_fft,num_bands", [(2048, 60), (512, 12)])
def test_mel_bands_match_reference(n_fft, num_bands):
    model = ref.MelBandRoformer(dim=8, depth=1, stereo=True, num_bands=num_bands, dim_head=8, heads=1,
                                stft_n_fft=n_fft, stft_win_length=n_fft, sample_rate=RATE)
    freqs_per_band, freq_indices = mel_bands(RATE, n_fft, num_bands)
    assert np.array_equal(freqs_per_band, model.freqs_per_band.numpy())
    stereo = (freq_indices[:, None] * 2 + np.arange(2)).reshape(-1)
    assert np.array_equal(stereo, model.freq_indices.numpy())
    ours = MelBandRoformer(dim=8, depth=1, num_bands=num_bands, dim_head=8, heads=1, stft_n_fft=n_fft,
                           stft_win_length=n_fft)
    assert ours.band_dims == [int(2 * f * 2) for f in model.num_freqs_per_band.tolist()]


def test_mel_bands_refuse_empty_bands():
    with pytest.raises(ValueError, match=r"bands \[.*\] hold no STFT bin"):
        mel_bands(44100, 2048, 400)


@needs_ref
@pytest.mark.parametrize("length", [1, 7, 201])
def test_rotary_matches_rotary_embedding_torch(length):
    from rotary_embedding_torch import RotaryEmbedding

    rng = np.random.default_rng(0)
    q = rng.standard_normal((2, 3, length, 16)).astype(np.float32)
    expected = RotaryEmbedding(dim=16).rotate_queries_or_keys(torch.from_numpy(q)).numpy()
    cos, sin = rotary_cos_sin(length, 16)
    np.testing.assert_allclose(np.asarray(apply_rotary(q, cos, sin)), expected, rtol=1e-5, atol=1e-5)


@needs_ref
@pytest.mark.parametrize("norm_output", [False, True])
def test_transformer_matches_reference(norm_output):
    from rotary_embedding_torch import RotaryEmbedding

    torch.manual_seed(0)
    t = ref.bs_roformer.Transformer(dim=32, depth=2, dim_head=16, heads=2, norm_output=norm_output,
                                    rotary_embed=RotaryEmbedding(dim=16), flash_attn=True)
    t = _randomise(t, 1)
    ours = RoformerTransformer(32, depth=2, heads=2, dim_head=16, norm_output=norm_output)
    ours.build(None)
    st = _state(t)
    for j in range(2):
        a, f = ours.attns[j], ours.ffs[j]
        a.norm.gamma.assign(st[f"layers.{j}.0.norm.gamma"])
        a.to_qkv.kernel.assign(st[f"layers.{j}.0.to_qkv.weight"].T)
        a.to_gates.kernel.assign(st[f"layers.{j}.0.to_gates.weight"].T)
        a.to_gates.bias.assign(st[f"layers.{j}.0.to_gates.bias"])
        a.to_out.kernel.assign(st[f"layers.{j}.0.to_out.0.weight"].T)
        f.norm.gamma.assign(st[f"layers.{j}.1.net.0.gamma"])
        f.linear1.kernel.assign(st[f"layers.{j}.1.net.1.weight"].T)
        f.linear1.bias.assign(st[f"layers.{j}.1.net.1.bias"])
        f.linear2.kernel.assign(st[f"layers.{j}.1.net.4.weight"].T)
        f.linear2.bias.assign(st[f"layers.{j}.1.net.4.bias"])
    if norm_output:
        ours.norm.gamma.assign(st["norm.gamma"])
    x = np.random.default_rng(2).standard_normal((3, 19, 32)).astype(np.float32)
    with torch.no_grad():
        expected = t(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(ours(x)), expected, rtol=1e-4, atol=1e-5)


def _layer_round_trip(layer, *args):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    a = layer(*args)
    clone(*args)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(np.asarray(clone(*args)), np.asarray(a), rtol=1e-6, atol=1e-6)
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(restored) is type(layer) and restored.get_config() == config


def test_layers_serialise():
    rng = np.random.default_rng(0)
    seq = rng.standard_normal((2, 5, 16)).astype(np.float32)
    grid = rng.standard_normal((2, 4, 3, 16)).astype(np.float32)
    _layer_round_trip(RMSNorm(16), seq)
    _layer_round_trip(BandSplit(16, [4, 8, 12]), rng.standard_normal((2, 5, 24)).astype(np.float32))
    _layer_round_trip(MaskEstimator(16, [4, 8, 12], hidden_layers=1), grid)
    _layer_round_trip(MaskEstimator(16, [4, 8, 12], hidden_layers=0, mlp_expansion_factor=2), grid)
    _layer_round_trip(RoformerAttention(16, heads=2, dim_head=8), seq)
    _layer_round_trip(RoformerFeedForward(16, mult=2), seq)
    _layer_round_trip(RoformerTransformer(16, depth=2, heads=2, dim_head=8, norm_output=True), seq)
    _layer_round_trip(AxialRoformer(16, depth=2, time_depth=1, freq_depth=2, heads=2, dim_head=8), grid)


@needs_ref
def test_rms_norm_matches_reference():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 7, 10)).astype(np.float32)
    x[0, 0] = 0.0  # F.normalize's 1e-12 floor
    r = ref.bs_roformer.RMSNorm(10)
    with torch.no_grad():
        r.gamma.uniform_(0.5, 1.5)
        expected = r(torch.from_numpy(x)).numpy()
    ours = RMSNorm(10)
    ours.build(None)
    ours.gamma.assign(r.gamma.detach().numpy())
    np.testing.assert_allclose(np.asarray(ours(x)), expected, rtol=1e-6, atol=1e-6)


# --- whole models against the reference on the real MUSDB18 mixture -----------------------------------

@needs_ref
@pytest.mark.parametrize("nb_channels,targets,depth", [
    (2, ("vocals", "other"), 2),  # stereo, two stems, 2-layer MLP heads
    (1, ("vocals",), 1),          # mono, one stem, single-Dense heads
])
def test_bs_roformer_matches_reference(real_mixture, nb_channels, targets, depth):
    torch_model, kw = _torch_bs(nb_channels=nb_channels, targets=targets, mask_estimator_depth=depth)
    ours = BSRoformer(targets=list(targets), nb_channels=nb_channels, dim_freqs_in=257, **kw)
    conv.convert_state(ours, _state(torch_model))
    abs_diff, rel_diff = _compare(torch_model, ours, _chunk(real_mixture, nb_channels), targets)
    assert rel_diff <= 1e-4, (abs_diff, rel_diff)


@needs_ref
@pytest.mark.parametrize("nb_channels,targets,depth", [
    (2, ("vocals", "other"), 1),
    (1, ("vocals",), 2),
])
def test_mel_band_roformer_matches_reference(real_mixture, nb_channels, targets, depth):
    torch_model, kw = _torch_mel(nb_channels=nb_channels, targets=targets, mask_estimator_depth=depth)
    ours = MelBandRoformer(targets=list(targets), nb_channels=nb_channels, dim_freqs_in=257, **kw)
    conv.convert_state(ours, _state(torch_model))
    abs_diff, rel_diff = _compare(torch_model, ours, _chunk(real_mixture, nb_channels), targets)
    assert rel_diff <= 1e-4, (abs_diff, rel_diff)


RELEASED = dict(dim=128, depth=2, time_transformer_depth=1, freq_transformer_depth=1, dim_head=64, heads=8,
                stft_n_fft=2048, stft_hop_length=441, stft_win_length=2048, mask_estimator_depth=2)


@needs_ref
@pytest.mark.slow
@pytest.mark.parametrize("family", ["bs", "mel"])
def test_released_layout_matches_reference(real_mixture, family):
    """The released configs' band layouts, STFT, heads and MLPs (``model_bs_roformer_ep_317`` and
    ``model_mel_band_roformer_ep_3005``) at dim 128 / depth 2 instead of 512-384 / 12 (~100M
    parameters: too slow for CPU tests), on 2 s of the real mixture."""
    if family == "bs":
        torch_model, kw = _torch_bs(targets=("vocals",), freqs_per_bands=DEFAULT_FREQS_PER_BANDS, **RELEASED)
        ours = BSRoformer(targets=["vocals"], **kw)
    else:
        torch_model, kw = _torch_mel(targets=("vocals",), num_bands=60, **RELEASED)
        ours = MelBandRoformer(targets=["vocals"], **kw)
    conv.convert_state(ours, _state(torch_model))
    abs_diff, rel_diff = _compare(torch_model, ours, _chunk(real_mixture, 2), ("vocals",))
    assert rel_diff <= 1e-4, (abs_diff, rel_diff)


# --- converter --------------------------------------------------------------------------------------

def _small_pair():
    torch_model, kw = _torch_bs(targets=("vocals",))
    ours = BSRoformer(targets=["vocals"], **kw)
    ours.build((None, 2, None))
    return torch_model, ours, _state(torch_model)


@needs_ref
def test_convert_state_errors_name_the_tensor():
    _, ours, state = _small_pair()
    broken = dict(state)
    del broken["band_split.to_features.3.1.bias"]
    with pytest.raises(ValueError, match=r"missing 1 tensor\(s\): \['band_split.to_features.3.1.bias'\]"):
        conv.convert_state(ours, broken)
    broken = dict(state, **{"final_norm.gamma": np.ones(31, np.float32)})
    with pytest.raises(ValueError, match=r"'final_norm.gamma' \(shape \(31,\)\).*expects \(32,\)"):
        conv.convert_state(ours, broken)
    broken = dict(state, extra=np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"does not use: \['extra'\]"):
        conv.convert_state(ours, broken)
    name = "layers.0.0.layers.0.0.rotary_embed.freqs"
    broken = dict(state, **{name: state[name] * 2})
    with pytest.raises(ValueError, match="rotary frequencies"):
        conv.convert_state(ours, broken)


@needs_ref
def test_convert_state_without_rotary_buffers(real_mixture):
    torch_model, ours, state = _small_pair()
    conv.convert_state(ours, {k: v for k, v in state.items() if not k.endswith("rotary_embed.freqs")})
    abs_diff, rel_diff = _compare(torch_model, ours, _chunk(real_mixture, 2)[..., :22050], ("vocals",))
    assert rel_diff <= 1e-4


@needs_ref
def test_read_state_from_ckpt(tmp_path, real_mixture):
    torch_model, ours, _ = _small_pair()
    path = tmp_path / "model.ckpt"
    torch.save(torch_model.state_dict(), path)
    conv.convert_state(ours, conv.read_state(path))
    abs_diff, rel_diff = _compare(torch_model, ours, _chunk(real_mixture, 2)[..., :22050], ("vocals",))
    assert rel_diff <= 1e-4
    wrapped = tmp_path / "wrapped.ckpt"
    torch.save({"state_dict": torch_model.state_dict()}, wrapped)
    assert sorted(conv.read_state(wrapped)) == sorted(torch_model.state_dict())


class _Payload:
    def __reduce__(self):
        return (print, ("this must not run",))


@needs_ref
def test_read_state_refuses_code(tmp_path):
    from kerasep.zoo.converters.demucs import UntrustedCheckpointError

    path = tmp_path / "evil.ckpt"
    torch.save({"a": torch.zeros(1), "b": _Payload()}, path)
    with pytest.raises(UntrustedCheckpointError, match="restricted unpickler"):
        conv.read_state(path)


# the released MSST YAML of model_bs_roformer_ep_317_sdr_12.9755 (configs/viperx/), abridged only in
# the training section
EP317_YAML = """\
audio:
  chunk_size: 352800
  dim_f: 1024
  dim_t: 801 # don't work (use in model)
  hop_length: 441 # don't work (use in model)
  n_fft: 2048
  num_channels: 2
  sample_rate: 44100
  min_mean_abs: 0.000

model:
  dim: 512
  depth: 12
  stereo: true
  num_stems: 1
  time_transformer_depth: 1
  freq_transformer_depth: 1
  linear_transformer_depth: 0
  freqs_per_bands: !!python/tuple
{bands}
  dim_head: 64
  heads: 8
  attn_dropout: 0.1
  ff_dropout: 0.1
  flash_attn: true
  dim_freqs_in: 1025
  stft_n_fft: 2048
  stft_hop_length: 441
  stft_win_length: 2048
  stft_normalized: false
  mask_estimator_depth: 2
  multi_stft_resolution_loss_weight: 1.0
  multi_stft_resolutions_window_sizes: !!python/tuple
  - 4096
  - 2048
  - 1024
  - 512
  - 256
  multi_stft_hop_size: 147
  multi_stft_normalized: False

training:
  batch_size: 2
  instruments:
  - vocals
  - other
  target_instrument: vocals
  use_amp: true

inference:
  batch_size: 4
  dim_t: 801
  num_overlap: 2
""".replace("{bands}", "\n".join(f"    - {f}" for f in DEFAULT_FREQS_PER_BANDS))

MEL3005_MODEL = dict(dim=384, depth=12, stereo=True, num_stems=1, time_transformer_depth=1, freq_transformer_depth=1,
                     linear_transformer_depth=0, num_bands=60, dim_head=64, heads=8, attn_dropout=0.1, ff_dropout=0.1,
                     flash_attn=True, dim_freqs_in=1025, sample_rate=44100, stft_n_fft=2048, stft_hop_length=441,
                     stft_win_length=2048, stft_normalized=False, mask_estimator_depth=2,
                     multi_stft_resolution_loss_weight=1.0,
                     multi_stft_resolutions_window_sizes=(4096, 2048, 1024, 512, 256), multi_stft_hop_size=147,
                     multi_stft_normalized=False)


def test_config_from_released_yaml(tmp_path):
    path = tmp_path / "model_bs_roformer_ep_317_sdr_12.9755.yaml"
    path.write_text(EP317_YAML)
    spec = conv.config_from_yaml(path)
    assert spec["family"] == "bs_roformer"
    config = spec["config"]
    assert config["targets"] == ["vocals"] and config["nb_channels"] == 2 and config["sample_rate"] == 44100
    assert config["freqs_per_bands"] == list(DEFAULT_FREQS_PER_BANDS)
    assert config["chunk_size"] == 352800 and config["num_overlap"] == 2
    model = conv.model_from_yaml(path)  # unbuilt: no weights allocated
    # one-stem checkpoint: the residual (mixture minus vocals) named after the other training instrument
    assert config["residual"] == "other"
    assert isinstance(model, BSRoformer) and model.stems == ["vocals", "other"] and model.dim == 512
    assert model.depth == 12 and model.targets == ["vocals"]
    assert model.chunking.kind == "segment" and model.chunking.segment_seconds == 8.0
    assert model.chunking.weighting == "faded" and model.chunking.num_overlap == 2 and model.chunking.overlap == 0.5
    assert len(model.band_dims) == 62 and sum(model.band_dims) == 1025 * 2 * 2
    # the mel-band file's model section alone
    spec = conv.config_from_yaml({"model": MEL3005_MODEL, "training": {"target_instrument": "vocals"}})
    assert spec["family"] == "mel_band_roformer" and spec["config"]["dim"] == 384
    assert spec["config"]["residual"] == "instrumental"  # no other instrument named: MSST's word
    model = conv.model_from_yaml(MEL3005_MODEL)
    assert isinstance(model, MelBandRoformer) and model.stems == ["stem_0"] and len(model.band_dims) == 60


@pytest.mark.parametrize("option,value", [("linear_transformer_depth", 1), ("skip_connection", True),
                                          ("sage_attention", True), ("stft_normalized", True),
                                          ("hyper_connections", 4)])
def test_config_from_yaml_refuses_unsupported(option, value):
    with pytest.raises(ValueError, match=f"not supported: {option}={value!r}"):
        conv.config_from_yaml(dict(MEL3005_MODEL, **{option: value}))


def test_model_refuses_unsupported_options():
    with pytest.raises(ValueError, match="not supported: linear_transformer_depth=1"):
        BSRoformer(linear_transformer_depth=1)
    with pytest.raises(ValueError, match=r"at least 2 bands summing to stft_n_fft // 2 \+ 1 = 1025"):
        BSRoformer(freqs_per_bands=(1, 2, 3))


# --- the Separator contract --------------------------------------------------------------------------

TINY = dict(dim=16, depth=1, time_transformer_depth=1, freq_transformer_depth=1, dim_head=8, heads=2,
            stft_n_fft=256, stft_hop_length=64, stft_win_length=256, mask_estimator_depth=2, dim_freqs_in=129,
            chunk_size=22050, num_overlap=2)


def test_bs_roformer_contract(real_mixture, tmp_path):
    model = BSRoformer(targets=["vocals", "other"], freqs_per_bands=(4, 4, 8, 16, 32, 65), **TINY)
    model.build((None, 2, None))
    run_separator_test(model, real_mixture, tmp_path, chunk_seconds=0.5, family="bs_roformer",
                       exports=("onnx", "saved_model"))


def test_mel_band_roformer_contract(real_mixture, tmp_path):
    model = MelBandRoformer(targets=["vocals"], num_bands=8, **TINY)
    model.build((None, 2, None))
    run_separator_test(model, real_mixture, tmp_path, chunk_seconds=0.5, family="mel_band_roformer",
                       exports=("onnx", "saved_model"))


def test_residual_stem_is_mixture_minus_targets(real_mixture):
    model = MelBandRoformer(targets=["vocals"], num_bands=8, residual="other", **TINY)
    assert model.stems == ["vocals", "other"] and model.get_config()["residual"] == "other"
    x = np.ascontiguousarray(real_mixture[:22050].T[None])
    y = {t: np.asarray(v) for t, v in model(x).items()}
    np.testing.assert_allclose(y["other"], x - y["vocals"], rtol=0, atol=1e-6)
    assert np.abs(y["vocals"]).max() > 1e-3
    with pytest.raises(ValueError, match="`residual` must be a stem name other than the targets"):
        BSRoformer(targets=["vocals"], residual="vocals")
