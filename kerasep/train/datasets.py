"""The training and validation ``tf.data`` pipelines a config describes."""
from kerasep.train.config import ConfigError


def list_tracks(data_cfg, root, which):
    from kerasep import data

    part = data_cfg[which] or {}
    if data_cfg["source"] == "musdb":
        return data.musdb_tracks(
            root,
            subset=part.get("subset", "train"),
            split=part.get("split"),
            is_wav=bool(data_cfg["is_wav"]),
            sources=data_cfg["sources"],
            sample_rate=data_cfg["sample_rate"],
        )
    return data.folder_tracks(
        root,
        data_cfg["sources"],
        subset=part.get("subset"),
        ext=part.get("ext"),
        sample_rate=data_cfg["sample_rate"],
    )


def make_datasets(cfg, root, adapter, start_epoch=0, seed=None):
    """``(train_ds, valid_ds, steps_per_epoch, nb_train_tracks)`` for a loaded config."""
    from kerasep import data

    d = cfg["data"]
    seed = cfg["training"]["seed"] if seed is None else seed
    train_tracks = list_tracks(d, root, "train")
    valid_tracks = list_tracks(d, root, "valid")
    rate = adapter.separator.sample_rate
    if train_tracks[0].rate != rate:
        raise ConfigError(
            f"the data is at {train_tracks[0].rate} Hz but the model expects {rate} Hz; set data.sample_rate={rate}"
        )
    groups = data.normalize_targets(d["targets"] or adapter.targets, train_tracks[0].sources)
    groups = adapter.data_targets(groups)
    train = data.training_dataset(
        train_tracks,
        groups,
        seq_duration=d["seq_duration"],
        samples_per_track=d["samples_per_track"],
        batch_size=d["batch_size"],
        augmentations=d["augmentations"],
        max_shift=d["max_shift"],
        random_track_mix=d["random_track_mix"],
        seed=seed,
        start_epoch=start_epoch,
        cache_dir=d["cache_dir"],
        short_tracks=d["short_tracks"],
        gain_range=d["gain_range"],
        remix_group_size=d["remix_group_size"],
        featurize=None,  # adapter.fit_model computes the features in its train step
    )
    valid = data.validation_dataset(
        valid_tracks,
        groups,
        seq_duration=d["valid_seq_duration"],
        batch_size=d["valid_batch_size"],
        cache_dir=d["cache_dir"],
        featurize=adapter.featurize,
    )
    steps = data.steps_per_epoch(len(train_tracks), d["samples_per_track"], d["batch_size"])
    return train, valid, steps, len(train_tracks)
