"""Separate a song with a pretrained model and plot what the model does.

Shows: ``kerasep.zoo.load`` (Deezer's pretrained Spleeter 2-stems U-Net, fetched, sha256-checked
and cached under ``$KERASEP_HOME`` on first use), ``kerasep.separate`` on an array, and the
model's own layers: its STFT and the ratio masks it puts on the mixture (``estimate_masks``).
Writes the stems as WAV files and one PNG: the mixture's spectrogram, then each stem's mask.

Run:

    python examples/separate_and_plot.py song.mp3 -o separated/          # the whole song
    python examples/separate_and_plot.py song.mp3 --duration 10          # its first 10 s
    python examples/separate_and_plot.py --smoke                         # CI: 5 s of the test song

Needs matplotlib (``pip install matplotlib``); ``-m`` takes any zoo U-Net (``unet-4stems`` ...).
"""
import argparse
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TEST_SONG = REPO / "tests" / "data" / "audio_example.mp3"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("song", nargs="?", default=None, help="audio file (default with --smoke: the test song)")
    parser.add_argument("-m", "--model", default="unet-2stems", help="zoo U-Net name (default unet-2stems)")
    parser.add_argument("-o", "--output", default="separated", help="output folder (default ./separated)")
    parser.add_argument("--duration", type=float, default=None, help="only the first DURATION seconds")
    parser.add_argument("--smoke", action="store_true", help="quick run for CI: 5 s of tests/data/audio_example.mp3")
    args = parser.parse_args(argv)
    if args.smoke:
        args.song = args.song or str(TEST_SONG)
        args.duration = args.duration or 5.0
    if args.song is None:
        parser.error("give a song (or --smoke)")

    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    import kerasep
    from kerasep.backend import tf

    model = kerasep.zoo.load(args.model)
    rate = model.sample_rate
    mix = kerasep.audio.load(args.song, sample_rate=rate, nb_channels=model.nb_channels, duration=args.duration)

    # 1. separate: {stem: (nb_timesteps, nb_channels)}
    stems = kerasep.separate(mix, model=model)
    out = Path(args.output) / Path(args.song).stem
    out.mkdir(parents=True, exist_ok=True)
    for name, audio in stems.items():
        kerasep.audio.save(out / f"{name}.wav", audio, rate, subtype="FLOAT", overwrite=True)  # no clipping

    # 2. what the U-Net sees and the masks it puts on the mixture STFT
    waveform = tf.constant(mix.T[None])  # (1, nb_channels, nb_timesteps)
    spec = model.stft(waveform)  # (1, nb_channels, nb_frames, F, 2): the bins the U-Net sees
    masks = model.estimate_masks(spec)  # {target: (1, nb_channels, nb_frames, F)}, summing to 1
    magnitude = np.abs(np.asarray(model.magnitude(spec))[0].mean(axis=0))  # channel mean
    hz = model.F * rate / model.n_fft
    extent = [0, mix.shape[0] / rate, 0, hz / 1000]

    rows = 1 + len(model.targets)
    fig, axes = plt.subplots(rows, 1, figsize=(10, 2.4 * rows), sharex=True, constrained_layout=True)
    image = axes[0].imshow(20 * np.log10(magnitude.T + 1e-6), origin="lower", aspect="auto", extent=extent,
                           cmap="magma", vmin=-80)
    axes[0].set_title(f"mixture: {Path(args.song).name} (dB, the {model.F} bins up to {hz / 1000:.1f} kHz)")
    fig.colorbar(image, ax=axes[0])
    for ax, target in zip(axes[1:], model.targets):
        mask = np.asarray(masks[target])[0].mean(axis=0)
        image = ax.imshow(mask.T, origin="lower", aspect="auto", extent=extent, cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"{target} mask ({args.model})")
        fig.colorbar(image, ax=ax)
    for ax in axes:
        ax.set_ylabel("kHz")
    axes[-1].set_xlabel("time (s)")
    png = out / "masks.png"
    fig.savefig(png, dpi=80)
    print(f"wrote {', '.join(str(out / f'{n}.wav') for n in stems)} and {png}")
    return stems, png


if __name__ == "__main__":
    main()
