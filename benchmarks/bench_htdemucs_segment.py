"""One released-size HT-Demucs segment (7.8 s) through each engine: the micro-benchmark the ONNX
export's speed work is measured with.

The same seeded random weights everywhere (``families.htdemucs_pair``: demucs 4.1.0's HTDemucs,
converted to kerasep's), the same input (the real mixture ``audio_example.mp3`` looped to one
training segment, 343980 samples, batch 1). Engines, alternating within every repeat after one
warm-up each, the load average printed around every timed run:

- ``torch``: demucs' ``HTDemucs.forward`` on the segment (no ``apply_model``: one segment);
- ``kerasep-onnx``: kerasep's export (``$KERASEP_HOME/onnx/`` cache, made once) in the runner's
  session (:class:`kerasep.export.runner.OnnxSeparator`, its session options);
- ``demucs-onnx``: the demucs-onnx 0.3.4 package's export of the same torch model in a default
  onnxruntime session;
- ``--onnx PATH`` (repeatable): another kerasep-layout file (input ``waveform``) in the runner's
  session, labelled by its file name; ``--arena``: kerasep's export once more with
  ``enable_cpu_mem_arena`` on.

Printed: median seconds per engine, torch / engine (> 1: faster than demucs PyTorch), and the
largest relative difference of each kerasep session's stems from the Keras model's on the
segment (``max |onnx - keras| / max |keras|``).

Usage (from the repository root)::

    KERASEP_HOME=~/.cache/kerasep python benchmarks/bench_htdemucs_segment.py [--repeats 5] [--onnx FILE]
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))
import families  # noqa: E402

RATE = 44100


def load():
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def segment_input(model, source):
    """The real mixture looped to one training segment, ``(1, 2, training_length)`` float32."""
    from kerasep import audio

    mix = audio.load(source, sample_rate=RATE, nb_channels=2)
    n = int(model.training_length)
    return np.ascontiguousarray(np.tile(mix, (-(-n // mix.shape[0]), 1))[:n].T[None]).astype(np.float32)


def kerasep_session(path, arena=False):
    """``path`` in the runner's session; ``arena`` turns onnxruntime's CPU memory arena back on."""
    import onnxruntime as ort

    from kerasep.export import runner

    separator = runner.OnnxSeparator(path)
    if not arena:
        return separator.session
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_cpu_mem_arena = True
    return ort.InferenceSession(str(path), options, providers=separator.session.get_providers())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per engine (median kept)")
    parser.add_argument("--onnx", action="append", default=[], help="another kerasep-layout .onnx file to time")
    parser.add_argument("--arena", action="store_true", help="also time kerasep's export with the CPU arena on")
    parser.add_argument("--no-reference", action="store_true", help="skip torch and demucs-onnx")
    parser.add_argument("--input", default=str(families.MIXTURE), help="real mixture to loop")
    parser.add_argument("--torch-threads", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)

    import platform

    import onnxruntime as ort
    import torch

    from kerasep.export.cache import cached_export

    torch.set_num_threads(args.torch_threads)
    print(f"machine: {platform.machine()} {os.cpu_count()} cores; onnxruntime {ort.__version__}; torch "
          f"{torch.__version__} ({args.torch_threads} threads); {load()}")
    ref, model, kwargs = families.htdemucs_pair("released")
    x = segment_input(model, args.input)
    print(f"HTDemucs {kwargs}, seeded random weights; input: {Path(args.input).name} looped to {x.shape[2]} "
          f"samples ({x.shape[2] / RATE:g} s), {args.repeats} repeat(s), engines alternating")
    reference = {k: np.asarray(v) for k, v in model(x, training=False).items()}
    engines, parity = {}, {}
    if not args.no_reference:
        def run_torch():
            with torch.no_grad():
                return ref(torch.from_numpy(x))

        engines["torch"] = run_torch
    ours = [("kerasep-onnx", cached_export(model), False)]
    if args.arena:
        ours.append(("kerasep-onnx (arena)", ours[0][1], True))
    ours += [(Path(p).name, p, False) for p in args.onnx]
    for label, path, arena in ours:
        session = kerasep_session(path, arena)
        names = [o.name for o in session.get_outputs()]
        got = dict(zip(names, session.run(None, {"waveform": x})))
        scale = max(float(np.max(np.abs(v))) for v in reference.values())
        parity[label] = max(float(np.max(np.abs(got[t] - reference[t]))) for t in reference) / scale
        engines[label] = lambda s=session: s.run(None, {"waveform": x})
    if not args.no_reference:
        donnx = families.demucs_onnx_session(ref)
        if donnx is None:
            print("demucs-onnx: not installed (pip install --no-deps demucs-onnx)")
        else:
            engines["demucs-onnx"] = lambda: donnx.run(["stems"], {"mix": x})
    for fn in engines.values():  # warm-up: allocators, first-run initialisation
        fn()
    times = {name: [] for name in engines}
    for r in range(args.repeats):
        for name, fn in engines.items():
            before = load()
            start = time.perf_counter()
            fn()
            took = time.perf_counter() - start
            times[name].append(took)
            print(f"  repeat {r + 1}, {name}: {took:.3f} s ({before} -> {load()})", flush=True)
    base = statistics.median(times["torch"]) if "torch" in times else None
    print("\n| engine | seconds (median) | torch / engine | parity vs Keras |\n|---|---|---|---|")
    for name, values in times.items():
        took = statistics.median(values)
        ratio = f"{base / took:.2f}x" if base else "—"
        print(f"| {name} | {took:.3f} | {ratio} | {parity[name]:.1e} |" if name in parity
              else f"| {name} | {took:.3f} | {ratio} | — |")
    print(f"\n{load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
