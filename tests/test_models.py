"""Tests for dlkit.models: shapes, output dtypes under mixed precision, one
training step each, hyperparameters that change the architecture, errors."""

import ast
import doctest
import inspect
import pathlib

import keras
import numpy as np
import pytest

from dlkit import models
from dlkit.training import _dtype_policy  # the trainer restores the policy the same way

IMAGES = np.random.default_rng(0).integers(0, 255, size=(4, 28, 28)).astype("uint8")
TOKENS = np.array([[5, 9, 2, 0, 0], [1, 2, 3, 4, 7]], dtype="int32")


# (builder, inputs, targets, loss, expected output shape)
CASES = {
    "logistic_regression": (
        lambda: models.logistic_regression(input_shape=(30,), l2=1e-3),
        np.ones((4, 30), "float32"),
        np.array([0, 1, 0, 1]),
        "binary_crossentropy",
        (4, 1),
    ),
    "softmax_regression": (
        lambda: models.softmax_regression((28, 28), 10, rescale=1 / 255),
        IMAGES,
        np.arange(4),
        "sparse_categorical_crossentropy",
        (4, 10),
    ),
    "mlp": (
        lambda: models.mlp((28, 28), 10, depth=2, width=16, dropout=0.2, l2=1e-4),
        IMAGES,
        np.arange(4),
        "sparse_categorical_crossentropy",
        (4, 10),
    ),
    "cnn": (
        lambda: models.cnn((28, 28), 10, filters=(4, 8), rescale=1 / 255),
        IMAGES,
        np.arange(4),
        "sparse_categorical_crossentropy",
        (4, 10),
    ),
    "resnet": (
        lambda: models.resnet((28, 28, 1), 10, filters=(4, 8), blocks_per_stage=2),
        IMAGES[..., None].astype("float32"),
        np.arange(4),
        "sparse_categorical_crossentropy",
        (4, 10),
    ),
    "text_classifier": (
        lambda: models.text_classifier(50, embedding_dim=8, units=8, rnn="gru"),
        TOKENS,
        np.array([0, 1]),
        "binary_crossentropy",
        (2, 1),
    ),
    "bidirectional_lstm": (
        lambda: models.text_classifier(
            50, num_classes=3, embedding_dim=8, units=8, bidirectional=True
        ),
        TOKENS,
        np.array([0, 2]),
        "sparse_categorical_crossentropy",
        (2, 3),
    ),
    "bag_of_words_classifier": (
        lambda: models.bag_of_words_classifier(50, hidden_units=8),
        TOKENS,
        np.array([0, 1]),
        "binary_crossentropy",
        (2, 1),
    ),
    "char_language_model": (
        lambda: models.char_language_model(50, embedding_dim=8, units=16, num_layers=2),
        TOKENS,
        np.roll(TOKENS, -1, axis=1),
        "sparse_categorical_crossentropy",
        (2, 5, 50),
    ),
    "sequence_regressor": (
        lambda: models.sequence_regressor(window=12, features=2, horizon=3, units=8),
        np.ones((4, 12, 2), "float32"),
        np.zeros((4, 3), "float32"),
        "mse",
        (4, 3),
    ),
    "dcgan_generator": (
        lambda: models.dcgan_generator(latent_dim=16, filters=8),
        np.ones((4, 16), "float32"),
        np.zeros((4, 28, 28, 1), "float32"),
        "mse",
        (4, 28, 28, 1),
    ),
    "dcgan_discriminator": (
        lambda: models.dcgan_discriminator(filters=8),
        np.zeros((4, 28, 28, 1), "float32"),
        np.array([0, 1, 0, 1]),
        "binary_crossentropy",
        (4, 1),
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_builder_returns_an_uncompiled_model_that_trains(name):
    build, x, y, loss, shape = CASES[name]
    model = build()
    assert isinstance(model, keras.Model)
    assert not model.compiled
    assert model.predict(x, verbose=0).shape == shape
    model.compile(optimizer="adam", loss=loss)
    assert np.isfinite(model.train_on_batch(x, y))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("name", CASES)
def test_outputs_stay_float32_under_mixed_precision(name, policy):
    build = CASES[name][0]
    with _dtype_policy(policy):
        model = build()
    assert model.output.dtype == "float32"
    assert model.layers[-1].compute_dtype == "float32"
    first = model.layers[1]  # after the InputLayer: computes in half precision
    assert first.compute_dtype == policy.removeprefix("mixed_")


def test_builders_take_no_distribution_or_precision_arguments():
    for name in models.__all__:
        parameters = inspect.signature(getattr(models, name)).parameters
        assert not {"strategy", "precision", "dtype", "policy"} & set(parameters)


def test_probabilities_and_image_ranges():
    generator = models.dcgan_generator(latent_dim=8, filters=4)
    images = generator.predict(np.random.normal(size=(3, 8)) * 10, verbose=0)
    assert images.min() >= -1 and images.max() <= 1  # tanh
    discriminator = models.dcgan_discriminator(filters=4)
    probabilities = discriminator.predict(images, verbose=0)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    classifier = models.cnn((28, 28), 10, filters=(4,))
    np.testing.assert_allclose(
        classifier.predict(IMAGES, verbose=0).sum(axis=1), 1, rtol=1e-5
    )


def test_hyperparameters_shape_the_architecture():
    def count(model, layer_class):
        return sum(isinstance(layer, layer_class) for layer in model.layers)

    assert count(models.mlp((4,), 2, depth=3, width=5), keras.layers.Dense) == 4
    assert count(models.mlp((4,), 2, depth=0), keras.layers.Dense) == 1
    assert count(models.mlp((4,), 2, dropout=0.5), keras.layers.Dropout) == 2
    assert count(models.cnn((28, 28), 2, filters=(2, 2, 2)), keras.layers.Conv2D) == 3
    assert count(models.resnet((8, 8), 2), keras.layers.BatchNormalization) > 0
    text = models.text_classifier(10, rnn="gru", bidirectional=True)
    assert count(text, keras.layers.Bidirectional) == 1
    assert isinstance(text.layers[2].forward_layer, keras.layers.GRU)
    assert count(models.text_classifier(10), keras.layers.LSTM) == 1
    linear_bag = models.bag_of_words_classifier(10)
    assert count(linear_bag, keras.layers.Dense) == 1
    regularised = models.softmax_regression((4,), 3, l2=0.1)
    assert regularised.layers[-1].kernel_regularizer is not None
    assert models.logistic_regression((4,)).output.shape == (None, 1)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: models.mlp((4,), 0), "num_classes=0"),
        (lambda: models.mlp((4,), 2, depth=-1), "depth=-1"),
        (lambda: models.mlp((4,), 2, dropout=1.0), r"dropout=1.0. Expected a number"),
        (lambda: models.mlp((4,), 2, l2=-1), "l2=-1"),
        (lambda: models.cnn((4,), 2), "input_shape=(4,)"),
        (lambda: models.cnn((8, 8), 2, filters=()), "filters=()"),
        (lambda: models.text_classifier(10, rnn="transformer"), "rnn='transformer'"),
        (lambda: models.sequence_regressor(window=0), "window=0"),
        (lambda: models.dcgan_generator(image_shape=(30, 30, 1)), "multiples of 4"),
    ],
)
def test_invalid_hyperparameters_raise_keras_style_errors(build, message):
    with pytest.raises(ValueError, match="Invalid value for argument") as error:
        build()
    assert message in str(error.value)


def test_docstring_examples():
    results = doctest.testmod(models, optionflags=doctest.ELLIPSIS)
    assert results.failed == 0 and results.attempted > 10


def test_models_import_nothing_from_higher_modules():
    imported = _imports(models.__file__)
    assert imported <= {"keras"}, imported


def _imports(path):
    tree = ast.parse(pathlib.Path(path).read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module.split(".")[0])
    return names
