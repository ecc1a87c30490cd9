"""Peak resident memory and time of one chunk through an exported separator in onnxruntime, in a
process that loads nothing else (no TensorFlow, no torch): the memory the ONNX backend needs per
chunk, which the band-split RoFormers' score tensors dominate.

Usage (from the repository root; one file per process, so that each peak is its own)::

    python benchmarks/onnx_chunk_rss.py FILE.onnx [--seconds 8] [--input MIXTURE]

Prints the file, the chunk length, the session's load time, the run time, the load average and
``ru_maxrss`` (peak RSS of this process) after loading and after the run.
"""
import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("onnx")
    parser.add_argument("--seconds", type=float, default=8.0, help="chunk length (the RoFormers' chunk_size: 8 s)")
    parser.add_argument("--input", default=str(REPO.parent / "shared" / "data" / "mixtures" / "audio_example.mp3"))
    args = parser.parse_args(argv)

    from kerasep.export.runner import OnnxSeparator
    from kerasep.export.runner.audio_io import load_audio

    start = time.perf_counter()
    session = OnnxSeparator(args.onnx)
    loaded = time.perf_counter() - start
    mix = load_audio(args.input, session.sample_rate, session.nb_channels)
    n = int(args.seconds * session.sample_rate)
    mix = np.tile(mix, (-(-n // mix.shape[0]), 1))[:n]
    x = np.ascontiguousarray(mix.T[None], dtype=np.float32)
    after_load = peak_mib()
    before = "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    start = time.perf_counter()
    session(x)
    took = time.perf_counter() - start
    print(f"{Path(args.onnx).name}: {n} samples; session {loaded:.1f} s, peak RSS {after_load:.0f} MiB after loading; "
          f"one chunk {took:.1f} s, peak RSS {peak_mib():.0f} MiB ({before} -> "
          "load {:.2f} {:.2f} {:.2f})".format(*os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
