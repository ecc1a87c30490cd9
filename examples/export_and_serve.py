"""Export a separator to one ONNX file and serve it with onnxruntime, without TensorFlow.

Shows: ``kerasep.export.export(model, "model.onnx", with_runner=True)`` writes the model (STFT,
network, masks and inverse STFT in one graph, dynamic batch and length, kerasep metadata) and,
beside it, ``run_onnx.pyz``: kerasep's self-contained runner, one zipapp file (numpy, onnxruntime,
soundfile).
The serving side then runs in a separate process in which ``import tensorflow`` (and
``import kerasep``) fail, as on a machine that has neither:

- the runner's command line: ``python run_onnx.pyz model.onnx song.wav -o OUT``;
- the runner as a library (the zipapp on ``sys.path``, ``import kerasep_runner as run_onnx``):
  ``run_onnx.OnnxSeparator(path)`` and ``run_onnx.separate_array`` on an array, what a web service would call per request.

Run:

    python examples/export_and_serve.py song.wav -m unet-2stems -o exported/   # a zoo model (~1 min export)
    python examples/export_and_serve.py --smoke                                # CI: a tiny untrained U-Net

Serving only (on the deployment machine, with the two files): ``python run_onnx.pyz model.onnx song.wav``.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST_SONG = REPO / "tests" / "data" / "audio_example.mp3"

# The serving process: no TensorFlow, no kerasep; only the exported folder.
SERVE = r'''
import json, sys
sys.modules["tensorflow"] = None  # `import tensorflow` raises ImportError from here on
sys.modules["kerasep"] = None
model_path, song, out = sys.argv[1:4]
folder = model_path.rsplit("/", 1)[0]
sys.path.insert(0, folder + "/run_onnx.pyz")  # a zipapp: its package imports from the zip
import kerasep_runner as run_onnx

# 1. the runner's command line, as `python run_onnx.pyz model.onnx song.wav -o out`
code = run_onnx.main([model_path, song, "-o", out, "--overwrite", "-q", "--cpu"])

# 2. the runner as a library: what a service calls per request
model = run_onnx.OnnxSeparator(model_path, providers=["CPUExecutionProvider"])
mix = run_onnx.load_audio(song, model.sample_rate, model.nb_channels)
stems = run_onnx.separate_array(model, mix)
print(json.dumps({"exit_status": code, "targets": list(model.targets), "sample_rate": model.sample_rate,
                  "shapes": {t: list(v.shape) for t, v in stems.items()},
                  "tensorflow_imported": sys.modules.get("tensorflow") is not None}))
'''


def tiny_unet():
    """An untrained 2-target U-Net small enough to export in seconds (smoke mode)."""
    from kerasep.models import UNetSeparator

    model = UNetSeparator(targets=["vocals", "accompaniment"], n_fft=512, hop_length=128, T=64, F=64,
                          conv_n_filters=[4, 8, 16])
    model.build((None, 2, None))
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("song", nargs="?", default=None, help="audio file to separate with the export")
    parser.add_argument("-m", "--model", default="unet-2stems", help="zoo name or .keras file (default unet-2stems)")
    parser.add_argument("-o", "--output", default="exported", help="output folder")
    parser.add_argument("--smoke", action="store_true", help="quick run for CI: a tiny U-Net, 5 s of the test song")
    args = parser.parse_args(argv)

    import kerasep
    from kerasep.export import export

    out = Path(args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        model = tiny_unet()
        song = out / "song.wav"  # 5 s of the test song as WAV
        kerasep.audio.save(song, kerasep.audio.load(args.song or TEST_SONG, duration=5.0), 44100, subtype="FLOAT",
                           overwrite=True)
    else:
        if args.song is None:
            parser.error("give a song (or --smoke)")
        model, song = args.model, Path(args.song).resolve()
    onnx_path = out / "model.onnx"
    export(model, onnx_path, with_runner=True, overwrite=True)
    print(f"wrote {onnx_path} and {out / 'run_onnx.pyz'}")

    proc = subprocess.run([sys.executable, "-c", SERVE, str(onnx_path), str(song), str(out / "separated")],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"serving process failed:\n{proc.stderr[-3000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"served without TensorFlow: {json.dumps(report)}")
    return report


if __name__ == "__main__":
    main()
