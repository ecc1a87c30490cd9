"""kerasep.separate on arrays: bad input is refused, other sample rates are resampled."""
import numpy as np
import pytest

from kerasep import audio

from testing import MIXTURE_MP3


def test_api_rejects_bad_arrays(unet_2stems):
    import kerasep

    with pytest.raises(audio.AudioError, match="non-finite|NaN"):
        kerasep.separate(np.full((1000, 2), np.nan, np.float32), unet_2stems)
    with pytest.raises(audio.AudioError, match="channels"):
        kerasep.separate(np.zeros((1000, 3), np.float32), unet_2stems)
    with pytest.raises(audio.AudioError):
        kerasep.separate(np.zeros((0, 2), np.float32), unet_2stems)


def test_api_resamples_arrays_at_other_rates(unet_2stems):
    import kerasep

    x = audio.load(MIXTURE_MP3, sample_rate=22050)[: 22050 * 3]
    stems = kerasep.separate(x, unet_2stems, sample_rate=22050)
    assert stems["vocals"].shape == x.shape
    total = stems["vocals"] + stems["accompaniment"]
    assert np.corrcoef(total[:, 0], x[:, 0])[0, 1] > 0.99


def test_truncated_file_refused_unless_allowed(tmp_path):
    """A file cut in half: kerasep.separate names both lengths and the keyword that accepts it."""
    import kerasep
    from testing import tiny_unet

    cut = tmp_path / "cut.mp3"
    data = MIXTURE_MP3.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    model = tiny_unet()
    with pytest.raises(audio.AudioError, match="allow_truncated=True"):
        kerasep.separate(cut, model)
    stems = kerasep.separate(cut, model, allow_truncated=True)
    full = audio.load(MIXTURE_MP3)
    assert set(stems) == set(model.stems)
    assert 0 < stems["vocals"].shape[0] < 0.75 * full.shape[0]
