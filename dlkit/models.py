"""Model builders: plain functions that return uncompiled Keras models.

Every builder takes its hyperparameters as arguments (so keras-tuner can call
it with values from a search space) and nothing about where or how it will be
trained: no distribution strategy, no precision policy. The trainer builds the
model inside its strategy scope and under its precision policy, then compiles
it. Output layers are always `float32`, so probabilities and losses stay
accurate under a `mixed_float16` or `mixed_bfloat16` policy.

Classifiers end in a softmax (`num_classes >= 2`, use
`"sparse_categorical_crossentropy"`) or a sigmoid (`num_classes=1`, use
`"binary_crossentropy"`); regressors end in a linear layer (use `"mse"`).

Example:

>>> from dlkit import models
>>> model = models.cnn(input_shape=(28, 28), num_classes=10, rescale=1 / 255)
>>> model.output.dtype
'float32'
"""

import keras
from keras import layers

__all__ = [
    "bag_of_words_classifier",
    "char_language_model",
    "cnn",
    "dcgan_discriminator",
    "dcgan_generator",
    "logistic_regression",
    "mlp",
    "resnet",
    "sequence_regressor",
    "softmax_regression",
    "text_classifier",
]

RNN_TYPES = ("lstm", "gru")


def logistic_regression(input_shape, l2=0.0):
    """Builds logistic regression: one sigmoid unit over the flattened inputs.

    p(y=1 | x) = sigmoid(w . x + b), trained with binary cross-entropy; `l2`
    adds `l2 * ||w||^2` to the loss.

    Example:

    >>> model = logistic_regression(input_shape=(30,))
    >>> model.output.shape
    (None, 1)

    Args:
        input_shape: shape of one example, without the batch axis.
        l2: L2 regularisation factor for the weights. Defaults to `0.0`.

    Returns:
        An uncompiled `keras.Model`.
    """
    return softmax_regression(input_shape, num_classes=1, l2=l2)


def softmax_regression(input_shape, num_classes, l2=0.0, rescale=None):
    """Builds softmax (multinomial logistic) regression over flattened inputs.

    Example:

    >>> model = softmax_regression(input_shape=(28, 28), num_classes=10)
    >>> model.output.shape
    (None, 10)

    Args:
        input_shape: shape of one example, without the batch axis.
        num_classes: number of classes; `1` gives a single sigmoid unit.
        l2: L2 regularisation factor for the weights. Defaults to `0.0`.
        rescale: factor applied to the inputs first, e.g. `1 / 255` for raw
            pixels. Defaults to `None` (inputs used as they are).

    Returns:
        An uncompiled `keras.Model`.
    """
    _check_positive_int("num_classes", num_classes)
    _check_fraction("l2", l2, upper=None)
    inputs = keras.Input(shape=tuple(input_shape))
    x = layers.Flatten()(_rescaled(inputs, rescale))
    outputs = _classifier_head(x, num_classes, l2=l2)
    name = "logistic_regression" if num_classes == 1 else "softmax_regression"
    return keras.Model(inputs, outputs, name=name)


def mlp(
    input_shape,
    num_classes,
    depth=2,
    width=128,
    dropout=0.0,
    l2=0.0,
    rescale=None,
):
    """Builds a multilayer perceptron: `depth` ReLU layers of `width` units.

    Example:

    >>> model = mlp(input_shape=(28, 28), num_classes=10, depth=2, width=64)
    >>> model.count_params()
    55050

    Args:
        input_shape: shape of one example, without the batch axis.
        num_classes: number of classes; `1` gives a single sigmoid unit.
        depth: number of hidden layers. Defaults to `2`.
        width: units per hidden layer. Defaults to `128`.
        dropout: dropout rate after each hidden layer. Defaults to `0.0`.
        l2: L2 regularisation factor for all kernels. Defaults to `0.0`.
        rescale: factor applied to the inputs first, e.g. `1 / 255` for raw
            pixels. Defaults to `None`.

    Returns:
        An uncompiled `keras.Model`.
    """
    _check_positive_int("num_classes", num_classes)
    _check_positive_int("depth", depth, minimum=0)
    _check_positive_int("width", width)
    _check_fraction("dropout", dropout)
    _check_fraction("l2", l2, upper=None)
    inputs = keras.Input(shape=tuple(input_shape))
    x = layers.Flatten()(_rescaled(inputs, rescale))
    for _ in range(depth):
        x = layers.Dense(width, activation="relu", kernel_regularizer=_l2(l2))(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    outputs = _classifier_head(x, num_classes, l2=l2)
    return keras.Model(inputs, outputs, name="mlp")


def cnn(input_shape, num_classes, filters=(32, 64), dropout=0.5, rescale=None):
    """Builds a small convolutional network in the style of keras-io's MNIST convnet.

    Each entry of `filters` adds a 3x3 ReLU convolution and a 2x2 max-pooling;
    then dropout and the classifier. Inputs of shape `(height, width)` get a
    channel axis added.

    Example:

    >>> model = cnn(input_shape=(28, 28), num_classes=10, rescale=1 / 255)
    >>> model.output.shape
    (None, 10)

    Args:
        input_shape: `(height, width)` or `(height, width, channels)`.
        num_classes: number of classes; `1` gives a single sigmoid unit.
        filters: filters of each convolution block. Defaults to `(32, 64)`.
        dropout: dropout rate before the classifier. Defaults to `0.5`.
        rescale: factor applied to the inputs first, e.g. `1 / 255` for raw
            pixels. Defaults to `None`.

    Returns:
        An uncompiled `keras.Model`.
    """
    _check_positive_int("num_classes", num_classes)
    _check_filters(filters)
    _check_fraction("dropout", dropout)
    inputs = keras.Input(shape=tuple(input_shape))
    x = _image_with_channels(_rescaled(inputs, rescale), input_shape)
    for count in filters:
        x = layers.Conv2D(count, 3, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = _classifier_head(x, num_classes)
    return keras.Model(inputs, outputs, name="cnn")


def resnet(
    input_shape,
    num_classes,
    filters=(16, 32, 64),
    blocks_per_stage=1,
    dropout=0.0,
    rescale=None,
):
    """Builds a small ResNet: residual blocks with batch normalization.

    A 3x3 stem, then one stage per entry of `filters`; every stage after the
    first halves the resolution. Each block is conv-BN-ReLU-conv-BN plus a
    shortcut (a 1x1 convolution when the shape changes), then ReLU. Global
    average pooling feeds the classifier.

    Example:

    >>> model = resnet(input_shape=(28, 28), num_classes=10)
    >>> model.output.shape
    (None, 10)

    Args:
        input_shape: `(height, width)` or `(height, width, channels)`.
        num_classes: number of classes; `1` gives a single sigmoid unit.
        filters: filters of each stage. Defaults to `(16, 32, 64)`.
        blocks_per_stage: residual blocks per stage. Defaults to `1`.
        dropout: dropout rate before the classifier. Defaults to `0.0`.
        rescale: factor applied to the inputs first, e.g. `1 / 255` for raw
            pixels. Defaults to `None`.

    Returns:
        An uncompiled `keras.Model`.
    """
    _check_positive_int("num_classes", num_classes)
    _check_filters(filters)
    _check_positive_int("blocks_per_stage", blocks_per_stage)
    _check_fraction("dropout", dropout)
    inputs = keras.Input(shape=tuple(input_shape))
    x = _image_with_channels(_rescaled(inputs, rescale), input_shape)
    x = _conv_bn(x, filters[0], strides=1, activation="relu")
    for stage, count in enumerate(filters):
        for block in range(blocks_per_stage):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _residual_block(x, count, strides)
    x = layers.GlobalAveragePooling2D()(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = _classifier_head(x, num_classes)
    return keras.Model(inputs, outputs, name="resnet")


def text_classifier(
    vocabulary_size,
    num_classes=1,
    embedding_dim=64,
    units=64,
    rnn="lstm",
    bidirectional=False,
    dropout=0.0,
):
    """Builds a text classifier: Embedding, then an LSTM or GRU, then the classifier.

    Inputs are padded sequences of token ids (0 is padding and is masked).

    Example:

    >>> model = text_classifier(vocabulary_size=1000, rnn="gru", bidirectional=True)
    >>> model.output.shape
    (None, 1)

    Args:
        vocabulary_size: number of token ids, padding (0) included.
        num_classes: number of classes; `1` gives a single sigmoid unit.
            Defaults to `1`.
        embedding_dim: size of the token embeddings. Defaults to `64`.
        units: units of the recurrent layer. Defaults to `64`.
        rnn: `"lstm"` or `"gru"`. Defaults to `"lstm"`.
        bidirectional: whether to read the sequence in both directions.
            Defaults to `False`.
        dropout: dropout rate before the classifier. Defaults to `0.0`.

    Returns:
        An uncompiled `keras.Model`.
    """
    _check_positive_int("vocabulary_size", vocabulary_size)
    _check_positive_int("num_classes", num_classes)
    _check_positive_int("embedding_dim", embedding_dim)
    _check_fraction("dropout", dropout)
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(vocabulary_size, embedding_dim, mask_zero=True)(inputs)
    recurrent = _recurrent_layer(rnn, units)
    x = (layers.Bidirectional(recurrent) if bidirectional else recurrent)(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = _classifier_head(x, num_classes)
    return keras.Model(inputs, outputs, name=f"{rnn}_text_classifier")


def bag_of_words_classifier(vocabulary_size, num_classes=1, hidden_units=0, l2=0.0):
    """Builds the bag-of-words baseline: multi-hot word presence, then a linear model.

    Takes the same padded token-id sequences as `text_classifier`, so the two
    can be compared on the same data. Word order is ignored: that is the
    point of the baseline.

    Example:

    >>> model = bag_of_words_classifier(vocabulary_size=1000)
    >>> model.output.shape
    (None, 1)

    Args:
        vocabulary_size: number of token ids, padding (0) included.
        num_classes: number of classes; `1` gives a single sigmoid unit.
            Defaults to `1`.
        hidden_units: units of an optional ReLU layer; `0` for a purely
            linear model. Defaults to `0`.
        l2: L2 regularisation factor for the kernels. Defaults to `0.0`.

    Returns:
        An uncompiled `keras.Model`.
    """
    _check_positive_int("vocabulary_size", vocabulary_size)
    _check_positive_int("num_classes", num_classes)
    _check_positive_int("hidden_units", hidden_units, minimum=0)
    _check_fraction("l2", l2, upper=None)
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.CategoryEncoding(vocabulary_size, output_mode="multi_hot")(inputs)
    if hidden_units:
        x = layers.Dense(hidden_units, activation="relu", kernel_regularizer=_l2(l2))(x)
    outputs = _classifier_head(x, num_classes, l2=l2)
    return keras.Model(inputs, outputs, name="bag_of_words_classifier")


def char_language_model(
    vocabulary_size, embedding_dim=64, units=256, rnn="gru", num_layers=1, dropout=0.0
):
    """Builds a character-level language model: p(next character | characters so far).

    Inputs are sequences of character ids; the output is, at every position,
    a softmax over the vocabulary for the next character. Train with
    `"sparse_categorical_crossentropy"` on targets shifted by one.

    Example:

    >>> model = char_language_model(vocabulary_size=65, units=128)
    >>> model.output.shape
    (None, None, 65)

    Args:
        vocabulary_size: number of distinct characters (ids).
        embedding_dim: size of the character embeddings. Defaults to `64`.
        units: units of each recurrent layer. Defaults to `256`.
        rnn: `"lstm"` or `"gru"`. Defaults to `"gru"`.
        num_layers: number of stacked recurrent layers. Defaults to `1`.
        dropout: dropout rate after each recurrent layer. Defaults to `0.0`.

    Returns:
        An uncompiled `keras.Model`.
    """
    _check_positive_int("vocabulary_size", vocabulary_size)
    _check_positive_int("embedding_dim", embedding_dim)
    _check_positive_int("num_layers", num_layers)
    _check_fraction("dropout", dropout)
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(vocabulary_size, embedding_dim)(inputs)
    for _ in range(num_layers):
        x = _recurrent_layer(rnn, units, return_sequences=True)(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(vocabulary_size, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="char_language_model")


def sequence_regressor(
    window, features=1, horizon=1, units=32, rnn="lstm", dropout=0.0
):
    """Builds a time-series regressor: the next `horizon` values from a window.

    Example:

    >>> model = sequence_regressor(window=24, horizon=6)
    >>> model.output.shape
    (None, 6)

    Args:
        window: time steps in each input window.
        features: values per time step. Defaults to `1`.
        horizon: values to predict. Defaults to `1`.
        units: units of the recurrent layer. Defaults to `32`.
        rnn: `"lstm"` or `"gru"`. Defaults to `"lstm"`.
        dropout: dropout rate before the output. Defaults to `0.0`.

    Returns:
        An uncompiled `keras.Model` with a linear output; train it with
        `"mse"` or `"mae"`.
    """
    for name, value in (("window", window), ("features", features)):
        _check_positive_int(name, value)
    _check_positive_int("horizon", horizon)
    _check_fraction("dropout", dropout)
    inputs = keras.Input(shape=(window, features))
    x = _recurrent_layer(rnn, units)(inputs)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(horizon, dtype="float32")(x)
    return keras.Model(inputs, outputs, name="sequence_regressor")


def dcgan_generator(latent_dim=100, image_shape=(28, 28, 1), filters=64):
    """Builds a DCGAN generator: a latent vector to an image in [-1, 1].

    Dense to a `(height / 4, width / 4)` feature map, then two strided
    transposed convolutions (batch norm, LeakyReLU) up to `image_shape`, and a
    `tanh` output.

    Example:

    >>> generator = dcgan_generator(latent_dim=64)
    >>> generator.output.shape
    (None, 28, 28, 1)

    Args:
        latent_dim: size of the noise vector z. Defaults to `100`.
        image_shape: `(height, width, channels)`; height and width must be
            multiples of 4. Defaults to `(28, 28, 1)`.
        filters: filters of the last hidden layer (the first has twice as
            many). Defaults to `64`.

    Returns:
        An uncompiled `keras.Model`.
    """
    _check_positive_int("latent_dim", latent_dim)
    _check_positive_int("filters", filters)
    height, width, channels = _check_gan_image_shape(image_shape)
    inputs = keras.Input(shape=(latent_dim,))
    x = layers.Dense((height // 4) * (width // 4) * filters * 2, use_bias=False)(inputs)
    x = layers.LeakyReLU(0.2)(layers.BatchNormalization()(x))
    x = layers.Reshape((height // 4, width // 4, filters * 2))(x)
    for count in (filters, channels):
        x = layers.Conv2DTranspose(count, 4, strides=2, padding="same")(x)
        if count != channels:
            x = layers.LeakyReLU(0.2)(layers.BatchNormalization()(x))
    outputs = layers.Activation("tanh", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="generator")


def dcgan_discriminator(image_shape=(28, 28, 1), filters=64, dropout=0.3):
    """Builds a DCGAN discriminator: D(x), the probability that an image is real.

    Two strided convolutions with LeakyReLU and dropout, then one sigmoid unit.

    Example:

    >>> discriminator = dcgan_discriminator()
    >>> discriminator.output.shape
    (None, 1)

    Args:
        image_shape: `(height, width, channels)`. Defaults to `(28, 28, 1)`.
        filters: filters of the first convolution (the second has twice as
            many). Defaults to `64`.
        dropout: dropout rate after each convolution. Defaults to `0.3`.

    Returns:
        An uncompiled `keras.Model`; train it with `"binary_crossentropy"`.
    """
    _check_positive_int("filters", filters)
    _check_fraction("dropout", dropout)
    inputs = keras.Input(shape=tuple(image_shape))
    x = inputs
    for count in (filters, filters * 2):
        x = layers.Conv2D(count, 4, strides=2, padding="same")(x)
        x = layers.LeakyReLU(0.2)(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    outputs = _classifier_head(layers.Flatten()(x), num_classes=1)
    return keras.Model(inputs, outputs, name="discriminator")


def _classifier_head(x, num_classes, l2=0.0):
    activation = "sigmoid" if num_classes == 1 else "softmax"
    return layers.Dense(
        num_classes, activation=activation, kernel_regularizer=_l2(l2), dtype="float32"
    )(x)


def _rescaled(inputs, rescale):
    return inputs if rescale is None else layers.Rescaling(rescale)(inputs)


def _image_with_channels(x, input_shape):
    if len(input_shape) == 2:
        return layers.Reshape((*input_shape, 1))(x)
    if len(input_shape) == 3:
        return x
    raise ValueError(
        f"Invalid value for argument `input_shape`. Received: "
        f"input_shape={tuple(input_shape)}. Expected (height, width) or "
        "(height, width, channels), e.g. input_shape=(28, 28)."
    )


def _conv_bn(x, filters, strides, activation=None):
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.Activation(activation)(x) if activation else x


def _residual_block(x, filters, strides):
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False)(x)
        shortcut = layers.BatchNormalization()(shortcut)
    x = _conv_bn(x, filters, strides, activation="relu")
    x = _conv_bn(x, filters, strides=1)
    return layers.Activation("relu")(layers.Add()([x, shortcut]))


def _recurrent_layer(rnn, units, return_sequences=False):
    if rnn not in RNN_TYPES:
        raise ValueError(
            f"Invalid value for argument `rnn`. Received: rnn={rnn!r}. "
            f"Expected one of {RNN_TYPES}."
        )
    _check_positive_int("units", units)
    layer_class = layers.LSTM if rnn == "lstm" else layers.GRU
    return layer_class(units, return_sequences=return_sequences)


def _l2(factor):
    return keras.regularizers.L2(factor) if factor else None


def _check_positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"Invalid value for argument `{name}`. Received: {name}={value!r}. "
            f"Expected an integer >= {minimum}."
        )


def _check_fraction(name, value, upper=1.0):
    valid = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not valid or value < 0 or (upper is not None and value >= upper):
        expected = "a number >= 0" if upper is None else f"a number in [0, {upper})"
        raise ValueError(
            f"Invalid value for argument `{name}`. Received: {name}={value!r}. "
            f"Expected {expected}."
        )


def _check_filters(filters):
    if not filters or not all(
        isinstance(f, int) and not isinstance(f, bool) and f > 0 for f in filters
    ):
        raise ValueError(
            f"Invalid value for argument `filters`. Received: filters={filters!r}. "
            "Expected a non-empty tuple of positive integers, e.g. filters=(32, 64)."
        )


def _check_gan_image_shape(image_shape):
    shape = tuple(image_shape)
    if len(shape) != 3 or shape[0] % 4 or shape[1] % 4:
        raise ValueError(
            f"Invalid value for argument `image_shape`. Received: "
            f"image_shape={shape}. Expected (height, width, channels) with height "
            "and width multiples of 4, e.g. image_shape=(28, 28, 1)."
        )
    return shape
