"""Acceptance of ``kerasep separate -m FILE.ckpt``: a band-split RoFormer checkpoint in the exact
public release format (``torch.save`` of lucidrains' ``BS-RoFormer`` 0.3.10 model's
``state_dict()``, random weights) with its YAML in Music-Source-Separation-Training's format,
separated whole-track on the real MUSDB18 excerpt, against the reference model driven by MSST's
own chunked inference (``tests/reference/msst_demix.py``) on the same file."""
import numpy as np
import pytest

from kerasep import cli, zoo

torch = pytest.importorskip("torch")
try:
    from importlib.metadata import version

    ref = __import__("bs_roformer") if version("BS-RoFormer") == "0.3.10" else None
except Exception:  # pragma: no cover - not installed
    ref = None
pytestmark = pytest.mark.skipif(ref is None, reason="needs BS-RoFormer==0.3.10 (the checkpoints' modules)")
from reference import msst_demix  # noqa: E402

RATE = 44100
HOP = 128
# MSST's YAML layout (configs/viperx/model_bs_roformer_ep_317_sdr_12.9755.yaml) at a tiny size: 25600-sample
# (0.58 s) chunks, so the 6.08 s excerpt is cut into 11 (num_overlap 2) or 21 (num_overlap 4) chunks
YAML = """\
audio:
  chunk_size: {chunk}
  dim_f: 1024
  dim_t: 201
  hop_length: 128
  n_fft: 512
  num_channels: 2
  sample_rate: 44100
  min_mean_abs: 0.000

model:
  dim: 32
  depth: 2
  stereo: true
  num_stems: 1
  time_transformer_depth: 1
  freq_transformer_depth: 1
  linear_transformer_depth: 0
{bands}
  dim_head: 16
  heads: 2
  attn_dropout: 0.1
  ff_dropout: 0.1
  flash_attn: true
  dim_freqs_in: 257
  stft_n_fft: 512
  stft_hop_length: 128
  stft_win_length: 512
  stft_normalized: false
  mask_estimator_depth: {mask_depth}
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
  lr: 5.0e-05
  target_instrument: vocals
  use_amp: true

inference:
  batch_size: 1
  dim_t: 201
  num_overlap: {overlap}
"""
BS_BANDS = "  freqs_per_bands: !!python/tuple\n" + "\n".join(
    f"  - {f}" for f in (2, 2, 4, 4, 8, 8, 16, 16, 32, 36, 129))
MEL_BANDS = "  num_bands: 12\n  sample_rate: 44100"


def _release_pair(folder, family, num_overlap, seed):
    """``folder/model.ckpt`` + ``folder/model.yaml`` as released, and the reference model built from the
    YAML's ``model:`` section as MSST builds it (``BSRoformer(**config.model)``), its RMSNorm gammas
    randomised so that every weight counts."""
    import yaml

    text = YAML.format(chunk=200 * HOP, overlap=num_overlap, bands=BS_BANDS if family == "bs" else MEL_BANDS,
                       mask_depth=2 if family == "bs" else 1)
    (folder / "model.yaml").write_text(text)
    loader = type("L", (yaml.SafeLoader,), {})
    loader.add_constructor("tag:yaml.org,2002:python/tuple", lambda lo, node: tuple(lo.construct_sequence(node)))
    section = yaml.load(text, Loader=loader)["model"]
    # MSST's own copy of the module takes linear_transformer_depth (0: none, lucidrains' 0.3.10 has no such option)
    assert section.pop("linear_transformer_depth") == 0
    torch.manual_seed(seed)
    model = (ref.BSRoformer if family == "bs" else ref.MelBandRoformer)(**section)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
    torch.save(model.state_dict(), folder / "model.ckpt")
    return folder / "model.ckpt", model.eval()


def _sdr(ref, est):
    return 10 * np.log10(np.sum(ref ** 2) / np.sum((ref - est) ** 2))


@pytest.mark.slow
@pytest.mark.parametrize("family,num_overlap", [("bs", 2), ("mel", 4)])
def test_cli_separate_ckpt_matches_msst_demix(musdb_hq_track, tmp_path, family, num_overlap):
    import soundfile as sf

    wav = musdb_hq_track / "mixture.wav"
    mix, rate = sf.read(wav, dtype="float32")
    assert rate == RATE and mix.shape[0] > 10 * 200 * HOP
    ckpt, reference = _release_pair(tmp_path, family, num_overlap, seed=5)
    out = tmp_path / "out"
    assert cli.main(["separate", str(wav), "-m", str(ckpt), "-o", str(out), "--subtype", "FLOAT", "-q"]) == 0
    vocals = msst_demix.demix(reference, mix.T, 200 * HOP, num_overlap)[0].T
    expected = {"vocals": vocals, "other": mix - vocals}  # MSST's instrumental: mixture minus the stem
    sdr = {}
    for stem in ("vocals", "other"):
        (path,) = out.glob(f"*/{stem}.wav")
        ours, rate = sf.read(path, dtype="float32")
        assert rate == RATE and ours.shape == mix.shape
        sdr[stem] = _sdr(expected[stem], ours)
    print(f"SDR vs MSST demix ({family}, num_overlap {num_overlap}, CLI):", {s: round(v, 1) for s, v in sdr.items()})
    assert min(sdr.values()) >= 50, sdr


def test_ckpt_config_beside_given_or_refused(musdb_hq_track, tmp_path, capsys):
    ckpt, _ = _release_pair(tmp_path, "bs", 2, seed=1)
    model = zoo.load(str(ckpt))  # model.yaml beside it
    assert type(model).__name__ == "BSRoformer" and model.stems == ["vocals", "other"]
    assert model.chunking.weighting == "faded" and model.chunking.num_overlap == 2
    assert model.chunk_size == 25600
    elsewhere = tmp_path / "configs"
    elsewhere.mkdir()
    (tmp_path / "model.yaml").rename(elsewhere / "viperx.yaml")
    with pytest.raises(FileNotFoundError, match="needs its MSST YAML config.*--config FILE.yaml"):
        zoo.load(str(ckpt))
    assert zoo.load(str(ckpt), config=elsewhere / "viperx.yaml").stems == ["vocals", "other"]
    wav = musdb_hq_track / "mixture.wav"
    assert cli.main(["separate", str(wav), "-m", str(ckpt), "-o", str(tmp_path / "o"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "model.ckpt needs its MSST YAML config" in err and "--config FILE.yaml" in err, err
    assert not (tmp_path / "o").exists()
    assert cli.main(["separate", str(wav), "-m", str(ckpt), "--config", str(tmp_path / "nope.yaml"),
                     "-o", str(tmp_path / "o"), "-q"]) == 1
    assert "no such MSST YAML config" in capsys.readouterr().err
    with pytest.raises(ValueError, match="config= / --config applies to an MSST .ckpt"):
        zoo.load("unet-2stems", config=elsewhere / "viperx.yaml")
