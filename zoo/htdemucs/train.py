"""Train Hybrid Transformer Demucs (the ``htdemucs`` architecture) on MUSDB18-HQ with plain ``model.fit``.

    python zoo/htdemucs/train.py --data /path/to/musdb18hq --output runs/htdemucs
    python zoo/htdemucs/train.py --data /path/to/musdb18hq --output runs/htdemucs   # resumes

``train_config.json`` (next to this file, or ``--config``) holds demucs 4's training setup for
``htdemucs`` (demucs' ``conf/config.yaml`` with the overrides of its htdemucs grid
``grids/mmi.py``): the whole separator trained on waveforms with the L1 loss; 7.8 s chunks
(``segment`` of the released model: 10 s examples, trimmed to 0.88 by the tempo augmentation and
by the 1 s shift) with each source cut at its own random 0-1 s offset (``Shift(shift=1 s,
same=False)``); per source a random scale in [0.25, 1.25) (``Scale``), sign flip (``FlipSign``)
and left/right flip (``FlipChannels``); every source permuted among the chunks of its group of
4 consecutive batch items (``Remix(group_size=4)``, ``data.remix_group_size``); Adam at
3e-4 (betas 0.9/0.999, no weight decay, no gradient clipping), constant; an exponential moving
average of the weights updated every step (``ema_momentum`` 0.9999, demucs' ``ema.batch``),
which is what validation measures and what is kept; 360 epochs of 800 batches of 32 chunks.
Not reproduced: the repitch/tempo augmentation (probability 0.2; soundstretch), the extra 800
songs the released weights were also trained on, and demucs' choice among several EMAs. The run
is in float32 (``mixed_precision`` false): kerasep's HTDemucs does not run under a
``mixed_float16`` policy yet.

Batch size: demucs 4 used 32 chunks per step over 8 GPUs, i.e. 4 per GPU. The config's
``batch_size`` (4) is read here as the *per-device* batch and multiplied by the number of
replicas of the distribution strategy (``training.strategy``), so 8 devices reproduce the
32-chunk steps (``samples_per_track`` 298 then gives 800 steps over the 86 training tracks);
``--per-device-batch N`` changes it. (``kerasep train`` on the same JSON reads ``batch_size`` as
the global batch.)

Validation: consecutive 7.8 s chunks of the validation tracks (demucs runs ``apply_model`` over
whole tracks with the same segment and 25 % overlap). The separator with the best validation
weights is saved as ``model.keras`` (``kerasep.zoo.load(path)``, ``kerasep separate -m path``).

``--small`` swaps in a tiny HT-Demucs (8 channels, depth 2, 256-point STFT, one cross-transformer
layer, 1 s segment), 1 s chunks (+ 0.2 s shift) in batches of 2 (remixed in pairs), 2 s validation chunks and an EMA
of momentum 0.5 for a CPU smoke run, e.g. on the single track of the test fixtures with
``--subset test --no-split``.
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

SMALL = {
    "family": "htdemucs",
    "config": {
        "targets": ["drums", "bass", "other", "vocals"],
        "nb_channels": 2,
        "sample_rate": 44100,
        "channels": 8,
        "depth": 2,
        "nfft": 256,
        "dconv_mode": 3,
        "t_layers": 1,
        "t_heads": 2,
        "t_dropout": 0.02,
        "segment": 1.0,
    },
}
SMALL_DATA = {"seq_duration": 1.0, "max_shift": 0.2, "samples_per_track": 4, "batch_size": 2,
              "remix_group_size": 2, "valid_seq_duration": 2.0}
SMALL_TRAINING = {"ema_momentum": 0.5}


def parse_args(argv=None):
    from kerasep import train as kt

    p = kt.recipe_parser(__doc__.split("\n\n")[0], HERE / "train_config.json")
    kt.add_batch_flags(p, per_device=4)
    return p.parse_args(argv)


def build_config(args, replicas=1):
    """The training config (see :mod:`kerasep.train`) the flags make of ``args.config``, with
    ``data.batch_size`` = per-device batch x ``replicas``."""
    from kerasep import train as kt

    return kt.per_device_config(args, SMALL, SMALL_DATA, SMALL_TRAINING, replicas)


def main(argv=None):
    from kerasep import train as kt

    return kt.run_recipe(parse_args(argv), build_config)


if __name__ == "__main__":
    sys.exit(main())
