"""Peak resident memory of one ``kerasep`` command, run in this (fresh) process.

    python benchmarks/rss_cli.py separate long.wav -m unet-2stems -o out -q
    python benchmarks/rss_cli.py --make-input 1800 long.wav    # the real example song looped to 30 min

The first form runs the CLI with those arguments and then prints ``peak RSS (VmHWM): <bytes>``;
the second writes the real mixture of ``../shared/data`` looped to SECONDS into a 16-bit WAV,
block by block (so making a long input costs no memory either). The benchmarks call it in a
subprocess for their memory rows: what it prints is the whole command's peak, decoding and
writing included.
"""
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
MIXTURE = REPO.parent / "shared" / "data" / "mixtures" / "audio_example.mp3"


def peak_rss_bytes():
    """This process's peak resident set size (VmHWM), in bytes (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not in /proc/self/status (Linux only)")


def make_input(seconds, path, rate=44100, source=MIXTURE):
    """Write the real ``source`` looped to ``seconds`` into ``path`` (16-bit WAV) block by
    block; returns ``path``."""
    import soundfile

    from kerasep import audio

    mix = audio.load(source, sample_rate=rate, nb_channels=2)
    n = int(seconds * rate)
    with soundfile.SoundFile(path, "w", rate, 2, subtype="PCM_16") as f:
        for start in range(0, n, len(mix)):
            f.write(mix[: min(len(mix), n - start)])
    return path


def run_measured(argv):
    """Run ``python benchmarks/rss_cli.py ARGV...`` in a subprocess: ``(returncode, peak_bytes,
    stderr)`` (peak is None when the command failed before printing it)."""
    import subprocess

    res = subprocess.run([sys.executable, __file__, *map(str, argv)], capture_output=True, text=True, cwd=REPO)
    peak = [line for line in res.stdout.splitlines() if line.startswith("peak RSS (VmHWM): ")]
    return res.returncode, (int(peak[-1].split()[-1]) if peak else None), res.stderr


def main(argv):
    if argv[:1] == ["--make-input"]:
        make_input(float(argv[1]), argv[2])
        return 0
    from kerasep import cli

    code = cli.main(argv)
    print(f"peak RSS (VmHWM): {peak_rss_bytes()}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
