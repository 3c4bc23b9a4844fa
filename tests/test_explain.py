"""dlkit.explain: each method checked against the property that defines it."""

import keras
import numpy as np
import pytest
from keras import layers

from dlkit import explain


def _linear(features=5, classes=3, scale=None):
    model = keras.Sequential(
        [keras.Input((features,))]
        + ([layers.Rescaling(scale)] if scale else [])
        + [layers.Dense(classes)]
    )
    kernel = np.random.default_rng(0).normal(size=(features, classes))
    model.layers[-1].set_weights([kernel, np.zeros(classes)])
    return model, kernel


def _convnet(classes=2):
    inputs = keras.Input((16, 16, 1))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(classes)(x))


def _sees_top_left(height=16, width=24):
    """A CNN that sees only the top-left quarter of its input.

    Its convolutions do not overlap (2x2 with stride 2, then 1x1), so no
    receptive field crosses the quarter's border; the classifier's weights are
    positive, so Grad-CAM's map is not all zero.
    """
    inputs = keras.Input((height, width, 1))
    x = layers.Cropping2D(((0, height // 2), (0, width // 2)))(inputs)
    x = layers.ZeroPadding2D(((0, height // 2), (0, width // 2)))(x)
    x = layers.Conv2D(8, 2, strides=2, activation="relu")(x)
    x = layers.Conv2D(8, 1, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(2, kernel_initializer="ones")(x))


@pytest.fixture
def images():
    return np.random.default_rng(1).uniform(size=(3, 16, 16, 1)).astype("float32")


def test_saliency_of_a_linear_model_is_its_weight_vector():
    model, kernel = _linear()
    x = np.random.default_rng(2).normal(size=(4, 5)).astype("float32")
    maps = explain.saliency(model, x, target=1)
    assert maps.shape == x.shape
    np.testing.assert_allclose(maps, np.tile(kernel[:, 1], (4, 1)), rtol=1e-5)
    smooth = explain.saliency(model, x, target=[0, 1, 2, 0], smoothgrad=5)
    np.testing.assert_allclose(smooth, kernel[:, [0, 1, 2, 0]].T, rtol=1e-5)


def test_saliency_goes_through_a_rescaling_layer_on_uint8_input():
    model, kernel = _linear(scale=1 / 255)
    x = np.random.default_rng(3).integers(0, 256, size=(2, 5), dtype=np.uint8)
    predicted = np.argmax(model.predict(x, verbose=0), axis=1)
    maps = explain.saliency(model, x)  # target=None: the predicted class
    np.testing.assert_allclose(maps, kernel[:, predicted].T / 255, rtol=1e-5)


def test_smoothgrad_is_seeded_and_differs_from_the_plain_gradient(images):
    model = _convnet()
    first = explain.saliency(model, images, smoothgrad=4, seed=7)
    again = explain.saliency(model, images, smoothgrad=4, seed=7)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, explain.saliency(model, images))


def test_integrated_gradients_completeness_gap_below_one_percent():
    keras.utils.set_random_seed(0)
    smooth = keras.Sequential(
        [
            keras.Input((10,)),
            layers.Dense(32, activation="tanh"),
            layers.Dense(16, activation="softplus"),
            layers.Dense(3),
        ]
    )
    x = np.random.default_rng(4).normal(size=(6, 10)).astype("float32") * 2
    attributions, gap = explain.integrated_gradients(smooth, x, target=2)
    assert attributions.shape == x.shape and gap.shape == (6,)
    outputs = smooth.predict(x, verbose=0)[:, 2]
    change = outputs - smooth.predict(np.zeros_like(x), verbose=0)[:, 2]
    np.testing.assert_allclose(attributions.sum(axis=1) - change, gap, atol=1e-5)
    assert np.all(np.abs(gap) < 0.01 * np.abs(change)), (gap, change)


def test_integrated_gradients_of_a_linear_model_are_weight_times_difference():
    model, kernel = _linear()
    x = np.random.default_rng(5).normal(size=(2, 5)).astype("float32")
    baseline = np.full(5, 0.5, dtype="float32")  # one example, broadcast
    attributions, gap = explain.integrated_gradients(model, x, baseline, target=0)
    np.testing.assert_allclose(attributions, (x - baseline) * kernel[:, 0], atol=1e-5)
    np.testing.assert_allclose(gap, 0, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grad_cam_heat_stays_in_the_only_region_the_model_sees(seed):
    keras.utils.set_random_seed(seed)
    images = np.random.default_rng(seed).uniform(size=(3, 16, 24, 1))
    heat = explain.grad_cam(_sees_top_left(), images)
    assert heat.shape == (3, 16, 24)
    assert heat.min() >= 0 and np.allclose(heat.max(axis=(1, 2)), 1)
    inside = heat[:, :8, :12].sum(axis=(1, 2)) / heat.sum(axis=(1, 2))
    assert np.all(inside >= 0.9), inside


def test_grad_cam_without_a_convolution_says_what_to_do():
    model, _ = _linear()
    with pytest.raises(ValueError, match=r"Conv2D.*layer=.*saliency") as error:
        explain.grad_cam(model, np.zeros((1, 5)))
    assert "Dense" in str(error.value)  # what it received


def test_occlusion_of_a_region_the_model_ignores_changes_nothing():
    keras.utils.set_random_seed(0)
    images = np.random.default_rng(6).uniform(size=(3, 16, 24, 1))
    drops = explain.occlusion(_sees_top_left(), images, patch=4)  # stride 2
    assert drops.shape == (3, 16, 24)
    outside = np.ones((16, 24), bool)
    outside[:10, :14] = False  # the quarter and the patches that overlap it
    assert np.all(drops[:, outside] == 0)
    assert np.all(np.abs(drops[:, :8, :12]).max(axis=(1, 2)) > 0)


def test_occlusion_averages_overlapping_patches():
    model, kernel = _linear(features=6, classes=1)
    model = keras.Sequential([keras.Input((2, 3)), layers.Flatten(), model])
    x = np.ones((1, 2, 3), dtype="float32")
    drops = explain.occlusion(model, x, patch=(2, 2), stride=1)
    weights = kernel[:, 0].reshape(2, 3)
    left, right = weights[:, :2].sum(), weights[:, 1:].sum()
    expected = [[left, (left + right) / 2, right]] * 2
    np.testing.assert_allclose(drops[0], expected, rtol=1e-5)


@pytest.mark.parametrize(
    "target", [5, -1, 1.5, [0, 1], "cat", [[0, 1, 0]]], ids=lambda t: repr(t)
)
def test_an_invalid_target_is_refused(images, target):
    with pytest.raises(ValueError, match="Invalid value for argument `target`"):
        explain.saliency(_convnet(), images, target=target)


@pytest.mark.parametrize("method", ["saliency", "integrated_gradients", "grad_cam"])
def test_methods_agree_on_one_example_and_a_batch(images, method):
    keras.utils.set_random_seed(0)
    model = _convnet()
    function = getattr(explain, method)
    batch = function(model, images, target=1)
    single = function(model, images[1:2], target=1)
    batch, single = (r[0] if isinstance(r, tuple) else r for r in (batch, single))
    np.testing.assert_allclose(batch[1:2], single, rtol=1e-4, atol=1e-6)
