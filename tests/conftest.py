"""Shared test fixtures: tiny data and models, so that real training takes a second.

Fixtures that make things return a function, so each test says what size it
needs: `tiny_data(128)`, `tiny_data(32, seed=1)`.
"""

import socket

import numpy as np
import pytest


@pytest.fixture
def tiny_data():
    """A function `(examples=96, seed=0) -> (x, y)`: 6 float32 features, 2 classes.

    The label says whether the first three features sum to more than the last
    three, so a small MLP learns it in a few epochs.
    """

    def make(examples=96, seed=0):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(examples, 6)).astype("float32")
        y = (x[:, :3].sum(axis=1) > x[:, 3:].sum(axis=1)).astype("int32")
        return x, y

    return make


@pytest.fixture
def build_tiny():
    """A function `(width=8, depth=1) -> keras.Model`: a small MLP for `tiny_data`."""
    from dlkit import models

    def build(width=8, depth=1):
        return models.mlp(input_shape=(6,), num_classes=2, depth=depth, width=width)

    return build


@pytest.fixture(scope="session")
def free_port():
    """A function `() -> int`: a TCP port on 127.0.0.1 that is free right now."""

    def find():
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    return find
