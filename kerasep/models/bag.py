"""A bag of separators: demucs' ``BagOfModels`` (``demucs.apply``) as a Keras model.

Every member separates the same mixture into the same stems; the bag's estimate of source ``k``
is the members' estimates weighted by ``weights[m][k]`` and divided by ``sum_m weights[m][k]``
(demucs' per-model, per-source weights; ``htdemucs_ft`` is four specialists with the identity
matrix). ``call`` averages the members' outputs on one input; :func:`kerasep.inference.separate_array`
runs each member over the song with its own :class:`~kerasep.models.separator.ChunkPolicy` and its
own random shifts, then averages, as demucs' ``apply_model`` does for a bag.
"""
from kerasep.backend import keras, tf
from kerasep.models.separator import Separator, check_separator


def _member(spec):
    """A separator from a model, a registry-style ``{"family", "config"}`` dict or a Keras
    serialisation dict."""
    if isinstance(spec, Separator):
        return spec
    if isinstance(spec, dict) and "family" in spec and "config" in spec:
        from kerasep.zoo import registry

        return registry.family_class(spec["family"])(**spec["config"])
    if isinstance(spec, dict) and "class_name" in spec:
        import kerasep.models  # noqa: F401  (registers the kerasep classes)

        return check_separator(keras.saving.deserialize_keras_object(spec), "bag member")
    raise ValueError("a bag member must be a kerasep Separator, a {'family': ..., 'config': ...} dict or a "
                     f"Keras serialisation dict. Received: {type(spec).__name__}")


@keras.saving.register_keras_serializable(package="kerasep")
class SeparatorBag(Separator):
    """Weighted average of several separators with the same stems (demucs' ``BagOfModels``).

    Args:
        members: the separators (models, ``{"family": name, "config": {...}}`` dicts as in
            :mod:`kerasep.zoo.registry`, or Keras serialisation dicts).
        weights: ``len(members)`` lists of ``len(stems)`` floats (default: all ones); every source
            needs a positive total weight.
        targets: optional, the members' stems (checked; the registry states them).
        segment: demucs' bag ``segment`` (seconds): replaces the segment of each member that has
            one (``HTDemucs``: only when not longer than its own, as demucs; ``Demucs``: its
            ``segment_seconds``).

    Input shape: ``(batch, nb_channels, nb_timesteps)``; output ``{stem: (batch, nb_channels,
    nb_timesteps)}`` with the members' stems.
    """

    def __init__(self, members, weights=None, segment=None, targets=None, **kwargs):
        super().__init__(**kwargs)
        members = [_member(m) for m in members]
        if not members:
            raise ValueError("a SeparatorBag needs at least one member")
        first = members[0]
        for other in members[1:]:
            if (other.stems, other.sample_rate, other.nb_channels) != (first.stems, first.sample_rate,
                                                                      first.nb_channels):
                raise ValueError(
                    "bag members must share stems, sample rate and channels. Received: "
                    f"{first.stems} @ {first.sample_rate} Hz x {first.nb_channels} and "
                    f"{other.stems} @ {other.sample_rate} Hz x {other.nb_channels}")
        nb_sources = len(first.stems)
        if targets is not None and list(targets) != list(first.stems):
            raise ValueError(f"targets {list(targets)} differ from the members' stems {first.stems}")
        if weights is None:
            weights = [[1.0] * nb_sources for _ in members]
        weights = [[float(w) for w in row] for row in weights]
        if len(weights) != len(members) or any(len(row) != nb_sources for row in weights):
            raise ValueError(f"weights must be {len(members)} lists of {nb_sources} floats (one per model, per "
                             f"source {first.stems}). Received: {weights}")
        totals = [sum(row[k] for row in weights) for k in range(nb_sources)]
        if any(not t > 0 for t in totals):
            raise ValueError(f"every source needs a positive total weight. Received totals {totals} for "
                             f"{first.stems}")
        if segment is not None:
            segment = float(segment)
            for m in members:
                if hasattr(m, "training_length"):  # HTDemucs: only shortened, as demucs' BagOfModels
                    if segment <= m.segment:
                        m.segment = segment
                elif hasattr(m, "segment_seconds"):
                    m.segment_seconds = segment
                else:
                    raise ValueError(f"a bag segment needs members with a segment; {type(m).__name__} has none")
        self.members = members
        # tuples: not wrapped by the trackers of Keras / TensorFlow
        self._matrix, self._totals = tuple(tuple(row) for row in weights), tuple(totals)
        self.segment = segment
        self.targets = list(first.stems)
        self.sample_rate, self.nb_channels = first.sample_rate, first.nb_channels

    @property
    def source_weights(self):
        """The ``len(members) x len(stems)`` weights matrix (lists of floats)."""
        return [list(row) for row in self._matrix]

    @property
    def totals(self):
        """Per source, the sum of the members' weights."""
        return list(self._totals)

    @property
    def chunking(self):
        """The first member's policy (inference runs each member with its own)."""
        return self.members[0].chunking

    def combine(self, estimates):
        """``{stem: array}`` from the members' ``[{stem: array}]`` (any array type supporting
        ``*`` and ``+``): demucs' weighted per-source average."""
        out = {}
        for k, stem in enumerate(self.targets):
            terms = [row[k] * est[stem] for row, est in zip(self._matrix, estimates) if row[k]]
            total = terms[0]
            for term in terms[1:]:
                total = total + term
            out[stem] = total / self._totals[k]
        return out

    def build(self, input_shape=None):
        for m in self.members:
            if not m.built:
                m.build((None, self.nb_channels, None) if input_shape is None else input_shape)
        super().build(input_shape)

    def call(self, waveform, training=False):
        waveform = tf.convert_to_tensor(waveform, tf.float32)
        return self.combine([m(waveform, training=training) for m in self.members])

    def get_config(self):
        config = super().get_config()
        config.update(members=[keras.saving.serialize_keras_object(m) for m in self.members],
                      weights=self.source_weights, segment=self.segment, targets=self.targets)
        return config


__all__ = ["SeparatorBag"]
