"""JSON Schema of a training config's ``data`` and ``training`` sections (jsonschema, draft
2020-12): every field's type and range, checked by :func:`kerasep.train.load_config` after the
defaults are merged in, with the field's path in the message (``training.lr: -0.001 is less than
or equal to the minimum of 0``).

The enumerations mirror the code that consumes them (a test keeps them equal):
:data:`kerasep.data.augment.AUGMENTATIONS` and :data:`kerasep.losses.LOSSES`.
"""
AUGMENTATIONS = ["gain", "channelswap", "signflip"]
LOSSES = ["spectrogram_mse", "spectrogram_l1", "waveform_l1", "si_sdr", "multi_resolution_stft",
          "waveform_multi_stft_l1"]

_POS_INT = {"type": "integer", "minimum": 1}
_POS_NUM = {"type": "number", "exclusiveMinimum": 0}
_NONNEG_NUM = {"type": "number", "minimum": 0}
_NAMES = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1, "uniqueItems": True}
_PART = {
    "type": ["object", "null"],
    "properties": {
        "subset": {"type": ["string", "null"]},
        "split": {"enum": ["train", "valid", None]},
        "ext": {"type": ["string", "null"]},
    },
    "additionalProperties": False,
}

DATA = {
    "type": "object",
    "properties": {
        "source": {"enum": ["musdb", "folder"]},
        "is_wav": {"type": "boolean"},
        "sources": _NAMES,
        "targets": {
            "anyOf": [
                {"type": "null"},
                _NAMES,
                {"type": "object", "minProperties": 1, "additionalProperties": _NAMES},
            ]
        },
        "train": _PART,
        "valid": _PART,
        "seq_duration": _POS_NUM,
        "samples_per_track": _POS_INT,
        "batch_size": _POS_INT,
        "augmentations": {"type": "array", "items": {"enum": AUGMENTATIONS}, "uniqueItems": True},
        "gain_range": {"type": "array", "items": _NONNEG_NUM, "minItems": 2, "maxItems": 2},
        "max_shift": _NONNEG_NUM,
        "random_track_mix": {"type": "boolean"},
        "remix_group_size": {"anyOf": [{"type": "null"}, _POS_INT]},
        "valid_seq_duration": {"anyOf": [{"type": "null"}, _POS_NUM]},
        "valid_batch_size": _POS_INT,
        "cache_dir": {"type": ["string", "null"]},
        "short_tracks": {"enum": ["error", "skip", "pad"]},
        "sample_rate": {"anyOf": [{"type": "null"}, _POS_INT]},
    },
}

TRAINING = {
    "type": "object",
    "properties": {
        "epochs": _POS_INT,
        "optimizer": {"enum": ["adam", "adamw", "sgd"]},
        "lr": _POS_NUM,
        "weight_decay": _NONNEG_NUM,
        "clipnorm": {"anyOf": [{"type": "null"}, _POS_NUM]},
        "ema_momentum": {"anyOf": [{"type": "null"}, {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}]},
        "domain": {"enum": ["spectrogram", "waveform"]},
        "loss": {"enum": LOSSES + [None]},
        "loss_args": {"type": "object"},
        "patience": {"type": "integer", "minimum": 0},
        "lr_decay_patience": {"type": "integer", "minimum": 0},
        "lr_decay_gamma": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "min_lr": _NONNEG_NUM,
        "seed": {"type": "integer"},
        "deterministic": {"type": "boolean"},
        "mixed_precision": {"enum": ["auto", True, False]},
        "strategy": {"enum": ["auto", "default", "mirrored", "multiworker"]},
        "steps_per_execution": _POS_INT,
        "freeze_batchnorm": {"enum": [True, False, None]},
    },
}

SECTIONS = {"data": DATA, "training": TRAINING}


def errors(section, values):
    """Messages ``"<section>.<field>: <what is wrong>"`` for every schema violation in the merged
    section ``values`` (empty when valid), sorted by field."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(SECTIONS[section])
    out = []
    for error in validator.iter_errors(values):
        path = ".".join([section] + [str(p) for p in error.absolute_path])
        out.append(f"{path}: {error.message}")  # jsonschema counts no boolean as a number
    return sorted(out)
