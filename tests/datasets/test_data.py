"""kerasep.data: MUSDB18/folder sources on the real fixture, bad input, seeded pipeline."""
import numpy as np
import pytest
import soundfile as sf

from kerasep import data
from kerasep.data import DatasetError

from testing import TRACK

SOURCES = ["drums", "bass", "other", "vocals"]
GROUPS = {"vocals": ["vocals"], "accompaniment": ["drums", "bass", "other"]}


def write_track(folder, name, sources, nb_timesteps=4000, rate=8000, values=None, lengths=None, rates=None):
    d = folder / name
    d.mkdir(parents=True)
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    for k, s in enumerate(sources):
        n = (lengths or {}).get(s, nb_timesteps)
        r = (rates or {}).get(s, rate)
        a = np.full((n, 2), values[k], np.float32) if values is not None else rng.uniform(-0.5, 0.5, (n, 2))
        sf.write(d / f"{s}.wav", a.astype(np.float32), r, subtype="FLOAT")
    return d


# --- real MUSDB18 track ---------------------------------------------------------------------


def test_musdb_stems_and_hq_decode_identically(musdb_root, musdb_hq_root):
    mp4 = data.musdb_tracks(musdb_root, subset="test", split=None)
    wav = data.musdb_tracks(musdb_hq_root, subset="test", split=None, is_wav=True)
    folder = data.folder_tracks(musdb_hq_root, SOURCES, subset="test")
    assert [t.name for t in mp4] == [t.name for t in wav] == [t.name for t in folder] == [TRACK]
    a, rate = mp4[0].load()
    b, _ = wav[0].load()
    c, _ = folder[0].load()
    assert rate == 44100 and a.shape == (4, 268288, 2)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    # the pipeline's mixture (sum of the sources) is close to, not equal to, the MUSDB mixture
    mix, _ = sf.read(musdb_hq_root / "test" / TRACK / "mixture.wav", dtype="float32")
    snr = 10 * np.log10(np.sum(mix**2) / np.sum((a.sum(0) - mix) ** 2))
    assert 12 < snr < 20


def test_musdb_arguments_are_checked(musdb_root, tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        data.musdb_tracks(tmp_path / "nope")
    with pytest.raises(DatasetError, match="subset folder not found"):
        data.musdb_tracks(musdb_root, subset="train", split="train")
    with pytest.raises(DatasetError, match="divides the 'train' subset"):
        data.musdb_tracks(musdb_root, subset="test", split="valid")
    with pytest.raises(DatasetError, match="sources are"):
        data.musdb_tracks(musdb_root, subset="test", split=None, sources=["piano"])


def test_training_stream_on_real_track(musdb_hq_root):
    tracks = data.folder_tracks(musdb_hq_root, SOURCES, subset="test")
    ds = data.training_dataset(tracks, GROUPS, seq_duration=0.25, samples_per_track=4, batch_size=2,
                               augmentations=[], seed=3)
    x, y = next(iter(ds))
    assert x.shape == (2, 2, 11025) and set(y) == set(GROUPS)
    np.testing.assert_allclose(x.numpy(), (y["vocals"] + y["accompaniment"]).numpy(), atol=1e-6)
    # without augmentation every chunk is a verbatim excerpt of the decoded sources
    full, _ = tracks[0].load()
    voc = y["vocals"].numpy()[0, 0]
    hits = np.flatnonzero(np.isclose(full[3, :, 0], voc[0]))
    assert any(np.array_equal(full[3, h : h + voc.size, 0], voc) for h in hits)


# --- bad input --------------------------------------------------------------------------------


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DatasetError, match="dataset folder not found"):
        data.folder_tracks(tmp_path / "missing", SOURCES)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no tracks in .*expected one sub-folder per track"):
        data.folder_tracks(tmp_path / "empty", SOURCES)
    with pytest.raises(DatasetError, match="subset folder not found"):
        data.folder_tracks(tmp_path / "empty", SOURCES, subset="train")


def test_missing_stem_file_is_named(tmp_path):
    write_track(tmp_path, "a", SOURCES)
    write_track(tmp_path, "b", ["drums", "bass", "vocals"])
    with pytest.raises(DatasetError, match=r"track 'b': missing stem file\(s\) other\.<ext>.*found: \['bass.wav'"):
        data.folder_tracks(tmp_path, SOURCES)


def test_stems_with_different_rates(tmp_path):
    write_track(tmp_path, "a", ["vocals", "drums"], rates={"drums": 16000}, lengths={"drums": 8000})
    with pytest.raises(DatasetError, match=r"different sample rates \{'vocals': 8000, 'drums': 16000\}"):
        data.folder_tracks(tmp_path, ["vocals", "drums"])
    # documented handling: resample every stem to one rate
    tracks = data.folder_tracks(tmp_path, ["vocals", "drums"], sample_rate=8000)
    arr, rate = tracks[0].load()
    assert rate == 8000 and arr.shape == (2, 4000, 2)


def test_stems_with_different_lengths(tmp_path):
    write_track(tmp_path, "a", ["vocals", "drums"], lengths={"drums": 3000})
    tracks = data.folder_tracks(tmp_path, ["vocals", "drums"])
    with pytest.raises(DatasetError, match=r"different lengths \(samples\) \{'vocals': 4000, 'drums': 3000\}"):
        tracks[0].load()
    tracks = data.folder_tracks(tmp_path, ["vocals", "drums"], length_mismatch="crop")
    assert tracks[0].load()[0].shape == (2, 3000, 2)


def test_tracks_shorter_than_a_chunk(tmp_path):
    write_track(tmp_path, "long", ["vocals", "drums"], nb_timesteps=8000)
    write_track(tmp_path, "short", ["vocals", "drums"], nb_timesteps=2000)
    tracks = data.folder_tracks(tmp_path, ["vocals", "drums"])
    with pytest.raises(DatasetError, match=r"1 track\(s\) shorter than a chunk of 4000 samples .*'short': 2000"):
        data.training_dataset(tracks, ["vocals"], seq_duration=0.5, batch_size=1)
    with pytest.warns(UserWarning, match="skipping 1 track"):
        ds = data.training_dataset(tracks, ["vocals"], seq_duration=0.5, samples_per_track=2, batch_size=1,
                                   short_tracks="skip")
    assert all(x.shape == (1, 2, 4000) for x, _ in ds.take(3))
    ds = data.training_dataset(tracks, ["vocals", "drums"], seq_duration=0.5, samples_per_track=1, batch_size=2,
                               short_tracks="pad", augmentations=[])
    x, y = next(iter(ds))
    # one chunk of the short track is zero-padded after its 2000 samples
    tails = [np.abs(x.numpy()[i, :, 2000:]).max() for i in range(2)]
    assert min(tails) == 0.0 and max(tails) > 0.0
    with pytest.raises(DatasetError, match="not in the dataset's sources"):
        data.training_dataset(tracks, ["piano"], seq_duration=0.1)


# --- determinism, augmentations, mixing -------------------------------------------------------


def _batches(ds, n):
    return [(x.numpy(), {k: v.numpy() for k, v in y.items()}) for x, y in ds.take(n)]


@pytest.fixture
def synthetic(tmp_path):
    # 3 tracks; every source is a constant that encodes (track, source): 0.1*(t+1) + 0.01*(s+1)
    for t in range(3):
        write_track(tmp_path, f"t{t}", ["vocals", "drums", "bass"], nb_timesteps=3000,
                    values=[0.1 * (t + 1) + 0.01 * (s + 1) for s in range(3)])
    return data.folder_tracks(tmp_path, ["vocals", "drums", "bass"])


def test_stream_is_seeded_and_resumable(synthetic):
    kw = dict(seq_duration=0.05, samples_per_track=2, batch_size=2, augmentations=["gain", "channelswap", "signflip"],
              random_track_mix=True, max_shift=0.01)
    a = _batches(data.training_dataset(synthetic, ["vocals", "drums"], seed=7, **kw), 6)
    b = _batches(data.training_dataset(synthetic, ["vocals", "drums"], seed=7, **kw), 6)
    c = _batches(data.training_dataset(synthetic, ["vocals", "drums"], seed=8, **kw), 6)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya["vocals"], yb["vocals"])
    assert any(not np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))
    # 3 tracks x 2 samples / batch 2 = 3 steps per epoch; start_epoch=1 continues the stream
    assert data.steps_per_epoch(3, 2, 2) == 3
    resumed = _batches(data.training_dataset(synthetic, ["vocals", "drums"], seed=7, start_epoch=1, **kw), 3)
    for (xa, _), (xr, _) in zip(a[3:], resumed):
        np.testing.assert_array_equal(xa, xr)


def test_resume_when_the_batch_size_does_not_divide_an_epoch(synthetic):
    # 3 tracks x 1 sample / batch 2: 1 step (2 samples) per epoch; epoch e starts at sample 2e
    kw = dict(seq_duration=0.05, samples_per_track=1, batch_size=2, augmentations=["gain"], random_track_mix=True)
    a = _batches(data.training_dataset(synthetic, ["vocals"], seed=4, **kw), 5)
    resumed = _batches(data.training_dataset(synthetic, ["vocals"], seed=4, start_epoch=3, **kw), 2)
    for (xa, _), (xr, _) in zip(a[3:], resumed):
        np.testing.assert_array_equal(xa, xr)


def test_each_epoch_visits_every_track_samples_per_track_times(synthetic):
    ds = data.training_dataset(synthetic, ["vocals"], seq_duration=0.05, samples_per_track=2, batch_size=1,
                               augmentations=[], seed=1)
    seen = [round(float(y["vocals"][0, 0, 0]), 3) for _, y in ds.take(6)]
    assert sorted(seen) == [0.11, 0.11, 0.21, 0.21, 0.31, 0.31]


def test_augmentations(synthetic):
    ds = data.training_dataset(synthetic, ["vocals", "drums", "bass"], seq_duration=0.05, samples_per_track=20,
                               batch_size=60, augmentations=["gain", "signflip"], random_track_mix=True, seed=2)
    x, y = next(iter(ds))
    v = y["vocals"].numpy()[:, 0, 0]
    d = y["drums"].numpy()[:, 0, 0]
    # gains in [0.25, 1.25), signs flipped about half of the time
    base_v = np.array([0.11, 0.21, 0.31])
    ratios = np.abs(v)[:, None] / base_v[None, :]
    assert np.all(np.any((ratios >= 0.25 - 1e-6) & (ratios < 1.25 + 1e-6), axis=1))
    assert 0.2 < np.mean(v < 0) < 0.8
    assert x.shape == (60, 2, 400) and np.isfinite(d).all()
    from kerasep.data import augment
    import tensorflow as tf

    src = tf.constant(np.stack([np.tile([[1.0, -1.0]], (10, 1))] * 4).astype(np.float32))  # (4, 10, 2)
    swapped = augment.channel_swap(src, tf.constant([1, 2], tf.int64), p=1.0).numpy()
    np.testing.assert_array_equal(swapped[..., 0], -1.0)
    kept = augment.channel_swap(src, tf.constant([1, 2], tf.int64), p=0.0).numpy()
    np.testing.assert_array_equal(kept, src.numpy())
    ramp = tf.constant(np.tile(np.arange(20, dtype=np.float32)[None, :, None], (4, 1, 2)))
    shifted = augment.time_shift(ramp, tf.constant([3, 4], tf.int64), 15).numpy()
    assert shifted.shape == (4, 15, 2)
    offsets = shifted[:, 0, 0]
    assert np.all((offsets >= 0) & (offsets <= 5))
    np.testing.assert_array_equal(shifted[:, :, 0] - offsets[:, None], np.tile(np.arange(15), (4, 1)))
    with pytest.raises(ValueError, match="unknown augmentation"):
        augment.check(["reverb"])


@pytest.mark.parametrize("augmentations", [["gain", "channelswap", "signflip"], ["signflip", "gain"], ["channelswap"], []])
def test_drawn_augmentations_equal_the_tensor_ones(augmentations):
    # the pipeline applies augment.draw's (scale, swap) while copying chunks: the same draws and
    # bit for bit the same result as augment.apply on the chunk
    import tensorflow as tf
    from kerasep.data import augment

    x = tf.constant(np.random.default_rng(0).normal(size=(4, 500, 2)).astype(np.float32))
    for k in range(5):
        seed = tf.constant([7, k], tf.int64)
        expected = augment.apply(x, seed, augmentations).numpy()
        scale, swap = (v.numpy() for v in augment.draw(seed, 4, augmentations))
        got = np.where(swap[:, None, None], x.numpy()[:, :, ::-1], x.numpy()) * scale[:, None, None]
        np.testing.assert_array_equal(got, expected)
        if "gain" in augmentations:
            assert np.all((np.abs(scale) >= 0.25) & (np.abs(scale) < 1.25))


def test_random_track_mix_draws_sources_from_other_tracks(synthetic):
    ds = data.training_dataset(synthetic, ["vocals", "drums"], seq_duration=0.05, samples_per_track=20,
                               batch_size=60, augmentations=[], random_track_mix=True, seed=5)
    _, y = next(iter(ds))
    v_track = np.rint((y["vocals"].numpy()[:, 0, 0] - 0.01) * 10).astype(int)
    d_track = np.rint((y["drums"].numpy()[:, 0, 0] - 0.02) * 10).astype(int)
    assert set(v_track) == set(d_track) == {1, 2, 3}
    assert np.mean(v_track != d_track) > 0.3
    ds = data.training_dataset(synthetic, ["vocals", "drums"], seq_duration=0.05, samples_per_track=20,
                               batch_size=60, augmentations=[], random_track_mix=False, seed=5)
    _, y = next(iter(ds))
    v_track = np.rint((y["vocals"].numpy()[:, 0, 0] - 0.01) * 10).astype(int)
    d_track = np.rint((y["drums"].numpy()[:, 0, 0] - 0.02) * 10).astype(int)
    np.testing.assert_array_equal(v_track, d_track)


def test_validation_chunks_and_full_tracks(synthetic):
    ds = data.validation_dataset(synthetic, {"all": ["vocals", "drums", "bass"]}, seq_duration=0.125, batch_size=2)
    xs = [x.numpy() for x, _ in ds]
    assert sum(x.shape[0] for x in xs) == 9  # 3 chunks of 1000 samples per 3000-sample track
    full = data.validation_dataset(synthetic, ["vocals"], seq_duration=None)
    shapes = [x.shape for x, _ in full]
    assert shapes == [(1, 2, 3000)] * 3
    a = [x.numpy() for x, _ in ds]
    np.testing.assert_array_equal(np.concatenate(a), np.concatenate(xs))


def test_on_disk_cache(tmp_path, synthetic):
    cache = tmp_path / "cache"
    data.training_dataset(synthetic, ["vocals"], seq_duration=0.05, cache_dir=cache)
    files = sorted(cache.glob("*.npy"))
    assert len(files) == 3
    arr = np.load(files[0])
    assert arr.shape == (3, 3000, 2) and arr.dtype == np.float32
    c = data.TrackCache(cache)
    assert isinstance(c.get(synthetic[0]), np.memmap)


def test_tfio_probe_never_breaks_import():
    from kerasep.data import tfio

    ok, why = tfio.probe()
    assert isinstance(ok, bool) and why
    assert tfio.should_use("x.wav", "kerasep") is False
    if not ok:
        with pytest.raises(DatasetError, match="tensorflow-io does not load"):
            tfio.should_use("x.flac", "tfio")
