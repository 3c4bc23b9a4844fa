"""Input drift: does a served model still see the data it learned from?

Each example is summed up by four statistics of its values (mean, standard
deviation, minimum, maximum). `python -m dlkit serve --log_inputs FILE` appends
them for every example it serves (`write_input_log`); `drift_report` compares
them with the training data's by the population stability index.

>>> monitor.drift_report(x_train, "served_inputs.jsonl")  # doctest: +SKIP
"""

import json
import os

import numpy as np
import pandas as pd

__all__ = ["drift_report", "input_statistics", "population_stability_index"]
__all__ += ["read_input_log", "write_input_log"]  # the `--log_inputs` file

_STATISTICS = ("mean", "std", "min", "max")


def input_statistics(x):
    """Returns the statistics the drift check compares, one value per example.

    A dict from `"mean"`, `"std"`, `"min"` and `"max"` to arrays; `x` is a batch.
    """
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return {name: getattr(flat, name)(axis=1) for name in _STATISTICS}


def write_input_log(path, x):
    """Appends the `input_statistics` of a batch to a JSON-lines file."""
    rows = pd.DataFrame(input_statistics(x)).to_dict("records")
    with open(path, "a", encoding="utf-8") as file:
        file.writelines(json.dumps(row) + "\n" for row in rows)


def read_input_log(path):
    """Reads a `--log_inputs` file into a dict like `input_statistics` returns."""
    log = pd.read_json(path, lines=True, precise_float=True)
    return {name: log[name].to_numpy() for name in _STATISTICS}


def drift_report(reference, served, threshold=0.2, bins=10):
    """Compares served inputs with training inputs, statistic by statistic.

    Each statistic is compared by its `population_stability_index`: below 0.1
    usually means no drift, above 0.2 drift worth a look.

    Args:
        reference: training inputs (array), or their `input_statistics`.
        served: served inputs (array), their statistics, or the path of a
            server's `--log_inputs` file.
        threshold: PSI above which a statistic is flagged. Defaults to `0.2`.
        bins: number of quantile bins. Defaults to `10`.

    Returns:
        A DataFrame indexed by statistic, with the columns `reference_mean`,
        `served_mean`, `psi` and `drift`.
    """
    reference, served = _as_statistics(reference), _as_statistics(served)
    rows = {
        name: {
            "reference_mean": float(np.mean(reference[name])),
            "served_mean": float(np.mean(served[name])),
            "psi": population_stability_index(reference[name], served[name], bins),
        }
        for name in _STATISTICS
    }
    report = pd.DataFrame.from_dict(rows, orient="index")
    report["drift"] = report["psi"] > threshold
    return report


def population_stability_index(reference, served, bins=10):
    """Returns the population stability index of two 1-D samples.

    `PSI = sum_i (q_i - p_i) ln(q_i / p_i)`, where `p_i` and `q_i` are the
    fractions of reference and served values in bin `i` (0 for identical
    samples). The bins lie between the reference's quantiles (deciles for
    `bins=10`); a value equal to a quantile gets a bin of its own, as image
    statistics pile up on one value (a minimum pixel of 0). Fractions are
    floored at 1e-4 so that empty bins stay finite. Raises `ValueError` if a
    sample is empty.
    """
    reference, served = np.asarray(reference), np.asarray(served)
    if len(reference) == 0 or len(served) == 0:
        raise ValueError(
            f"Invalid samples for the drift check. Received: {len(reference)} "
            f"reference and {len(served)} served values. Expected both non-empty; "
            "send some requests to the server first."
        )
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    p, q = _bin_fractions(reference, edges), _bin_fractions(served, edges)
    return float(np.sum((q - p) * np.log(q / p)))


def _bin_fractions(values, edges):
    """Fractions in the bins (-inf, e0), [e0], (e0, e1), [e1], ..., (ek, inf)."""
    below = np.searchsorted(edges, values, side="left")
    on_edge = edges[np.minimum(below, len(edges) - 1)] == values
    counts = np.bincount(2 * below + on_edge, minlength=2 * len(edges) + 1)
    return np.clip(counts / len(values), 1e-4, None)


def _as_statistics(data):
    if isinstance(data, (str, os.PathLike)):
        return read_input_log(data)
    return data if isinstance(data, dict) else input_statistics(data)
