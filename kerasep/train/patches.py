"""Patches of Keras internals that ``fit`` under MultiWorkerMirroredStrategy needs.

Each patch is written against the Keras versions in :data:`SUPPORTED_KERAS` (the ones it was
tested with), is installed only for the duration of one ``fit`` (:func:`multiworker_fit`) and is
undone afterwards, also when ``fit`` raises. Another Keras version is refused with a
``RuntimeError`` before anything is patched (:func:`check_keras_version`): its internals may
have moved or been fixed.
"""
import contextlib
import re

from kerasep.backend import keras, tf

#: ``(lowest, first unsupported)`` Keras ``(major, minor)``: the patches below are written for
#: and tested with Keras 3.15.x.
SUPPORTED_KERAS = ((3, 15), (3, 16))


def _version_range():
    (lo_major, lo_minor), (hi_major, hi_minor) = SUPPORTED_KERAS
    return f">={lo_major}.{lo_minor},<{hi_major}.{hi_minor}"


def check_keras_version(what="multi-worker training"):
    """Raise ``RuntimeError`` unless the installed Keras (``keras.__version__``) is in
    :data:`SUPPORTED_KERAS`, the versions the patches of Keras internals that ``what`` needs
    were written for."""
    found = str(keras.__version__)
    m = re.match(r"(\d+)\.(\d+)", found)
    if m is None or not SUPPORTED_KERAS[0] <= (int(m.group(1)), int(m.group(2))) < SUPPORTED_KERAS[1]:
        raise RuntimeError(
            f"{what} patches Keras internals written for keras {_version_range()}; found keras "
            f"{found}. Install a supported keras (pip install 'keras{_version_range()}') or check "
            "kerasep/train/patches.py against this version and widen SUPPORTED_KERAS."
        )


@contextlib.contextmanager
def multiworker_fit(model, dataset, strategy):
    """Context for one ``model.fit`` under MultiWorkerMirroredStrategy: checks the Keras
    version, builds the model from one local batch, then installs the two patches below for the
    duration of the block and restores the originals on exit (also when the block raises)."""
    check_keras_version()
    _prebuild(model, dataset, strategy)
    with _skip_symbolic_build(model), _scalar_safe_reduce():
        yield


def _prebuild(model, dataset, strategy):
    """Build model, loss, metrics and optimizer from one local batch before ``fit``.

    Keras 3.15's ``fit`` otherwise builds symbolically from a distributed batch that it
    ``strategy.reduce``s, which fails under MultiWorkerMirroredStrategy ("Attempt to convert a
    value (PerReplica...)"); once built, fit skips that step (:func:`_skip_symbolic_build`).
    """
    x, y = next(iter(dataset))
    with strategy.scope():
        model._symbolic_build(data_batch=(x, y, None))


@contextlib.contextmanager
def _skip_symbolic_build(model):
    """``model._maybe_symbolic_build`` is a no-op inside the block (an instance attribute
    shadowing Keras' method; the model was built by :func:`_prebuild`), as it was on exit."""
    own = vars(model)
    had, previous = "_maybe_symbolic_build" in own, own.get("_maybe_symbolic_build")
    model._maybe_symbolic_build = lambda *args, **kwargs: None
    try:
        yield
    finally:
        if had:
            model._maybe_symbolic_build = previous
        else:
            del model._maybe_symbolic_build


@contextlib.contextmanager
def _scalar_safe_reduce():
    """Inside the block, scalar per-replica logs are reduced with ``axis=None``.

    Keras 3.15 reduces every per-replica log under MultiWorkerMirroredStrategy with
    ``strategy.reduce("MEAN", v, axis=0)``, which fails for scalar logs (the loss): "Invalid
    reduction dimension 0 for input with 0 dimensions". The train and test functions look
    ``reduce_per_replica`` up in their module when they run, so the module attribute is
    replaced for the block and put back on exit.
    """
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            from keras.src import tree

            def _reduce(v):
                if isinstance(v, tf.distribute.DistributedValues):
                    local = strategy.experimental_local_results(v)[0]
                    return strategy.reduce("MEAN", v, axis=None if local.shape.rank == 0 else 0)
                return v

            return tree.map_structure(_reduce, values)
        return original(values, strategy, reduction)

    tf_trainer.reduce_per_replica = reduce_per_replica
    try:
        yield
    finally:
        tf_trainer.reduce_per_replica = original
