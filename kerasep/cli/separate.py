"""``kerasep separate``, both backends (keras; onnx: the cached ONNX export and the
onnxruntime runner)."""
import functools
import json
import os
import shutil
import sys
import time
from pathlib import Path

from kerasep.cli.backend import auto_engine, cache_problem, record_path, say
from kerasep.cli.backend import onnx_cache_record as cache_record
from kerasep.cli.console import _cli_words, _fail


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
# -m files that are loaded before their stems are known (a zoo name's come from the registry)
MODEL_FILE_SUFFIXES = (".keras", ".th", ".yaml", ".yml", ".ckpt")


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
    from kerasep.export.runner import RunnerError

    inputs = list(args.inputs)
    if args.example:
        inputs.append(_example_path())
    if not inputs:
        return _fail(2, "give at least one INPUT file or folder, or --example")
    files, error = _expand_inputs(inputs, args.glob or DEFAULT_GLOB, args.output)
    error = error or _check_format(args) or _check_plan(files, args.output)
    if error:
        return _fail(*error)
    if args.backend == "onnx" or str(args.model).endswith(".onnx"):
        return _separate_onnx(args, files)
    # Everything cheap is checked before loading the model: inputs, outputs, flags; the stems
    # of a zoo name come from the registry, those of a file once it is loaded (before any work).
    name = args.model
    error = None if str(name).endswith(MODEL_FILE_SUFFIXES) else _check_zoo_stems(name, files, args)
    if error:
        return _fail(*error)
    try:
        if args.backend == "auto":
            session, model, reason = auto_engine(args, lambda: _load_model(name, args))
            if session is not None:
                say(args, f"backend: onnx (onnxruntime; {session.path})")
                return _run_onnx(args, files, session)
            say(args, f"backend: keras ({reason})")
        else:
            model = _load_model(name, args)
    except KeyError as exc:
        return _fail(2, exc.args[0])
    except (zoo.WeightsError, FileNotFoundError, ValueError, RunnerError) as exc:
        words = _cli_words(exc)
        if str(name).endswith(MODEL_FILE_SUFFIXES) and not words.startswith("--"):
            words = f"-m/--model: {words}"
        return _fail(1, words)
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

    if getattr(args, "trust", False):
        from kerasep.zoo.converters import htdemucs

        if str(name).endswith(".th"):
            return htdemucs.load_th(name, trust=True)
        if str(name).endswith((".yaml", ".yml")):
            return htdemucs.load_bag(name, folder=args.weights, trust=True)
        raise ValueError("--trust applies to a demucs .th checkpoint or bag .yaml given as -m/--model")
    if getattr(args, "config", None) is not None:  # an MSST RoFormer .ckpt and its YAML
        return zoo.load(name, weights=args.weights, config=args.config)
    return zoo.load(name, weights=args.weights)



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


# The cache's record, its file and its check (kerasep.cli.backend; kept here by these names).
onnx_cache_record, _onnx_record_path, _onnx_cache_problem = cache_record, record_path, cache_problem


def _separate_onnx(args, files):
    """``kerasep separate --backend onnx``: the standalone onnxruntime runner (no TensorFlow
    at inference time)."""
    if args.shifts:
        return _fail(2, "--shifts is not available with --backend onnx (use --backend keras)")
    name = args.model
    # a zoo name: stems and outputs checked before the (first run's) export
    error = None if str(name).endswith((".onnx", ".keras")) else _check_zoo_stems(name, files, args)
    if error:
        return _fail(*error)
    try:
        path = _onnx_model_path(name, args.weights)
    except KeyError as exc:
        return _fail(2, exc.args[0])
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        return _fail(1, _cli_words(exc))
    return _run_onnx(args, files, path)


def _decode_to_disk(tmp, downmix, path, sample_rate, nb_channels, allow_truncated):
    """The runner's ``opener`` for inputs it cannot read itself: :func:`kerasep.diskaudio.decode_to_disk`."""
    from kerasep import diskaudio

    return diskaudio.decode_to_disk(path, tmp, sample_rate=sample_rate, nb_channels=nb_channels, downmix=downmix,
                                    allow_truncated=allow_truncated)


def _run_onnx(args, files, path):
    """Separate ``files`` with the ONNX file ``path`` (or an ``OnnxSeparator`` of it) in the
    TensorFlow-free runner."""
    from kerasep.export import runner

    try:
        model = path if isinstance(path, runner.OnnxSeparator) else runner.OnnxSeparator(path)
    except (runner.RunnerError, ValueError, FileNotFoundError, RuntimeError) as exc:
        return _fail(1, _cli_words(exc))
    stems, error = _plan_stems(model.targets, files, args)
    if error:
        return _fail(*error)
    from kerasep import audio

    failures = 0
    for inp in files:
        print(f"{inp}: separating", file=sys.stderr)  # as the Keras path names each input first
        tmp = None
        try:
            opener = None
            if args.downmix or Path(inp).suffix.lower() not in runner.READABLE:
                # what the runner's soundfile reader cannot take (.mp4, .m4a, more channels to mix
                # down): decoded by ffmpeg into a disk-backed array, as on the Keras path
                tmp = work_folder()
                opener = functools.partial(_decode_to_disk, tmp, args.downmix)
            paths = runner.separate_file(model, inp, args.output, args.format, overwrite=args.overwrite,
                                         chunk_seconds=args.chunk_seconds, progress=not args.quiet,
                                         subtype=args.subtype, stems=args.stems, two_stems=args.two_stems,
                                         bitrate=args.bitrate, quality=args.quality,
                                         allow_truncated=args.allow_truncated, opener=opener)
            for path in paths.values():
                print(f"  wrote {path}", file=sys.stderr)
        except runner.RunnerError as exc:
            words = _cli_words(exc)
            if "channel(s) (or mono), found" in words:
                words += "; pass --downmix to mix more channels down"
            print(f"kerasep separate: {words}", file=sys.stderr)
            failures += 1
        except audio.AudioError as exc:
            print(f"kerasep separate: {_cli_words(exc)}", file=sys.stderr)
            failures += 1
        except OSError as exc:
            print(f"kerasep separate: {inp}: {runner.os_error_message(exc, exc.filename or args.output)}",
                  file=sys.stderr)
            failures += 1
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures else 0
