"""Command line: ``kerasep separate``, ``kerasep list``, ``kerasep train``, ``kerasep evaluate``.

Only this module (and the training recipes) parse flags; everything else takes plain kwargs.
"""
import argparse
import functools
import os
import sys
import tempfile
from pathlib import Path


def _example_path():
    try:
        import stempeg
    except ImportError:
        raise SystemExit(
            "kerasep: --example needs the `stempeg` package (it ships the example song): "
            "pip install 'kerasep[musdb]'"
        )
    return stempeg.example_stem_path()


def cmd_separate(args):
    from kerasep import audio, diskaudio, inference, zoo
    from kerasep.export.runner import output_paths

    inputs = list(args.inputs)
    if args.example:
        inputs.append(_example_path())
    if not inputs:
        print("kerasep separate: give at least one INPUT file or --example", file=sys.stderr)
        return 2
    if args.backend == "onnx":
        return _separate_onnx(args, inputs)
    # Validate everything cheap before loading the model: missing inputs, existing outputs.
    missing = [p for p in inputs if not Path(p).is_file()]
    if missing:
        print(f"kerasep separate: no such input file(s): {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    name = args.model
    targets = None
    if not str(name).endswith((".keras", ".th")):
        try:
            targets = zoo.registry.stems(name)
        except KeyError as exc:
            print(f"kerasep separate: {exc.args[0]}", file=sys.stderr)
            return 2
        if args.two_stems is not None:
            if args.two_stems not in targets:
                print(f"kerasep separate: --two-stems must be one of {targets} for {name}. "
                      f"Received: {args.two_stems!r}", file=sys.stderr)
                return 2
            targets = [args.two_stems, f"no_{args.two_stems}"]
    if targets is not None and not args.overwrite:
        for inp in inputs:
            existing = [str(p) for p in output_paths(inp, args.output, targets, args.format).values() if p.exists()]
            if existing:
                print(f"kerasep separate: output exists: {', '.join(existing)} (use --overwrite to replace)",
                      file=sys.stderr)
                return 1
    try:
        model = zoo.load(name, weights=args.weights)
    except (zoo.WeightsError, FileNotFoundError, ValueError) as exc:
        print(f"kerasep separate: {exc}", file=sys.stderr)
        return 1
    targets = model.stems
    if args.two_stems is not None:
        if args.two_stems not in targets:
            print(f"kerasep separate: --two-stems must be one of {targets}. Received: {args.two_stems!r}",
                  file=sys.stderr)
            return 2
        targets = [args.two_stems, f"no_{args.two_stems}"]
    failures = 0
    for inp in inputs:
        # The input, the stems and their intermediates live in raw files in a temporary folder
        # (removed afterwards): memory stays bounded by one chunk whatever the song's length.
        with tempfile.TemporaryDirectory(prefix="kerasep-separate-") as tmp:
            try:
                mix = diskaudio.decode_to_disk(inp, tmp, sample_rate=model.sample_rate,
                                               nb_channels=model.nb_channels, downmix=args.downmix)
                print(f"{inp}: {mix.shape[0] / model.sample_rate:.1f} s", file=sys.stderr)
                stems = inference.separate_array(mix, model, chunk_seconds=args.chunk_seconds,
                                                 progress=not args.quiet, shifts=args.shifts,
                                                 two_stems=args.two_stems, seed=args.seed,
                                                 alloc=functools.partial(diskaudio.DiskArray.zeros, directory=tmp))
                for t, path in output_paths(inp, args.output, targets, args.format).items():
                    audio.save_blocks(path, stems[t].blocks(), model.sample_rate, model.nb_channels,
                                      subtype=args.subtype, overwrite=args.overwrite)
                    print(f"  wrote {path}", file=sys.stderr)
            except audio.AudioError as exc:
                print(f"kerasep separate: {exc}", file=sys.stderr)
                failures += 1
    return 1 if failures else 0


def _onnx_model_path(name, weights):
    """A ``.onnx`` path as is; a zoo name is exported once into ``$KERASEP_HOME/onnx/``."""
    if str(name).endswith(".onnx"):
        return Path(name)
    from kerasep import export, zoo
    from kerasep.zoo.weights import home

    if str(name).endswith(".keras"):
        raise ValueError(f"--backend onnx needs a zoo name or an .onnx file; export {name} first "
                         "with `kerasep export MODEL --format onnx -o MODEL.onnx`")
    zoo.info(name)  # KeyError for unknown names
    path = home() / "onnx" / f"{name}.onnx"
    if not path.is_file():
        print(f"exporting {name} to {path}", file=sys.stderr)
        export.export(name, path, format="onnx", weights=weights)
    return path


def _separate_onnx(args, inputs):
    """``kerasep separate --backend onnx``: the standalone onnxruntime runner (no TensorFlow
    at inference time)."""
    from kerasep.export import runner

    missing = [p for p in inputs if not Path(p).is_file()]
    if missing:
        print(f"kerasep separate: no such input file(s): {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    try:
        model = runner.OnnxSeparator(_onnx_model_path(args.model, args.weights))
    except KeyError as exc:
        print(f"kerasep separate: {exc.args[0]}", file=sys.stderr)
        return 2
    except (runner.RunnerError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"kerasep separate: {exc}", file=sys.stderr)
        return 1
    failures = 0
    for inp in inputs:
        try:
            paths = runner.separate_file(model, inp, args.output, args.format, overwrite=args.overwrite,
                                         chunk_seconds=args.chunk_seconds, progress=not args.quiet,
                                         subtype=args.subtype)
            for path in paths.values():
                print(f"  wrote {path}", file=sys.stderr)
        except runner.RunnerError as exc:
            print(f"kerasep separate: {exc}", file=sys.stderr)
            failures += 1
    return 1 if failures else 0


def cmd_export(args):
    from kerasep import export

    precision = "float16" if args.fp16 else "int8" if args.int8 else "float32"
    fmt = args.format or export.guess_format(args.output)
    try:
        path = export.export(args.model, args.output, format=fmt, precision=precision,
                             overwrite=args.overwrite, weights=args.weights, with_runner=args.with_runner)
    except KeyError as exc:
        print(f"kerasep export: {exc.args[0]}", file=sys.stderr)
        return 2
    except (ValueError, FileExistsError, FileNotFoundError, RuntimeError) as exc:
        print(f"kerasep export: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path} ({fmt}, {precision})", file=sys.stderr)
    return 0


def cmd_list(args):
    from kerasep.zoo import registry

    for name in registry.available():
        entry = registry.MODELS[name]
        print(f"{name:22s} {', '.join(registry.stems(name)):28s} "
              f"{entry['license']:8s} {entry['description']}")
    return 0


def cmd_train(args):
    from kerasep import train as _train
    from kerasep.data import DatasetError

    try:
        cfg = _train.load_config(args.config)
        if args.seed is not None:
            cfg["training"]["seed"] = args.seed
        if args.strategy is not None:
            cfg["training"]["strategy"] = args.strategy
        output = args.output or cfg.get("output_dir") or str(Path("runs") / Path(args.config).stem)
        _, history = _train.train(cfg, args.data, output_dir=output, epochs=args.epochs,
                                  verbose=0 if args.quiet else "auto")
    except (_train.ConfigError, DatasetError) as exc:
        print(f"kerasep train: {exc}", file=sys.stderr)
        return 2
    best = min(history.get("val_loss", [float("nan")]))
    print(f"kerasep train: wrote {Path(output) / 'model.keras'} (best val_loss {best:.5g})", file=sys.stderr)
    return 0


def cmd_evaluate(args):
    from kerasep import evaluate as _evaluate
    from kerasep import zoo
    from kerasep.data import DatasetError

    name = Path(args.model).stem if str(args.model).endswith(".keras") else args.model
    output = args.output or str(Path("evaluation") / name)
    try:
        model = zoo.load(args.model, weights=args.weights)
        _evaluate.evaluate(model, args.musdb, output, subset=args.subset, split=args.split, is_wav=args.is_wav,
                           tracks=args.tracks, chunk_seconds=args.chunk_seconds, plots=not args.no_plots)
    except (KeyError, FileNotFoundError, zoo.WeightsError, DatasetError, ValueError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"kerasep evaluate: {msg}", file=sys.stderr)
        return 2
    print(f"kerasep evaluate: results in {output}", file=sys.stderr)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="kerasep", description="Music source separation with Keras.")
    sub = parser.add_subparsers(dest="command", required=True)

    sep = sub.add_parser("separate", help="separate audio files into stems")
    sep.add_argument("inputs", nargs="*", metavar="INPUT", help="audio files (wav/flac/ogg/mp3/m4a/stem.mp4)")
    sep.add_argument("--example", action="store_true",
                     help="also separate the real song excerpt shipped with stempeg")
    sep.add_argument("-m", "--model", default="unet-2stems", help="zoo name or .keras file (default unet-2stems)")
    sep.add_argument("-o", "--output", default="separated", help="output folder (default ./separated)")
    sep.add_argument("--format", choices=["wav", "flac"], default="wav")
    sep.add_argument("--subtype", choices=["PCM_16", "PCM_24", "FLOAT"], default=None,
                     help="sample format (default PCM_16)")
    sep.add_argument("--chunk-seconds", type=float, default=None,
                     help="process at most S seconds at a time (bounded memory; default 60, "
                          "Open-Unmix 20, Demucs: its segment length)")
    sep.add_argument("--shifts", type=int, default=0, metavar="N",
                     help="average N runs on randomly shifted input (demucs' shift trick; default 0)")
    sep.add_argument("--seed", type=int, default=None, help="seed of the random --shifts")
    sep.add_argument("--two-stems", default=None, metavar="STEM",
                     help="write only STEM and no_STEM (the sum of the other stems), e.g. vocals")
    sep.add_argument("--weights", default=None,
                     help="local weights: a folder, the official release archive or file, or the wheel")
    sep.add_argument("--overwrite", action="store_true", help="replace existing output files")
    sep.add_argument("--downmix", action="store_true", help="accept >2 channels by mixing down")
    sep.add_argument("--backend", choices=["keras", "onnx"], default="keras")
    sep.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sep.set_defaults(func=cmd_separate)

    exp = sub.add_parser("export", help="export a model to .keras, SavedModel or single-file ONNX")
    exp.add_argument("model", help="zoo name or .keras file")
    exp.add_argument("-o", "--output", required=True,
                     help="output path: MODEL.onnx, MODEL.keras or a SavedModel folder")
    exp.add_argument("--format", choices=["keras", "saved_model", "onnx"], default=None,
                     help="default: from the output path (.onnx, .keras, else saved_model)")
    precision = exp.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="ONNX: float16 network (STFT stays float32)")
    precision.add_argument("--int8", action="store_true", help="ONNX: dynamic int8 quantisation")
    exp.add_argument("--weights", default=None, help="local weights for a zoo name (as for separate)")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing output")
    exp.add_argument("--with-runner", action="store_true",
                     help="ONNX: also write run_onnx.py (the TensorFlow-free runner) beside the model")
    exp.set_defaults(func=cmd_export)

    lst = sub.add_parser("list", help="list the zoo's models")
    lst.set_defaults(func=cmd_list)

    trn = sub.add_parser("train", help="train a model from a JSON config (model.fit, resumable)")
    trn.add_argument("config", metavar="CONFIG", help="training config JSON (see zoo/unet-2stems/train_config.json)")
    trn.add_argument("--data", required=True, help="dataset root: MUSDB18(-HQ) folder or stem folder")
    trn.add_argument("-o", "--output", default=None,
                     help="run folder (model.keras, checkpoints, backup, logs); rerun to resume")
    trn.add_argument("--epochs", type=int, default=None, help="override training.epochs")
    trn.add_argument("--seed", type=int, default=None, help="override training.seed")
    trn.add_argument("--strategy", choices=["auto", "default", "mirrored", "multiworker"], default=None,
                     help="override training.strategy")
    trn.add_argument("-q", "--quiet", action="store_true", help="one line per epoch instead of progress bars")
    trn.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="BSSEval v4 (museval) and MDX SDR on MUSDB18")
    ev.add_argument("model", metavar="MODEL", help="zoo name or .keras file")
    ev.add_argument("--musdb", required=True, help="MUSDB18 root folder")
    ev.add_argument("--subset", choices=["train", "test"], default="test")
    ev.add_argument("--split", choices=["train", "valid"], default=None, help="official split of the train subset")
    ev.add_argument("--is-wav", action="store_true", help="MUSDB18-HQ (WAV folders)")
    ev.add_argument("--tracks", nargs="*", default=None, help="only these track names")
    ev.add_argument("-o", "--output", default=None, help="results folder (default evaluation/<model>)")
    ev.add_argument("--chunk-seconds", type=float, default=None)
    ev.add_argument("--weights", default=None, help="local weights for a zoo model")
    ev.add_argument("--no-plots", action="store_true")
    ev.set_defaults(func=cmd_evaluate)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
