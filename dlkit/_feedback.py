"""Feedback helpers shared by the exercise checks in `dlkit.exercises`.

A check never raises on the learner's answer: it prints "Correct!" or "Not yet."
with what it received, what it expected and a hint, and returns a bool.
"""

import numpy as np


def _correct(message):
    print(f"Correct! {message}")
    return True


def _wrong(received, expected, hint):
    print(f"Not yet.\n  Received: {received}\n  Expected: {expected}\n  Hint: {hint}")
    return False


def _show(value):
    """Formats a number or an array with 4 decimals, for messages."""
    array = np.round(np.asarray(value, dtype=float), 4) + 0.0  # no "-0."
    text = np.array2string(array, precision=4, separator=", ", suppress_small=True)
    return text.replace("\n", "\n" + " " * 12)  # align rows under "Received: "


def _call(function, *args):
    """Calls the learner's function; returns `(result, problem)`.

    `problem` is a message to show instead of a result when the function is
    missing, raised an error or returned nothing.
    """
    if not callable(function):
        return None, f"{function!r}, which is not a function"
    try:
        with np.errstate(all="ignore"):
            result = function(*args)
    except Exception as error:  # the learner's code: report, never raise
        return None, f"an error: {type(error).__name__}: {error}"
    if result is None:
        return None, "None (the function returns nothing yet)"
    return result, None


_RETURN_HINT = "Replace `...` with your code and `return` the result."


def _as_array(result):
    try:
        return np.asarray(result, dtype=float)
    except (TypeError, ValueError):
        return None


def _close(result, expected, tolerance=1e-4):
    return (
        result is not None
        and result.shape == np.shape(expected)
        and np.allclose(result, expected, rtol=tolerance, atol=tolerance)
    )


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))
