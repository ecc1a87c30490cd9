"""Backend guard: kerasep's layers are written with TensorFlow ops."""
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        "kerasep needs the TensorFlow Keras backend; found KERAS_BACKEND="
        f"{keras.backend.backend()!r}. Set KERAS_BACKEND=tensorflow before importing keras."
    )

import tensorflow as tf  # noqa: E402

__all__ = ["keras", "tf"]
