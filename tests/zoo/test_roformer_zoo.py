"""The band-split RoFormer zoo entries: their configs are the MSST YAMLs copied beside the cards
(sha256 as the cards say), `kerasep list` shows their licence, offline loading names the pinned URL
and sha256, and the registry's converter reads a checkpoint in the release format (a ``torch.save``d
state dict of lucidrains' BS-RoFormer 0.3.10, random weights, small config of the same layout)."""
import hashlib

import numpy as np
import pytest

from kerasep import cli, zoo
from kerasep.zoo import registry
from kerasep.zoo.converters import roformer as conv
from testing import REPO

ENTRIES = {
    "bs-roformer-viperx-1297": ("model_bs_roformer_ep_317_sdr_12.9755.yaml",
                                "42e5635ceab7287b83d9591c9880966f0b61cff26a0a40a29d236bacb32e5f2c"),
    "mel-band-roformer-kim": ("config_vocals_mel_band_roformer_kj.yaml",
                              "f63f38eb1e6e40a7db0dade714a5ae257555dd8748f4e774eae8679275a81926"),
}


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_entry_config_is_its_msst_yaml(name):
    filename, sha256 = ENTRIES[name]
    path = REPO / "zoo" / name / filename
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256
    assert sha256 in (REPO / "zoo" / name / "card.md").read_text()
    entry = registry.get(name)
    spec = conv.config_from_yaml(path)
    assert spec["family"] == entry["family"]
    cls = registry.family_class(entry["family"])  # unbuilt: no weights allocated
    assert cls(name="m", **spec["config"]).get_config() == cls(name="m", **entry["config"]).get_config()
    assert registry.stems(name) == ["vocals", "other"]
    source = registry.weight_source(entry["weights"])
    assert source["format"] == "msst-roformer-ckpt" and len(next(iter(source["files"].values()))) == 64


def test_list_shows_the_licence(capsys):
    assert cli.main(["list"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "roformer" in line]
    assert len(rows) == 2 and all("unknown" in row and "vocals, other" in row for row in rows), rows


def test_offline_load_names_url_and_sha256(tmp_path, monkeypatch):
    monkeypatch.setenv("KERASEP_HOME", str(tmp_path))
    with pytest.raises(zoo.WeightsError) as info:
        zoo.load("mel-band-roformer-kim", download=False)
    text = str(info.value)
    assert ("https://huggingface.co/KimberleyJSN/melbandroformer/resolve/ac9b0614ab3cd7f77219e18ba494dfd93956c348/"
            "MelBandRoformer.ckpt") in text, text


def test_registry_converter_reads_the_release_format(tmp_path, real_mixture):
    torch = pytest.importorskip("torch")
    ref = pytest.importorskip("bs_roformer")
    bands = (2, 2, 4, 4, 8, 8, 16, 16, 32, 36, 129)
    torch.manual_seed(0)
    reference = ref.BSRoformer(dim=32, depth=1, stereo=True, num_stems=1, freqs_per_bands=bands, dim_head=16,
                               heads=2, time_transformer_depth=1, freq_transformer_depth=1, stft_n_fft=512, stft_hop_length=128, stft_win_length=512,
                               mask_estimator_depth=2, attn_dropout=0.0, ff_dropout=0.0).eval()
    source = registry.weight_source("bs-roformer-viperx-1297")
    (filename,) = source["files"]
    torch.save(reference.state_dict(), tmp_path / filename)
    model = zoo.build(dict(registry.get("bs-roformer-viperx-1297")["config"], dim=32, depth=1, dim_head=16, heads=2,
                           stft_n_fft=512, stft_hop_length=128, stft_win_length=512, dim_freqs_in=257,
                           freqs_per_bands=list(bands)), family="bs_roformer")
    zoo.load_weights(model, "bs-roformer-viperx-1297", tmp_path)
    x = np.ascontiguousarray(real_mixture[:25600].T[None])
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    out = model(x)
    np.testing.assert_allclose(np.asarray(out["vocals"]), expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    np.testing.assert_allclose(np.asarray(out["other"]), x - np.asarray(out["vocals"]), atol=1e-6)
