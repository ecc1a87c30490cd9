"""Training configs are validated by schema (kerasep/train/schema.py): every field's type and
range, with the field's path in the message; the schema's enumerations follow the code."""
import json

import pytest

from kerasep.train import ConfigError, load_config, schema
from testing import REPO


@pytest.mark.parametrize("section, field, value, expected", [
    ("data", "batch_size", "four", "data.batch_size: 'four' is not of type 'integer'"),
    ("data", "batch_size", True, "data.batch_size: True is not of type 'integer'"),
    ("data", "seq_duration", 0, "data.seq_duration: 0 is less than or equal to the minimum of 0"),
    ("data", "augmentations", ["gain", "bogus"], "data.augmentations.1: 'bogus' is not one of"),
    ("data", "short_tracks", "drop", "data.short_tracks: 'drop' is not one of"),
    ("training", "lr", -1e-3, "training.lr: -0.001 is less than or equal to the minimum of 0"),
    ("training", "epochs", -3, "training.epochs: -3 is less than the minimum of 1"),
    ("training", "epochs", 2.5, "training.epochs: 2.5 is not of type 'integer'"),
    ("training", "optimizer", "adamx", "training.optimizer: 'adamx' is not one of"),
    ("training", "loss", "l2", "training.loss: 'l2' is not one of"),
    ("training", "lr_decay_gamma", 1.5, "training.lr_decay_gamma: 1.5 is greater than the maximum of 1"),
])
def test_bad_fields_are_refused_with_their_path(section, field, value, expected):
    with pytest.raises(ConfigError, match="invalid training config") as info:
        load_config({"model": "unet-2stems", section: {field: value}})
    assert expected in str(info.value)


def test_every_problem_is_listed():
    with pytest.raises(ConfigError) as info:
        load_config({"model": "unet-2stems", "data": {"batch_size": 0}, "training": {"lr": 0}})
    assert "data.batch_size" in str(info.value) and "training.lr" in str(info.value)


def test_shipped_configs_and_defaults_are_valid():
    load_config({"model": "unet-2stems"})
    shipped = [p for p in (REPO / "zoo").glob("*/*.json") if p.name != "config.json"]
    assert shipped
    for path in shipped:
        load_config(path)
        assert json.loads(path.read_text())["model"]


def test_schema_enumerations_follow_the_code():
    from kerasep import losses
    from kerasep.data import augment

    assert schema.AUGMENTATIONS == list(augment.AUGMENTATIONS)
    assert schema.LOSSES == list(losses.LOSSES)
