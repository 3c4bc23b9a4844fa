"""Tests for dlkit.models: shapes, parameter counts, float32 outputs under mixed
precision, hyperparameters that change the architecture, and the few checks
the builders own (Keras validates the rest)."""

import ast
import doctest
import inspect
import pathlib

import keras
import numpy as np
import pytest

from dlkit import models

IMAGES = np.random.default_rng(0).integers(0, 255, size=(2, 28, 28)).astype("uint8")
TOKENS = np.array([[5, 9, 2, 0, 0], [1, 2, 3, 4, 7]], dtype="int32")

# builder, inputs, expected output shape
CASES = {
    "logistic_regression": (
        lambda: models.logistic_regression(input_shape=(30,), l2=1e-3),
        np.ones((2, 30), "float32"),
        (2, 1),
    ),
    "softmax_regression": (
        lambda: models.softmax_regression((28, 28), 10, rescale=1 / 255),
        IMAGES,
        (2, 10),
    ),
    "mlp": (
        lambda: models.mlp((28, 28), 10, depth=2, width=16, dropout=0.2, l2=1e-4),
        IMAGES,
        (2, 10),
    ),
    "cnn": (
        lambda: models.cnn((28, 28), 10, filters=(4, 8), rescale=1 / 255),
        IMAGES,
        (2, 10),
    ),
    "resnet": (
        lambda: models.resnet((28, 28, 1), 10, filters=(4, 8), blocks_per_stage=2),
        IMAGES[..., None].astype("float32"),
        (2, 10),
    ),
    "text_classifier": (
        lambda: models.text_classifier(50, embedding_dim=8, units=8, rnn="gru"),
        TOKENS,
        (2, 1),
    ),
    "bidirectional_lstm": (
        lambda: models.text_classifier(
            50, num_classes=3, embedding_dim=8, units=8, bidirectional=True
        ),
        TOKENS,
        (2, 3),
    ),
    "bag_of_words_classifier": (
        lambda: models.bag_of_words_classifier(50, hidden_units=8),
        TOKENS,
        (2, 1),
    ),
    "char_language_model": (
        lambda: models.char_language_model(50, embedding_dim=8, units=16, num_layers=2),
        TOKENS,
        (2, 5, 50),
    ),
    "sequence_regressor": (
        lambda: models.sequence_regressor(window=12, features=2, horizon=3, units=8),
        np.ones((2, 12, 2), "float32"),
        (2, 3),
    ),
    "dcgan_generator": (
        lambda: models.dcgan_generator(latent_dim=16, filters=8),
        np.ones((2, 16), "float32"),
        (2, 28, 28, 1),
    ),
    "dcgan_discriminator": (
        lambda: models.dcgan_discriminator(filters=8),
        np.zeros((2, 28, 28, 1), "float32"),
        (2, 1),
    ),
    "transformer_classifier": (
        lambda: models.transformer_classifier(50, 8, 3, embedding_dim=8, num_heads=2),
        TOKENS,
        (2, 3),
    ),
    "gpt": (
        lambda: models.gpt(50, 8, embedding_dim=8, num_heads=2, dropout=0.1),
        TOKENS,
        (2, 5, 50),
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_builder_returns_an_uncompiled_model_of_the_right_shape(name):
    build, x, shape = CASES[name]
    model = build()
    assert isinstance(model, keras.Model) and not model.compiled
    assert tuple(model(x).shape) == shape


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_outputs_stay_float32_under_mixed_precision(policy):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        built = {name: case[0]() for name, case in CASES.items()}
    finally:
        keras.config.set_dtype_policy(previous)
    for name, model in built.items():
        assert model.output.dtype == "float32", name
        assert model.layers[1].compute_dtype == policy.removeprefix("mixed_"), name


def test_builders_take_no_distribution_or_precision_arguments():
    for name in models.__all__:
        parameters = inspect.signature(getattr(models, name)).parameters
        assert not {"strategy", "precision", "dtype", "policy"} & set(parameters)


def test_output_activations_give_probabilities_and_images():
    generator = models.dcgan_generator(latent_dim=8, filters=4)
    images = generator(np.random.default_rng(1).normal(size=(3, 8)) * 10)
    assert np.min(images) >= -1 and np.max(images) <= 1  # tanh
    probabilities = models.dcgan_discriminator(filters=4)(images)
    assert np.all((probabilities >= 0) & (probabilities <= 1))  # sigmoid
    softmax = models.cnn((28, 28), 10, filters=(4,))(IMAGES)
    np.testing.assert_allclose(np.sum(softmax, axis=1), 1, rtol=1e-5)


def test_hyperparameters_shape_the_architecture():
    def count(model, layer_class):
        return sum(isinstance(layer, layer_class) for layer in model.layers)

    assert count(models.mlp((4,), 2, depth=3, width=5), keras.layers.Dense) == 4
    assert count(models.mlp((4,), 2, depth=0), keras.layers.Dense) == 1
    assert count(models.mlp((4,), 2, dropout=0.5), keras.layers.Dropout) == 2
    assert count(models.mlp((4,), 2), keras.layers.Dropout) == 0
    assert count(models.cnn((28, 28), 2, filters=(2, 2, 2)), keras.layers.Conv2D) == 3
    assert count(models.resnet((8, 8), 2), keras.layers.Add) == 3
    text = models.text_classifier(10, rnn="gru", bidirectional=True)
    assert isinstance(text.layers[2].forward_layer, keras.layers.GRU)
    assert count(models.text_classifier(10), keras.layers.LSTM) == 1
    assert count(models.bag_of_words_classifier(10), keras.layers.Dense) == 1
    regularised = models.softmax_regression((4,), 3, l2=0.1)
    assert regularised.layers[-1].kernel_regularizer is not None
    assert models.logistic_regression((4,)).name == "logistic_regression"


def test_parameter_counts_in_the_docstrings_are_right():
    results = doctest.testmod(models, optionflags=doctest.ELLIPSIS)
    assert results.failed == 0 and results.attempted == len(models.__all__)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: models.text_classifier(10, rnn="transformer"), "rnn='transformer'"),
        (lambda: models.cnn((4,), 2), "input_shape=(4,)"),
        (lambda: models.resnet((8, 8), 2, filters=()), "filters=()"),
        (lambda: models.dcgan_generator(image_shape=(30, 30, 1)), "multiples of 4"),
        (lambda: models.gpt(10, 8, embedding_dim=30, num_heads=4), "num_heads=4"),
        (
            lambda: models.transformer_classifier(10, 8, embedding_dim=6, num_heads=4),
            "a divisor of embedding_dim=6",
        ),
    ],
)
def test_what_keras_cannot_check_raises_keras_style_errors(build, message):
    with pytest.raises(ValueError, match="Invalid value for argument") as error:
        build()
    assert message in str(error.value)


def test_models_import_nothing_from_higher_modules():
    tree = ast.parse(pathlib.Path(models.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert imported <= {"keras"}, imported


def test_cnn_stacks_convs_per_block_before_each_pooling():
    model = models.cnn((28, 28), 10, filters=(4, 8), convs_per_block=2)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("Conv2D") == 4 and kinds.count("MaxPooling2D") == 2
    pooled = [x for x in model.layers if isinstance(x, keras.layers.MaxPooling2D)]
    assert pooled[-1].output.shape == (None, 4, 4, 8)  # 28-26-24-12-10-8-4
    for wrong in (0, 1.5):
        with pytest.raises(ValueError, match=f"convs_per_block={wrong}"):
            models.cnn((28, 28), 10, convs_per_block=wrong)


def test_cnn_batch_norm_normalizes_each_convolution_before_its_relu():
    model = models.cnn((28, 28), 10, filters=(4, 8), batch_norm=True)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("BatchNormalization") == 2
    convolutions = [x for x in model.layers if isinstance(x, keras.layers.Conv2D)]
    assert len(convolutions) == 2 and not any(x.use_bias for x in convolutions)
    first = kinds.index("Conv2D")
    assert kinds[first : first + 3] == ["Conv2D", "BatchNormalization", "Activation"]
    assert model(IMAGES).shape == (len(IMAGES), 10)


def test_padding_does_not_change_the_transformer_classifier():
    model = models.transformer_classifier(50, 12, embedding_dim=8, num_heads=2)
    sentences = np.array([[5, 9, 2, 0, 0], [1, 2, 3, 4, 7]], dtype="int32")
    longer = np.pad(sentences, ((0, 0), (0, 7)))  # 7 more padding positions
    np.testing.assert_allclose(model(sentences), model(longer), atol=1e-6)
    np.testing.assert_allclose(
        model(sentences[:1, :3]), model(sentences[:1]), atol=1e-6
    )
    other = sentences.copy()
    other[0, 1] = 11  # a real token does change it
    assert np.abs(model(other)[0] - model(sentences)[0]).max() > 1e-6


def test_a_causal_model_does_not_look_ahead():
    model = models.gpt(50, 16, embedding_dim=8, num_heads=2, num_layers=2)
    tokens = np.random.default_rng(0).integers(0, 50, size=(2, 16)).astype("int32")
    for t in (0, 7, 14):
        changed = tokens.copy()
        changed[:, t + 1 :] = (changed[:, t + 1 :] + 1) % 50  # every input after t
        before, after = model(tokens).numpy(), model(changed).numpy()
        np.testing.assert_allclose(before[:, : t + 1], after[:, : t + 1], atol=1e-6)
        assert np.abs(before[:, t + 1 :] - after[:, t + 1 :]).max() > 1e-6


def test_transformer_depth_and_heads():
    def attention_layers(model):
        return [
            layer
            for layer in model.layers
            if isinstance(layer, keras.layers.MultiHeadAttention)
        ]

    gpt = models.gpt(20, 8, embedding_dim=16, num_heads=4, num_layers=3)
    assert len(attention_layers(gpt)) == 3
    assert {layer.num_heads for layer in attention_layers(gpt)} == {4}
    assert {layer.key_dim for layer in attention_layers(gpt)} == {4}
    classifier = models.transformer_classifier(20, 8, embedding_dim=16, num_layers=2)
    assert len(attention_layers(classifier)) == 2
