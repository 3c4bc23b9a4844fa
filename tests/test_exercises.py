import math

import keras
import numpy as np
import pytest

from dlkit import exercises


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _stable_softmax(logits):
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def _stub(*args):
    """What a learner's function returns before they fill it in."""


def _mlp(l2=1e-4, dropout=0.3, hidden=2, input_shape=(28, 28)):
    layers = [keras.Input(input_shape), keras.layers.Flatten()]
    for _ in range(hidden):
        regularizer = keras.regularizers.L2(l2) if l2 else None
        layers.append(
            keras.layers.Dense(16, activation="relu", kernel_regularizer=regularizer)
        )
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(10, activation="softmax"))
    return keras.Sequential(layers)


def _conv2d(image, kernel):
    height, width = kernel.shape
    rows, cols = image.shape[0] - height + 1, image.shape[1] - width + 1
    return np.array(
        [
            [np.sum(image[i : i + height, j : j + width] * kernel) for j in range(cols)]
            for i in range(rows)
        ]
    )


def _bce(y, p):
    return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))


def _gradient(x, y, w, b, l2):
    error = _sigmoid(x @ w + b) - y
    return x.T @ error / len(x) + l2 * w, error.mean()


def _crossentropy(labels, logits):
    probabilities = _stable_softmax(logits)
    return -np.mean(np.log(probabilities[np.arange(len(labels)), labels]))


def _cosine(step, initial, decay_steps):
    return (
        initial * 0.5 * (1 + math.cos(math.pi * min(step, decay_steps) / decay_steps))
    )


def _conv_size(size, kernel, stride, padding):
    if padding == "same":
        return math.ceil(size / stride)
    return (size - kernel) // stride + 1


def _max_pool(image):
    height, width = image.shape
    return image.reshape(height // 2, 2, width // 2, 2).max(axis=(1, 3))


def _count(sizes):
    return sum(n * m + m for n, m in zip(sizes[:-1], sizes[1:], strict=True))


# (check, a right answer, wrong answers with a phrase of the hint each must print)
CASES = [
    (
        exercises.check_sigmoid,
        _sigmoid,
        [
            (lambda z: 1 / (1 + np.exp(z)), "Mind the sign"),
            (lambda z: 1 / (1 + math.exp(-z[0])), "element-wise"),
            (np.tanh, "sigma(0) = 0.5"),
        ],
    ),
    (
        exercises.check_binary_crossentropy,
        _bce,
        [
            (lambda y, p: -_bce(y, p), "minus sign"),
            (lambda y, p: _bce(y, p) * len(y), "mean over the examples"),
            (lambda y, p: -np.mean(y * np.log(p)), "(1 - y) * log(1 - p)"),
            (lambda y, p: -(y * np.log(p) + (1 - y) * np.log(1 - p)), "one number"),
        ],
    ),
    (
        exercises.check_logistic_gradient,
        _gradient,
        [
            (lambda x, y, w, b, l2: _gradient(x, y, w, b, 0.0), "l2 * w"),
            (
                lambda x, y, w, b, l2: (
                    x.T @ (y - _sigmoid(x @ w + b)) / len(x) + l2 * w,
                    0.0,
                ),
                "(p - y)",
            ),
            (
                lambda x, y, w, b, l2: (
                    x.T @ (_sigmoid(x @ w + b) - y) + l2 * w,
                    0.0,
                ),
                "number of examples",
            ),
            (lambda x, y, w, b, l2: l2 * w, "Return a pair"),
        ],
    ),
    (
        exercises.check_softmax,
        _stable_softmax,
        [
            (lambda z: np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True), "overflows"),
            (lambda z: np.exp(z) / np.exp(z).sum(axis=0, keepdims=True), "each row"),
            (lambda z: z / z.sum(), "exp(z_k)"),
        ],
    ),
    (
        exercises.check_sparse_categorical_crossentropy,
        _crossentropy,
        [
            (lambda t, z: -_crossentropy(t, z), "minus sign"),
            (lambda t, z: _crossentropy(t, z) * len(t), "not the sum"),
            (
                lambda t, z: -np.mean(np.log(z[np.arange(len(t)), t])),
                "apply softmax first",
            ),
            (lambda t, z: np.zeros(len(t)), "one number"),
        ],
    ),
    (
        exercises.check_count_parameters,
        _count,
        [
            (
                lambda s: sum(n * m for n, m in zip(s[:-1], s[1:], strict=True)),
                "biases",
            ),
            (lambda s: sum(s), "n * m weights"),
        ],
    ),
    (
        exercises.check_cosine_decay,
        _cosine,
        [
            (
                lambda s, lr, d: lr * 0.5 * (1 + math.cos(math.pi * s / d)),
                "min(step, decay_steps)",
            ),
            (lambda s, lr, d: 2 * _cosine(s, lr, d), "Multiply by 0.5"),
            (lambda s, lr, d: lr, "cos(pi"),
        ],
    ),
    (
        exercises.check_conv_output_size,
        _conv_size,
        [
            (lambda n, k, s, p: (n - k) // s, "Add 1"),
            (lambda n, k, s, p: n - k + 1, "Divide by the stride"),
            (
                lambda n, k, s, p: (n - k) // s + 1,
                "'same' pads",
            ),
        ],
    ),
    (
        exercises.check_conv2d,
        _conv2d,
        [
            (lambda x, k: _conv2d(x, k[::-1, ::-1]), "Do not flip"),
            (lambda x, k: x, "every position where it fits"),
            (lambda x, k: _conv2d(x, k) + 1, "sum(image[i:i + kh"),
        ],
    ),
    (
        exercises.check_max_pool,
        _max_pool,
        [
            (
                lambda x: x.reshape(2, 2, 3, 2).mean(axis=(1, 3)),
                "not its mean",
            ),
            (lambda x: x[::2], "half the width"),
        ],
    ),
]

IDS = [case[0].__name__ for case in CASES]


@pytest.mark.parametrize("check, right, wrongs", CASES, ids=IDS)
def test_a_right_answer_passes(check, right, wrongs, capsys):
    assert check(right) is True
    assert capsys.readouterr().out.startswith("Correct!")


@pytest.mark.parametrize("check, right, wrongs", CASES, ids=IDS)
def test_wrong_answers_are_rejected_with_a_hint(check, right, wrongs, capsys):
    for wrong, hint in wrongs:
        assert check(wrong) is False, hint
        out = capsys.readouterr().out
        assert out.startswith("Not yet.") and "Received:" in out and "Expected:" in out
        assert hint in out, (hint, out)


@pytest.mark.parametrize("check, right, wrongs", CASES, ids=IDS)
def test_the_unfilled_stub_is_rejected_without_raising(check, right, wrongs, capsys):
    assert check(_stub) is False
    out = capsys.readouterr().out
    assert "None (the function returns nothing yet)" in out and "`return`" in out


@pytest.mark.parametrize("check, right, wrongs", CASES, ids=IDS)
def test_errors_in_the_learners_code_are_reported(check, right, wrongs, capsys):
    def broken(*args):
        raise ZeroDivisionError("division by zero")

    assert check(broken) is False
    assert "ZeroDivisionError: division by zero" in capsys.readouterr().out


def test_check_regularized_mlp_accepts_l2_and_dropout(capsys):
    assert exercises.check_regularized_mlp(_mlp()) is True
    assert "Correct!" in capsys.readouterr().out


@pytest.mark.parametrize(
    "model, hint",
    [
        (None, "keras.Sequential"),
        (_mlp(input_shape=(784,)), "keras.Input((28, 28))"),
        (_mlp(hidden=1), "Stack two Dense layers"),
        (_mlp(l2=0), "kernel_regularizer=keras.regularizers.L2"),
        (_mlp(dropout=0), "keras.layers.Dropout"),
    ],
)
def test_check_regularized_mlp_rejects_models_with_a_hint(model, hint, capsys):
    assert exercises.check_regularized_mlp(model) is False
    assert hint in capsys.readouterr().out


def test_messages_are_deterministic_and_rounded(capsys):
    exercises.check_sigmoid(lambda z: 1 / (1 + np.exp(z)) + 1e-9)
    out = capsys.readouterr().out
    assert "0.8808" in out and "e-" not in out
