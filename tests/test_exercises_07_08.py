import doctest
import json

import keras
import keras_tuner
import numpy as np
import pytest

from dlkit import exercises as checks
from dlkit import training, tuning


def _stub(*args):
    """What a learner's function returns before they fill it in."""


def _raises(*args):
    raise RuntimeError("boom")


def _feedback(capsys):
    return capsys.readouterr().out


def test_module_example_runs():
    assert doctest.testmod(checks).failed == 0


# 07 · Tuning.


def _log_uniform(u, low, high):
    return low * (high / low) ** np.asarray(u)


def test_log_uniform(capsys):
    assert checks.check_log_uniform(_log_uniform)
    assert "Correct!" in _feedback(capsys)


@pytest.mark.parametrize(
    "answer, hint",
    [
        (_stub, "Replace `...`"),
        (_raises, "RuntimeError: boom"),
        ("log", "not a function"),
        (lambda u, low, high: low + np.asarray(u) * (high - low), "uniform scale"),
        (lambda u, low, high: np.asarray(u) * 0, "Interpolate the exponent"),
    ],
)
def test_log_uniform_wrong(answer, hint, capsys):
    assert checks.check_log_uniform(answer) is False
    feedback = _feedback(capsys)
    assert "Not yet." in feedback and hint in feedback


def _space(hp):
    return {
        "filters": hp.Choice("filters", [8, 16, 32], default=16),
        "kernel_size": hp.Choice("kernel_size", [3, 5], default=3),
    }


def test_search_space(capsys):
    assert checks.check_search_space(_space)
    assert "Correct!" in _feedback(capsys)
    trainer = training.Trainer(loss="sparse_categorical_crossentropy")
    hypermodel = tuning.HyperModel(checks.small_convnet, trainer, space=_space)
    assert isinstance(hypermodel.build(keras_tuner.HyperParameters()), keras.Model)


@pytest.mark.parametrize(
    "answer, hint",
    [
        (_stub, "Replace `...`"),
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
)
def test_search_space_wrong(answer, hint, capsys):
    assert checks.check_search_space(answer) is False
    feedback = _feedback(capsys)
    assert "Not yet." in feedback and hint in feedback


def _best_trial(table, direction):
    scores = table.score.dropna()
    return scores.idxmax() if direction == "max" else scores.idxmin()


def test_best_trial(capsys):
    assert checks.check_best_trial(_best_trial)
    assert "Correct!" in _feedback(capsys)


@pytest.mark.parametrize(
    "answer, hint",
    [
        (_stub, "Replace `...`"),
        (lambda table, direction: table.score.idxmax(), "smallest"),
        (lambda table, direction: table.score.fillna(1.0).idxmax(), "NaN"),
        (lambda table, direction: int(np.nanargmax(table.score)), "trial id"),
    ],
)
def test_best_trial_wrong(answer, hint, capsys):
    assert checks.check_best_trial(answer) is False
    feedback = _feedback(capsys)
    assert "Not yet." in feedback and hint in feedback


# 08 · Scaling.


def test_global_batch(capsys):
    assert checks.check_global_batch(lambda b, r, s: b * r * s)
    assert "Correct!" in _feedback(capsys)


@pytest.mark.parametrize(
    "answer, hint",
    [
        (_stub, "Replace `...`"),
        (lambda b, r, s: b * r, "Accumulation adds"),
        (lambda b, r, s: b + r + s, "The factors multiply"),
        (lambda b, r, s: b, "Every replica takes"),
    ],
)
def test_global_batch_wrong(answer, hint, capsys):
    assert checks.check_global_batch(answer) is False
    feedback = _feedback(capsys)
    assert "Not yet." in feedback and hint in feedback


def _scaled_gradient(gradient, scale):
    return (gradient * scale).astype(np.float16).astype(np.float32) / scale


def test_loss_scaling(capsys):
    assert checks.check_loss_scaling(_scaled_gradient)
    assert "Correct!" in _feedback(capsys)


@pytest.mark.parametrize(
    "answer, hint",
    [
        (_stub, "Replace `...`"),
        (
            lambda g, s: g.astype(np.float16).astype(np.float32) * s / s,
            "before the cast",
        ),
        (lambda g, s: (g * s).astype(np.float16).astype(np.float32), "Divide by"),
        (lambda g, s: g[:2], "same shape"),
        (lambda g, s: g * 2, "Three steps"),
    ],
)
def test_loss_scaling_wrong(answer, hint, capsys):
    assert checks.check_loss_scaling(answer) is False
    feedback = _feedback(capsys)
    assert "Not yet." in feedback and hint in feedback


def _tf_config(addresses, index):
    cluster = {"worker": addresses}
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


def test_tf_config(capsys):
    assert checks.check_tf_config(_tf_config)
    assert checks.check_tf_config(lambda a, i: json.loads(_tf_config(a, i)))
    assert "Correct!" in _feedback(capsys)


@pytest.mark.parametrize(
    "answer, hint",
    [
        (_stub, "Replace `...`"),
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
)
def test_tf_config_wrong(answer, hint, capsys):
    assert checks.check_tf_config(answer) is False
    feedback = _feedback(capsys)
    assert "Not yet." in feedback and hint in feedback


@pytest.mark.parametrize(
    "check, answer",
    [
        (checks.check_best_trial, lambda table, direction: table.score.idxmax()),
        (checks.check_search_space, _stub),
        (checks.check_loss_scaling, lambda g, s: g * 2),
        (checks.check_tf_config, _raises),
    ],
)
def test_messages_are_deterministic(check, answer, capsys):
    check(answer)
    once = _feedback(capsys)
    check(answer)
    assert _feedback(capsys) == once
