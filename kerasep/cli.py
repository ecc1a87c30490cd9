"""Command line: ``kerasep separate``, ``kerasep list``, ``kerasep train``, ``kerasep evaluate``.

Only this module (and the training recipes) parse flags; everything else takes plain kwargs.
"""
import argparse
import functools
import hashlib
import json
import os
import re
import shutil
import sys
import threading
import time
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


#: Extensions ``kerasep separate FOLDER`` picks up (what kerasep.audio decodes).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".opus", ".aiff", ".aif", ".m4a", ".m4b",
                    ".mp4", ".aac", ".ac3", ".alac", ".mka", ".wma", ".webm")
DEFAULT_GLOB = "*"


def _fail(code, message, prog="kerasep separate"):
    print(f"{prog}: {message}", file=sys.stderr)
    return code


def _expand_inputs(inputs, pattern, outdir):
    """``(files, error)``: files given as is, folders replaced by the audio files matching
    ``pattern`` inside them (sorted; the output folder's own files left out), the same file
    once; ``error`` a ``(code, message)`` or None."""
    files, missing, seen = [], [], set()
    out = Path(outdir).absolute()
    for inp in inputs:
        path = Path(inp)
        if path.is_dir():
            found = sorted(f for f in path.glob(pattern)
                           if f.is_file() and f.name.lower().endswith(AUDIO_EXTENSIONS)
                           and not f.name.startswith(".") and out not in f.absolute().parents)
            if not found:
                hint = " (subfolders too: --glob '**/*.wav')" if "**" not in pattern else ""
                return None, (2, f"no audio files in folder {path} matching --glob {pattern!r}{hint}; "
                                 f"extensions looked for: {' '.join(AUDIO_EXTENSIONS)}")
            print(f"{path}: {len(found)} audio file(s) found (--glob {pattern!r})", file=sys.stderr)
        elif path.is_file():
            found = [path]
        elif path.exists():  # a device, a FIFO, a socket
            return None, (2, f"{path}: not a regular file or folder; expected an audio file or a folder of them")
        else:
            missing.append(str(inp))
            continue
        for f in found:
            key = os.path.realpath(f)
            if key not in seen:
                seen.add(key)
                files.append(f)
    if missing:
        return None, (2, f"no such input file(s) or folder(s): {', '.join(missing)}")
    return files, None


def _check_plan(files, outdir):
    """Before any work: two inputs whose stems would go to one folder, an output folder that is
    a file or cannot be written. A ``(code, message)`` or None."""
    from kerasep.export.runner import output_name

    out = Path(outdir)
    if out.exists() and not out.is_dir():
        return 2, f"--output: {out} is a file, expected a folder"
    folders = {}
    for f in files:
        folders.setdefault(out / output_name(f), []).append(f)
    for folder, sources in folders.items():
        if len(sources) > 1:
            return 2, (f"{' and '.join(map(str, sources))} would all be written to {folder}{os.sep}; "
                       "separate them into different --output folders, or rename one")
        if folder.exists() and not folder.is_dir():
            return 2, f"cannot write the stems of {sources[0]} to {folder}: it is a file, expected a folder"
        anchor = folder
        while not anchor.exists() and anchor.parent != anchor:
            anchor = anchor.parent
        if not anchor.is_dir():
            return 2, f"cannot write to {folder}: {anchor} is a file, expected a folder"
        if not os.access(anchor, os.W_OK | os.X_OK):
            return 2, f"cannot write to {folder}: no write permission in {anchor}"
    return None


def _check_existing(files, outdir, stems, fmt, overwrite):
    """Outputs that exist (refused without --overwrite): a ``(code, message)`` or None."""
    from kerasep.export.runner import output_paths

    if overwrite:
        return None
    existing = [str(p) for f in files for p in output_paths(f, outdir, stems, fmt).values() if p.exists()]
    if existing:
        return 1, f"output exists: {', '.join(existing)} (use --overwrite to replace)"
    return None


def _final_stems(targets, args):
    """The stems to write (``--two-stems``, then ``--stems``): ``(stems, error)``."""
    from kerasep.export.runner import RunnerError, select_stems

    try:
        return select_stems(targets, args.stems, args.two_stems), None
    except RunnerError as exc:
        return None, (2, str(exc))


def _plan_stems(targets, files, args):
    """``(stems, error)``: the stems to write among ``targets`` and, when that is fine, existing
    outputs refused without --overwrite."""
    stems, error = _final_stems(targets, args)
    return stems, error or _check_existing(files, args.output, stems, args.format, args.overwrite)


def _check_zoo_stems(name, files, args):
    """For a zoo name, the registry's stems checked before the model is loaded or exported: a
    ``(code, message)`` or None."""
    from kerasep.zoo import registry

    try:
        targets = registry.stems(name)
    except KeyError as exc:
        return 2, exc.args[0]
    return _plan_stems(targets, files, args)[1]


def _check_format(args):
    """--format/--subtype/--bitrate/--quality together, before any work."""
    from kerasep.export.runner import RunnerError, check_subtype, encoder_options

    try:
        if args.subtype is not None and args.format in ("mp3", "ogg"):
            raise RunnerError(f"--subtype applies to --format wav or flac; {args.format} is encoded "
                              "(use --bitrate / --quality)")
        check_subtype(args.format, args.subtype)
        encoder_options(args.format, 44100, args.bitrate, args.quality)
    except RunnerError as exc:
        return 2, str(exc)
    return None


def cmd_separate(args):
    from kerasep import zoo

    inputs = list(args.inputs)
    if args.example:
        inputs.append(_example_path())
    if not inputs:
        return _fail(2, "give at least one INPUT file or folder, or --example")
    files, error = _expand_inputs(inputs, args.glob or DEFAULT_GLOB, args.output)
    error = error or _check_format(args) or _check_plan(files, args.output)
    if error:
        return _fail(*error)
    if args.backend == "onnx":
        return _separate_onnx(args, files)
    # Everything cheap is checked before loading the model: inputs, outputs, flags; the stems
    # of a zoo name come from the registry, those of a file once it is loaded (before any work).
    name = args.model
    error = None if str(name).endswith((".keras", ".th")) else _check_zoo_stems(name, files, args)
    if error:
        return _fail(*error)
    try:
        model = _load_model(name, args)
    except (zoo.WeightsError, FileNotFoundError, ValueError) as exc:
        return _fail(1, _cli_words(exc))
    stems, error = _plan_stems(model.stems, files, args)
    if error:
        return _fail(*error)
    from kerasep import audio, diskaudio, inference
    from kerasep.export.runner import os_error_message, output_paths

    failures = 0
    for inp in files:
        # The input, the stems and their intermediates live in raw files in a work folder
        # ($KERASEP_HOME/tmp/kerasep-separate-<pid>-<start>-<random>, removed afterwards; a
        # killed run's is removed by the next one): memory stays bounded by one chunk whatever the
        # song's length. The stems are renamed into place together once all are complete.
        tmp = None
        try:
            tmp = work_folder()
            mix = diskaudio.decode_to_disk(inp, tmp, sample_rate=model.sample_rate,
                                           nb_channels=model.nb_channels, downmix=args.downmix,
                                           allow_truncated=args.allow_truncated)
            print(f"{inp}: {mix.shape[0] / model.sample_rate:.1f} s", file=sys.stderr)
            paths = output_paths(inp, args.output, stems, args.format)
            _check_space(tmp, paths, mix, model, args, inp)
            out = inference.separate_array(mix, model, chunk_seconds=args.chunk_seconds,
                                           progress=not args.quiet, shifts=args.shifts,
                                           two_stems=args.two_stems, seed=args.seed,
                                           alloc=functools.partial(diskaudio.DiskArray.zeros, directory=tmp))
            audio.save_stems(paths, {t: out[t].blocks() for t in paths}, model.sample_rate, model.nb_channels,
                             subtype=args.subtype, overwrite=args.overwrite,
                             bitrate=args.bitrate, quality=args.quality)
            for path in paths.values():
                print(f"  wrote {path}", file=sys.stderr)
        except audio.AudioError as exc:
            print(f"kerasep separate: {_cli_words(exc)}", file=sys.stderr)
            failures += 1
        except OSError as exc:  # the work folder: a full disk, no permission
            print(f"kerasep separate: {inp}: {os_error_message(exc, exc.filename or tmp, 'writing')}",
                  file=sys.stderr)
            failures += 1
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures else 0


def _check_space(tmp, paths, mix, model, args, inp):
    """Before separating ``inp``: room in the work folder for the model's stems (raw float32)
    and, where the size is known (wav, constant-bitrate mp3), in the output folder for the
    stems to write; AudioError saying how much is needed and free."""
    from kerasep.audio import AudioError
    from kerasep.export.runner import check_free_space, estimated_bytes

    n, channels = mix.shape[0], model.nb_channels
    check_free_space(tmp, n * channels * 4 * len(model.stems), f"the intermediates of {inp}", AudioError)
    size = estimated_bytes(args.format, args.subtype, n, channels, model.sample_rate, args.bitrate, args.quality)
    if size is not None:
        check_free_space(next(iter(paths.values())).parent, size * len(paths), f"the stems of {inp}", AudioError)


def work_folder():
    """A new work folder under ``$KERASEP_HOME/tmp`` (:func:`kerasep.export.runner.work_folder`:
    named after this process, the leftovers of dead processes removed first)."""
    from kerasep.export.runner import work_folder as _work_folder
    from kerasep.zoo.weights import home

    return _work_folder(home() / "tmp", "separate")


def _load_model(name, args):
    """``zoo.load`` of a name or file; a demucs ``.th`` with ``--trust`` through the full
    unpickler (only for a file from a source the user trusts)."""
    from kerasep import zoo

    if str(name).endswith(".th") and getattr(args, "trust", False):
        from kerasep.zoo.converters import htdemucs

        return htdemucs.load_th(name, trust=True)
    if getattr(args, "trust", False):
        raise ValueError("--trust applies to a demucs .th checkpoint given as -m/--model")
    return zoo.load(name, weights=args.weights)


#: Python keywords in library messages and the flags that say the same on the command line.
_CLI_WORDS = (("trust=True", "--trust"), ("downmix=True", "--downmix"),
              ("allow_truncated=True", "--allow-truncated"), ("overwrite=True", "--overwrite"))


def _cli_words(exc):
    """A library error as the command line says it: ``--weights PATH: ...`` for the weights
    the user named, flags instead of Python keywords (``--trust`` for ``trust=True``)."""
    user_path = getattr(exc, "user_path", None)
    text = f"--weights {user_path}: {exc.detail}" if user_path is not None else str(
        exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)
    for keyword, flag in _CLI_WORDS:
        text = text.replace(f" ({flag} on the command line)", "").replace(keyword, flag)
    return text


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
    record = onnx_cache_record(name)
    path = home() / "onnx" / f"{name}-{record['key']}.onnx"
    reason = _onnx_cache_problem(path, record)
    if reason is not None:
        if reason != "first run":
            print(f"kerasep: the cached export {path} {reason}; exporting again", file=sys.stderr)
        print(f"exporting {name} to {path} ({'first run only, ' if reason == 'first run' else ''}~1 min)",
              file=sys.stderr)
        start = time.monotonic()
        export.export(name, path, format="onnx", weights=weights, overwrite=True)
        from kerasep.evaluate import _atomic_write
        from kerasep.zoo.weights import sha256sum

        _atomic_write(_onnx_record_path(path), json.dumps(dict(record, onnx_sha256=sha256sum(path)), indent=2))
        print(f"exported {name} in {time.monotonic() - start:.0f} s", file=sys.stderr)
    return path


def onnx_cache_record(name):
    """What a cached ONNX export of zoo model ``name`` depends on: kerasep's, tf2onnx's and
    onnx's versions, the model's registry entry and its weights' sha256; ``key`` (16 hex digits of
    their sha256) names the file, so a change in any of them means another export."""
    from importlib import metadata

    from kerasep.zoo import registry

    versions = {}
    for package in ("kerasep", "tf2onnx", "onnx"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    entry = registry.MODELS[name]
    source = entry.get("weights")
    weights = dict(registry.weight_source(source)["files"]) if source else {}
    record = {"model": name, "entry": entry, "versions": versions, "weights_sha256": weights}
    text = json.dumps(record, sort_keys=True, default=str)
    return dict(record, key=hashlib.sha256(text.encode()).hexdigest()[:16])


def _onnx_record_path(path):
    return Path(path).with_suffix(".json")


def _onnx_cache_problem(path, record):
    """None when the cached export ``path`` is there and matches its recorded sha256 and
    ``record``; else why it cannot be used."""
    from kerasep.zoo.weights import sha256sum

    if not path.is_file():
        return "first run"
    try:
        saved = json.loads(_onnx_record_path(path).read_text())
    except (OSError, ValueError):
        return f"has no readable record {_onnx_record_path(path).name} (its sha256 and what it was made from)"
    if not isinstance(saved, dict):
        return f"has an invalid record {_onnx_record_path(path).name}"
    for field in ("versions", "weights_sha256", "key"):
        if saved.get(field) != json.loads(json.dumps(record[field], default=str)):
            return f"was made for other {field.replace('_', ' ')} ({saved.get(field)}, now {record[field]})"
    found = sha256sum(path)
    if saved.get("onnx_sha256") != found:
        return f"does not match its recorded sha256 (expected {saved.get('onnx_sha256')}, found {found})"
    return None


def _separate_onnx(args, files):
    """``kerasep separate --backend onnx``: the standalone onnxruntime runner (no TensorFlow
    at inference time)."""
    from kerasep.export import runner

    if args.shifts:
        return _fail(2, "--shifts is not available with --backend onnx (use --backend keras)")
    name = args.model
    # a zoo name: stems and outputs checked before the (first run's) export
    error = None if str(name).endswith((".onnx", ".keras")) else _check_zoo_stems(name, files, args)
    if error:
        return _fail(*error)
    try:
        model = runner.OnnxSeparator(_onnx_model_path(name, args.weights))
    except KeyError as exc:
        return _fail(2, exc.args[0])
    except (runner.RunnerError, ValueError, FileNotFoundError, RuntimeError) as exc:
        return _fail(1, _cli_words(exc))
    stems, error = _plan_stems(model.targets, files, args)
    if error:
        return _fail(*error)
    failures = 0
    for inp in files:
        try:
            paths = runner.separate_file(model, inp, args.output, args.format, overwrite=args.overwrite,
                                         chunk_seconds=args.chunk_seconds, progress=not args.quiet,
                                         subtype=args.subtype, stems=args.stems, two_stems=args.two_stems,
                                         bitrate=args.bitrate, quality=args.quality,
                                         allow_truncated=args.allow_truncated)
            for path in paths.values():
                print(f"  wrote {path}", file=sys.stderr)
        except runner.RunnerError as exc:
            print(f"kerasep separate: {_cli_words(exc)}", file=sys.stderr)
            failures += 1
        except OSError as exc:
            print(f"kerasep separate: {inp}: {runner.os_error_message(exc, exc.filename or args.output)}",
                  file=sys.stderr)
            failures += 1
    return 1 if failures else 0


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
    print(f"wrote {path} ({fmt}, {precision}) in {time.monotonic() - start:.0f} s", file=sys.stderr)
    return 0


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


def positive_int(text):
    """``argparse`` type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1. Received: {text!r}")
    return value


def positive_float(text):
    """``argparse`` type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0. Received: {text!r}")
    return value


def nonnegative_int(text):
    """``argparse`` type: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0. Received: {text!r}")
    return value


def any_int(text):
    """``argparse`` type: a whole number."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number. Received: {text!r}") from None


def seconds(text):
    """``argparse`` type: a finite number of seconds > 0."""
    from kerasep.export.runner import positive_seconds

    return positive_seconds(text)


def unit_interval(text):
    """``argparse`` type: a number in [0, 1]."""
    from kerasep.export.runner import unit_interval as _unit

    return _unit(text)


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


def build_parser():
    parser = argparse.ArgumentParser(prog="kerasep", description="Music source separation with Keras.")
    sub = parser.add_subparsers(dest="command", required=True)

    sep = sub.add_parser("separate", help="separate audio files into stems")
    sep.add_argument("inputs", nargs="*", metavar="INPUT",
                     help="audio files (wav/flac/ogg/mp3/m4a/stem.mp4) or folders of them (see --glob)")
    sep.add_argument("--glob", default=None, metavar="PATTERN",
                     help="which files of a folder INPUT to separate, sorted (default '*': its top level; "
                          "'**/*.wav': every WAV below it)")
    sep.add_argument("--example", action="store_true",
                     help="also separate the real song excerpt shipped with stempeg")
    sep.add_argument("-m", "--model", default="unet-2stems",
                     help="zoo name, .keras file (or .onnx file with --backend onnx); default unet-2stems")
    sep.add_argument("-o", "--output", default="separated",
                     help="output folder (default ./separated): OUTPUT/<name>/<stem>.<format>, <name> the "
                          "input's name, or its folder's for a MUSDB18-HQ <track>/mixture.wav; two inputs "
                          "with one <name> are refused before any work")
    sep.add_argument("--format", choices=["wav", "flac", "mp3", "ogg"], default="wav",
                     help="output format (default wav)")
    sep.add_argument("--subtype", choices=["PCM_16", "PCM_24", "FLOAT"], default=None,
                     help="wav/flac sample format (default PCM_16; FLOAT: wav only)")
    sep.add_argument("--bitrate", default=None, metavar="KBPS",
                     help="mp3: constant bitrate, exact (default 320k; 32k..320k, e.g. 192k). Not for ogg: "
                          "libsndfile writes Vorbis with variable bitrate only, use --quality")
    sep.add_argument("--quality", type=float, default=None, metavar="Q",
                     help="mp3/ogg: variable bitrate at quality Q in [0, 1], 1 best (ogg default: "
                          "libsndfile's)")
    sep.add_argument("--stems", default=None, metavar="A,B",
                     help="write only these of the final stems (after --two-stems), e.g. vocals,drums")
    sep.add_argument("--chunk-seconds", type=seconds, default=None,
                     help="process at most S seconds at a time (bounded memory; default 60, "
                          "Open-Unmix 20, Demucs: its segment length)")
    sep.add_argument("--shifts", type=nonnegative_int, default=0, metavar="N",
                     help="average N runs on randomly shifted input (demucs' shift trick; default 0)")
    sep.add_argument("--seed", type=any_int, default=None, help="seed of the random --shifts")
    sep.add_argument("--two-stems", default=None, metavar="STEM",
                     help="write only STEM and no_STEM (the sum of the other stems), e.g. vocals")
    sep.add_argument("--weights", default=None,
                     help="local weights: a folder, the official release archive or file, or the wheel")
    sep.add_argument("--overwrite", action="store_true", help="replace existing output files")
    sep.add_argument("--downmix", action="store_true", help="accept >2 channels by mixing down")
    sep.add_argument("--allow-truncated", action="store_true",
                     help="separate what decodes of an input shorter than its container declares (cut or "
                          "damaged; default: refused, naming both lengths)")
    sep.add_argument("--trust", action="store_true",
                     help="-m FILE.th: load a demucs checkpoint that needs the full unpickler (runs code the "
                          "file names: only for files from a source you trust)")
    sep.add_argument("--backend", choices=["keras", "onnx"], default="keras",
                     help="onnx: onnxruntime, no TensorFlow at inference (a zoo name is exported once "
                          "into $KERASEP_HOME/onnx/)")
    sep.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
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
    trn.add_argument("config", metavar="CONFIG", help="training config JSON (zoo/unet-2stems/train_config.json: from scratch; "
                          "zoo/unet-2stems/finetune_config.json: from the pretrained weights)")
    trn.add_argument("--data", required=True, help="dataset root: MUSDB18(-HQ) folder or stem folder")
    trn.add_argument("-o", "--output", default=None,
                     help="run folder (model.keras, checkpoints, backup, logs); rerun to resume")
    trn.add_argument("--epochs", type=positive_int, default=None, help="override training.epochs")
    trn.add_argument("--lr", type=positive_float, default=None, help="override training.lr")
    trn.add_argument("--batch-size", type=positive_int, default=None, help="override data.batch_size")
    trn.add_argument("--seq-duration", type=positive_float, default=None, metavar="SECONDS",
                     help="override data.seq_duration (training chunks; validation chunks too unless "
                          "the config validates whole tracks)")
    trn.add_argument("--samples-per-track", type=positive_int, default=None,
                     help="override data.samples_per_track (chunks per track and epoch)")
    trn.add_argument("--subset", default=None,
                     help="train and validate on this subset: MUSDB18 'train'/'test' (official split "
                          "of 'train' unless --no-split), or a sub-folder of a stem folder")
    trn.add_argument("--no-split", action="store_true",
                     help="MUSDB18: no official train/valid split (train and validate on the whole subset)")
    trn.add_argument("--is-wav", action="store_true", help="MUSDB18-HQ (WAV folders) instead of .stem.mp4")
    trn.add_argument("--cache-dir", default=None, help="override data.cache_dir (decoded tracks on disk)")
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
    ev.add_argument("-o", "--output", default=None,
                    help="results folder (default evaluation/NAME: NAME the run folder of runs/NAME/model.keras, "
                         "else the model file's stem or the zoo name)")
    ev.add_argument("--overwrite", action="store_true", help="replace earlier results in the results folder")
    ev.add_argument("--chunk-seconds", type=seconds, default=None)
    ev.add_argument("--weights", default=None, help="local weights for a zoo model")
    ev.add_argument("--no-plots", action="store_true")
    ev.set_defaults(func=cmd_evaluate)
    for command in sub.choices.values():
        command.add_argument("-v", "--verbose", action="store_true",
                             help="keep TensorFlow's C++ log lines (off by default)")
    return parser


class _StderrFilter:
    """Drops TensorFlow's C++ log lines (absl/glog format ``I0000 00:00:... file.cc:12] ...``,
    absl's "All log messages before absl::InitializeLog()" line) from file descriptor 2 while
    the command runs; everything else is passed through as it comes (progress bars included).
    TF_CPP_MIN_LOG_LEVEL=3 silences most of them, but TensorFlow 2.17+ logs a few with absl
    before reading it (``cudart_stub.cc``, the InitializeLog line), which no variable stops."""

    NOISE = re.compile(rb"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^ \]]+:\d+\] "
                       rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
                       rb"|To enable the following instructions: )")
    STARTS = (b"I0", b"W0", b"E0", b"WARNING: All log", b"To enable the following")

    def __init__(self):
        sys.stderr.flush()
        self.saved = os.dup(2)
        read, write = os.pipe()
        os.dup2(write, 2)
        os.close(write)
        self.read = read
        self.thread = threading.Thread(target=self._pump, name="kerasep-stderr-filter", daemon=True)
        self.thread.start()

    def _maybe_noise(self, partial):
        return len(partial) < 512 and any(s.startswith(partial[: len(s)]) for s in self.STARTS)

    def _write(self, data):
        while data:
            data = data[os.write(self.saved, data):]

    def _pump(self):
        buf, passing = b"", False
        while True:
            try:
                data = os.read(self.read, 65536)
            except OSError:
                data = b""
            if not data:
                break
            buf += data
            while buf:
                ends = [i for i in (buf.find(b"\n"), buf.find(b"\r")) if i >= 0]
                if ends:
                    i = min(ends) + 1
                    line, buf = buf[:i], buf[i:]
                    if passing or not self.NOISE.match(line):
                        self._write(line)
                    passing = False
                elif passing or not self._maybe_noise(buf):
                    self._write(buf)
                    buf, passing = b"", True
                else:
                    break
        if buf and not self.NOISE.match(buf):
            self._write(buf)
        os.close(self.read)

    def close(self):
        try:
            sys.stderr.flush()
        except Exception:
            pass
        os.dup2(self.saved, 2)  # closes the pipe's write end: the thread sees its end
        self.thread.join(timeout=5)
        os.close(self.saved)


def main(argv=None):
    """``kerasep COMMAND ...``. TensorFlow's C++ logs are off unless ``-v`` or the user's own
    TF_CPP_MIN_LOG_LEVEL (below 3) asks for them; progress bars show on a terminal unless ``-q``."""
    args = build_parser().parse_args(argv)
    quiet_tf = not args.verbose and os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3") == "3"
    if quiet_tf:
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    try:
        terminal = sys.stderr.isatty()  # decided now: fd 2 is a pipe once the filter is on
    except (AttributeError, ValueError):
        terminal = False
    stderr_filter = None
    if quiet_tf:
        try:
            stderr_filter = _StderrFilter()
        except (OSError, ValueError, AttributeError):  # no file descriptor 2 (embedded use)
            stderr_filter = None
    import warnings

    from kerasep.export import runner

    saved_interface, runner.INTERFACE["name"] = runner.INTERFACE["name"], "cli"  # messages name flags
    saved_showwarning = warnings.showwarning
    prog = f"kerasep {args.command}"

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, UserWarning) and not issubclass(category, DeprecationWarning):
            print(f"{prog}: warning: {message}", file=sys.stderr)
        else:
            saved_showwarning(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning
    try:
        from kerasep.zoo import weights

        weights.progress = terminal and not getattr(args, "quiet", False)
        if args.command == "train":  # the training driver handles its own interruptions
            return args.func(args)
        with runner.cleanup_on_sigterm():  # SIGTERM: temporaries removed, outputs rolled back
            return args.func(args)
    finally:
        runner.INTERFACE["name"] = saved_interface
        warnings.showwarning = saved_showwarning
        if stderr_filter is not None:
            stderr_filter.close()


if __name__ == "__main__":
    sys.exit(main())
