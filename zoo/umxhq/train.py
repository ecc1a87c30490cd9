"""Train Open-Unmix (the UMX-HQ architecture) on MUSDB18-HQ with plain ``model.fit``.

    python zoo/umxhq/train.py --data /path/to/musdb18hq --output runs/umxhq
    python zoo/umxhq/train.py --data /path/to/musdb18hq --output runs/umxhq   # resumes

``train_config.json`` (next to this file, or ``--config``) holds openunmix's ``train.py``
defaults: 6 s chunks, 64 per track and epoch, batch 16, gain + channel-swap augmentations with
random-track mixing, MSE on magnitude spectrograms, Adam 1e-3 with weight decay 1e-5,
ReduceLROnPlateau (x0.3 after 80 epochs without improvement), early stopping after 140, at most
1000 epochs. The four targets (vocals, drums, bass, other) are trained together in one
``model.fit``: their spectrogram models share no weights, so each gets the gradient of its own
MSE (openunmix trains one model per run; here the callbacks watch the sum of the four losses).

The loop is :func:`kerasep.train.train`: it builds the separator (untrained), the seeded
training stream and the validation data, runs Open-Unmix's input-statistics pass
(:func:`kerasep.train.input_statistics`: per-bin mean/std of one epoch of training mixtures
into every target model's ``input_norm``) before the first epoch, compiles, and calls
``model.fit`` with BackupAndRestore, ModelCheckpoint, EarlyStopping, ReduceLROnPlateau and
TensorBoard (plus CSVLogger). This script only edits the config from its flags and records the
statistics the pass set (``input_statistics.npz``: ``mean``, ``std``). The separator with the
best validation weights is saved as ``model.keras`` (``kerasep.zoo.load(path)``,
``kerasep separate -m path``, ``kerasep evaluate path``).

``--small`` swaps in a tiny Open-Unmix (n_fft 512, 128 bins, one unidirectional 16-unit LSTM
layer, no Wiener EM) and 0.5 s chunks for a CPU smoke run, e.g. on the single track of the test fixtures with
``--subset test --no-split``.
"""
import math
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

SMALL = {
    "family": "openunmix",
    "config": {
        "targets": ["vocals", "drums", "bass", "other"],
        "n_fft": 512,
        "hop_length": 128,
        "hidden_size": 16,
        "nb_layers": 1,
        "unidirectional": True,
        "max_bin": 128,
        "niter": 0,
    },
}
SMALL_DATA = {"seq_duration": 0.5, "samples_per_track": 8, "batch_size": 4}


def parse_args(argv=None):
    from kerasep import train as kt

    p = kt.recipe_parser(__doc__.split("\n\n")[0], HERE / "train_config.json")
    p.add_argument("--mp4", action="store_true", help="MUSDB18 .stem.mp4 files instead of MUSDB18-HQ WAV folders")
    return p.parse_args(argv)


def build_config(args):
    """The training config (see :mod:`kerasep.train`) the flags make of ``args.config``."""
    from kerasep import train as kt

    cfg = kt.recipe_config(args, SMALL, SMALL_DATA)
    if args.mp4:
        cfg["data"]["is_wav"] = False
    return cfg


def record_input_statistics(path):
    """A callback that writes the input normalisation the statistics pass set (``mean`` =
    -shift, ``std`` = 1/scale of the first target's ``input_norm``) to ``path`` when training
    starts, unless ``path`` exists (a resumed run: the pass ran in the first one)."""
    import numpy as np

    from kerasep.backend import keras

    class RecordInputStatistics(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            if Path(path).is_file():
                return
            norms = input_norms(self.model)
            if not norms:
                raise RuntimeError("no input_norm layer in the model given to fit")
            first = next(iter(norms.values()))
            weights = {w.path.split("/")[-1]: w.numpy() for w in first.weights}
            tmp = Path(path).with_name(f".{Path(path).stem}.tmp{os.getpid()}.npz")
            np.savez(tmp, mean=-weights["shift"], std=1.0 / weights["scale"])
            os.replace(tmp, path)

    return RecordInputStatistics()


def input_norms(model):
    """``{target model name: its input_norm layer}`` among ``model``'s (nested) layers."""
    found, stack = {}, [model]
    while stack:
        m = stack.pop()
        for layer in getattr(m, "layers", ()):
            if layer.name == "input_norm":
                found[m.name] = layer
            elif getattr(layer, "layers", None):
                stack.append(layer)
    return found


def main(argv=None):
    args = parse_args(argv)
    from kerasep import train as kt

    cfg = build_config(args)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    kt.train(cfg, args.data, out, verbose=0 if args.quiet else "auto",
             extra_callbacks=[record_input_statistics(out / "input_statistics.npz")])
    # best of every epoch in history.csv (train() returns only the epochs this call trained)
    best = kt.previous_best(out, math.inf)
    note = "" if best is None else f" (best val_loss {best:.5g})"
    print(f"wrote {out / 'model.keras'}{note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
