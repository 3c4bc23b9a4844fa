import os
import random

import numpy as np
import pytest

import dlkit


def test_setup_seeds_every_generator_and_prints_one_line(capsys, monkeypatch):
    monkeypatch.delenv("DLKIT_PROFILE", raising=False)
    import tensorflow as tf

    assert dlkit.setup(seed=3) == "quick"
    first = (random.random(), np.random.rand(), float(tf.random.uniform(())))
    dlkit.setup(seed=3, verbose=False)
    second = (random.random(), np.random.rand(), float(tf.random.uniform(())))
    assert first == second
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert f"TensorFlow {tf.__version__}" in lines[0] and "profile quick" in lines[0]
    assert "CPU x" in lines[0] and "seed 3" in lines[0]


def test_setup_exports_the_profile(monkeypatch):
    monkeypatch.delenv("DLKIT_PROFILE", raising=False)
    dlkit.setup(profile="full", verbose=False)
    assert os.environ["DLKIT_PROFILE"] == "full"
    assert dlkit.get_profile() == "full"
    dlkit.setup(profile="quick", verbose=False)
    assert dlkit.get_profile() == "quick"


@pytest.mark.parametrize("seed", [-1, 1.5, "42", True])
def test_setup_rejects_bad_seeds(seed):
    with pytest.raises(ValueError, match="Received: seed="):
        dlkit.setup(seed=seed)


def test_environment_report_names_versions_and_devices():
    lines = dlkit.env.environment_report()
    text = "\n".join(lines)
    assert "tensorflow" in text and "keras" in text and "GPUs: none visible" in text
