"""Notebook setup: seeds, determinism, quiet logs, plot style, and the run profile."""

import importlib.metadata
import logging
import os
import platform

PROFILES = ("quick", "full")
DEFAULT_PROFILE = "quick"


def get_profile(profile=None):
    """Returns the data profile to use: `"quick"` or `"full"`.

    The `quick` profile uses small real datasets that need no network, so every
    notebook runs in about a minute and its stored outputs reproduce anywhere.
    The `full` profile downloads the official full datasets.

    Args:
        profile: `"quick"`, `"full"` or `None`. With `None`, the environment
            variable `DLKIT_PROFILE` decides. Defaults to `None`, which means
            `"quick"` when `DLKIT_PROFILE` is not set.

    Returns:
        The profile name.

    Raises:
        ValueError: if the profile is not one of `"quick"` and `"full"`.
    """
    source = "argument `profile`"
    if profile is None:
        profile = os.environ.get("DLKIT_PROFILE") or DEFAULT_PROFILE
        source = "environment variable DLKIT_PROFILE"
    if profile not in PROFILES:
        raise ValueError(
            f"Invalid data profile in {source}. Received: {profile!r}. "
            f"Expected one of {PROFILES}. Use 'quick' for the small offline "
            "datasets or 'full' for the official full downloads."
        )
    return profile


def quiet_tensorflow():
    """Silences TensorFlow's C++ and Python info/warning logs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


def set_plot_style():
    """Sets matplotlib defaults that read well in a notebook."""
    import matplotlib as mpl

    mpl.rcParams.update(
        {
            "figure.figsize": (6.4, 4.0),
            "figure.dpi": 80,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "image.cmap": "gray",
        }
    )


def setup(seed=42, deterministic=False, profile=None, quiet=True, verbose=True):
    """Prepares a notebook or script: one call at the top of every notebook.

    Seeds Python, NumPy and TensorFlow (`keras.utils.set_random_seed`),
    optionally turns on TensorFlow's op determinism, silences TensorFlow's info
    logs, sets matplotlib defaults and prints one line describing the run.

    Example:

    >>> import dlkit
    >>> dlkit.setup(seed=42)  # doctest: +SKIP
    dlkit 0.1.0 | TensorFlow 2.21.0 | Keras 3.15.1 | CPU x1 | profile quick | seed 42

    Args:
        seed: integer seed for all random number generators. Defaults to `42`.
        deterministic: whether to make TensorFlow ops deterministic (slower,
            but the same results on every run on the same machine). Defaults to
            `False`.
        profile: data profile, see `get_profile`. Defaults to `None`
            (`DLKIT_PROFILE`, else `"quick"`).
        quiet: whether to silence TensorFlow's logs. Defaults to `True`.
        verbose: whether to print the one-line summary. Defaults to `True`.

    Returns:
        The profile name in force.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(
            f"Invalid value for argument `seed`. Received: seed={seed!r}. "
            "Expected a non-negative integer, e.g. seed=42."
        )
    profile = get_profile(profile)
    os.environ["DLKIT_PROFILE"] = profile
    if quiet:
        quiet_tensorflow()
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    set_plot_style()
    if verbose:
        print(summary_line(profile, seed))
    return profile


def summary_line(profile, seed):
    """Returns the one-line description that `setup` prints."""
    import keras
    import tensorflow as tf

    devices = describe_devices()
    return (
        f"dlkit {version('dlkit')} | TensorFlow {tf.__version__} | "
        f"Keras {keras.__version__} | {devices} | profile {profile} | seed {seed}"
    )


def describe_devices():
    """Returns a short description of the visible devices, e.g. `CPU x1, GPU x2`."""
    import tensorflow as tf

    counts = {}
    for device in tf.config.list_physical_devices():
        counts[device.device_type] = counts.get(device.device_type, 0) + 1
    return ", ".join(f"{kind} x{count}" for kind, count in sorted(counts.items()))


def version(package):
    """Returns the installed version of `package`, or `"not installed"`."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


REPORTED_PACKAGES = (
    "dlkit",
    "tensorflow",
    "keras",
    "keras-tuner",
    "tensorboard",
    "numpy",
    "scikit-learn",
    "mlxtend",
    "statsmodels",
    "matplotlib",
    "jupyterlab",
    "nbval",
    "kserve",
    "ai-edge-litert",
    "onnxruntime",
)


def gpu_report():
    """Describes each visible GPU: name, compute capability, mixed precision.

    Returns:
        A list of dicts with keys `name`, `compute_capability` (a tuple or
        `None`) and `mixed_float16` (whether tensor cores make `mixed_float16`
        pay off: compute capability 7.0 or higher).
    """
    import tensorflow as tf

    report = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        capability = details.get("compute_capability")
        report.append(
            {
                "name": details.get("device_name", gpu.name),
                "compute_capability": capability,
                "mixed_float16": bool(capability and capability >= (7, 0)),
            }
        )
    return report


def environment_report():
    """Returns the environment part of `python -m dlkit doctor` as text lines."""
    lines = [f"Python {platform.python_version()} on {platform.platform()}"]
    lines += [f"  {name:<14} {version(name)}" for name in REPORTED_PACKAGES]
    gpus = gpu_report()
    if not gpus:
        lines.append("GPUs: none visible (training runs on the CPU; float32)")
    for gpu in gpus:
        mixed = "yes" if gpu["mixed_float16"] else "no (needs compute capability 7.0+)"
        lines.append(
            f"GPU {gpu['name']}: compute capability {gpu['compute_capability']}, "
            f"mixed_float16 speed-up: {mixed}"
        )
    lines.append(f"Profile: {get_profile()} (set DLKIT_PROFILE=quick|full)")
    return lines
