"""dlkit: helpers for a Keras 3 / TensorFlow notebook course.

Datasets that work offline, model builders, a trainer that runs the same code
on a laptop CPU, several GPUs or several machines, plots, tuning and deployment
glue. Start a notebook with:

>>> import dlkit
>>> dlkit.setup(seed=42)  # doctest: +SKIP
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from dlkit import (  # noqa: E402
    datasets,
    deploy,
    env,
    exercises,
    models,
    plots,
    serve,
    training,
    tuning,
)
from dlkit.env import get_profile, setup  # noqa: E402
from dlkit.training import Trainer, train  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Trainer",
    "__version__",
    "datasets",
    "deploy",
    "env",
    "exercises",
    "get_profile",
    "models",
    "plots",
    "serve",
    "setup",
    "train",
    "training",
    "tuning",
]
