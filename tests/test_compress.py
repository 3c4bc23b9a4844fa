"""Distillation and pruning: the loss is the written formula, real tiny training
reaches the scheduled sparsity, and pruned weights stay zero."""

import keras
import numpy as np
import pytest
from scipy import special

from dlkit import compress


def _logit_model(width, seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(width, "relu"), keras.layers.Dense(2)]
    )


def _reference_loss(labels, student, teacher, temperature, alpha):
    hard = -np.log(special.softmax(student, axis=1)[np.arange(len(labels)), labels])
    p = special.softmax(teacher / temperature, axis=1)
    q = special.softmax(student / temperature, axis=1)
    soft = np.sum(p * np.log(p / q), axis=1)
    return np.mean(alpha * hard + (1 - alpha) * temperature**2 * soft)


@pytest.mark.parametrize("temperature, alpha", [(1.0, 0.5), (4.0, 0.1), (8.0, 0.0)])
def test_distillation_loss_is_the_written_formula(temperature, alpha):
    rng = np.random.default_rng(0)
    student, teacher = rng.normal(size=(2, 16, 5)).astype("float32") * 3
    labels = rng.integers(0, 5, size=16)
    loss = compress.distillation_loss(labels, student, teacher, temperature, alpha)
    expected = _reference_loss(labels, student, teacher, temperature, alpha)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_the_distiller_trains_the_student_on_the_written_loss(tiny_data):
    x, y = tiny_data(256)
    teacher = _logit_model(32, seed=1)
    teacher.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    teacher.fit(x, y, epochs=20, verbose=0)
    frozen = [w.copy() for w in teacher.get_weights()]
    distiller = compress.Distiller(_logit_model(4, seed=2), teacher, 2.0, alpha=0.3)
    distiller.compile(keras.optimizers.Adam(0.02), metrics=["accuracy"])
    distiller.fit(x, y, epochs=15, batch_size=32, verbose=0)
    loss, accuracy = distiller.evaluate(x, y, batch_size=len(x), verbose=0)
    expected = _reference_loss(
        y,
        distiller.student.predict(x, verbose=0),
        teacher.predict(x, verbose=0),
        2,
        0.3,
    )
    np.testing.assert_allclose(loss, expected, rtol=1e-4)
    assert accuracy >= 0.8, accuracy
    for before, after in zip(frozen, teacher.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)


def test_pruning_follows_its_schedule_and_pruned_weights_stay_zero(tiny_data):
    x, y = tiny_data(96)
    model = _logit_model(16, seed=3)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruning = compress.MagnitudePruning(0.75, begin_step=2, end_step=20, frequency=3)
    assert pruning.sparsity_at(2) == 0 and pruning.sparsity_at(20) == 0.75
    halfway = pruning.sparsity_at(11)
    assert 0.75 * 0.5 < halfway < 0.75, halfway  # fast first, slow at the end
    model.fit(x, y, batch_size=16, epochs=4, callbacks=[pruning], verbose=0)  # 24 steps
    kernels = [layer.kernel.numpy() for layer in model.layers]
    for kernel in kernels:
        assert abs(np.mean(kernel == 0) - 0.75) <= 1 / kernel.size
    assert abs(compress.sparsity(model) - 0.75) < 0.01
    model.fit(x, y, batch_size=16, epochs=3, callbacks=[pruning], verbose=0)
    for before, layer in zip(kernels, model.layers, strict=True):
        after = layer.kernel.numpy()
        assert np.all(after[before == 0] == 0)  # masked weights stay zero
        assert not np.allclose(after[before != 0], before[before != 0])  # trained


def test_pruning_finds_kernels_in_nested_models_and_only_the_named(tiny_data):
    x, y = tiny_data(32)
    inner = _logit_model(8, seed=4)
    outer = keras.Sequential([keras.Input((6,)), inner, keras.layers.Dense(2)])
    assert len(compress._kernels(outer)) == 3
    assert compress.sparsity(outer) == 0.0
    named = [inner.layers[0].name]
    outer.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    pruning = compress.MagnitudePruning(0.5, end_step=1, frequency=1, layers=named)
    outer.fit(x, y, batch_size=32, epochs=2, callbacks=[pruning], verbose=0)
    assert compress.sparsity(outer, layers=named) == 0.5
    assert np.all(outer.layers[-1].kernel.numpy() != 0)  # not named: not pruned


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: compress.MagnitudePruning(1.0), "target_sparsity=1.0"),
        (lambda: compress.MagnitudePruning(0.5, 10, 10), "begin_step=10"),
        (lambda: compress.MagnitudePruning(0.5, frequency=0), "frequency=0"),
        (lambda: compress.Distiller(None, _logit_model(2, 0), 0), "temperature=0"),
        (lambda: compress.Distiller(None, _logit_model(2, 0), 2, 1.5), "alpha=1.5"),
    ],
)
def test_invalid_arguments_are_explained(make, message):
    with pytest.raises(ValueError, match="Invalid value for argument") as error:
        make()
    assert message in str(error.value)
