"""Shared test helpers (keras-hub's run_layer_test habit), tiny models and known-answer
separators several test folders use, and the repository's paths. Test modules import from here
(``from testing import ...``; pytest puts this folder on ``sys.path`` for ``conftest.py``), never
from one another."""
from pathlib import Path

import numpy as np

from kerasep.backend import keras
from kerasep.models import ChunkPolicy, Separator, UNetSeparator

REPO = Path(__file__).resolve().parents[1]

# --- real audio (tests/data/README.md) ----------------------------------------------------------
# committed: Spleeter's example song, 10.9 s, 44.1 kHz (CC BY 3.0, attribution required)
MIXTURE_MP3 = Path(__file__).resolve().parent / "data" / "audio_example.mp3"
MIXTURE_MONO_MP3 = MIXTURE_MP3.with_name("audio_example_mono.mp3")
# the MUSDB18 test track excerpt in the fixtures musdb_root / musdb_hq_root (tests/conftest.py),
# and its stems in the stream order of a .stem.mp4
TRACK = "The Easton Ellises - Falcon 69"
MUSDB_STEMS = ("mixture", "drums", "bass", "other", "vocals")


# --- tiny models and known-answer separators ----------------------------------------------------

TINY_UNET = dict(
    targets=["vocals", "drums", "rest"],
    n_fft=256,
    hop_length=64,
    T=64,
    F=64,
    conv_n_filters=[4, 4, 8, 8, 8, 8],
)


def tiny_unet(**overrides):
    """A built 3-target U-Net (``TINY_UNET``) small enough for unit tests."""
    model = UNetSeparator(**dict(TINY_UNET, **overrides))
    model.build((None, 2, None))
    return model


class ScaledSeparator(Separator):
    """Target ``i`` is the mixture times ``(i + 1) / 10``: every separation result is known
    exactly. The contract's default chunking (context + cross-fade)."""

    targets = ["drums", "bass", "other", "vocals"]
    nb_channels, sample_rate = 2, 44100

    def call(self, x, training=False):
        return {t: x * (i + 1) / 10.0 for i, t in enumerate(self.targets)}


class SegmentedSeparator(ScaledSeparator):
    """:class:`ScaledSeparator` chunked like Demucs: 1 s segments overlapping by 25 %."""

    chunking = ChunkPolicy("segment", segment_seconds=1.0, overlap=0.25)


def run_layer_serialization_test(layer, *call_args, **call_kwargs):
    """Rebuild ``layer`` from its config and check it computes the same outputs."""
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config
    a = layer(*call_args, **call_kwargs)
    b = clone(*call_args, **call_kwargs)
    if isinstance(a, (list, tuple)):
        for x, y in zip(a, b):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
    # round trip through Keras' generic serialisation (the path .keras files use)
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(restored) is type(layer)
    return clone


def _numpy(outputs):
    return {k: np.asarray(v) for k, v in outputs.items()}


def _forward(model, graph):
    """``model(x, training=False)`` as numpy, eagerly or as one traced graph for any batch and
    length. Graphs for recurrent models: eager Keras LSTMs step through the frames in Python (an
    Open-Unmix call on 2 s took 21 s); eager for convolutional ones, whose tracing costs more than
    their few calls."""
    from kerasep.backend import tf

    if not graph:
        return lambda x: _numpy(model(x, training=False))
    fn = tf.function(lambda v: model(v, training=False), reduce_retracing=True)
    return lambda x: _numpy(fn(tf.constant(x)))


def _max_abs(a, b):
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def run_separator_test(model, mix, tmp_path, chunk_seconds, family=None, exact_atol=1e-5,
                       export_atol=1e-4, exports=("onnx", "saved_model"), graph=False):
    """The family contract, run by every model family's tests on a tiny built model.

    ``mix``: a short real mixture ``(nb_timesteps, nb_channels)`` float32 at the model's rate;
    ``chunk_seconds``: a chunk length that cuts ``mix`` into several chunks; ``family``: the
    registry family name whose zoo entries are checked too.

    Checks: the :class:`~kerasep.models.Separator` contract (stems, chunking, output shapes);
    config and ``.keras`` round trips (``kerasep.zoo.load``); chunked separation through
    :func:`kerasep.inference.separate_array` equals whole-file output for exact chunk policies
    and one-chunk separation equals ``call`` for every policy; ONNX (onnxruntime, through the
    TF-free runner) and SavedModel exports equal the Keras model on a length that is not a
    multiple of any hop or patch; zoo entries of ``family`` build with the stems the registry
    reports, name a known weight format, and mirror ``zoo/<name>/config.json``. ``graph``: run the
    model's own calls as a traced graph (see :func:`_forward`); an eager call is checked against it.
    """
    import json

    from kerasep import export, inference, zoo
    from kerasep.backend import tf
    from kerasep.zoo import registry

    # --- the contract ---------------------------------------------------------------------
    assert isinstance(model, Separator), type(model)
    assert isinstance(model.chunking, ChunkPolicy)
    stems = model.stems
    assert stems and len(set(stems)) == len(stems)
    assert mix.ndim == 2 and mix.shape[1] == model.nb_channels
    x = np.ascontiguousarray(mix.T[None])  # (1, nb_channels, nb_timesteps)
    forward = _forward(model, graph)
    whole = forward(x)
    assert list(whole) == stems or sorted(whole) == sorted(stems), (list(whole), stems)
    for y in whole.values():
        assert y.shape == x.shape and np.isfinite(y).all()
    if graph:  # eager calls work and agree with the graph (on a short excerpt: see _forward)
        short = x[:, :, : min(x.shape[-1], model.sample_rate // 10)]
        assert _max_abs(forward(short), _numpy(model(short, training=False))) <= 1e-5

    # --- config and .keras round trips ----------------------------------------------------
    config = model.get_config()
    clone = type(model).from_config(config)
    clone.build((None, model.nb_channels, None))
    assert clone.get_config() == config
    clone.set_weights(model.get_weights())
    assert _max_abs(whole, _forward(clone, graph)(x)) <= 1e-6
    path = export.export(model, Path(tmp_path) / "contract.keras")
    loaded = zoo.load(path)
    assert type(loaded) is type(model) and loaded.stems == stems
    assert _max_abs(whole, _forward(loaded, graph)(x)) <= 1e-6

    # --- chunked separation ---------------------------------------------------------------
    n = mix.shape[0]
    assert chunk_seconds * model.sample_rate < n, "chunk_seconds must cut mix into several chunks"
    chunked = inference.separate_array(mix, model, chunk_seconds=chunk_seconds)
    assert list(chunked) == stems
    for t in stems:
        assert chunked[t].shape == mix.shape and np.isfinite(chunked[t]).all()
    if model.chunking.is_exact:
        assert max(float(np.max(np.abs(chunked[t] - whole[t][0].T))) for t in stems) <= exact_atol
    one = inference.separate_array(mix, model, chunk_seconds=4.0 * n / model.sample_rate)
    assert max(float(np.max(np.abs(one[t] - whole[t][0].T))) for t in stems) <= exact_atol

    # --- exports ----------------------------------------------------------------------------
    odd = x[:, :, : max(1, n - 37)]
    reference = forward(odd)
    if "onnx" in exports:
        from kerasep.export import runner

        onnx_path = export.export(model, Path(tmp_path) / "contract.onnx")
        session = runner.OnnxSeparator(onnx_path)
        assert session.targets == stems and session.sample_rate == model.sample_rate
        assert _max_abs(reference, session(np.ascontiguousarray(odd))) <= export_atol
        meta = session.metadata
        policy = model.chunking
        if policy.is_exact:
            assert int(meta["kerasep.chunk_alignment"]) == policy.alignment
            assert int(meta["kerasep.chunk_context"]) == policy.context
    if "saved_model" in exports:
        from kerasep.export.saved_model import load_saved_model

        sm_path = export.export(model, Path(tmp_path) / "contract_sm", format="saved_model")
        fn, meta = load_saved_model(sm_path)
        assert json.loads(meta["kerasep.targets"]) == stems
        out = {k: v.numpy() for k, v in fn(waveform=tf.constant(odd)).items()}
        assert sorted(out) == sorted(stems)
        assert _max_abs(reference, out) <= export_atol

    # --- zoo entries of the family ----------------------------------------------------------
    if family is not None:
        assert family in registry.FAMILIES
        assert registry.family_class(family) is type(model)
        zoo_dir = REPO / "zoo"
        for name in registry.available():
            entry = registry.MODELS[name]
            if entry["family"] != family:
                continue
            assert registry.WEIGHT_SOURCES[entry["weights"]]["format"] in registry.WEIGHT_FORMATS
            unbuilt = registry.family_class(family)(**entry["config"])  # no weights allocated
            assert unbuilt.stems == registry.stems(name), name
            stored = json.loads((zoo_dir / name / "config.json").read_text())
            assert stored == json.loads(json.dumps(entry)), f"zoo/{name}/config.json differs from the registry"


# --- fixtures shared by the CLI and hostile-input tests (import them into a test module) ---------

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    """1.5 s of the real mixture as a 16-bit WAV file."""
    import soundfile as sf

    from kerasep import audio

    path = tmp_path_factory.mktemp("song") / "song.wav"
    sf.write(path, audio.load(MIXTURE_MP3, duration=1.5), 44100, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The same tiny 3-stem U-Net (``tiny_unet``) as .keras and .onnx: {backend: path}."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    from kerasep import export

    folder = tmp_path_factory.mktemp("tiny")
    model = tiny_unet()
    model.save(folder / "tiny.keras")
    export.export(model, folder / "tiny.onnx")
    return {"keras": folder / "tiny.keras", "onnx": folder / "tiny.onnx"}
