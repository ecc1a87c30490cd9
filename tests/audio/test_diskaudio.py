"""Bounded-memory separation: decoding to disk, disk-backed outputs, block-wise writing."""
import functools
import os

import numpy as np
import pytest
import soundfile

from kerasep import audio
from kerasep.diskaudio import DiskArray, decode_to_disk, resample_to_disk
from kerasep.inference import separate_array

from testing import MIXTURE_MONO_MP3, MIXTURE_MP3, ScaledSeparator, SegmentedSeparator, tiny_unet


def test_disk_array_slices(tmp_path):
    a = DiskArray.zeros(10, 2, tmp_path)
    assert a.shape == (10, 2) and len(a) == 10
    a[2:5] = np.arange(6, dtype=np.float32).reshape(3, 2)
    a[3:4] += 10.0
    np.testing.assert_array_equal(a[1:4], [[0, 0], [0, 1], [12, 13]])
    np.testing.assert_array_equal(np.asarray(a)[-1], [0, 0])
    a.append(np.ones((2, 2), np.float32))
    assert a.shape == (12, 2) and a[10:][0, 0] == 1.0
    assert sum(len(b) for b in a.blocks(5)) == 12
    with pytest.raises(TypeError, match="contiguous slices"):
        a[::2]
    a.delete()
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("which", ["mp3", "mono-mp3", "stem-mp4"])
def test_decode_to_disk_equals_load(which, tmp_path, musdb_stem_mp4):
    path = {"mp3": MIXTURE_MP3, "mono-mp3": MIXTURE_MONO_MP3, "stem-mp4": musdb_stem_mp4}[which]
    on_disk = decode_to_disk(path, tmp_path)  # more than one 2**18-timestep block
    np.testing.assert_array_equal(np.asarray(on_disk), audio.load(path))


@pytest.mark.parametrize("rate", [22050, 48000])
def test_decode_to_disk_resamples_block_by_block(rate, tmp_path, musdb_hq_track):
    path = musdb_hq_track / "mixture.wav"
    on_disk = decode_to_disk(path, tmp_path, sample_rate=rate)
    np.testing.assert_allclose(np.asarray(on_disk), audio.load(path, sample_rate=rate), atol=1e-6)
    x = np.random.default_rng(0).standard_normal((50_001, 2)).astype(np.float32)
    small_blocks = resample_to_disk(x, 44100, rate, tmp_path, block=1000)
    np.testing.assert_allclose(np.asarray(small_blocks), audio.resample(x, 44100, rate), atol=1e-6)


def test_decode_to_disk_bad_input_leaves_nothing(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    x = np.zeros((300_000, 2), np.float32)
    x[290_000, 1] = np.nan  # in the second decoder block
    soundfile.write(tmp_path / "nan.wav", x, 44100, subtype="FLOAT")
    with pytest.raises(audio.AudioError, match=r"nan\.wav: expected finite samples.*timestep 290000"):
        decode_to_disk(tmp_path / "nan.wav", work)
    (tmp_path / "bad.m4a").write_bytes(os.urandom(4096))
    with pytest.raises(audio.AudioError, match=r"bad\.m4a: could not decode"):
        decode_to_disk(tmp_path / "bad.m4a", work)
    soundfile.write(tmp_path / "six.wav", np.zeros((100, 6), np.float32), 44100)
    with pytest.raises(audio.AudioError, match="found 6"):
        decode_to_disk(tmp_path / "six.wav", work)
    assert os.listdir(work) == []


def test_save_blocks_is_save_and_atomic(tmp_path):
    x = np.random.default_rng(1).uniform(-1.2, 1.2, (70_000, 2)).astype(np.float32)
    with pytest.warns(UserWarning, match="clipping"):
        audio.save(tmp_path / "a.flac", x, 44100)
    with pytest.warns(UserWarning, match="clipping"):
        audio.save_blocks(tmp_path / "b.flac", (x[i : i + 30_000] for i in range(0, len(x), 30_000)), 44100, 2)
    np.testing.assert_array_equal(soundfile.read(tmp_path / "a.flac")[0], soundfile.read(tmp_path / "b.flac")[0])
    bad = x.copy()
    bad[65_000, 0] = np.inf
    before = (tmp_path / "b.flac").read_bytes()
    with pytest.raises(audio.AudioError, match="expected finite samples.*timestep 65000"):
        audio.save_blocks(tmp_path / "b.flac", iter([bad[:60_000], bad[60_000:]]), 44100, 2, overwrite=True)
    with pytest.raises(audio.AudioError, match="no audio"):
        audio.save_blocks(tmp_path / "c.wav", iter([]), 44100, 2)
    with pytest.raises(audio.AudioError, match="already exists"):
        audio.save_blocks(tmp_path / "b.flac", iter([x]), 44100, 2)
    assert (tmp_path / "b.flac").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["a.flac", "b.flac"]


@pytest.mark.parametrize("make, kwargs", [
    (tiny_unet, dict(chunk_seconds=0.5)),                        # Spleeter patch grid
    (ScaledSeparator, dict(chunk_seconds=1.0, context_seconds=0.2)),  # context + cross-fade
    (SegmentedSeparator, dict(shifts=2, seed=3, two_stems="vocals")),  # segments, shifts, two stems
], ids=["patch-grid", "crossfade", "segments-shifts-two-stems"])
def test_disk_backed_separation_equals_in_memory(make, kwargs, tmp_path):
    model = make()
    mix = audio.load(MIXTURE_MP3)[: 3 * 44100 + 123]
    on_disk = DiskArray.zeros(len(mix), 2, tmp_path)
    on_disk[:] = mix
    ref = separate_array(mix, model, **kwargs)
    got = separate_array(on_disk, model, alloc=functools.partial(DiskArray.zeros, directory=tmp_path), **kwargs)
    assert sorted(got) == sorted(ref)
    for t in ref:
        assert isinstance(got[t], DiskArray)
        np.testing.assert_allclose(np.asarray(got[t]), ref[t], rtol=1e-6, atol=1e-6)
    # intermediates (shifted runs, folded targets) are removed as soon as they are used
    assert len(os.listdir(tmp_path)) == 1 + len(ref)
