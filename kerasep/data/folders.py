"""Tracks from a plain folder: one sub-folder per track, one audio file per stem.

Layout (MUSDB18-HQ uses it too)::

    root/[subset/]<track name>/<source>.<ext>     e.g. root/train/Song A/vocals.wav

The stem names are given by the user (``sources=["vocals", "drums", ...]``); any extension
:mod:`kerasep.audio` decodes is accepted (``ext`` restricts it). Files that are not stems are
ignored.

Checks, before anything is decoded (each raises :class:`~kerasep.data.tracks.DatasetError`
naming the track, the expected and the found values):

- the folder exists and holds at least one track folder;
- every track has every stem (a missing stem names the expected file and lists what is there);
- all stems of a track share one sample rate (or pass ``sample_rate=`` to resample them all);
- decoded stems have equal lengths (``length_mismatch="crop"`` cuts them to the shortest).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

from kerasep import audio as _audio
from kerasep.data.tracks import DatasetError, Track, check_stems, file_key

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".mp4", ".aac", ".aiff", ".aif")


def _find_stem(folder: Path, source: str, ext: Optional[str]):
    exts = [ext if ext.startswith(".") else "." + ext] if ext else AUDIO_EXTENSIONS
    for e in exts:
        p = folder / f"{source}{e}"
        if p.is_file():
            return p
    return None


def folder_tracks(
    root,
    sources: Sequence[str],
    subset: Optional[str] = None,
    ext: Optional[str] = None,
    sample_rate: Optional[int] = None,
    nb_channels: int = 2,
    length_mismatch: str = "error",
    decoder: str = "auto",
) -> List[Track]:
    """List and validate the tracks of a stem folder.

    Args:
        root: dataset folder.
        sources: stem file names without extension (at least one).
        subset: optional sub-folder of ``root`` (``"train"``, ``"test"``, ...).
        ext: only accept this extension (e.g. ``"wav"``); default any audio extension.
        sample_rate: resample every stem to this rate (Hz); default keep the files' rate, which
            must then be the same for all stems of a track.
        nb_channels: channels returned per stem (mono files are duplicated to stereo).
        length_mismatch: ``"error"`` or ``"crop"`` (see module docstring).
        decoder: ``"auto"`` (tensorflow-io in-graph decoding where it loads and the format is
            one it reads, else :mod:`kerasep.audio`), ``"tfio"`` (require it) or ``"kerasep"``.

    Returns:
        a list of :class:`~kerasep.data.tracks.Track`, sorted by name.
    """
    sources = list(sources)
    if not sources or len(set(sources)) != len(sources):
        raise DatasetError(f"`sources` must be distinct stem names (at least one). Received: {sources}")
    if length_mismatch not in ("error", "crop"):
        raise DatasetError(f"length_mismatch must be 'error' or 'crop'. Received: {length_mismatch!r}")
    if decoder not in ("auto", "tfio", "kerasep"):
        raise DatasetError(f"decoder must be 'auto', 'tfio' or 'kerasep'. Received: {decoder!r}")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DatasetError(f"dataset folder not found: {base}")
    folder = base / subset if subset else base
    if not folder.is_dir():
        found = sorted(p.name for p in base.iterdir() if p.is_dir())
        raise DatasetError(f"subset folder not found: {folder} (sub-folders of {base}: {found})")
    track_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not track_dirs:
        raise DatasetError(
            f"no tracks in {folder}: expected one sub-folder per track holding "
            f"{', '.join(s + '.<ext>' for s in sources)}; found no sub-folders"
        )
    tracks = []
    for d in track_dirs:
        paths = {s: _find_stem(d, s, ext) for s in sources}
        missing = [s for s, p in paths.items() if p is None]
        if missing:
            there = sorted(p.name for p in d.iterdir())
            want = ", ".join(f"{s}{'.' + ext.lstrip('.') if ext else '.<ext>'}" for s in missing)
            raise DatasetError(f"track {d.name!r}: missing stem file(s) {want} in {d} (found: {there})")
        infos = {s: _audio.info(p) for s, p in paths.items()}
        rates = {s: i["sample_rate"] for s, i in infos.items()}
        if sample_rate is None and len(set(rates.values())) > 1:
            raise DatasetError(
                f"track {d.name!r}: stems have different sample rates {rates}; expected one rate "
                "(pass sample_rate=... to resample every stem to it)"
            )
        rate = int(sample_rate or next(iter(rates.values())))
        lengths = {s: i["nb_timesteps"] for s, i in infos.items()}
        known = None if any(v is None for v in lengths.values()) or sample_rate else min(lengths.values())
        key = "|".join(file_key(p) for p in paths.values()) + f"|{nb_channels}|{length_mismatch}"
        tracks.append(
            Track(
                d.name,
                sources,
                _make_loader(d.name, paths, sample_rate, nb_channels, length_mismatch, decoder),
                rate,
                key,
                nb_timesteps=known,
            )
        )
    return tracks


def _make_loader(name, paths, sample_rate, nb_channels, length_mismatch, decoder):
    def load():
        from kerasep.data import tfio

        arrays, rates = [], set()
        for s, p in paths.items():
            if tfio.should_use(p, decoder):
                a, r = tfio.decode(p, sample_rate=sample_rate, nb_channels=nb_channels)
            else:
                a, r = _audio.load_with_rate(p, sample_rate=sample_rate, nb_channels=nb_channels)
            arrays.append(a)
            rates.add(r)
        if len(rates) > 1:
            raise DatasetError(f"track {name!r}: stems decoded at different rates {sorted(rates)}")
        return check_stems(name, arrays, list(paths), length_mismatch), rates.pop()

    return load
