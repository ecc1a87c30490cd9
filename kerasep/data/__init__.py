"""Training data: MUSDB18 and stem folders as ``tf.data`` pipelines.

>>> from kerasep import data
>>> tracks = data.musdb_tracks("musdb18", subset="train", split="train")   # doctest: +SKIP
>>> ds = data.training_dataset(tracks, {"vocals": ["vocals"],
...                                     "accompaniment": ["drums", "bass", "other"]},
...                            seq_duration=6.0, batch_size=16)            # doctest: +SKIP

See :mod:`kerasep.data.dataset` for the determinism/resume contract and the handling of bad
input, :mod:`kerasep.data.augment` for the augmentations and :mod:`kerasep.data.tfio` for the
optional tensorflow-io decoder.
"""
from kerasep.data.folders import folder_tracks
from kerasep.data.musdb import MUSDB_SOURCES, musdb_tracks
from kerasep.data.tracks import DatasetError, Track, TrackCache

__all__ = [
    "DatasetError",
    "Track",
    "TrackCache",
    "folder_tracks",
    "musdb_tracks",
    "MUSDB_SOURCES",
    "training_dataset",
    "validation_dataset",
    "steps_per_epoch",
    "normalize_targets",
]


def __getattr__(name):
    # The tf.data builders import TensorFlow; keep listing tracks TensorFlow-free.
    if name in ("training_dataset", "validation_dataset", "steps_per_epoch", "normalize_targets"):
        from kerasep.data import dataset

        return getattr(dataset, name)
    if name in ("augment", "dataset", "tfio"):
        import importlib

        return importlib.import_module(f"kerasep.data.{name}")
    raise AttributeError(f"module 'kerasep.data' has no attribute {name!r}")
