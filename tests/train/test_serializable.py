"""Every kerasep loss, metric, layer and model is registered serialisable (``kerasep>Name``) with
a complete ``get_config``, and a model compiled with kerasep's losses and metrics loads wherever
kerasep loads models, in a fresh process: ``kerasep.zoo.load(path.keras)``, ``kerasep export``
and ``kerasep separate -m path.keras``."""
import inspect
import os
import subprocess
import sys

import numpy as np
import pytest

from testing import MIXTURE_MP3, REPO, tiny_unet


def _public_classes(module, base):
    return [c for name, c in vars(module).items()
            if inspect.isclass(c) and issubclass(c, base) and not name.startswith("_")
            and c.__module__.startswith("kerasep.")]


def _kerasep_classes():
    import kerasep.layers
    import kerasep.losses
    import kerasep.metrics
    import kerasep.models
    from kerasep.backend import keras

    return (_public_classes(kerasep.losses, keras.losses.Loss), _public_classes(kerasep.metrics, keras.metrics.Metric),
            _public_classes(kerasep.layers, keras.layers.Layer) + _public_classes(kerasep.models, keras.layers.Layer))


def test_every_kerasep_class_is_registered():
    from kerasep.backend import keras

    losses, metrics, layers = _kerasep_classes()
    assert {"SpectrogramL1", "SpectrogramMSE", "WaveformL1", "SISDRLoss", "MultiResolutionSTFT"} <= {
        c.__name__ for c in losses}
    assert {"SDR", "SISDR"} <= {c.__name__ for c in metrics}
    assert {"STFT", "UNetSeparator", "OpenUnmixSeparator", "Demucs"} <= {c.__name__ for c in layers}
    unregistered = [c.__name__ for c in losses + metrics + layers
                    if c.__name__ != "Separator"  # the abstract contract
                    and keras.saving.get_registered_object(keras.saving.get_registered_name(c)) is not c]
    assert unregistered == []
    for c in losses + metrics + layers:
        if c.__name__ != "Separator":
            assert keras.saving.get_registered_name(c) == f"kerasep>{c.__name__}"


# non-default values for every constructor argument, so a config that drops one shows
ARGS = {
    "SpectrogramMSE": dict(n_fft=512, hop_length=128, name="m"),
    "SpectrogramL1": dict(n_fft=512, hop_length=128, name="l"),
    "WaveformL1": dict(name="w", reduction="sum"),
    "SISDRLoss": dict(eps=1e-6, name="s"),
    "MultiResolutionSTFT": dict(fft_sizes=(256, 512), hop_sizes=(64, 128), eps=1e-5, name="r"),
    "WaveformMultiSTFTL1": dict(window_sizes=(512, 256), hop_length=100, min_n_fft=1024, stft_weight=0.5,
                                normalized=True, name="b", reduction="sum"),
    "SDR": dict(eps=1e-6, name="sdr_x", dtype="float32"),
    "SISDR": dict(eps=1e-6, name="si_sdr_x", dtype="float32"),
}


def test_losses_and_metrics_configs_are_complete():
    from kerasep.backend import keras

    losses, metrics, _ = _kerasep_classes()
    for cls in losses + metrics:
        assert cls.__name__ in ARGS, f"add {cls.__name__} to ARGS"
        obj = cls(**ARGS[cls.__name__])
        config = obj.get_config()
        params = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs")]
        assert set(params) <= set(config), (cls.__name__, sorted(set(params) - set(config)))
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
        assert type(restored) is cls and restored.get_config() == config, cls.__name__


def _env():
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")


def _run(*args, timeout=300):
    return subprocess.run([sys.executable, *args], env=_env(), capture_output=True, text=True, timeout=timeout)


LOAD = r"""
import sys
import numpy as np
from kerasep import zoo
model = zoo.load(sys.argv[1])
print("LOSSES", sorted({type(l).__name__ for l in model.loss.values()}))
x = np.random.default_rng(0).normal(size=(1, 2, 4096)).astype("float32")
logs = model.evaluate(x, {t: 0.3 * x for t in model.stems}, verbose=0, return_dict=True)
print("LOGS", sorted(logs))
"""


@pytest.mark.slow
def test_a_model_compiled_with_kerasep_losses_and_metrics_loads_everywhere(tmp_path):
    from kerasep import losses, metrics, train

    sep = tiny_unet()
    fit_model = train.Adapter(sep, "waveform").fit_model  # the separator, waveform in -> waveforms out
    fit_model.compile(optimizer="adam",
                      loss={t: losses.SpectrogramL1(n_fft=256, hop_length=64) for t in sep.stems},
                      metrics={t: [metrics.SDR(), metrics.SISDR()] for t in sep.stems})
    x = np.random.default_rng(0).normal(size=(1, 2, 4096)).astype(np.float32)
    fit_model.train_on_batch(x, {t: 0.3 * x for t in sep.stems})
    path = tmp_path / "compiled.keras"
    fit_model.save(path)

    # a fresh process, which has imported nothing of kerasep's losses or metrics
    script = tmp_path / "load.py"
    script.write_text(LOAD)
    loaded = _run(str(script), str(path))
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert "LOSSES ['SpectrogramL1']" in loaded.stdout
    assert "vocals_sdr" in loaded.stdout and "vocals_si_sdr" in loaded.stdout

    exported = _run("-m", "kerasep.cli", "export", str(path), "-o", str(tmp_path / "exported.keras"))
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert (tmp_path / "exported.keras").is_file()

    out = tmp_path / "separated"
    separated = _run("-m", "kerasep.cli", "separate", str(MIXTURE_MP3), "-m", str(path), "-o", str(out), "-q")
    assert separated.returncode == 0, separated.stderr[-3000:]
    written = sorted(p.name for p in out.rglob("*.wav"))
    assert written == sorted(f"{t}.wav" for t in sep.stems)
