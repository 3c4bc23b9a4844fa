"""Input-drift statistics on real images: scikit-learn's 8x8 digits."""

import numpy as np
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
