"""Is a served model still fed the data it learned from, and is the data sound?

Input drift of images: each example is summed up by four statistics of its
values (mean, standard deviation, minimum, maximum). `python -m dlkit serve
--log_inputs FILE` appends them for every example it serves
(`write_input_log`); `drift_report` compares them with the training data's by
the population stability index.

Any signal, one value an example (e.g. `prediction_confidence`): `drift_test`
compares a batch with a reference sample by a SciPy test. New labelled text is
checked against `text_schema` (pandera) by `validate`.

>>> monitor.drift_report(x_train, "served_inputs.jsonl")  # doctest: +SKIP
"""

import collections
import functools
import json
import os
import re

import numpy as np
import pandas as pd

__all__ = ["drift_report", "input_statistics", "population_stability_index"]
__all__ += ["read_input_log", "write_input_log"]  # the `--log_inputs` file
__all__ += ["DriftTest", "drift_test", "prediction_confidence"]
__all__ += ["text_schema", "validate"]  # incoming labelled text

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


DriftTest = collections.namedtuple("DriftTest", "statistic p_value drift")
_TESTS = ("ks", "chi2")


def drift_test(reference, served, alpha=0.01, test="ks"):
    """Tests whether a served batch comes from the reference's distribution.

    `"ks"`: two-sample Kolmogorov-Smirnov (`scipy.stats.ks_2samp`), for
    numbers; `"chi2"`: chi-square on a 2 x k table of counts
    (`scipy.stats.chi2_contingency`), for categories. Without drift, `drift`
    is `True` with probability about `alpha`: a false alarm.

    >>> monitor.drift_test(held_out_confidence, confidence_today)  # doctest: +SKIP

    Args:
        reference, served: 1-D samples: held-out data the model handles
            well, and the batch to test.
        alpha: significance level. Defaults to `0.01`.
        test: `"ks"` or `"chi2"`. Defaults to `"ks"`.

    Returns:
        A `DriftTest(statistic, p_value, drift)`.
    """
    from scipy import stats

    reference, served = _sample("reference", reference), _sample("served", served)
    if test not in _TESTS or not (isinstance(alpha, float | int) and 0 < alpha < 1):
        raise ValueError(
            f"Invalid value for argument `test` or `alpha`. Received: test={test!r}, "
            f"alpha={alpha!r}. Expected test in {list(_TESTS)} and 0 < alpha < 1."
        )
    if test == "ks":
        result = stats.ks_2samp(reference, served)
    else:
        categories = np.unique(np.r_[reference, served])
        table = [[np.sum(s == c) for c in categories] for s in (reference, served)]
        result = stats.chi2_contingency(table) if len(categories) > 1 else (0, 1)
    return DriftTest(float(result[0]), float(result[1]), float(result[1]) < alpha)


def prediction_confidence(probabilities):
    """Returns the probability of the predicted class, one value per example.

    `max(p, 1 - p)` of a sigmoid's `(n,)` or `(n, 1)`, the largest of a
    softmax's `(n, k)`.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    p = p[:, 0] if p.ndim == 2 and p.shape[1] == 1 else p
    if p.ndim not in (1, 2) or p.size == 0 or not np.all((p >= 0) & (p <= 1)):
        raise ValueError(
            f"Invalid value for argument `probabilities`. Received: shape {p.shape}. "
            "Expected values in [0, 1] of shape (n,), (n, 1) or (n, k): probabilities,"
            " not logits."
        )
    return np.maximum(p, 1 - p) if p.ndim == 1 else p.max(axis=1)


def text_schema(labels=(0, 1), max_characters=1000):
    """Returns a pandera schema for labelled text: columns `text` and `label`.

    Rules: no duplicate text (the first copy passes), none blank, no broken
    encoding (U+FFFD, C1 controls, UTF-8 read as cp1252 or latin-1: "Ã©" for
    "é"), at most `max_characters`, a label out of `labels`.

    Args:
        labels: valid labels. Defaults to `(0, 1)`.
        max_characters: longest valid text. Defaults to `1000`.
    """
    import pandera.pandas as pa

    rule = functools.partial(pa.Check, element_wise=True)
    text_checks = [
        rule(lambda text: text.strip() != "", name="blank"),
        rule(_clean_encoding, name="broken_encoding"),
        rule(lambda text: len(text) <= max_characters, name="too_long"),
    ]
    text = pa.Column(str, text_checks, unique=True, report_duplicates="exclude_first")
    label = pa.Column(int, rule(lambda label: label in labels, name="invalid_label"))
    return pa.DataFrameSchema({"text": text, "label": label})


def validate(frame, schema):
    """Checks `frame` against a pandera `schema`, every rule on every row.

    Returns `(valid, failures)`: the rows that broke no rule, and pandera's
    failure cases (columns `column`, `check`, `failure_case`, `index`).
    """
    import pandera.pandas as pa

    try:
        schema.validate(frame, lazy=True)
        return frame, pd.DataFrame(columns=["column", "check", "failure_case", "index"])
    except pa.errors.SchemaErrors as errors:
        failures = errors.failure_cases[["column", "check", "failure_case", "index"]]
        return frame.drop(index=failures["index"].dropna().unique()), failures


_BROKEN = re.compile("[\ufffd\x80-\x9f]")  # replacement or C1 control characters


def _clean_encoding(text):
    for codec in ("cp1252", "latin-1"):  # mojibake decodes again as UTF-8
        try:
            if text.encode(codec).decode("utf-8") != text:
                return False
        except UnicodeError:
            pass
    return not _BROKEN.search(text)


def _sample(name, values):
    values = np.asarray(values)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(
            f"Invalid value for argument `{name}`. Received: an array of shape "
            f"{values.shape}. Expected a non-empty 1-D sample, one value an example."
        )
    return values
