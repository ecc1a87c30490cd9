"""Shared test helpers (keras-hub's run_layer_test habit)."""
import numpy as np

from kerasep.backend import keras


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
