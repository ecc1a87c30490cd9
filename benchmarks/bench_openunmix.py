"""Speed and memory of Open-Unmix (umxhq architecture) on CPU: kerasep TF, kerasep ONNX and the
``openunmix`` PyTorch package, side by side, same weights, same input, one run each.

In one run, on a real input (the MUSDB18 test track's mixture looped to ``--seconds``, 60 s by
default; openunmix runs at about 3x real time on a loaded 2-core machine):

- the same weights in all three engines: random umxhq-size weights (4 targets, hidden 512,
  max_bin 1487; ``--weights FOLDER`` takes real ``{target}-{hash}.pth`` files instead), converted
  with :mod:`kerasep.zoo.converters.openunmix`;
- ours (TF): ``kerasep.inference.separate_array`` with the default chunking (cross-faded chunks on
  Wiener-window borders), Wiener ``niter=1``, ``wiener_win_len=300``;
- ours (ONNX): the single-file export (STFT, target models, Wiener, iSTFT in one graph) run by
  :mod:`kerasep.export.runner` with its default chunking;
- openunmix: ``openunmix.model.Separator(niter=1, wiener_win_len=300)`` on the whole input, as
  its ``predict.separate`` does (torch threads = cores);

each engine in a fresh subprocess that prints its processing time and its peak resident memory
(VmHWM); then the peak memory of ``kerasep separate`` (TF, and ``--backend onnx``) on a
``--rss-seconds`` WAV (600 s = 10 min by default; ``benchmarks/rss_cli.py``), as a user runs it.
The TF time includes tracing the graph once. Printed: real-time factors (processing seconds / audio seconds, lower is faster), the
speed-ups of ours over openunmix (target: ONNX >= 1.2x), peak RSS of each (target for ours:
< 3 GB on a 10-minute input) and the SDR between our TF output and openunmix's.

Usage (repository root; needs the ``test`` extra, openunmix installed with ``--no-deps``)::

    python benchmarks/bench_openunmix.py [--seconds 60] [--rss-seconds 600] [--engines tf onnx torch]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import rss_cli  # noqa: E402
TRACK = REPO.parent / "shared" / "data" / "musdb18hq-mini" / "test" / "The Easton Ellises - Falcon 69" / "mixture.wav"
TARGETS = ["vocals", "drums", "bass", "other"]
RATE = 44100
RSS_TARGET_BYTES = 3 * 1024**3


def looped_input(seconds):
    """The real mixture ``(nb_timesteps, 2)`` float32 looped to ``seconds``."""
    import numpy as np
    import soundfile as sf

    mix, rate = sf.read(TRACK, dtype="float32")
    assert rate == RATE
    n = int(seconds * RATE)
    return np.ascontiguousarray(np.tile(mix, (-(-n // mix.shape[0]), 1))[:n])


def _torch_models(workdir):
    sys.path.insert(0, str(REPO))
    from tests.reference.openunmix_ref import import_openunmix, random_openunmix

    import_openunmix()
    import torch

    from kerasep.zoo.converters import openunmix as convert

    models = {}
    for k, t in enumerate(TARGETS):
        m = random_openunmix(k, 2049, 2, 512, 3, max_bin=1487)
        files = sorted(Path(workdir).glob(f"{t}*.pth"))
        if files:
            m.load_state_dict({k_: torch.from_numpy(v) for k_, v in convert.read_state_dict(files[0]).items()},
                              strict=False)
        models[t] = m.eval()
    return models


def _chunk():
    value = os.environ.get("KERASEP_BENCH_CHUNK_SECONDS")
    return float(value) if value else None  # None: each engine's default


def child(engine, seconds, workdir, out):
    """Fresh process: separate the input with one engine; write time, RSS and (a slice of) stems."""
    import numpy as np

    mix = looped_input(seconds)
    result = {}
    if engine == "tf":
        from kerasep import zoo
        from kerasep.inference import separate_array

        model = zoo.load(str(Path(workdir) / "umx.keras"))
        start = time.perf_counter()
        stems = separate_array(mix, model, chunk_seconds=_chunk())
    elif engine == "onnx":
        from kerasep.export import runner

        model = runner.OnnxSeparator(str(Path(workdir) / "umx.onnx"))
        start = time.perf_counter()
        stems = runner.separate_array(model, mix, chunk_seconds=_chunk())
    else:
        import torch

        torch.set_num_threads(os.cpu_count())
        sys.path.insert(0, str(REPO))
        from tests.reference.openunmix_ref import import_openunmix

        model_mod, _ = import_openunmix()
        models = _torch_models(workdir)
        sep = model_mod.Separator(models, niter=1, wiener_win_len=300, n_fft=4096, n_hop=1024,
                                  nb_channels=2).eval()
        start = time.perf_counter()
        with torch.no_grad():
            y = sep(torch.from_numpy(mix.T.copy())[None]).numpy()[0]
        stems = {t: y[j].T for j, t in enumerate(TARGETS)}
    result["seconds"] = time.perf_counter() - start
    result["peak_rss"] = rss_cli.peak_rss_bytes()
    np.savez(out, **{t: stems[t] for t in TARGETS})
    print(json.dumps(result))


def prepare(workdir, weights):
    """Weights into every engine's format: ``.pth`` (openunmix), ``.keras`` (TF), ``.onnx``."""
    import shutil

    import torch

    from kerasep import export
    from kerasep.models import OpenUnmixSeparator
    from kerasep.zoo.converters import openunmix as convert

    if weights:
        for t in TARGETS:
            shutil.copy(convert.find_target_file(weights, t), Path(workdir) / f"{t}.pth")
    models = _torch_models(workdir)
    for t, m in models.items():
        torch.save(m.state_dict(), Path(workdir) / f"{t}.pth")
    states = {t: m.state_dict() for t, m in models.items()}
    config = convert.convert_config(states)
    model = OpenUnmixSeparator(**config, niter=1, wiener_win_len=300)
    model.build((None, 2, None))
    convert.convert_weights(model, states)
    model.save(Path(workdir) / "umx.keras")
    export.export(model, Path(workdir) / "umx.onnx")
    return config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="input length of the speed comparison (default 60)")
    parser.add_argument("--engines", nargs="+", default=["tf", "onnx", "torch"], choices=["tf", "onnx", "torch"])
    parser.add_argument("--rss-seconds", type=float, default=600.0,
                        help="input length of the peak-memory runs of ours (default 600 = 10 min)")
    parser.add_argument("--chunk-seconds", type=float,
                        help="chunk length for ours (default: 20 s for Open-Unmix in TF and in the ONNX runner)")
    parser.add_argument("--workdir", help="keep the converted/exported weights here (reused if present)")
    parser.add_argument("--weights", help="folder with real {target}-{hash}.pth files (default: random)")
    parser.add_argument("--child", nargs=4, metavar=("ENGINE", "SECONDS", "WORKDIR", "OUT"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--prepare", metavar="WORKDIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.prepare:
        config = prepare(args.prepare, args.weights)
        (Path(args.prepare) / "config.json").write_text(json.dumps(config))
        return None
    if args.child:
        engine, seconds, workdir, out = args.child
        return child(engine, float(seconds), workdir, out)

    import platform

    import numpy as np

    if args.chunk_seconds:
        os.environ["KERASEP_BENCH_CHUNK_SECONDS"] = str(args.chunk_seconds)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"input: {TRACK.parent.name}/{TRACK.name} looped to {args.seconds:.0f} s (speed) and "
          f"{args.rss_seconds:.0f} s (memory); chunks for ours: "
          f"{args.chunk_seconds or 'default (20 s, TF and ONNX runner)'}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or tmp
        Path(workdir).mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        if not (Path(workdir) / "umx.onnx").is_file():
            # in a subprocess: conversion and export need torch + TF + tf2onnx (GBs), which this
            # parent process must not keep while the engines run
            cmd = [sys.executable, __file__, "--prepare", workdir] + (["--weights", args.weights] if args.weights else [])
            subprocess.run(cmd, check=True, capture_output=True)
            config = json.loads((Path(workdir) / "config.json").read_text())
            print(f"weights: {'real from ' + args.weights if args.weights else 'random'} "
                  f"(hidden {config['hidden_size']}, max_bin {config['max_bin']}), converted + exported "
                  f"in {time.perf_counter() - start:.0f} s", flush=True)
        results, stems = run_engines(args.engines, args.seconds, workdir)
        if "torch" in results:
            for engine in ("tf", "onnx"):
                if engine in results:
                    ratio = results["torch"]["seconds"] / results[engine]["seconds"]
                    print(f"speed-up of ours ({engine}) over openunmix: {ratio:.2f}x"
                          + ("  (target >= 1.2x)" if engine == "onnx" else ""))
            for engine in ("tf", "onnx"):
                if engine in stems:
                    vals = []
                    for t in TARGETS:
                        ref, est = stems["torch"][t], stems[engine][t]
                        vals.append(10 * np.log10(np.sum(ref**2) / np.sum((ref - est) ** 2)))
                    print(f"SDR ours ({engine}, chunked) vs openunmix (whole file): "
                          + ", ".join(f"{t} {v:.1f} dB" for t, v in zip(TARGETS, vals)), flush=True)
        ours = [e for e in ("tf", "onnx") if e in args.engines]
        if args.rss_seconds and ours:
            long = rss_cli.make_input(args.rss_seconds, Path(workdir) / "long.wav", source=TRACK)
            for engine in ours:
                cmd = ["separate", long, "-o", Path(workdir) / "out", "-q", "--overwrite"]
                cmd += ["-m", Path(workdir) / "umx.keras"] if engine == "tf" else \
                       ["--backend", "onnx", "-m", Path(workdir) / "umx.onnx"]
                if args.chunk_seconds:
                    cmd += ["--chunk-seconds", args.chunk_seconds]
                code, rss, err = rss_cli.run_measured(cmd)
                if code or rss is None:
                    print(f"peak RSS ours ({engine}): `kerasep separate` failed (rc={code}): {err[-1500:]}")
                    continue
                print(f"peak RSS ours ({engine}), `kerasep separate` of a {args.rss_seconds / 60:.1f}-min WAV "
                      f"(decode, separate, write): {rss / 1024**3:.2f} GB (target < "
                      f"{RSS_TARGET_BYTES / 1024**3:.0f} GB on 10 min): {'OK' if rss < RSS_TARGET_BYTES else 'OVER'}",
                      flush=True)

def run_engines(engines, seconds, workdir):
    import numpy as np

    results, stems = {}, {}
    for engine in engines:
        out = Path(workdir) / f"{engine}.npz"
        cmd = [sys.executable, __file__, "--child", engine, str(seconds), workdir, str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
        if proc.returncode != 0 or not lines:
            print(f"{engine}: FAILED (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}", flush=True)
            continue
        results[engine] = json.loads(lines[-1])
        stems[engine] = dict(np.load(out))
        r = results[engine]
        print(f"{engine:>5}: {r['seconds']:.1f} s for {seconds:.0f} s audio, "
              f"RTF {r['seconds'] / seconds:.3f}, peak RSS {r['peak_rss'] / 1024**3:.2f} GB", flush=True)
    return results, stems

if __name__ == "__main__":
    main()
