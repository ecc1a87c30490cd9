"""Command line: ``kerasep separate``, ``kerasep list``, ``kerasep train``, ``kerasep evaluate``.

Its modules: ``args`` (the parser and its argparse types), ``separate`` (both backends),
``commands`` (export, list, train, evaluate), ``console`` (the TF log filter, messages in flags).

Only this package (and the training recipes) parse flags; everything else takes plain kwargs.
"""
import os
import sys

from kerasep.cli.args import (  # noqa: F401  (re-exported: kerasep.cli.NAME as before the split)
    any_int, build_parser, nonnegative_int, positive_float, positive_int, seconds, unit_interval)
from kerasep.cli.commands import _train_overrides, cmd_evaluate, cmd_export, cmd_list, cmd_train  # noqa: F401
from kerasep.cli.console import _CLI_WORDS, _StderrFilter, _cli_words, _fail  # noqa: F401
from kerasep.cli.separate import (  # noqa: F401
    AUDIO_EXTENSIONS, DEFAULT_GLOB, _check_existing, _check_format, _check_plan, _check_space,
    _check_zoo_stems, _example_path, _expand_inputs, _final_stems, _load_model, _onnx_cache_problem,
    _onnx_model_path, _onnx_record_path, _plan_stems, _separate_onnx, cmd_separate, onnx_cache_record,
    work_folder)


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

