"""Input-drift statistics on real images: scikit-learn's 8x8 digits."""

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

from dlkit import monitor


@pytest.fixture(scope="module")
def digits():
    images = load_digits().images  # 1,797 images, pixels 0 to 16
    return images[:1000], images[1000:]


def brighter(images):
    """A "new scanner": brighter, lower-contrast digits."""
    return np.clip(images * 0.6 + 5, 0, 16)


def test_input_statistics_has_one_value_per_example(digits):
    reference, _ = digits
    statistics = monitor.input_statistics(reference[:3])
    assert sorted(statistics) == ["max", "mean", "min", "std"]
    assert all(values.shape == (3,) for values in statistics.values())
    assert statistics["mean"][0] == pytest.approx(reference[0].mean())


def test_drift_report_flags_shifted_inputs_only(digits):
    reference, served = digits
    same = monitor.drift_report(reference, served)
    shifted = monitor.drift_report(reference, brighter(served))
    assert list(same.columns) == ["reference_mean", "served_mean", "psi", "drift"]
    assert not same["drift"].any(), same
    assert (same["psi"] < 0.1).all(), same
    assert shifted["drift"].all(), shifted  # min 0 -> 5, max 16 -> 14.6, ...
    assert shifted.loc["mean", "served_mean"] > shifted.loc["mean", "reference_mean"]


def test_input_log_round_trip_feeds_the_drift_report(digits, tmp_path):
    reference, served = digits
    log = tmp_path / "served.jsonl"
    monitor.write_input_log(log, served[:300])
    monitor.write_input_log(log, brighter(served[300:]))  # appends
    logged = monitor.read_input_log(log)
    expected = monitor.input_statistics(served[:300])
    assert len(logged["mean"]) == len(served)
    np.testing.assert_allclose(logged["std"][:300], expected["std"])
    recent = {name: values[300:] for name, values in logged.items()}
    assert monitor.drift_report(reference, recent)["drift"].all()
    assert monitor.drift_report(reference, log)["psi"].gt(0).all()


def test_population_stability_index_of_piled_up_values():
    reference = np.r_[np.zeros(900), np.linspace(0.01, 0.5, 100)]  # 90% exactly 0
    assert monitor.population_stability_index(reference, reference) == 0
    assert monitor.population_stability_index(reference, np.full(50, 0.3)) > 1
    assert monitor.population_stability_index(reference, np.full(50, -0.1)) > 1
    assert monitor.population_stability_index(reference, reference[::10]) < 0.1


def test_population_stability_index_needs_data():
    with pytest.raises(ValueError, match="send some requests"):
        monitor.population_stability_index(np.ones(10), np.array([]))


# -------------------------------------------------- drift tests and clean text
def test_drift_test_flags_a_shift_not_a_fresh_sample():
    rng = np.random.default_rng(0)
    reference = rng.beta(8, 2, size=400)  # confidences of a sure model
    fresh = [
        monitor.drift_test(reference, rng.beta(8, 2, size=100)) for _ in range(200)
    ]
    shifted = monitor.drift_test(reference, rng.beta(5, 2, size=100))  # less sure
    assert np.mean([test.drift for test in fresh]) <= 0.05  # alpha 0.01 on average
    assert shifted.drift and shifted.p_value < 1e-3, shifted
    assert 0 <= shifted.statistic <= 1


def test_drift_test_on_categories():
    rng = np.random.default_rng(1)
    reference = rng.choice(3, size=600, p=[0.5, 0.3, 0.2])
    same = monitor.drift_test(
        reference, rng.choice(3, 200, p=[0.5, 0.3, 0.2]), test="chi2"
    )
    shifted = monitor.drift_test(
        reference, rng.choice(3, 200, p=[0.2, 0.3, 0.5]), test="chi2"
    )
    assert shifted.drift and shifted.p_value < 1e-6, shifted
    assert same.p_value > shifted.p_value
    assert not monitor.drift_test(np.zeros(5), np.zeros(5), test="chi2").drift


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(test="t"), "Received: test='t'"),
        (dict(alpha=1.5), "alpha=1.5"),
        (dict(alpha="chi2"), "alpha='chi2'"),
        (dict(served=[]), "argument `served`. Received: an array of shape (0,)"),
        (dict(reference=np.ones((3, 2))), "Expected a non-empty 1-D sample"),
    ],
)
def test_drift_test_rejects_bad_arguments(kwargs, message):
    arguments = dict(reference=np.ones(5), served=np.ones(5)) | kwargs
    with pytest.raises(ValueError, match=re.escape(message)):
        monitor.drift_test(**arguments)


def test_prediction_confidence():
    np.testing.assert_allclose(
        monitor.prediction_confidence([0.1, 0.5, 0.8]), [0.9, 0.5, 0.8]
    )
    np.testing.assert_allclose(
        monitor.prediction_confidence([[0.3], [0.6]]), [0.7, 0.6]
    )
    softmax = [[0.2, 0.7, 0.1], [0.4, 0.3, 0.3]]
    np.testing.assert_allclose(monitor.prediction_confidence(softmax), [0.7, 0.4])
    for logits in ([2.0, -1.0], np.zeros((2, 2, 2)), []):
        with pytest.raises(ValueError, match="not logits"):
            monitor.prediction_confidence(logits)


GOOD_ROWS = [
    ("The food was great.", 1),
    ("My fiancé and I loved the crêpes.", 1),  # real accents are fine
    ("Not worth it.", 0),
]


@pytest.mark.parametrize(
    "text, label, check",
    [
        ("The food was great.", 1, "field_uniqueness"),  # a second copy
        ("", 0, "blank"),
        (" \t\n ", 0, "blank"),
        ("The service was \ufffd slow.", 0, "broken_encoding"),
        ("My fiancÃ© loved it.", 1, "broken_encoding"),  # UTF-8 read as cp1252
        ("Great phone\u00e2\u20ac\u2122s battery.", 1, "broken_encoding"),  # ’
        ("All the problems\x97the acting.", 0, "broken_encoding"),  # a C1 control
        ("word " * 300, 1, "too_long"),
        ("Fine.", 2, "invalid_label"),
        ("Fine.", -1, "invalid_label"),
    ],
)
def test_each_cleaning_rule_catches_its_own_bad_input(text, label, check):
    rows = pd.DataFrame(GOOD_ROWS + [(text, label)], columns=["text", "label"])
    valid, failures = monitor.validate(rows, monitor.text_schema())
    assert failures[["check", "index"]].values.tolist() == [[check, 3]], failures
    assert valid.index.tolist() == [0, 1, 2]


def test_clean_text_passes_the_schema():
    rows = pd.DataFrame(GOOD_ROWS, columns=["text", "label"])
    valid, failures = monitor.validate(rows, monitor.text_schema(max_characters=40))
    assert failures.empty and list(failures.columns) == [
        "column",
        "check",
        "failure_case",
        "index",
    ]
    assert valid.equals(rows)
    _, failures = monitor.validate(rows, monitor.text_schema(labels=(1,)))
    assert failures["index"].tolist() == [2]  # label 0 is invalid here
