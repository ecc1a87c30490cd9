"""Building blocks of the Spleeter-style U-Net (Jansson et al. 2017).

The blocks are functions that wire named standard Keras layers (Conv2D, BatchNormalization, ...)
into a functional graph, so models built from them serialise with plain Keras and their
variables can be matched by name (see :mod:`kerasep.zoo.converters.spleeter`).
Tensors are channels-last spectrogram patches ``(batch, nb_frames, nb_bins, channels)``.
"""
from kerasep.backend import keras

ACTIVATIONS = ("leaky_relu", "elu", "relu")


def activation_layer(name, activation):
    """LeakyReLU(0.2) / ELU / ReLU layer called ``name``."""
    if activation == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=0.2, name=name)
    if activation == "elu":
        return keras.layers.ELU(name=name)
    if activation == "relu":
        return keras.layers.ReLU(name=name)
    raise ValueError(f"activation must be one of {ACTIVATIONS}. Received: {activation!r}")


def encoder_block(x, filters, activation, prefix):
    """Conv2D 5×5 stride 2 → BN → activation.

    Returns ``(conv, act)``: the pre-normalisation convolution (Spleeter's skip and bottleneck
    tensor) and the activated output that feeds the next encoder block.
    Layers: ``{prefix}_conv``, ``{prefix}_bn``, ``{prefix}_act``. Halves frames and bins.
    """
    conv = keras.layers.Conv2D(
        filters, 5, strides=2, padding="same", kernel_initializer="he_uniform", name=f"{prefix}_conv"
    )(x)
    bn = keras.layers.BatchNormalization(axis=-1, epsilon=1e-3, name=f"{prefix}_bn")(conv)
    return conv, activation_layer(f"{prefix}_act", activation)(bn)


def decoder_block(x, filters, activation, dropout, prefix):
    """Conv2DTranspose 5×5 stride 2 → activation → BN → (Dropout). Doubles frames and bins.

    Layers: ``{prefix}_deconv``, ``{prefix}_act``, ``{prefix}_bn``, ``{prefix}_dropout``.
    """
    x = keras.layers.Conv2DTranspose(
        filters, 5, strides=2, padding="same", kernel_initializer="he_uniform", name=f"{prefix}_deconv"
    )(x)
    x = activation_layer(f"{prefix}_act", activation)(x)
    x = keras.layers.BatchNormalization(axis=-1, epsilon=1e-3, name=f"{prefix}_bn")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name=f"{prefix}_dropout")(x)
    return x


def unet_branch(
    inputs,
    prefix,
    nb_channels,
    conv_n_filters=(16, 32, 64, 128, 256, 512),
    conv_activation="leaky_relu",
    deconv_activation="relu",
    dropout=0.5,
    output_mask_logit=False,
):
    """One target's U-Net, Spleeter's ``apply_unet``.

    Args:
        inputs: mixture magnitude ``(batch, nb_frames, nb_bins, nb_channels)``; ``nb_frames`` and
            ``nb_bins`` must be multiples of ``2 ** len(conv_n_filters)``.
        prefix: layer-name prefix (the target's name).
        output_mask_logit: return the mask logits instead of ``sigmoid(mask) * inputs``.

    Returns:
        ``(batch, nb_frames, nb_bins, nb_channels)``: the target's magnitude estimate (or logits).
    """
    depth = len(conv_n_filters)
    convs = []
    x = inputs
    for i, filters in enumerate(conv_n_filters[:-1]):
        conv, x = encoder_block(x, filters, conv_activation, f"{prefix}_enc{i}")
        convs.append(conv)
    # Spleeter feeds the bottleneck's raw convolution to the decoder; the BN and activation it
    # applies after it are never consumed, so they are not built here.
    x = keras.layers.Conv2D(
        conv_n_filters[-1], 5, strides=2, padding="same", kernel_initializer="he_uniform",
        name=f"{prefix}_enc{depth - 1}_conv",
    )(x)
    convs.append(x)
    for i in range(depth):
        filters = conv_n_filters[depth - 2 - i] if i < depth - 1 else 1
        x = decoder_block(x, filters, deconv_activation, dropout if i < 3 else 0.0, f"{prefix}_dec{i}")
        if i < depth - 1:
            x = keras.layers.Concatenate(axis=-1, name=f"{prefix}_skip{i}")([convs[depth - 2 - i], x])
    logits = keras.layers.Conv2D(
        nb_channels,
        4,
        dilation_rate=2,
        padding="same",
        kernel_initializer="he_uniform",
        name=f"{prefix}_mask_conv",
    )(x)
    if output_mask_logit:
        return logits
    mask = keras.layers.Activation("sigmoid", name=f"{prefix}_mask")(logits)
    return keras.layers.Multiply(name=f"{prefix}_spectrogram")([mask, inputs])
