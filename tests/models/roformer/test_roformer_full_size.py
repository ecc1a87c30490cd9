"""Full released size: kerasep's BS-RoFormer and Mel-Band RoFormer against lucidrains'
BS-RoFormer 0.3.10 at the dimensions of ``model_bs_roformer_ep_317_sdr_12.9755`` (dim 512, depth
12, 62 bands) and ``model_mel_band_roformer_ep_3005_sdr_11.4360`` (dim 384, depth 12, 60 mel
bands), random weights (RMSNorm gammas randomised too), one 1 s chunk of the real MUSDB18 excerpt:
max abs difference ≤ 1e-4 of the reference's peak.

The reference's float32 arithmetic is itself this far from the exact result: its float64 twin
(same weights) differs from it by 7.3e-5 (Mel-Band) and 4.6e-5 (BS) of the peak, kerasep's output
by 1.9e-5 and 1.3e-5, so the float64 twin is checked too.

Marked slow (78 s and 92 s on 2 cores at load average 6); the released layouts are also checked
at a smaller width and depth (``test_roformer.py::test_released_layout_matches_reference``)."""
import copy

import numpy as np
import pytest

from kerasep.models.roformer import DEFAULT_FREQS_PER_BANDS, BSRoformer, MelBandRoformer
from kerasep.zoo.converters import roformer as conv

torch = pytest.importorskip("torch")
try:
    from importlib.metadata import version

    ref = __import__("bs_roformer") if version("BS-RoFormer") == "0.3.10" else None
except Exception:  # pragma: no cover - not installed
    ref = None
pytestmark = [
    pytest.mark.skipif(ref is None, reason="needs BS-RoFormer==0.3.10 (the checkpoints' modules)"),
]

COMMON = dict(dim_head=64, heads=8, stft_n_fft=2048, stft_hop_length=441, stft_win_length=2048,
              time_transformer_depth=1, freq_transformer_depth=1, mask_estimator_depth=2)
SECONDS = 1  # one chunk of 101 STFT frames: every layer at full width and depth
SIZES = {
    "bs": dict(COMMON, dim=512, depth=12, freqs_per_bands=DEFAULT_FREQS_PER_BANDS),
    "mel": dict(COMMON, dim=384, depth=12, num_bands=60),
}


@pytest.mark.slow
@pytest.mark.parametrize("family", ["bs", "mel"])
def test_released_size_matches_reference(real_mixture, family):
    kw = SIZES[family]
    torch.manual_seed(0)
    if family == "bs":
        reference = ref.BSRoformer(stereo=True, num_stems=1, attn_dropout=0.0, ff_dropout=0.0, **kw)
        ours = BSRoformer(targets=["vocals"], **kw)
    else:
        reference = ref.MelBandRoformer(stereo=True, num_stems=1, attn_dropout=0.0, ff_dropout=0.0, sample_rate=44100,
                                        **kw)
        ours = MelBandRoformer(targets=["vocals"], **kw)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in reference.named_parameters():
            if name.endswith("gamma"):
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
    reference.eval()
    conv.convert_state(ours, {k: v.detach().numpy() for k, v in reference.state_dict().items()})
    x = np.ascontiguousarray(real_mixture[:SECONDS * 44100].T[None])  # (1, 2, 44100)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
        exact = copy.deepcopy(reference).double()(torch.from_numpy(x).double()).numpy()
    n = expected.shape[-1]  # the reference's inverse STFT stops after the last whole hop
    out = np.asarray(ours(x)["vocals"])[..., :n]
    peak = np.abs(expected).max()
    rel = np.abs(out - expected).max() / peak
    rel_exact = np.abs(out - exact).max() / np.abs(exact).max()
    print(f"{family} released size: max |ours - reference| / peak = {rel:.2e}; vs the float64 reference {rel_exact:.2e}; "
          f"reference vs its float64 twin {np.abs(expected - exact).max() / np.abs(exact).max():.2e}")
    assert rel <= 1e-4 and rel_exact <= 1e-4, (rel, rel_exact)
