"""Every exercise check: a right answer passes, each known mistake gets its hint,
a missing answer or an error is reported without raising, and the messages the
notebooks store are still the ones printed."""

import doctest
import inspect
import json
import math
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from scipy import special, stats

from dlkit import exercises

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"


def _sigmoid(z):  # right answers from SciPy, not a copy of the references
    return special.expit(z)


def _softmax(z):
    return special.softmax(z, axis=-1)


def _bce(y, p):
    return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))


def _crossentropy(labels, logits):
    return -np.mean(np.log(_softmax(logits)[np.arange(len(labels)), labels]))


def _gradient(x, y, w, b, l2):
    error = _sigmoid(x @ w + b) - y
    return x.T @ error / len(x) + l2 * w, error.mean()


def _cosine(step, initial, decay_steps):
    progress = min(step, decay_steps) / decay_steps
    return initial * 0.5 * (1 + math.cos(math.pi * progress))


def _conv_size(size, kernel, stride, padding):
    if padding == "same":
        return math.ceil(size / stride)
    return (size - kernel) // stride + 1


def _conv2d(image, kernel):
    height, width = kernel.shape
    rows, cols = image.shape[0] - height + 1, image.shape[1] - width + 1
    return np.array(
        [
            [np.sum(image[i : i + height, j : j + width] * kernel) for j in range(cols)]
            for i in range(rows)
        ]
    )


def _max_pool(image):
    height, width = image.shape
    return image.reshape(height // 2, 2, width // 2, 2).max(axis=(1, 3))


def _lstm(x, h, c, kernel, recurrent_kernel, bias, order=(0, 1, 2, 3)):
    blocks = np.split(x @ kernel + h @ recurrent_kernel + bias, 4, axis=-1)
    i, f, g, o = (blocks[k] for k in order)
    c_new = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    return _sigmoid(o) * np.tanh(c_new), c_new


def _recurrent_count(kind, n, m, blocks=None):
    blocks = blocks or {"simple_rnn": 1, "lstm": 4, "gru": 3}
    return blocks[kind] * m * (n + m + 1) + (3 * m if kind == "gru" else 0)


def _tempered(p, temperature):
    weights = p ** (1 / temperature)
    return weights / weights.sum(axis=-1, keepdims=True)


def _windows(series, window):
    inputs = np.lib.stride_tricks.sliding_window_view(series[:-1], window)
    return inputs, series[window:]


def _d_loss(real, fake):
    return -np.mean(np.log(real)) - np.mean(np.log(1 - fake))


def _entropy(labels, k):
    q = np.bincount(labels, minlength=k) / len(labels)
    q = q[q > 0]
    return -(q * np.log(q)).sum()


def _space(hp):
    return {
        "filters": hp.Choice("filters", [8, 16, 32], default=16),
        "kernel_size": hp.Choice("kernel_size", [3, 5], default=3),
    }


def _best_trial(table, direction):
    scores = table.score.dropna()
    return scores.idxmax() if direction == "max" else scores.idxmin()


def _scaled(gradient, scale):
    return (gradient * scale).astype(np.float16).astype(np.float32) / scale


def _tf_config(addresses, index):
    task = {"type": "worker", "index": index}
    return json.dumps({"cluster": {"worker": addresses}, "task": task})


def _old_c_in_h(x, h, c, kernel, recurrent_kernel, bias):
    i, f, g, o = np.split(x @ kernel + h @ recurrent_kernel + bias, 4, axis=-1)
    c_new = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    return _sigmoid(o) * np.tanh(c), c_new


def _with_empty_classes(labels, k):
    q = np.bincount(labels, minlength=k) / len(labels)
    return -(q * np.log(q)).sum() / np.log(k)


def _path(gradient, x, baseline, steps):
    alphas = np.linspace(0.0, 1.0, steps + 1)
    return np.array([gradient(baseline + a * (x - baseline)) for a in alphas])


def _integrated(gradient, x, baseline, steps):
    grads = _path(gradient, x, baseline, steps)  # one trapezoid per interval:
    return (x - baseline) * np.mean((grads[:-1] + grads[1:]) / 2, axis=0)


def _heat(feature_maps, weights):
    return np.maximum((feature_maps * weights).sum(axis=-1), 0)


def _grad_cam(feature_maps, gradients):
    heat = _heat(feature_maps, gradients.mean(axis=(0, 1)))
    return heat / heat.max()


def _ranked(a, b, rank=stats.rankdata):
    return np.corrcoef(rank(np.ravel(a)), rank(np.ravel(b)))[0, 1]


def _int8(low, high):
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / (127 - -128)
    return scale, int(round(-128 - low / scale))


def _rows(columns):
    rows = zip(*(np.asarray(c).tolist() for c in columns.values()), strict=True)
    return {"instances": [dict(zip(columns, row, strict=True)) for row in rows]}


def _psi_by_histogram(reference, served, floor=1e-4, inner=None, kl=False):
    inner = np.percentile(reference, np.arange(10, 100, 10)) if inner is None else inner
    edges = np.r_[-np.inf, inner, np.inf]
    p = np.maximum(np.histogram(reference, edges)[0] / len(reference), floor)
    q = np.maximum(np.histogram(served, edges)[0] / len(served), floor)
    return np.sum((q if kl else q - p) * np.log(q / p))


# notebook 09 reference answers
def _bn_inference(x, mean, variance, gamma, beta):
    return gamma * (x - mean) / np.sqrt(variance + 1e-3) + beta


def _histogram(cell, bins, angle=None, weights=True):
    gy, gx = np.gradient(cell.astype(float))
    angle = np.mod(np.arctan2(gy, gx) * 180 / np.pi, 180) if angle is None else angle
    return np.bincount(
        np.minimum((angle / (180 / bins)).astype(int), bins - 1).ravel(),
        weights=np.hypot(gx, gy).ravel() if weights else None,
        minlength=bins,
    )


def _soft_loss(student, teacher, temperature, factor=None):
    p = special.softmax(teacher / temperature, axis=-1)
    log_ratio = special.log_softmax(teacher / temperature, axis=-1) - (
        special.log_softmax(student / temperature, axis=-1)
    )
    kl = np.sum(p * log_ratio, axis=-1)
    return np.mean(kl) * (temperature**2 if factor is None else factor)


def _mask(weights, sparsity, values=np.abs):
    threshold = np.sort(values(weights), axis=None)[int(round(sparsity * weights.size))]
    return (values(weights) >= threshold).astype(float)


# notebooks 10-11 reference answers
def _causal_padding_mask(ids):  # written out, query i and key j one by one
    length = ids.shape[1]
    return np.array(
        [
            [[j <= i and row[j] != 0 for j in range(length)] for i in range(length)]
            for row in ids
        ]
    )


def _attention_parameters(d, h, k):
    import keras

    layer = keras.layers.MultiHeadAttention(num_heads=h, key_dim=k)
    layer.build((None, 3, d), (None, 3, d))
    return layer.count_params()


# notebook 12 reference answers
def _ks_by_hand(a, b, at=None):
    a, b = np.sort(a), np.sort(b)
    at = np.r_[a, b] if at is None else at
    cdf_a, cdf_b = (np.searchsorted(s, at, "right") / len(s) for s in (a, b))
    return np.max(np.abs(cdf_a - cdf_b))


def _promote(champion, challenger, tolerance, strictly=True):
    new, old = challenger["new"] - champion["new"], challenger["old"] - champion["old"]
    return (new > 0 if strictly else new >= 0) and old >= -tolerance


# notebook 14 reference answers


RIGHT = {
    "check_scale_pixels": lambda x: x.astype(np.float32) / 255,
    "check_class_counts": lambda labels, k: np.bincount(labels, minlength=k),
    "check_sigmoid": _sigmoid,
    "check_softmax": _softmax,
    "check_binary_crossentropy": _bce,
    "check_sparse_categorical_crossentropy": _crossentropy,
    "check_logistic_gradient": _gradient,
    "check_cosine_decay": _cosine,
    "check_count_parameters": lambda s: sum(
        n * m + m for n, m in zip(s[:-1], s[1:], strict=True)
    ),
    "check_conv_output_size": _conv_size,
    "check_conv2d": _conv2d,
    "check_max_pool": _max_pool,
    "check_lstm_step": _lstm,
    "check_recurrent_parameter_count": _recurrent_count,
    "check_apply_temperature": _tempered,
    "check_make_windows": _windows,
    "check_discriminator_loss": _d_loss,
    "check_generator_loss": lambda fake: -np.mean(np.log(fake)),
    "check_class_evenness": lambda labels, k: _entropy(labels, k) / np.log(k),
    "check_log_uniform": lambda u, low, high: low * (high / low) ** np.asarray(u),
    "check_search_space": _space,
    "check_best_trial": _best_trial,
    "check_global_batch": lambda per_replica, replicas, steps: (
        per_replica * replicas * steps
    ),
    "check_loss_scaling": _scaled,
    "check_tf_config": _tf_config,
    "check_integrated_gradients": _integrated,
    "check_grad_cam_map": _grad_cam,
    "check_rank_correlation": _ranked,
    "check_int8_parameters": _int8,
    "check_row_request": _rows,
    "check_population_stability_index": _psi_by_histogram,
    # notebook 09 checks
    "check_batch_norm_inference": _bn_inference,
    "check_orientation_histogram": _histogram,
    "check_soft_target_loss": _soft_loss,
    "check_magnitude_mask": _mask,
    # notebooks 10-11 checks
    "check_attention_mask": _causal_padding_mask,
    "check_attention_parameter_count": _attention_parameters,
    # notebook 12 checks
    "check_ks_statistic": _ks_by_hand,
    "check_should_promote": _promote,
    # notebook 14 checks
}

# For each check, wrong answers with a phrase of the hint each must get; together
# they reach every hint of the check (see test_each_known_mistake_gets_its_hint).
WRONG = {
    "check_scale_pixels": [
        (lambda x: x / 255, "Return float32"),
        (lambda x: (x / 256).astype(np.float32), "Divide by 255"),
        (lambda x: (x // 255).astype(np.float32), "true division"),
        (lambda x: x.astype(np.float32) / 128, "0 -> 0.0, 255 -> 1.0"),
    ],
    "check_class_counts": [
        (lambda labels, k: np.unique(labels, return_counts=True)[1], "zeros included"),
        (
            lambda labels, k: np.bincount(labels, minlength=k) / len(labels),
            "not shares",
        ),
        (lambda labels, k: np.bincount(labels, minlength=k)[::-1], "counts[k] is how"),
    ],
    "check_sigmoid": [
        (lambda z: 1 / (1 + np.exp(z)), "Mind the sign"),
        (lambda z: 1 / (1 + math.exp(-z[0])), "element-wise"),
        (np.tanh, "sigma(0) = 0.5"),
    ],
    "check_softmax": [
        (lambda z: np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True), "overflows"),
        (lambda z: np.exp(z) / np.exp(z).sum(axis=0, keepdims=True), "each column"),
        (lambda z: z / z.sum(), "for each row separately"),
    ],
    "check_binary_crossentropy": [
        (lambda y, p: -_bce(y, p), "Keep the minus sign"),
        (lambda y, p: _bce(y, p) * len(y), "not the sum"),
        (lambda y, p: -np.mean(y * np.log(p)), "(1 - y) * log(1 - p) term"),
        (lambda y, p: -(y * np.log(p) + (1 - y) * np.log(1 - p)), "one number"),
        (lambda y, p: 0.5, "L = -mean(y * log(p)"),
    ],
    "check_sparse_categorical_crossentropy": [
        (lambda t, z: -_crossentropy(t, z), "log-probabilities are negative"),
        (lambda t, z: _crossentropy(t, z) * len(t), "not the sum"),
        (lambda t, z: -np.mean(np.log(z[np.arange(len(t)), t])), "softmax first"),
        (lambda t, z: np.zeros(len(t)), "one number"),
        (lambda t, z: 1.0, "the log-probability of each label"),
    ],
    "check_logistic_gradient": [
        (lambda x, y, w, b, l2: _gradient(x, y, w, b, 0.0), "Add l2 * w"),
        (
            lambda x, y, w, b, l2: (
                x.T @ (y - _sigmoid(x @ w + b)) / len(x) + l2 * w,
                0.0,
            ),
            "(p - y), not (y - p)",
        ),
        (
            lambda x, y, w, b, l2: (x.T @ (_sigmoid(x @ w + b) - y) + l2 * w, 0.0),
            "number of examples n",
        ),
        (lambda x, y, w, b, l2: l2 * w, "Return a pair: (grad_w, grad_b)"),
        (lambda x, y, w, b, l2: (w, b), "grad_w = x.T @ (p - y) / n + l2 * w and"),
    ],
    "check_cosine_decay": [
        (
            lambda s, lr, d: lr * 0.5 * (1 + math.cos(math.pi * s / d)),
            "min(step, decay_steps)",
        ),
        (lambda s, lr, d: 2 * _cosine(s, lr, d), "Multiply by 0.5"),
        (lambda s, lr, d: lr, "lr = initial * 0.5"),
    ],
    "check_count_parameters": [
        (
            lambda s: sum(n * m for n, m in zip(s[:-1], s[1:], strict=True)),
            "Count the biases",
        ),
        (lambda s: sum(s), "n * m weights and m biases"),
    ],
    "check_conv_output_size": [
        (lambda n, k, s, p: (n - k) // s, "Add 1"),
        (lambda n, k, s, p: n - k + 1, "Divide by the stride"),
        (lambda n, k, s, p: (n - k) // s + 1, "'same' pads"),
        (lambda n, k, s, p: n, "valid: (size - kernel_size) // stride + 1; same"),
    ],
    "check_conv2d": [
        (lambda x, k: _conv2d(x, k[::-1, ::-1]), "Do not flip"),
        (lambda x, k: x, "every position where it fits"),
        (lambda x, k: _conv2d(x, k) + 1, "out[i, j] = sum(image[i:i + kh"),
    ],
    "check_max_pool": [
        (lambda x: x.reshape(2, 2, 3, 2).mean(axis=(1, 3)), "not its mean"),
        (lambda x: x[::2], "half the height"),
        (lambda x: _max_pool(x) + 1, "do not overlap"),
    ],
    "check_lstm_step": [
        (lambda *args: _lstm(*args, order=(0, 2, 1, 3)), "Keras's order"),
        (_old_c_in_h, "with the new c"),
        (lambda *args: args[1], "Return a pair: (h_new, c_new)"),
        (lambda *args: (args[1], args[2]), "i, f, o = sigmoid(...)"),
    ],
    "check_recurrent_parameter_count": [
        (lambda kind, n, m: _recurrent_count(kind, n - 1, m), "Count the bias"),
        (
            lambda kind, n, m: (
                {"simple_rnn": 1, "lstm": 4, "gru": 3}[kind] * m * (n + m + 1)
            ),
            "two bias vectors a block",
        ),
        (
            lambda kind, n, m: _recurrent_count(
                kind, n, m, {"simple_rnn": 1, "lstm": 3, "gru": 3}
            ),
            "an LSTM has four blocks",
        ),
        (lambda kind, n, m: m * (n + m + 1), "a GRU three"),
        (lambda kind, n, m: 7, "count the blocks"),
    ],
    "check_apply_temperature": [
        (lambda p, t: _tempered(p, 1 / t), "do not multiply"),
        (lambda p, t: p ** (1 / t), "Normalize: divide each row"),
        (lambda p, t: _softmax(p / t), "Take the log first"),
        (lambda p, t: p[0], "Keep the shape (batch, vocabulary)"),
        (lambda p, t: p + 0.01 * (t - 1), "then divide by the row sums"),
    ],
    "check_make_windows": [
        (lambda s, w: (_windows(s, w)[0], s[w - 1 : -1]), "own last value"),
        (
            lambda s, w: (
                np.lib.stride_tricks.sliding_window_view(s, w),
                np.append(s[w:], 0.0),
            ),
            "has no next value",
        ),
        (lambda s, w: s, "Return a pair: (inputs, targets)"),
        (lambda s, w: (s, s), "Window i is series[i:i + window]"),
    ],
    "check_discriminator_loss": [
        (lambda r, f: -np.mean(np.log(r)), "generated batch's term"),
        (lambda r, f: -np.mean(np.log(1 - f)), "real batch's term"),
        (lambda r, f: -_d_loss(r, f), "Keep the minus sign"),
        (lambda r, f: _d_loss(f, r), "not the reverse"),
        (lambda r, f: _d_loss(r, f) / 2, "do not average"),
        (lambda r, f: -np.sum(np.log(r)) - np.sum(np.log(1 - f)), "not the sum"),
        (lambda r, f: np.log(r), "Return one number"),
        (lambda r, f: 1.0, "L_D = -mean(log D(x))"),
    ],
    "check_generator_loss": [
        (lambda f: np.mean(np.log(1 - f)), "saturating minimax"),
        (lambda f: np.mean(np.log(f)), "Keep the minus sign"),
        (lambda f: -np.mean(np.log(1 - f)), "not log(1 - D(G(z)))"),
        (lambda f: -np.sum(np.log(f)), "mean over the examples, not the sum"),
        (lambda f: -np.log(f), "Return one number"),
        (lambda f: 1.0, "The non-saturating loss is"),
    ],
    "check_class_evenness": [
        (_entropy, "so that an even spread gives 1"),
        (_with_empty_classes, "0 * log(0)"),
        (
            lambda labels, k: _entropy(labels, k) / np.log(len(labels)),
            "entropy of all classes equally common",
        ),
        (lambda labels, k: 0.5, "q = counts / counts.sum()"),
    ],
    "check_log_uniform": [
        (lambda u, low, high: low + np.asarray(u) * (high - low), "uniform scale"),
        (lambda u, low, high: np.asarray(u) * 0, "Interpolate the exponent"),
    ],
    "check_search_space": [
        (lambda hp: {"filters": hp.Choice("filters", [8, 16, 32])}, "keys"),
        (
            lambda hp: {
                "filters": hp.Int("filters", 8, 32, step=8, default=16),
                "kernel_size": hp.Choice("kernel_size", [3, 5]),
            },
            "is a Choice",
        ),
        (
            lambda hp: {
                "filters": hp.Choice("filters", [8, 16, 32]),
                "kernel_size": hp.Choice("kernel_size", [3, 5]),
            },
            "builder's default",
        ),
        (
            lambda hp: {
                "filters": hp.Choice("n_filters", [8, 16, 32], default=16),
                "kernel_size": hp.Choice("kernel_size", [3, 5]),
            },
            "no hyperparameter named 'filters'",
        ),
        (
            lambda hp: {
                "filters": 16 + 0 * hp.Choice("filters", [8, 16, 32], default=16),
                "kernel_size": hp.Choice("kernel_size", [3, 5], default=3) and 5,
            },
            "Return the values hp gives you",
        ),
    ],
    "check_best_trial": [
        (lambda table, direction: table.score.idxmax(), "smallest"),
        (
            lambda table, direction: (
                table.score.idxmin() if direction == "max" else table.score.idxmax()
            ),
            "largest",
        ),
        (lambda table, direction: table.score.fillna(1.0).idxmax(), "NaN"),
        (lambda table, direction: int(np.nanargmax(table.score)), "trial id"),
    ],
    "check_global_batch": [
        (lambda b, r, s: b * r, "Accumulation adds"),
        (lambda b, r, s: b + r + s, "The factors multiply"),
        (lambda b, r, s: b, "Every replica takes"),
    ],
    "check_loss_scaling": [
        (lambda g, s: g.astype(np.float16).astype(np.float32), "before the cast"),
        (lambda g, s: (g * s).astype(np.float16).astype(np.float32), "Divide by"),
        (lambda g, s: g[:2], "same shape"),
        (lambda g, s: g * 2, "Three steps"),
    ],
    "check_tf_config": [
        (lambda a, i: "not json", "json.dumps"),
        (
            lambda a, i: {
                "cluster": {"worker": a},
                "task": {"type": "worker", "index": str(i)},
            },
            "as an integer",
        ),
        (
            lambda a, i: {
                "cluster": {"worker": a},
                "task": {"type": "chief", "index": i},
            },
            "task.type is 'worker'",
        ),
        (
            lambda a, i: {"cluster": a, "task": {"type": "worker", "index": i}},
            "Two keys",
        ),
    ],
    "check_integrated_gradients": [
        (lambda g, x, b, n: _integrated(g, x, b, n) / (x - b), "by (x - baseline)"),
        (lambda g, x, b, n: (x - b) * _path(g, x, b, n)[:-1].mean(0), "left Riemann"),
        (lambda g, x, b, n: (x - b) * _path(g, x, b, n)[1:].mean(0), "right Riemann"),
        (lambda g, x, b, n: (x - b) * g(x), "g_k = gradient(baseline + k / steps"),
    ],
    "check_grad_cam_map": [
        (lambda m, g: (m * g.mean(axis=(0, 1))).sum(axis=-1), "Apply a ReLU"),
        (lambda m, g: _heat(m, g), "not position by position"),
        (lambda m, g: _heat(m, g) / _heat(m, g).max(), "not position by position"),
        (lambda m, g: _heat(m, g.mean(axis=(0, 1))), "Divide by the map's maximum"),
        (lambda m, g: np.maximum(m * g.mean(axis=(0, 1)), 0), "ReLU(sum over k"),
    ],
    "check_rank_correlation": [
        (lambda a, b: _ranked(a, b, rank=np.ravel), "Pearson's correlation of the"),
        (
            lambda a, b: _ranked(a, b, rank=lambda v: np.argsort(np.argsort(v))),
            "share their average rank",
        ),
        (lambda a, b: _ranked(a, b, rank=np.argsort), "correlation of the ranks"),
    ],
    "check_int8_parameters": [
        (lambda low, high: (high - low) / 255, "Return a pair"),
        (lambda low, high: ((high - low) / 256, -128), "255 steps"),
        (lambda low, high: (_int8(low, high)[0], _int8(low, high)[1] + 128), "uint8"),
        (lambda low, high: (_int8(low, high)[0], -128 + low * 255 / 4), "the sign"),
        (lambda low, high: (_int8(low, high)[0], -128 - low * 255 / 4), "Round"),
        (
            lambda low, high: _int8(low, high) if low <= 0 else (1.5 / 255, -213),
            "Widen",
        ),
        (lambda low, high: (1.0, -128), "zero_point = round(-128 - low / scale)"),
    ],
    "check_row_request": [
        (lambda columns: {"instances": [{"pixels": np.zeros(2)}]}, ".tolist()"),
        (lambda columns: {"inputs": _rows(columns)["instances"]}, "columnar format"),
        (lambda columns: {"instances": {"pixels": [], "scanner": []}}, "not one entry"),
        (lambda columns: {"instances": [[0.0, 255.0], [17.0, 3.0]]}, "an object from"),
        (lambda columns: json.dumps(_rows(columns))[:-1] + ', "x": 1}', "for i in"),
    ],
    "check_population_stability_index": [
        (lambda r, s: _psi_by_histogram(r, s, kl=True), "not by q alone"),
        (
            lambda r, s: _psi_by_histogram(r, s, inner=np.histogram_bin_edges(r)[1:-1]),
            "not at equal widths",
        ),
        (lambda r, s: _psi_by_histogram(r, s, floor=0.0), "Floor the fractions"),
        (lambda r, s: np.mean(s) - np.mean(r), "PSI = sum((q - p)"),
    ],
    # notebook 09 mistakes
    "check_batch_norm_inference": [
        (
            lambda x, m, v, g, b: _bn_inference(x, x.mean(0), x.var(0), g, b),
            "batch's own statistics",
        ),
        (lambda x, m, v, g, b: g * (x - m) / (v + 1e-3) + b, "not the variance"),
        (lambda x, m, v, g, b: (x - m) / np.sqrt(v + 1e-3), "by gamma and shift"),
        (lambda x, m, v, g, b: x[:2], "gamma * (x - moving_mean)"),
    ],
    "check_orientation_histogram": [
        (lambda cell, bins: _histogram(cell, bins, weights=False), "magnitude"),
        (
            lambda cell, bins: np.histogram(
                np.degrees(np.arctan2(*np.gradient(cell.astype(float)))) % 360,
                bins,
                range=(0, 180),
                weights=np.hypot(*np.gradient(cell.astype(float))),
            )[0],
            "unsigned",
        ),
        (
            lambda cell, bins: np.histogram(
                np.degrees(np.arctan2(*np.gradient(cell.astype(float))[::-1])) % 180,
                bins,
                range=(0, 180),
                weights=np.hypot(*np.gradient(cell.astype(float))),
            )[0],
            "along rows (y) first",
        ),
        (lambda cell, bins: np.ones(bins), "np.histogram(angle"),
    ],
    "check_soft_target_loss": [
        (lambda s, t, temp: _soft_loss(s, t, temp, factor=1), "temperature**2"),
        (lambda s, t, temp: _soft_loss(t, s, temp), "teacher's probabilities"),
        (lambda s, t, temp: _soft_loss(s, t, 1.0) * temp**2, "Divide both sets"),
        (lambda s, t, temp: _soft_loss(s, t, temp) * len(s), "Average over"),
        (lambda s, t, temp: 0.5, "p = softmax(teacher / T)"),
    ],
    "check_magnitude_mask": [
        (lambda w, s: _mask(w, s, values=lambda v: v), "by magnitude"),
        (lambda w, s: 1 - _mask(w, s), "1 for the weights you keep"),
        (lambda w, s: _mask(w, 1 - s), "not the fraction kept"),
        (lambda w, s: np.ones_like(w), "np.argsort over"),
    ],
    # notebooks 10-11 mistakes
    "check_attention_mask": [
        (lambda ids: _causal_padding_mask(ids)[0], "shape (batch, length, length)"),
        (lambda ids: np.tril(np.ones((2, 5, 5))), "hide the padding keys (id 0)"),
        (lambda ids: np.ones((2, 5, 1)) * (ids != 0)[:, None, :], "hide the future"),
        (lambda ids: (ids[:, None, :] != 0) & np.triu(np.ones((5, 5), bool)), "lower"),
        (lambda ids: (ids[:, :, None] != 0) & np.tril(np.ones((5, 5), bool)), "rows"),
        (lambda ids: np.ones((2, 5, 5), bool), "mask = (ids[:, None, :] != 0)"),
    ],
    "check_attention_parameter_count": [
        (lambda d, h, k: 4 * d * h * k, "Count the biases"),
        (lambda d, h, k: 3 * (d * h * k + h * k), "output projection"),
        (lambda d, h, k: 4 * d * k + 3 * k + d, "Every head"),
        (lambda d, h, k: d * h * k, "Query, key, value: d x (h * k)"),
    ],
    # notebook 12 mistakes
    "check_ks_statistic": [
        (lambda a, b: stats.ks_2samp(a, b, alternative="greater").statistic, "|F_a"),
        (lambda a, b: _ks_by_hand(a, b, at=np.asarray(a)), "not only at those of a"),
        (lambda a, b: abs(np.mean(a) - np.mean(b)), "not their means"),
        (lambda a, b: 0.5, "np.searchsorted"),
    ],
    "check_should_promote": [
        (lambda c, n, t: _promote(c, n, 0.0), "Allow the tolerance"),
        (lambda c, n, t: n["new"] > c["new"], "Check the old domain too"),
        (lambda c, n, t: _promote(c, n, t, strictly=False), "strictly better"),
        (lambda c, n, t: _promote(c, n, t) and t > 0, "champion['old'] - tolerance."),
    ],
    # notebook 14 mistakes
}


def _run(check, answer, capsys):
    verdict = check(answer)
    return verdict, capsys.readouterr().out


def _stub(*args):
    """What a learner's function returns before they fill it in."""


def _table_hints(check):
    """The hints of a check made by `_exercise`: one per mistake, then the general."""
    table = inspect.getclosurevars(check).nonlocals
    return {hint for _, hint in table["known"]} | {table["general"]}


@pytest.mark.parametrize("name", RIGHT)
def test_a_right_answer_passes(name, capsys):
    verdict, out = _run(getattr(exercises, name), RIGHT[name], capsys)
    assert verdict is True and out.startswith("Correct! "), out


@pytest.mark.parametrize("name", WRONG)
def test_each_known_mistake_gets_its_hint(name, capsys):
    check, printed = getattr(exercises, name), set()
    for answer, phrase in WRONG[name]:
        verdict, out = _run(check, answer, capsys)
        assert verdict is False and out.startswith("Not yet.\n  Received: "), out
        assert phrase in out, (phrase, out)
        printed.add(re.search(r"\n  Hint: (.*)\n", out).group(1))
    if name != "check_search_space":  # not a table: its hints are written out
        assert printed == _table_hints(check)


@pytest.mark.parametrize("name", RIGHT)
@pytest.mark.parametrize("answer", [_stub, ..., None, "text"], ids=repr)
def test_a_missing_answer_is_rejected_without_raising(name, answer, capsys):
    verdict, out = _run(getattr(exercises, name), answer, capsys)
    assert verdict is False and "Expected: " in out and "`return` the result" in out
    if answer is _stub:
        assert "None (the function returns nothing yet)" in out
    else:
        assert f"{answer!r}, which is not a function" in out


@pytest.mark.parametrize("name", RIGHT)
def test_a_ragged_answer_is_rejected_without_raising(name, capsys):
    verdict, out = _run(
        getattr(exercises, name), lambda *_: [np.ones((2, 3)), 5], capsys
    )
    assert verdict is False and "\n  Hint: " in out


@pytest.mark.parametrize("name", RIGHT)
def test_an_error_in_the_answer_is_reported(name, capsys):
    def broken(*args):
        raise ZeroDivisionError("division by zero")

    verdict, out = _run(getattr(exercises, name), broken, capsys)
    assert verdict is False and "ZeroDivisionError: division by zero" in out


def _mlp(l2=1e-4, dropout=0.3, hidden=2, input_shape=(28, 28)):
    import keras

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


def test_check_regularized_mlp(capsys):
    assert exercises.check_regularized_mlp(_mlp()) is True
    assert capsys.readouterr().out.startswith("Correct! ")
    for model, hint in [
        (None, "Return keras.Sequential([...]) from build."),
        (_mlp(input_shape=(784,)), "Start with keras.Input((28, 28))"),
        (_mlp(hidden=1), "Stack two Dense layers"),
        (_mlp(l2=0), "kernel_regularizer=keras.regularizers.L2"),
        (_mlp(dropout=0), "Add keras.layers.Dropout(0.3)"),
    ]:
        assert exercises.check_regularized_mlp(model) is False
        assert hint in capsys.readouterr().out


def _exercise_cells():
    """`(notebook, source, stdout)` of the cells that call a check."""
    for path in sorted(NOTEBOOKS.glob("[0-9]*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            source = "".join(cell.get("source", ""))
            stdout = "".join(
                "".join(output.get("text", ""))
                for output in cell.get("outputs", [])
                if output.get("name") == "stdout"
            )
            if re.search(r"\b(?:exercises|checks)\.check_\w+\(", source) and stdout:
                yield path.name, source, stdout


CELLS = list(_exercise_cells())


def test_the_notebooks_call_every_check():
    called = {
        name
        for _, source, _ in CELLS
        for name in re.findall(r"\.(check_\w+)\(", source)
    }
    assert called == {n for n in exercises.__all__ if n.startswith("check_")}


@pytest.mark.parametrize("notebook, source, stdout", CELLS, ids=[c[0] for c in CELLS])
def test_the_notebooks_stored_messages_are_still_printed(
    notebook, source, stdout, capsys
):
    name = re.search(r"\.(check_\w+)\(", source).group(1)
    unfilled = re.fullmatch(r"\S+\.check_\w+\(\w+(\(\))?\)\s*", source)
    if unfilled:  # the exercise as given: a stub (or a builder returning None)
        answer = None if unfilled.group(1) else _stub
        assert getattr(exercises, name)(answer) is False
        assert capsys.readouterr().out == stdout
    else:  # the solution cell: the success line
        answer = _mlp() if name == "check_regularized_mlp" else RIGHT[name]
        assert getattr(exercises, name)(answer) is True
        assert stdout.startswith(capsys.readouterr().out)


def test_keras_answers_pass(capsys):
    """The references agree with Keras: answers computed by Keras pass."""
    import keras
    import tensorflow as tf

    def lstm_step(x, h, c, kernel, recurrent_kernel, bias):
        cell = keras.layers.LSTMCell(h.shape[-1])
        cell.build(x.shape)
        cell.set_weights([kernel, recurrent_kernel, bias])
        h_new, (_, c_new) = cell(x.astype("float32"), [h, c])
        return h_new, c_new

    def parameter_count(kind, input_dim, units):
        layer = {"simple_rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM}
        layer = layer.get(kind, keras.layers.GRU)(units)
        layer.build((None, None, input_dim))
        return layer.count_params()

    def make_windows(series, window):
        data = keras.utils.timeseries_dataset_from_array(
            series[:-1], series[window:], sequence_length=window, batch_size=99
        )
        return tuple(np.asarray(part) for part in next(iter(data)))

    def conv_output_size(size, kernel_size, stride, padding):
        layer = keras.layers.Conv2D(1, kernel_size, stride, padding)
        return layer.compute_output_shape((1, size, size, 1))[1]

    def conv2d(image, kernel):
        image, kernel = image.astype("float32"), kernel.astype("float32")
        output = keras.ops.conv(image[None, :, :, None], kernel[:, :, None, None])
        return output[0, :, :, 0]

    bce = keras.losses.BinaryCrossentropy()
    crossentropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    answers = {
        "check_sigmoid": keras.ops.sigmoid,
        "check_softmax": keras.ops.softmax,
        "check_binary_crossentropy": lambda y, p: bce(y, p),
        "check_sparse_categorical_crossentropy": crossentropy,
        "check_cosine_decay": lambda step, lr, n: (
            keras.optimizers.schedules.CosineDecay(lr, n)(step)
        ),
        "check_count_parameters": lambda sizes: keras.Sequential(
            [keras.Input((sizes[0],)), *[keras.layers.Dense(m) for m in sizes[1:]]]
        ).count_params(),
        "check_conv_output_size": conv_output_size,
        "check_conv2d": conv2d,
        "check_max_pool": lambda image: keras.layers.MaxPooling2D(2)(
            image[None, :, :, None]
        )[0, :, :, 0],
        "check_lstm_step": lstm_step,
        "check_recurrent_parameter_count": parameter_count,
        "check_make_windows": make_windows,
        "check_discriminator_loss": lambda real, fake: (
            bce(tf.ones_like(real), real) + bce(tf.zeros_like(fake), fake)
        ),
        "check_generator_loss": lambda fake: bce(tf.ones_like(fake), fake),
    }
    for name, answer in answers.items():
        assert getattr(exercises, name)(answer), capsys.readouterr().out


def test_small_convnet_builds_the_space_default():
    import keras_tuner

    model = exercises.small_convnet(**_space(keras_tuner.HyperParameters()))
    assert model.output_shape == (None, 10)
    assert model.layers[1].kernel_size == (3, 3)


def test_the_module_example_runs():
    assert doctest.testmod(exercises).failed == 0


def test_messages_are_deterministic_and_rounded(capsys):
    outputs = []
    for _ in range(2):
        exercises.check_sigmoid(lambda z: 1 / (1 + np.exp(z)) + 1e-9)
        exercises.check_best_trial(lambda table, direction: table.score.idxmax())
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert "0.8808" in outputs[0] and "e-" not in outputs[0]


def test_importing_the_checks_does_not_import_tensorflow():
    code = (
        "import sys, dlkit.exercises;"
        "assert not {'tensorflow', 'keras', 'pandas'} & set(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
