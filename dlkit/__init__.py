"""dlkit: helpers for a Keras 3 / TensorFlow notebook course.

Datasets that work offline, model builders, a trainer that runs the same code
on a laptop CPU, several GPUs or several machines, plots, tuning and deployment
glue. Start a notebook with:

>>> import dlkit
>>> dlkit.setup(seed=42)  # doctest: +SKIP

`import dlkit` is light: each submodule (and TensorFlow with it) loads the
first time it is used, e.g. `dlkit.training.Trainer` (PEP 562).
"""

import importlib
import os

# Before anything imports TensorFlow: hide its C++ info and warning lines.
# A value the user set wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from dlkit.env import get_profile, setup  # noqa: E402

__version__ = "0.1.0"

_SUBMODULES = (
    *("compress", "datasets", "deploy", "env", "exercises", "explain", "models"),
    *("monitor", "plots", "serve", "training", "tuning"),
)
__all__ = [*_SUBMODULES, "__version__", "get_profile", "setup"]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"dlkit.{name}")
    raise AttributeError(f"module 'dlkit' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
