"""Training configs: the defaults, :class:`ConfigError` and :func:`load_config` (the keys are
described in :mod:`kerasep.train`)."""
import copy
import json
import os
from pathlib import Path


DEFAULT_DATA = {
    "source": "musdb",
    "is_wav": False,
    "sources": ["drums", "bass", "other", "vocals"],
    "targets": None,
    "train": {"subset": "train", "split": "train"},
    "valid": {"subset": "train", "split": "valid"},
    "seq_duration": 6.0,
    "samples_per_track": 64,
    "batch_size": 16,
    "augmentations": ["gain", "channelswap"],
    "max_shift": 0.0,
    "random_track_mix": False,
    "valid_seq_duration": None,
    "valid_batch_size": 1,
    "cache_dir": None,
    "short_tracks": "error",
    "sample_rate": None,
}
DEFAULT_TRAINING = {
    "epochs": 100,
    "optimizer": "adam",
    "lr": 1e-3,
    "weight_decay": 0.0,
    "clipnorm": None,
    "domain": "spectrogram",
    "loss": None,
    "loss_args": {},
    "patience": 20,
    "lr_decay_patience": 10,
    "lr_decay_gamma": 0.3,
    "min_lr": 1e-6,
    "seed": 42,
    "deterministic": True,
    "mixed_precision": "auto",
    "strategy": "auto",
    "steps_per_execution": 1,
}


class ConfigError(ValueError):
    """A training config key is missing, unknown or out of range."""


def load_config(path_or_dict):
    """A training config (dict or JSON file path) merged with the defaults, validated."""
    if isinstance(path_or_dict, (str, os.PathLike)):
        p = Path(path_or_dict)
        if not p.is_file():
            raise ConfigError(f"training config not found: {p}")
        try:
            raw = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{p}: not valid JSON ({e})") from None
    else:
        raw = copy.deepcopy(dict(path_or_dict))
    # "run": what train() records of a run (data root, precision policy) in the run folder's
    # train_config.json, which loads back as a config; it is not an input.
    unknown = set(raw) - {"model", "data", "training", "output_dir", "description", "run"}
    if unknown:
        raise ConfigError(f"unknown top-level config key(s) {sorted(unknown)}; expected model, data, training, output_dir")
    if "model" not in raw:
        raise ConfigError("the config needs a 'model' entry: a zoo name or {'family': ..., 'config': {...}}")
    cfg = {"model": raw["model"], "output_dir": raw.get("output_dir"), "description": raw.get("description", "")}
    for key, defaults in (("data", DEFAULT_DATA), ("training", DEFAULT_TRAINING)):
        section = dict(raw.get(key) or {})
        bad = set(section) - set(defaults)
        if bad:
            raise ConfigError(f"unknown {key} key(s) {sorted(bad)}; expected some of {sorted(defaults)}")
        merged = copy.deepcopy(defaults)
        merged.update(section)
        cfg[key] = merged
    t = cfg["training"]
    if t["domain"] not in ("spectrogram", "waveform"):
        raise ConfigError(f"training.domain must be 'spectrogram' or 'waveform'. Received: {t['domain']!r}")
    if t["strategy"] not in ("auto", "default", "mirrored", "multiworker"):
        raise ConfigError(f"training.strategy must be auto/default/mirrored/multiworker. Received: {t['strategy']!r}")
    if cfg["data"]["source"] not in ("musdb", "folder"):
        raise ConfigError(f"data.source must be 'musdb' or 'folder'. Received: {cfg['data']['source']!r}")
    return cfg
