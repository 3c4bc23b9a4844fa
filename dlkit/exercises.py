"""Checks for the notebooks' exercises, by topic.

Each check runs your function on known small cases and returns `True` if it is
right; if not, it prints what it got, what it expected and a hint (never raises).

>>> check_global_batch(lambda per_replica, replicas, steps: per_replica)
Not yet.
  Received: global_batch(32, 2, 1) = 32
  Expected: 64
  Hint: Every replica takes its own batch of per_replica examples in each step.
False
"""

import collections
import copy
import json

import numpy as np

__all__ = [
    *("check_scale_pixels", "check_class_counts"),
    *("check_sigmoid", "check_softmax", "check_binary_crossentropy"),
    *("check_sparse_categorical_crossentropy", "check_logistic_gradient"),
    *("check_cosine_decay", "check_count_parameters", "check_regularized_mlp"),
    *("check_conv_output_size", "check_conv2d", "check_max_pool", "check_lstm_step"),
    *("check_recurrent_parameter_count", "check_apply_temperature"),
    *("check_make_windows", "check_discriminator_loss", "check_generator_loss"),
    *("check_class_evenness", "check_log_uniform", "check_best_trial"),
    *("check_search_space", "small_convnet", "check_global_batch"),
    *("check_loss_scaling", "check_tf_config"),
    *("check_integrated_gradients", "check_grad_cam_map", "check_rank_correlation"),
    *("check_int8_parameters", "check_row_request"),
    *("check_population_stability_index", "check_batch_norm_inference"),
    *("check_orientation_histogram", "check_soft_target_loss", "check_magnitude_mask"),
    *("check_attention_mask", "check_attention_parameter_count"),
    *("check_ks_statistic", "check_should_promote"),
]

_RETURN_HINT = "Replace `...` with your code and `return` the result."
_If = collections.namedtuple("_If", "test")  # a mistake told by a test, not a formula
_NAMED = ("{problem}", "{named}{shown}", _RETURN_HINT)  # printed if nothing came back:
_ARROW = ("{label} -> {problem}", "{shown}", _RETURN_HINT)  # received, expected, hint
_ONE_NUMBER = ("{problem}", "one number, {shown}", _RETURN_HINT)
_SHAPED = ("{problem}", "an array of shape {expected.shape}", _RETURN_HINT)


def _wrong(received, expected, hint):
    print(f"Not yet.\n  Received: {received}\n  Expected: {expected}\n  Hint: {hint}")
    return False


def _call(function, *args):
    """Calls the learner's function: `(result, None)` or `(None, the problem)`."""
    if not callable(function):
        return None, f"{function!r}, which is not a function"
    try:
        with np.errstate(all="ignore"):
            result = function(*args)
    except Exception as error:  # the learner's code: report, never raise
        return None, f"an error: {type(error).__name__}: {error}"
    if result is None:
        return None, "None (the function returns nothing yet)"
    return result, None


def _show(value):
    """Formats a number or an array with 4 decimals, for messages."""
    array = np.round(np.asarray(value, dtype=float), 4) + 0.0  # no "-0."
    if array.ndim == 0:
        return repr(float(array))
    text = np.array2string(array, precision=4, separator=", ", suppress_small=True)
    return text.replace("\n", "\n" + " " * 12)  # align rows under "Received: "


def _close(result, expected, rtol=1e-4, atol=1e-4):
    try:
        same_shape = np.shape(result) == np.shape(expected)
        return same_shape and np.allclose(result, expected, rtol, atol)
    except (TypeError, ValueError):  # not numbers
        return False


def _exercise(
    doc, reference, cases, success, *hints, show=_show, same=_close, missing=_NAMED
):
    """Makes a check of `function(*args)` against `reference(*args)` on `cases`.

    `hints`: mistakes (a formula `f(expected, *args)` or an `_If` test of `(result,
    expected, *args)`), each followed by its hint, then the general hint.
    """
    *pairs, general = hints
    known = list(zip(pairs[::2], pairs[1::2], strict=True))  # (mistake, its hint)

    def text(value):
        try:
            return show(value)
        except Exception:  # an answer `show` cannot format
            return repr(value)

    def made(mistake, result, expected, args):
        try:
            with np.errstate(all="ignore"):
                if isinstance(mistake, _If):
                    return bool(mistake.test(result, expected, *args))
                return same(result, mistake(expected, *args))
        except Exception:  # a mistake that does not apply to this answer
            return False

    def check(function):
        for args, label in cases() if callable(cases) else cases:
            expected, named = reference(*args), f"{label} = " if label else ""
            result, problem = _call(function, *copy.deepcopy(args))
            if problem:
                fields = dict(problem=problem, label=label, named=named, args=args)
                fields.update(expected=expected, shown=text(expected))
                return _wrong(*(template.format(**fields) for template in missing))
            if not same(result, expected):
                hits = (h for m, h in known if made(m, result, expected, args))
                return _wrong(named + text(result), text(expected), next(hits, general))
        print(f"Correct! {success}")
        return True

    check.__doc__ = doc
    return check


def _calls(name, *calls):
    """Cases labelled like the call, `name(arg, ...)`, with arrays as lists."""
    texts = [", ".join(repr(np.asarray(a).tolist()) for a in args) for args in calls]
    return [(args, f"{name}({t})") for args, t in zip(calls, texts, strict=True)]


def _is_pair(value):
    return isinstance(value, (tuple, list)) and len(value) == 2


def _pairs(names, text):
    """Options of `_exercise` for a pair answer; a `None` half matches any half."""

    def same(result, expected):
        halves = zip(result, expected, strict=True) if _is_pair(result) else [(0, 1)]
        return all(want is None or _close(got, want) for got, want in halves)

    def show(value):
        return text(*value) if _is_pair(value) else type(value).__name__

    missing = ("{problem}", "{shown}", f"{_RETURN_HINT} Return {names}.")
    return dict(show=show, same=same, missing=missing)


# Reference answers and the data they are checked on
def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _softmax(logits):
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


def _correlate(image, kernel):
    windows = np.lib.stride_tricks.sliding_window_view(image, kernel.shape)
    return np.einsum("ijkl,kl->ij", windows, kernel)


def _lstm(x, h, c, kernel, recurrent_kernel, bias, order=(0, 1, 2, 3)):
    blocks = np.split(x @ kernel + h @ recurrent_kernel + bias, 4, axis=-1)
    i, f, g, o = (blocks[k] for k in order)
    c_new = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    return _sigmoid(o) * np.tanh(c_new), c_new


def _lstm_case():  # x, h, c, kernel, recurrent_kernel, bias: 2 examples, 3 units
    rng, scales = np.random.default_rng(5), [1, 0.5, 1, 0.7, 0.7, 0.3]
    shapes = [(2, 2), (2, 3), (2, 3), (2, 12), (3, 12), (12,)]
    return tuple(rng.normal(size=s) * k for s, k in zip(shapes, scales, strict=True))


def _entropy(labels):
    shares = np.unique(labels, return_counts=True)[1] / len(labels)
    return float(-(shares * np.log(shares)).sum())


def _trials():
    import pandas as pd

    scores = {"02": 0.94, "03": 0.62, "01": np.nan, "00": 0.91}  # in no order
    widths = {"02": 128, "03": 32, "01": 256, "00": 64}
    table = pd.DataFrame({"width": widths, "score": scores}).rename_axis("trial")
    return [((table, d), f"best_trial(table, {d!r})") for d in ("max", "min")]


def _config(result):
    """A TF_CONFIG given as a dict or as JSON text, parsed; `None` if neither."""
    try:
        return json.loads(result if isinstance(result, str) else json.dumps(result))
    except (TypeError, ValueError):
        return None


_JSON_ANSWER = dict(  # options for an answer given as a dict or as JSON text
    show=lambda value: value if isinstance(value, str) else json.dumps(value),
    same=lambda result, expected: _config(result) == expected,
    missing=("{problem}", "{shown}", _RETURN_HINT),
)
_SHAPE = _If(lambda result, expected, *_: np.shape(result) != np.shape(expected))
_NOT_PAIR = _If(lambda result, *_: not _is_pair(result))
_EXACT = dict(show=repr, same=lambda result, expected: _close(result, expected, 0, 0))
_SMALL = dict(  # numbers like 1e-8: 4 significant digits, relative tolerance
    show=lambda values: "[" + ", ".join(f"{v:.4g}" for v in np.ravel(values)) + "]",
    same=lambda result, expected: _close(result, expected, rtol=1e-6, atol=0.0),
)
_MEAN_LOSS = (  # the mistakes every check of a mean loss looks for first
    _SHAPE,
    "Return one number: the mean over the examples (np.mean or tf.reduce_mean).",
    lambda expected, *_: -expected,
    "Keep the minus sign: a loss is positive, log-probabilities are negative.",
    lambda expected, first, *_: len(first) * expected,
    "Take the mean over the examples, not the sum.",
)

# Data
check_scale_pixels = _exercise(
    "Checks `scale(x)`: uint8 pixels in 0..255 to float32 values in 0..1.",
    lambda x: x.astype(np.float32) / 255,
    [((np.array([[0, 51, 128, 255]], dtype=np.uint8),), "scale([[0, 51, 128, 255]])")],
    "Your pixels are float32 in [0, 1], with 255 -> 1.0.",
    _If(lambda result, expected, x: np.asarray(result).dtype != np.float32),
    "Return float32, as in x.astype('float32') / 255: NumPy's x / 255 is float64, "
    "twice the memory, and Keras computes in float32 anyway.",
    _If(lambda result, expected, x: _close(result, x / 256)),
    "Divide by 255, the largest value a uint8 pixel holds, so 255 becomes 1.0.",
    _If(lambda result, expected, x: _close(result, x // 255)),
    "Use true division (/): floor division (//) turns every pixel below 255 into 0.",
    "scale(x) = x / 255 in float32: 0 -> 0.0, 255 -> 1.0.",
    same=lambda result, expected: (
        _close(result, expected) and np.asarray(result).dtype == np.float32
    ),
)
check_class_counts = _exercise(
    "Checks `count(labels, num_classes)`: how many examples each class has.",
    lambda labels, num_classes: np.bincount(labels, minlength=num_classes),
    _calls("count", (np.array([0, 2, 2, 3, 0, 2]), 5)),
    "Your counts include the classes with no examples.",
    _If(lambda result, expected, labels, k: np.shape(result) != (k,)),
    "Return one count per class, num_classes of them, zeros included: "
    "np.bincount(labels, minlength=num_classes).",
    lambda expected, labels, num_classes: expected / len(labels),
    "Return counts, not shares: do not divide by the number of labels.",
    "counts[k] is how many labels equal k, for k = 0, ..., num_classes - 1.",
)

# Activations and losses
check_sigmoid = _exercise(
    "Checks `sigmoid(z)`: `1 / (1 + exp(-z))`, element-wise on an array.",
    _sigmoid,
    [((np.array([-20.0, -2.0, 0.0, 0.5, 2.0, 20.0]),), "sigmoid(z)")],
    "Your sigmoid matches 1 / (1 + exp(-z)).",
    _SHAPE,
    "Work element-wise with np.exp or tf.exp (math.exp takes one number).",
    lambda expected, z: 1 - expected,
    "Mind the sign: it is exp(-z), so that large z gives values near 1.",
    "sigma(z) = 1 / (1 + exp(-z)): sigma(0) = 0.5 and sigma(z) -> 1 as z grows.",
)
check_softmax = _exercise(
    "Checks `softmax(logits)` over the last axis, stable for large logits.",
    _softmax,
    [
        ((np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [2.0, -1.0, 0.5]]),), ""),
        ((np.array([[1000.0, 1001.0, 1002.0]]),), "softmax([[1000, 1001, 1002]])"),
    ],
    "Your softmax is right, and stable for large logits.",
    _If(lambda result, expected, logits: logits.max() > 100),
    "exp(1000) overflows. Subtract each row's maximum from the logits first: "
    "softmax(z - c) = softmax(z) for any constant c.",
    _If(lambda r, e, z: np.shape(r) == z.shape and np.allclose(np.sum(r, 0), 1)),
    "Normalize each row (axis=-1, keepdims=True), not each column.",
    "softmax(z)_k = exp(z_k) / sum_j exp(z_j), for each row separately.",
)
check_binary_crossentropy = _exercise(
    "Checks `binary_crossentropy(y_true, y_prob)`: the mean loss, one number.",
    lambda y, p: -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)),
    [((np.array([1.0, 0, 1, 1, 0]), np.array([0.9, 0.2, 0.6, 0.99, 0.4])), "")],
    "Your binary cross-entropy matches the formula.",
    *_MEAN_LOSS,
    lambda expected, y, p: -np.mean(y * np.log(p)),
    "Add the (1 - y) * log(1 - p) term: it scores the examples of class 0.",
    "L = -mean(y * log(p) + (1 - y) * log(1 - p)).",
    missing=_ONE_NUMBER,
)
_LOGITS = np.array([[1.0, 2, 3], [2, 0.5, -1], [0.2, 0.1, 0.3], [3, 0, 1]])
check_sparse_categorical_crossentropy = _exercise(
    "Checks `crossentropy(labels, logits)` from integer labels: one number.",
    lambda t, z: -np.mean(np.log(_softmax(z)[np.arange(len(t)), t])),
    [((np.array([2, 0, 1, 2]), _LOGITS), "")],
    "Your cross-entropy matches -mean(log softmax(z)[label]).",
    *_MEAN_LOSS,
    lambda expected, t, z: -np.mean(np.log(z[np.arange(len(t)), t])),
    "The inputs are logits, not probabilities: apply softmax first.",
    "L = -mean(log(softmax(z)[i, label_i])): the log-probability of each label.",
    missing=_ONE_NUMBER,
)


# Optimisation and dense networks
def check_regularized_mlp(model):
    """Checks a `keras.Model` for MNIST: 28x28 in, 10 out, L2 and dropout."""
    import keras

    if not isinstance(model, keras.Model):
        hint = "Return keras.Sequential([...]) from build."
        return _wrong(repr(model), "a keras.Model", hint)
    try:
        output = f"output shape {tuple(model(np.zeros((2, 28, 28))).shape)}"
    except Exception as error:  # the learner's model: report, never raise
        output = f"an error on a batch of shape (2, 28, 28): {error}"
    hidden = [x for x in model.layers if isinstance(x, keras.layers.Dense)][:-1]
    if output != "output shape (2, 10)":
        expected = "output shape (2, 10) for a batch of shape (2, 28, 28)"
        hint = "Start with keras.Input((28, 28)) and Flatten; end with Dense(10)."
        return _wrong(output, expected, hint)
    if len(hidden) < 2:
        hint = "Stack two Dense layers with activation='relu' before the output."
        return _wrong(f"{len(hidden)} hidden Dense layer(s)", "at least 2", hint)
    if plain := [layer.name for layer in hidden if layer.kernel_regularizer is None]:
        expected = "an L2 penalty on every hidden Dense layer"
        hint = "Pass kernel_regularizer=keras.regularizers.L2(1e-4) to each of them."
        return _wrong(f"no kernel_regularizer on {plain}", expected, hint)
    if not any(isinstance(layer, keras.layers.Dropout) for layer in model.layers):
        hint = "Add keras.layers.Dropout(0.3) after a hidden layer."
        return _wrong("no Dropout layer", "at least one", hint)
    print("Correct! Your MLP has L2 penalties and dropout.")
    return True


_GRADIENT_X = np.array([[1.0, 2.0], [-1.0, 0.5], [0.5, -1.5], [2.0, 1.0]])
check_logistic_gradient = _exercise(
    "Checks `gradient(x, y, w, b, l2)` of L2-regularized logistic regression.",
    lambda x, y, w, b, l2: (
        x.T @ (_sigmoid(x @ w + b) - y) / len(x) + l2 * w,
        np.mean(_sigmoid(x @ w + b) - y),
    ),
    [((_GRADIENT_X, np.array([1.0, 0, 0, 1]), np.array([0.3, -0.2]), 0.1, 0.5), "")],
    "Your gradient matches the formula (and GradientTape).",
    _NOT_PAIR,
    "Return a pair: (grad_w, grad_b).",
    lambda expected, x, y, w, b, l2: (expected[0] - l2 * w, None),
    "Add l2 * w to grad_w: the gradient of the penalty l2 / 2 * ||w||^2.",
    lambda expected, x, y, w, b, l2: (2 * l2 * w - expected[0], None),
    "Use (p - y), not (y - p): the gradient points uphill.",
    lambda expected, x, y, w, b, l2: (len(x) * (expected[0] - l2 * w) + l2 * w, None),
    "Divide by the number of examples n: the loss is a mean.",
    "grad_w = x.T @ (p - y) / n + l2 * w and grad_b = mean(p - y).",
    **_pairs(
        "(grad_w, grad_b)", lambda w, b: f"grad_w = {_show(w)}, grad_b = {_show(b)}"
    ),
)
check_cosine_decay = _exercise(
    "Checks `cosine_decay(step, initial_learning_rate, decay_steps)`: CosineDecay.",
    lambda step, lr, n: lr * 0.5 * (1 + np.cos(np.pi * min(step, n) / n)),
    [((step, 0.1, 100), f"lr({step})") for step in (0, 25, 50, 100, 150)],
    "Your schedule matches keras.optimizers.schedules.CosineDecay.",
    _If(lambda result, expected, step, lr, decay_steps: step > decay_steps),
    "Hold the rate at 0 after decay_steps: use min(step, decay_steps).",
    lambda expected, *_: 2 * expected,
    "Multiply by 0.5: the rate must start at the initial learning rate.",
    "lr = initial * 0.5 * (1 + cos(pi * min(step, decay_steps) / decay_steps)).",
)
check_count_parameters = _exercise(
    "Checks `count_parameters(layer_sizes)` of a dense network, e.g. `[784, 10]`.",
    lambda sizes: sum(n * m + m for n, m in zip(sizes[:-1], sizes[1:], strict=True)),
    _calls("count_parameters", ([784, 128, 10],), ([30, 16, 8, 1],)),
    "Your count matches model.count_params() for dense networks.",
    lambda expected, sizes: expected - sum(sizes[1:]),
    "Count the biases too: one per unit of every layer.",
    "A Dense layer from n inputs to m units holds n * m weights and m biases.",
    **_EXACT,
    missing=("{problem}", "{expected:,} for {args[0]}", _RETURN_HINT),
)
# Convolution
check_conv_output_size = _exercise(
    "Checks `conv_output_size(size, kernel_size, stride, padding)` on one axis.",
    lambda n, k, s, padding: (n - k) // s + 1 if padding == "valid" else -(-n // s),
    _calls(
        "conv_output_size",
        *[(28, 3, 1, "valid"), (26, 2, 2, "valid"), (13, 3, 1, "valid")],
        *[(28, 5, 2, "valid"), (28, 3, 1, "same"), (28, 3, 2, "same")],
        (7, 3, 2, "same"),
    ),
    "Your formula matches Keras's Conv2D and MaxPooling2D shapes.",
    lambda expected, n, k, s, padding: expected - 1 if padding == "valid" else None,
    "Add 1: the kernel fits at position 0 too.",
    lambda expected, n, k, s, padding: n - k + 1 if padding == "valid" else None,
    "Divide by the stride: the window jumps `stride` pixels at a time.",
    _If(lambda result, expected, n, k, s, padding: padding == "same"),
    "'same' pads so that only the stride shrinks: ceil(size / stride).",
    "valid: (size - kernel_size) // stride + 1; same: ceil(size / stride).",
    **_EXACT,
    missing=_ARROW,
)
check_conv2d = _exercise(
    "Checks `conv2d(image, kernel)` of 2D arrays, as `Conv2D(padding='valid')`.",
    _correlate,
    [((np.arange(20.0).reshape(4, 5) % 7, np.array([[1.0, 0.0], [2.0, -1.0]])), "")],
    "Your convolution matches Conv2D (padding='valid').",
    _SHAPE,
    "Slide the kernel over every position where it fits entirely: the output "
    "has shape (H - kh + 1, W - kw + 1).",
    lambda expected, image, kernel: _correlate(image, kernel[::-1, ::-1]),
    "Do not flip the kernel: Conv2D computes a cross-correlation.",
    "out[i, j] = sum(image[i:i + kh, j:j + kw] * kernel).",
    missing=_SHAPED,
)
check_max_pool = _exercise(
    "Checks `max_pool(image)`: 2x2 max pooling with stride 2, `MaxPooling2D(2)`.",
    lambda image: image.reshape(len(image) // 2, 2, -1, 2).max(axis=(1, 3)),
    [(((np.arange(24.0).reshape(4, 6) * 7) % 11,), "")],
    "Your pooling matches MaxPooling2D(2).",
    _SHAPE,
    "The output has half the height and half the width: stride 2.",
    lambda expected, image: image.reshape(len(image) // 2, 2, -1, 2).mean(axis=(1, 3)),
    "Take the maximum of each block, not its mean (that is average pooling).",
    "Split the image into 2x2 blocks that do not overlap; keep each maximum.",
    missing=_SHAPED,
)

# Recurrence and sequences
_SWAPPED = [(0, 2, 1, 3), (1, 0, 2, 3), (0, 1, 3, 2)]  # the gates in a wrong order
check_lstm_step = _exercise(
    "Checks `lstm_step(x, h, c, kernel, recurrent_kernel, bias)`, as `LSTMCell`.",
    _lstm,
    [(_lstm_case(), "")],
    "Your LSTM step matches keras.layers.LSTMCell.",
    _NOT_PAIR,
    "Return a pair: (h_new, c_new).",
    _If(lambda r, e, *args: any(_close(r[1], _lstm(*args, o)[1]) for o in _SWAPPED)),
    "Split z into the blocks in Keras's order: input gate i, forget gate f, "
    "candidate g, output gate o (np.split(z, 4, axis=-1)).",
    lambda expected, *args: (None, expected[1]),
    "c_new is right; h_new = sigmoid(o) * tanh(c_new), with the new c.",
    "i, f, o = sigmoid(...); g = tanh(...); c_new = f * c + i * g; "
    "h_new = o * tanh(c_new).",
    **_pairs(
        "(h_new, c_new)",
        lambda h, c: f"h_new = {_show(h[0, :])}, c_new = {_show(c[0, :])} (row 0)",
    ),
)
_BLOCKS = {"simple_rnn": 1, "lstm": 4, "gru": 3}  # GRU (reset_after): two biases
check_recurrent_parameter_count = _exercise(
    "Checks `count_parameters(kind, input_dim, units)` of SimpleRNN, LSTM, GRU.",
    lambda kind, n, m: _BLOCKS[kind] * m * (n + m + (2 if kind == "gru" else 1)),
    _calls(
        "count_parameters",
        *[("simple_rnn", 8, 16), ("lstm", 8, 16), ("gru", 8, 16)],
        *[("lstm", 64, 32), ("gru", 3, 5)],
    ),
    "Your formula matches Keras's SimpleRNN, LSTM and GRU layers.",
    lambda expected, kind, n, m: m * (n + m),
    "Count the bias too: one block has m * (n + m + 1) parameters.",
    lambda expected, kind, n, m: 3 * m * (n + m + 1) if kind == "gru" else None,
    "Keras's GRU keeps two bias vectors a block: 3 * m * (n + m + 2).",
    _If(lambda r, e, kind, n, m: r in (m * (n + m + 1), 3 * m * (n + m + 1))),
    "A gated cell repeats the block: an LSTM has four blocks (input, forget, output "
    "gates and candidate), a GRU three.",
    "One block x W + h U + b has m * (n + m + 1) parameters; count the blocks.",
    **_EXACT,
    missing=_ARROW,
)
_P = np.array([[0.6, 0.3, 0.1], [0.25, 0.25, 0.5]])  # next-character probabilities
check_apply_temperature = _exercise(
    "Checks `apply_temperature(probabilities, temperature)`: softmax(log(p) / T).",
    lambda p, t: _softmax(np.log(p) / t),
    [((_P, t), f"apply_temperature(p, {t})") for t in (0.5, 1.0, 2.0)],
    "Low temperatures sharpen, high temperatures flatten.",
    _SHAPE,
    "Keep the shape (batch, vocabulary): normalize each row separately.",
    lambda expected, p, t: _softmax(np.log(p) * t),
    "Divide the log-probabilities by T (power 1 / T), do not multiply.",
    lambda expected, p, t: p ** (1 / t),
    "Normalize: divide each row by its sum, so it sums to 1 again.",
    lambda expected, p, t: _softmax(p / t),
    "Take the log first: softmax(log(p) / T), not softmax(p / T).",
    "p_T = p ** (1 / T), then divide by the row sums so each row sums to 1.",
    show=lambda value: _show(np.asarray(value, dtype=float)[0]),  # the first row
    missing=_ARROW,
)
check_make_windows = _exercise(
    "Checks `make_windows(series, window)`: windows paired with the next value.",
    lambda s, w: (np.lib.stride_tricks.sliding_window_view(s[:-1], w), s[w:]),
    [((np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]), 3), "")],
    "Each window is paired with the value right after it.",
    _NOT_PAIR,
    "Return a pair: (inputs, targets).",
    lambda expected, series, window: (None, series[window - 1 : -1]),
    "Each target is the value after the window, series[i + window], not the "
    "window's own last value.",
    _If(lambda result, expected, *_: len(result[1]) == len(expected[1]) + 1),
    "The last window, series[-window:], has no next value: there are "
    "len(series) - window pairs.",
    "Window i is series[i:i + window]; its target is series[i + window].",
    **_pairs(
        "(inputs, targets)",
        lambda x, y: f"inputs of shape {np.shape(x)}, targets {_show(y)}",
    ),
)

# Generative models
_REAL, _FAKE = np.array([0.9, 0.7, 0.6, 0.95]), np.array([0.2, 0.4, 0.1, 0.5])
check_discriminator_loss = _exercise(
    "Checks `discriminator_loss(real_scores, fake_scores)`, the cross-entropy.",
    lambda real, fake: -np.mean(np.log(real)) - np.mean(np.log(1 - fake)),
    [((_REAL, _FAKE), "discriminator_loss(real, fake)")],
    "Your discriminator loss is the binary cross-entropy of both batches.",
    *_MEAN_LOSS,
    lambda expected, real, fake: -np.mean(np.log(real)),
    "Add the generated batch's term, -mean(log(1 - D(G(z)))).",
    lambda expected, real, fake: -np.mean(np.log(1 - fake)),
    "Add the real batch's term, -mean(log D(x)).",
    lambda expected, real, fake: -np.mean(np.log(1 - real)) - np.mean(np.log(fake)),
    "Real images are labelled 1 and generated ones 0, not the reverse.",
    lambda expected, real, fake: expected / 2,
    "Add the two terms; do not average them.",
    "L_D = -mean(log D(x)) - mean(log(1 - D(G(z)))).",
)
check_generator_loss = _exercise(
    "Checks `generator_loss(fake_scores)`: the non-saturating -mean(log D(G(z))).",
    lambda fake: -np.mean(np.log(fake)),
    [((_FAKE,), "generator_loss(fake)")],
    "This is the non-saturating generator loss.",
    *_MEAN_LOSS,
    lambda expected, fake: np.mean(np.log(1 - fake)),
    "That is the saturating minimax loss, mean(log(1 - D(G(z)))): its gradient "
    "vanishes when D rejects the fakes. Use -mean(log D(G(z))).",
    lambda expected, fake: -np.mean(np.log(1 - fake)),
    "Use log D(G(z)), not log(1 - D(G(z))).",
    "The non-saturating loss is -mean(log D(G(z))).",
)
check_class_evenness = _exercise(
    "Checks `class_evenness(labels, num_classes)`: entropy / log(num_classes).",
    lambda labels, k: _entropy(labels) / np.log(k),
    _calls(
        "class_evenness",
        *[(np.array([0, 1, 2, 3]), 4), (np.array([2, 2, 2, 2, 2]), 4)],
        *[(np.array([0, 0, 1, 3, 3, 3]), 4), (np.array([1, 1, 2]), 10)],
    ),
    "1 for an even spread of classes, 0 for a collapse onto one.",
    _If(lambda result, *_: np.isnan(result)),
    "Leave out empty classes: 0 * log(0) is taken as 0 (keep counts > 0).",
    _If(
        lambda result, expected, labels, k: any(
            _close(result, _entropy(labels) / divisor)
            for divisor in (1, np.log(len(set(labels))), np.log(len(labels)))
        )
    ),
    "Divide by log(num_classes), the entropy of all classes equally common, so "
    "that an even spread gives 1.",
    "q = counts / counts.sum(); H = -sum(q * log(q)) / log(num_classes).",
)
# Tuning
check_log_uniform = _exercise(
    "Checks `log_uniform(u, low, high)`: `low * (high / low) ** u` for u in [0, 1].",
    lambda u, low, high: low * (high / low) ** u,
    [((np.linspace(0, 1, 5), 1e-4, 1e-2), "log_uniform(u, 1e-4, 1e-2)")],
    "Each decade (1e-4 to 1e-3, 1e-3 to 1e-2) gets half of the samples.",
    lambda expected, u, low, high: low + u * (high - low),
    "That is the uniform scale: 3 samples out of 4 land above 2.5e-3. Interpolate "
    "the logarithm instead, then exponentiate.",
    "Interpolate the exponent: 10 ** (log10(low) + u * (log10(high) - log10(low))).",
    **_SMALL,
)
check_best_trial = _exercise(
    "Checks `best_trial(table, direction)`: the id of the best trial, NaN failed.",
    lambda table, direction: {"max": "02", "min": "03"}[direction],
    _trials,
    "An accuracy is maximized, a loss is minimized, and failed trials never win.",
    _If(lambda result, *_: str(result) == "01"),
    "Trial 01 failed (its score is NaN): leave it out, e.g. with table.score.dropna().",
    _If(lambda result, expected, table, direction: str(result) in table.index),
    "The best score is the largest one with direction='max', the smallest one "
    "with direction='min': use idxmax() or idxmin() on the score column.",
    "Return the trial id (the table's index), not the row number or the score.",
    show=repr,
    same=lambda result, expected: str(result) == expected,
)


def small_convnet(input_shape=(28, 28, 1), num_classes=10, filters=16, kernel_size=3):
    """The model of the search-space exercise: one convolution, a classifier."""
    import keras

    layers = [keras.Input(input_shape), keras.layers.Rescaling(1 / 255)]
    layers.append(keras.layers.Conv2D(filters, kernel_size, activation="relu"))
    layers.append(keras.layers.GlobalAveragePooling2D())
    layers.append(keras.layers.Dense(num_classes, activation="softmax"))
    return keras.Sequential(layers, name="small_convnet")


def check_search_space(space):
    """Checks `space(hp)`: an `hp.Choice` for each argument of `small_convnet`."""
    import keras_tuner

    hp, defaults = keras_tuner.HyperParameters(), {"filters": 16, "kernel_size": 3}
    result, problem = _call(space, hp)
    if problem:
        expected = "{'filters': hp.Choice(...), 'kernel_size': hp.Choice(...)}"
        return _wrong(problem, expected, _RETURN_HINT)
    if not isinstance(result, dict) or result.keys() != defaults.keys():
        hint = (
            "Return the builder's argument names, each drawn from hp, e.g. "
            "{'filters': hp.Choice('filters', [8, 16, 32], default=16), ...}."
        )
        return _wrong(repr(result), f"a dict with keys {sorted(defaults)}", hint)
    declared = {item.name: item for item in hp.space}
    for name, values in [("filters", [8, 16, 32]), ("kernel_size", [3, 5])]:
        item, default = declared.get(name), defaults[name]
        wanted = f"hp.Choice({name!r}, {values}, default={default})"
        if item is None:
            hint = "Name each hyperparameter like the argument it sets."
            return _wrong(f"no hyperparameter named {name!r}", wanted, hint)
        if type(item).__name__ != "Choice" or list(item.values) != values:
            received = f"{type(item).__name__} {name!r} with {item.get_config()}"
            hint = "A short list of allowed values is a Choice."
            return _wrong(received, wanted, hint)
        if item.default != default:
            hint = (
                "Give each hyperparameter the builder's default, so that the "
                "untuned model is the space's default."
            )
            return _wrong(f"{name!r} with default {item.default}", wanted, hint)
    if result != defaults:
        expected = "with an empty hp, the defaults {'filters': 16, 'kernel_size': 3}"
        hint = "Return the values hp gives you: filters=hp.Choice('filters', ...)."
        return _wrong(f"values {result}", expected, hint)
    print(
        "Correct! An empty HyperParameters() now builds small_convnet's default model, "
        "and a tuner can draw the 6 combinations."
    )
    return True


# Scaling
check_global_batch = _exercise(
    "Checks `global_batch(per_replica, replicas, accumulation_steps)`.",
    lambda per_replica, replicas, steps: per_replica * replicas * steps,
    _calls("global_batch", (32, 1, 1), (32, 2, 1), (16, 2, 4), (64, 8, 2)),
    "One update sees per_replica x replicas x accumulation_steps examples.",
    lambda e, per_replica, replicas, steps: e // steps if steps > 1 else None,
    "Accumulation adds the gradients of several batches before one update.",
    lambda expected, *factors: sum(factors),
    "The factors multiply: every replica takes a batch, in every accumulated step.",
    "Every replica takes its own batch of per_replica examples in each step.",
    **_EXACT,
)
_GRADIENT = np.array([1e-8, 3e-7, 2e-5, 1e-3], dtype=np.float32)
check_loss_scaling = _exercise(
    "Checks `scaled_gradient(gradient, scale)`: scale, float16, then unscale.",
    lambda g, scale: (g * scale).astype(np.float16).astype(np.float32) / scale,
    [((_GRADIENT, 2.0**15), "scaled_gradient([1e-8, 3e-7, 2e-5, 1e-3], 2**15)")],
    "Scaled by 2**15, even a 1e-8 gradient survives float16 (unscaled it would "
    "round to 0).",
    _SHAPE,
    "Work element-wise on the array and return an array of the same shape.",
    lambda expected, g, scale: g.astype(np.float16).astype(np.float32),
    "Multiply by scale before the cast to float16: that is what keeps 1e-8 from "
    "rounding to 0.",
    lambda expected, g, scale: expected * scale,
    "Divide by scale at the end (in float32), so the update has the right size.",
    "Three steps: gradient * scale, .astype(np.float16), then .astype(np.float32) "
    "/ scale.",
    **_SMALL,
)
_WORKERS = ["10.0.0.1:2222", "10.0.0.2:2222", "10.0.0.3:2222"]
check_tf_config = _exercise(
    "Checks `make_tf_config(addresses, index)`: TF_CONFIG for worker `index`.",
    lambda w, i: {"cluster": {"worker": w}, "task": {"type": "worker", "index": i}},
    [((_WORKERS, i), f"make_tf_config(addresses, {i})") for i in (0, 2)],
    "Every worker gets the same cluster and its own task; a job scheduler writes "
    "exactly this into TF_CONFIG.",
    _If(lambda result, *_: _config(result) is None),
    "Return a dict, or json.dumps of one (TF_CONFIG holds JSON text).",
    _If(lambda r, e, workers, i: _config(r)["task"].get("index") not in (i, None)),
    "task.index is this worker's position in the list, as an integer.",
    _If(lambda result, *_: _config(result)["task"].get("type") != "worker"),
    "Every process here is a worker: task.type is 'worker' (worker 0 acts as chief).",
    "Two keys: 'cluster' ({'worker': addresses}) and 'task' ({'type': 'worker', "
    "'index': index}).",
    **_JSON_ANSWER,
)


# Attribution
def _integrated_gradients(gradient, x, baseline, steps, ends=(0.5, 0.5)):
    """The trapezoid rule; `ends=(1, 0)` is the left Riemann sum, `(0, 1)` the right."""
    g = [gradient(baseline + k / steps * (x - baseline)) for k in range(steps + 1)]
    return (x - baseline) * (ends[0] * g[0] + sum(g[1:-1]) + ends[1] * g[-1]) / steps


check_integrated_gradients = _exercise(
    "Checks `integrated_gradients(gradient, x, baseline, steps)`: trapezoid rule.",
    _integrated_gradients,
    _calls(  # F(x) = sum(sin(x)), whose gradient is np.cos
        "integrated_gradients",
        (np.cos, np.array([0.5, 1.0, 2.0, -1.5]), np.zeros(4), 8),
        (np.cos, np.array([2.0, -1.0, 3.0]), np.array([1.0, 0.5, -0.5]), 16),
    ),
    "Your attributions match the trapezoid rule, and they add up to "
    "f(x) - f(baseline) (completeness).",
    lambda expected, gradient, x, baseline, steps: expected / (x - baseline),
    "Multiply the averaged gradient by (x - baseline).",
    lambda expected, *args: _integrated_gradients(*args, ends=(1, 0)),
    "That is a left Riemann sum: add g_steps and halve both ends (trapezoid rule).",
    lambda expected, *args: _integrated_gradients(*args, ends=(0, 1)),
    "That is a right Riemann sum: add g_0 and halve both ends (trapezoid rule).",
    "attributions = (x - baseline) * (g_0 / 2 + g_1 + ... + g_(steps-1) + "
    "g_steps / 2) / steps, with g_k = gradient(baseline + k / steps * (x - baseline)).",
    missing=_SHAPED,
)


def _grad_cam_map(feature_maps, gradients, per_position=False):
    weights = gradients if per_position else gradients.mean(axis=(0, 1))
    heat = np.maximum((feature_maps * weights).sum(axis=-1), 0)
    return heat / heat.max() if heat.max() > 0 else heat


_MAPS, _MAP_GRADIENTS = np.random.default_rng(13).normal(size=(2, 4, 5, 3))  # 4x5x3
check_grad_cam_map = _exercise(
    "Checks `grad_cam_map(feature_maps, gradients)` of `(H, W, K)` arrays.",
    _grad_cam_map,
    [((np.maximum(_MAPS, 0), _MAP_GRADIENTS + [0.8, -0.6, 0.2]), "")],  # 4x5, K=3
    "Your map matches Grad-CAM: channel weights from the mean gradient, ReLU, "
    "scaled to [0, 1].",
    _If(lambda result, *_: np.min(result) < 0),
    "Apply a ReLU (np.maximum(heat, 0)): Grad-CAM keeps only the positions that "
    "raise the score.",
    _If(lambda r, e, *args: _close(r / np.max(r), _grad_cam_map(*args, True))),
    "Weight each channel by one number, its gradient averaged over all positions "
    "(axis=(0, 1)), not position by position.",
    _If(lambda result, expected, *_: _close(result / np.max(result), expected)),
    "Divide by the map's maximum, so that it lies in [0, 1].",
    "weights = gradients.mean(axis=(0, 1)); heat = ReLU(sum over k of "
    "weights[k] * feature_maps[..., k]); then heat / heat.max().",
    missing=_SHAPED,
)


def _spearman(a, b):
    from scipy import stats  # installed with scikit-learn; imported when used

    return stats.spearmanr(np.ravel(a), np.ravel(b)).statistic


def _rank_cases():  # two 4x4 maps, then two with ties (zeros, as in IG maps)
    a, noise = np.random.default_rng(7).normal(size=(2, 4, 4))
    b = a + noise
    ties = (np.where(a > 0.3, a, 0.0), np.where(b > 0.3, np.abs(b), 0.0))
    return [((a, b**3), "rank_correlation(a, b)"), (ties, "rank_correlation(ties)")]


check_rank_correlation = _exercise(
    "Checks `rank_correlation(a, b)`: Spearman's rho between two maps of one shape.",
    _spearman,
    _rank_cases,
    "Your rank correlation matches scipy.stats.spearmanr, ties included.",
    lambda expected, a, b: np.corrcoef(np.ravel(a), np.ravel(b))[0, 1],
    "That is Pearson's correlation of the values. Rank the values first "
    "(scipy.stats.rankdata), then correlate the ranks.",
    _If(lambda r, e, a, b: np.unique(a).size < a.size),  # right until the ties case
    "Tied values (the zeros of a map) must share their average rank: "
    "scipy.stats.rankdata does that, argsort twice does not.",
    "Spearman's rho is Pearson's correlation of the ranks: "
    "np.corrcoef(rankdata(a.ravel()), rankdata(b.ravel()))[0, 1].",
    missing=_ONE_NUMBER,
)


# Deployment
def _int8_parameters(low, high, levels=255, offset=-128, widen=True):
    """The scale and zero point of TFLite's int8 quantization of [low, high]."""
    low, high = (min(low, 0.0), max(high, 0.0)) if widen else (low, high)
    scale = (high - low) / levels
    return scale, np.round(offset - low / scale)


check_int8_parameters = _exercise(
    "Checks `int8_parameters(low, high)`: int8 quantization's scale and zero point.",
    _int8_parameters,
    _calls("int8_parameters", (0.0, 255.0), (-1.0, 3.0), (0.5, 2.0)),
    "low goes to -128, high to 127 and 0 to an exact integer, as in TFLite's "
    "converter.",
    _NOT_PAIR,
    "Return a pair: (scale, zero_point).",
    lambda expected, low, high: _int8_parameters(low, high, levels=256),
    "There are 255 steps from -128 to 127: scale = (high - low) / 255.",
    lambda expected, low, high: _int8_parameters(low, high, offset=0),
    "int8 runs from -128 to 127 (uint8 from 0 to 255): low must go to -128.",
    _If(lambda r, e, low, high: abs(r[1] + 128 - min(low, 0) / e[0]) <= 0.5),
    "Mind the sign: low / scale + zero_point = -128 gives zero_point = -128 - "
    "low / scale.",
    _If(lambda result, *_: not float(result[1]).is_integer()),
    "Round the zero point to an integer: it is the int8 that stands for 0.0.",
    lambda expected, low, high: _int8_parameters(low, high, widen=False),
    "Widen the range to contain 0 first (low = min(low, 0), high = max(high, 0)), "
    "so that 0.0 (zero padding, ReLU's zeros) is stored exactly.",
    "With low = min(low, 0) and high = max(high, 0): scale = (high - low) / 255 "
    "and zero_point = round(-128 - low / scale).",
    **_pairs(
        "(scale, zero_point)",
        lambda scale, zero: f"scale = {_show(scale)}, zero_point = {float(zero):g}",
    ),
)
_COLUMNS = {
    "pixels": np.array([[0.0, 255.0], [17.0, 3.0]]),
    "scanner": np.array([2, 5]),
}
check_row_request = _exercise(
    "Checks `row_request(columns)`: TF Serving's row-format body for named inputs.",
    lambda columns: {
        "instances": [
            {name: values[i].tolist() for name, values in columns.items()}
            for i in range(len(next(iter(columns.values()))))
        ]
    },
    [((_COLUMNS,), "row_request({'pixels': ..., 'scanner': ...})")],
    "One JSON object per example, named like the signature's inputs: what "
    "ServingClient.predict sends.",
    _If(lambda result, *_: _config(result) is None),
    "JSON holds no NumPy arrays or NumPy numbers: convert values with .tolist().",
    _If(lambda result, *_: "inputs" in _config(result)),
    'That is the columnar format ("inputs"); the row format is {"instances": '
    "[...]}, one entry per example.",
    _If(lambda result, *_: isinstance(_config(result)["instances"], dict)),
    '"instances" is a list with one entry per example, not one entry per input.',
    _If(lambda result, *_: not isinstance(_config(result)["instances"][0], dict)),
    "With several inputs, each example is an object from input name to value: "
    '{"pixels": ..., "scanner": ...}.',
    '{"instances": [{name: columns[name][i].tolist() for name in columns} for i '
    "in range(number_of_examples)]}.",
    **_JSON_ANSWER,
)


def _psi(reference, served, edges=None, kl=False):
    """PSI over the reference's deciles (or `edges`), fractions floored."""
    edges = np.quantile(reference, np.linspace(0.1, 0.9, 9)) if edges is None else edges
    p, q = (
        np.bincount(np.searchsorted(edges, s), minlength=len(edges) + 1) / len(s)
        for s in (reference, served)
    )
    p, q = np.clip(p, 1e-4, None), np.clip(q, 1e-4, None)
    return float(np.sum((q if kl else q - p) * np.log(q / p)))


def _psi_cases():  # no empty bin, then a served sample far off (empty bins)
    rng = np.random.default_rng(9)
    reference = rng.normal(size=400)
    near, far = rng.normal(0.5, 1.0, size=300), rng.normal(4.0, 0.5, size=200)
    return [
        ((reference, near), "psi(reference, near)"),
        ((reference, far), "psi(reference, far)"),
    ]


def _equal_width(reference):
    return np.linspace(np.min(reference), np.max(reference), 11)[1:-1]


check_population_stability_index = _exercise(
    "Checks `psi(reference, served)`: the PSI over the reference's deciles.",
    _psi,
    _psi_cases,
    "Your PSI matches dlkit.monitor.population_stability_index.",
    lambda expected, reference, served: _psi(reference, served, kl=True),
    "Weight each log ratio by (q - p), not by q alone (that is the KL divergence).",
    lambda expected, r, s: _psi(r, s, edges=_equal_width(r)),
    "Cut the bins at the reference's deciles (np.quantile), not at equal widths: "
    "each bin then holds a tenth of the reference.",
    _If(lambda result, *_: not np.isfinite(result)),
    "Floor the fractions at 1e-4 (np.clip) so that an empty bin gives a finite PSI.",
    "edges = np.quantile(reference, [0.1, ..., 0.9]); p and q = each sample's "
    "fraction per bin, floored at 1e-4; PSI = sum((q - p) * log(q / p)).",
    missing=_ONE_NUMBER,
)


# Transfer learning
def _batch_norm(x, mean, variance, gamma, beta, epsilon=1e-3):
    return gamma * (x - mean) / np.sqrt(variance + epsilon) + beta


_BN_X = np.random.default_rng(10).normal(2.0, 3.0, size=(4, 3))
_BN_STATS = (np.array([1.0, -2.0, 0.5]), np.array([4.0, 0.25, 9.0]))
check_batch_norm_inference = _exercise(
    "Checks `batch_norm_inference(x, moving_mean, moving_variance, gamma, beta)`.",
    _batch_norm,
    [((_BN_X, *_BN_STATS, np.array([1.0, 2.0, 0.5]), np.array([0.0, 1.0, -1.0])), "")],
    "In inference mode a batch-norm layer is a fixed affine map: the same output "
    "for an example whatever else is in the batch.",
    _If(
        lambda r, e, x, m, v, g, b: _close(r, _batch_norm(x, x.mean(0), x.var(0), g, b))
    ),
    "Those are the batch's own statistics (training mode). Inference mode uses "
    "the moving mean and variance learned in training.",
    lambda e, x, m, v, g, b: g * (x - m) / (v + 1e-3) + b,
    "Divide by the standard deviation, np.sqrt(moving_variance + epsilon), not "
    "the variance.",
    lambda e, x, m, v, g, b: (x - m) / np.sqrt(v + 1e-3),
    "Scale by gamma and shift by beta after normalizing.",
    "gamma * (x - moving_mean) / np.sqrt(moving_variance + 1e-3) + beta, "
    "column by column (Keras's epsilon is 1e-3).",
    missing=_SHAPED,
)


def _orientations(cell, bins=9, period=180, swap=False, weighted=True):
    gy, gx = np.gradient(np.asarray(cell, dtype=float))
    gy, gx = (gx, gy) if swap else (gy, gx)
    angle = np.degrees(np.arctan2(gy, gx)) % period
    weights = np.hypot(gx, gy) if weighted else None
    return np.histogram(angle, bins, range=(0, 180), weights=weights)[0]


_CELL = np.array([[0, 0, 1, 3], [0, 2, 5, 6], [1, 5, 8, 7], [2, 6, 7, 4]]) * 30.0
check_orientation_histogram = _exercise(
    "Checks `orientation_histogram(cell, bins)`: HOG's histogram of one cell.",
    _orientations,
    [((_CELL, 9), "orientation_histogram(cell, 9)"), ((_CELL.T, 6), "... (cell.T, 6)")],
    "Your histogram matches HOG's: gradient magnitudes voted into unsigned "
    "orientation bins.",
    lambda e, cell, bins: _orientations(cell, bins, weighted=False),
    "Each pixel votes with its gradient magnitude (np.hypot(gx, gy)), not with 1.",
    lambda e, cell, bins: _orientations(cell, bins, period=360),
    "HOG's orientations are unsigned: take the angle modulo 180 degrees, so "
    "that a dark-to-light edge and a light-to-dark edge share a bin.",
    lambda e, cell, bins: _orientations(cell, bins, swap=True),
    "np.gradient returns the gradient along rows (y) first, then along columns "
    "(x); the angle is np.arctan2(gy, gx).",
    "gy, gx = np.gradient(cell); angle = np.degrees(np.arctan2(gy, gx)) % 180; "
    "np.histogram(angle, bins, range=(0, 180), weights=np.hypot(gx, gy))[0].",
    missing=_SHAPED,
)


# Compression
def _soft_target_loss(student, teacher, temperature, factor=None, reverse=False):
    def log_softmax(z):
        z = z / temperature
        z = z - z.max(axis=-1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))

    log_p, log_q = log_softmax(teacher), log_softmax(student)
    if reverse:
        log_p, log_q = log_q, log_p
    kl = np.sum(np.exp(log_p) * (log_p - log_q), axis=-1)
    return np.mean(kl) * (temperature**2 if factor is None else factor)


_STUDENT, _TEACHER = np.random.default_rng(11).normal(0, 3, size=(2, 4, 5))
check_soft_target_loss = _exercise(
    "Checks `soft_target_loss(student_logits, teacher_logits, temperature)`.",
    _soft_target_loss,
    [((_STUDENT, _TEACHER, t), f"soft_target_loss(s, t, {t})") for t in (1.0, 4.0)],
    "Your soft term matches Hinton et al.'s: T**2 times the KL divergence of the "
    "softened distributions, averaged over the batch.",
    lambda e, s, t, temperature: _soft_target_loss(s, t, temperature, factor=1),
    "Multiply by temperature**2: the softened gradients are 1/T**2 smaller, and "
    "the factor gives them back their size.",
    lambda e, s, t, temperature: _soft_target_loss(s, t, temperature, reverse=True),
    "KL(teacher || student): weight the log-ratio by the teacher's probabilities.",
    lambda e, s, t, temperature: _soft_target_loss(s, t, 1.0) * temperature**2,
    "Divide both sets of logits by the temperature before the softmax.",
    lambda e, s, t, temperature: e * len(s),
    "Average over the examples of the batch, do not add them up.",
    "p = softmax(teacher / T), q = softmax(student / T); T**2 * mean over the "
    "batch of sum(p * (log p - log q)).",
    missing=_ONE_NUMBER,
)


def _magnitude_mask(weights, sparsity, key=np.abs, keep_small=False):
    order = np.argsort(key(weights), axis=None, kind="stable")
    count = int(round(sparsity * weights.size))
    mask = np.zeros(weights.size) if keep_small else np.ones(weights.size)
    mask[order[:count]] = 1.0 if keep_small else 0.0
    return mask.reshape(weights.shape)


_KERNEL = np.random.default_rng(12).normal(size=(4, 5))
check_magnitude_mask = _exercise(
    "Checks `magnitude_mask(weights, sparsity)`: 0 for the smallest |weights|.",
    _magnitude_mask,
    [((_KERNEL, s), f"magnitude_mask(kernel, {s})") for s in (0.5, 0.8)],
    "Your mask zeroes the smallest weights by magnitude: `kernel * mask` is the "
    "pruned kernel.",
    lambda e, w, sparsity: _magnitude_mask(w, sparsity, key=lambda v: v),
    "Rank the weights by magnitude, np.abs(weights): a large negative weight "
    "matters as much as a large positive one.",
    lambda e, w, sparsity: 1 - e,
    "The mask is 1 for the weights you keep and 0 for those you prune.",
    lambda e, w, sparsity: _magnitude_mask(w, 1 - sparsity),
    "sparsity is the fraction of weights set to 0, not the fraction kept.",
    "Zero the round(sparsity * weights.size) weights of smallest np.abs(weights) "
    "and keep the rest: np.argsort over the flattened array.",
    missing=_SHAPED,
)


# Attention
def _attention_mask(ids, rows=False, causal=np.tril):
    """True where query i may attend key j: j <= i, and key j is not padding."""
    ids = np.asarray(ids)
    real = ids[:, :, None] if rows else ids[:, None, :]
    return (real != 0) & causal(np.ones((ids.shape[1],) * 2, dtype=bool))


def _same_mask(result, expected):
    try:
        return np.shape(result) == np.shape(expected) and np.array_equal(
            np.asarray(result, dtype=bool), expected
        )
    except (TypeError, ValueError):  # not a boolean array
        return False


_IDS = np.array([[4, 9, 7, 0, 0], [3, 8, 2, 6, 5]])  # a padded and a full sentence
check_attention_mask = _exercise(
    "Checks `attention_mask(ids)`: padding and causal masks, combined.",
    _attention_mask,
    [((_IDS,), "")],
    "Query i attends the real tokens up to i: no future, no padding.",
    _SHAPE,
    "Return one (length, length) mask per sequence: shape (batch, length, length).",
    lambda expected, ids: np.broadcast_to(np.tril(np.ones((5, 5), bool)), (2, 5, 5)),
    "Causal is right; also hide the padding keys (id 0) from every query.",
    lambda expected, ids: np.broadcast_to((ids != 0)[:, None, :], (2, 5, 5)),
    "Padding is right; also hide the future: key j only when j <= i (np.tril).",
    lambda expected, ids: _attention_mask(ids, causal=np.triu),
    "Row i is the query, column j the key: keep the lower triangle (np.tril).",
    lambda expected, ids: _attention_mask(ids, rows=True),
    "Hide the padding keys, the columns (ids[:, None, :] != 0), not the rows.",
    "mask = (ids[:, None, :] != 0) & np.tril(np.ones((length, length), bool)).",
    show=lambda value: _show(np.asarray(value, dtype=float)[0]),  # the first sequence
    same=_same_mask,
    missing=_SHAPED,
)
check_attention_parameter_count = _exercise(
    "Checks `count_attention_parameters(embedding_dim, num_heads, key_dim)`.",
    lambda d, h, k: 3 * (d * h * k + h * k) + (h * k * d + d),
    _calls("count_attention_parameters", (32, 2, 16), (64, 8, 4), (48, 3, 16)),
    "Your count matches keras.layers.MultiHeadAttention.",
    lambda expected, d, h, k: 4 * d * h * k,
    "Count the biases: h * k for each of the query, key and value projections, "
    "d for the output projection.",
    lambda expected, d, h, k: 3 * (d * h * k + h * k),
    "Add the output projection: (h * k) x d weights and d biases.",
    lambda expected, d, h, k: 3 * (d * k + k) + (k * d + d),
    "Every head has its own projections: h heads of key_dim k each.",
    "Query, key, value: d x (h * k) weights and h * k biases each; "
    "output: (h * k) x d weights and d biases.",
    **_EXACT,
    missing=_ARROW,
)


# Monitoring
def _ks(a, b):
    from scipy import stats  # installed with scikit-learn; imported when used

    return stats.ks_2samp(a, b).statistic


def _cdf_gaps(a, b, at=None):
    """F_a - F_b, the empirical CDFs' difference, at `at` (default: a and b)."""
    at = np.r_[a, b] if at is None else at
    cdf = lambda s: np.searchsorted(np.sort(s), at, side="right") / len(s)  # noqa: E731
    return cdf(a) - cdf(b)


_KS_A, _KS_B = [0.55, 0.6, 0.72, 0.9, 0.95], [0.1, 0.3, 0.58, 0.65, 0.8, 0.85]
check_ks_statistic = _exercise(
    "Checks `ks_statistic(a, b)`: the largest gap between two empirical CDFs.",
    _ks,
    _calls("ks_statistic", (_KS_A, _KS_B), (_KS_B, [0.2, 0.3, 0.3, 0.3, 0.9])),
    "Your statistic matches scipy.stats.ks_2samp.",
    lambda expected, a, b: np.max(_cdf_gaps(a, b)),
    "Take the absolute difference |F_a - F_b|: a shift either way is drift.",
    lambda expected, a, b: np.max(np.abs(_cdf_gaps(a, b, at=np.asarray(a)))),
    "Evaluate both CDFs at the values of both samples, not only at those of a.",
    lambda expected, a, b: abs(np.mean(a) - np.mean(b)),
    "The test compares whole distributions, not their means.",
    "F(x) = np.searchsorted(np.sort(s), x, side='right') / len(s) for each "
    "sample; return the largest |F_a(x) - F_b(x)| over x in both samples.",
    missing=_ONE_NUMBER,
)


def _promote(champion, challenger, tolerance):
    better = challenger["new"] > champion["new"]
    return bool(better and challenger["old"] >= champion["old"] - tolerance)


_SCORES = [  # champion, challenger on the old and the new domain, tolerance
    ({"old": 0.75, "new": 0.73}, {"old": 0.74, "new": 0.82}, 0.02),
    ({"old": 0.75, "new": 0.73}, {"old": 0.70, "new": 0.85}, 0.02),
    ({"old": 0.75, "new": 0.73}, {"old": 0.76, "new": 0.73}, 0.02),
    ({"old": 0.75, "new": 0.73}, {"old": 0.77, "new": 0.74}, 0.0),
]
check_should_promote = _exercise(
    "Checks `should_promote(champion, challenger, tolerance)`: the promotion rule.",
    _promote,
    _calls("should_promote", *_SCORES),
    "Better on the new domain, and not worse than the tolerance on the old one.",
    lambda e, champion, challenger, t: _promote(champion, challenger, 0.0),
    "Allow the tolerance: an old-domain accuracy down to champion['old'] - "
    "tolerance is still fine.",
    lambda e, champion, challenger, t: challenger["new"] > champion["new"],
    "Check the old domain too: a challenger that forgets it must not ship.",
    lambda e, old, new, t: new["new"] >= old["new"] and new["old"] >= old["old"] - t,
    "Ask for strictly better on the new domain (>): a tie is no reason to swap.",
    "Return challenger['new'] > champion['new'] and challenger['old'] >= "
    "champion['old'] - tolerance.",
    **_EXACT,
)

for _name in __all__:  # name the checks `_exercise` made after their variables
    globals()[_name].__name__ = globals()[_name].__qualname__ = _name
