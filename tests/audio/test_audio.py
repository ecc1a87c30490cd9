"""Tests for kerasep.audio: decoding real files, validation, resampling and atomic saving."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from kerasep import audio as kaudio
from kerasep.audio import AudioError

from testing import MIXTURE_MONO_MP3, MIXTURE_MP3, REPO


needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="ffmpeg/ffprobe not on the PATH",
)


def corr(a, b) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))


def snr_db(reference, estimate) -> float:
    reference = np.asarray(reference, np.float64)
    noise = np.asarray(estimate, np.float64) - reference
    return float(10 * np.log10(np.sum(reference**2) / np.sum(noise**2)))


def dir_listing(directory: Path):
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture(scope="module")
def mixture_wav(musdb_hq_track):
    """The real MUSDB18-HQ mixture.wav."""
    return musdb_hq_track / "mixture.wav"


@pytest.fixture(scope="module")
def hq_mixture(mixture_wav):
    """MUSDB18-HQ mixture.wav as read by soundfile: (nb_timesteps, 2) float32."""
    audio, rate = soundfile.read(mixture_wav, dtype="float32")
    assert rate == 44100
    return audio


# --------------------------------------------------------------------------------------------
# Loading real files
# --------------------------------------------------------------------------------------------


def test_module_does_not_import_tensorflow():
    code = "import sys, kerasep.audio; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_load_stereo_mp3():
    path = MIXTURE_MP3
    audio = kaudio.load(path)
    assert audio.dtype == np.float32
    assert audio.ndim == 2 and audio.shape[1] == 2
    assert audio.flags.c_contiguous
    # 10.88 s at 44.1 kHz, as libsndfile reports it
    assert audio.shape[0] == soundfile.info(str(path)).frames
    assert abs(audio.shape[0] / 44100 - 10.88) < 0.05
    assert np.isfinite(audio).all()
    assert 0.05 < np.abs(audio).max() < 1.5  # MP3 decoding may overshoot 1.0 a little
    assert not np.array_equal(audio[:, 0], audio[:, 1])  # really stereo


def test_load_mono_mp3_duplicates_to_stereo():
    path = MIXTURE_MONO_MP3
    audio, rate = kaudio.load_with_rate(path)
    assert rate == 44100
    assert audio.shape[1] == 2 and audio.dtype == np.float32
    np.testing.assert_array_equal(audio[:, 0], audio[:, 1])
    assert np.abs(audio).max() > 0.05
    native = kaudio.load(path, nb_channels=None)
    assert native.shape == (audio.shape[0], 1)
    np.testing.assert_array_equal(native[:, 0], audio[:, 0])


def test_load_stereo_to_mono_averages(mixture_wav):
    path = mixture_wav
    stereo = kaudio.load(path)
    mono = kaudio.load(path, nb_channels=1)
    assert mono.shape == (stereo.shape[0], 1)
    np.testing.assert_allclose(mono[:, 0], stereo.mean(axis=1), atol=1e-7)


def test_load_wav_is_exact(hq_mixture, mixture_wav):
    audio = kaudio.load(mixture_wav)
    np.testing.assert_array_equal(audio, hq_mixture)


@needs_ffmpeg
def test_load_stem_mp4_takes_the_mixture_stream(hq_mixture, musdb_hq_track, musdb_stem_mp4):
    audio, rate = kaudio.load_with_rate(musdb_stem_mp4)
    assert rate == 44100 and audio.dtype == np.float32 and audio.shape[1] == 2
    assert abs(audio.shape[0] - hq_mixture.shape[0]) < 4096
    n = min(len(audio), len(hq_mixture))
    assert corr(audio[:n], hq_mixture[:n]) > 0.99
    # stream 0 is the mixture, not one of the four stems
    drums, _ = soundfile.read(musdb_hq_track / "drums.wav", dtype="float32")
    assert corr(audio[:n], drums[:n]) < 0.9


@pytest.mark.parametrize("which", ["mp3", "stem-mp4", "wav"])
def test_load_start_duration_is_a_slice_of_the_full_decode(which, musdb_stem_mp4, mixture_wav):
    if which == "stem-mp4" and shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not on the PATH")
    path = {"mp3": MIXTURE_MP3, "stem-mp4": musdb_stem_mp4, "wav": mixture_wav}[which]
    full = kaudio.load(path)
    part = kaudio.load(path, start=1.0, duration=0.5)
    assert part.shape == (22050, 2)
    np.testing.assert_allclose(part, full[44100 : 44100 + 22050], atol=1e-6)
    tail = kaudio.load(path, start=5.0, duration=100.0)  # past the end: what there is
    np.testing.assert_allclose(tail, full[5 * 44100 :], atol=1e-6)


def test_load_start_past_the_end_is_an_error(mixture_wav):
    path = mixture_wav
    with pytest.raises(AudioError, match="no audio samples after start=60"):
        kaudio.load(path, start=60.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sample_rate": 0},
        {"sample_rate": 44100.5},
        {"nb_channels": 3},
        {"start": -1.0},
        {"start": float("nan")},
        {"duration": 0.0},
    ],
)
def test_load_rejects_bad_arguments(kwargs, mixture_wav):
    with pytest.raises(AudioError):
        kaudio.load(mixture_wav, **kwargs)


def test_load_at_22050_gives_the_right_length():
    path = MIXTURE_MP3
    full, full_rate = kaudio.load_with_rate(path, sample_rate=None)
    assert full_rate == 44100
    half, rate = kaudio.load_with_rate(path, sample_rate=22050)
    assert rate == 22050 and half.dtype == np.float32
    assert half.shape == ((full.shape[0] + 1) // 2, 2)
    np.testing.assert_allclose(half, kaudio.resample(full, 44100, 22050), atol=1e-6)
    assert kaudio.load(path, sample_rate=48000).shape[0] == -(-full.shape[0] * 160 // 147)


def test_info_real_files(mixture_wav, musdb_stem_mp4):
    meta = kaudio.info(mixture_wav)
    assert meta["sample_rate"] == 44100 and meta["nb_channels"] == 2
    assert meta["nb_timesteps"] == soundfile.info(str(mixture_wav)).frames
    assert kaudio.info(MIXTURE_MONO_MP3)["nb_channels"] == 1
    if shutil.which("ffprobe"):
        stem = kaudio.info(musdb_stem_mp4)
        assert stem["sample_rate"] == 44100 and stem["nb_channels"] == 2
        assert abs(stem["duration"] - 6.08) < 0.05


# --------------------------------------------------------------------------------------------
# Resampling
# --------------------------------------------------------------------------------------------


def test_resample_round_trip_of_real_audio(hq_mixture):
    from scipy.signal import butter, sosfiltfilt

    excerpt = hq_mixture[44100 : 3 * 44100]
    down = kaudio.resample(excerpt, 44100, 22050)
    assert down.shape == (44100, 2) and down.dtype == np.float32
    back = kaudio.resample(down, 22050, 44100)
    assert back.shape == excerpt.shape and back.dtype == np.float32

    # energy is kept (up to what lived above the 11.025 kHz Nyquist frequency)
    energy_ratio = np.sum(back.astype(np.float64) ** 2) / np.sum(excerpt.astype(np.float64) ** 2)
    assert 0.9 < energy_ratio <= 1.01

    # the band below the new Nyquist frequency survives the round trip
    sos = butter(12, 9000, fs=44100, output="sos")
    ref = sosfiltfilt(sos, excerpt, axis=0)[2048:-2048]
    est = sosfiltfilt(sos, back, axis=0)[2048:-2048]
    assert snr_db(ref, est) > 30


def test_resample_is_band_limited():
    rate = 44100
    t = np.arange(rate) / rate
    low = np.sin(2 * np.pi * 1000 * t).astype(np.float32)[:, None]
    high = np.sin(2 * np.pi * 15000 * t).astype(np.float32)[:, None]  # above 11025 Hz
    low_down = kaudio.resample(low, rate, 22050)
    high_down = kaudio.resample(high, rate, 22050)
    core = slice(1000, -1000)
    assert np.sqrt(np.mean(low_down[core] ** 2)) == pytest.approx(np.sqrt(0.5), rel=0.01)
    # aliased to 7050 Hz if not filtered; the anti-aliasing filter removes it
    assert np.sqrt(np.mean(high_down[core] ** 2)) < 0.01


def test_resample_shapes_and_arguments():
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    assert kaudio.resample(x, 44100, 48000).shape == (-(-1000 * 160 // 147),)
    same = kaudio.resample(x[:, None], 44100, 44100)
    np.testing.assert_array_equal(same[:, 0], x)
    assert same is not x
    assert kaudio.resample(np.zeros((0, 2), np.float32), 44100, 22050).shape == (0, 2)
    for bad in (0, -44100, 44100.5, "44100x"):
        with pytest.raises(AudioError, match="positive integer"):
            kaudio.resample(x, bad, 22050)
    with pytest.raises(AudioError):
        kaudio.resample(np.zeros((2, 3, 4), np.float32), 44100, 22050)


# --------------------------------------------------------------------------------------------
# Channels and in-memory validation
# --------------------------------------------------------------------------------------------


def test_six_channel_file_needs_downmix(tmp_path):
    path = tmp_path / "surround.wav"
    data = np.random.default_rng(1).uniform(-0.5, 0.5, (4410, 6)).astype(np.float32)
    soundfile.write(path, data, 44100, subtype="FLOAT")
    with pytest.raises(AudioError, match="channels") as err:
        kaudio.load(path)
    assert str(path) in str(err.value)
    assert "found 6" in str(err.value) and "downmix=True" in str(err.value)
    mixed = kaudio.load(path, downmix=True)
    assert mixed.shape == (4410, 2)
    np.testing.assert_allclose(mixed[:, 0], data.mean(axis=1), atol=1e-6)
    np.testing.assert_array_equal(mixed[:, 0], mixed[:, 1])
    assert kaudio.load(path, downmix=True, nb_channels=1).shape == (4410, 1)


def test_check_audio_accepts_and_adapts():
    mono = np.linspace(-1, 1, 100)
    out = kaudio.check_audio(mono)
    assert out.shape == (100, 1) and out.dtype == np.float32
    stereo = kaudio.check_audio(mono, nb_channels=2)
    assert stereo.shape == (100, 2)
    np.testing.assert_array_equal(stereo[:, 0], stereo[:, 1])
    both = np.stack([mono, -mono], axis=1)
    assert kaudio.check_audio(both).shape == (100, 2)
    assert kaudio.check_audio(both, nb_channels=1).shape == (100, 1)
    six = np.ones((50, 6), np.float32)
    assert kaudio.check_audio(six, downmix=True).shape == (50, 2)
    assert kaudio.check_audio([[0.0, 0.5]]).shape == (1, 2)


@pytest.mark.parametrize(
    "array, pattern",
    [
        (np.zeros((2, 1000), np.float32), r"\.T"),
        (np.zeros((1, 1000), np.float32), r"\.T"),
        (np.zeros((6, 1000), np.float32), r"\.T"),
        (np.zeros((100, 6), np.float32), "found 6"),
        (np.zeros((0, 2), np.float32), "0 timesteps"),
        (np.zeros(0, np.float32), "0 timesteps"),
        (np.zeros((4, 4, 2), np.float32), "3 dimensions"),
        (np.zeros((100, 2), np.int16), "int16"),
        (np.zeros((100, 2), np.complex64), "complex64"),
        (np.array([[0.0, 1.0], [np.nan, 0.0], [np.inf, np.nan]]), "3 non-finite"),
    ],
)
def test_check_audio_rejects(array, pattern):
    with pytest.raises(AudioError, match=pattern) as err:
        kaudio.check_audio(array, name="my_array")
    assert str(err.value).startswith("my_array: ")


def test_check_audio_reports_first_bad_sample():
    x = np.zeros((1000, 2), np.float32)
    x[700, 1] = np.nan
    x[900, 0] = -np.inf
    pattern = r"2 non-finite \(1 NaN, 1 inf\).*timestep 700.*channel 1"
    with pytest.raises(AudioError, match=pattern):
        kaudio.check_audio(x)


# --------------------------------------------------------------------------------------------
# Broken inputs
# --------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match="no such file") as err:
        kaudio.load(path)
    assert str(path) in str(err.value)
    with pytest.raises(AudioError, match="no such file"):
        kaudio.info(path)
    with pytest.raises(AudioError, match="directory"):
        kaudio.load(tmp_path)


@pytest.mark.parametrize("name", ["empty.wav", "empty.mp3", "empty.m4a"])
def test_empty_file(tmp_path, name):
    path = tmp_path / name
    path.touch()
    with pytest.raises(AudioError, match="empty") as err:
        kaudio.load(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("name", ["noise.wav", "noise.mp3", "noise.flac", "noise.m4a"])
def test_random_bytes_are_undecodable(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(AudioError, match="could not decode") as err:
        kaudio.load(path)
    assert str(path) in str(err.value)
    with pytest.raises(AudioError):
        kaudio.info(path)


def test_zero_sample_wav(tmp_path):
    path = tmp_path / "silence.wav"
    soundfile.write(path, np.zeros((0, 2), np.float32), 44100)
    assert path.stat().st_size > 0
    with pytest.raises(AudioError, match="no audio samples") as err:
        kaudio.load(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_float_wav(tmp_path, bad):
    path = tmp_path / "broken.wav"
    data = np.zeros((44100, 2), np.float32)
    data[22050, 1] = bad
    data[30000:30010, 0] = bad
    soundfile.write(path, data, 44100, subtype="FLOAT")
    with pytest.raises(AudioError, match="11 non-finite") as err:
        kaudio.load(path)
    message = str(err.value)
    assert str(path) in message
    assert "timestep 22050" in message and "t=0.500 s" in message


def test_missing_ffmpeg_is_reported(tmp_path, monkeypatch, mixture_wav):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF" + bytes(100))
    stem = tmp_path / "song.m4a"
    stem.write_bytes(b"\x00" * 100)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(AudioError, match="ffmpeg") as err:
        kaudio.load(stem)
    assert str(stem) in str(err.value) and "not found" in str(err.value)
    with pytest.raises(AudioError, match="ffmpeg.*not found") as err:
        kaudio.load(corrupt)
    assert str(corrupt) in str(err.value)
    # formats soundfile reads need no ffmpeg
    assert kaudio.load(mixture_wav).shape[1] == 2


@needs_ffmpeg
def test_ffmpeg_fallback_when_soundfile_fails(tmp_path, monkeypatch, mixture_wav):
    path = mixture_wav
    expected = kaudio.load(path)

    def refuse(*args, **kwargs):
        raise soundfile.LibsndfileError(0, "Error opening file: ")

    monkeypatch.setattr(soundfile, "SoundFile", refuse)
    np.testing.assert_array_equal(kaudio.load(path), expected)


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ext, subtype, step",
    [
        (".wav", None, 2.0**-15),
        (".wav", "PCM_16", 2.0**-15),
        (".wav", "PCM_24", 2.0**-23),
        (".wav", "FLOAT", 0.0),
        (".flac", None, 2.0**-15),
        (".flac", "PCM_24", 2.0**-23),
    ],
)
def test_save_load_round_trip(tmp_path, hq_mixture, ext, subtype, step):
    rng = np.random.default_rng(2)
    data = np.concatenate(
        [hq_mixture[:44100], rng.uniform(-1, 1, (4410, 2)).astype(np.float32)], axis=0
    )
    path = tmp_path / f"out{ext}"
    returned = kaudio.save(path, data, 44100, subtype=subtype)
    assert returned == str(path)
    meta = soundfile.info(str(path))
    assert meta.subtype == (subtype or "PCM_16")
    assert meta.format == ext[1:].upper()
    assert meta.samplerate == 44100 and meta.channels == 2
    back = kaudio.load(path)
    assert back.shape == data.shape
    assert np.max(np.abs(back - data)) <= step * 1.0001
    assert dir_listing(tmp_path) == [path.name]


def test_save_mono_other_rate_and_parent_dirs(tmp_path):
    data = 0.5 * np.sin(np.linspace(0, 100, 8000)).astype(np.float32)
    path = tmp_path / "a" / "b" / "mono.flac"
    kaudio.save(path, data, sample_rate=8000)
    back, rate = kaudio.load_with_rate(path, sample_rate=None, nb_channels=None)
    assert rate == 8000 and back.shape == (8000, 1)
    assert np.max(np.abs(back[:, 0] - data)) <= 2.0**-15


def test_save_clips_pcm_but_not_float(tmp_path):
    data = np.array([[0.0, 1.5], [-2.0, 0.25]] * 10, np.float32)
    with pytest.warns(UserWarning, match="clipping 20 samples"):
        kaudio.save(tmp_path / "pcm.wav", data)
    back = kaudio.load(tmp_path / "pcm.wav")
    assert back.max() <= 1.0 and back.min() >= -1.0
    assert back[0, 1] > 0.999 and back[1, 0] == -1.0
    kaudio.save(tmp_path / "float.wav", data, subtype="float")
    np.testing.assert_array_equal(kaudio.load(tmp_path / "float.wav"), data)


def test_save_refuses_to_overwrite(tmp_path):
    path = tmp_path / "existing.wav"
    path.write_bytes(b"original bytes")
    data = np.zeros((100, 2), np.float32)
    with pytest.raises(AudioError, match="--overwrite") as err:
        kaudio.save(path, data)
    assert str(path) in str(err.value) and "overwrite=True" in str(err.value)
    assert path.read_bytes() == b"original bytes"
    assert dir_listing(tmp_path) == ["existing.wav"]
    kaudio.save(path, data, overwrite=True)
    assert kaudio.load(path).shape == (100, 2)
    assert dir_listing(tmp_path) == ["existing.wav"]


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_save_non_finite_writes_nothing(tmp_path, bad):
    data = np.zeros((100, 2), np.float32)
    data[10, 0] = bad
    path = tmp_path / "sub" / "out.wav"
    with pytest.raises(AudioError, match="non-finite") as err:
        kaudio.save(path, data)
    assert str(path) in str(err.value)
    assert dir_listing(tmp_path) == []  # not even the parent directory


def test_save_rejects_bad_audio_without_touching_existing(tmp_path):
    path = tmp_path / "keep.wav"
    path.write_bytes(b"keep me")
    for bad in (np.zeros((2, 1000), np.float32), np.zeros((0, 2), np.float32)):
        with pytest.raises(AudioError):
            kaudio.save(path, bad, overwrite=True)
    assert path.read_bytes() == b"keep me"
    assert dir_listing(tmp_path) == ["keep.wav"]


@pytest.mark.parametrize("name", ["out.m4a", "out.aiff", "out"])
def test_save_unsupported_extension(tmp_path, name):
    with pytest.raises(AudioError, match=r"supported extensions are \.flac, \.mp3, \.ogg, \.wav"):
        kaudio.save(tmp_path / name, np.zeros((10, 2), np.float32))
    assert dir_listing(tmp_path) == []


def _bitrate(path):
    import json
    import subprocess

    proc = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=bit_rate", "-of", "json", str(path)],
                          capture_output=True, text=True, check=True)
    return int(json.loads(proc.stdout)["format"]["bit_rate"])


@pytest.mark.parametrize("kbps", [320, 192, 128, 64])
def test_save_mp3_exact_constant_bitrate(tmp_path, real_mixture, kbps):
    """--bitrate maps to libsndfile's compression level so that LAME writes exactly that CBR."""
    path = kaudio.save(tmp_path / "out.mp3", real_mixture, 44100, bitrate=f"{kbps}k")
    assert abs(_bitrate(path) - kbps * 1000) < 0.02 * kbps * 1000
    y, sr = soundfile.read(path, dtype="float32")
    assert sr == 44100 and y.shape[1] == 2 and abs(len(y) - len(real_mixture)) < 4096
    assert dir_listing(tmp_path) == ["out.mp3"]


def test_save_ogg_quality_and_refused_encoder_settings(tmp_path, real_mixture):
    low = kaudio.save(tmp_path / "low.ogg", real_mixture, 44100, quality=0.1)
    high = kaudio.save(tmp_path / "high.ogg", real_mixture, 44100, quality=0.9)
    assert os.path.getsize(high) > 1.5 * os.path.getsize(low)
    assert soundfile.info(high).format == "OGG" and soundfile.info(high).subtype == "VORBIS"
    vbr = kaudio.save(tmp_path / "vbr.mp3", real_mixture, 44100, quality=0.5)
    assert soundfile.info(vbr).format == "MP3"
    with pytest.raises(AudioError, match="--bitrate: Ogg Vorbis .* variable bitrate only.*--quality"):
        kaudio.save(tmp_path / "x.ogg", real_mixture, 44100, bitrate="128k")
    with pytest.raises(AudioError, match="--bitrate applies to --format mp3 or ogg only"):
        kaudio.save(tmp_path / "x.wav", real_mixture, 44100, bitrate="128k")
    with pytest.raises(AudioError, match="--bitrate: expected one of the MP3 bitrates"):
        kaudio.save(tmp_path / "x.mp3", real_mixture, 44100, bitrate="100k")
    with pytest.raises(AudioError, match=r"--quality: expected a number in \[0, 1\]"):
        kaudio.save(tmp_path / "x.mp3", real_mixture, 44100, quality=2)
    assert dir_listing(tmp_path) == ["high.ogg", "low.ogg", "vbr.mp3"]


def test_save_blocks_mp3_atomic_and_umask(tmp_path, real_mixture):
    old = os.umask(0o022)
    try:
        def blocks():
            yield real_mixture[:44100]
            raise AudioError("boom")

        with pytest.raises(AudioError, match="boom"):
            kaudio.save_blocks(tmp_path / "a.mp3", blocks(), 44100, 2)
        assert dir_listing(tmp_path) == []
        path = kaudio.save_blocks(tmp_path / "a.mp3", iter([real_mixture[:44100], real_mixture[44100:]]), 44100, 2,
                                  bitrate=192)
        assert os.stat(path).st_mode & 0o777 == 0o644
        os.umask(0o027)
        path = kaudio.save(tmp_path / "b.wav", real_mixture, 44100)
        assert os.stat(path).st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_save_unsupported_subtype(tmp_path):
    with pytest.raises(AudioError, match="PCM_16, PCM_24"):
        kaudio.save(tmp_path / "out.flac", np.zeros((10, 2), np.float32), subtype="FLOAT")
    with pytest.raises(AudioError, match="sample_rate"):
        kaudio.save(tmp_path / "out.wav", np.zeros((10, 2), np.float32), sample_rate=0)
    assert dir_listing(tmp_path) == []


def _failing_write(calls):
    """A soundfile.write stand-in that writes a partial file, then fails."""

    def write(file, data, samplerate, *args, **kwargs):
        calls.append(os.fspath(file))
        with open(file, "wb") as f:
            f.write(b"RIFF\x00\x00partial")
        raise RuntimeError("disk full (simulated)")

    return write


def test_save_failure_mid_write_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(soundfile, "write", _failing_write(calls))
    path = tmp_path / "out.wav"
    with pytest.raises(AudioError, match="disk full"):
        kaudio.save(path, np.zeros((100, 2), np.float32))
    # it wrote to a hidden temporary file beside the target, never to the target itself
    assert len(calls) == 1
    tmp = Path(calls[0])
    assert tmp.parent == tmp_path and tmp.name.startswith(".out.wav.") and tmp.suffix == ".tmp"
    assert dir_listing(tmp_path) == []


def test_save_failure_mid_write_preserves_existing(tmp_path, monkeypatch):
    path = tmp_path / "out.wav"
    kaudio.save(path, np.full((100, 2), 0.25, np.float32))
    original = path.read_bytes()
    monkeypatch.setattr(soundfile, "write", _failing_write([]))
    with pytest.raises(AudioError, match="disk full"):
        kaudio.save(path, np.zeros((100, 2), np.float32), overwrite=True)
    assert path.read_bytes() == original
    assert dir_listing(tmp_path) == ["out.wav"]


def test_save_interrupted_cleans_up(tmp_path, monkeypatch):
    def interrupted(file, *args, **kwargs):
        Path(file).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(soundfile, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        kaudio.save(tmp_path / "out.flac", np.zeros((100, 2), np.float32))
    assert dir_listing(tmp_path) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_saved_file_gets_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        kaudio.save(tmp_path / "out.wav", np.zeros((10, 2), np.float32))
    finally:
        os.umask(umask)
    assert (tmp_path / "out.wav").stat().st_mode & 0o777 == 0o644
