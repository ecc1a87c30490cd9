"""Zoo entries ``umxhq`` / ``umxl``: registry facts, offline errors, and the whole load path
(sha256 check → cache → converter) on locally generated files."""
import hashlib

import numpy as np
import pytest

from kerasep import zoo
from kerasep.zoo import registry
from reference.openunmix_ref import random_openunmix


def test_registry_entries():
    for name, hidden, license in (("umxhq", 512, "MIT"), ("umxl", 1024, "CC BY-NC-SA 4.0")):
        entry = registry.get(name)
        assert entry["family"] == "openunmix" and entry["license"] == license
        assert entry["config"]["hidden_size"] == hidden and entry["config"]["max_bin"] == 1487
        source = registry.weight_source(entry["weights"])
        assert source["license"] == license
        assert sorted(f.split("-")[0] for f in source["files"]) == ["bass", "drums", "other", "vocals"]
        for fname, digest in source["files"].items():
            assert fname.split("-")[1].startswith(digest[:8])  # torch.hub naming: sha256 prefix
            assert source["urls"][fname].startswith("https://zenodo.org/records/")


def test_offline_without_files_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KERASEP_HOME", str(tmp_path / "home"))
    with pytest.raises(zoo.WeightsError) as info:
        zoo.load("umxhq", download=False)
    message = str(info.value)
    assert "umxhq" in message and "zenodo.org/records/3370489/files/vocals-b62c91ce.pth" in message
    assert "--weights" in message
    # a folder with wrong files: rejected by the sha256 check, nothing cached
    folder = tmp_path / "wrong"
    folder.mkdir()
    for name in registry.weight_source("umxhq")["files"]:
        (folder / name).write_bytes(b"not the weights")
    with pytest.raises(zoo.WeightsError, match="sha256 mismatch"):
        zoo.load("umxhq", weights=folder, download=False)
    assert not (tmp_path / "home" / "weights" / "umxhq").exists()


@pytest.mark.slow
def test_load_from_user_folder_matches_openunmix(tmp_path, monkeypatch):
    """The real load path with stand-in files: umxhq-architecture state dicts written by torch,
    pinned by their own sha256 prefixes (as upstream pins its files), then zoo.load."""
    import torch

    from reference.openunmix_ref import import_openunmix

    model_mod, _ = import_openunmix()
    monkeypatch.setenv("KERASEP_HOME", str(tmp_path / "home"))
    folder = tmp_path / "umxhq"
    folder.mkdir()
    refs, files = {}, {}
    for k, t in enumerate(["vocals", "drums", "bass", "other"]):
        refs[t] = random_openunmix(k, 2049, 2, 512, 3, max_bin=1487)
        tmp = folder / f"{t}.tmp"
        torch.save(refs[t].state_dict(), tmp)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        tmp.rename(folder / f"{t}-{digest[:8]}.pth")
        files[f"{t}-{digest[:8]}.pth"] = digest[:8]
    source = dict(registry.WEIGHT_SOURCES["umxhq"], files=files, urls={})
    monkeypatch.setitem(registry.WEIGHT_SOURCES, "umxhq", source)

    model = zoo.load("umxhq", weights=folder, download=False)
    assert sorted(p.name for p in (tmp_path / "home" / "weights" / "umxhq").iterdir()) == sorted(files)
    wave = (np.random.RandomState(0).randn(1, 2, 30000) * 0.2).astype("float32")
    separator = model_mod.Separator(refs, niter=1, n_fft=4096, n_hop=1024, wiener_win_len=300).eval()
    with torch.no_grad():
        want = separator(torch.from_numpy(wave)).numpy()
    from kerasep.backend import tf

    got = tf.function(lambda x: model(x, training=False))(wave)
    for j, t in enumerate(["vocals", "drums", "bass", "other"]):
        ref, est = want[0, j], got[t].numpy()[0]
        assert 10 * np.log10(np.sum(ref**2) / np.sum((ref - est) ** 2)) > 40, t
