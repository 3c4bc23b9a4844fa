"""Checks for the exercises of notebooks 07 (tuning) and 08 (scaling).

To be merged into `dlkit.exercises`. Each check takes what you wrote, tries it
on inputs whose answers are known, prints feedback and returns `True` when
your answer is right. A wrong or missing answer never raises: the check
prints what it received, what it expected and a hint, and returns `False`.

Example:

>>> check_global_batch(lambda per_replica, replicas, steps: per_replica)
Not yet.
  Received: global_batch(32, 2, 1) = 32
  Expected: 64
  Hint: Every replica takes its own batch of per_replica examples in each step.
False
"""

import json

import numpy as np

from dlkit._feedback import _RETURN_HINT, _call, _correct, _wrong


def _show(values):
    return "[" + ", ".join(f"{value:.4g}" for value in np.ravel(values)) + "]"


# --------------------------------------------------------------------------
# 07 · Hyperparameter tuning
# --------------------------------------------------------------------------


def check_log_uniform(log_uniform):
    """Checks a log-uniform mapping: `low * (high / low) ** u` for u in [0, 1].

    Args:
        log_uniform: a function `(u, low, high)` taking a NumPy array `u` of
            numbers in [0, 1] and returning an array of the same shape.

    Returns:
        `True` if the function is right, `False` otherwise (with a message).
    """
    u = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    low, high = 1e-4, 1e-2
    expected = low * (high / low) ** u
    result, problem = _call(log_uniform, u, low, high)
    if problem:
        return _wrong(
            problem, f"log_uniform(u, 1e-4, 1e-2) = {_show(expected)}", _RETURN_HINT
        )
    result = _as_float_array(result)
    if (
        result is not None
        and result.shape == u.shape
        and np.allclose(result, expected, rtol=1e-6)
    ):
        return _correct(
            "Each decade (1e-4 to 1e-3, 1e-3 to 1e-2) gets half of the samples."
        )
    hint = (
        "Interpolate the exponent: 10 ** (log10(low) + u * (log10(high) - log10(low)))."
    )
    if result is not None and np.allclose(result, low + u * (high - low), rtol=1e-6):
        hint = (
            "That is the uniform scale: 3 samples out of 4 land above 2.5e-3. "
            "Interpolate the logarithm instead, then exponentiate."
        )
    shown = _show(result) if result is not None else repr(result)
    return _wrong(f"log_uniform(u, 1e-4, 1e-2) = {shown}", _show(expected), hint)


def _as_float_array(result):
    try:
        return np.asarray(result, dtype=float)
    except (TypeError, ValueError):
        return None


def small_convnet(input_shape=(28, 28, 1), num_classes=10, filters=16, kernel_size=3):
    """The builder of the search-space exercise: one convolution, then a classifier.

    Args:
        input_shape: `(height, width, channels)`. Defaults to `(28, 28, 1)`.
        num_classes: number of classes. Defaults to `10`.
        filters: filters of the convolution. Defaults to `16`.
        kernel_size: size of the square kernel. Defaults to `3`.

    Returns:
        An uncompiled `keras.Model`.
    """
    import keras

    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(filters, kernel_size, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(num_classes, activation="softmax"),
        ],
        name="small_convnet",
    )


_EXPECTED_SPACE = {
    "filters": ("Choice", [8, 16, 32], 16),
    "kernel_size": ("Choice", [3, 5], 3),
}


def check_search_space(space):
    """Checks a search space for `small_convnet`: `filters` and `kernel_size`.

    Expected: `filters` a `hp.Choice` of 8, 16 or 32 and `kernel_size` a
    `hp.Choice` of 3 or 5, each defaulting to the builder's default, returned
    as a dict of `small_convnet`'s arguments.

    Args:
        space: a function of keras-tuner's `hp` returning a dict.

    Returns:
        `True` if the space is right, `False` otherwise (with a message).
    """
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    result, problem = _call(space, hp)
    expected = "{'filters': hp.Choice(...), 'kernel_size': hp.Choice(...)}"
    if problem:
        return _wrong(problem, expected, _RETURN_HINT)
    if not isinstance(result, dict) or set(result) != set(_EXPECTED_SPACE):
        keys = sorted(result) if isinstance(result, dict) else type(result).__name__
        return _wrong(
            f"a dict with keys {keys}" if isinstance(result, dict) else keys,
            f"a dict with keys {sorted(_EXPECTED_SPACE)}",
            "Return the builder's argument names, each drawn from hp, e.g. "
            "{'filters': hp.Choice('filters', [8, 16, 32], default=16), ...}.",
        )
    declared = {item.name: item for item in hp.space}
    for name, (kind, values, default) in _EXPECTED_SPACE.items():
        message = _check_hyperparameter(declared.get(name), name, kind, values, default)
        if message:
            return _wrong(*message)
    if result != {name: default for name, (_, _, default) in _EXPECTED_SPACE.items()}:
        return _wrong(
            f"values {result}",
            "with an empty hp, the defaults {'filters': 16, 'kernel_size': 3}",
            "Return the values hp gives you: filters=hp.Choice('filters', ...).",
        )
    return _correct(
        "An empty HyperParameters() now builds small_convnet's default model, "
        "and a tuner can draw the 6 combinations."
    )


def _check_hyperparameter(item, name, kind, values, default):
    """Returns `(received, expected, hint)` when `item` is not as expected."""
    wanted = f"hp.{kind}({name!r}, {values}, default={default})"
    if item is None:
        return (
            f"no hyperparameter named {name!r}",
            wanted,
            "Name each hyperparameter like the argument it sets.",
        )
    if type(item).__name__ != kind or list(getattr(item, "values", [])) != values:
        return (
            f"{type(item).__name__} {name!r} with {item.get_config()}",
            wanted,
            "A short list of allowed values is a Choice.",
        )
    if item.default != default:
        return (
            f"{name!r} with default {item.default}",
            wanted,
            "Give each hyperparameter the builder's default, so that the untuned "
            "model is the space's default.",
        )
    return None


def check_best_trial(best_trial):
    """Checks a function returning the id of the best trial in a results table.

    Args:
        best_trial: a function `(table, direction)` taking a pandas
            DataFrame indexed by trial id with a `score` column (NaN for
            failed trials) and `direction` `"max"` or `"min"`, returning the
            best trial's id.

    Returns:
        `True` if the function is right, `False` otherwise (with a message).
    """
    import pandas as pd

    table = pd.DataFrame(
        {"width": [64, 256, 128, 32], "score": [0.91, float("nan"), 0.94, 0.62]},
        index=pd.Index(["00", "01", "02", "03"], name="trial"),
    ).sample(frac=1.0, random_state=0)
    for direction, expected in (("max", "02"), ("min", "03")):
        result, problem = _call(best_trial, table.copy(), direction)
        if problem:
            return _wrong(
                problem,
                f"best_trial(table, {direction!r}) = {expected!r}",
                _RETURN_HINT,
            )
        if str(result) != expected:
            return _wrong(
                f"best_trial(table, {direction!r}) = {result!r}",
                repr(expected),
                _best_trial_hint(table, direction, result),
            )
    return _correct(
        "An accuracy is maximized, a loss is minimized, and failed trials never win."
    )


def _best_trial_hint(table, direction, result):
    if str(result) == "01":
        return (
            "Trial 01 failed (its score is NaN): leave it out, e.g. with "
            "table.score.dropna()."
        )
    if str(result) in set(table.index):
        return (
            f"With direction={direction!r}, the best score is the "
            f"{'largest' if direction == 'max' else 'smallest'} one: "
            "use idxmax() or idxmin() on the score column."
        )
    return "Return the trial id (the table's index), not the row number or the score."


# --------------------------------------------------------------------------
# 08 · Scaling: distribution, mixed precision, gradient accumulation
# --------------------------------------------------------------------------


def check_global_batch(global_batch):
    """Checks the global (effective) batch size of a distributed, accumulating run.

    Args:
        global_batch: a function `(per_replica, replicas, accumulation_steps)`
            returning the number of examples behind one optimizer update.

    Returns:
        `True` if the function is right, `False` otherwise (with a message).
    """
    cases = [((32, 1, 1), 32), ((32, 2, 1), 64), ((16, 2, 4), 128), ((64, 8, 2), 1024)]
    for arguments, expected in cases:
        result, problem = _call(global_batch, *arguments)
        call = f"global_batch{arguments}"
        if problem:
            return _wrong(problem, f"{call} = {expected}", _RETURN_HINT)
        if result != expected:
            return _wrong(
                f"{call} = {result!r}",
                str(expected),
                _global_batch_hint(arguments, result),
            )
    return _correct(
        "One update sees per_replica x replicas x accumulation_steps examples."
    )


def _global_batch_hint(arguments, result):
    per_replica, replicas, steps = arguments
    if result == per_replica * replicas and steps > 1:
        return "Accumulation adds the gradients of several batches before one update."
    if result == sum(arguments):
        return (
            "The factors multiply: every replica takes a batch, in every "
            "accumulated step."
        )
    return "Every replica takes its own batch of per_replica examples in each step."


def check_loss_scaling(scaled_gradient):
    """Checks loss scaling: scale, store in float16, unscale in float32.

    Args:
        scaled_gradient: a function `(gradient, scale)` taking a float32
            NumPy array and a number, returning the float32 array that comes
            back after multiplying by `scale`, rounding to float16 and
            dividing by `scale`.

    Returns:
        `True` if the function is right, `False` otherwise (with a message).
    """
    gradient = np.array([1e-8, 3e-7, 2e-5, 1e-3], dtype=np.float32)
    scale = 2.0**15
    expected = (gradient * scale).astype(np.float16).astype(np.float32) / scale
    result, problem = _call(scaled_gradient, gradient.copy(), scale)
    call = "scaled_gradient([1e-8, 3e-7, 2e-5, 1e-3], 2**15)"
    if problem:
        return _wrong(problem, f"{call} = {_show(expected)}", _RETURN_HINT)
    result = _as_float_array(result)
    if (
        result is not None
        and result.shape == gradient.shape
        and np.allclose(result, expected, rtol=1e-6, atol=0)
    ):
        return _correct(
            "Scaled by 2**15, even a 1e-8 gradient survives float16 "
            "(unscaled it would round to 0)."
        )
    return _wrong(
        f"{call} = {_show(result) if result is not None else result!r}",
        _show(expected),
        _scaling_hint(gradient, scale, result),
    )


def _scaling_hint(gradient, scale, result):
    if result is None or result.shape != gradient.shape:
        return "Work element-wise on the array and return an array of the same shape."
    unscaled = gradient.astype(np.float16).astype(np.float32)
    if np.allclose(result, unscaled, rtol=1e-6, atol=0):
        return (
            "Multiply by scale before the cast to float16: that is what keeps "
            "1e-8 from rounding to 0."
        )
    kept_scale = (gradient * scale).astype(np.float16).astype(np.float32)
    if np.allclose(result, kept_scale, rtol=1e-3):
        return (
            "Divide by scale at the end (in float32), so the update has the right size."
        )
    return (
        "Three steps: gradient * scale, .astype(np.float16), then "
        ".astype(np.float32) / scale."
    )


def check_tf_config(make_tf_config):
    """Checks a `TF_CONFIG` builder for a cluster of workers.

    Args:
        make_tf_config: a function `(addresses, index)` returning the JSON
            string (or dict) to put in `TF_CONFIG` for worker `index` of the
            workers at `addresses`.

    Returns:
        `True` if the function is right, `False` otherwise (with a message).
    """
    addresses = ["10.0.0.1:2222", "10.0.0.2:2222", "10.0.0.3:2222"]
    for index in (0, 2):
        expected = {
            "cluster": {"worker": addresses},
            "task": {"type": "worker", "index": index},
        }
        result, problem = _call(make_tf_config, list(addresses), index)
        if problem:
            return _wrong(problem, json.dumps(expected), _RETURN_HINT)
        parsed = _parse_config(result)
        if parsed != expected:
            return _wrong(
                f"make_tf_config(addresses, {index}) = {result!r}",
                json.dumps(expected),
                _tf_config_hint(parsed, index),
            )
    return _correct(
        "Every worker gets the same cluster and its own task; a job scheduler "
        "writes exactly this into TF_CONFIG."
    )


def _parse_config(result):
    try:
        return (
            json.loads(result)
            if isinstance(result, str)
            else json.loads(json.dumps(result))
        )
    except (TypeError, ValueError):
        return None


def _tf_config_hint(parsed, index):
    if parsed is None:
        return "Return a dict, or json.dumps of one (TF_CONFIG holds JSON text)."
    task = parsed.get("task", {}) if isinstance(parsed, dict) else {}
    if task.get("index") not in (index, None) or isinstance(task.get("index"), str):
        return "task.index is this worker's position in the list, as an integer."
    if task.get("type") != "worker":
        return (
            "Every process here is a worker: task.type is 'worker' (worker 0 "
            "acts as chief)."
        )
    return (
        "Two keys: 'cluster' ({'worker': addresses}) and 'task' "
        "({'type': 'worker', 'index': index})."
    )
