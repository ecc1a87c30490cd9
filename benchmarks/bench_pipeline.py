"""Is the input pipeline the bottleneck? Training steps/s with the real tf.data pipeline vs
the same model fed one cached batch from memory, measured side by side in one run.

    python benchmarks/bench_pipeline.py --data ../shared/data/musdb18hq-mini          # CPU, small U-Net
    python benchmarks/bench_pipeline.py --data ... --model unet-2stems --batch-size 4  # GPU, full U-Net

Prints: pipeline alone (batches/s), fit steps/s with synthetic in-memory input, fit steps/s with
the real pipeline, and their ratio (target >= 0.90). The real pipeline decodes the MUSDB18-HQ
tracks once into the cache, then cuts seeded random chunks with augmentations (gain, channel
swap, sign flip, random-track mixing) and computes STFT magnitude patches in tf.data.
"""
import argparse
import json
import os
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
    p.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cache-dir", default=None)
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
    real = data.training_dataset(tracks, groups, seq_duration=seq, samples_per_track=10**6, batch_size=args.batch_size,
                                 augmentations=["gain", "channelswap", "signflip"], random_track_mix=True,
                                 cache_dir=args.cache_dir, featurize=adapter.featurize, seed=0)
    x, y = next(iter(real))
    synthetic = tf.data.Dataset.from_tensors((x, y)).repeat()
    print(f"device: {'GPU ' + tf.config.list_physical_devices('GPU')[0].name if tf.config.list_physical_devices('GPU') else 'CPU'}; "
          f"policy {keras.mixed_precision.global_policy().name}; model {args.model}; batch {args.batch_size} x "
          f"{seq:.2f} s -> features {tuple(x.shape)}")

    # pipeline alone
    it = iter(real)
    for _ in range(5):
        next(it)
    t0 = time.perf_counter()
    n = 3 * args.steps
    for _ in range(n):
        next(it)
    pipe = n / (time.perf_counter() - t0)

    model = adapter.fit_model
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss={t: losses.SpectrogramL1() for t in adapter.targets})

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.last = time.perf_counter() - self.t

    def rate(ds):
        timer = Timer()
        model.fit(ds, epochs=1, steps_per_epoch=5, verbose=0)  # warm-up (tracing)
        best = 0.0
        for _ in range(args.repeats):
            model.fit(ds, epochs=1, steps_per_epoch=args.steps, verbose=0, callbacks=[timer])
            best = max(best, args.steps / timer.last)
        return best

    # interleave so that machine load affects both alike
    syn_rates, real_rates = [], []
    for _ in range(2):
        syn_rates.append(rate(synthetic))
        real_rates.append(rate(real))
    syn, rl = max(syn_rates), max(real_rates)
    result = {"pipeline_batches_per_s": pipe, "synthetic_steps_per_s": syn, "real_steps_per_s": rl, "ratio": rl / syn}
    print(f"pipeline alone:          {pipe:8.2f} batches/s")
    print(f"fit, synthetic input:    {syn:8.2f} steps/s")
    print(f"fit, real pipeline:      {rl:8.2f} steps/s")
    print(f"real / synthetic:        {rl / syn:8.3f}  (target >= 0.90)")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
