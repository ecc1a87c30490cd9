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
    "gain_range": [0.25, 1.25],
    "max_shift": 0.0,
    "random_track_mix": False,
    "remix_group_size": None,
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
    "ema_momentum": None,
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
    "freeze_batchnorm": None,
}

#: Keys of the ``model`` entry, by form (see :func:`model_spec`).
ZOO_MODEL_KEYS = ("zoo", "pretrained", "weights", "config")
FAMILY_MODEL_KEYS = ("family", "config")


class ConfigError(ValueError):
    """A training config key is missing, unknown or out of range."""


def model_spec(model_cfg):
    """The config's ``model`` entry, validated, in one form: a dict with ``zoo`` (zoo name or
    None), ``family``, ``config`` (the architecture: the zoo entry's config updated with the
    entry's ``config`` overrides), ``overrides``, ``pretrained`` (bool) and ``weights`` (a local
    weights path for :func:`kerasep.zoo.load`, or None).

    Accepted forms (errors name the field path, e.g. ``model.zoo``):

    - ``"unet-2stems"``: a zoo name, its architecture **untrained** (= ``{"zoo": name}``);
    - ``{"zoo": name, "pretrained": true, "weights": null, "config": {...}}``: a zoo model,
      with its pretrained weights when ``pretrained`` (default false) is true (loaded with
      :func:`kerasep.zoo.load`: fetched, sha256-verified and cached as usual; ``weights`` is
      its local-weights argument); ``config`` overrides architecture arguments of the zoo
      entry that do not change the weights' shapes (e.g. ``{"dropout": 0.0}``);
    - ``{"family": ..., "config": {...}}``: a family of ``kerasep.zoo.registry.FAMILIES`` with
      its constructor arguments, untrained.
    """
    from kerasep.zoo import registry

    if isinstance(model_cfg, str):
        model_cfg = {"zoo": model_cfg}
    if not isinstance(model_cfg, dict):
        raise ConfigError("model must be a zoo name, {'zoo': name, 'pretrained': true} or "
                          f"{{'family': ..., 'config': {{...}}}}. Received: {model_cfg!r}")
    if "zoo" in model_cfg and "family" in model_cfg:
        raise ConfigError("model: give either 'zoo' (a zoo model) or 'family' (an architecture), not both")
    if "zoo" not in model_cfg and "family" not in model_cfg:
        raise ConfigError("model needs a 'zoo' name or a 'family'; expected {'zoo': name, 'pretrained': true} "
                          f"or {{'family': ..., 'config': {{...}}}}. Received keys: {sorted(model_cfg)}")
    allowed = ZOO_MODEL_KEYS if "zoo" in model_cfg else FAMILY_MODEL_KEYS
    unknown = sorted(set(model_cfg) - set(allowed))
    if unknown:
        hint = " ('pretrained' needs a zoo model: {'zoo': name, 'pretrained': true})" if (
            "pretrained" in unknown) else ""
        raise ConfigError(f"model: unknown key(s) {unknown}; expected some of {list(allowed)}{hint}")
    overrides = model_cfg.get("config") or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"model.config must be a dict of architecture arguments. Received: {overrides!r}")
    if "family" in model_cfg:
        family = model_cfg["family"]
        if not isinstance(family, str) or family not in registry.FAMILIES:
            raise ConfigError(f"model.family: unknown model family {family!r}; expected one of "
                              f"{sorted(registry.FAMILIES)}")
        return {"zoo": None, "family": family, "config": dict(overrides), "overrides": {},
                "pretrained": False, "weights": None}
    name = model_cfg["zoo"]
    if not isinstance(name, str) or name not in registry.MODELS:
        raise ConfigError(f"model.zoo: unknown zoo name {name!r}; expected one of {registry.available()}")
    pretrained = model_cfg.get("pretrained", False)
    if not isinstance(pretrained, bool):
        raise ConfigError(f"model.pretrained must be true or false. Received: {pretrained!r}")
    weights = model_cfg.get("weights")
    if weights is not None and not (isinstance(weights, str) and weights):
        raise ConfigError(f"model.weights must be a path (a folder, release archive or wheel). Received: {weights!r}")
    if weights is not None and not pretrained:
        raise ConfigError("model.weights: local weights are only read with model.pretrained=true")
    entry = registry.get(name)
    bad = sorted(set(overrides) - set(entry["config"]))
    if bad:
        raise ConfigError(f"model.config: unknown argument(s) {bad} of zoo model {name!r}; expected some of "
                          f"{sorted(entry['config'])}")
    return {"zoo": name, "family": entry["family"], "config": dict(entry["config"], **overrides),
            "overrides": dict(overrides), "pretrained": pretrained, "weights": weights}


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
        if not isinstance(path_or_dict, dict):
            raise ConfigError(f"a training config is a dict or a JSON file path. Received: {type(path_or_dict).__name__}")
        raw = copy.deepcopy(dict(path_or_dict))
    if not isinstance(raw, dict):
        raise ConfigError(f"a training config is a JSON object {{\"model\": ..., \"data\": {{...}}, "
                          f"\"training\": {{...}}}}. Received: {type(raw).__name__}")
    # "run": what train() records of a run (data root, precision policy) in the run folder's
    # train_config.json, which loads back as a config; it is not an input.
    unknown = set(raw) - {"model", "data", "training", "output_dir", "description", "run"}
    if unknown:
        raise ConfigError(f"unknown top-level config key(s) {sorted(unknown)}; expected model, data, training, output_dir")
    if "model" not in raw:
        raise ConfigError("the config needs a 'model' entry: a zoo name, {'zoo': name, 'pretrained': true} "
                          "or {'family': ..., 'config': {...}}")
    model_spec(raw["model"])
    cfg = {"model": raw["model"], "output_dir": raw.get("output_dir"), "description": raw.get("description", "")}
    for key, defaults in (("data", DEFAULT_DATA), ("training", DEFAULT_TRAINING)):
        section = {} if raw.get(key) is None else raw[key]
        if not isinstance(section, dict):
            raise ConfigError(f"{key} must be a JSON object of {key} keys. Received: {section!r}")
        section = dict(section)
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
    if t["freeze_batchnorm"] not in (None, True, False):
        raise ConfigError(f"training.freeze_batchnorm must be true, false or null (true when the model starts "
                          f"from pretrained weights). Received: {t['freeze_batchnorm']!r}")
    if cfg["data"]["source"] not in ("musdb", "folder"):
        raise ConfigError(f"data.source must be 'musdb' or 'folder'. Received: {cfg['data']['source']!r}")
    from kerasep.train import schema

    problems = schema.errors("data", cfg["data"]) + schema.errors("training", cfg["training"])
    low_high = cfg["data"]["gain_range"]
    if not problems and not low_high[0] < low_high[1]:
        problems.append(f"data.gain_range: {low_high} needs low < high")
    group, batch = cfg["data"]["remix_group_size"], cfg["data"]["batch_size"]
    if not problems and group is not None and batch % group:
        problems.append(f"data.remix_group_size: {group} does not divide data.batch_size {batch}")
    if problems:
        raise ConfigError("invalid training config: " + "; ".join(problems))
    return cfg
