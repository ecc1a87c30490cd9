"""Build your own separator from kerasep's layers, train it with ``model.fit``, separate a song.

Shows: a :class:`kerasep.models.Separator` subclass (the contract every kerasep model follows:
``targets``, ``sample_rate``, ``nb_channels``, ``call(waveform) -> {stem: waveform}``) made of
``kerasep.layers``: ``STFT`` -> ``Magnitude`` -> a small convolutional mask network ->
``RatioMask`` (masks summing to one across the stems) -> ``ApplyMask`` -> ``ISTFT``. The model
maps waveforms to waveforms, so it trains with plain ``compile``/``fit`` on waveform pairs (an
L1 loss per stem); then ``kerasep.separate`` (chunking, any length), a ``.keras`` round trip and
the same model in every other kerasep tool (``kerasep separate -m model.keras``, export).

The training data is one track folder with stems, ``TRACK/{vocals,drums,bass,other}.wav`` (the
MUSDB18-HQ layout): the mixture is their sum, the targets vocals and accompaniment (the rest).

Run:

    python examples/custom_separator.py --track musdb18hq/train/SONG --steps 200 -o custom/
    python examples/custom_separator.py --track musdb18hq/test/SONG --smoke      # CI: a few steps
"""
import argparse
from pathlib import Path

import numpy as np

import kerasep
from kerasep.backend import keras, tf
from kerasep.layers import ISTFT, STFT, ApplyMask, Magnitude, RatioMask
from kerasep.models import Separator

ACCOMPANIMENT = ("drums", "bass", "other")


@keras.saving.register_keras_serializable(package="examples")
class MaskSeparator(Separator):
    """STFT -> magnitude -> a small CNN -> one ratio mask per target -> inverse STFT.

    Args:
        targets: stem names; n_fft, hop_length: the STFT; filters: the CNN's channels.
    """

    def __init__(self, targets=("vocals", "accompaniment"), nb_channels=2, sample_rate=44100,
                 n_fft=1024, hop_length=256, filters=16, **kwargs):
        super().__init__(**kwargs)
        self.targets, self.nb_channels, self.sample_rate = list(targets), int(nb_channels), int(sample_rate)
        self.n_fft, self.hop_length, self.filters = int(n_fft), int(hop_length), int(filters)
        self.stft = STFT(n_fft, hop_length, padding="center")  # (b, c, frames, bins, 2)
        self.magnitude = Magnitude()
        self.net = keras.Sequential([  # (b, frames, bins, c) -> (b, frames, bins, c * targets)
            keras.layers.Conv2D(filters, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(filters, 3, padding="same", activation="relu", dilation_rate=2),
            keras.layers.Conv2D(self.nb_channels * len(self.targets), 3, padding="same", activation="softplus"),
        ], name="mask_net")
        self.ratio_mask = RatioMask(separation_exponent=2.0)
        self.apply_mask = ApplyMask()
        self.istft = ISTFT(n_fft, hop_length, padding="center")

    def call(self, waveform, training=False):
        spec = self.stft(waveform)
        mag = self.magnitude(spec)  # (b, c, frames, bins)
        x = tf.transpose(tf.math.log1p(mag), [0, 2, 3, 1])  # channels last for Conv2D
        est = self.net(x, training=training)
        n = self.nb_channels
        estimates = [tf.transpose(est[..., i * n:(i + 1) * n], [0, 3, 1, 2]) * mag for i in range(len(self.targets))]
        masks = self.ratio_mask(estimates)
        return {t: self.istft(self.apply_mask(spec, m), length=waveform) for t, m in zip(self.targets, masks)}

    def get_config(self):
        return dict(super().get_config(), targets=self.targets, nb_channels=self.nb_channels,
                    sample_rate=self.sample_rate, n_fft=self.n_fft, hop_length=self.hop_length,
                    filters=self.filters)


def load_track(folder, duration=None):
    """``(mixture, {"vocals": ..., "accompaniment": ...})`` as (nb_timesteps, 2) arrays."""
    folder = Path(folder)
    stems = {name: kerasep.audio.load(folder / f"{name}.wav", duration=duration) for name in ("vocals",) + ACCOMPANIMENT}
    targets = {"vocals": stems["vocals"], "accompaniment": sum(stems[s] for s in ACCOMPANIMENT)}
    return targets["vocals"] + targets["accompaniment"], targets


def crops(mix, targets, seconds, count, rate=44100, seed=0):
    """``count`` random crops of ``seconds``: x (count, 2, n) and y {target: (count, 2, n)}."""
    n = int(seconds * rate)
    starts = np.random.RandomState(seed).randint(0, max(1, mix.shape[0] - n), size=count)
    x = np.stack([mix[s:s + n].T for s in starts])
    y = {t: np.stack([v[s:s + n].T for s in starts]) for t, v in targets.items()}
    return x, y


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--track", required=True, help="folder with vocals/drums/bass/other.wav")
    parser.add_argument("-o", "--output", default="custom_separator", help="output folder")
    parser.add_argument("--steps", type=int, default=200, help="training steps (batches of 4 crops of 2 s)")
    parser.add_argument("--smoke", action="store_true", help="quick run for CI: 6 steps on 4 s of the track")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)

    mix, targets = load_track(args.track, duration=4.0 if args.smoke else None)
    steps = 6 if args.smoke else args.steps
    x, y = crops(mix, targets, seconds=1.0 if args.smoke else 2.0, count=4 * steps)

    model = MaskSeparator(filters=8 if args.smoke else 16)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss={t: "mae" for t in model.targets})
    before = model.evaluate(x[:4], y_slice(y, 4), verbose=0, return_dict=True)["loss"]
    model.fit(x, y, batch_size=4, epochs=1, verbose=0 if args.smoke else "auto")
    after = model.evaluate(x[:4], y_slice(y, 4), verbose=0, return_dict=True)["loss"]
    print(f"L1 on the first batch: {before:.5f} before, {after:.5f} after {steps} steps")

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "custom.keras"
    model.save(path)
    reloaded = kerasep.zoo.load(str(path))  # any kerasep tool takes the file: `kerasep separate -m custom.keras`
    stems = kerasep.separate(mix, model=reloaded)
    for name, audio in stems.items():
        kerasep.audio.save(out / f"{name}.wav", audio, reloaded.sample_rate, subtype="FLOAT", overwrite=True)
    print(f"wrote {path} and {', '.join(str(out / f'{n}.wav') for n in stems)}")
    return before, after, stems


def y_slice(y, n):
    return {t: v[:n] for t, v in y.items()}


if __name__ == "__main__":
    main()
