"""What the ``zoo/<model>/train.py`` recipes share: their command-line flags and the config
those flags make."""
import argparse

from kerasep.cli import positive_float, positive_int  # noqa: F401  (the flag types, for recipes)
from kerasep.train.config import load_config


def recipe_parser(description, config_path):
    """An ``argparse`` parser with the flags every ``zoo/<model>/train.py`` recipe shares:
    ``--data``, ``--output``, ``--config`` (default ``config_path``), ``--epochs``, ``--subset``,
    ``--no-split``, ``--cache-dir``, ``--small``, ``--seed``, ``-q``. Recipes add their own."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", required=True, help="MUSDB18 / MUSDB18-HQ root")
    p.add_argument("--output", required=True, help="run folder; rerun with the same folder to resume")
    p.add_argument("--config", default=str(config_path))
    p.add_argument("--epochs", type=positive_int, default=None)
    p.add_argument("--subset", default=None, help="use this MUSDB subset for training and validation")
    p.add_argument("--no-split", action="store_true", help="no official train/valid split (e.g. the test subset)")
    p.add_argument("--cache-dir", default=None, help="decoded tracks (and validation features) on disk")
    p.add_argument("--small", action="store_true", help="tiny model and chunks for a CPU smoke run")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("-q", "--quiet", action="store_true", help="one line per epoch instead of a progress bar")
    return p


def recipe_config(args, small_model, small_data, small_training=None):
    """The config :func:`recipe_parser`'s flags make of ``args.config``: ``--small`` swaps in
    ``small_model`` and updates the data section with ``small_data`` (and the training section
    with ``small_training``)."""
    cfg = load_config(args.config)
    d, t = cfg["data"], cfg["training"]
    if args.small:
        cfg["model"] = small_model
        d.update(small_data)
        t.update(small_training or {})
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


def add_batch_flags(parser, per_device):
    """``--per-device-batch N`` (the config's ``data.batch_size`` is per device, ``per_device``
    in the help) and ``--is-wav`` (MUSDB18-HQ WAV folders; what the config says otherwise)."""
    parser.add_argument("--per-device-batch", type=positive_int, default=None,
                        help=f"chunks per device and step (config: {per_device})")
    parser.add_argument("--is-wav", action="store_true", help="MUSDB18-HQ WAV folders instead of .stem.mp4 files")
    return parser


def per_device_config(args, small_model, small_data, small_training=None, replicas=1):
    """:func:`recipe_config` with ``data.batch_size`` read as the per-device batch (or
    ``--per-device-batch``) times ``replicas``, and ``--is-wav``."""
    cfg = recipe_config(args, small_model, small_data, small_training)
    d = cfg["data"]
    if args.per_device_batch is not None:
        d["batch_size"] = args.per_device_batch
    d["batch_size"] = int(d["batch_size"]) * int(replicas)
    if args.is_wav:
        d["is_wav"] = True
    return cfg


def run_recipe(args, build_config):
    """Train as a ``zoo/<model>/train.py`` recipe: the distribution strategy of the config's
    ``training.strategy`` first (MultiWorkerMirroredStrategy must exist before other TensorFlow
    work), then ``build_config(args, replicas)``, :func:`kerasep.train.train` into
    ``args.output``, and a line naming ``model.keras`` and the best validation loss of the
    folder's history. Returns 0."""
    import math
    import sys
    from pathlib import Path

    from kerasep.train.callbacks import previous_best
    from kerasep.train.devices import make_strategy
    from kerasep.train.driver import train

    strategy = make_strategy(load_config(args.config)["training"]["strategy"])
    cfg = build_config(args, strategy.num_replicas_in_sync)
    print(f"{strategy.num_replicas_in_sync} replica(s), global batch {cfg['data']['batch_size']}", file=sys.stderr)
    out = Path(args.output)
    train(cfg, args.data, out, strategy=strategy, verbose=0 if args.quiet else "auto")
    best = previous_best(out, math.inf)  # every epoch of history.csv (train() returns this call's)
    note = "" if best is None else f" (best val_loss {best:.5g})"
    print(f"wrote {out / 'model.keras'}{note}", file=sys.stderr)
    return 0
