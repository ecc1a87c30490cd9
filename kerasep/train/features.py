"""What ``model.fit`` trains and on which features: the separator a config names
(:func:`build_separator`), the :class:`Adapter` between it and ``fit``, the
:class:`FeaturizingModel` that computes features in the train step, and the one-off
:func:`input_statistics` pass."""
from kerasep.backend import keras
from kerasep.train.config import ConfigError, model_spec


def build_separator(model_cfg):
    """The separator a config's ``model`` entry names (forms: :func:`kerasep.train.config.model_spec`):
    a zoo architecture, untrained (``"unet-2stems"``, ``{"zoo": name}``), a zoo model with its
    pretrained weights (``{"zoo": name, "pretrained": true}``, through :func:`kerasep.zoo.load`:
    fetched, verified, cached), or ``{"family": ..., "config": {...}}``, untrained.

    Raises:
        ConfigError: a bad entry (the message names the field). kerasep.zoo.WeightsError: the
            pretrained weights are unavailable or corrupt.
    """
    from kerasep import zoo

    spec = model_spec(model_cfg)
    if not spec["pretrained"]:
        return zoo.build(spec["config"], family=spec["family"])
    model = zoo.load(spec["zoo"], weights=spec["weights"])
    if spec["overrides"]:
        # the same weights in the architecture with the overrides (e.g. another dropout rate)
        twin = zoo.build(spec["config"], family=spec["family"])
        try:
            twin.set_weights(model.get_weights())
        except ValueError as e:
            raise ConfigError(f"model.config: the overrides {spec['overrides']} change the shapes of "
                              f"{spec['zoo']!r}'s pretrained weights ({e})") from None
        model = twin
    model.zoo_name = None  # what is trained is no longer the zoo's model
    return model


def is_pretrained(model_cfg):
    """Whether a config's ``model`` entry starts from pretrained weights."""
    return model_spec(model_cfg)["pretrained"]


def batchnorm_layers(model):
    """Every ``keras.layers.BatchNormalization`` inside ``model`` (nested models included)."""
    found, seen = [], set()

    def walk(layer):
        for sub in getattr(layer, "layers", None) or []:
            if id(sub) in seen:
                continue
            seen.add(id(sub))
            if isinstance(sub, keras.layers.BatchNormalization):
                found.append(sub)
            walk(sub)

    walk(model)
    return found


def freeze_batchnorm(model):
    """Put every BatchNormalization layer of ``model`` in inference mode for training: Keras 3
    runs a layer with ``trainable = False`` with its moving mean/variance (also inside
    ``fit``) and never updates them; its ``gamma``/``beta`` are frozen too. The other layers
    (dropout included) train as usual. Call it before ``compile``. Returns the layers."""
    layers = batchnorm_layers(model)
    for layer in layers:
        layer.trainable = False
    return layers


class FeaturizingModel(keras.Model):
    """A spectrogram model trained on waveform batches: its train and test steps compute the
    features (STFT magnitudes, with the separator's own layers) from ``(mix, {target: y})``
    waveform batches first, on the device that runs the step, then do the usual step on
    ``(features, target features)``.

    Batches that already are features (``x`` of rank 4: cached validation features) go to the
    model as they are. ``call`` takes features: ``model(x)`` is ``inner(x)``.
    """

    def __init__(self, inner, featurize, **kwargs):
        kwargs.setdefault("name", f"{inner.name}_on_waveforms")
        kwargs.setdefault("dtype", "float32")  # no casts here: the inner model's layers cast
        super().__init__(**kwargs)
        self.inner = inner
        self.featurize = featurize
        self.built = inner.built  # no variables of its own (BackupAndRestore wants it built)

    def call(self, x, training=False):
        return self.inner(x, training=training)

    def features(self, data):
        """``(mix, ys[, sample_weight])`` waveforms → the same tuple with features."""
        if not isinstance(data, (tuple, list)) or len(data) < 2:
            return data
        x = data[0]
        if getattr(x, "shape", None) is None or x.shape.rank != 3:
            return data
        fx, fy = self.featurize(x, data[1])
        return (fx, fy) + tuple(data[2:])

    def train_step(self, data):
        return super().train_step(self.features(data))

    def test_step(self, data):
        return super().test_step(self.features(data))

    def _symbolic_build(self, iterator=None, data_batch=None):
        # fit under a distribution strategy builds from one (waveform) batch
        if data_batch is not None:
            data_batch = self.features(tuple(data_batch))
        return super()._symbolic_build(iterator=iterator, data_batch=data_batch)


class Adapter:
    """How a separator is trained in one domain (``"spectrogram"`` or ``"waveform"``).

    Attributes:
        fit_model: the ``keras.Model`` given to ``compile``/``fit``. It takes the training
            pipeline's waveform batches: in the spectrogram domain it is a
            :class:`FeaturizingModel` that computes the features inside the train step (on the
            accelerator, as Open-Unmix's training computes its STFT in the model), so the ``tf.data``
            pipeline only cuts and augments decoded audio.
        face: the separator's :class:`~kerasep.models.TrainingFace` (spectrogram domain), else None.
        feature_model: the model trained on features (the U-Net core, the Open-Unmix target
            models; the separator itself in the waveform domain).
        featurize: ``(mix, ys) -> (x, y)`` batch function (None in the waveform domain); the
            validation pipeline computes and caches features with it.
        targets: the names of the loss dict.
        default_loss: loss name used when the config gives none.
    """

    def __init__(self, separator, domain):
        from kerasep.models.separator import check_separator

        self.separator = check_separator(separator, "the model to train")
        self.domain = domain
        if domain == "waveform":
            self.face = None
            self.feature_model = separator
            self.featurize = None
            self.targets = separator.stems
            self.default_loss = "waveform_l1"
            self.fit_model = separator
            return
        try:
            self.face = separator.training_face()
        except NotImplementedError as e:
            raise ConfigError(f"training.domain: {e}") from None
        self.feature_model = self.face.feature_model
        self.featurize = self.face.featurize
        self.targets = list(self.face.targets)
        self.default_loss = self.face.default_loss
        self.fit_model = FeaturizingModel(self.feature_model, self.featurize)

    def prepare(self, dataset, max_batches=None):
        """Run the face's one-off pass over training batches (Open-Unmix's input statistics);
        returns what it measured, or None when the family has none."""
        if self.face is None or self.face.prepare is None:
            return None
        return self.face.prepare(dataset, max_batches)

    def data_targets(self, groups):
        missing = [t for t in self.targets if t not in groups]
        if missing:
            raise ConfigError(
                f"the model's targets {self.targets} need data.targets entries for {missing}; "
                f"data.targets defines {sorted(groups)}"
            )
        return {t: groups[t] for t in self.targets}


def input_statistics(adapter, dataset, max_batches=None):
    """Open-Unmix's input-statistics pass through ``adapter`` (see
    :meth:`kerasep.models.OpenUnmixSeparator.input_statistics`). Returns ``(mean, std)``."""
    stats = adapter.prepare(dataset, max_batches)
    if stats is None:
        raise ConfigError(f"{type(adapter.separator).__name__} has no input-statistics pass")
    return stats["mean"], stats["std"]
