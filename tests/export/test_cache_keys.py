"""The ONNX export cache key (kerasep.export.cache): what a cached file depends on, so that a
change in any of it means another export."""
import json

import pytest

from kerasep.export import cache
from kerasep.models.roformer import BSRoformer, MelBandRoformer


def _tiny(cls, **kw):
    model = cls(targets=["vocals"], dim=8, depth=1, dim_head=4, heads=2, stft_n_fft=256, stft_hop_length=64,
                stft_win_length=256, dim_freqs_in=129, chunk_size=22050, num_overlap=2, **kw)
    model.build((None, 2, None))
    return model


@pytest.mark.parametrize("cls,kw", [(BSRoformer, dict(freqs_per_bands=(64, 65))), (MelBandRoformer, dict(num_bands=4))])
def test_a_family_with_a_graph_revision_carries_it_in_its_key(cls, kw, monkeypatch):
    model = _tiny(cls, **kw)
    record = cache.model_record(model)
    assert record["graph_revision"] == cache.GRAPH_REVISIONS[
        "bs_roformer" if cls is BSRoformer else "mel_band_roformer"]
    # a new revision of the family's graph means a new key (another export), the rest unchanged
    family = "bs_roformer" if cls is BSRoformer else "mel_band_roformer"
    monkeypatch.setitem(cache.GRAPH_REVISIONS, family, record["graph_revision"] + 1)
    again = cache.model_record(model)
    assert again["key"] != record["key"]
    assert {k: v for k, v in again.items() if k not in ("key", "graph_revision")} == \
        {k: v for k, v in record.items() if k not in ("key", "graph_revision")}


def test_zoo_entries_and_files_keyed_by_their_family_revision(tmp_path):
    assert "graph_revision" not in cache.onnx_cache_record("unet-2stems")  # no revision: keys as before
    assert cache.onnx_cache_record("htdemucs")["graph_revision"] == cache.GRAPH_REVISIONS["htdemucs"]
    assert cache.onnx_cache_record("htdemucs_ft")["graph_revision"] == cache.GRAPH_REVISIONS["htdemucs"]
    th, keras_file = tmp_path / "m.th", tmp_path / "m.keras"
    th.write_bytes(b"x")
    keras_file.write_bytes(b"x")
    assert cache.file_cache_record(th)["graph_revision"] == cache.GRAPH_REVISIONS["htdemucs"]
    assert "graph_revision" not in cache.file_cache_record(keras_file)
    json.dumps(cache.file_cache_record(th))  # the record is written beside the file as JSON
