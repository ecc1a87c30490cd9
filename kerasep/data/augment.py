"""Seeded augmentations of source chunks, as pure TensorFlow functions.

Every function takes ``sources`` of shape ``(nb_sources, nb_timesteps, nb_channels)`` and a
stateless ``seed`` (an int32/int64 tensor of shape ``(2,)``); the same seed gives the same
result, on any machine and in any ``tf.data`` thread, which makes training reproducible. Each
source is augmented independently, as in Open-Unmix and Demucs.

The training pipeline does not run these functions on the audio: :func:`draw` makes the same
random draws as :func:`apply` (per source: one gain, one channel-swap and one sign-flip coin)
and returns them as a per-source factor and swap flag, which the chunk reader applies while it
copies the chunk out of the decoded track (one pass over the samples instead of three
element-wise ops per augmentation). ``apply(x, seed)`` equals ``x`` channel-reversed where
``swap`` and multiplied by ``scale`` for ``scale, swap = draw(seed, ...)``, bit for bit when
``"gain"`` is named once (a sign flip is an exact multiplication, a swap a permutation: they
commute exactly with the gain).
"""
from kerasep.backend import tf

#: Augmentation names accepted by :func:`apply` (``time shift`` and random-track mixing happen
#: when chunks are cut: see :func:`kerasep.data.dataset.training_dataset`).
AUGMENTATIONS = ("gain", "channelswap", "signflip")


def _fold(seed, k):
    return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), k)


def random_gain(sources, seed, low=0.25, high=1.25):
    """Multiply each source by a gain drawn uniformly in ``[low, high)``."""
    n = tf.shape(sources)[0]
    g = tf.random.stateless_uniform([n, 1, 1], seed=seed, minval=low, maxval=high, dtype=sources.dtype)
    return sources * g


def channel_swap(sources, seed, p=0.5):
    """Swap left and right of each source with probability ``p`` (no-op for mono)."""
    n = tf.shape(sources)[0]
    flip = tf.random.stateless_uniform([n, 1, 1], seed=seed) < p
    return tf.where(flip, tf.reverse(sources, axis=[2]), sources)


def sign_flip(sources, seed, p=0.5):
    """Negate each source with probability ``p``."""
    n = tf.shape(sources)[0]
    flip = tf.random.stateless_uniform([n, 1, 1], seed=seed) < p
    return tf.where(flip, -sources, sources)


def shift_offsets(seed, nb_sources, max_shift):
    """The offsets :func:`time_shift` draws: int32 ``(nb_sources,)`` uniform in ``[0, max_shift]``."""
    return tf.random.stateless_uniform([nb_sources], seed=seed, minval=0, maxval=max_shift + 1, dtype=tf.int32)


def time_shift(sources, seed, length):
    """Cut ``length`` samples from each source at its own random offset (Demucs' shift).

    ``sources`` has ``length + max_shift`` samples; offsets are uniform in ``[0, max_shift]``.
    """
    n = tf.shape(sources)[0]
    offsets = shift_offsets(seed, n, tf.shape(sources)[1] - length)
    idx = offsets[:, None] + tf.range(length)[None, :]
    return tf.gather(sources, idx, axis=1, batch_dims=1)


def remix_indices(seed, batch_size, nb_sources, group_size):
    """Demucs' ``Remix``: for each source, a random permutation of the batch items within each
    group of ``group_size`` consecutive items (``batch_size % group_size == 0``), so a group's
    sources are shuffled into new mixtures. Returns int32 ``(batch_size, nb_sources)``: source
    ``s`` of item ``b`` is taken from item ``indices[b, s]``."""
    groups = batch_size // group_size
    u = tf.random.stateless_uniform([groups, group_size, nb_sources], seed=seed)
    within = tf.argsort(u, axis=1)  # (groups, group_size, nb_sources): a permutation per group and source
    base = tf.range(groups)[:, None, None] * group_size
    return tf.reshape(within + base, [batch_size, nb_sources])


_FUNCS = {"gain": random_gain, "channelswap": channel_swap, "signflip": sign_flip}


def apply(sources, seed, augmentations=("gain", "channelswap")):
    """Apply the named augmentations in order, each with its own sub-seed of ``seed``."""
    for k, name in enumerate(augmentations):
        if name not in _FUNCS:
            raise ValueError(f"unknown augmentation {name!r}; expected some of {AUGMENTATIONS}")
        sources = _FUNCS[name](sources, _fold(seed, 100 + k))
    return sources


def draw(seed, nb_sources, augmentations=("gain", "channelswap"), gain_range=(0.25, 1.25)):
    """The random draws of :func:`apply` for ``nb_sources`` sources, without the audio.
    ``gain_range``: ``(low, high)`` of the uniform gains (:func:`random_gain`'s ``low``, ``high``).

    Returns ``(scale, swap)``: float32 ``(nb_sources,)`` factors (gain times sign) and bool
    ``(nb_sources,)`` channel-swap flags."""
    low, high = (float(g) for g in gain_range)
    scale = tf.ones([nb_sources], tf.float32)
    swap = tf.zeros([nb_sources], tf.bool)
    for k, name in enumerate(augmentations):
        s = _fold(seed, 100 + k)
        if name == "gain":
            scale = scale * tf.random.stateless_uniform([nb_sources], seed=s, minval=low, maxval=high)
        elif name == "channelswap":
            swap = tf.math.logical_xor(swap, tf.random.stateless_uniform([nb_sources], seed=s) < 0.5)
        elif name == "signflip":
            scale = tf.where(tf.random.stateless_uniform([nb_sources], seed=s) < 0.5, -scale, scale)
        else:
            raise ValueError(f"unknown augmentation {name!r}; expected some of {AUGMENTATIONS}")
    return scale, swap


def check(augmentations):
    augmentations = list(augmentations or ())
    bad = [a for a in augmentations if a not in _FUNCS]
    if bad:
        raise ValueError(f"unknown augmentation(s) {bad}; expected some of {list(AUGMENTATIONS)}")
    return augmentations
