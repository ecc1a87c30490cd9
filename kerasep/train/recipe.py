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
