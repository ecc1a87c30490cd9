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
from __future__ import annotations

import copy
import json
import os
import sys
import time
from pathlib import Path

from kerasep.backend import keras, tf

DEFAULT_DATA = {
    "source": "musdb",
    "is_wav": False,
    "sources": ["drums", "bass", "other", "vocals"],
    "targets": None,
    "train": {"subset": "train", "split": "train"},
    "valid": {"subset": "train", "split": "valid"},
    "seq_duration": 6.0,
    "samples_per_track": 64,
    "batch_size": 16,
    "augmentations": ["gain", "channelswap"],
    "max_shift": 0.0,
    "random_track_mix": False,
    "valid_seq_duration": None,
    "valid_batch_size": 1,
    "cache_dir": None,
    "short_tracks": "error",
    "sample_rate": None,
}
DEFAULT_TRAINING = {
    "epochs": 100,
    "optimizer": "adam",
    "lr": 1e-3,
    "weight_decay": 0.0,
    "clipnorm": None,
    "domain": "spectrogram",
    "loss": None,
    "loss_args": {},
    "patience": 20,
    "lr_decay_patience": 10,
    "lr_decay_gamma": 0.3,
    "min_lr": 1e-6,
    "seed": 42,
    "deterministic": True,
    "mixed_precision": "auto",
    "strategy": "auto",
    "steps_per_execution": 1,
}


class ConfigError(ValueError):
    """A training config key is missing, unknown or out of range."""


def load_config(path_or_dict):
    """A training config (dict or JSON file path) merged with the defaults, validated."""
    if isinstance(path_or_dict, (str, os.PathLike)):
        p = Path(path_or_dict)
        if not p.is_file():
            raise ConfigError(f"training config not found: {p}")
        try:
            raw = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{p}: not valid JSON ({e})") from None
    else:
        raw = copy.deepcopy(dict(path_or_dict))
    # "run": what train() records of a run (data root, precision policy) in the run folder's
    # train_config.json, which loads back as a config; it is not an input.
    unknown = set(raw) - {"model", "data", "training", "output_dir", "description", "run"}
    if unknown:
        raise ConfigError(f"unknown top-level config key(s) {sorted(unknown)}; expected model, data, training, output_dir")
    if "model" not in raw:
        raise ConfigError("the config needs a 'model' entry: a zoo name or {'family': ..., 'config': {...}}")
    cfg = {"model": raw["model"], "output_dir": raw.get("output_dir"), "description": raw.get("description", "")}
    for key, defaults in (("data", DEFAULT_DATA), ("training", DEFAULT_TRAINING)):
        section = dict(raw.get(key) or {})
        bad = set(section) - set(defaults)
        if bad:
            raise ConfigError(f"unknown {key} key(s) {sorted(bad)}; expected some of {sorted(defaults)}")
        merged = copy.deepcopy(defaults)
        merged.update(section)
        cfg[key] = merged
    t = cfg["training"]
    if t["domain"] not in ("spectrogram", "waveform"):
        raise ConfigError(f"training.domain must be 'spectrogram' or 'waveform'. Received: {t['domain']!r}")
    if t["strategy"] not in ("auto", "default", "mirrored", "multiworker"):
        raise ConfigError(f"training.strategy must be auto/default/mirrored/multiworker. Received: {t['strategy']!r}")
    if cfg["data"]["source"] not in ("musdb", "folder"):
        raise ConfigError(f"data.source must be 'musdb' or 'folder'. Received: {cfg['data']['source']!r}")
    return cfg


# --------------------------------------------------------------------------------------------
# Model families: what fit trains and on which features
# --------------------------------------------------------------------------------------------


def build_separator(model_cfg):
    """The untrained separator a config's ``model`` entry names: a zoo name (its architecture)
    or ``{"family": ..., "config": {...}}`` (families: ``kerasep.zoo.registry.FAMILIES``)."""
    from kerasep import zoo

    if isinstance(model_cfg, str):
        try:
            return zoo.build(model_cfg)
        except KeyError as e:
            raise ConfigError(f"model: {e.args[0]}") from None
    if not isinstance(model_cfg, dict) or "family" not in model_cfg:
        raise ConfigError(f"model must be a zoo name or {{'family': ..., 'config': {{...}}}}. Received: {model_cfg!r}")
    family, config = model_cfg["family"], dict(model_cfg.get("config") or {})
    if family not in zoo.registry.FAMILIES:
        raise ConfigError(f"model.family: unknown model family {family!r}; expected one of "
                          f"{sorted(zoo.registry.FAMILIES)}")
    return zoo.build(config, family=family)


class FeaturizingModel(keras.Model):
    """A spectrogram model trained on waveform batches: its train and test steps compute the
    features (STFT magnitudes, with the separator's own layers) from ``(mix, {target: y})``
    waveform batches first, on the device that runs the step, then do the usual step on
    ``(features, target features)``.

    Batches that already are features (``x`` of rank 4: cached validation features) go to the
    model as they are. ``call`` takes features: ``model(x)`` is ``inner(x)``.
    """

    def __init__(self, inner, featurize, **kwargs):
        kwargs.setdefault("name", f"{inner.name}_on_waveforms")
        kwargs.setdefault("dtype", "float32")  # no casts here: the inner model's layers cast
        super().__init__(**kwargs)
        self.inner = inner
        self.featurize = featurize
        self.built = inner.built  # no variables of its own (BackupAndRestore wants it built)

    def call(self, x, training=False):
        return self.inner(x, training=training)

    def features(self, data):
        """``(mix, ys[, sample_weight])`` waveforms → the same tuple with features."""
        if not isinstance(data, (tuple, list)) or len(data) < 2:
            return data
        x = data[0]
        if getattr(x, "shape", None) is None or x.shape.rank != 3:
            return data
        fx, fy = self.featurize(x, data[1])
        return (fx, fy) + tuple(data[2:])

    def train_step(self, data):
        return super().train_step(self.features(data))

    def test_step(self, data):
        return super().test_step(self.features(data))

    def _symbolic_build(self, iterator=None, data_batch=None):
        # fit under a distribution strategy builds from one (waveform) batch
        if data_batch is not None:
            data_batch = self.features(tuple(data_batch))
        return super()._symbolic_build(iterator=iterator, data_batch=data_batch)


class Adapter:
    """How a separator is trained in one domain (``"spectrogram"`` or ``"waveform"``).

    Attributes:
        fit_model: the ``keras.Model`` given to ``compile``/``fit``. It takes the training
            pipeline's waveform batches: in the spectrogram domain it is a
            :class:`FeaturizingModel` that computes the features inside the train step (on the
            accelerator, as Open-Unmix's training computes its STFT in the model), so the ``tf.data``
            pipeline only cuts and augments decoded audio.
        face: the separator's :class:`~kerasep.models.TrainingFace` (spectrogram domain), else None.
        feature_model: the model trained on features (the U-Net core, the Open-Unmix target
            models; the separator itself in the waveform domain).
        featurize: ``(mix, ys) -> (x, y)`` batch function (None in the waveform domain); the
            validation pipeline computes and caches features with it.
        targets: the names of the loss dict.
        default_loss: loss name used when the config gives none.
    """

    def __init__(self, separator, domain):
        from kerasep.models.separator import check_separator

        self.separator = check_separator(separator, "the model to train")
        self.domain = domain
        if domain == "waveform":
            self.face = None
            self.feature_model = separator
            self.featurize = None
            self.targets = separator.stems
            self.default_loss = "waveform_l1"
            self.fit_model = separator
            return
        try:
            self.face = separator.training_face()
        except NotImplementedError as e:
            raise ConfigError(f"training.domain: {e}") from None
        self.feature_model = self.face.feature_model
        self.featurize = self.face.featurize
        self.targets = list(self.face.targets)
        self.default_loss = self.face.default_loss
        self.fit_model = FeaturizingModel(self.feature_model, self.featurize)

    def prepare(self, dataset, max_batches=None):
        """Run the face's one-off pass over training batches (Open-Unmix's input statistics);
        returns what it measured, or None when the family has none."""
        if self.face is None or self.face.prepare is None:
            return None
        return self.face.prepare(dataset, max_batches)

    def data_targets(self, groups):
        missing = [t for t in self.targets if t not in groups]
        if missing:
            raise ConfigError(
                f"the model's targets {self.targets} need data.targets entries for {missing}; "
                f"data.targets defines {sorted(groups)}"
            )
        return {t: groups[t] for t in self.targets}


def input_statistics(adapter, dataset, max_batches=None):
    """Open-Unmix's input-statistics pass through ``adapter`` (see
    :meth:`kerasep.models.OpenUnmixSeparator.input_statistics`). Returns ``(mean, std)``."""
    stats = adapter.prepare(dataset, max_batches)
    if stats is None:
        raise ConfigError(f"{type(adapter.separator).__name__} has no input-statistics pass")
    return stats["mean"], stats["std"]


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def recipe_parser(description, config_path):
    """An ``argparse`` parser with the flags every ``zoo/<model>/train.py`` recipe shares:
    ``--data``, ``--output``, ``--config`` (default ``config_path``), ``--epochs``, ``--subset``,
    ``--no-split``, ``--cache-dir``, ``--small``, ``--seed``, ``-q``. Recipes add their own."""
    import argparse

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", required=True, help="MUSDB18 / MUSDB18-HQ root")
    p.add_argument("--output", required=True, help="run folder; rerun with the same folder to resume")
    p.add_argument("--config", default=str(config_path))
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--subset", default=None, help="use this MUSDB subset for training and validation")
    p.add_argument("--no-split", action="store_true", help="no official train/valid split (e.g. the test subset)")
    p.add_argument("--cache-dir", default=None, help="decoded tracks (and validation features) on disk")
    p.add_argument("--small", action="store_true", help="tiny model and chunks for a CPU smoke run")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("-q", "--quiet", action="store_true", help="one line per epoch instead of a progress bar")
    return p


def recipe_config(args, small_model, small_data):
    """The config :func:`recipe_parser`'s flags make of ``args.config``: ``--small`` swaps in
    ``small_model`` and updates the data section with ``small_data``."""
    cfg = load_config(args.config)
    d, t = cfg["data"], cfg["training"]
    if args.small:
        cfg["model"] = small_model
        d.update(small_data)
    if args.epochs is not None:
        t["epochs"] = args.epochs
    if args.seed is not None:
        t["seed"] = args.seed
    if args.cache_dir:
        d["cache_dir"] = args.cache_dir
    if args.subset:
        d["train"] = {"subset": args.subset, "split": None if args.no_split else "train"}
        d["valid"] = {"subset": args.subset, "split": None if args.no_split else "valid"}
    return cfg


def list_tracks(data_cfg, root, which):
    from kerasep import data

    part = data_cfg[which] or {}
    if data_cfg["source"] == "musdb":
        return data.musdb_tracks(
            root,
            subset=part.get("subset", "train"),
            split=part.get("split"),
            is_wav=bool(data_cfg["is_wav"]),
            sources=data_cfg["sources"],
            sample_rate=data_cfg["sample_rate"],
        )
    return data.folder_tracks(
        root,
        data_cfg["sources"],
        subset=part.get("subset"),
        ext=part.get("ext"),
        sample_rate=data_cfg["sample_rate"],
    )


def make_datasets(cfg, root, adapter, start_epoch=0, seed=None):
    """``(train_ds, valid_ds, steps_per_epoch, nb_train_tracks)`` for a loaded config."""
    from kerasep import data

    d = cfg["data"]
    seed = cfg["training"]["seed"] if seed is None else seed
    train_tracks = list_tracks(d, root, "train")
    valid_tracks = list_tracks(d, root, "valid")
    rate = adapter.separator.sample_rate
    if train_tracks[0].rate != rate:
        raise ConfigError(
            f"the data is at {train_tracks[0].rate} Hz but the model expects {rate} Hz; set data.sample_rate={rate}"
        )
    groups = data.normalize_targets(d["targets"] or adapter.targets, train_tracks[0].sources)
    groups = adapter.data_targets(groups)
    train = data.training_dataset(
        train_tracks,
        groups,
        seq_duration=d["seq_duration"],
        samples_per_track=d["samples_per_track"],
        batch_size=d["batch_size"],
        augmentations=d["augmentations"],
        max_shift=d["max_shift"],
        random_track_mix=d["random_track_mix"],
        seed=seed,
        start_epoch=start_epoch,
        cache_dir=d["cache_dir"],
        short_tracks=d["short_tracks"],
        featurize=None,  # adapter.fit_model computes the features in its train step
    )
    valid = data.validation_dataset(
        valid_tracks,
        groups,
        seq_duration=d["valid_seq_duration"],
        batch_size=d["valid_batch_size"],
        cache_dir=d["cache_dir"],
        featurize=adapter.featurize,
    )
    steps = data.steps_per_epoch(len(train_tracks), d["samples_per_track"], d["batch_size"])
    return train, valid, steps, len(train_tracks)


# --------------------------------------------------------------------------------------------
# Devices
# --------------------------------------------------------------------------------------------


def make_strategy(name="auto"):
    """``"auto"``: MirroredStrategy over every GPU when there are several, else the default
    strategy; ``"mirrored"``: MirroredStrategy over all GPUs (or all logical CPU devices when
    there is no GPU); ``"multiworker"``: MultiWorkerMirroredStrategy (cluster from
    ``TF_CONFIG``); ``"default"``: no distribution."""
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "auto" and len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def set_precision(mode="auto"):
    """``mixed_float16`` when ``mode`` is ``True`` or (``"auto"`` and a GPU is present); the
    float32 policy otherwise. Returns the policy name."""
    gpu = bool(tf.config.list_physical_devices("GPU"))
    name = "mixed_float16" if (mode is True or (mode == "auto" and gpu)) else "float32"
    keras.mixed_precision.set_global_policy(name)
    return name


def seed_everything(seed, deterministic=True):
    keras.utils.set_random_seed(int(seed))
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def resume_epoch(backup_dir):
    """The epoch a BackupAndRestore folder resumes at (0 when there is no backup)."""
    meta = Path(backup_dir) / "training_metadata.json"
    try:
        return int(json.loads(meta.read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


# --------------------------------------------------------------------------------------------
# Callbacks and the fit itself
# --------------------------------------------------------------------------------------------


class _Progress(keras.callbacks.Callback):
    """One line per epoch on stderr (used with ``verbose=0`` when stdout is not a terminal)."""

    def __init__(self, epochs, stream=sys.stderr):
        super().__init__()
        self.epochs = epochs
        self.stream = stream

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.time()

    def on_epoch_end(self, epoch, logs=None):
        items = " ".join(f"{k}={float(v):.5g}" for k, v in sorted((logs or {}).items()))
        print(f"epoch {epoch + 1}/{self.epochs} ({time.time() - self._t:.1f} s) {items}", file=self.stream, flush=True)


def _have_tensorboard():
    try:
        import tensorboard  # noqa: F401  (keras' TensorBoard callback writes through it)

        return True
    except ImportError:
        import warnings

        warnings.warn("TensorBoard logging disabled: the `tensorboard` package is not installed "
                      "(pip install 'kerasep[train]')")
        return False


def previous_best(output_dir, start_epoch, monitor="val_loss"):
    """Best ``monitor`` value of the epochs before ``start_epoch`` in ``history.csv`` (None if
    there are none), so a resumed ModelCheckpoint keeps comparing against the real best."""
    import csv

    path = Path(output_dir) / "history.csv"
    if not start_epoch or not path.is_file():
        return None
    best = None
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                if int(row["epoch"]) < start_epoch and row.get(monitor) not in (None, ""):
                    v = float(row[monitor])
                    best = v if best is None else min(best, v)
            except (KeyError, ValueError):
                continue
    return best


def truncate_history(output_dir, start_epoch):
    """Drop ``history.csv`` rows of epochs >= ``start_epoch`` (an epoch logged just before a
    kill but not backed up is trained again and logged again)."""
    path = Path(output_dir) / "history.csv"
    if not start_epoch or not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    keep = lines[:1] + [l for l in lines[1:] if l.split(",", 1)[0].isdigit() and int(l.split(",", 1)[0]) < start_epoch]
    if keep != lines:
        tmp = path.with_name(".history.csv.tmp")
        tmp.write_text("".join(keep))
        os.replace(tmp, path)


def make_callbacks(output_dir, training, monitor="val_loss", tensorboard=True, progress=True, start_epoch=0):
    """BackupAndRestore, ModelCheckpoint (best weights), CSVLogger, EarlyStopping,
    ReduceLROnPlateau, TensorBoard and a one-line-per-epoch progress printer."""
    out = Path(output_dir)
    truncate_history(out, start_epoch)
    cbs = [
        # CSVLogger first: an epoch's row is on disk before the backup marks the epoch done
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=start_epoch > 0),
        keras.callbacks.BackupAndRestore(str(out / "backup"), delete_checkpoint=False),
        keras.callbacks.ModelCheckpoint(
            str(out / "checkpoints" / "best.weights.h5"),
            monitor=monitor,
            save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=previous_best(out, start_epoch, monitor),
        ),
        keras.callbacks.EarlyStopping(monitor=monitor, patience=int(training["patience"]), restore_best_weights=False),
        keras.callbacks.ReduceLROnPlateau(
            monitor=monitor,
            factor=float(training["lr_decay_gamma"]),
            patience=int(training["lr_decay_patience"]),
            min_lr=float(training["min_lr"]),
        ),
    ]
    if tensorboard and _have_tensorboard():
        cbs.append(keras.callbacks.TensorBoard(str(out / "logs"), write_graph=False, profile_batch=0))
    if progress:
        cbs.append(_Progress(int(training["epochs"])))
    return cbs


def _prebuild(model, dataset, strategy):
    """Build model, loss, metrics and optimizer from one local batch before ``fit``.

    Keras 3.15's ``fit`` otherwise builds symbolically from a distributed batch that it
    ``strategy.reduce``s, which fails under MultiWorkerMirroredStrategy ("Attempt to convert a
    value (PerReplica...)"); once built, fit skips that step.
    """
    x, y = next(iter(dataset))
    with strategy.scope():
        model._symbolic_build(data_batch=(x, y, None))
    model._maybe_symbolic_build = lambda *args, **kwargs: None
    _patch_multiworker_reduce()


def _patch_multiworker_reduce():
    """Keras 3.15 reduces every per-replica log under MultiWorkerMirroredStrategy with
    ``strategy.reduce("MEAN", v, axis=0)``, which fails for scalar logs (the loss): "Invalid
    reduction dimension 0 for input with 0 dimensions". Reduce scalars with ``axis=None``."""
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica
    if getattr(original, "_kerasep_patched", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            from keras.src import tree

            def _reduce(v):
                if isinstance(v, tf.distribute.DistributedValues):
                    local = strategy.experimental_local_results(v)[0]
                    return strategy.reduce("MEAN", v, axis=None if local.shape.rank == 0 else 0)
                return v

            return tree.map_structure(_reduce, values)
        return original(values, strategy, reduction)

    reduce_per_replica._kerasep_patched = True
    tf_trainer.reduce_per_replica = reduce_per_replica


def _atomic_save_model(model, path):
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.keras")
    model.save(tmp)
    os.replace(tmp, path)


def _chief():
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = tf_config.get("task", {})
    return task.get("type", "chief") in ("chief",) or (task.get("type") == "worker" and int(task.get("index", 0)) == 0 and "chief" not in tf_config.get("cluster", {}))


def train(
    config,
    data_root,
    output_dir=None,
    epochs=None,
    verbose="auto",
    strategy=None,
    tensorboard=True,
    extra_callbacks=(),
):
    """Train the model a config describes on the data under ``data_root``.

    Args:
        config: dict or JSON path (see the module docstring).
        data_root: MUSDB18 root or stem folder.
        output_dir: where ``model.keras``, checkpoints, backup and logs go (default the
            config's ``output_dir``); rerunning with the same folder resumes.
        epochs: override ``training.epochs``.
        verbose: Keras ``fit`` verbosity (``"auto"``: progress bar on a terminal, one line per
            epoch otherwise).
        strategy: a ``tf.distribute.Strategy`` (default from ``training.strategy``). For
            ``"multiworker"`` create it first thing in the program (TensorFlow's rule).

    Returns:
        ``(separator, history_dict)``; the separator holds the best validation weights and is
        saved as ``output_dir/model.keras``.
    """
    cfg = load_config(config)
    t = cfg["training"]
    if epochs is not None:
        t["epochs"] = int(epochs)
    output_dir = output_dir or cfg["output_dir"]
    if not output_dir:
        raise ConfigError("no output folder: pass output_dir (CLI: --output) or set output_dir in the config")
    out = Path(output_dir)
    if data_root is None or not Path(data_root).exists():
        from kerasep.data import DatasetError

        raise DatasetError(f"dataset folder not found: {data_root}")
    if strategy is None:
        strategy = make_strategy(t["strategy"])
    seed_everything(t["seed"], t["deterministic"])
    policy = set_precision(t["mixed_precision"])
    chief = _chief()
    start_epoch = resume_epoch(out / "backup")
    try:
        with strategy.scope():
            separator = build_separator(cfg["model"])
            adapter = Adapter(separator, t["domain"])
            train_ds, valid_ds, steps, _ = make_datasets(cfg, data_root, adapter, start_epoch=start_epoch)
            if start_epoch == 0:
                adapter.prepare(train_ds.take(steps))
            from kerasep import losses

            loss_name = t["loss"] or adapter.default_loss
            loss = losses.get(loss_name, **(t["loss_args"] or {}))
            opt_kwargs = {"learning_rate": float(t["lr"])}
            if t["clipnorm"]:
                opt_kwargs["clipnorm"] = float(t["clipnorm"])
            if t["optimizer"] == "adam":
                opt = keras.optimizers.Adam(**opt_kwargs)
            elif t["optimizer"] == "adamw":
                opt = keras.optimizers.AdamW(weight_decay=float(t["weight_decay"]), **opt_kwargs)
            elif t["optimizer"] == "sgd":
                opt = keras.optimizers.SGD(momentum=0.9, **opt_kwargs)
            else:
                raise ConfigError(f"training.optimizer must be adam, adamw or sgd. Received: {t['optimizer']!r}")
            metrics = None
            if t["domain"] == "waveform":
                from kerasep import metrics as km

                metrics = {name: [km.SDR(), km.SISDR()] for name in adapter.targets}
            adapter.fit_model.compile(
                optimizer=opt,
                loss={name: loss for name in adapter.targets},
                metrics=metrics,
                steps_per_execution=int(t["steps_per_execution"]),
            )
    except Exception:
        keras.mixed_precision.set_global_policy("float32")
        raise
    out.mkdir(parents=True, exist_ok=True)
    if chief:
        (out / "train_config.json").write_text(
            json.dumps(dict(cfg, run={"data_root": str(data_root), "policy": policy}), indent=2))
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 0
    callbacks = make_callbacks(
        out, t, tensorboard=tensorboard and chief, progress=verbose == 0, start_epoch=start_epoch
    ) + list(extra_callbacks)
    if not chief:  # other workers write their copies aside (TensorFlow's multi-worker rule)
        aside = out / f"worker-tmp-{os.getpid()}"
        for cb in callbacks:
            if isinstance(cb, keras.callbacks.ModelCheckpoint):
                cb.filepath = str(aside / "best.weights.h5")
            elif isinstance(cb, keras.callbacks.BackupAndRestore):
                cb.backup_dir = str(aside / "backup")
                cb._weights_path = str(aside / "backup" / "latest.weights.h5")
                cb._training_metadata_path = str(aside / "backup" / "training_metadata.json")
                cb._prev_weights_path = cb._weights_path + ".bkp"
                cb._prev_training_metadata_path = cb._training_metadata_path + ".bkp"
            elif isinstance(cb, keras.callbacks.CSVLogger):
                cb.filename = str(aside / "history.csv")
                aside.mkdir(parents=True, exist_ok=True)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _prebuild(adapter.fit_model, train_ds, strategy)
    try:
        history = adapter.fit_model.fit(
            train_ds,
            validation_data=valid_ds,
            epochs=int(t["epochs"]),
            steps_per_epoch=steps,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,  # the pipeline shuffles, seeded
        )
        best = out / "checkpoints" / "best.weights.h5"
        if chief and best.is_file():
            adapter.fit_model.load_weights(str(best))
        hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
        if chief:
            _atomic_save_model(separator, out / "model.keras")
            (out / "history.json").write_text(json.dumps(hist, indent=2))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return separator, hist
