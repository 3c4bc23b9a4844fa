"""Checks for the exercises of notebooks 05 (recurrent networks) and 06 (GANs).

Each check takes what you wrote (a function), tries it on small inputs whose
answers are known, prints feedback and returns `True` when your answer is
right. A wrong or missing answer never raises: the check prints what it
received, what it expected and a hint, and returns `False`.

Example:

>>> check_class_evenness(lambda labels, num_classes: None)
Not yet.
  Received: None (the function returns nothing yet)
  Expected: class_evenness([0, 1, 2, 3], 4) = 1.0
  Hint: Replace `...` with your code and `return` the result.
False
"""

import numpy as np

from dlkit._feedback import (
    _RETURN_HINT,
    _as_array,
    _call,
    _close,
    _correct,
    _sigmoid,
    _wrong,
)

# --------------------------------------------------------------------------
# Helpers (the same as in dlkit.exercises)
# --------------------------------------------------------------------------


def _show(value):
    """Formats a number or an array with 4 decimals, for messages."""
    array = np.round(np.asarray(value, dtype=float), 4) + 0.0  # no "-0."
    return np.array2string(array, precision=4, separator=", ", suppress_small=True)


# --------------------------------------------------------------------------
# 05a · Recurrent networks for text
# --------------------------------------------------------------------------


def _lstm_step(x, h, c, kernel, recurrent_kernel, bias, order=(0, 1, 2, 3)):
    z = x @ kernel + h @ recurrent_kernel + bias
    blocks = np.split(z, 4, axis=-1)
    i, f, g, o = (blocks[k] for k in order)
    c_new = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    return _sigmoid(o) * np.tanh(c_new), c_new


def _lstm_case():
    rng = np.random.default_rng(5)
    units, features = 3, 2
    x = rng.normal(size=(2, features))
    h = rng.normal(size=(2, units)) * 0.5
    c = rng.normal(size=(2, units))
    kernel = rng.normal(size=(features, 4 * units)) * 0.7
    recurrent_kernel = rng.normal(size=(units, 4 * units)) * 0.7
    bias = rng.normal(size=4 * units) * 0.3
    return x, h, c, kernel, recurrent_kernel, bias


def check_lstm_step(lstm_step):
    """Checks one step of an LSTM cell, in Keras's weight layout.

    `z = x @ kernel + h @ recurrent_kernel + bias` is split into four blocks
    in the order input gate, forget gate, candidate, output gate (what
    `keras.layers.LSTMCell` does); then `c_new = f * c + i * g` and
    `h_new = o * tanh(c_new)`, with sigmoid gates and a tanh candidate.

    Args:
        lstm_step: a function `(x, h, c, kernel, recurrent_kernel, bias)` of
            NumPy arrays returning the pair `(h_new, c_new)`.

    Returns:
        `True` if the function is right, `False` otherwise (with a message).
    """
    case = _lstm_case()
    expected_h, expected_c = _lstm_step(*case)
    expected = f"h_new = {_show(expected_h[0])}, c_new = {_show(expected_c[0])} (row 0)"
    result, problem = _call(lstm_step, *case)
    if problem:
        return _wrong(problem, expected, _RETURN_HINT + " Return (h_new, c_new).")
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        return _wrong(
            f"{type(result).__name__}", expected, "Return a pair: (h_new, c_new)."
        )
    h_new, c_new = _as_array(result[0]), _as_array(result[1])
    if _close(h_new, expected_h) and _close(c_new, expected_c):
        return _correct("Your LSTM step matches keras.layers.LSTMCell.")
    return _wrong(_describe_lstm(h_new, c_new), expected, _lstm_hint(case, c_new))


def _describe_lstm(h_new, c_new):
    if h_new is None or c_new is None or h_new.ndim != 2 or c_new.ndim != 2:
        return "arrays that are not (batch, units) matrices"
    return f"h_new = {_show(h_new[0])}, c_new = {_show(c_new[0])} (row 0)"


def _lstm_hint(case, c_new):
    x, h, c, kernel, recurrent_kernel, bias = case
    for order in ((0, 2, 1, 3), (1, 0, 2, 3), (0, 1, 3, 2)):
        if _close(c_new, _lstm_step(*case, order=order)[1]):
            return (
                "Split z into the blocks in Keras's order: input gate i, forget "
                "gate f, candidate g, output gate o (np.split(z, 4, axis=-1))."
            )
    _, expected_c = _lstm_step(*case)
    if _close(c_new, expected_c):
        return "c_new is right; h_new = sigmoid(o) * tanh(c_new), with the new c."
    return (
        "i, f, o = sigmoid(...); g = tanh(...); c_new = f * c + i * g; "
        "h_new = o * tanh(c_new)."
    )


RECURRENT_KINDS = ("simple_rnn", "lstm", "gru")


def _recurrent_parameters(kind, input_dim, units):
    one_block = units * (input_dim + units + 1)
    if kind == "simple_rnn":
        return one_block
    if kind == "lstm":
        return 4 * one_block
    return 3 * (one_block + units)  # GRU, reset_after=True: two bias vectors


def check_recurrent_parameter_count(count_parameters):
    """Checks a formula for the parameters of Keras's SimpleRNN, LSTM and GRU.

    With `n` inputs and `m` units, one block `tanh(x W + h U + b)` has
    `m * (n + m + 1)` parameters. SimpleRNN has one block, LSTM four (three
    gates and the candidate), GRU three, each with a second bias vector in
    Keras (`reset_after=True`): `3 * m * (n + m + 2)`.

    Args:
        count_parameters: a function `(kind, input_dim, units)`, where `kind`
            is `"simple_rnn"`, `"lstm"` or `"gru"`, returning an integer.

    Returns:
        `True` if the function is right, `False` otherwise (with a message).
    """
    for kind, input_dim, units in (
        ("simple_rnn", 8, 16),
        ("lstm", 8, 16),
        ("gru", 8, 16),
        ("lstm", 64, 32),
        ("gru", 3, 5),
    ):
        expected = _recurrent_parameters(kind, input_dim, units)
        call = f"count_parameters({kind!r}, {input_dim}, {units})"
        result, problem = _call(count_parameters, kind, input_dim, units)
        if problem:
            return _wrong(f"{call} -> {problem}", str(expected), _RETURN_HINT)
        if np.ndim(result) == 0 and result == expected:
            continue
        return _wrong(
            f"{call} -> {result!r}",
            str(expected),
            _parameter_hint(kind, input_dim, units, result),
        )
    return _correct("Your formula matches Keras's SimpleRNN, LSTM and GRU layers.")


def _parameter_hint(kind, input_dim, units, result):
    one_block = units * (input_dim + units + 1)
    if result == units * (input_dim + units):
        return "Count the bias too: one block has m * (n + m + 1) parameters."
    if kind == "gru" and result == 3 * one_block:
        return "Keras's GRU keeps two bias vectors a block: 3 * m * (n + m + 2)."
    if kind in ("lstm", "gru") and result == one_block:
        return "A gated cell repeats the block: 4 times for an LSTM, 3 for a GRU."
    if kind == "lstm" and result == 3 * one_block:
        return "An LSTM has four blocks: input, forget, output gates and candidate."
    return "One block x W + h U + b has m * (n + m + 1) parameters; count the blocks."


# --------------------------------------------------------------------------
# 05b · Recurrent networks for sequences
# --------------------------------------------------------------------------


def _tempered(probabilities, temperature):
    logits = np.log(probabilities) / temperature
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


def check_apply_temperature(apply_temperature):
    """Checks temperature scaling of a next-character distribution.

    `p_T(c) = p(c) ** (1 / T) / sum_c' p(c') ** (1 / T)`, that is a softmax
    of `log(p) / T`: `T < 1` sharpens the distribution, `T > 1` flattens it,
    `T = 1` leaves it as it is.

    Args:
        apply_temperature: a function `(probabilities, temperature)`, taking
            an array of shape `(batch, vocabulary)` whose rows sum to 1 and a
            positive number, returning an array of the same shape.

    Returns:
        `True` if the function is right, `False` otherwise (with a message).
    """
    probabilities = np.array([[0.6, 0.3, 0.1], [0.25, 0.25, 0.5]])
    for temperature in (0.5, 1.0, 2.0):
        expected = _tempered(probabilities, temperature)
        call = f"apply_temperature(p, {temperature})"
        result, problem = _call(apply_temperature, probabilities.copy(), temperature)
        if problem:
            return _wrong(f"{call} -> {problem}", _show(expected[0]), _RETURN_HINT)
        result = _as_array(result)
        if _close(result, expected):
            continue
        hint = "p_T = p ** (1 / T), then divide by the row sums so each row sums to 1."
        if result is None or result.shape != expected.shape:
            hint = "Keep the shape (batch, vocabulary): normalize each row separately."
        elif _close(result, _tempered(probabilities, 1 / temperature)):
            hint = "Divide the log-probabilities by T (power 1 / T), do not multiply."
        elif _close(result, probabilities ** (1 / temperature)):
            hint = "Normalize: divide each row by its sum, so it sums to 1 again."
        elif _close(result, _softmax(probabilities / temperature)):
            hint = "Take the log first: softmax(log(p) / T), not softmax(p / T)."
        received = _show(result[0]) if result is not None and result.ndim else result
        return _wrong(f"{call}[0] = {received}", _show(expected[0]), hint)
    return _correct("Low temperatures sharpen, high temperatures flatten.")


def _softmax(logits):
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


def _windows(series, window):
    count = len(series) - window
    inputs = np.stack([series[i : i + window] for i in range(count)])
    return inputs, series[window:]


def check_make_windows(make_windows):
    """Checks windowing a series into (past values, next value) pairs.

    Window `i` holds `series[i : i + window]` and its target is the value
    right after it, `series[i + window]`: what
    `keras.utils.timeseries_dataset_from_array(series[:-1], series[window:],
    sequence_length=window)` yields.

    Args:
        make_windows: a function `(series, window)` of a 1D NumPy array and an
            integer returning `(inputs, targets)` of shapes
            `(len(series) - window, window)` and `(len(series) - window,)`.

    Returns:
        `True` if the function is right, `False` otherwise (with a message).
    """
    series = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0])
    window = 3
    inputs, targets = _windows(series, window)
    expected = f"inputs of shape {inputs.shape}, targets {_show(targets)}"
    result, problem = _call(make_windows, series.copy(), window)
    if problem:
        return _wrong(problem, expected, _RETURN_HINT + " Return (inputs, targets).")
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        return _wrong(
            f"{type(result).__name__}", expected, "Return a pair: (inputs, targets)."
        )
    got_inputs, got_targets = _as_array(result[0]), _as_array(result[1])
    if _close(got_inputs, inputs) and _close(got_targets, targets):
        return _correct("Each window is paired with the value right after it.")
    received = (
        f"inputs of shape {getattr(got_inputs, 'shape', None)}, "
        f"targets {_show(got_targets) if got_targets is not None else None}"
    )
    return _wrong(received, expected, _windows_hint(series, window, got_targets))


def _windows_hint(series, window, targets):
    if targets is not None and _close(targets, series[window - 1 : -1]):
        return (
            "Each target is the value after the window, series[i + window], not "
            "the window's own last value."
        )
    if targets is not None and len(targets) == len(series) - window + 1:
        return (
            "The last window, series[-window:], has no next value: there are "
            "len(series) - window pairs."
        )
    return "Window i is series[i:i + window]; its target is series[i + window]."


# --------------------------------------------------------------------------
# 06 · Generative adversarial networks
# --------------------------------------------------------------------------

_REAL = np.array([0.9, 0.7, 0.6, 0.95])  # D(x) on a batch of real images
_FAKE = np.array([0.2, 0.4, 0.1, 0.5])  # D(G(z)) on a batch of generated ones


def _check_loss(function, args, expected, call, success, hints):
    result, problem = _call(function, *args)
    if problem:
        return _wrong(problem, f"{call} = {_show(expected)}", _RETURN_HINT)
    result = _as_array(result)
    if _close(result, expected):
        return _correct(success)
    hint = hints[0][1]
    if result is not None and result.shape != ():
        hint = "Return one number: the mean over the batch (np.mean or tf.reduce_mean)."
    else:
        for candidate, message in hints[1:]:
            if _close(result, candidate):
                hint = message
                break
    return _wrong(f"{call} = {_show(result)}", _show(expected), hint)


def check_discriminator_loss(discriminator_loss):
    """Checks the discriminator's loss: binary cross-entropy on both batches.

    `L_D = -mean(log D(x)) - mean(log(1 - D(G(z))))`: real images are
    labelled 1, generated images 0.

    Args:
        discriminator_loss: a function `(real_scores, fake_scores)` of two
            arrays of probabilities, D(x) and D(G(z)), returning one number.

    Returns:
        `True` if the function is right, `False` otherwise (with a message).
    """
    real_term = -np.mean(np.log(_REAL))
    fake_term = -np.mean(np.log(1 - _FAKE))
    hints = [
        (None, "L_D = -mean(log D(x)) - mean(log(1 - D(G(z))))."),
        (real_term, "Add the generated batch's term, -mean(log(1 - D(G(z))))."),
        (fake_term, "Add the real batch's term, -mean(log D(x))."),
        (-(real_term + fake_term), "Keep the minus signs: a loss is positive."),
        (
            -np.mean(np.log(1 - _REAL)) - np.mean(np.log(_FAKE)),
            "Real images are labelled 1 and generated ones 0, not the reverse.",
        ),
        ((real_term + fake_term) / 2, "Add the two terms; do not average them."),
        (
            -np.sum(np.log(_REAL)) - np.sum(np.log(1 - _FAKE)),
            "Take the mean over each batch, not the sum.",
        ),
    ]
    return _check_loss(
        discriminator_loss,
        (_REAL.copy(), _FAKE.copy()),
        real_term + fake_term,
        "discriminator_loss(real, fake)",
        "Your discriminator loss is the binary cross-entropy of both batches.",
        hints,
    )


def check_generator_loss(generator_loss):
    """Checks the non-saturating generator loss: `-mean(log D(G(z)))`.

    The minimax game has the generator minimize `mean(log(1 - D(G(z))))`,
    whose gradient vanishes when the discriminator confidently rejects the
    generated images, which is what happens early in training. The
    non-saturating loss has the same fixed point and strong gradients there.

    Args:
        generator_loss: a function `(fake_scores)` of an array of
            probabilities D(G(z)), returning one number.

    Returns:
        `True` if the function is right, `False` otherwise (with a message).
    """
    hints = [
        (None, "The non-saturating loss is -mean(log D(G(z)))."),
        (
            np.mean(np.log(1 - _FAKE)),
            "That is the saturating minimax loss, mean(log(1 - D(G(z)))): its "
            "gradient vanishes when D rejects the fakes. Use -mean(log D(G(z))).",
        ),
        (np.mean(np.log(_FAKE)), "Keep the minus sign: a loss is positive."),
        (-np.mean(np.log(1 - _FAKE)), "Use log D(G(z)), not log(1 - D(G(z)))."),
        (-np.sum(np.log(_FAKE)), "Take the mean over the batch, not the sum."),
    ]
    return _check_loss(
        generator_loss,
        (_FAKE.copy(),),
        -np.mean(np.log(_FAKE)),
        "generator_loss(fake)",
        "This is the non-saturating generator loss.",
        hints,
    )


def _evenness(labels, num_classes):
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=num_classes)
    shares = counts[counts > 0] / counts.sum()
    return float(-(shares * np.log(shares)).sum() / np.log(num_classes))


def check_class_evenness(class_evenness):
    """Checks the evenness of a set of labels: normalized entropy, 0 to 1.

    `H = -sum_k q_k log q_k / log K`, where `q_k` is the share of label `k`
    among `K` classes and empty classes add nothing (`0 log 0 = 0`). It is 1
    when every class is equally common and 0 when all labels are the same:
    for a GAN, a low value means mode collapse.

    Args:
        class_evenness: a function `(labels, num_classes)` of an array of
            integer labels and the number of classes, returning one number.

    Returns:
        `True` if the function is right, `False` otherwise (with a message).
    """
    cases = [
        (np.array([0, 1, 2, 3]), 4),
        (np.array([2, 2, 2, 2, 2]), 4),
        (np.array([0, 0, 1, 3, 3, 3]), 4),
        (np.array([1, 1, 2]), 10),
    ]
    for labels, num_classes in cases:
        expected = _evenness(labels, num_classes)
        call = f"class_evenness({labels.tolist()}, {num_classes})"
        result, problem = _call(class_evenness, labels.copy(), num_classes)
        if problem:
            return _wrong(problem, f"{call} = {round(expected, 4)}", _RETURN_HINT)
        result = _as_array(result)
        if _close(result, expected):
            continue
        return _wrong(
            f"{call} = {_show(result)}",
            _show(expected),
            _evenness_hint(labels, num_classes, result),
        )
    return _correct("1 for an even spread of classes, 0 for a collapse onto one.")


def _evenness_hint(labels, num_classes, result):
    counts = np.bincount(labels, minlength=num_classes)
    shares = counts[counts > 0] / counts.sum()
    entropy = float(-(shares * np.log(shares)).sum())
    if result is not None and result.shape == () and np.isnan(result):
        return "Leave out empty classes: 0 * log(0) is taken as 0 (keep counts > 0)."
    if _close(result, entropy):
        return "Divide by log(num_classes), so that an even spread gives 1."
    if _close(result, entropy / np.log(len(shares))) or _close(
        result, entropy / np.log(len(labels))
    ):
        return "Divide by log(num_classes), the entropy of all classes equally common."
    return "q = counts / counts.sum(); H = -sum(q * log(q)) / log(num_classes)."
