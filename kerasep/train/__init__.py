"""Training driver: a JSON config → model, ``tf.data`` pipelines, callbacks, ``model.fit``.

Used by ``kerasep train CONFIG --data PATH`` and the recipes in ``zoo/<model>/train.py``.

Config (every key optional except ``model``; see ``zoo/unet-2stems/train_config.json``)::

    {
      "model": {"family": "unet", "config": {...}},        # or "model": "unet-2stems" (zoo
                                                           # name: its architecture, untrained)
      "data": {
        "source": "musdb" | "folder",
        "is_wav": false,                                   # musdb: MUSDB18-HQ
        "sources": ["drums", "bass", "other", "vocals"],   # folder: stem file names
        "targets": {"vocals": ["vocals"], "accompaniment": ["drums", "bass", "other"]},
        "train": {"subset": "train", "split": "train"},    # musdb subset/split, folder subset
        "valid": {"subset": "train", "split": "valid"},
        "seq_duration": 6.0, "samples_per_track": 64, "batch_size": 16,
        "augmentations": ["gain", "channelswap"], "max_shift": 0.0, "random_track_mix": true,
        "valid_seq_duration": null,                        # null: whole tracks
        "cache_dir": null, "short_tracks": "error"
      },
      "training": {
        "epochs": 100, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "clipnorm": null,
        "domain": "spectrogram" | "waveform",             # what model.fit trains (below)
        "loss": "spectrogram_l1", "loss_args": {},
        "patience": 20, "lr_decay_patience": 10, "lr_decay_gamma": 0.3,
        "seed": 42, "deterministic": true,
        "mixed_precision": "auto",                         # mixed_float16 when a GPU is present
        "strategy": "auto"                                 # "default" | "mirrored" | "multiworker"
      }
    }

What ``model.fit`` trains (``domain``):

- ``"spectrogram"``: the family's spectrogram model on features computed with the separator's
  own STFT layers inside the train step (on the accelerator; the ``tf.data`` pipeline only cuts
  and augments waveforms, see :class:`FeaturizingModel`; validation features are computed once
  and cached). U-Net: ``separator.core`` on ``T``-frame magnitude patches,
  Spleeter's L1 loss on the masked magnitudes. Open-Unmix: the per-target models on full
  magnitude spectrograms, MSE loss, after the input-statistics pass (per-bin mean/std of the
  training mixtures into each model's ``input_norm``).
- ``"waveform"``: the whole separator, waveform in → waveforms out (any family; losses
  ``waveform_l1``, ``si_sdr``, ``multi_resolution_stft`` or spectrogram losses with ``n_fft``).

Outputs in ``output_dir``: ``model.keras`` (the whole separator with the best validation
weights; ``kerasep.zoo.load(path)`` reads it), ``checkpoints/best.weights.h5``
(ModelCheckpoint), ``backup/`` (BackupAndRestore: rerunning the same command resumes an
interrupted run), ``logs/`` (TensorBoard), ``history.json``, ``train_config.json``.

Reproducibility: with ``deterministic`` (default) the driver seeds Python/NumPy/TF, enables
``tf.config.experimental.enable_op_determinism`` and uses the pipeline's stateless sampling; a
run killed at any point and resumed ends with the same weights as an uninterrupted one (up to
the last completed epoch, which is what BackupAndRestore saves).
"""
from kerasep.train.callbacks import make_callbacks, previous_best, resume_epoch, truncate_history
from kerasep.train.config import DEFAULT_DATA, DEFAULT_TRAINING, ConfigError, load_config
from kerasep.train.datasets import list_tracks, make_datasets
from kerasep.train.devices import make_strategy, seed_everything, set_precision
from kerasep.train.driver import train
from kerasep.train.features import Adapter, FeaturizingModel, build_separator, input_statistics
from kerasep.train.recipe import recipe_config, recipe_parser

__all__ = [
    "DEFAULT_DATA",
    "DEFAULT_TRAINING",
    "Adapter",
    "ConfigError",
    "FeaturizingModel",
    "build_separator",
    "input_statistics",
    "list_tracks",
    "load_config",
    "make_callbacks",
    "make_datasets",
    "make_strategy",
    "previous_best",
    "recipe_config",
    "recipe_parser",
    "resume_epoch",
    "seed_everything",
    "set_precision",
    "train",
    "truncate_history",
]
