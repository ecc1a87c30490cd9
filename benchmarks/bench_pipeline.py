"""Is the input pipeline the bottleneck? Training steps/s with the real tf.data pipeline vs
the same model fed one cached batch from memory, measured side by side in one run.

    python benchmarks/bench_pipeline.py --data ../shared/data/musdb18hq-mini          # CPU, small U-Net
    python benchmarks/bench_pipeline.py --data ... --model unet-2stems --batch-size 4  # GPU, full U-Net

The real pipeline is the training one (``kerasep.train.make_datasets``): it decodes the
MUSDB18-HQ tracks once into the cache, then cuts seeded random chunks with augmentations (gain,
channel swap, sign flip, random-track mixing) and batches the waveforms; the model's train step
(``Adapter.fit_model``) computes the STFT magnitude patches and trains the U-Net core. The
synthetic input is one of those waveform batches, cached in memory and repeated: the same model,
the same step function, the same work per step, only the input differs.

Prints, in this order: what the pipeline costs per batch, stage by stage (seconds of CPU per
batch, and batches/s when it runs alone: cutting, + augmentations, + random-track mixing, and
for comparison the STFT features computed in ``tf.data``); then ``--repeats`` alternating
measurements of fit steps/s (synthetic, real, synthetic, real, ...; each the steady rate of one
``fit`` call after its first ``--skip`` steps, and in brackets the rate of the whole call with the
iterator's start, and the CPU time per step of the whole process) and the ratio of the best real
to the best synthetic rate (target >= 0.90), with two companions that a loaded machine disturbs
less: the median of the ratios of the back-to-back pairs, and the ratio of the CPU time per step
(synthetic / real: what the pipeline's threads add to each step).

``--features-in-pipeline`` measures the previous arrangement instead: the STFT features
computed in ``tf.data`` and the model trained on them (synthetic input: one cached feature batch).
"""
import argparse
import json
import os
import statistics
import sys
import time

SMALL = {
    "family": "unet",
    "config": {"targets": ["vocals", "accompaniment"], "n_fft": 1024, "hop_length": 256, "T": 64, "F": 256,
               "conv_n_filters": [8, 16, 32, 64], "dropout": 0.0},
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "musdb18hq-mini"))
    p.add_argument("--subset", default="test")
    p.add_argument("--model", default="small", help="'small' or a zoo name (e.g. unet-2stems)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seq-duration", type=float, default=None, help="default: one U-Net patch")
    p.add_argument("--steps", type=int, default=40, help="steps per fit call (one measurement)")
    p.add_argument("--skip", type=int, default=5, help="first steps of each fit call not timed (iterator start)")
    p.add_argument("--repeats", type=int, default=8, help="measurements of each input, alternating")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--features-in-pipeline", action="store_true",
                   help="previous arrangement: STFT features in tf.data, the model trained on them")
    p.add_argument("--no-stages", action="store_true", help="skip the per-stage pipeline costs")
    args = p.parse_args(argv)

    from kerasep import data, losses
    from kerasep import train as kt
    from kerasep.backend import keras, tf

    kt.set_precision("auto")
    separator = kt.build_separator(SMALL if args.model == "small" else args.model)
    adapter = kt.Adapter(separator, "spectrogram")
    seq = args.seq_duration or (separator.T * separator.hop_length - separator.n_fft) / separator.sample_rate
    tracks = data.folder_tracks(args.data, list(data.MUSDB_SOURCES), subset=args.subset)
    groups = {"vocals": ["vocals"], "accompaniment": ["drums", "bass", "other"]}
    kw = dict(seq_duration=seq, samples_per_track=10**6, batch_size=args.batch_size, cache_dir=args.cache_dir, seed=0)
    aug = ["gain", "channelswap", "signflip"]

    def pipeline(augmentations=aug, random_track_mix=True, featurize=None):
        return data.training_dataset(tracks, groups, augmentations=augmentations, random_track_mix=random_track_mix,
                                     featurize=featurize, **kw)

    in_pipeline = adapter.featurize if args.features_in_pipeline else None
    real = pipeline(featurize=in_pipeline)
    x, y = next(iter(real))
    synthetic = tf.data.Dataset.from_tensors((x, y)).repeat()
    model = adapter.feature_model if args.features_in_pipeline else adapter.fit_model
    gpu = tf.config.list_physical_devices("GPU")
    print(f"device: {'GPU ' + gpu[0].name if gpu else 'CPU'} ({os.cpu_count()} CPU cores, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}); policy {keras.mixed_precision.global_policy().name}; "
          f"model {args.model}; batch {args.batch_size} x {seq:.2f} s; "
          f"STFT features in {'tf.data' if args.features_in_pipeline else 'the train step'}; input {tuple(x.shape)}",
          flush=True)

    def alone(ds, n):
        """(batches/s, CPU seconds per batch) of a pipeline iterated on its own."""
        it = iter(ds)
        for _ in range(5):
            next(it)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            next(it)
        return n / (time.perf_counter() - t0), (time.process_time() - c0) / n

    stages = {}
    if not args.no_stages:
        print("pipeline alone (iterated without training; CPU time is all threads of the process):", flush=True)
        for name, ds in [
            ("cut chunks (no augmentation, same track)", pipeline([], False)),
            ("+ gain, channel swap, sign flip", pipeline(aug, False)),
            ("+ random-track mixing  [training input]", pipeline(aug, True)),
            ("+ STFT features in tf.data (reference)", pipeline(aug, True, adapter.featurize)),
        ]:
            rate, cpu = alone(ds, 4 * args.steps)
            stages[name] = {"batches_per_s": rate, "cpu_ms_per_batch": 1e3 * cpu}
            print(f"  {name:44s} {rate:8.1f} batches/s  {1e3 * cpu:7.2f} ms CPU/batch", flush=True)
    pipe, pipe_cpu = alone(real, 4 * args.steps)

    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss={t: losses.SpectrogramL1() for t in adapter.targets})

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.ends, self.cpu = [], []
            self.begin = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())
            self.cpu.append(time.process_time())

    def rate(ds):
        """One fit call: (steady steps/s after the first --skip steps, steps/s of the whole call
        including the iterator start, CPU ms per steady step, all threads of the process)."""
        timer = Timer()
        model.fit(ds, epochs=1, steps_per_epoch=args.steps, verbose=0, callbacks=[timer], shuffle=False)
        k = min(args.skip, args.steps - 2)
        n = len(timer.ends) - 1 - k
        return (n / (timer.ends[-1] - timer.ends[k]), args.steps / (timer.ends[-1] - timer.begin),
                1e3 * (timer.cpu[-1] - timer.cpu[k]) / n)

    rate(synthetic), rate(real)  # warm-up: tracing, first iterators
    syn_runs, real_runs = [], []
    for r in range(args.repeats):  # alternate, so that machine load affects both alike
        syn_runs.append(rate(synthetic))
        real_runs.append(rate(real))
        (s, s_all, s_cpu), (q, q_all, q_cpu) = syn_runs[-1], real_runs[-1]
        print(f"  run {r + 1}: synthetic {s:6.2f} steps/s ({s_all:.2f} incl. start, {s_cpu:.1f} ms CPU/step), "
              f"real {q:6.2f} steps/s ({q_all:.2f} incl. start, {q_cpu:.1f} ms CPU/step)  "
              f"(load average {os.getloadavg()[0]:.2f})", flush=True)
    syn, rl = max(r[0] for r in syn_runs), max(r[0] for r in real_runs)
    syn_all, rl_all = max(r[1] for r in syn_runs), max(r[1] for r in real_runs)
    paired = statistics.median(q[0] / s[0] for s, q in zip(syn_runs, real_runs))
    syn_cpu, rl_cpu = statistics.median(r[2] for r in syn_runs), statistics.median(r[2] for r in real_runs)
    result = {"features_in": "tf.data" if args.features_in_pipeline else "train step",
              "pipeline_batches_per_s": pipe, "pipeline_cpu_ms_per_batch": 1e3 * pipe_cpu,
              "synthetic_steps_per_s": syn, "real_steps_per_s": rl, "ratio": rl / syn,
              "ratio_including_start": rl_all / syn_all, "median_paired_ratio": paired,
              "synthetic_cpu_ms_per_step": syn_cpu, "real_cpu_ms_per_step": rl_cpu,
              "synthetic_runs": syn_runs, "real_runs": real_runs, "stages": stages,
              "load_average": os.getloadavg()}
    print(f"pipeline alone:          {pipe:8.2f} batches/s ({1e3 * pipe_cpu:.2f} ms CPU per batch)")
    print(f"fit, synthetic input:    {syn:8.2f} steps/s (best of {args.repeats}; median {syn_cpu:.1f} ms CPU/step)")
    print(f"fit, real pipeline:      {rl:8.2f} steps/s (best of {args.repeats}; median {rl_cpu:.1f} ms CPU/step)")
    print(f"real / synthetic:        {rl / syn:8.3f}  (target >= 0.90; {rl_all / syn_all:.3f} counting each fit "
          f"call's first steps; median of the {args.repeats} back-to-back pairs {paired:.3f}; CPU per step "
          f"{syn_cpu / rl_cpu:.3f})")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
