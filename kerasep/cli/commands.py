"""``kerasep export``, ``kerasep list``, ``kerasep train``, ``kerasep evaluate``."""
import sys
import time
from pathlib import Path

from kerasep.cli.console import _cli_words


def cmd_export(args):
    from kerasep import export

    precision = "float16" if args.fp16 else "int8" if args.int8 else "float32"
    fmt = args.format or export.guess_format(args.output)
    start = time.monotonic()
    try:
        path = export.export(args.model, args.output, format=fmt, precision=precision,
                             overwrite=args.overwrite, weights=args.weights, with_runner=args.with_runner)
    except KeyError as exc:
        print(f"kerasep export: {exc.args[0]}", file=sys.stderr)
        return 2
    except (ValueError, FileExistsError, FileNotFoundError, RuntimeError) as exc:
        print(f"kerasep export: {_cli_words(exc)}", file=sys.stderr)
        return 1
    took = time.monotonic() - start
    print(f"wrote {path} ({fmt}, {precision}) in {took:.0f} s{_export_size_and_peak(path)}", file=sys.stderr)
    return 0


def _export_size_and_peak(path):
    """``", 83 MB, peak RSS 2.1 GB"``: the written file's size (a SavedModel folder's total)
    and this process's peak resident memory (``VmHWM``; left out where /proc has none)."""
    from pathlib import Path

    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    words = f", {sum(p.stat().st_size for p in files) / 1e6:.0f} MB"
    try:
        with open("/proc/self/status") as status:
            peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
        words += f", peak RSS {peak / 1e9:.1f} GB"
    except (OSError, StopIteration, ValueError):
        pass
    return words


def cmd_list(args):
    """The zoo as a table (column widths from the content); WEIGHTS says whether the weights
    are in the cache (by file name: nothing is downloaded or hashed)."""
    from kerasep.zoo import registry, weights

    rows = [("NAME", "STEMS", "LICENCE", "WEIGHTS", "DESCRIPTION")]
    for name in registry.available():
        entry = registry.MODELS[name]
        key = entry.get("weights")
        cached = "-" if key is None else "cached" if weights.is_cached(key) else "download"
        rows.append((name, ", ".join(registry.stems(name)), entry["license"], cached, entry["description"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    print(f"weights cache: {weights.home() / 'weights'}", file=sys.stderr)
    return 0


def _train_overrides(cfg, args):
    """The ``kerasep train`` flags applied to a loaded config (the flags win); a flag the
    config's data source has no use for raises ConfigError naming it."""
    from kerasep.train import ConfigError

    d, t = cfg["data"], cfg["training"]
    folder = d["source"] == "folder"
    for flag, given in (("--is-wav", args.is_wav), ("--no-split", args.no_split)):
        if given and folder:
            raise ConfigError(f"{flag} applies to data.source 'musdb'; this config reads a folder of stems "
                              "(data.source 'folder': any audio extension, no official split). Use --subset "
                              "for a sub-folder such as MUSDB18-HQ's test/")
    if args.is_wav:
        d["is_wav"] = True
    if args.subset is not None:
        for which in ("train", "valid"):
            part = dict(d[which] or {}, subset=args.subset)
            if not folder:  # MUSDB18's official split only exists for its train subset
                part["split"] = which if args.subset == "train" and not args.no_split else None
            d[which] = part
    elif args.no_split:
        for which in ("train", "valid"):
            d[which] = dict(d[which] or {}, split=None)
    if args.seq_duration is not None:
        d["seq_duration"] = args.seq_duration
        if d["valid_seq_duration"] is not None:  # validation in chunks: the same length
            d["valid_seq_duration"] = args.seq_duration
    for key, value in (("batch_size", args.batch_size), ("samples_per_track", args.samples_per_track),
                       ("cache_dir", args.cache_dir)):
        if value is not None:
            d[key] = value
    for key, value in (("lr", args.lr), ("seed", args.seed), ("strategy", args.strategy)):
        if value is not None:
            t[key] = value
    return cfg


def cmd_train(args):
    import math

    from kerasep import train as _train
    from kerasep.data import DatasetError
    from kerasep.zoo import WeightsError

    try:
        cfg = _train_overrides(_train.load_config(args.config), args)
        spec = _train.model_spec(cfg["model"])
        if spec["zoo"] and not spec["pretrained"]:
            print(f"kerasep train: {spec['zoo']!r} from scratch (its architecture, untrained); "
                  f"fine-tune its pretrained weights with \"model\": {{\"zoo\": \"{spec['zoo']}\", "
                  "\"pretrained\": true}", file=sys.stderr)
        output = args.output or cfg.get("output_dir") or str(Path("runs") / Path(args.config).stem)
        _, history = _train.train(cfg, args.data, output_dir=output, epochs=args.epochs,
                                  verbose=0 if args.quiet else "auto")
    except (_train.ConfigError, DatasetError) as exc:
        print(f"kerasep train: {exc}", file=sys.stderr)
        return 2
    except WeightsError as exc:
        print(f"kerasep train: pretrained weights: {exc}", file=sys.stderr)
        return 1
    # the history covers every epoch of the run folder (a rerun of a finished run included)
    losses = [v for v in history.get("val_loss", []) if v is not None and math.isfinite(v)]
    best = f"best val_loss {min(losses):.5g}" if losses else "no validation loss recorded"
    print(f"kerasep train: wrote {Path(output) / 'model.keras'} ({best})", file=sys.stderr)
    return 0


def cmd_evaluate(args):
    from kerasep import evaluate as _evaluate
    from kerasep import zoo
    from kerasep.data import DatasetError

    output = args.output or str(Path("evaluation") / _evaluate.results_name(args.model))
    earlier = _evaluate.existing_results(output, args.subset)
    if earlier and not args.overwrite:  # before loading the model or separating anything
        print(f"kerasep evaluate: {output} holds earlier results ({', '.join(map(str, earlier[:3]))}"
              f"{', ...' if len(earlier) > 3 else ''}); use --overwrite to replace them, or -o for another folder",
              file=sys.stderr)
        return 1
    try:
        model = zoo.load(args.model, weights=args.weights)
        _evaluate.evaluate(model, args.musdb, output, subset=args.subset, split=args.split, is_wav=args.is_wav,
                           tracks=args.tracks, chunk_seconds=args.chunk_seconds, plots=not args.no_plots,
                           overwrite=args.overwrite)
    except FileExistsError as exc:
        print(f"kerasep evaluate: {exc}", file=sys.stderr)
        return 1
    except (KeyError, FileNotFoundError, zoo.WeightsError, DatasetError, ValueError) as exc:
        print(f"kerasep evaluate: {_cli_words(exc)}", file=sys.stderr)
        return 2
    print(f"kerasep evaluate: results in {output}", file=sys.stderr)
    return 0
