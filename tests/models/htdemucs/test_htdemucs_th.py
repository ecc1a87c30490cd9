"""demucs 4 ``.th`` packages (kerasep.zoo.converters.htdemucs), bags of models
(kerasep.models.bag.SeparatorBag) and demucs' ``apply_model`` inference semantics
(``ChunkPolicy(weighting="triangular")``, shifts, bags) against demucs 4.1.0.

Checkpoints are written in the release format by demucs' own serialisation, as demucs'
``tools/export.py`` does (``demucs.states.serialize_model(half=True)`` of an ``HTDemucs`` with
random weights at a small config, the segment a ``fractions.Fraction``, ``metrics`` added, saved by
``demucs.states.save_with_checksum`` as ``<sig>-<sha256[:8]>.th``); the references load the same files with ``demucs.states.load_model`` /
demucs' ``LocalRepo`` + ``BagOnlyRepo``.
"""
import copy
import json
import sys
import types
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("demucs.htdemucs")
from demucs import apply as demucs_apply  # noqa: E402
from demucs import states as demucs_states  # noqa: E402
from demucs.hdemucs import HDemucs as TorchHDemucs  # noqa: E402
from demucs.htdemucs import HTDemucs as TorchHTDemucs  # noqa: E402

from kerasep import inference, zoo  # noqa: E402
from kerasep.models.bag import SeparatorBag  # noqa: E402
from kerasep.models.separator import ChunkPolicy, Separator  # noqa: E402
from kerasep.zoo.converters import htdemucs as conv  # noqa: E402
from kerasep.zoo.converters.demucs import UntrustedCheckpointError  # noqa: E402

SOURCES = ["drums", "bass", "other", "vocals"]
SOURCES_6 = SOURCES + ["guitar", "piano"]
RATE = 44100
# The released layout (nfft 4096, depth 4, DConv in encoder and decoder, bottom channels around the
# cross-domain Transformer) at a small width; a 1.95 s segment (a Fraction, 85995 samples), so the
# 6.08 s track is cut into 5 segments, the last two shorter than a segment.
SMALL = dict(channels=8, depth=4, nfft=4096, dconv_mode=3, t_layers=2, t_heads=2, bottom_channels=16,
             t_dropout=0.02, segment=Fraction(39, 20))


@pytest.fixture(scope="module", autouse=True)
def _omegaconf():
    """``serialize_model`` stores ``OmegaConf.to_container(training_args)``; without omegaconf
    installed, a stand-in returning the plain dict it would produce (module scope, restored)."""
    try:
        import omegaconf  # noqa: F401

        yield
        return
    except ImportError:
        pass
    module = types.ModuleType("omegaconf")
    module.OmegaConf = type("OmegaConf", (), {"to_container": staticmethod(lambda cfg, resolve=True: copy.deepcopy(cfg))})
    sys.modules["omegaconf"] = module
    try:
        yield
    finally:
        sys.modules.pop("omegaconf", None)


def _randomise(model, seed):
    """Near-identity parameters (LayerScales, norms, frequency embedding) randomised so every
    branch counts."""
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("scale"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            elif "norm" in name:
                p.add_(0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("embedding.weight"):
                p.mul_(10.0)


def release_file(folder, sig, sources=SOURCES, seed=0, klass=TorchHTDemucs, **kwargs):
    """A demucs 4 package as demucs writes its releases: ``serialize_model`` (float16 state) +
    ``save_with_checksum`` → ``folder/<sig>-<sha256[:8]>.th``."""
    torch.manual_seed(seed)
    # the arguments demucs' train.get_model passes (sources, audio_channels, samplerate, segment)
    # and the architecture's
    kwargs = dict(SMALL, **kwargs) if klass is TorchHTDemucs else kwargs
    model = klass(sources=list(sources), audio_channels=2, samplerate=RATE, **kwargs).eval()
    _randomise(model, seed)
    training_args = {"model": "htdemucs", "seed": seed, "dset": {"segment": 10, "sources": list(sources)},
                     "htdemucs": {"dconv_mode": 3, "t_dropout": 0.02}, "weights": [1.0] * len(sources)}
    package = demucs_states.serialize_model(model, training_args)
    # demucs' tools/export.py also stores the segment as a Fraction and (valid, test) metrics
    package["kwargs"]["segment"] = Fraction(model.segment)
    package["metrics"] = ({"loss": 0.12, "nsdr": 8.5}, {"sdr": 9.0, "nsdr": 8.9})
    demucs_states.save_with_checksum(package, Path(folder) / f"{sig}.th")
    (path,) = Path(folder).glob(f"{sig}-*.th")
    return path


def _sdr(ref, est):
    return 10 * np.log10(np.sum(ref ** 2) / np.sum((ref - est) ** 2))


def _reference(model, mix, shifts=0):
    """demucs' ``apply_model(shifts=shifts, split=True, overlap=0.25)`` on ``mix`` ``(n, 2)`` →
    ``{source: (n, 2)}``."""
    x = torch.from_numpy(np.ascontiguousarray(mix.T))[None]
    with torch.no_grad():
        out = demucs_apply.apply_model(model, x, shifts=shifts, split=True, overlap=0.25)[0].numpy()
    return {s: out[i].T for i, s in enumerate(model.sources)}


@pytest.fixture(scope="module")
def track(musdb_hq_track):
    import soundfile as sf

    path = musdb_hq_track / "mixture.wav"
    mix, rate = sf.read(path, dtype="float32")
    assert rate == RATE and mix.shape[0] > 3 * int(SMALL["segment"] * RATE)
    return path, mix


# --- reading release packages ------------------------------------------------------------------

def test_release_package_is_read_without_code(tmp_path):
    path = release_file(tmp_path, "1a2b3c4d")
    assert sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path))) == [
        "demucs.htdemucs.HTDemucs", "fractions.Fraction"]
    assert conv.is_demucs4_package(path)
    package = conv.read_package(path)
    assert package["klass"] == "demucs.htdemucs.HTDemucs"
    assert package["kwargs"]["segment"] == Fraction(39, 20) and isinstance(package["kwargs"]["segment"], Fraction)
    raw = torch.load(str(path), weights_only=False)
    assert all(v.dtype == torch.float16 for v in raw["state"].values())  # as released: half precision
    assert set(package["state"]) == set(raw["state"])
    assert all(v.dtype == np.float32 for v in package["state"].values())
    config = conv.package_config(package)
    assert config["targets"] == SOURCES and config["segment"] == 1.95 and config["nb_channels"] == 2
    model = conv.load_package(path)
    assert model.training_length == 85995 and model.chunking.weighting == "triangular"


def test_cli_separate_th_matches_apply_model(track, tmp_path):
    """Acceptance: ``kerasep separate -m FILE.th`` on the whole real MUSDB18 mixture (6.08 s, 5
    segments) against demucs ``apply_model(shifts=0, split=True, overlap=0.25)`` on the same file."""
    import soundfile as sf

    from kerasep import cli

    wav, mix = track
    path = release_file(tmp_path, "955717e8", seed=3)
    out = tmp_path / "out"
    assert cli.main(["separate", str(wav), "-m", str(path), "-o", str(out), "--subtype", "FLOAT", "-q"]) == 0
    expected = _reference(demucs_states.load_model(path), mix)
    sdr = {}
    for s in SOURCES:
        (stem,) = out.glob(f"*/{s}.wav")
        ours, rate = sf.read(stem, dtype="float32")
        assert rate == RATE and ours.shape == mix.shape
        sdr[s] = _sdr(expected[s], ours)
    print("SDR vs demucs apply_model (4 sources, CLI):", {s: round(v, 1) for s, v in sdr.items()})
    assert min(sdr.values()) >= 50, sdr


def test_six_sources_and_shifts_match_apply_model(track, tmp_path, monkeypatch):
    """An ``htdemucs_6s``-shaped package through ``zoo.load(FILE.th)``: ``separate`` on the whole
    track, and ``shifts=2`` with demucs' random offsets set to ours (same seed), ``two_stems``."""
    wav, mix = track
    path = release_file(tmp_path, "5c90dfd2", sources=SOURCES_6, seed=4)
    model = zoo.load(str(path))
    assert model.stems == SOURCES_6
    reference = demucs_states.load_model(path)
    expected = _reference(reference, mix)
    ours = inference.separate(mix, model=model)
    sdr = {s: _sdr(expected[s], ours[s]) for s in SOURCES_6}
    print("SDR vs demucs apply_model (6 sources):", {s: round(v, 1) for s, v in sdr.items()})
    assert min(sdr.values()) >= 50, sdr

    # shifts: demucs draws offset = random.randint(0, max_shift); ours max_shift - delay with the
    # same offsets from numpy's generator for the seed; 3 s of the track
    short = mix[: 3 * RATE]
    max_shift = RATE // 2
    rng = np.random.default_rng(7)
    offsets = iter([int(rng.integers(0, max_shift + 1)) for _ in range(2)])
    monkeypatch.setattr(demucs_apply.random, "randint", lambda a, b: next(offsets))
    expected = _reference(reference, short, shifts=2)
    ours = inference.separate(short, model=model, shifts=2, seed=7, two_stems="vocals")
    assert sorted(ours) == ["no_vocals", "vocals"]
    rest = sum(expected[s] for s in SOURCES_6 if s != "vocals")
    sdr = {"vocals": _sdr(expected["vocals"], ours["vocals"]), "no_vocals": _sdr(rest, ours["no_vocals"])}
    print("SDR vs demucs apply_model (shifts=2, two stems):", {s: round(v, 1) for s, v in sdr.items()})
    assert min(sdr.values()) >= 50, sdr


BAG_SIGS = ["f7e0c4bc", "d12395a8", "92cfc3b6", "04573f0d"]
BAG_WEIGHTS = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]


def test_bag_of_models_matches_apply_model(track, tmp_path, monkeypatch, kerasep_home):
    """``htdemucs_ft``-shaped: 4 packages + demucs' bag YAML (identity weights), loaded by
    :func:`load_bag` and by ``zoo.load`` (a zoo entry of family ``bag`` with those files), against
    demucs' ``BagOnlyRepo``/``LocalRepo`` bag through ``apply_model`` on the first 3 s of the real
    mixture (1.95 s segments every 1.46 s, the last cut short); disk-backed outputs. The whole track goes
    through the CLI in :func:`test_cli_separate_bag_yaml_matches_apply_model`."""
    import functools

    from demucs.repo import BagOnlyRepo, LocalRepo

    from kerasep.diskaudio import DiskArray
    from kerasep.zoo import registry

    wav, mix = track
    mix = np.ascontiguousarray(mix[: 3 * RATE])
    folder = tmp_path / "repo"
    folder.mkdir()
    files = [release_file(folder, sig, seed=10 + i) for i, sig in enumerate(BAG_SIGS)]
    (folder / "tiny_ft.yaml").write_text(f"models: {BAG_SIGS}\nweights: {json.dumps(BAG_WEIGHTS)}\n")
    reference = BagOnlyRepo(folder, LocalRepo(folder)).get_model("tiny_ft")
    expected = _reference(reference, mix)

    bag = conv.load_bag(folder / "tiny_ft.yaml")
    assert isinstance(bag, SeparatorBag) and bag.source_weights == BAG_WEIGHTS and bag.stems == SOURCES
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    disk = DiskArray.zeros(mix.shape[0], 2, directory=scratch)
    disk[0 : mix.shape[0]] = mix
    ours = inference.separate_array(disk, bag, alloc=functools.partial(DiskArray.zeros, directory=scratch))
    sdr = {s: _sdr(expected[s], np.asarray(ours[s][0 : mix.shape[0]])) for s in SOURCES}
    print("SDR vs demucs apply_model (bag of 4):", {s: round(v, 1) for s, v in sdr.items()})
    assert min(sdr.values()) >= 50, sdr

    # the zoo path: a registry entry like htdemucs_ft, the files given as a local folder
    member = {k: (float(v) if k == "segment" else v) for k, v in SMALL.items()}
    config = {"targets": SOURCES, "members": [{"family": "htdemucs", "config": dict(member, targets=SOURCES)}] * 4,
              "weights": BAG_WEIGHTS, "segment": None}
    monkeypatch.setitem(registry.WEIGHT_SOURCES, "htdemucs-ft-tiny-test", {
        "format": "demucs4-th", "description": "test", "license": "MIT",
        "files": {p.name: p.stem.rsplit("-", 1)[1] for p in files},
        "urls": {p.name: "https://invalid.example/" + p.name for p in files}})
    monkeypatch.setitem(registry.MODELS, "htdemucs-ft-tiny-test", {
        "family": "bag", "description": "test", "config": config, "weights": "htdemucs-ft-tiny-test",
        "license": "MIT"})
    monkeypatch.setenv("KERASEP_HOME", str(tmp_path / "home"))
    loaded = zoo.load("htdemucs-ft-tiny-test", weights=folder, download=False)
    assert isinstance(loaded, SeparatorBag)
    x = np.ascontiguousarray(mix[:RATE].T)[None]
    a, b = bag(x), loaded(x)
    assert max(float(np.abs(np.asarray(a[s]) - np.asarray(b[s])).max()) for s in SOURCES) <= 1e-6


def test_cli_separate_bag_yaml_matches_apply_model(track, tmp_path):
    """Acceptance: ``kerasep separate -m BAG.yaml`` (demucs' bag YAML with its ``.th`` files in
    ``--weights``) on the whole real mixture against demucs' bag through ``apply_model``; a bag
    whose file is missing or whose YAML has no ``models`` is refused naming the problem."""
    import soundfile as sf
    from demucs.repo import BagOnlyRepo, LocalRepo

    from kerasep import cli

    wav, mix = track
    folder = tmp_path / "repo"
    folder.mkdir()
    sigs = BAG_SIGS[:2]
    for i, sig in enumerate(sigs):
        release_file(folder, sig, seed=20 + i)
    weights = [[0.25, 1.0, 0.5, 0.0], [0.75, 0.0, 0.5, 1.0]]
    yaml_path = tmp_path / "tiny_bag.yaml"  # not beside its files: they come from --weights
    yaml_path.write_text(f"models: {sigs}\nweights: {json.dumps(weights)}\n")
    (folder / "tiny_bag.yaml").write_text(yaml_path.read_text())
    expected = _reference(BagOnlyRepo(folder, LocalRepo(folder)).get_model("tiny_bag"), mix)
    out = tmp_path / "out"
    args = ["separate", str(wav), "-m", str(yaml_path), "--weights", str(folder), "-o", str(out), "--subtype", "FLOAT", "-q"]
    assert cli.main(args) == 0
    sdr = {}
    for s in SOURCES:
        (stem,) = out.glob(f"*/{s}.wav")
        ours, rate = sf.read(stem, dtype="float32")
        assert rate == RATE and ours.shape == mix.shape
        sdr[s] = _sdr(expected[s], ours)
    print("SDR vs demucs apply_model (bag YAML, CLI):", {s: round(v, 1) for s, v in sdr.items()})
    assert min(sdr.values()) >= 50, sdr

    (folder / "empty.yaml").write_text("segment: 7.8\n")
    assert cli.main(["separate", str(wav), "-m", str(folder / "empty.yaml"), "-o", str(tmp_path / "o2"), "-q"]) == 1
    assert not (tmp_path / "o2").exists()
    with pytest.raises(FileNotFoundError, match="no checkpoint for signature"):
        zoo.load(str(yaml_path))  # its files are not beside it


def test_zoo_entries_pin_demucs_remote_files():
    """The zoo's htdemucs sources are demucs 4.1.0's: file names (sha256 prefixes) and URLs as
    ``demucs/remote/files.txt`` + ``pretrained.ROOT_URL`` give them, in the bag YAML's order, and
    ``htdemucs_ft``'s weights matrix is the YAML's."""
    import yaml
    from demucs import pretrained

    from kerasep.zoo import registry

    urls = pretrained._parse_remote_files(pretrained.REMOTE_ROOT / "files.txt")
    for name in ("htdemucs", "htdemucs_ft", "htdemucs_6s"):
        bag = yaml.safe_load((pretrained.REMOTE_ROOT / f"{name}.yaml").read_text())
        entry, source = registry.MODELS[name], registry.WEIGHT_SOURCES[registry.MODELS[name]["weights"]]
        expected = [urls[sig] for sig in bag["models"]]
        assert [u.rsplit("/", 1)[1] for u in expected] == list(source["files"]), name
        assert list(source.get("urls", {}).values()) or [source["url"]] == expected
        if "urls" in source:
            assert list(source["urls"].values()) == expected
        for file, prefix in source["files"].items():
            assert file.endswith(f"-{prefix}.th") and len(prefix) == 8
        assert source["format"] == "demucs4-th" and entry["license"] == "MIT"
        if entry["family"] == "bag":
            assert entry["config"]["weights"] == bag["weights"] and len(entry["config"]["members"]) == 4
        stems = registry.stems(name)
        assert stems == (SOURCES_6 if name == "htdemucs_6s" else SOURCES)


def test_zoo_load_single_file_weights(tmp_path, monkeypatch, kerasep_home, real_mixture):
    """A single-file ``demucs4-th`` zoo entry loads from a folder holding its ``.th`` file given as
    ``weights=`` (the sha256 prefix checked), equal to loading the file directly."""
    from kerasep.zoo import registry

    folder = tmp_path / "weights"
    folder.mkdir()
    path = release_file(folder, "0123abcd", seed=2)
    member = {k: (float(v) if k == "segment" else v) for k, v in SMALL.items()}
    monkeypatch.setitem(registry.WEIGHT_SOURCES, "htdemucs-tiny-test", {
        "format": "demucs4-th", "description": "test", "license": "MIT",
        "files": {path.name: path.stem.rsplit("-", 1)[1]}, "url": "https://invalid.example/" + path.name})
    monkeypatch.setitem(registry.MODELS, "htdemucs-tiny-test", {
        "family": "htdemucs", "description": "test", "config": dict(member, targets=SOURCES),
        "weights": "htdemucs-tiny-test", "license": "MIT"})
    monkeypatch.setenv("KERASEP_HOME", str(tmp_path / "home"))
    model = zoo.load("htdemucs-tiny-test", weights=folder, download=False)
    direct = zoo.load(str(path))
    x = np.ascontiguousarray(real_mixture[:RATE].T)[None]
    a, b = model(x), direct(x)
    assert max(float(np.abs(np.asarray(a[s]) - np.asarray(b[s])).max()) for s in SOURCES) == 0.0


# --- bad checkpoints ---------------------------------------------------------------------------

class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_bad_packages_give_clear_errors(tmp_path):
    good = release_file(tmp_path, "goodgood")
    package = torch.load(str(good), weights_only=False)

    def save(name, **changes):
        path = tmp_path / f"{name}.th"
        torch.save(dict(package, **changes), str(path))
        return path

    # pickled code: refused before anything runs
    marker = tmp_path / "ran"
    evil = save("evil", training_args={"x": _Evil(marker)})
    with pytest.raises(UntrustedCheckpointError, match=r"refers to code: posix\.system|refers to code: .*system"):
        zoo.load(str(evil))
    assert not marker.exists()
    # a model class that is not demucs' (would be imported and run by demucs' loader)
    other = save("other", klass=torch.nn.Linear)
    with pytest.raises(UntrustedCheckpointError, match=r"torch\.nn\.modules\.linear\.Linear"):
        conv.read_package(other)
    # missing and mis-shaped tensors
    state = dict(package["state"])
    del state["encoder.0.conv.weight"]
    with pytest.raises(ValueError, match=r"missing\.th.*missing 1 tensor.*encoder\.0\.conv\.weight"):
        zoo.load(str(save("missing", state=state)))
    state = dict(package["state"], **{"tdecoder.1.conv_tr.weight": torch.zeros(3, 3, 3, dtype=torch.half)})
    with pytest.raises(ValueError, match=r"tdecoder\.1\.conv_tr\.weight.*\(3, 3, 3\).*expects"):
        zoo.load(str(save("shape", state=state)))
    # unsupported options from the file's own kwargs
    with pytest.raises(ValueError, match=r"options\.th: not supported: cac=False"):
        zoo.load(str(save("options", kwargs=dict(package["kwargs"], cac=False))))
    # quantized (diffq) states
    with pytest.raises(ValueError, match="quantized"):
        conv.read_package(save("quantized", state={"__quantized": True, "quantized": {}}))
    # HDemucs (Hybrid Demucs v3) is recognised and refused clearly
    hdemucs = release_file(tmp_path, "hdemucs0", klass=TorchHDemucs, channels=4, depth=2)
    with pytest.raises(ValueError, match=r"demucs\.hdemucs\.HDemucs.*not supported"):
        zoo.load(str(hdemucs))
    # a bag whose file does not match the checksum in its name
    folder = tmp_path / "bag"
    folder.mkdir()
    bad = folder / "aaaabbbb-00000000.th"
    bad.write_bytes(good.read_bytes())
    (folder / "b.yaml").write_text("models: ['aaaabbbb']\n")
    with pytest.raises(ValueError, match="checksum mismatch"):
        conv.load_bag(folder / "b.yaml")
    with pytest.raises(FileNotFoundError, match="no checkpoint for signature 'cccc'"):
        conv.find_signature(folder, "cccc")


def test_zoo_converter_checks_the_files_architecture(tmp_path):
    """The ``demucs4-th`` converter refuses a file whose kwargs describe another architecture."""
    path = release_file(tmp_path, "arch0000")
    member = {k: (float(v) if k == "segment" else v) for k, v in SMALL.items()}
    model = zoo.build(dict(member, targets=SOURCES), "htdemucs")
    source = {"files": {path.name: path.stem.rsplit("-", 1)[1]}}
    conv.convert(model, tmp_path, source)  # same architecture
    other = zoo.build(dict(member, targets=SOURCES, t_cross_first=True), "htdemucs")
    with pytest.raises(ValueError, match=r"t_cross_first: file False, zoo config True"):
        conv.convert(other, tmp_path, source)


# --- the bag and the policy -------------------------------------------------------------------

class GainSeparator(Separator):
    """Stem ``i`` is the input times ``gains[i]``, segments of 0.1 s with demucs' weighting."""

    def __init__(self, targets, gains, **kwargs):
        super().__init__(**kwargs)
        self.targets, self.gains = list(targets), list(gains)
        self.nb_channels, self.sample_rate = 2, RATE

    @property
    def chunking(self):
        return ChunkPolicy("segment", segment_seconds=0.1, overlap=0.25, weighting="triangular")

    def call(self, x, training=False):
        return {t: x * g for t, g in zip(self.targets, self.gains)}


def test_separator_bag_weights_and_errors():
    a, b = GainSeparator(["x", "y"], [1.0, 2.0]), GainSeparator(["x", "y"], [3.0, 5.0])
    bag = SeparatorBag([a, b], weights=[[1.0, 0.0], [1.0, 1.0]])
    x = np.ones((1, 2, 10), np.float32)
    out = bag(x)
    np.testing.assert_allclose(np.asarray(out["x"]), 2.0 * x)  # (1 * 1 + 1 * 3) / 2
    np.testing.assert_allclose(np.asarray(out["y"]), 5.0 * x)  # (0 * 2 + 1 * 5) / 1
    # through inference: triangular segments, normalised weights, bag averaging, shifts
    mix = np.random.default_rng(0).standard_normal((10000, 2)).astype(np.float32)
    for shifts in (0, 2):
        out = inference.separate_array(mix, bag, shifts=shifts, seed=1)
        np.testing.assert_allclose(out["x"], 2.0 * mix, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out["y"], 5.0 * mix, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="2 lists of 2 floats"):
        SeparatorBag([a, b], weights=[[1.0, 1.0]])
    with pytest.raises(ValueError, match="positive total weight"):
        SeparatorBag([a, b], weights=[[1.0, 0.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match="share stems"):
        SeparatorBag([a, GainSeparator(["x", "z"], [1.0, 1.0])])


def test_triangular_weights_and_policy():
    for segment in (10, 11, 85995):
        ref = torch.cat([torch.arange(1, segment // 2 + 1), torch.arange(segment - segment // 2, 0, -1)])
        np.testing.assert_array_equal(inference.triangular_weights(segment), (ref / ref.max()).numpy())
    assert ChunkPolicy("segment", segment_seconds=1.0).weighting == "linear"
    with pytest.raises(ValueError, match="weighting"):
        ChunkPolicy("crossfade", weighting="triangular")
    with pytest.raises(ValueError, match="weighting"):
        ChunkPolicy("segment", segment_seconds=1.0, weighting="cosine")


def test_bag_contract(real_mixture, tmp_path):
    """A bag of two tiny HTDemucs fulfils the Separator contract (config and ``.keras`` round
    trips, chunked separation, SavedModel export) and the ``bag`` zoo entries mirror their
    config.json. A bag has no ONNX export (its members do: test_htdemucs_contract, tests/export/test_htdemucs_onnx.py)."""
    from testing import run_separator_test

    from kerasep.models.htdemucs import HTDemucs

    tiny = dict(channels=8, depth=3, nfft=512, dconv_mode=3, t_layers=1, t_heads=2, bottom_channels=8, segment=1.0)
    members = [HTDemucs(targets=SOURCES, **tiny), HTDemucs(targets=SOURCES, **tiny)]
    bag = SeparatorBag(members, weights=[[1.0, 0.5, 0.0, 1.0], [0.0, 0.5, 1.0, 1.0]])
    bag.build((None, 2, None))
    run_separator_test(bag, real_mixture, tmp_path, chunk_seconds=0.5, family="bag", exports=("saved_model",))


# demucs' conf/config.yaml `htdemucs:` section (github.com/facebookresearch/demucs, e976d93) with the
# grids/mmi.py overrides of the released models, as train.get_model passes them to HTDemucs.
RELEASED_KWARGS = dict(
    channels=48, channels_time=None, growth=2, nfft=4096, wiener_iters=0, end_iters=0, wiener_residual=False,
    cac=True, depth=4, rewrite=True, multi_freqs=[], multi_freqs_depth=3, freq_emb=0.2, emb_scale=10,
    emb_smooth=True, kernel_size=8, stride=4, time_stride=2, context=1, context_enc=0, norm_starts=4,
    norm_groups=4, dconv_mode=3, dconv_depth=2, dconv_comp=8, dconv_init=1e-3, bottom_channels=512,
    t_layers=5, t_hidden_scale=4.0, t_heads=8, t_dropout=0.02, t_layer_scale=True, t_gelu=True, t_emb="sin",
    t_max_positions=10000, t_max_period=10000.0, t_weight_pos_embed=1.0, t_cape_mean_normalize=True,
    t_cape_augment=True, t_cape_glob_loc_scale=[5000.0, 1.0, 1.4], t_sin_random_shift=0, t_norm_in=True,
    t_norm_in_group=False, t_group_norm=False, t_norm_first=True, t_norm_out=True, t_weight_decay=0.0,
    t_lr=None, t_sparse_self_attn=False, t_sparse_cross_attn=False, t_mask_type="diag", t_mask_random_seed=42,
    t_sparse_attn_window=400, t_global_window=100, t_sparsity=0.95, t_auto_sparsity=False,
    t_cross_first=False, rescale=0.1, segment=Fraction(343980, RATE),
)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["htdemucs", "htdemucs_6s"])
def test_zoo_configs_accept_released_size_packages(name, tmp_path, real_mixture):
    """A package of the released size written as demucs' training + export would (the full
    ``htdemucs`` kwargs of its config) converts into ``zoo.build(name)`` through the zoo's
    ``demucs4-th`` converter, and the result matches demucs on 1 s of the real mixture."""
    from kerasep.zoo import registry

    sources = registry.MODELS[name]["config"]["targets"]
    path = release_file(tmp_path, "rel00000", sources=sources, seed=1, **RELEASED_KWARGS)
    model = zoo.build(name)
    assert model.count_params() == sum(p.numel() for p in demucs_states.load_model(path).parameters())
    conv.convert(model, tmp_path, {"files": {path.name: path.stem.rsplit("-", 1)[1]}})
    x = np.ascontiguousarray(real_mixture[:RATE].T)[None]
    reference = demucs_states.load_model(path).eval()
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    out = model(x)
    ours = np.stack([np.asarray(out[s]) for s in sources], axis=1)
    assert np.abs(ours - expected).max() / np.abs(expected).max() <= 1e-4
