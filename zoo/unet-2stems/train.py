"""Train the Spleeter-style 2-stems U-Net on MUSDB18 with plain ``model.fit``.

    python zoo/unet-2stems/train.py --data /path/to/musdb18 --output runs/unet-2stems
    python zoo/unet-2stems/train.py --data /path/to/musdb18 --output runs/unet-2stems   # resumes

The config (``train_config.json`` next to this file, or ``--config``) has the architecture,
data and optimiser settings; see :mod:`kerasep.train` for every key. What the script does, in
order: seeds everything (op determinism on), picks the distribution strategy and precision
policy, builds the separator (untrained), lists and decodes the MUSDB18 tracks into a cache,
builds the training stream (seeded chunks + augmentations, as waveforms) and the fixed validation
chunks (their STFT magnitude patches computed once and cached), compiles the U-Net core with
Spleeter's L1 loss per target (``adapter.fit_model``: its train step computes the STFT magnitude
patches of each waveform batch, on the accelerator), and calls ``model.fit`` with
BackupAndRestore, ModelCheckpoint, EarlyStopping, ReduceLROnPlateau and TensorBoard. The
separator with the best validation weights is saved as ``model.keras``, which
``kerasep.zoo.load(path)``, ``kerasep separate -m path`` and ``kerasep evaluate path`` accept.

``--small`` shrinks the architecture and chunks (n_fft 512, 3 levels of 4/8/16 filters, 0.5 s
chunks) for a CPU smoke run, e.g. on the single track of the test fixtures with
``--subset test --no-split``.
"""
import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

SMALL = {
    "family": "unet",
    "config": {
        "targets": ["vocals", "accompaniment"],
        "n_fft": 512,
        "hop_length": 128,
        "T": 16,
        "F": 64,
        "conv_n_filters": [4, 8, 16],
        "dropout": 0.0,
    },
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="MUSDB18 root (add --is-wav for MUSDB18-HQ)")
    p.add_argument("--output", required=True, help="run folder; rerun with the same folder to resume")
    p.add_argument("--config", default=str(HERE / "train_config.json"))
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--is-wav", action="store_true")
    p.add_argument("--subset", default=None, help="use this MUSDB subset for training and validation")
    p.add_argument("--no-split", action="store_true", help="no official train/valid split (e.g. the test subset)")
    p.add_argument("--small", action="store_true", help="tiny model and chunks for a CPU smoke run")
    p.add_argument("--seed", type=int, default=None)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from kerasep import losses
    from kerasep import train as kt
    from kerasep.backend import keras

    cfg = kt.load_config(args.config)
    if args.small:
        cfg["model"] = SMALL
        cfg["data"].update(seq_duration=0.5, samples_per_track=8, batch_size=4, valid_seq_duration=1.0,
                           valid_batch_size=2)
        cfg["training"].update(lr=0.003)
    if args.epochs is not None:
        cfg["training"]["epochs"] = args.epochs
    if args.seed is not None:
        cfg["training"]["seed"] = args.seed
    if args.is_wav:
        cfg["data"]["is_wav"] = True
    if args.subset:
        split = None if args.no_split else "train"
        cfg["data"]["train"] = {"subset": args.subset, "split": split}
        cfg["data"]["valid"] = {"subset": args.subset, "split": None if args.no_split else "valid"}
    t = cfg["training"]
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)

    # --- devices, seeds, precision --------------------------------------------------------
    strategy = kt.make_strategy(t["strategy"])
    kt.seed_everything(t["seed"], t["deterministic"])
    policy = kt.set_precision(t["mixed_precision"])
    start_epoch = kt.resume_epoch(out / "backup")  # the data stream starts where the backup did
    print(f"policy {policy}, {strategy.num_replicas_in_sync} replica(s), starting at epoch {start_epoch}",
          file=sys.stderr)

    with strategy.scope():
        # --- model: the separator; model.fit trains its spectrogram core ------------------
        separator = kt.build_separator(cfg["model"])
        adapter = kt.Adapter(separator, t["domain"])
        # a config that starts from pretrained weights (finetune_config.json) freezes BatchNorm
        if t["freeze_batchnorm"] or (t["freeze_batchnorm"] is None and kt.is_pretrained(cfg["model"])):
            kt.freeze_batchnorm(adapter.feature_model)
        # --- data ------------------------------------------------------------------------
        train_ds, valid_ds, steps, nb_tracks = kt.make_datasets(cfg, args.data, adapter, start_epoch=start_epoch)
        model = adapter.fit_model
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=t["lr"]),
            loss={target: losses.get(t["loss"] or adapter.default_loss) for target in adapter.targets},
        )
    print(f"{nb_tracks} training track(s), {steps} steps per epoch", file=sys.stderr)
    (out / "train_config.json").write_text(json.dumps(cfg, indent=2))

    # --- model.fit with the usual callbacks ----------------------------------------------
    kt.truncate_history(out, start_epoch)  # rows of epochs that will be trained again
    callbacks = [
        # CSVLogger before BackupAndRestore: a row is written before its epoch counts as done
        keras.callbacks.CSVLogger(str(out / "history.csv"), append=start_epoch > 0),
        keras.callbacks.BackupAndRestore(str(out / "backup"), delete_checkpoint=False),
        keras.callbacks.ModelCheckpoint(str(out / "checkpoints" / "best.weights.h5"), monitor="val_loss",
                                        save_best_only=True, save_weights_only=True,
                                        initial_value_threshold=kt.previous_best(out, start_epoch)),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=t["patience"]),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=t["lr_decay_gamma"],
                                          patience=t["lr_decay_patience"], min_lr=t["min_lr"]),
        keras.callbacks.TensorBoard(str(out / "logs"), write_graph=False),
    ]
    model.fit(train_ds, validation_data=valid_ds, epochs=t["epochs"], steps_per_epoch=steps,
              callbacks=callbacks, shuffle=False, verbose=2)

    # --- the whole separator, best weights, as one .keras file ---------------------------
    best = out / "checkpoints" / "best.weights.h5"
    if best.is_file():
        model.load_weights(str(best))
    tmp = out / ".model.tmp.keras"
    separator.save(tmp)
    tmp.replace(out / "model.keras")
    print(f"wrote {out / 'model.keras'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
