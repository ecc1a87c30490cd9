"""Fine-tune a pretrained model on your own stems.

Shows: starting from Deezer's pretrained ``unet-2stems`` (fetched, sha256-checked and cached by
``kerasep.zoo.load``) and training it further on a folder of stems,

    DIR/<track>/{vocals,drums,bass,other}.wav      (a mixture.wav there is ignored: the mixture
                                                    is the sum of the stems)

with vocals and accompaniment (= drums + bass + other) as targets. Two ways, same recipe
(BatchNorm frozen: the pretrained moving statistics are kept, Spleeter's L1 loss on the masked
magnitudes, Adam at a small learning rate):

- default: kerasep's training driver with the shipped config
  ``zoo/unet-2stems/finetune_config.json`` (``"model": {"zoo": "unet-2stems", "pretrained":
  true}``; tf.data pipeline with augmentations, checkpoints, resumable; the same as
  ``kerasep train zoo/unet-2stems/finetune_config.json --data DIR -o OUT``);
- ``--plain-keras``: the same steps written out with Keras: ``zoo.load`` +
  ``model.training_face()`` (the spectrogram-domain U-Net and its features) + freezing the
  BatchNormalization layers + ``compile``/``fit``.

Either way ``OUT/model.keras`` is the fine-tuned separator (``kerasep separate song.mp3 -m
OUT/model.keras``).

Run:

    python examples/finetune.py --data DIR -o runs/finetuned --epochs 20
    python examples/finetune.py --data DIR -o runs/finetuned --plain-keras --steps 200
    python examples/finetune.py --data musdb18hq/test --smoke        # CI: one or two steps
"""
import argparse
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FINETUNE_CONFIG = REPO / "zoo" / "unet-2stems" / "finetune_config.json"
ACCOMPANIMENT = ("drums", "bass", "other")


def with_driver(data, output, epochs, smoke):
    """kerasep's driver on the shipped fine-tuning config (flags of ``kerasep train`` as keys)."""
    import kerasep.train

    config = json.loads(FINETUNE_CONFIG.read_text())
    if smoke:  # one 2 s chunk per track and step, one epoch: seconds on a CPU
        config["data"].update(seq_duration=2.0, batch_size=2, samples_per_track=2)
    separator, history = kerasep.train.train(config, data, output_dir=output, epochs=epochs, tensorboard=False)
    print("val_loss per epoch:", ", ".join(f"{v:.4f}" for v in history["val_loss"]))
    return separator


def with_plain_keras(data, output, steps, smoke):
    """The same fine-tuning as plain Keras calls on the separator's training face."""
    import kerasep
    from kerasep import losses
    from kerasep.backend import keras, tf

    model = kerasep.zoo.load("unet-2stems")
    face = model.training_face()  # the U-Net core on magnitude patches, and how to featurize waveforms
    for layer in face.feature_model.layers:  # keep Deezer's BatchNorm statistics (Keras 3: inference mode)
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False

    tracks = sorted(p for p in Path(data).iterdir() if (p / "vocals.wav").is_file())
    if not tracks:
        raise SystemExit(f"{data}: no <track>/vocals.wav folders")
    seconds, batch = (2.0, 2) if smoke else (11.79, 2)  # 11.79 s: one whole 512-frame patch
    rng = np.random.RandomState(0)
    n = int(seconds * model.sample_rate)

    def chunk_batch():
        mixes, ys = [], {"vocals": [], "accompaniment": []}
        for _ in range(batch):
            folder = tracks[rng.randint(len(tracks))]
            stems = {s: kerasep.audio.load(folder / f"{s}.wav") for s in ("vocals",) + ACCOMPANIMENT}
            start = rng.randint(0, max(1, stems["vocals"].shape[0] - n))
            cut = {s: v[start:start + n] for s, v in stems.items()}
            ys["vocals"].append(cut["vocals"].T)
            ys["accompaniment"].append(sum(cut[s] for s in ACCOMPANIMENT).T)
            mixes.append(ys["vocals"][-1] + ys["accompaniment"][-1])
        return face.featurize(tf.constant(np.stack(mixes)), {t: tf.constant(np.stack(v)) for t, v in ys.items()})

    face.feature_model.compile(optimizer=keras.optimizers.Adam(1e-5),
                               loss={t: losses.get(face.default_loss) for t in face.targets})
    steps = 2 if smoke else steps
    for step in range(steps):
        x, y = chunk_batch()
        logs = face.feature_model.train_on_batch(x, y, return_dict=True)
        print(f"step {step + 1}/{steps}: loss {logs['loss']:.4f}")
    Path(output).mkdir(parents=True, exist_ok=True)
    model.save(Path(output) / "model.keras")  # the whole separator: the core's weights are its weights
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder of tracks: DIR/<track>/{vocals,drums,bass,other}.wav")
    parser.add_argument("-o", "--output", default="runs/unet-2stems-finetuned", help="output folder")
    parser.add_argument("--epochs", type=int, default=None, help="driver: epochs (default: the config's)")
    parser.add_argument("--steps", type=int, default=100, help="--plain-keras: training steps")
    parser.add_argument("--plain-keras", action="store_true", help="plain Keras calls instead of kerasep.train")
    parser.add_argument("--smoke", action="store_true", help="quick run for CI: one epoch / two steps on 2 s chunks")
    args = parser.parse_args(argv)
    if args.smoke and args.epochs is None:
        args.epochs = 1
    if args.plain_keras:
        model = with_plain_keras(args.data, args.output, args.steps, args.smoke)
    else:
        model = with_driver(args.data, args.output, args.epochs, args.smoke)

    # the fine-tuned separator, as any kerasep tool reads it back
    import kerasep

    tuned = kerasep.zoo.load(str(Path(args.output) / "model.keras"))
    track = sorted(p for p in Path(args.data).iterdir() if (p / "vocals.wav").is_file())[0]
    mix = sum(kerasep.audio.load(track / f"{s}.wav", duration=4.0) for s in ("vocals",) + ACCOMPANIMENT)
    stems = kerasep.separate(mix, model=tuned)
    print(f"wrote {Path(args.output) / 'model.keras'}; separated 4 s of {track.name}: "
          + ", ".join(f"{k} rms {np.sqrt(np.mean(v ** 2)):.4f}" for k, v in stems.items()))
    return model, stems


if __name__ == "__main__":
    main()
