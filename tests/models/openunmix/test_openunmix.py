"""Open-Unmix in Keras: tiny configs against the ``openunmix`` package, configs, converter, errors."""
import json

import numpy as np
import pytest

from kerasep.backend import keras, tf
from kerasep.models import OpenUnmixSeparator, build_openunmix
from kerasep.models.openunmix import bandwidth_to_max_bin
from kerasep.zoo.converters import openunmix as convert
from reference.openunmix_ref import import_openunmix, random_openunmix

TINY = dict(nb_channels=2, n_fft=256, hop_length=64, hidden_size=16, nb_layers=2, max_bin=100)
TARGETS = ["vocals", "drums"]


class Payload:
    """An arbitrary class: unpickling it needs code execution, which weights_only refuses."""


def sdr(ref, est):
    return 10 * np.log10(np.sum(ref**2) / np.sum((ref - est) ** 2))


def torch_models(targets=TARGETS, nb_bins=129, nb_channels=2, hidden_size=16, nb_layers=2,
                 max_bin=100, unidirectional=False):
    return {
        t: random_openunmix(k, nb_bins, nb_channels, hidden_size, nb_layers, max_bin, unidirectional)
        for k, t in enumerate(targets)
    }


def ours_from(models, **kwargs):
    config = convert.convert_config({t: m.state_dict() for t, m in models.items()})
    config.update(kwargs)
    model = OpenUnmixSeparator(**config)
    model.build((None, config["nb_channels"], None))
    convert.convert_weights(model, {t: m.state_dict() for t, m in models.items()})
    return model


def test_max_bin_of_16khz_bandwidth():
    assert bandwidth_to_max_bin(44100, 4096, 16000) == 1487


def test_target_model_shapes_names_and_mask():
    net = build_openunmix(nb_bins=65, nb_channels=2, hidden_size=8, nb_layers=3, max_bin=40, name="vocals")
    x = np.abs(np.random.RandomState(0).randn(2, 2, 11, 65)).astype("float32")
    y = net(x).numpy()
    assert y.shape == x.shape and np.all(y >= 0)
    names = {layer.name for layer in net.layers}
    for expected in ("input_norm", "fc1", "bn1", "lstm0", "lstm2", "lstm1_dropout", "fc2", "bn2",
                     "fc3", "bn3", "output_norm"):
        assert expected in names
    assert net.get_layer("fc1").kernel.shape == (2 * 40, 8)
    assert net.get_layer("lstm0").forward_layer.cell.units == 4  # hidden // 2 per direction


def test_unidirectional_is_causal():
    net = build_openunmix(nb_bins=33, nb_channels=1, hidden_size=8, nb_layers=2, unidirectional=True)
    x = np.abs(np.random.RandomState(0).randn(1, 1, 20, 33)).astype("float32")
    x2 = x.copy()
    x2[:, :, 12:] *= 3.0  # change the future only
    a, b = net(x).numpy(), net(x2).numpy()
    np.testing.assert_allclose(a[:, :, :12], b[:, :, :12], rtol=1e-6, atol=1e-6)
    assert not np.allclose(a[:, :, 12:], b[:, :, 12:])


@pytest.mark.parametrize(
    "nb_layers,unidirectional,max_bin,channels",
    [(2, False, 100, 2), (1, False, None, 2), (3, True, 77, 2), (2, False, 90, 1)],
)
def test_target_model_matches_openunmix(nb_layers, unidirectional, max_bin, channels):
    import torch

    ref = torch_models(["vocals"], 129, channels, 16, nb_layers, max_bin, unidirectional)["vocals"]
    ours = build_openunmix(129, channels, 16, nb_layers, unidirectional, max_bin)
    convert.convert_target_weights(ours, ref.state_dict())
    x = np.abs(np.random.RandomState(1).randn(2, channels, 16, 129) * 3).astype("float32")
    got = ours(x).numpy()
    with torch.no_grad():  # openunmix: (batch, channels, bins, frames)
        want = ref(torch.from_numpy(x.transpose(0, 1, 3, 2).copy())).numpy().transpose(0, 1, 3, 2)
    assert np.abs(want).max() > 0
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-5


@pytest.mark.parametrize("unidirectional,nb_layers,channels", [(False, 3, 2), (True, 2, 1)])
def test_fused_lstms_match_the_keras_layers(unidirectional, nb_layers, channels):
    """Inference's lstm_stacks_inference (every target's LSTMs in one loop per layer) against
    the Keras layers it reads its weights from (what training and the ONNX export run)."""
    models = torch_models(["vocals", "drums", "bass"], 129, channels, 16, nb_layers, 100, unidirectional)
    ours = ours_from(models)
    mag = np.abs(np.random.RandomState(3).randn(2, channels, 23, 129) * 2).astype("float32")
    want = tf.function(lambda x: ours.estimate_spectrograms(x, fused=False))(mag).numpy()
    got = tf.function(lambda x: ours.estimate_spectrograms(x, fused=True))(mag).numpy()
    assert np.abs(want).max() > 0
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-6
    with pytest.raises(ValueError, match="inference only"):
        ours.estimate_spectrograms(mag, training=True, fused=True)


@pytest.mark.parametrize(
    "niter,softmask,residual,win",
    [(1, False, True, 16), (2, True, False, None)],
)
def test_separator_matches_openunmix(niter, softmask, residual, win):
    import torch

    model_mod, _ = import_openunmix()
    models = torch_models()
    ref = model_mod.Separator(models, niter=niter, softmask=softmask, residual=residual, n_fft=256,
                              n_hop=64, nb_channels=2, wiener_win_len=win).eval()
    ours = ours_from(models, niter=niter, softmask=softmask, residual=residual, wiener_win_len=win)
    wave = (np.random.RandomState(2).randn(2, 2, 3000) * 0.3).astype("float32")
    with torch.no_grad():
        want = ref(torch.from_numpy(wave)).numpy()  # (batch, stems, channels, timesteps)
    got = tf.function(lambda x: ours(x, training=False))(wave)
    stems = TARGETS + (["residual"] if residual else [])
    assert list(got) == stems
    for j, stem in enumerate(stems):
        assert got[stem].shape == wave.shape
        assert sdr(want[:, j], got[stem].numpy()) > 60, stem


def test_config_round_trip_and_keras_file(tmp_path):
    models = torch_models()
    model = ours_from(models, residual=True, output_targets=["vocals", "residual"])
    clone = OpenUnmixSeparator.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    wave = (np.random.RandomState(3).randn(1, 2, 3000) * 0.3).astype("float32")
    path = tmp_path / "umx.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    a, b = model(wave), loaded(wave)
    assert list(a) == ["vocals", "residual"] == list(b)
    for t in a:
        np.testing.assert_allclose(a[t].numpy(), b[t].numpy(), rtol=1e-5, atol=1e-6)


def test_target_model_trains():
    net = build_openunmix(nb_bins=33, nb_channels=2, hidden_size=8, nb_layers=1)
    net.compile(optimizer="adam", loss="mse")
    x = np.abs(np.random.RandomState(0).randn(4, 2, 10, 33)).astype("float32")
    before = [w.numpy().copy() for w in net.trainable_weights]
    history = net.fit(x, x * 0.5, epochs=2, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert any(not np.allclose(b, w.numpy()) for b, w in zip(before, net.trainable_weights))


def test_converter_reads_local_model_layout(tmp_path):
    import torch

    models = torch_models(["vocals", "other"], nb_bins=129, hidden_size=16, nb_layers=2, max_bin=100)
    for t, m in models.items():
        torch.save(m.state_dict(), tmp_path / f"{t}-0123abcd.pth")
        (tmp_path / f"{t}.json").write_text(json.dumps({"args": {"nfft": 256, "nhop": 64,
                                                                  "nb_channels": 2, "hidden_size": 16}}))
    (tmp_path / "separator.json").write_text(
        json.dumps({"sample_rate": 22050, "nfft": 256, "nhop": 64, "nb_channels": 2})
    )
    config = convert.convert_config(tmp_path)
    assert config == {
        "targets": ["other", "vocals"], "nb_channels": 2, "sample_rate": 22050, "n_fft": 256,
        "hop_length": 64, "hidden_size": 16, "nb_layers": 2, "unidirectional": False, "max_bin": 100,
    }
    model = OpenUnmixSeparator(**config)
    model.build((None, 2, None))
    convert.convert_weights(model, tmp_path)
    x = np.abs(np.random.RandomState(0).randn(1, 2, 9, 129)).astype("float32")
    with torch.no_grad():
        want = models["vocals"](torch.from_numpy(x.transpose(0, 1, 3, 2).copy())).numpy()
    got = model.target_models["vocals"](x).numpy().transpose(0, 1, 3, 2)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_converter_refuses_pickled_code_and_mismatches(tmp_path):
    import torch

    torch.save({"input_mean": Payload()}, tmp_path / "vocals.pth")
    with pytest.raises(ValueError, match="cannot read"):
        convert.read_state_dict(tmp_path / "vocals.pth")

    state = torch_models(["vocals"])["vocals"].state_dict()
    net = build_openunmix(129, 2, 32, 2, max_bin=100)  # wrong hidden size
    with pytest.raises(ValueError, match="shape mismatch"):
        convert.convert_target_weights(net, state)
    net = build_openunmix(129, 2, 16, 1, max_bin=100)  # too few layers: tensors left over
    with pytest.raises(ValueError, match="not used"):
        convert.convert_target_weights(net, state)
    with pytest.raises(FileNotFoundError, match="drums"):
        convert.find_target_file(tmp_path, "drums")
    with pytest.raises(ValueError, match="not an Open-Unmix state dict"):
        convert.config_from_state_dict({"foo": np.zeros(3)})


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(targets=[]), "targets"),
        (dict(targets=["a", "a"]), "targets"),
        (dict(targets=["vocals"], niter=1), "two stems"),
        (dict(nb_channels=3), "nb_channels"),
        (dict(output_targets=["piano"]), "output_targets"),
        (dict(niter=-1), "niter"),
        (dict(max_bin=5000), "max_bin"),
        (dict(hidden_size=15), "hidden_size"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OpenUnmixSeparator(**dict(dict(TINY, targets=TARGETS), **kwargs))


def test_chunked_separation_has_no_seams():
    """kerasep.inference cross-fades chunks processed with context (the BLSTMs see the whole
    input, so there is no exact chunk context); chunk borders fall on Wiener windows
    (``chunking.alignment``), so the result stays close to whole-file processing everywhere."""
    from kerasep.inference import separate_array

    model = ours_from(torch_models(), sample_rate=8000, wiener_win_len=16)
    assert model.chunking.alignment == 16 * 64 and model.chunking.kind == "crossfade"
    mix = (np.random.RandomState(4).randn(8000 * 6, 2) * 0.3).astype("float32")
    whole = {t: y.numpy()[0].T for t, y in model(mix.T[None]).items()}
    chunked = separate_array(mix, model, chunk_seconds=2.0, context_seconds=1.0)
    for t in TARGETS:
        assert sdr(whole[t], chunked[t]) > 40, t
        err = np.abs(whole[t] - chunked[t]).reshape(-1, 1000, 2).max(axis=(1, 2))
        ref = np.abs(whole[t]).reshape(-1, 1000, 2).max(axis=(1, 2))
        assert np.all(err < 0.05 * ref), (t, (err / ref).max())  # every 1000-sample block


@pytest.mark.slow
def test_export_onnx_and_saved_model_with_wiener_inside(tmp_path):
    """kerasep.export: one .onnx file (STFT, target models, Wiener EM niter=1, iSTFT) run in
    onnxruntime, and a SavedModel, both agreeing with the Keras model."""
    import onnxruntime as ort

    from kerasep import export

    model = ours_from(torch_models(), niter=1, wiener_win_len=16, residual=True)
    wave = (np.random.RandomState(5).randn(2, 2, 5000) * 0.3).astype("float32")
    want = {t: y.numpy() for t, y in model(wave).items()}
    path = export.export(model, tmp_path / "umx.onnx")
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert names == ["vocals", "drums", "residual"]
    for name, got in zip(names, session.run(None, {"waveform": wave})):
        assert got.shape == wave.shape
        assert sdr(want[name], got) > 60, name
    folder = export.export(model, tmp_path / "umx_saved_model", format="saved_model")
    serving = tf.saved_model.load(folder).signatures["serving_default"]
    got = serving(waveform=tf.constant(wave))
    for name in names:
        np.testing.assert_allclose(got[name].numpy(), want[name], rtol=1e-4, atol=1e-5)
