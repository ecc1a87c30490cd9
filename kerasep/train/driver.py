"""The training driver: :func:`train`, a config to a trained, saved separator."""
import contextlib
import json
import os
import sys
from pathlib import Path

from kerasep.backend import keras, tf
from kerasep.train.callbacks import make_callbacks, merged_history, resume_epoch
from kerasep.train.config import ConfigError, load_config
from kerasep.train.datasets import make_datasets
from kerasep.train.devices import make_strategy, seed_everything, set_precision
from kerasep.train.features import Adapter, build_separator, freeze_batchnorm, is_pretrained
from kerasep.train.patches import check_keras_version, multiworker_fit


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
        tensorboard: write TensorBoard logs to ``output_dir/logs`` (chief only).
        extra_callbacks: more Keras callbacks, given to ``fit`` as they are (on every worker).

    Returns:
        ``(separator, history_dict)``; the separator holds the best validation weights and is
        saved as ``output_dir/model.keras``. The history covers every epoch of the run folder,
        those of earlier (interrupted or finished) calls included, as ``history.json``.
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
    multiworker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    if multiworker:
        check_keras_version()  # before any work: the fit needs patches of Keras internals
    seed_everything(t["seed"], t["deterministic"])
    policy = set_precision(t["mixed_precision"])
    chief = _chief()
    start_epoch = resume_epoch(out / "backup")
    pretrained = is_pretrained(cfg["model"])
    freeze = pretrained if t["freeze_batchnorm"] is None else bool(t["freeze_batchnorm"])
    try:
        with strategy.scope():
            separator = build_separator(cfg["model"])
            adapter = Adapter(separator, t["domain"])
            if freeze:  # before compile: the frozen layers' weights are not trainable
                freeze_batchnorm(adapter.feature_model)
            train_ds, valid_ds, steps, _ = make_datasets(cfg, data_root, adapter, start_epoch=start_epoch)
            if start_epoch == 0 and not pretrained:  # pretrained weights keep their own statistics
                adapter.prepare(train_ds.take(steps))
            from kerasep import losses

            loss_name = t["loss"] or adapter.default_loss
            loss = losses.get(loss_name, **(t["loss_args"] or {}))
            opt_kwargs = {"learning_rate": float(t["lr"])}
            if t["clipnorm"]:
                opt_kwargs["clipnorm"] = float(t["clipnorm"])
            if t["ema_momentum"] is not None:  # the moving average validates and is kept (make_callbacks)
                opt_kwargs.update(use_ema=True, ema_momentum=float(t["ema_momentum"]))
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
            json.dumps(dict(cfg, run={"data_root": str(data_root), "policy": policy,
                                      "freeze_batchnorm": freeze}), indent=2))
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 0
    # other workers write their copies aside (TensorFlow's multi-worker rule)
    callbacks = make_callbacks(
        out, t, tensorboard=tensorboard and chief, progress=verbose == 0, start_epoch=start_epoch,
        worker_dir=None if chief else out / f"worker-tmp-{os.getpid()}",
    ) + list(extra_callbacks)
    try:
        with multiworker_fit(adapter.fit_model, train_ds, strategy) if multiworker else contextlib.nullcontext():
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
        if chief:  # with the epochs of earlier calls on this folder (resumed or finished runs)
            hist = merged_history(out, start_epoch, hist)
            _atomic_save_model(separator, out / "model.keras")
            (out / "history.json").write_text(json.dumps(hist, indent=2))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return separator, hist
