"""``zoo/<name>/`` mirrors the registry: ``config.json`` equals the registry entry, and each model
card exists, names the licence and lists the weight checksums the registry pins."""
import json
import re

import pytest

from kerasep.zoo import registry

from testing import REPO

ZOO = REPO / "zoo"
ENTRY_KEYS = {"family", "config", "weights", "license", "description"}


def _as_json(value):
    """The registry entry as it reads back from JSON (tuples → lists)."""
    return json.loads(json.dumps(value))


@pytest.mark.parametrize("name", registry.available())
def test_config_json_equals_registry(name):
    path = ZOO / name / "config.json"
    assert path.is_file(), f"missing {path}: write json.dumps(kerasep.zoo.registry.MODELS[{name!r}])"
    stored = json.loads(path.read_text())
    entry = registry.MODELS[name]
    assert ENTRY_KEYS <= set(entry), f"registry entry {name!r} lacks {sorted(ENTRY_KEYS - set(entry))}"
    assert stored == _as_json(entry), (
        f"{path} differs from kerasep.zoo.registry.MODELS[{name!r}]; keys that differ: "
        f"{sorted(k for k in set(stored) | set(entry) if stored.get(k) != _as_json(entry).get(k))}"
    )


@pytest.mark.parametrize("name", registry.available())
def test_card_names_licence_and_checksums(name):
    path = ZOO / name / "card.md"
    assert path.is_file(), f"missing model card {path}"
    card = path.read_text()
    entry = registry.MODELS[name]
    assert re.search(rf"^# {re.escape(name)}\b", card, re.M), f"{path} should start with '# {name}'"
    # "Licence"/"License" (a heading or a line) followed closely by the registry's licence name
    mentions = [card[m.end() : m.end() + 300] for m in re.finditer(r"licen[cs]e", card, re.I)]
    assert any(entry["license"] in text for text in mentions), (
        f"{path} must name the licence {entry['license']!r} next to the word 'Licence'"
    )
    source = registry.WEIGHT_SOURCES.get(entry.get("weights"))
    if source is not None:
        pinned = [d for d in source.get("files", {}).values() if d]  # None: pinned through the archive
        pinned += [source[k]["sha256"] for k in ("archive", "wheel") if k in source]
        missing = [sha for sha in pinned if sha not in card]
        assert not missing, f"{path} does not list the pinned checksums {missing}"


def test_every_zoo_folder_is_registered():
    folders = sorted(p.parent.name for p in ZOO.glob("*/config.json"))
    stale = [f for f in folders if f not in registry.MODELS]
    assert not stale, f"zoo/ folders without a registry entry: {stale}; known: {registry.available()}"

