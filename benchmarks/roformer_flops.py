"""Compute bound of the band-split RoFormers on this CPU: FLOPs of one chunk, chunks per input
length, the machine's fp32 GEMM throughput, and each engine's achieved GFLOP/s on one chunk.

For the released BS-RoFormer (viperx 1297 / MSST ep_317 layout) or Mel-Band RoFormer (Kimberley
Jensen's layout), the same seeded random weights in every engine (``benchmarks/families.py``):

1. FLOPs of one ``chunk_size`` chunk: ``torch.utils.flop_counter.FlopCounterMode`` on the
   reference (BS-RoFormer 0.3.10; its CPU attention, ``_scaled_dot_product_flash_attention_for_cpu``,
   has no formula in torch's registry, so one is registered here with torch's own ``sdpa_flop_count``),
   checked against an analytic count of every matrix product (band split, attention projections,
   ``QK^T`` and ``AV``, feed-forward, mask MLPs). Only matrix products are counted (the STFTs,
   norms, softmax, rotary and GLU are elementwise or O(n log n): a few percent of the time at most).
2. Chunks per input length under MSST's ``demix`` (``tests/reference/msst_demix.py``: reflect
   padding of ``chunk_size - step`` at both ends when the song is longer than twice that, a chunk
   every ``step = chunk_size // num_overlap``, every chunk run at the full ``chunk_size``).
3. fp32 GEMM throughput at this process's thread count (``--threads``, default 2): torch and numpy
   matmuls of the model's own shapes (the projections over all tokens of a chunk, the batched
   ``QK^T`` of the time attention); the best is the "peak" the engines are compared with.
4. One chunk in each engine (``reference``: torch; ``tf``: the Keras model in one ``tf.function``, as
   ``kerasep.inference``; ``onnx``: the cached verified export in onnxruntime, the runner's session
   options), engines alternating within each repeat, load average printed around every run.

If the reference already runs at more than 2/3 of the GEMM peak, no engine doing the same
arithmetic can be 1.5x faster than it on this machine.

``--ort-profile PATH...``: also one chunk of each exported file in onnxruntime with ``SessionOptions.enable_profiling``, its node
times summed by operator type (and the ten slowest nodes).

Usage (from the repository root)::

    KERASEP_HOME=~/.cache/kerasep python benchmarks/roformer_flops.py --family bs_roformer
    KERASEP_HOME=~/.cache/kerasep python benchmarks/roformer_flops.py --family mel_band_roformer --repeats 1
"""
import argparse
import collections
import gc
import json
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

LENGTHS = (10.0, 30.0, 180.0, 600.0)


def load():
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


# --- 1. FLOPs -----------------------------------------------------------------------------------

def analytic_flops(model, nb_frames):
    """``{part: FLOPs}`` of every matrix product of one chunk of ``nb_frames`` STFT frames
    (``2 * m * k * n`` per ``(m, k) @ (k, n)``), for a kerasep band RoFormer ``model``."""
    d, heads, dh = model.dim, model.heads, model.dim_head
    inner, bands = heads * dh, len(model.band_dims)
    tokens = nb_frames * bands
    parts = collections.Counter()
    parts["band split (per-band Dense)"] = 2 * nb_frames * sum(model.band_dims) * d
    layers = [("time", bands, nb_frames, model.time_transformer_depth),
              ("freq", nb_frames, bands, model.freq_transformer_depth)]
    for axis, batch, steps, depth in layers:
        n = model.depth * depth
        parts[f"{axis} attn projections (qkv, gates, out)"] += n * 2 * tokens * d * (3 * inner + heads + inner)
        parts[f"{axis} attn QK^T + AV"] += n * 2 * (2 * batch * heads * steps * steps * dh)
        parts[f"{axis} feed-forward"] += n * 2 * (2 * tokens * d * d * 4)
    hidden = d * model.mlp_expansion_factor
    hidden_layers = model._hidden_layers()
    per_band = 0
    for bd in model.band_dims:
        widths = [d] + [hidden] * hidden_layers + [2 * bd]
        per_band += sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    parts["mask estimators (per-band MLPs)"] = 2 * nb_frames * per_band * len(model.targets)
    return parts


def counted_flops(reference, chunk):
    """FLOPs of ``reference`` on ``chunk`` (torch ``(1, C, n)``) by ``FlopCounterMode``, with the
    CPU flash attention counted as torch counts its CUDA one. Returns ``(total, {op: FLOPs},
    seconds)``."""
    import torch
    from torch.utils import flop_counter as fc

    cpu_sdpa = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if cpu_sdpa not in fc.flop_registry and cpu_sdpa.default not in fc.flop_registry:
        @fc.register_flop_formula(cpu_sdpa)
        def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
            return fc.sdpa_flop_count(query_shape, key_shape, value_shape)

    mode = fc.FlopCounterMode(display=False)
    start = time.perf_counter()
    with torch.no_grad(), mode:
        reference(chunk)
    took = time.perf_counter() - start
    per_op = collections.Counter()
    for op, flops in mode.get_flop_counts()["Global"].items():
        per_op[str(op)] += flops
    return mode.get_total_flops(), per_op, took


# --- 2. chunks per length ------------------------------------------------------------------------

def demix_chunks(nb_timesteps, chunk_size, num_overlap):
    """Model calls of MSST's ``demix`` on ``nb_timesteps`` samples (each at ``chunk_size``)."""
    step = chunk_size // num_overlap
    border = chunk_size - step
    n = nb_timesteps + 2 * border if nb_timesteps > 2 * border and border > 0 else nb_timesteps
    return -(-n // step)


# --- 3. GEMM throughput --------------------------------------------------------------------------

def gemm_shapes(model, nb_frames):
    """``[(label, batch, m, k, n)]``: the model's own matrix products at one chunk."""
    d, inner, bands = model.dim, model.heads * model.dim_head, len(model.band_dims)
    tokens = nb_frames * bands
    return [(f"qkv {tokens}x{d} @ {d}x{3 * inner}", 1, tokens, d, 3 * inner),
            (f"ff1 {tokens}x{d} @ {d}x{4 * d}", 1, tokens, d, 4 * d),
            (f"ff2 {tokens}x{4 * d} @ {4 * d}x{d}", 1, tokens, 4 * d, d),
            (f"QK^T {bands * model.heads}x({nb_frames}x{model.dim_head} @ {model.dim_head}x{nb_frames})",
             bands * model.heads, nb_frames, model.dim_head, nb_frames)]


def gemm_throughput(shapes, seconds=2.0):
    """``[(library, label, GFLOP/s)]``: the best wall time of repeated runs of each shape for
    ~``seconds`` (the best: on a shared machine the runs the scheduler interrupted are slower)."""
    import torch

    rows = []
    rng = np.random.default_rng(0)
    for label, batch, m, k, n in shapes:
        a = rng.standard_normal((batch, m, k), dtype=np.float32)
        b = rng.standard_normal((batch, k, n), dtype=np.float32)
        if batch == 1:
            a, b = a[0], b[0]
        flops = 2.0 * batch * m * k * n
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        for library, fn in (("torch", lambda: torch.matmul(ta, tb)), ("numpy", lambda: np.matmul(a, b))):
            fn()
            best, spent = float("inf"), 0.0
            while spent < seconds:
                start = time.perf_counter()
                fn()
                took = time.perf_counter() - start
                best, spent = min(best, took), spent + took
            rows.append((library, label, flops / best / 1e9))
    return rows


# --- 4. engines on one chunk ---------------------------------------------------------------------

def engines(family, names):
    """``{engine: fn(x (1, C, n) float32) -> outputs}``."""
    import torch

    out = {}
    for name in names:
        if name == "reference":
            ref = family.reference_module

            def run_ref(x, ref=ref):
                with torch.no_grad():
                    return ref(torch.from_numpy(x))
            out[name] = run_ref
        elif name == "tf":
            from kerasep.backend import tf

            model = family.model
            spec = tf.TensorSpec((None, model.nb_channels, None), tf.float32)
            fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
            out[name] = lambda x, fn=fn: {k: v.numpy() for k, v in fn(x).items()}
        elif name == "onnx":
            from kerasep.export.cache import cached_export
            from kerasep.export.runner import OnnxSeparator

            session = OnnxSeparator(cached_export(family.model))
            print(f"onnx: {session.path}")
            out[name] = session
        elif name.startswith("onnx="):
            from kerasep.export.runner import OnnxSeparator

            out[f"onnx:{Path(name[5:]).name}"] = OnnxSeparator(name[5:])
        else:
            raise ValueError(f"--engines: unknown engine {name!r}; choose from reference tf onnx onnx=PATH")
    return out


def first_stem(y):
    """The first stem ``(C, n)`` of an engine's output (torch tensor, or ``{stem: (1, C, n)}``)."""
    if isinstance(y, dict):
        y = next(iter(y.values()))
    y = np.asarray(y)
    return y.reshape(-1, y.shape[-2], y.shape[-1])[0]


def ort_profile(path, chunk, top=10):
    """One run of ``chunk`` through ``path`` with onnxruntime's profiler (the runner's session
    options): ``(seconds, [(op_type, milliseconds, nodes)], [(node, op_type, ms)])``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_cpu_mem_arena = False
    options.enable_profiling = True
    with tempfile.TemporaryDirectory(prefix="kerasep-ortprof-") as tmp:
        options.profile_file_prefix = os.path.join(tmp, "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        session.run(None, {"waveform": chunk[..., : chunk.shape[-1] // 8]})  # allocations, first-run paths
        start = time.perf_counter()
        session.run(None, {"waveform": chunk})
        took = time.perf_counter() - start
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    # the last run only: the events of the warm-up come first
    last = [e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"][-1]
    runs = [e for e in runs if e["ts"] >= last["ts"]]
    by_type = collections.defaultdict(lambda: [0.0, 0])
    for e in runs:
        op = e.get("args", {}).get("op_name", "?")
        by_type[op][0] += e["dur"] / 1e3
        by_type[op][1] += 1
    types = sorted(((op, ms, n) for op, (ms, n) in by_type.items()), key=lambda r: -r[1])
    nodes = sorted(((e["name"][: -len("_kernel_time")], e.get("args", {}).get("op_name", "?"), e["dur"] / 1e3)
                    for e in runs), key=lambda r: -r[2])[:top]
    return took, types, nodes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=["bs_roformer", "mel_band_roformer"], default="bs_roformer")
    parser.add_argument("--size", choices=["small", "released"], default="released")
    parser.add_argument("--engines", nargs="*", default=["reference", "tf", "onnx"],
                        help="reference, tf, onnx (the verified cached export) and onnx=PATH (an exported file)")
    parser.add_argument("--repeats", type=int, default=2, help="timed chunks per engine (median kept)")
    parser.add_argument("--threads", type=int, default=2, help="torch / numpy / onnxruntime threads")
    parser.add_argument("--ort-profile", nargs="*", default=[], metavar="PATH",
                        help="also profile one chunk of these exported files in onnxruntime")
    parser.add_argument("--no-count", action="store_true", help="skip the FlopCounterMode run (analytic only)")
    parser.add_argument("--input", default=str(families.MIXTURE), help="real mixture (its first chunk is used)")
    args = parser.parse_args(argv)

    import platform

    import torch

    torch.set_num_threads(args.threads)
    families.TORCH_THREADS[0] = args.threads
    print(f"machine: {platform.machine()} {os.cpu_count()} cores; torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); {load()}")

    family = families.build(args.family, args.size)
    model = family.model
    print(f"family {family.name}, size {args.size}: {family.note}")
    chunk_size, num_overlap = model.chunk_size, model.num_overlap
    nb_frames = chunk_size // model.stft_hop_length + 1
    sys.path.insert(0, str(REPO / "benchmarks"))
    import sweep

    mix = sweep.looped_input(chunk_size / model.sample_rate + 1, args.input)
    chunk = np.ascontiguousarray(mix[:chunk_size].T[None])  # (1, C, chunk_size) of real audio
    print(f"one chunk: {chunk_size} samples ({chunk_size / model.sample_rate:g} s), {nb_frames} frames x "
          f"{len(model.band_dims)} bands = {nb_frames * len(model.band_dims)} tokens of dim {model.dim}")

    # 1. FLOPs
    parts = analytic_flops(model, nb_frames)
    analytic = sum(parts.values())
    print("\nanalytic matrix-product FLOPs of one chunk:\n")
    print("| part | GFLOP | share |\n|---|---|---|")
    for part, flops in parts.items():
        print(f"| {part} | {flops / 1e9:.1f} | {flops / analytic:.1%} |")
    print(f"| total | {analytic / 1e9:.1f} | |")
    if not args.no_count:
        counted, per_op, took = counted_flops(family.reference_module, torch.from_numpy(chunk))
        print(f"\nFlopCounterMode on the reference, one chunk ({took:.1f} s with the counter): "
              f"{counted / 1e9:.1f} GFLOP ({counted / analytic:.4f} of the analytic count)")
        for op, flops in per_op.most_common():
            print(f"  {op}: {flops / 1e9:.1f} GFLOP")
    else:
        counted = analytic
        print("\n(--no-count: the analytic count is used)")
    flops = counted

    # 2. chunks per length
    print(f"\nchunks under MSST's demix (chunk_size {chunk_size}, num_overlap {num_overlap}):\n")
    print("| input | chunks | TFLOP |\n|---|---|---|")
    for seconds in LENGTHS:
        k = demix_chunks(int(seconds * model.sample_rate), chunk_size, num_overlap)
        print(f"| {seconds:g} s | {k} | {k * flops / 1e12:.1f} |")

    # 3. GEMM throughput
    print(f"\nfp32 GEMM throughput, {args.threads} threads ({load()}):\n")
    print("| library | shape | GFLOP/s |\n|---|---|---|")
    rows = gemm_throughput(gemm_shapes(model, nb_frames))
    for library, label, rate in rows:
        print(f"| {library} | {label} | {rate:.1f} |")
    peak = max(r[2] for r in rows)
    print(f"GEMM peak (best of the above): {peak:.1f} GFLOP/s ({load()})")

    # 4. engines on one chunk
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    runners = engines(family, args.engines)
    for name, fn in runners.items():  # tracing, session start, allocations
        fn(chunk[..., : chunk_size // 8])
    # the GEMM probe (the feed-forward's first product, the best shape above) before and after
    # every engine run: on a shared machine the peak available to this process moves with the load
    probe = [s for s in gemm_shapes(model, nb_frames) if s[0].startswith("ff1")]
    times, cpus, peaks = (collections.defaultdict(list) for _ in range(3))
    outputs = {}
    for r in range(args.repeats):
        for name, fn in runners.items():
            before_peak = gemm_throughput(probe, seconds=1.0)[0][2]
            before = load()
            start, cpu = time.perf_counter(), time.process_time()
            y = fn(chunk)
            took, cpu = time.perf_counter() - start, time.process_time() - cpu
            outputs[name] = first_stem(y)
            after = load()
            local_peak = (before_peak + gemm_throughput(probe, seconds=1.0)[0][2]) / 2
            times[name].append(took)
            cpus[name].append(cpu)
            peaks[name].append(local_peak)
            print(f"  chunk, repeat {r + 1}, {name}: {took:.2f} s ({cpu:.1f} CPU s), {flops / took / 1e9:.1f} "
                  f"GFLOP/s; GEMM probe around it {local_peak:.1f} GFLOP/s ({before} -> {after})", flush=True)
    print(f"\none chunk ({flops / 1e9:.0f} GFLOP), median of {args.repeats}; GEMM peak {peak:.0f} GFLOP/s "
          f"(alone, above), GEMM probe: the torch ff1 product just before and after each run:\n")
    # CPU s: the process's CPU time over all threads (spinning threads count: torch's OpenMP
    # threads spin, onnxruntime's are told not to)
    print("| engine | seconds | CPU s | GFLOP/s | of GEMM peak | of GEMM probe | vs reference |\n"
          "|---|---|---|---|---|---|---|")
    ref = statistics.median(times["reference"]) if "reference" in times else None
    for name in runners:
        took, cpu = statistics.median(times[name]), statistics.median(cpus[name])
        rate = flops / took / 1e9
        ratio = f"{ref / took:.2f}x" if ref else "-"
        print(f"| {name} | {took:.2f} | {cpu:.1f} | {rate:.1f} | {rate / peak:.0%} | "
              f"{rate / statistics.median(peaks[name]):.0%} | {ratio} |")
    if "reference" in outputs:
        peak_ref = float(np.max(np.abs(outputs["reference"])))
        diffs = ", ".join(f"{name} {float(np.max(np.abs(y - outputs['reference']))) / peak_ref:.1e}"
                          for name, y in outputs.items() if name != "reference")
        print(f"\nmax |engine - reference| / reference peak on this chunk: {diffs}")
    if ref:
        frac = flops / ref / 1e9 / statistics.median(peaks["reference"])
        print(f"\nthe reference runs at {frac:.0%} of the GEMM throughput measured around it: an engine doing the "
              f"same arithmetic at GEMM speed would be at most {1 / frac:.2f}x the reference (goal: 1.5x)")

    # the engines' sessions and models freed first: with them all in memory, one more released-size
    # session went past this machine's 23 GB (OOM-killed at 17 GB resident)
    runners.clear()
    outputs.clear()
    gc.collect()
    for path in args.ort_profile:
        before = load()
        took, types, nodes = ort_profile(path, chunk)
        total = sum(ms for _, ms, _ in types)
        print(f"\nonnxruntime profile of {Path(path).name}, one chunk: {took:.2f} s wall, {total / 1e3:.2f} s in nodes "
              f"({before} -> {load()}):\n")
        print("| op type | ms | share | nodes |\n|---|---|---|---|")
        for op, ms, n in types:
            print(f"| {op} | {ms:.0f} | {ms / total:.1%} | {n} |")
        print("\nslowest nodes:\n")
        for node, op, ms in nodes:
            print(f"  {ms:8.0f} ms  {op:10s} {node}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
