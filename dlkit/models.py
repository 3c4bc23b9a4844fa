"""Model builders: plain functions that return uncompiled Keras models.

A builder takes hyperparameters (so keras-tuner can call it with values from a
search space) and nothing about where it is trained (no distribution strategy,
no precision policy): the trainer builds it in its strategy scope and compiles
it. Outputs are `float32`, accurate under mixed precision. Keras layers check
their arguments; builders check only what Keras cannot (`rnn`, image sizes).

Shared arguments (defaults are in the signatures): `input_shape` is one
example's shape; image builders take `(height, width)` (a channel axis is
added) or `(height, width, channels)`. `num_classes` gives a softmax (train
with `"sparse_categorical_crossentropy"`), or a sigmoid unit if `1`
(`"binary_crossentropy"`). `rescale` multiplies the inputs first, e.g.
`1 / 255`. `l2` is the kernels' L2 penalty factor, `dropout` a dropout rate.
`vocabulary_size` counts token ids, padding (0) included; `embedding_dim` is
their embedding size. `rnn` is `"lstm"` or `"gru"`, with `units` units.
"""

import keras
from keras import layers

__all__ = [
    "bag_of_words_classifier",
    "char_language_model",
    "cnn",
    "dcgan_discriminator",
    "dcgan_generator",
    "gpt",
    "logistic_regression",
    "mlp",
    "resnet",
    "sequence_regressor",
    "softmax_regression",
    "text_classifier",
    "transformer_classifier",
]


def logistic_regression(input_shape, l2=0.0):
    """Builds logistic regression: p(y=1 | x) = sigmoid(w . x + b).

    >>> logistic_regression(input_shape=(30,)).count_params()  # 30 weights, 1 bias
    31
    """
    return softmax_regression(input_shape, num_classes=1, l2=l2)


def softmax_regression(input_shape, num_classes, l2=0.0, rescale=None):
    """Builds softmax (multinomial logistic) regression over flattened inputs.

    >>> softmax_regression((28, 28), num_classes=10).count_params()  # (784 + 1) * 10
    7850
    """
    inputs = keras.Input(shape=tuple(input_shape))
    x = layers.Flatten()(_rescaled(inputs, rescale))
    name = "logistic_regression" if num_classes == 1 else "softmax_regression"
    return keras.Model(inputs, _classifier_head(x, num_classes, l2), name=name)


def mlp(
    input_shape, num_classes, depth=2, width=128, dropout=0.0, l2=0.0, rescale=None
):
    """Builds a multilayer perceptron: `depth` ReLU layers of `width` units.

    >>> mlp((28, 28), 10, width=64).count_params()  # (784+1)*64 + (64+1)*64 + (64+1)*10
    55050

    Args:
        depth: hidden layers, each followed by `dropout`. Defaults to `2`.
        width: units per hidden layer. Defaults to `128`.
    """
    inputs = keras.Input(shape=tuple(input_shape))
    x = layers.Flatten()(_rescaled(inputs, rescale))
    for _ in range(depth):
        x = layers.Dense(width, activation="relu", kernel_regularizer=_l2(l2))(x)
        x = _dropout(x, dropout)
    outputs = _classifier_head(x, num_classes, l2)
    return keras.Model(inputs, outputs, name="mlp")


def cnn(
    input_shape,
    num_classes,
    filters=(32, 64),
    dropout=0.5,
    rescale=None,
    batch_norm=False,
    convs_per_block=1,
):
    """Builds a small convnet in the style of keras-io's MNIST example.

    >>> cnn((28, 28), 10).count_params()  # 320 + 18,496 convolution, 16,010 dense
    34826

    Args:
        filters: one block per entry: `convs_per_block` 3x3 ReLU convolutions
            of that many filters, then a 2x2 max-pooling. After the blocks come
            `dropout` and the classifier. Defaults to `(32, 64)`.
        batch_norm: whether each convolution is followed by batch
            normalization (the convolution then has no bias) before its ReLU.
            Defaults to `False`.
        convs_per_block: convolutions before each pooling; 2 gives VGG's
            pattern. Defaults to `1`.
    """
    if not (hasattr(convs_per_block, "__index__") and convs_per_block >= 1):
        raise _invalid("convs_per_block", convs_per_block, "a positive integer")
    inputs, x = _image_inputs(input_shape, rescale, filters)
    for count in filters:
        for _ in range(convs_per_block):
            if batch_norm:
                x = layers.Conv2D(count, 3, use_bias=False)(x)
                x = layers.Activation("relu")(layers.BatchNormalization()(x))
            else:
                x = layers.Conv2D(count, 3, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = _dropout(layers.Flatten()(x), dropout)
    return keras.Model(inputs, _classifier_head(x, num_classes), name="cnn")


def resnet(
    input_shape,
    num_classes,
    filters=(16, 32, 64),
    blocks_per_stage=1,
    dropout=0.0,
    rescale=None,
):
    """Builds a small ResNet: residual blocks with batch normalization.

    A block is conv-BN-ReLU-conv-BN plus a shortcut (a 1x1 convolution when
    the shape changes), then ReLU; global average pooling feeds the classifier.

    >>> resnet((28, 28), num_classes=10).output.shape
    (None, 10)

    Args:
        filters: a 3x3 stem, then one stage per entry; every stage after the
            first halves the resolution. Defaults to `(16, 32, 64)`.
        blocks_per_stage: residual blocks per stage. Defaults to `1`.
    """
    inputs, x = _image_inputs(input_shape, rescale, filters)
    x = layers.Activation("relu")(_conv_bn(x, filters[0], strides=1))
    for stage, count in enumerate(filters):
        for block in range(blocks_per_stage):
            strides = 2 if stage and not block else 1
            shortcut = x
            if strides != 1 or x.shape[-1] != count:
                shortcut = layers.Conv2D(count, 1, strides=strides, use_bias=False)(x)
                shortcut = layers.BatchNormalization()(shortcut)
            x = layers.Activation("relu")(_conv_bn(x, count, strides))
            x = layers.Add()([_conv_bn(x, count, strides=1), shortcut])
            x = layers.Activation("relu")(x)
    x = _dropout(layers.GlobalAveragePooling2D()(x), dropout)
    return keras.Model(inputs, _classifier_head(x, num_classes), name="resnet")


def text_classifier(
    vocabulary_size,
    num_classes=1,
    embedding_dim=64,
    units=64,
    rnn="lstm",
    bidirectional=False,
    dropout=0.0,
):
    """Builds a text classifier: Embedding, an LSTM or GRU, then the classifier.

    Inputs are padded sequences of token ids; 0 is padding and is masked.

    >>> text_classifier(1000).count_params()  # 64,000 + 4*(64*(64+64)+64) + 65
    97089

    Args:
        bidirectional: whether to read both ways. Defaults to `False`.
    """
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(vocabulary_size, embedding_dim, mask_zero=True)(inputs)
    recurrent = _recurrent_layer(rnn, units)
    x = (layers.Bidirectional(recurrent) if bidirectional else recurrent)(x)
    outputs = _classifier_head(_dropout(x, dropout), num_classes)
    return keras.Model(inputs, outputs, name=f"{rnn}_text_classifier")


def bag_of_words_classifier(vocabulary_size, num_classes=1, hidden_units=0, l2=0.0):
    """Builds the bag-of-words baseline: which words occur, then a linear model.

    Same inputs as `text_classifier`; word order is ignored, on purpose.

    >>> bag_of_words_classifier(1000).count_params()  # a weight a word, a bias
    1001

    Args:
        hidden_units: units of a ReLU layer, `0` for none. Defaults to `0`.
    """
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.CategoryEncoding(vocabulary_size, output_mode="multi_hot")(inputs)
    if hidden_units:
        x = layers.Dense(hidden_units, activation="relu", kernel_regularizer=_l2(l2))(x)
    outputs = _classifier_head(x, num_classes, l2)
    return keras.Model(inputs, outputs, name="bag_of_words_classifier")


def char_language_model(
    vocabulary_size, embedding_dim=64, units=256, rnn="gru", num_layers=1, dropout=0.0
):
    """Builds a character language model: p(next character | characters so far).

    At every position, a softmax over the vocabulary: train with
    `"sparse_categorical_crossentropy"` on the inputs shifted by one.

    >>> char_language_model(vocabulary_size=65, units=128).output.shape
    (None, None, 65)

    Args:
        num_layers: recurrent layers, each followed by `dropout`. Defaults to `1`.
    """
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(vocabulary_size, embedding_dim)(inputs)
    for _ in range(num_layers):
        x = _dropout(_recurrent_layer(rnn, units, return_sequences=True)(x), dropout)
    outputs = _classifier_head(x, vocabulary_size)
    return keras.Model(inputs, outputs, name="char_language_model")


def sequence_regressor(
    window, features=1, horizon=1, units=32, rnn="lstm", dropout=0.0
):
    """Builds a time-series regressor: the next `horizon` values from a window.

    The output is linear: train with `"mse"` or `"mae"`.

    >>> sequence_regressor(window=24, horizon=6).count_params()  # 4*(32*33+32) + 198
    4550

    Args:
        window: time steps in each input window.
        features: values per time step. Defaults to `1`.
        horizon: values to predict. Defaults to `1`.
    """
    inputs = keras.Input(shape=(window, features))
    x = _dropout(_recurrent_layer(rnn, units)(inputs), dropout)
    outputs = layers.Dense(horizon, dtype="float32")(x)
    return keras.Model(inputs, outputs, name="sequence_regressor")


def dcgan_generator(latent_dim=100, image_shape=(28, 28, 1), filters=64):
    """Builds a DCGAN generator: a latent vector to an image in [-1, 1].

    Dense to a quarter-size map, two strided transposed convolutions (batch
    norm, LeakyReLU) up to `image_shape`, and a `tanh` output.

    >>> dcgan_generator(latent_dim=64).output.shape
    (None, 28, 28, 1)

    Args:
        latent_dim: size of the noise vector z. Defaults to `100`.
        image_shape: `(height, width, channels)`, height and width multiples
            of 4 (else a `ValueError`). Defaults to `(28, 28, 1)`.
        filters: filters of the last hidden layer, twice as many in the
            first. Defaults to `64`.
    """
    if len(image_shape) != 3 or image_shape[0] % 4 or image_shape[1] % 4:
        raise _invalid("image_shape", image_shape, "height and width multiples of 4")
    height, width, channels = image_shape
    inputs = keras.Input(shape=(latent_dim,))
    x = layers.Dense((height // 4) * (width // 4) * filters * 2, use_bias=False)(inputs)
    x = layers.LeakyReLU(0.2)(layers.BatchNormalization()(x))
    x = layers.Reshape((height // 4, width // 4, filters * 2))(x)
    x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same")(x)
    x = layers.LeakyReLU(0.2)(layers.BatchNormalization()(x))
    x = layers.Conv2DTranspose(channels, 4, strides=2, padding="same")(x)
    outputs = layers.Activation("tanh", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="generator")


def dcgan_discriminator(image_shape=(28, 28, 1), filters=64, dropout=0.3):
    """Builds a DCGAN discriminator: D(x), the probability that an image is real.

    >>> dcgan_discriminator().output.shape
    (None, 1)

    Args:
        image_shape: `(height, width, channels)`. Defaults to `(28, 28, 1)`.
        filters: filters of the first convolution, twice as many in the
            second. Defaults to `64`.
    """
    inputs = keras.Input(shape=tuple(image_shape))
    x = inputs
    for count in (filters, filters * 2):
        x = layers.Conv2D(count, 4, strides=2, padding="same")(x)
        x = _dropout(layers.LeakyReLU(0.2)(x), dropout)
    outputs = _classifier_head(layers.Flatten()(x), num_classes=1)
    return keras.Model(inputs, outputs, name="discriminator")


def _classifier_head(x, num_classes, l2=0.0):
    activation = "sigmoid" if num_classes == 1 else "softmax"
    return layers.Dense(
        num_classes, activation=activation, kernel_regularizer=_l2(l2), dtype="float32"
    )(x)


def _image_inputs(input_shape, rescale, filters):
    # Checked here because Keras would say "expected ndim=4" for a 1-D shape,
    # and `resnet` would fail with an IndexError on empty `filters`.
    if len(input_shape) not in (2, 3):
        raise _invalid("input_shape", input_shape, "(height, width[, channels])")
    if not filters:
        raise _invalid("filters", filters, "at least one filter count, e.g. (32, 64)")
    inputs = keras.Input(shape=tuple(input_shape))
    x = _rescaled(inputs, rescale)
    return inputs, layers.Reshape((*input_shape, 1))(x) if len(input_shape) == 2 else x


def _conv_bn(x, filters, strides):
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
    return layers.BatchNormalization()(x)


def _recurrent_layer(rnn, units, return_sequences=False):
    if rnn not in ("lstm", "gru"):  # our own name, unknown to Keras
        raise _invalid("rnn", rnn, "one of 'lstm', 'gru'")
    layer_class = layers.LSTM if rnn == "lstm" else layers.GRU
    return layer_class(units, return_sequences=return_sequences)


def _rescaled(inputs, rescale):
    return inputs if rescale is None else layers.Rescaling(rescale)(inputs)


def _dropout(x, rate):
    return layers.Dropout(rate)(x) if rate else x


def _l2(factor):
    return keras.regularizers.L2(factor) if factor else None


def _invalid(name, value, expected):
    return ValueError(
        f"Invalid value for argument `{name}`. Received: {name}={value!r}. "
        f"Expected {expected}."
    )


def transformer_classifier(
    vocabulary_size,
    sequence_length,
    num_classes=1,
    embedding_dim=64,
    num_heads=4,
    num_layers=1,
    dropout=0.0,
):
    """Builds a Transformer encoder classifier: self-attention blocks, then a mean.

    Token and learned position embeddings are added; `num_layers` encoder
    blocks mix them (see `gpt`); the mean over the real tokens feeds the
    classifier. Inputs are padded sequences of token ids, as for
    `text_classifier`: no token attends to the padding (0) and the mean skips
    it, so padding does not change the output.

    >>> transformer_classifier(1000, sequence_length=24).output.shape
    (None, 1)

    Args:
        sequence_length: the longest input, in tokens: one position
            embedding per position.
        num_heads: attention heads, a divisor of `embedding_dim` (else a
            `ValueError`). Defaults to `4`.
        num_layers: encoder blocks. Defaults to `1`.
    """
    inputs = keras.Input(shape=(None,), dtype="int32")
    padding_mask = keras.ops.not_equal(inputs, 0)  # Add would drop mask_zero's
    x = _embed_with_positions(
        inputs, vocabulary_size, sequence_length, embedding_dim, num_heads
    )
    for _ in range(num_layers):
        x = _transformer_block(x, num_heads, dropout, padding_mask=padding_mask)
    x = layers.LayerNormalization(epsilon=1e-6)(x)
    x = layers.GlobalAveragePooling1D()(x, mask=padding_mask)
    outputs = _classifier_head(_dropout(x, dropout), num_classes)
    return keras.Model(inputs, outputs, name="transformer_classifier")


def gpt(
    vocabulary_size,
    sequence_length,
    embedding_dim=64,
    num_heads=4,
    num_layers=2,
    dropout=0.0,
):
    """Builds a small decoder-only Transformer language model, in GPT's design.

    Token and learned position embeddings, then `num_layers` blocks, each
    `x + attention(norm(x))` and `x + feed_forward(norm(x))` (pre-norm, as in
    GPT-2; the feed-forward network has `4 * embedding_dim` GELU units). The
    attention is causal (`use_causal_mask=True`): the output at step t depends
    on the inputs up to t only. As for `char_language_model`, every position
    gets a softmax over the vocabulary: train with
    `"sparse_categorical_crossentropy"` on the inputs shifted by one.

    >>> gpt(vocabulary_size=65, sequence_length=64).output.shape
    (None, None, 65)

    Args:
        sequence_length: the longest input (the context), in tokens.
        num_heads: attention heads, a divisor of `embedding_dim` (else a
            `ValueError`). Defaults to `4`.
        num_layers: Transformer blocks. Defaults to `2`.
    """
    inputs = keras.Input(shape=(None,), dtype="int32")
    x = _embed_with_positions(
        inputs, vocabulary_size, sequence_length, embedding_dim, num_heads
    )
    for _ in range(num_layers):
        x = _transformer_block(x, num_heads, dropout, causal=True)
    x = layers.LayerNormalization(epsilon=1e-6)(x)
    return keras.Model(inputs, _classifier_head(x, vocabulary_size), name="gpt")


def _embed_with_positions(inputs, vocabulary_size, length, embedding_dim, num_heads):
    if embedding_dim % num_heads:  # Keras would build heads of a rounded size
        expected = f"a divisor of embedding_dim={embedding_dim}"
        raise _invalid("num_heads", num_heads, expected)
    positions = keras.ops.cumsum(keras.ops.ones_like(inputs), axis=1) - 1  # 0, 1, ..
    tokens = layers.Embedding(vocabulary_size, embedding_dim)(inputs)
    return layers.Add()([tokens, layers.Embedding(length, embedding_dim)(positions)])


def _transformer_block(x, num_heads, dropout, padding_mask=None, causal=False):
    dim = x.shape[-1]
    h = layers.LayerNormalization(epsilon=1e-6)(x)
    attention = layers.MultiHeadAttention(num_heads, dim // num_heads, dropout=dropout)
    h = attention(
        h, h, query_mask=padding_mask, value_mask=padding_mask, use_causal_mask=causal
    )
    x = layers.Add()([x, _dropout(h, dropout)])
    h = layers.LayerNormalization(epsilon=1e-6)(x)
    h = layers.Dense(4 * dim, activation="gelu")(h)
    return layers.Add()([x, _dropout(layers.Dense(dim)(h), dropout)])
