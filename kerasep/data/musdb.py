"""MUSDB18 tracks through the ``musdb`` package (stems ``.mp4`` or the HQ WAV folders).

``musdb_tracks(root, subset="train", split="train")`` lists the official training tracks
(``split="valid"``: the 14 official validation tracks; ``split=None``: the whole subset);
``is_wav=True`` reads MUSDB18-HQ. Sources are MUSDB's ``drums``, ``bass``, ``other``,
``vocals``; the pipeline builds the mixture as their sum, as Open-Unmix's training does (so
augmented and re-mixed sources stay consistent with their mixture), and any grouped target
(``accompaniment = drums + bass + other``). MUSDB's own mixture files are close to that sum but
not equal to it (15.4 dB SNR on the fixture track); evaluation uses the real mixture.

The ``musdb`` package needs ``ffmpeg``/``ffprobe`` on the PATH, even for WAV folders.

Note on the real fixture in ``../shared/data``: it holds a single 6 s *test* track, so tests
and examples use ``subset="test", split=None`` for both training and validation.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from kerasep.data.tracks import DatasetError, Track, check_stems, file_key

MUSDB_SOURCES = ("drums", "bass", "other", "vocals")
SUBSETS = ("train", "test")
SPLITS = ("train", "valid")


def _db(root, subset, split, is_wav):
    try:
        import musdb
    except ImportError:  # pragma: no cover - extra not installed
        raise ImportError("MUSDB18 needs the `musdb` package: pip install 'kerasep[musdb]'") from None
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DatasetError(f"MUSDB18 folder not found: {base}")
    if subset not in SUBSETS:
        raise DatasetError(f"subset must be one of {SUBSETS}. Received: {subset!r}")
    if split is not None and split not in SPLITS:
        raise DatasetError(f"split must be one of {SPLITS} or None. Received: {split!r}")
    if split is not None and subset != "train":
        raise DatasetError(f"split={split!r} divides the 'train' subset only; use split=None with subset={subset!r}")
    if not (base / subset).is_dir():
        found = sorted(p.name for p in base.iterdir())
        raise DatasetError(f"MUSDB18 subset folder not found: {base / subset} (found in {base}: {found})")
    return musdb.DB(root=str(base), subsets=subset, split=split, is_wav=is_wav)


def musdb_tracks(
    root,
    subset: str = "train",
    split: Optional[str] = "train",
    is_wav: bool = False,
    sources: Sequence[str] = MUSDB_SOURCES,
    sample_rate: Optional[int] = None,
) -> List[Track]:
    """MUSDB18 tracks as :class:`~kerasep.data.tracks.Track` objects.

    Args:
        root: folder with ``train/`` and/or ``test/``.
        subset: ``"train"`` or ``"test"``.
        split: ``"train"``/``"valid"`` (official split of the train subset) or ``None``.
        is_wav: MUSDB18-HQ layout (``<track>/<source>.wav``) instead of ``.stem.mp4`` files.
        sources: which of ``drums``, ``bass``, ``other``, ``vocals`` to decode.
        sample_rate: resample to this rate (default MUSDB's 44100 Hz).
    """
    sources = list(sources)
    bad = [s for s in sources if s not in MUSDB_SOURCES]
    if bad or not sources:
        raise DatasetError(f"MUSDB18 sources are {list(MUSDB_SOURCES)}. Received: {sources}")
    db = _db(root, subset, split, is_wav)
    if not db.tracks:
        where = Path(root) / subset
        raise DatasetError(
            f"no MUSDB18 tracks in {where} (split={split!r}, is_wav={is_wav}): expected "
            + ("<track>/{mixture,drums,bass,other,vocals}.wav folders" if is_wav else "<track>.stem.mp4 files")
        )
    tracks = []
    for t in db.tracks:
        paths = [t.path] if not is_wav else [os.path.join(os.path.dirname(t.path), f"{s}.wav") for s in sources]
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise DatasetError(f"track {t.name!r}: missing stem file(s) {missing}")
        key = "|".join(file_key(p) for p in paths) + f"|musdb|{sample_rate}"
        tracks.append(Track(t.name, sources, _loader(t, sources, sample_rate), sample_rate or t.rate, key))
    return tracks


def _loader(track, sources, sample_rate):
    def load():
        from kerasep import audio as _audio

        if not track.is_wav:
            stems = np.asarray(track.stems, dtype=np.float32)  # one ffmpeg call: (5, n, 2)
            ids = {name: src.stem_id for name, src in track.sources.items()}
            arrays = [stems[ids[s]] for s in sources]
        else:
            arrays = [np.asarray(track.sources[s].audio, dtype=np.float32) for s in sources]
        rate = int(track.rate)
        if sample_rate is not None and sample_rate != rate:
            arrays = [_audio.resample(a, rate, sample_rate) for a in arrays]
            rate = int(sample_rate)
        return check_stems(track.name, arrays, sources, "error"), rate

    return load
