"""Checks for the notebooks' exercises.

Each check takes what you wrote (a function or a model), tries it on small
inputs whose answers are known, prints feedback and returns `True` when your
answer is right. A wrong or missing answer never raises: the check prints what
it received, what it expected and a hint, and returns `False`.

Example:

>>> import numpy as np
>>> check_sigmoid(lambda z: 1 / (1 + np.exp(-z)))
Correct! Your sigmoid matches 1 / (1 + exp(-z)).
True
"""

import math

import numpy as np

from dlkit._exercises_05_06 import (  # noqa: F401  notebooks 05-06
    check_apply_temperature,
    check_class_evenness,
    check_discriminator_loss,
    check_generator_loss,
    check_lstm_step,
    check_make_windows,
    check_recurrent_parameter_count,
)
from dlkit._exercises_07_08 import (  # noqa: F401  notebooks 07-08
    check_best_trial,
    check_global_batch,
    check_log_uniform,
    check_loss_scaling,
    check_search_space,
    check_tf_config,
    small_convnet,
)
from dlkit._feedback import (  # noqa: F401
    _RETURN_HINT,
    _as_array,
    _call,
    _close,
    _correct,
    _show,
    _sigmoid,
    _wrong,
)


def _log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


# --------------------------------------------------------------------------
# 01 · Logistic regression
# --------------------------------------------------------------------------


def check_sigmoid(sigmoid):
    """Checks a sigmoid function: sigma(z) = 1 / (1 + exp(-z)), element-wise.

    Args:
        sigmoid: a function taking a NumPy array `z` and returning an array
            of the same shape.

    Returns:
        `True` if the function is right, `False` otherwise (with a message).
    """
    z = np.array([-20.0, -2.0, 0.0, 0.5, 2.0, 20.0])
    expected = _sigmoid(z)
    result, problem = _call(sigmoid, z)
    if problem:
        return _wrong(problem, f"sigmoid(z) = {_show(expected)}", _RETURN_HINT)
    result = _as_array(result)
    if _close(result, expected):
        return _correct("Your sigmoid matches 1 / (1 + exp(-z)).")
    hint = "sigma(z) = 1 / (1 + exp(-z)): sigma(0) = 0.5 and sigma(z) -> 1 as z grows."
    if result is not None and result.shape != z.shape:
        hint = "Work element-wise with np.exp or tf.exp (math.exp takes one number)."
    elif _close(result, _sigmoid(-z)):
        hint = "Mind the sign: it is exp(-z), so that large z gives values near 1."
    return _wrong(f"sigmoid(z) = {_show(result)}", f"{_show(expected)}", hint)


def check_binary_crossentropy(binary_crossentropy):
    """Checks a binary cross-entropy function (the mean over examples).

    Args:
        binary_crossentropy: a function `(y_true, y_prob)` of two NumPy
            arrays (labels 0/1 and predicted probabilities of class 1)
            returning the mean loss, one number.

    Returns:
        `True` if the function is right, `False` otherwise (with a message).
    """
    y_true = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    y_prob = np.array([0.9, 0.2, 0.6, 0.99, 0.4])
    terms = -(y_true * np.log(y_prob) + (1 - y_true) * np.log(1 - y_prob))
    expected = terms.mean()
    result, problem = _call(binary_crossentropy, y_true, y_prob)
    if problem:
        return _wrong(problem, f"one number, {_show(expected)}", _RETURN_HINT)
    result = _as_array(result)
    if _close(result, expected):
        return _correct("Your binary cross-entropy matches the formula.")
    hint = "L = -mean(y * log(p) + (1 - y) * log(1 - p))."
    if result is not None and result.shape != ():
        hint = "Reduce the per-example losses to one number with their mean."
    elif _close(result, -expected):
        hint = "Keep the minus sign in front: a loss is positive, log(p) is negative."
    elif _close(result, terms.sum()):
        hint = "Take the mean over the examples, not the sum."
    elif _close(result, -np.mean(y_true * np.log(y_prob))):
        hint = "Add the (1 - y) * log(1 - p) term: it scores the examples of class 0."
    return _wrong(_show(result), _show(expected), hint)


def check_logistic_gradient(gradient):
    """Checks the gradient of L2-regularized logistic regression's loss.

    The loss is `mean(BCE(y, sigmoid(x @ w + b))) + l2 / 2 * sum(w**2)`; its
    gradient is `x.T @ (p - y) / n + l2 * w` for `w` and `mean(p - y)` for `b`.

    Args:
        gradient: a function `(x, y, w, b, l2)` returning the pair
            `(grad_w, grad_b)`.

    Returns:
        `True` if the function is right, `False` otherwise (with a message).
    """
    x = np.array([[1.0, 2.0], [-1.0, 0.5], [0.5, -1.5], [2.0, 1.0]])
    y = np.array([1.0, 0.0, 0.0, 1.0])
    w, b, l2 = np.array([0.3, -0.2]), 0.1, 0.5
    error = _sigmoid(x @ w + b) - y
    expected_w, expected_b = x.T @ error / len(x) + l2 * w, error.mean()
    expected = f"grad_w = {_show(expected_w)}, grad_b = {_show(expected_b)}"
    result, problem = _call(gradient, x, y, w, b, l2)
    if problem:
        return _wrong(problem, expected, _RETURN_HINT + " Return (grad_w, grad_b).")
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        return _wrong(
            f"{type(result).__name__}", expected, "Return a pair: (grad_w, grad_b)."
        )
    grad_w, grad_b = _as_array(result[0]), _as_array(result[1])
    if _close(grad_w, expected_w) and _close(grad_b, expected_b):
        return _correct("Your gradient matches the formula (and GradientTape).")
    hint = "grad_w = x.T @ (p - y) / n + l2 * w and grad_b = mean(p - y)."
    if _close(grad_w, x.T @ error / len(x)):
        hint = "Add l2 * w to grad_w: the gradient of the penalty l2 / 2 * ||w||^2."
    elif _close(grad_w, -x.T @ error / len(x) + l2 * w):
        hint = "Use (p - y), not (y - p): the gradient points uphill."
    elif _close(grad_w, x.T @ error + l2 * w):
        hint = "Divide by the number of examples n: the loss is a mean."
    received = f"grad_w = {_show(grad_w)}, grad_b = {_show(grad_b)}"
    return _wrong(received, expected, hint)


# --------------------------------------------------------------------------
# 02 · Softmax regression
# --------------------------------------------------------------------------


def check_softmax(softmax):
    """Checks a softmax over the last axis that is numerically stable.

    Args:
        softmax: a function taking logits of shape `(batch, classes)` and
            returning probabilities of the same shape.

    Returns:
        `True` if the function is right, `False` otherwise (with a message).
    """
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [2.0, -1.0, 0.5]])
    expected = np.exp(_log_softmax(logits))
    result, problem = _call(softmax, logits)
    if problem:
        return _wrong(problem, _show(expected), _RETURN_HINT)
    result = _as_array(result)
    if not _close(result, expected):
        hint = "softmax(z)_k = exp(z_k) / sum_j exp(z_j), for each row separately."
        if result is not None and result.shape == logits.shape:
            if np.allclose(result.sum(axis=0), 1):
                hint = "Normalize each row (axis=-1, keepdims=True), not each column."
        return _wrong(_show(result), _show(expected), hint)
    large = np.array([[1000.0, 1001.0, 1002.0]])
    result, problem = _call(softmax, large)
    result = None if problem else _as_array(result)
    if not _close(result, np.exp(_log_softmax(large))):
        return _wrong(
            f"softmax([[1000, 1001, 1002]]) = {problem or _show(result)}",
            _show(np.exp(_log_softmax(large))),
            "exp(1000) overflows. Subtract each row's maximum from the logits "
            "first: softmax(z - c) = softmax(z) for any constant c.",
        )
    return _correct("Your softmax is right, and stable for large logits.")


def check_sparse_categorical_crossentropy(crossentropy):
    """Checks a categorical cross-entropy computed from integer labels and logits.

    Args:
        crossentropy: a function `(labels, logits)` taking integer labels of
            shape `(batch,)` and logits of shape `(batch, classes)` and
            returning the mean loss, one number.

    Returns:
        `True` if the function is right, `False` otherwise (with a message).
    """
    labels = np.array([2, 0, 1, 2])
    logits = np.array(
        [[1.0, 2.0, 3.0], [2.0, 0.5, -1.0], [0.2, 0.1, 0.3], [3.0, 0.0, 1.0]]
    )
    picked = _log_softmax(logits)[np.arange(len(labels)), labels]
    expected = -picked.mean()
    result, problem = _call(crossentropy, labels, logits)
    if problem:
        return _wrong(problem, f"one number, {_show(expected)}", _RETURN_HINT)
    result = _as_array(result)
    if _close(result, expected):
        return _correct("Your cross-entropy matches -mean(log softmax(z)[label]).")
    hint = "L = -mean(log(softmax(z)[i, label_i])): the log-probability of each label."
    if result is not None and result.shape != ():
        hint = "Reduce the per-example losses to one number with their mean."
    elif _close(result, -expected):
        hint = "Keep the minus sign: a loss is positive, log-probabilities negative."
    elif _close(result, -picked.sum()):
        hint = "Take the mean over the examples, not the sum."
    elif _close(result, -np.log(logits[np.arange(len(labels)), labels]).mean()):
        hint = "The inputs are logits, not probabilities: apply softmax first."
    return _wrong(_show(result), _show(expected), hint)


# --------------------------------------------------------------------------
# 03 · Multilayer perceptrons
# --------------------------------------------------------------------------


def check_count_parameters(count_parameters):
    """Checks a function that counts the parameters of a dense network.

    Args:
        count_parameters: a function taking the layer sizes, inputs first,
            e.g. `[784, 128, 10]`, and returning the number of weights and
            biases of the `Dense` layers between them.

    Returns:
        `True` if the function is right, `False` otherwise (with a message).
    """
    for sizes in ([784, 128, 10], [30, 16, 8, 1]):
        pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
        expected = sum(fan_in * units + units for fan_in, units in pairs)
        result, problem = _call(count_parameters, list(sizes))
        if problem:
            return _wrong(problem, f"{expected:,} for {sizes}", _RETURN_HINT)
        if np.ndim(result) == 0 and result == expected:
            continue
        hint = (
            "A Dense layer from n inputs to m units holds n * m weights and m biases."
        )
        if result == sum(fan_in * units for fan_in, units in pairs):
            hint = "Count the biases too: one per unit of every layer."
        return _wrong(f"{result!r} for {sizes}", f"{expected:,}", hint)
    return _correct("Your count matches model.count_params() for dense networks.")


def check_cosine_decay(cosine_decay):
    """Checks a cosine learning-rate schedule.

    `lr(step) = initial * 0.5 * (1 + cos(pi * min(step, decay_steps) /
    decay_steps))`, as `keras.optimizers.schedules.CosineDecay` computes it.

    Args:
        cosine_decay: a function `(step, initial_learning_rate, decay_steps)`
            returning the learning rate, one number.

    Returns:
        `True` if the function is right, `False` otherwise (with a message).
    """
    steps = [0, 25, 50, 100, 150]
    expected = [0.1 * 0.5 * (1 + math.cos(math.pi * min(s, 100) / 100)) for s in steps]
    received = []
    for step in steps:
        result, problem = _call(cosine_decay, step, 0.1, 100)
        if problem:
            return _wrong(problem, f"lr(0) = {_show(expected[0])}", _RETURN_HINT)
        received.append(result)
    received = _as_array(received)
    if _close(received, expected):
        return _correct("Your schedule matches keras.optimizers.schedules.CosineDecay.")
    hint = "lr = initial * 0.5 * (1 + cos(pi * min(step, decay_steps) / decay_steps))."
    if received is not None and _close(received[:4], expected[:4]):
        hint = "Hold the rate at 0 after decay_steps: use min(step, decay_steps)."
    elif received is not None and _close(received[:4] / 2, expected[:4]):
        hint = "Multiply by 0.5: the rate must start at the initial learning rate."
    return _wrong(
        f"lr at steps {steps} = {received if received is None else _show(received)}",
        _show(expected),
        hint,
    )


def check_regularized_mlp(model):
    """Checks a regularized MLP classifier for MNIST.

    It must take 28x28 images, output 10 class probabilities, have at least
    two hidden `Dense` layers with an L2 kernel regularizer, and a `Dropout`
    layer.

    Args:
        model: a `keras.Model`.

    Returns:
        `True` if the model is right, `False` otherwise (with a message).
    """
    import keras

    if not isinstance(model, keras.Model):
        return _wrong(
            f"{model!r}", "a keras.Model", "Return keras.Sequential([...]) from build."
        )
    try:
        received = f"output shape {tuple(model(np.zeros((2, 28, 28))).shape)}"
    except Exception as error:  # the learner's model: report, never raise
        received = f"an error on a batch of shape (2, 28, 28): {error}"
    if received != "output shape (2, 10)":
        return _wrong(
            received,
            "output shape (2, 10) for a batch of shape (2, 28, 28)",
            "Start with keras.Input((28, 28)) and Flatten; end with Dense(10).",
        )
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    hidden = dense[:-1]
    if len(hidden) < 2:
        return _wrong(
            f"{len(hidden)} hidden Dense layer(s)",
            "at least 2",
            "Stack two Dense layers with activation='relu' before the output.",
        )
    missing = [layer.name for layer in hidden if layer.kernel_regularizer is None]
    if missing:
        return _wrong(
            f"no kernel_regularizer on {missing}",
            "an L2 penalty on every hidden Dense layer",
            "Pass kernel_regularizer=keras.regularizers.L2(1e-4) to each of them.",
        )
    if not any(isinstance(layer, keras.layers.Dropout) for layer in model.layers):
        return _wrong(
            "no Dropout layer",
            "at least one",
            "Add keras.layers.Dropout(0.3) after a hidden layer.",
        )
    return _correct("Your MLP has L2 penalties and dropout.")


# --------------------------------------------------------------------------
# 04 · Convolutional networks
# --------------------------------------------------------------------------


def check_conv_output_size(conv_output_size):
    """Checks the formula for the output size of a convolution or pooling.

    `"valid"`: `floor((size - kernel_size) / stride) + 1`; `"same"`:
    `ceil(size / stride)`, as Keras computes it.

    Args:
        conv_output_size: a function `(size, kernel_size, stride, padding)`
            returning the output size along one axis, an integer.

    Returns:
        `True` if the function is right, `False` otherwise (with a message).
    """
    cases = [
        (28, 3, 1, "valid"),
        (26, 2, 2, "valid"),
        (13, 3, 1, "valid"),
        (28, 5, 2, "valid"),
        (28, 3, 1, "same"),
        (28, 3, 2, "same"),
        (7, 3, 2, "same"),
    ]
    for size, kernel, stride, padding in cases:
        if padding == "valid":
            expected = (size - kernel) // stride + 1
        else:
            expected = -(-size // stride)
        call = f"conv_output_size({size}, {kernel}, {stride}, {padding!r})"
        result, problem = _call(conv_output_size, size, kernel, stride, padding)
        if problem:
            return _wrong(f"{call} -> {problem}", str(expected), _RETURN_HINT)
        if np.ndim(result) == 0 and result == expected:
            continue
        hint = "valid: (size - kernel_size) // stride + 1; same: ceil(size / stride)."
        if padding == "valid" and result == (size - kernel) // stride:
            hint = "Add 1: the kernel fits at position 0 too."
        elif padding == "valid" and stride > 1 and result == size - kernel + 1:
            hint = "Divide by the stride: the window jumps `stride` pixels at a time."
        elif padding == "same":
            hint = "'same' pads so that only the stride shrinks: ceil(size / stride)."
        return _wrong(f"{call} -> {result!r}", str(expected), hint)
    return _correct("Your formula matches Keras's Conv2D and MaxPooling2D shapes.")


def check_conv2d(conv2d):
    """Checks a 2D convolution, the way deep learning defines it (no kernel flip).

    `out[i, j] = sum(image[i:i + kh, j:j + kw] * kernel)`, with no padding and
    stride 1 (what `keras.layers.Conv2D(padding="valid")` computes).

    Args:
        conv2d: a function `(image, kernel)` of two 2D NumPy arrays returning
            the 2D output.

    Returns:
        `True` if the function is right, `False` otherwise (with a message).
    """
    image = np.arange(20.0).reshape(4, 5) % 7
    kernel = np.array([[1.0, 0.0], [2.0, -1.0]])
    windows = np.lib.stride_tricks.sliding_window_view(image, kernel.shape)
    expected = np.einsum("ijkl,kl->ij", windows, kernel)
    result, problem = _call(conv2d, image, kernel)
    if problem:
        return _wrong(problem, f"an array of shape {expected.shape}", _RETURN_HINT)
    result = _as_array(result)
    if _close(result, expected):
        return _correct("Your convolution matches Conv2D (padding='valid').")
    hint = "out[i, j] = sum(image[i:i + kh, j:j + kw] * kernel)."
    if result is None or result.shape != expected.shape:
        shape = None if result is None else result.shape
        return _wrong(
            f"an output of shape {shape}",
            f"shape {expected.shape} = (H - kh + 1, W - kw + 1)",
            "Slide the kernel over every position where it fits entirely.",
        )
    if _close(result, np.einsum("ijkl,kl->ij", windows, kernel[::-1, ::-1])):
        hint = "Do not flip the kernel: Conv2D computes a cross-correlation."
    return _wrong(_show(result), _show(expected), hint)


def check_max_pool(max_pool):
    """Checks 2x2 max pooling with stride 2 (`keras.layers.MaxPooling2D(2)`).

    Args:
        max_pool: a function taking a 2D NumPy array of even height and
            width and returning the 2D array of the maxima of its 2x2 blocks.

    Returns:
        `True` if the function is right, `False` otherwise (with a message).
    """
    image = (np.arange(24.0).reshape(4, 6) * 7) % 11
    blocks = image.reshape(2, 2, 3, 2).swapaxes(1, 2)
    expected = blocks.max(axis=(2, 3))
    result, problem = _call(max_pool, image)
    if problem:
        return _wrong(problem, f"an array of shape {expected.shape}", _RETURN_HINT)
    result = _as_array(result)
    if _close(result, expected):
        return _correct("Your pooling matches MaxPooling2D(2).")
    hint = "Split the image into 2x2 blocks that do not overlap; keep each maximum."
    if result is not None and result.shape != expected.shape:
        hint = "The output has half the height and half the width: stride 2."
    elif _close(result, blocks.mean(axis=(2, 3))):
        hint = "Take the maximum of each block, not its mean (that is average pooling)."
    return _wrong(_show(result), _show(expected), hint)
