"""Notebook setup, the run profile, and the device probe of trainer and doctor."""

import dataclasses
import logging
import os
import platform
import re
import sys
import tempfile
from importlib import metadata

__all__ = ["DeviceInfo", "environment_report", "get_profile", "list_devices", "setup"]

_PROFILES = ("quick", "full")
_PACKAGES = """dlkit tensorflow keras keras-tuner tensorboard numpy scikit-learn mlxtend
statsmodels matplotlib jupyterlab nbval kserve ai-edge-litert onnxruntime""".split()


def get_profile(profile=None):
    """Returns the data profile: `"quick"` (default, offline) or `"full"` (downloads).

    Args:
        profile: `"quick"`, `"full"`, or `None` for `DLKIT_PROFILE`. Defaults to `None`.

    Raises:
        ValueError: for any other profile.
    """
    source = "argument `profile`" if profile else "environment variable DLKIT_PROFILE"
    profile = profile or os.environ.get("DLKIT_PROFILE") or "quick"
    if profile not in _PROFILES:
        raise ValueError(
            f"Invalid data profile in {source}. Received: {profile!r}. "
            f"Expected one of {_PROFILES}. Use 'quick' for the small offline "
            "datasets or 'full' for the official full downloads."
        )
    return profile


def setup(seed=42, deterministic=False, profile=None, quiet=True, verbose=True):
    """Prepares a notebook or script: one call at the top of every notebook.

    Seeds Python, NumPy and TensorFlow, keeps TensorFlow's start-up log off
    stderr (call it before importing TensorFlow), sets matplotlib defaults,
    prints one line about the run and returns the profile in force.

    >>> dlkit.setup(seed=42)  # doctest: +SKIP
    dlkit 0.1.0 | TensorFlow 2.21.0 | Keras 3.15.1 | CPU x1 (bfloat16: no) | ...

    Args:
        seed: integer seed for every random number generator. Defaults to `42`.
        deterministic: make TensorFlow ops deterministic (slower). Defaults to `False`.
        profile: data profile, see `get_profile`. Defaults to `None`.
        quiet: hide TensorFlow's info and warning logs. Defaults to `True`.
        verbose: print the one-line summary. Defaults to `True`.
    """
    os.environ["DLKIT_PROFILE"] = profile = get_profile(profile)
    devices = _quietly(list_devices) if quiet else list_devices()
    import keras
    import matplotlib as mpl
    import tensorflow as tf

    for logger in (tf.get_logger(), logging.getLogger("absl")) if quiet else ():
        logger.setLevel(logging.ERROR)
    keras.utils.set_random_seed(seed)  # its ValueError names a bad seed
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    mpl.rc("figure", figsize=(6.4, 4.0), dpi=80)
    mpl.rc("axes.spines", top=False, right=False)
    mpl.rcParams.update({"axes.grid": True, "grid.alpha": 0.3, "image.cmap": "gray"})
    if verbose:
        kinds = [device.kind for device in devices]
        counts = [f"{k} x{kinds.count(k)}" for k in sorted(set(kinds))]  # CPU first
        counts[0] += f" (bfloat16: {_cpu_bfloat16()})"
        print(
            f"dlkit {_version('dlkit')} | TensorFlow {tf.__version__} | Keras "
            f"{keras.__version__} | {', '.join(counts)} | profile {profile} | "
            f"seed {seed}"
        )
    return profile


def _quietly(function):
    """Calls `function` with stderr (fd 2) in a file, then writes back the errors.

    TF_CPP_MIN_LOG_LEVEL=2 (set by `import dlkit`) misses what TensorFlow logs
    through absl before reading it ("All log messages before absl::InitializeLog()
    is called ...", "Could not find cuda drivers"), which Jupyter shows in red."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            return function()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            text = log.read().decode(errors="replace")
            errors = re.findall(r"^[EF]\d{4} .*", text, re.MULTILINE)  # E1130 12:00...
            if "Could not find cuda drivers" in text:  # then cuInit fails, no error
                errors = [line for line in errors if "cuInit" not in line]
            for line in errors:
                print(line, file=sys.stderr)


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    """One device, as the trainer sees it when it picks a strategy and precision.

    Fields: `kind` (`"CPU"`, `"GPU"` or `"TPU"`), `name` (e.g. `"GPU:0"`) and
    `compute_capability` (`(major, minor)` of an NVIDIA GPU, else `None`).
    """

    kind: str
    name: str = ""
    compute_capability: tuple = None


def list_devices():
    """Returns this machine's devices as `DeviceInfo`s, the CPU first. TPUs are
    listed when TensorFlow sees local TPUs or `TPU_NAME` names a remote one."""
    import tensorflow as tf

    details = tf.config.experimental.get_device_details
    devices = [DeviceInfo("CPU", "CPU:0")]
    for index, gpu in enumerate(tf.config.list_physical_devices("GPU")):
        capability = details(gpu).get("compute_capability")
        devices.append(DeviceInfo("GPU", f"GPU:{index}", capability))
    tpus = tf.config.list_physical_devices("TPU")
    devices += [DeviceInfo("TPU", f"TPU:{index}") for index in range(len(tpus))]
    if not tpus and os.environ.get("TPU_NAME"):
        devices.append(DeviceInfo("TPU", os.environ["TPU_NAME"]))
    return devices


def environment_report():
    """Returns the environment part of `python -m dlkit doctor` as text lines;
    a TensorFlow that cannot be imported shows as a line starting `BROKEN:`."""
    lines = [f"Python {platform.python_version()} on {platform.platform()}"]
    lines += [f"  {name:<14} {_version(name)}" for name in _PACKAGES]
    lines.append(f"CPU bfloat16 instructions (for mixed_bfloat16): {_cpu_bfloat16()}")
    try:
        devices = _quietly(list_devices)
    except ImportError as error:
        return [*lines, f"BROKEN: TensorFlow cannot be imported: {error}"]
    for device in devices[1:]:  # TPUs train in mixed_bfloat16, GPUs in mixed_float16
        capability = tuple(device.compute_capability or ())
        fast = device.kind == "TPU" or capability >= (7, 0)
        lines.append(
            f"{device.kind} {device.name}: compute capability {capability or 'n/a'}, "
            f"mixed precision speed-up: {'yes' if fast else 'no (needs 7.0+)'}"
        )
    if len(devices) == 1:
        lines.append("GPUs: none visible (training runs on the CPU; float32)")
    return [*lines, f"Profile: {get_profile()} (set DLKIT_PROFILE=quick|full)"]


def _cpu_bfloat16(cpuinfo="/proc/cpuinfo"):  # AVX512_BF16, AMX_BF16 or Arm BF16
    try:
        with open(cpuinfo) as file:
            flags = re.search(r"^(?:flags|Features)\s*:(.*)", file.read(), re.M)[1]
    except (OSError, TypeError):  # no such file (not Linux), or no flags line
        return "unknown"
    return "yes" if {"avx512_bf16", "amx_bf16", "bf16"} & set(flags.split()) else "no"


def _version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"
