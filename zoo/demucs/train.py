"""Train Demucs v2 (64 channels) on MUSDB18 with plain ``model.fit``.

    python zoo/demucs/train.py --data /path/to/musdb18 --output runs/demucs
    python zoo/demucs/train.py --data /path/to/musdb18 --output runs/demucs   # resumes

``train_config.json`` (next to this file, or ``--config``) holds demucs 2's training setup: the
whole separator trained on waveforms (``training.domain = "waveform"``) with the L1 loss, chunks
of ``model.valid_length(10 s)`` samples (10.139 s) cut from 11.139 s windows with each source
shifted by its own random 0-1 s offset (demucs' ``Shift(data_stride)``), random sign flip,
channel swap and gain per source, sources drawn from independent tracks (demucs' ``Remix``),
Adam 3e-4 at a constant rate, 120 epochs, whole validation tracks.

Batch size: demucs 2 used 64 chunks per step spread over 16 GPUs, i.e. 4 per GPU. The config's
``batch_size`` (4) is read here as the *per-device* batch: this script multiplies it by the
number of replicas of the distribution strategy (``training.strategy``: every local GPU with
``"auto"``/``"mirrored"``, every worker's with ``"multiworker"``), so 16 devices reproduce the
paper's 64 and one GPU runs the paper's per-GPU batch with the same learning rate (16 times as
many, noisier, updates per epoch). ``--per-device-batch N`` changes it. (``kerasep train`` on
the same JSON reads ``batch_size`` as the global batch.)

The loop is :func:`kerasep.train.train`: separator (untrained), seeded training stream,
validation data, compile, and ``model.fit`` with BackupAndRestore, ModelCheckpoint,
EarlyStopping, ReduceLROnPlateau and TensorBoard (plus CSVLogger; SDR and SI-SDR metrics per
source). Demucs has no learning-rate schedule or early stopping: their patiences equal the epoch
count, so they never fire in a default run and only matter for longer ones. The separator with
the best validation weights is saved as ``model.keras`` (``kerasep.zoo.load(path)``,
``kerasep separate -m path``, ``kerasep evaluate path``).

``--small`` swaps in a tiny Demucs (4 channels, depth 4, one LSTM layer, 1 s segments) and
1 s chunks (+ 0.2 s shift) for a CPU smoke run, e.g. on the single track of the test fixtures with
``--subset test --no-split``.
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

SMALL = {
    "family": "demucs",
    "config": {
        "targets": ["drums", "bass", "other", "vocals"],
        "nb_channels": 2,
        "sample_rate": 44100,
        "channels": 4,
        "depth": 4,
        "lstm_layers": 1,
        "variant": "v2",
        "segment_seconds": 1.0,
    },
}
SMALL_DATA = {"seq_duration": 1.0, "max_shift": 0.2, "samples_per_track": 8, "batch_size": 4}


def parse_args(argv=None):
    from kerasep import train as kt

    p = kt.recipe_parser(__doc__.split("\n\n")[0], HERE / "train_config.json")
    kt.add_batch_flags(p, per_device=4)
    return p.parse_args(argv)


def build_config(args, replicas=1):
    """The training config (see :mod:`kerasep.train`) the flags make of ``args.config``, with
    ``data.batch_size`` = per-device batch x ``replicas``."""
    from kerasep import train as kt

    return kt.per_device_config(args, SMALL, SMALL_DATA, replicas=replicas)


def main(argv=None):
    from kerasep import train as kt

    return kt.run_recipe(parse_args(argv), build_config)


if __name__ == "__main__":
    sys.exit(main())
