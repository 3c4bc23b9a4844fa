"""Attributions: which parts of an input made a model give its answer.

Each method takes a batch `x` (a leading batch axis, as in `model.predict`)
and explains one *target score* per example: the model's output for the target
class, as the model outputs it (a logit if its last layer has no activation, a
probability after a softmax or sigmoid). Prefer logits: a confident
probability has a gradient near zero, whatever the input. `target=None`
explains the predicted class (the largest output), an int one class for every
example, a sequence one class per example; a single output unit is class 0.

- `saliency`: the gradient of the score with respect to the input (Simonyan
  et al., 2014), or its mean over noisy copies (SmoothGrad, Smilkov et al.,
  2017).
- `integrated_gradients`: the gradient averaged along the straight path from
  a baseline, times the difference (Sundararajan et al., 2017).
- `grad_cam`: a convolutional layer's feature maps weighted by their mean
  gradient (Selvaraju et al., 2017).
- `occlusion`: the drop in the score when a patch is hidden (Zeiler and
  Fergus, 2014).

Inputs are cast to float32 (uint8 images work) and layers such as `Rescaling`
are differentiated through: maps refer to the input the model receives.
"""

import keras
import numpy as np
import tensorflow as tf

__all__ = ["grad_cam", "integrated_gradients", "occlusion", "saliency"]

_ELEMENTS_PER_CALL = 2**19  # input numbers per forward pass (2 MB of float32)


def saliency(model, x, target=None, smoothgrad=None, noise=0.15, seed=None):
    """Returns the gradient of the target score with respect to the input.

    For a linear model it is the weight vector of the target class. A
    gradient is noisy from pixel to pixel; SmoothGrad averages it over
    `smoothgrad` copies of `x` with Gaussian noise added.

    >>> smooth = saliency(model, images[:8], smoothgrad=25)  # doctest: +SKIP

    Args:
        model: a Keras model.
        x: a batch of inputs.
        target: the class to explain, see the module docstring. Defaults to
            `None`, the predicted class.
        smoothgrad: how many noisy copies to average, or `None` for the plain
            gradient. Defaults to `None`.
        noise: the noise's standard deviation, as a fraction of each
            example's range (max - min), as in the SmoothGrad paper.
            Defaults to `0.15`.
        seed: seed of the noise. Defaults to `None`: Keras's global seed,
            set by `keras.utils.set_random_seed` (or `dlkit.setup`).

    Returns:
        A float32 NumPy array shaped like `x`, signed.
    """
    x = tf.cast(x, "float32")
    target = _target(model, x, target)
    if smoothgrad is None:
        return _gradients(model, x, target).numpy()
    _check_positive("smoothgrad", smoothgrad)
    axes = tuple(range(1, x.shape.rank))
    spread = tf.reduce_max(x, axes, keepdims=True) - tf.reduce_min(x, axes, True)
    seeds = keras.random.SeedGenerator(seed)

    def noisy(_):
        return x + noise * spread * keras.random.normal(x.shape, seed=seeds)

    weights = np.full(smoothgrad, 1 / smoothgrad)
    return _summed_gradients(model, x, target, noisy, weights).numpy()


def integrated_gradients(model, x, baseline=None, target=None, steps=64):
    """Returns integrated-gradients attributions and their completeness gap.

    Feature i gets (x_i - x'_i) times the mean of dF/dx_i along the straight
    path from the baseline x' (an input that means "nothing") to x, by the
    trapezoid rule on `steps` intervals. The attributions add up to
    F(x) - F(x') (*completeness*); the second return value says how far
    their sum is from it. If that gap is not small against F(x) - F(x'),
    raise `steps`.

    >>> attributions, gap = integrated_gradients(model, images[:8])  # doctest: +SKIP

    Args:
        model: a Keras model.
        x: a batch of inputs.
        baseline: the reference input: a scalar, one example or a batch
            (broadcast against `x`). Defaults to `None`, zeros.
        target: the class to explain, see the module docstring. It is chosen
            on `x` and kept along the path. Defaults to `None`, the predicted
            class.
        steps: intervals of the trapezoid rule (`steps + 1` gradients).
            Defaults to `64`.

    Returns:
        `(attributions, gap)`: a float32 NumPy array shaped like `x`, and one
        number per example, `sum(attributions) - (F(x) - F(baseline))`.
    """
    _check_positive("steps", steps)
    x = tf.cast(x, "float32")
    baseline = tf.zeros_like(x) if baseline is None else tf.cast(baseline, "float32")
    baseline = tf.broadcast_to(baseline, x.shape)
    target = _target(model, x, target)
    alphas = np.linspace(0.0, 1.0, steps + 1)
    weights = np.full(steps + 1, 1 / steps)
    weights[[0, -1]] /= 2  # the trapezoid rule

    def path(k):
        return baseline + alphas[k] * (x - baseline)

    attributions = (x - baseline) * _summed_gradients(model, x, target, path, weights)
    change = _score(model(x, training=False), target) - _score(
        model(baseline, training=False), target
    )
    summed = tf.reduce_sum(tf.reshape(attributions, (len(x), -1)), axis=1)
    return attributions.numpy(), (summed - change).numpy()


def grad_cam(model, x, layer=None, target=None):
    """Returns Grad-CAM heat maps: where a convolutional layer saw the class.

    Each feature map A_k of the layer is weighted by the mean gradient of the
    target score over its positions, a_k; the map is ReLU(sum_k a_k A_k),
    resized bilinearly to the input's height and width and divided by its
    maximum (an all-zero map stays zero). It is only as sharp as the layer,
    e.g. 5x5 cells for a 28x28 digit after two 2x2 poolings.

    >>> heat = grad_cam(model, images[:8])  # doctest: +SKIP

    Args:
        model: a Keras model with a `Conv2D` layer, built on `keras.Input`
            (functional or `Sequential`).
        x: a batch of images, `(batch, height, width, channels)`.
        layer: the convolutional layer (a layer or its name). Defaults to
            `None`, the last `Conv2D` of the model.
        target: the class to explain, see the module docstring. Defaults to
            `None`, the predicted class.

    Returns:
        A float32 NumPy array of shape `(batch, height, width)` in [0, 1].

    Raises:
        ValueError: if the model has no `Conv2D` layer and `layer` is `None`.
    """
    layer = _convolution(model, layer)
    x = tf.cast(x, "float32")
    target = _target(model, x, target)
    probe = keras.Model(model.inputs[0], [layer.output, model.outputs[0]])
    with tf.GradientTape() as tape:
        maps, outputs = probe(x, training=False)
        score = _score(outputs, target)
    weights = tf.reduce_mean(tape.gradient(score, maps), axis=(1, 2), keepdims=True)
    heat = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1, keepdims=True))
    heat = tf.image.resize(heat, x.shape[1:3])[..., 0]
    return (heat / tf.maximum(tf.reduce_max(heat, (1, 2), True), 1e-12)).numpy()


def occlusion(model, x, patch=4, stride=None, target=None, baseline=0.0):
    """Returns occlusion maps: the drop in the target score when a patch is hidden.

    A `patch` slides over the image with `stride`; at each position it is set
    to `baseline` and the model scores the occluded copy. Each pixel gets the
    mean drop of the patches that cover it: positive where hiding the pixels
    lowers the score, zero where the model does not look. No gradients: it
    works on any model, at one forward pass per position.

    >>> drops = occlusion(model, images[:8], patch=4)  # doctest: +SKIP

    Args:
        model: a Keras model.
        x: a batch of images, `(batch, height, width[, channels])`.
        patch: the patch's size: an int or `(height, width)`. Defaults to `4`.
        stride: the step between patches, an int or a pair. Defaults to
            `None`, half the patch (at least 1).
        target: the class to explain, see the module docstring. Defaults to
            `None`, the predicted class.
        baseline: the value that replaces a hidden patch. Defaults to `0.0`.

    Returns:
        A float32 NumPy array of shape `(batch, height, width)`.
    """
    x = np.asarray(x, dtype="float32")
    patch = _pair("patch", patch)
    half = tuple(max(1, size // 2) for size in patch)
    stride = half if stride is None else _pair("stride", stride)
    target = _target(model, x, target)
    reference = _score(model(x, training=False), target).numpy()
    rows, cols = (_starts(x.shape[i], patch[i - 1], stride[i - 1]) for i in (1, 2))
    positions = [(row, col) for row in rows for col in cols]
    drops, covered = np.zeros(x.shape[:3], "float32"), np.zeros(x.shape[1:3])
    chunk = max(1, _ELEMENTS_PER_CALL // x.size)
    for first in range(0, len(positions), chunk):
        some = positions[first : first + chunk]
        copies = np.repeat(x[None], len(some), axis=0)
        for copy, (row, col) in zip(copies, some, strict=True):
            copy[:, row : row + patch[0], col : col + patch[1]] = baseline
        outputs = model(copies.reshape(-1, *x.shape[1:]), training=False)
        scores = _score(outputs, tf.tile(target, [len(some)])).numpy()
        drops_now = reference - scores.reshape(len(some), -1)
        for drop, (row, col) in zip(drops_now, some, strict=True):
            drops[:, row : row + patch[0], col : col + patch[1]] += drop[:, None, None]
            covered[row : row + patch[0], col : col + patch[1]] += 1
    return drops / covered


def _summed_gradients(model, x, target, points, weights):
    """Sum over k of `weights[k]` times the gradient at `points(k)`, batched."""
    per_call, total = max(1, _ELEMENTS_PER_CALL // x.shape.num_elements()), 0.0
    for first in range(0, len(weights), per_call):
        block = range(first, min(first + per_call, len(weights)))
        stacked = tf.concat([points(k) for k in block], axis=0)
        gradients = _gradients(model, stacked, tf.tile(target, [len(block)]))
        gradients = tf.reshape(gradients, (len(block), *x.shape))
        total += tf.tensordot(
            weights[first : block.stop].astype("float32"), gradients, 1
        )
    return total


def _gradients(model, x, target):
    """The gradient of each example's target score with respect to `x`."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = _score(model(x, training=False), target)
    return tape.gradient(score, x)


def _score(outputs, target):
    """Each example's output for its target class: shape `(batch,)`."""
    outputs = tf.reshape(tf.cast(outputs, "float32"), (tf.shape(outputs)[0], -1))
    return tf.gather(outputs, target, axis=1, batch_dims=1)


def _target(model, x, target):
    """The class index to explain for each example, as an int32 tensor."""
    outputs = model(x, training=False)
    classes = int(np.prod(outputs.shape[1:]))
    if target is None:
        return tf.argmax(tf.reshape(outputs, (len(x), classes)), 1, "int32")
    indices = np.asarray(target)
    if (
        indices.dtype.kind not in "iu"
        or indices.ndim > 1
        or indices.size not in (1, len(x))
        or not ((0 <= indices) & (indices < classes)).all()
    ):
        raise ValueError(
            f"Invalid value for argument `target`. Received: target={target!r}. "
            f"Expected None (the predicted class), a class index in [0, {classes}) "
            f"or one such index per example ({len(x)})."
        )
    return tf.constant(np.broadcast_to(indices, (len(x),)), "int32")


def _convolution(model, layer):
    if layer is not None:  # Keras's error names an unknown layer
        return model.get_layer(layer) if isinstance(layer, str) else layer
    convolutions = [lay for lay in model.layers if isinstance(lay, keras.layers.Conv2D)]
    if not convolutions:
        kinds = ", ".join(type(lay).__name__ for lay in model.layers)
        raise ValueError(
            f"Invalid value for argument `model`: Grad-CAM weighs the feature "
            f"maps of a convolutional layer, and model {model.name!r} has none. "
            f"Received: a model with layers [{kinds}]. Expected a model with a "
            "`Conv2D` layer, or `layer=` naming one. For a model without "
            "convolutions, use `saliency`, `integrated_gradients` or `occlusion`."
        )
    return convolutions[-1]


def _starts(size, patch, stride):
    """Patch positions along one axis, the last one flush with the edge."""
    starts = list(range(0, max(size - patch, 0) + 1, stride))
    return starts if starts[-1] + patch >= size else [*starts, size - patch]


def _pair(name, value):
    pair = np.ravel(value).tolist()
    pair = pair * 2 if len(pair) == 1 else pair
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
        raise ValueError(
            f"Invalid value for argument `{name}`. Received: {name}={value!r}. "
            "Expected a positive int or a pair of them, e.g. 4 or (4, 4)."
        )
    return tuple(_check_positive(name, v) for v in pair)


def _check_positive(name, value):
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(
            f"Invalid value for argument `{name}`. Received: {name}={value!r}. "
            "Expected a positive integer."
        )
    return int(value)
