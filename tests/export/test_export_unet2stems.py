"""Exports of the pretrained zoo U-Nets, loaded back and compared with Keras on real audio."""
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

TOL = 1e-4


def _batch(mix, length):
    return np.ascontiguousarray(np.stack([mix[:length].T, mix[-length:].T]), dtype=np.float32)


def _diff(a, b):
    return {t: float(np.max(np.abs(np.asarray(a[t]) - np.asarray(b[t])))) for t in a}


@pytest.fixture(scope="module")
def mixture(musdb_hq_track):
    from kerasep import audio

    return audio.load(musdb_hq_track / "mixture.wav")


@pytest.mark.slow
def test_unet_2stems_onnx_saved_model_keras(unet_2stems, mixture, tmp_path):
    import onnxruntime as ort

    from kerasep import export, zoo
    from kerasep.backend import tf
    from kerasep.export.saved_model import load_saved_model
    from kerasep.zoo import registry

    onnx_path = export.export(unet_2stems, tmp_path / "unet-2stems.onnx")
    sm_fn, sm_meta = load_saved_model(export.export(unet_2stems, tmp_path / "sm", format="saved_model"))
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta["kerasep.weights_sha256"]) == {
        "source": "spleeter-2stems", "files": registry.WEIGHT_SOURCES["spleeter-2stems"]["files"]}
    assert meta["kerasep.model"] == "unet-2stems" and sm_meta["kerasep.model"] == "unet-2stems"
    assert (meta["kerasep.n_fft"], meta["kerasep.hop_length"]) == ("4096", "1024")
    # not multiples of the hop; more than one 512-frame patch; the whole 6 s track
    for length in (2 * 44100 + 17, 2 ** 19 + 1001, mixture.shape[0]):
        x = _batch(mixture, length)
        ref = {t: v.numpy() for t, v in unet_2stems(x, training=False).items()}
        got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"waveform": x})))
        assert max(_diff(ref, got).values()) <= TOL, ("onnx", length, _diff(ref, got))
        got = {t: v.numpy() for t, v in sm_fn(waveform=tf.constant(x)).items()}
        assert max(_diff(ref, got).values()) <= TOL, ("saved_model", length, _diff(ref, got))
    keras_path = export.export(unet_2stems, tmp_path / "unet-2stems.keras")
    again = zoo.load(keras_path)
    x = _batch(mixture, 44100 + 3)
    ref = {t: v.numpy() for t, v in unet_2stems(x, training=False).items()}
    assert max(_diff(ref, {t: v.numpy() for t, v in again(x, training=False).items()}).values()) <= TOL


@pytest.mark.slow
def test_unet_vocals_onnx(unet_2stems, mixture, tmp_path):
    """A zoo entry with output_targets exports only its stems."""
    import onnxruntime as ort

    from kerasep import export

    path = export.export("unet-vocals", tmp_path / "unet-vocals.onnx", download=False)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["vocals"]
    x = _batch(mixture, 3 * 44100 + 5)
    ref = unet_2stems(x, training=False)["vocals"].numpy()
    assert np.max(np.abs(sess.run(None, {"waveform": x})[0] - ref)) <= TOL
