"""The command line: :func:`build_parser`, :func:`main`."""
import argparse
import os
import sys

from .common import DEFAULT_CHUNK_SECONDS, DEFAULT_CROSSFADE_CHUNK_SECONDS, INTERFACE, OUTPUT_FORMATS, RunnerError
from .outputs import cleanup_on_sigterm, os_error_message
from .separate import separate_file
from .session import OnnxSeparator


def _prog():
    """The command's name in usage and error messages: ``python -m kerasep.export.runner`` in
    kerasep, else the script's file name (``run_onnx.pyz`` beside an exported model)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name == "kerasep.export.runner.__main__":
        return "python -m kerasep.export.runner"
    if sys.argv and sys.argv[0].endswith((".py", ".pyz")):
        return os.path.basename(sys.argv[0])
    return "run_onnx.pyz"


def number_type(convert, accept, expected):
    """An ``argparse`` type: ``convert(text)`` (``int`` or ``float``) when ``accept(value)``,
    else an error saying ``expected`` and the text as given."""

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}. Received: {text!r}")
        return value

    parse.__doc__ = f"``argparse`` type: {expected}."
    return parse


positive_seconds = number_type(float, lambda v: 0 < v < float("inf"), "a finite number of seconds > 0")
unit_interval = number_type(float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1] (1 best)")


def build_parser():
    parser = argparse.ArgumentParser(
        prog=_prog(), description="Separate audio files with a kerasep ONNX export (no TensorFlow)."
    )
    parser.add_argument("model", help="the .onnx file written by `kerasep export`")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files (wav/flac/ogg/mp3)")
    parser.add_argument("-o", "--output", default="separated", help="output folder (default ./separated)")
    parser.add_argument("--format", choices=list(OUTPUT_FORMATS), default="wav")
    parser.add_argument("--bitrate", default=None, metavar="KBPS",
                        help="mp3 only: constant bitrate, exact, e.g. 320k (default), 192k, 128k")
    parser.add_argument("--quality", type=float, default=None, metavar="Q",
                        help="mp3/ogg: variable bitrate quality in [0, 1], 1 best (ogg Vorbis has no "
                             "exact bitrate setting; default: libsndfile's)")
    parser.add_argument("--stems", default=None, metavar="A,B",
                        help="write only these stems (comma-separated), e.g. vocals")
    parser.add_argument("--chunk-seconds", type=positive_seconds, default=None,
                        help=f"process at most S seconds at a time (default {DEFAULT_CHUNK_SECONDS:g} for "
                             f"models with exact chunking (the U-Net), {DEFAULT_CROSSFADE_CHUNK_SECONDS:g} otherwise)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--allow-truncated", action="store_true",
                        help="separate what decodes of an input shorter than its header declares (default: refused)")
    parser.add_argument("--cpu", action="store_true", help="use the CPU provider even if CUDA is available")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    saved, INTERFACE["name"] = INTERFACE["name"], "cli"
    try:
        with cleanup_on_sigterm():
            return _main(parser, args)
    finally:
        INTERFACE["name"] = saved


def _main(parser, args):
    name = parser.prog.split()[-1]  # "kerasep.export.runner" or "run_onnx.py"
    try:
        model = OnnxSeparator(args.model, providers=["CPUExecutionProvider"] if args.cpu else None)
    except RunnerError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.model}: {', '.join(model.targets)} at {model.sample_rate} Hz on "
          f"{model.session.get_providers()[0]}", file=sys.stderr)
    failures = 0
    for inp in args.inputs:
        try:
            paths = separate_file(model, inp, args.output, args.format, args.overwrite,
                                  args.chunk_seconds, progress=not args.quiet, stems=args.stems,
                                  bitrate=args.bitrate, quality=args.quality,
                                  allow_truncated=args.allow_truncated)
            for p in paths.values():
                print(f"  wrote {p}", file=sys.stderr)
        except RunnerError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            failures += 1
        except OSError as exc:
            print(f"{name}: {os_error_message(exc, exc.filename or args.output, 'separating ' + str(inp) + ' into')}",
                  file=sys.stderr)
            failures += 1
    return 1 if failures else 0
