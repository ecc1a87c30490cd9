"""Train a BS-RoFormer (band-split RoPE Transformer) vocals model on MUSDB18-HQ with plain ``model.fit``.

    python zoo/bs_roformer/train.py --data /path/to/musdb18hq --output runs/bs_roformer
    python zoo/bs_roformer/train.py --data /path/to/musdb18hq --output runs/bs_roformer   # resumes

``train_config.json`` (next to this file, or ``--config``) holds the settings of MSST's
``configs/config_musdb18_bs_roformer.yaml`` (ZFTurbo's Music-Source-Separation-Training, the
trainer of the public RoFormer checkpoints): its model (``dim`` 192, ``depth`` 6, 62 bands,
``stft_n_fft`` 2048, ``stft_hop_length`` 512, one stem: ``vocals``), trained on waveforms with the
loss of the BS-RoFormer paper (Lu et al. 2023) as lucidrains' ``BSRoformer`` computes it and MSST
trains RoFormers with: waveform L1 plus the L1 of the complex STFTs at windows 4096, 2048, 1024,
512 and 256 samples, hop 147 (:class:`kerasep.losses.WaveformMultiSTFTL1`,
``waveform_multi_stft_l1``); chunks of 131584 samples (2.98 s), each stem cut from a random track
with a random loudness factor in [0.5, 1.5] (MSST's ``loudness`` augmentation, kerasep's
``"gain"`` with ``gain_range``); batches of 10; Adam at 5e-5, no gradient clipping; the learning
rate times 0.95 after 2 epochs without a better validation loss (MSST's ``patience`` and
``reduce_factor``); 1000 epochs of about 1000 steps. In float32: MSST trains with AMP, but
kerasep's BSRoformer does not run under a ``mixed_float16`` policy yet.
The mixture is the sum of the four stems; the loss compares the vocals.

``batch_size`` is the global batch here (MSST's, split over its GPUs by DataParallel), as in
``kerasep train``. The separator with the best validation weights is saved as ``model.keras``
(``kerasep.zoo.load(path)``, ``kerasep separate -m path``, ``kerasep evaluate path``).

``--small`` swaps in a tiny BS-RoFormer (``dim`` 16, ``depth`` 1, 6 bands of a 256-point STFT),
1 s chunks in batches of 2 and the loss with ``min_n_fft`` 256 (the model's ``stft_n_fft``, as
lucidrains ties them) for a CPU smoke run, e.g. on the single track of the test fixtures with
``--subset test --no-split``.
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

SMALL = {
    "family": "bs_roformer",
    "config": {
        "targets": ["vocals"],
        "nb_channels": 2,
        "sample_rate": 44100,
        "dim": 16,
        "depth": 1,
        "freqs_per_bands": [4, 4, 8, 16, 32, 65],
        "dim_head": 8,
        "heads": 2,
        "stft_n_fft": 256,
        "stft_hop_length": 64,
        "stft_win_length": 256,
        "dim_freqs_in": 129,
        "mask_estimator_depth": 1,
        "chunk_size": 44100,
        "num_overlap": 2,
    },
}
SMALL_DATA = {"seq_duration": 1.0, "samples_per_track": 4, "batch_size": 2, "valid_seq_duration": 2.0}
SMALL_TRAINING = {"loss_args": {"min_n_fft": 256}}


def parse_args(argv=None):
    from kerasep import train as kt

    p = kt.recipe_parser(__doc__.split("\n\n")[0], HERE / "train_config.json")
    p.add_argument("--is-wav", action="store_true", help="MUSDB18-HQ WAV folders (the config's default)")
    return p.parse_args(argv)


def build_config(args, replicas=1):
    """The training config (see :mod:`kerasep.train`) the flags make of ``args.config``;
    ``data.batch_size`` is the global batch (``replicas`` does not change it)."""
    from kerasep import train as kt

    cfg = kt.recipe_config(args, SMALL, SMALL_DATA, SMALL_TRAINING)
    if args.is_wav:
        cfg["data"]["is_wav"] = True
    return cfg


def main(argv=None):
    from kerasep import train as kt

    return kt.run_recipe(parse_args(argv), build_config)


if __name__ == "__main__":
    sys.exit(main())
