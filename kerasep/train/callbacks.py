"""The callbacks of a run (backup, best checkpoint, CSV history, early stopping, learning-rate
decay, TensorBoard, progress) and what a resumed run reads back from its folder."""
import json
import os
import sys
import time
from pathlib import Path

from kerasep.backend import keras


def resume_epoch(backup_dir):
    """The epoch a BackupAndRestore folder resumes at (0 when there is no backup)."""
    meta = Path(backup_dir) / "training_metadata.json"
    try:
        return int(json.loads(meta.read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


class _Progress(keras.callbacks.Callback):
    """One line per epoch on stderr (used with ``verbose=0`` when stdout is not a terminal)."""

    def __init__(self, epochs, stream=None):
        super().__init__()
        self.epochs = epochs
        self.stream = stream  # None: sys.stderr as it is when an epoch ends (it may be replaced)

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.time()

    def on_epoch_end(self, epoch, logs=None):
        items = " ".join(f"{k}={float(v):.5g}" for k, v in sorted((logs or {}).items()))
        print(f"epoch {epoch + 1}/{self.epochs} ({time.time() - self._t:.1f} s) {items}", file=self.stream or sys.stderr, flush=True)


class _LogLearningRate(keras.callbacks.Callback):
    """Puts the optimizer's ``learning_rate`` into the epoch's logs before the CSV row is
    written (ReduceLROnPlateau logs the same value, later), so ``history.csv`` has it too."""

    def on_epoch_end(self, epoch, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        if logs is not None and optimizer is not None and not hasattr(optimizer, "optimizers"):
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def _csv_header(path):
    """The column names of a CSV file's first line, or None when there is no such file."""
    try:
        with open(path, newline="") as f:
            return f.readline().strip().split(",")
    except OSError:
        return None


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


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def merged_history(output_dir, start_epoch, history):
    """``history`` (``{key: [values]}`` of the epochs from ``start_epoch`` on, what ``fit``
    returned) preceded by the epochs ``0 .. start_epoch - 1`` of earlier calls on
    ``output_dir``: their rows of ``history.csv`` (written as each epoch ends, so also those of
    a killed run), completed with the previous ``history.json`` (the keys the CSV does not
    have, such as ``learning_rate``, which is logged after the CSV row is written). Values an
    epoch did not log are None."""
    out = Path(output_dir)
    if not start_epoch:
        return {k: list(v) for k, v in history.items()}
    earlier = [{} for _ in range(start_epoch)]  # one {key: value} per epoch before start_epoch
    path = out / "history.csv"
    if path.is_file():
        import csv

        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                epoch = _number(row.pop("epoch", None))
                if epoch is not None and 0 <= epoch < start_epoch and epoch == int(epoch):
                    earlier[int(epoch)] = {k: _number(v) for k, v in row.items() if k}
    try:
        old = json.loads((out / "history.json").read_text())
        old = {k: list(v) for k, v in old.items()} if isinstance(old, dict) else {}
    except (OSError, ValueError, TypeError):
        old = {}
    for e, row in enumerate(earlier):
        for k, values in old.items():
            if row.get(k) is None and e < len(values):
                row[k] = _number(values[e])
    if not any(earlier):  # nothing known of the earlier epochs
        return {k: list(v) for k, v in history.items()}
    keys = list(history) + sorted({k for row in earlier for k in row} - set(history))
    nb_new = max((len(v) for v in history.values()), default=0)
    return {k: [row.get(k) for row in earlier] + list(history.get(k, [None] * nb_new)) for k in keys}


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


def make_callbacks(output_dir, training, monitor="val_loss", tensorboard=True, progress=True, start_epoch=0,
                   worker_dir=None):
    """BackupAndRestore, ModelCheckpoint (best weights), CSVLogger, EarlyStopping,
    ReduceLROnPlateau, TensorBoard and a one-line-per-epoch progress printer.

    With ``training["ema_momentum"]`` (the optimizer keeps an exponential moving average of the
    weights, ``use_ema``): ``SwapEMAWeights(swap_on_epoch=True)`` between the backup and the
    checkpoint, so the validation loss, the best checkpoint and hence ``model.keras`` are those of
    the averaged weights (demucs' EMA), while the backup holds the raw weights and the average.

    ``worker_dir``: a non-chief worker's own folder (TensorFlow's multi-worker rule: only the
    chief writes the run folder): the CSV history, the backup and the best checkpoint are
    written there instead of ``output_dir``."""
    out = Path(output_dir)
    own = out if worker_dir is None else Path(worker_dir)
    own.mkdir(parents=True, exist_ok=True)
    truncate_history(own, start_epoch)
    # the learning rate in the CSV rows, unless a resumed run's CSV was started without it (its
    # rows must keep the columns of its header)
    header = _csv_header(own / "history.csv") if start_epoch > 0 else None
    cbs = [_LogLearningRate()] if header is None or "learning_rate" in header else []
    cbs += [
        # CSVLogger before the backup: an epoch's row is on disk before the backup marks the epoch done
        keras.callbacks.CSVLogger(str(own / "history.csv"), append=start_epoch > 0),
        keras.callbacks.BackupAndRestore(str(own / "backup"), delete_checkpoint=False),
    ]
    if training.get("ema_momentum") is not None:
        # after the backup (it keeps the raw weights, the average is optimizer state: resuming is
        # exact), before the checkpoint: validation and the best checkpoint use the average
        cbs.append(keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    cbs += [
        keras.callbacks.ModelCheckpoint(
            str(own / "checkpoints" / "best.weights.h5"),
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
