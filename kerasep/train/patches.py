"""Patches of Keras internals that ``fit`` under MultiWorkerMirroredStrategy needs."""
from kerasep.backend import tf


def _prebuild(model, dataset, strategy):
    """Build model, loss, metrics and optimizer from one local batch before ``fit``.

    Keras 3.15's ``fit`` otherwise builds symbolically from a distributed batch that it
    ``strategy.reduce``s, which fails under MultiWorkerMirroredStrategy ("Attempt to convert a
    value (PerReplica...)"); once built, fit skips that step.
    """
    x, y = next(iter(dataset))
    with strategy.scope():
        model._symbolic_build(data_batch=(x, y, None))
    model._maybe_symbolic_build = lambda *args, **kwargs: None
    _patch_multiworker_reduce()


def _patch_multiworker_reduce():
    """Keras 3.15 reduces every per-replica log under MultiWorkerMirroredStrategy with
    ``strategy.reduce("MEAN", v, axis=0)``, which fails for scalar logs (the loss): "Invalid
    reduction dimension 0 for input with 0 dimensions". Reduce scalars with ``axis=None``."""
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica
    if getattr(original, "_kerasep_patched", False):
        return

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

    reduce_per_replica._kerasep_patched = True
    tf_trainer.reduce_per_replica = reduce_per_replica
