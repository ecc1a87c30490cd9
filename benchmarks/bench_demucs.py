"""Demucs on CPU: kerasep (TensorFlow and single-file ONNX in onnxruntime) vs the demucs package
(PyTorch), same weights, same input, in one run; then the peak memory of separating a long input.

    python benchmarks/bench_demucs.py                       # 16 channels, 10 min memory run
    python benchmarks/bench_demucs.py --channels 64 --skip-onnx   # released v2 size, TF vs PyTorch
    python benchmarks/bench_demucs.py --seconds 5 --rss-minutes 1   # quick

The ONNX export goes through tf2onnx (kerasep.export) in a subprocess (``kerasep.export.export``
of the model saved as ``.keras``), which reports its own peak RSS and time; the released 64-channel
size (265.6 M parameters, a 1.06 GB file) exports in about 9 GiB (measured numbers:
zoo/demucs/card.md). The default size (16 channels) keeps the whole run short.

The reference is ``demucs.demucs.Demucs`` of the installed demucs package, configured as the
released v2 network (depth 6, 2-layer BLSTM, GLU rewrites, ×2 resampling, no DConv branches,
ReLU, no norm) with random weights; kerasep's model gets the same weights through
``kerasep.zoo.converters.demucs``. Each engine separates the same stereo excerpt (the real
MUSDB18 track of ../shared/data, repeated to ``--seconds``) in one call, after a warm-up call;
the best of ``--repeats`` timings is reported as a real-time factor (compute time / audio
duration; lower is faster), and speed-ups relative to PyTorch.

Peak RSS: a subprocess separates ``--rss-minutes`` minutes of audio with ``kerasep.separate``
(segments of ``segment_seconds`` with 25 % overlap) and reports its ``ru_maxrss``.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TRACK = REPO.parent / "shared" / "data" / "musdb18hq-mini" / "test" / "The Easton Ellises - Falcon 69" / "mixture.wav"
SOURCES = ["drums", "bass", "other", "vocals"]


def _audio(seconds, rate=44100):
    import soundfile as sf

    x, sr = sf.read(TRACK, dtype="float32")
    assert sr == rate
    n = int(seconds * rate)
    reps = -(-n // x.shape[0])
    return np.tile(x, (reps, 1))[:n]  # (nb_timesteps, 2)


def _best(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _reference(channels, depth, seed=0):
    import torch
    import demucs.demucs as dd

    torch.manual_seed(seed)
    kwargs = dict(channels=channels, depth=depth, lstm_layers=2, dconv_mode=0, gelu=False, norm_starts=99,
                  context=1, normalize=False, rewrite=True, glu=True, resample=True)
    return dd.Demucs(SOURCES, **kwargs).eval(), kwargs


def bench(args):
    import torch

    from kerasep.inference import _compiled
    from kerasep.models.demucs import Demucs
    from kerasep.zoo.converters import demucs as conv

    torch.set_num_threads(os.cpu_count())
    ref, kwargs = _reference(args.channels, args.depth)
    state = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    config = conv.convert_config({"klass": "demucs.demucs.Demucs", "args": [SOURCES], "kwargs": kwargs,
                                  "state": state})
    model = Demucs(**config)
    model.build((None, 2, None))
    conv.convert_weights(model, state)
    params = model.count_params()
    mix = _audio(args.seconds)
    x = np.ascontiguousarray(mix.T)[None]  # (1, 2, nb_timesteps)
    warm = x[..., : 44100 * 2]
    duration = mix.shape[0] / 44100
    print(f"model: Demucs channels={args.channels} depth={args.depth} ({params / 1e6:.1f} M parameters); "
          f"input {duration:.1f} s stereo 44.1 kHz; CPU threads: {os.cpu_count()}")

    results = {}
    with torch.no_grad():
        xt = torch.from_numpy(x)
        ref(torch.from_numpy(warm))
        results["demucs PyTorch"] = _best(lambda: ref(xt), args.repeats)
        expected = ref(xt).numpy()
    print(f"demucs PyTorch: {results['demucs PyTorch']:.2f} s", flush=True)

    fn = _compiled(model)
    fn(warm)
    results["kerasep TF"] = _best(lambda: fn(x), args.repeats)
    print(f"kerasep TF: {results['kerasep TF']:.2f} s", flush=True)
    ours = fn(x)
    diff_tf = max(float(np.abs(ours[t].numpy() - expected[:, i]).max() / np.abs(expected[:, i]).max())
                  for i, t in enumerate(SOURCES))

    diff_onnx = None
    if args.skip_onnx:
        print("ONNX skipped (--skip-onnx)")
    try:
        if args.skip_onnx:
            raise ImportError("--skip-onnx")
        import onnxruntime as ort

        import tf2onnx  # noqa: F401
    except ImportError as exc:
        if not args.skip_onnx:
            print(f"ONNX skipped: {exc}")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "demucs.onnx"
            report = _export_child(model, Path(tmp) / "demucs.keras", path)
            print(f"ONNX export (subprocess: load .keras, tf2onnx, check, onnxruntime smoke test): "
                  f"{report['seconds']:.1f} s, {path.stat().st_size / 1e6:.0f} MB, "
                  f"peak RSS {report['peak_rss_bytes'] / 2**30:.2f} GiB", flush=True)
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            name = sess.get_inputs()[0].name
            outs = [o.name for o in sess.get_outputs()]
            sess.run(None, {name: warm})
            results["kerasep ONNX"] = _best(lambda: sess.run(None, {name: x}), args.repeats)
            got = dict(zip(outs, sess.run(None, {name: x})))
            diff_onnx = max(float(np.abs(got[t] - expected[:, i]).max() / np.abs(expected[:, i]).max())
                            for i, t in enumerate(SOURCES))

    base = results["demucs PyTorch"]
    print(f"{'engine':16s} {'seconds':>8s} {'RTF':>7s} {'speed-up vs PyTorch':>20s}")
    for label, t in results.items():
        print(f"{label:16s} {t:8.2f} {t / duration:7.3f} {base / t:19.2f}x")
    print(f"max relative difference vs PyTorch: TF {diff_tf:.2e}"
          + (f", ONNX {diff_onnx:.2e}" if diff_onnx is not None else ""))
    return results


def _export_child(model, keras_path, onnx_path):
    """Export ``model`` to ``onnx_path`` in a fresh process (through a ``.keras`` file): returns
    its ``{"seconds", "peak_rss_bytes"}`` (the export's own peak, not this benchmark's)."""
    model.save(keras_path)
    code = ("import json, sys, time\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            "import kerasep.models\n"
            "from kerasep import export\n"
            "t0 = time.perf_counter()\n"
            f"export.export({str(keras_path)!r}, {str(onnx_path)!r})\n"
            "seconds = time.perf_counter() - t0\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
            "print(json.dumps({'seconds': seconds, 'peak_rss_bytes': int(hwm) * 1024}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    keras_path.unlink()
    if proc.returncode != 0:
        print(proc.stderr[-2000:])
        raise SystemExit("ONNX export subprocess failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _peak_rss():
    """This process's peak resident memory in bytes: VmHWM (reset by exec, unlike ru_maxrss,
    which a child inherits from its parent's peak at exec time on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss_child(args):
    """Runs in a subprocess: separate --rss-minutes of audio, print peak RSS (JSON)."""
    import kerasep
    from kerasep.models.demucs import Demucs

    model = Demucs(channels=args.channels, depth=args.depth, variant="v3", context=1,
                   segment_seconds=args.segment)
    model.build((None, 2, None))
    mix = _audio(args.rss_minutes * 60)
    t0 = time.perf_counter()
    stems = kerasep.separate(mix, model=model, shifts=args.shifts)
    elapsed = time.perf_counter() - t0
    assert all(s.shape == mix.shape for s in stems.values())
    peak = _peak_rss()
    print(json.dumps({"peak_rss_bytes": peak, "seconds": elapsed, "audio_seconds": mix.shape[0] / 44100}))


def rss(args):
    cmd = [sys.executable, __file__, "--rss-child", "--channels", str(args.channels), "--depth", str(args.depth),
           "--rss-minutes", str(args.rss_minutes), "--segment", str(args.segment), "--shifts", str(args.shifts)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-2000:])
        raise SystemExit("RSS subprocess failed")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    gb = out["peak_rss_bytes"] / 2**30
    print(f"peak RSS separating {out['audio_seconds'] / 60:.1f} min (kerasep.separate, TF, segments of "
          f"{args.segment:g} s, shifts={args.shifts}): {gb:.2f} GiB "
          f"({'<' if gb < 3 else '>='} 3 GiB target); took {out['seconds']:.0f} s "
          f"(RTF {out['seconds'] / out['audio_seconds']:.3f})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=16,
                        help="first-layer channels (released v2: 64; its ONNX export needs ~9 GiB)")
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the timed input")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rss-minutes", type=float, default=10.0, help="0 to skip the memory run")
    parser.add_argument("--segment", type=float, default=10.0, help="segment length for the memory run")
    parser.add_argument("--shifts", type=int, default=0, help="shifts for the memory run")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-onnx", action="store_true")
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    if args.rss_child:
        return _rss_child(args)
    if not args.skip_speed:
        bench(args)
    if args.rss_minutes > 0:
        rss(args)


if __name__ == "__main__":
    main()
