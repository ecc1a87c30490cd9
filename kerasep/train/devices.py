"""Devices, precision and seeds: the distribution strategy, the mixed-precision policy,
seeding and op determinism."""
from kerasep.backend import keras, tf


def make_strategy(name="auto"):
    """``"auto"``: MirroredStrategy over every GPU when there are several, else the default
    strategy; ``"mirrored"``: MirroredStrategy over all GPUs (or all logical CPU devices when
    there is no GPU); ``"multiworker"``: MultiWorkerMirroredStrategy (cluster from
    ``TF_CONFIG``); ``"default"``: no distribution."""
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "auto" and len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def set_precision(mode="auto"):
    """``mixed_float16`` when ``mode`` is ``True`` or (``"auto"`` and a GPU is present); the
    float32 policy otherwise. Returns the policy name."""
    gpu = bool(tf.config.list_physical_devices("GPU"))
    name = "mixed_float16" if (mode is True or (mode == "auto" and gpu)) else "float32"
    keras.mixed_precision.set_global_policy(name)
    return name


def seed_everything(seed, deterministic=True):
    keras.utils.set_random_seed(int(seed))
    if deterministic:
        tf.config.experimental.enable_op_determinism()
