"""Verified, atomic exports of a Keras model, and predictors that run them.

Keras writes each format (`model.export()`, `model.save()`); `export` adds:

- **Verified**: the export is loaded back with the runtime that will serve it
  and must predict like the Keras model on real inputs, within a tolerance per
  format: a quantized model that lost its accuracy never ships.
- **Atomic**: it is written into a hidden `.partial-*` folder next to its
  target, renamed into place (`os.replace`, atomic on one file system) once
  verified, and the folder is deleted on any error. A process killed
  mid-export (SIGKILL) leaves at most that folder, safe to delete, never a
  half-written target: servers read numbered versions only.
- **Versioned**: a SavedModel goes to `<model_dir>/<version>/`, the layout TF
  Serving and KServe load and watch for new versions.
"""

import contextlib
import dataclasses
import os
import pathlib
import re
import shutil
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

__all__ = [
    "ExportResult",
    "ExportVerificationError",
    "SavedModelPredictor",
    "TFLitePredictor",
    "export",
    "export_all",
    "latest_version",
    "load_predictor",
    "measure_latency",
]

_SIGNATURE_NAME = "serving_default"  # the signature TF Serving runs
# format: (file suffix, largest allowed differences from the Keras model)
_FORMATS = {
    "saved_model": ("", {"max_abs_diff": 1e-5}),
    "keras": (".keras", {"max_abs_diff": 1e-6}),
    "tflite_float32": (".tflite", {"max_abs_diff": 1e-4}),
    "tflite_dynamic_range": (".tflite", {"mean_abs_diff": 1e-2, "disagreement": 0.02}),
    "tflite_float16": (".tflite", {"max_abs_diff": 1e-2}),
    "tflite_int8": (".tflite", {"mean_abs_diff": 2e-2, "disagreement": 0.03}),
    "onnx": (".onnx", {"max_abs_diff": 1e-4}),
}
_GENERATED_NAME = re.compile(r"^(keras_tensor|input_layer)(_\d+)?$")


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """A verified export: where it is, how big, and how close to the Keras model.

    `path` is the file or the SavedModel's version directory. Differences are
    `|export - keras| / max(1, max |keras|)`; `agreement` is the fraction of
    examples with the same top-1 class (`None` unless outputs are classes).
    """

    format: str
    path: str
    size_bytes: int
    max_abs_diff: float
    mean_abs_diff: float
    agreement: float | None


class ExportVerificationError(RuntimeError):
    """An export's predictions differ from the Keras model's beyond tolerance."""


def export(model, filepath, x_verify, format="saved_model", representative_data=None):
    """Exports a model in one format, verified against it and written atomically.

    | format | written by | checked with | tolerance |
    |---|---|---|---|
    | `"saved_model"` | `model.export()` | `tf.saved_model.load` | max 1e-5 |
    | `"keras"` | `model.save()` | `keras.saving.load_model` | max 1e-6 |
    | `"tflite_float32"` | `model.export(format="litert")` | LiteRT | max 1e-4 |
    | `"tflite_float16"` | same, float16 weights | LiteRT | max 1e-2 |
    | `"tflite_dynamic_range"` | same, int8 weights | LiteRT | mean 1e-2, 98% top-1 |
    | `"tflite_int8"` | same, all int8 | LiteRT | mean 2e-2, 97% top-1 |
    | `"onnx"` | `model.export(format="onnx")` | onnxruntime | max 1e-4 |

    `"tflite_int8"` has int8 inputs and outputs, for integer-only chips. A
    SavedModel goes to the next version, `<filepath>/<n>/`; its input keeps the
    Keras input's name (`"inputs"` if Keras made it up). An existing file is
    replaced, only by a verified export.

    Example:

    >>> deploy.export(  # doctest: +SKIP
    ...     model, "exports/mnist_int8.tflite", x_test[:256],
    ...     format="tflite_int8", representative_data=x_train[:500])

    Args:
        model: a built Keras model with one input and one output.
        filepath: the model directory for `"saved_model"`, else the file (ending
            in `.keras`, `.tflite` or `.onnx`).
        x_verify: real inputs (a NumPy array) to compare predictions on.
        format: one of the formats above. Defaults to `"saved_model"`.
        representative_data: a few hundred real training inputs to calibrate
            `"tflite_int8"` (the first 200 are used). Defaults to `None`.

    Returns:
        An `ExportResult`.

    Raises:
        ValueError: invalid arguments.
        ExportVerificationError: the export does not match the Keras model.
    """
    if format not in _FORMATS:
        raise _invalid("format", repr(format), f"one of {list(_FORMATS)}")
    target, suffix = pathlib.Path(filepath), _FORMATS[format][0]
    if format == "saved_model":
        target = target / str(max(_versions(target), default=0) + 1)
    elif target.suffix != suffix:
        raise _invalid("filepath", repr(str(target)), f"a {suffix} file")
    x_verify = np.asarray(x_verify)
    if x_verify.ndim < 1 or len(x_verify) == 0 or x_verify.dtype.kind not in "fiu":
        received = f"an array of shape {x_verify.shape}, dtype {x_verify.dtype}"
        raise _invalid("x_verify", received, "real inputs, e.g. `x_test[:256]`")
    options = _litert_options(format, representative_data)
    with _atomic_path(target) as temporary:
        if format == "keras":
            model.save(temporary)
        elif format == "saved_model":
            signature = _input_signature(model)
            model.export(str(temporary), verbose=False, input_signature=signature)
        else:
            kind = "onnx" if format == "onnx" else "litert"
            model.export(str(temporary), kind, verbose=False, **options)
        expected = np.asarray(model.predict(x_verify, verbose=0))
        if format == "keras":
            actual = keras.saving.load_model(temporary).predict(x_verify, verbose=0)
        else:
            actual = load_predictor(temporary).predict(x_verify)
        differences = _compare(format, target, expected, actual)
        files = temporary.rglob("*") if temporary.is_dir() else [temporary]
        size = sum(file.stat().st_size for file in files if file.is_file())
    return ExportResult(format, str(target), size, *differences)


def export_all(model, directory, x_verify, representative_data, name="model"):
    """Exports the model in every format of `export`, each one verified.

    Writes `<name>/<version>/` (SavedModel), `<name>.keras`,
    `<name>_<quantization>.tflite` (four variants) and `<name>.onnx`.

    >>> results = deploy.export_all(  # doctest: +SKIP
    ...     model, "exports", x_test[:256], representative_data=x_train[:500])

    Args:
        model, x_verify, representative_data: as in `export`.
        directory: folder to write into (created if missing).
        name: base name of the exports. Defaults to `"model"`.

    Returns:
        A dict from format name to `ExportResult`.
    """
    results = {}
    for format, (suffix, _) in _FORMATS.items():
        stem = name + format[len("tflite") :] if suffix == ".tflite" else name
        path = pathlib.Path(directory) / (stem + suffix)
        results[format] = export(model, path, x_verify, format, representative_data)
    return results


def latest_version(model_dir):
    """Returns the highest numbered version (`1/`, `2/`, ...) in `model_dir`.

    Raises:
        ValueError: no numbered version holding a `saved_model.pb` exists.
    """
    model_dir = pathlib.Path(model_dir)
    versions = _versions(model_dir)
    if versions:
        return model_dir / str(max(versions))
    expected = "a folder of numbered versions (1/, 2/, ...) with a saved_model.pb"
    if (model_dir / "saved_model.pb").is_file():
        expected += f"; this is a version, pass {str(model_dir.parent)!r}"
    raise _invalid("model_dir", repr(str(model_dir)), expected)


def load_predictor(path):
    """Loads an export with its runtime; `predict(x)` returns a NumPy array.

    Args:
        path: a SavedModel directory (model or version directory), a `.tflite`
            or an `.onnx` file. (`keras.saving.load_model` loads `.keras`.)
    """
    path = pathlib.Path(path)
    predictor = {".tflite": TFLitePredictor, ".onnx": _OnnxPredictor}.get(path.suffix)
    if path.is_dir():
        return SavedModelPredictor(path)
    if predictor and path.is_file():
        return predictor(path)
    expected = "an existing SavedModel folder, .tflite or .onnx file"
    raise _invalid("path", repr(str(path)), expected)


def measure_latency(predict, x, num_runs=200, warmup=10):
    """Times `predict` on one example at a time; returns milliseconds.

    >>> measure_latency(load_predictor("m.tflite").predict, x)  # doctest: +SKIP
    {'p50_ms': 0.05, 'p99_ms': 0.09, 'mean_ms': 0.06}

    Args:
        predict: a callable taking a batch.
        x: inputs, taken in turn (cycling if needed).
        num_runs: number of timed calls. Defaults to `200`.
        warmup: untimed calls first. Defaults to `10`.
    """
    x = np.asarray(x)
    timings = []
    for index in range(warmup + num_runs):
        start = time.perf_counter()
        predict(x[index % len(x)][None])
        timings.append((time.perf_counter() - start) * 1000)
    p50, p99 = np.percentile(timings[warmup:], [50, 99])
    mean = np.mean(timings[warmup:])
    return {"p50_ms": float(p50), "p99_ms": float(p99), "mean_ms": float(mean)}


class SavedModelPredictor:
    """Runs a SavedModel's `serving_default` signature, as TF Serving does.

    Inputs are checked against the signature first: TensorFlow does not check
    shapes at a signature call, and some kernels crash the process on a wrong
    rank; here it is a `ValueError` saying what was received and expected.

    Args:
        path: a version directory, or a model directory (latest version).

    Attributes:
        signature: the concrete function; `input_specs`: dict from input name
            to `tf.TensorSpec`; `output_names`: its outputs, sorted.
    """

    def __init__(self, path):
        path = pathlib.Path(path)
        is_version = (path / "saved_model.pb").is_file()
        self.path = path if is_version else latest_version(path)
        self._loaded = tf.saved_model.load(str(self.path))  # owns the variables
        self.signature = self._loaded.signatures[_SIGNATURE_NAME]
        self.input_specs = dict(self.signature.structured_input_signature[1])
        self.output_names = sorted(self.signature.structured_outputs)

    def check_inputs(self, inputs):
        """Returns a dict of arrays cast to the signature, or raises `ValueError`."""
        if sorted(inputs) != sorted(self.input_specs):
            raise _invalid("inputs", sorted(inputs), sorted(self.input_specs))
        return {
            name: _check_array(name, inputs[name], spec)
            for name, spec in self.input_specs.items()
        }

    def predict_all(self, inputs):
        """Runs the signature on a dict of arrays; returns a dict of arrays."""
        outputs = self.signature(**self.check_inputs(inputs))
        return {name: value.numpy() for name, value in outputs.items()}

    def predict(self, x):
        """Returns the predictions on the batch `x` as a NumPy array."""
        (name,) = self.input_specs
        return self.predict_all({name: x})[self.output_names[0]]


class TFLitePredictor:
    """Runs a `.tflite` file in the LiteRT interpreter (`ai-edge-litert`).

    Every variant takes and returns floats (int8 models: converted for you).

    Args:
        path: the `.tflite` file.
        num_threads: interpreter threads. Defaults to `None` (LiteRT decides).
    """

    def __init__(self, path, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        self.path = pathlib.Path(path)
        self.interpreter = Interpreter(str(self.path), num_threads=num_threads)
        self.interpreter.allocate_tensors()

    def predict(self, x):
        """Returns the predictions on the batch `x` as a NumPy array."""
        x, interpreter = np.asarray(x), self.interpreter
        (source,) = interpreter.get_input_details()
        if tuple(source["shape"]) != x.shape:
            interpreter.resize_tensor_input(source["index"], list(x.shape))
            interpreter.allocate_tensors()
        scale, zero_point = source["quantization"]
        if scale:  # an integer input: quantize the floats
            info = np.iinfo(source["dtype"])
            x = np.clip(np.round(x / scale + zero_point), info.min, info.max)
        interpreter.set_tensor(source["index"], x.astype(source["dtype"]))
        interpreter.invoke()
        target = interpreter.get_output_details()[0]
        y = interpreter.get_tensor(target["index"])
        scale, zero_point = target["quantization"]
        return (y.astype(np.float32) - zero_point) * scale if scale else y


class _OnnxPredictor:
    def __init__(self, path):
        import onnxruntime

        self.path = pathlib.Path(path)
        providers = ["CPUExecutionProvider"]
        self.session = onnxruntime.InferenceSession(str(self.path), providers=providers)

    def predict(self, x):
        name = self.session.get_inputs()[0].name
        return self.session.run(None, {name: np.asarray(x, np.float32)})[0]


def _invalid(argument, received, expected):
    """The Keras-style error for an invalid argument."""
    return ValueError(
        f"Invalid value for argument `{argument}`. Received: {argument}={received}. "
        f"Expected {expected}."
    )


def _litert_options(format, representative_data):
    """The `tf.lite.TFLiteConverter` settings of a TFLite variant."""
    optimize = {"optimizations": [tf.lite.Optimize.DEFAULT]}
    if format == "tflite_dynamic_range":
        return optimize
    if format == "tflite_float16":
        return {**optimize, "target_spec": {"supported_types": [tf.float16]}}
    if format != "tflite_int8":
        return {}
    if representative_data is None:
        expected = "real training inputs to calibrate int8, e.g. `x_train[:500]`"
        raise _invalid("representative_data", None, expected)
    data = np.asarray(representative_data, np.float32)[:200]
    return {
        **optimize,
        "representative_dataset": lambda: ([example[None]] for example in data),
        "target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]},
        "inference_input_type": tf.int8,
        "inference_output_type": tf.int8,
    }


@contextlib.contextmanager
def _atomic_path(target):
    """Yields a path in a hidden folder next to `target`, then renames it there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = pathlib.Path(tempfile.mkdtemp(prefix=".partial-", dir=target.parent))
    try:
        yield scratch / target.name
        os.replace(scratch / target.name, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _compare(format, target, expected, actual):
    """Returns `(max_abs_diff, mean_abs_diff, agreement)`; raises if too far."""
    failures, agreement = [f"output shape {actual.shape} != {expected.shape}"], None
    if actual.shape == expected.shape:
        scale = max(1.0, float(np.max(np.abs(expected))))
        difference = np.abs(actual.astype(np.float64) - expected) / scale
        if expected.ndim == 2 and expected.shape[1] > 1:
            agreement = float(np.mean(expected.argmax(1) == actual.argmax(1)))
        measured = {
            "max_abs_diff": float(difference.max()),
            "mean_abs_diff": float(difference.mean()),
            "disagreement": 0.0 if agreement is None else 1.0 - agreement,
        }
        limits = _FORMATS[format][1]
        failures = [
            f"{k}={measured[k]:.3g} > {v}" for k, v in limits.items() if measured[k] > v
        ]
    if failures:
        raise ExportVerificationError(
            f"The {format} export does not match the Keras model on "
            f"{len(expected)} examples: {', '.join(failures)}. Nothing was written "
            f"to {str(target)!r}. Check that `x_verify` (and `representative_data`) "
            "are real inputs, preprocessed as in training."
        )
    return measured["max_abs_diff"], measured["mean_abs_diff"], agreement


def _input_signature(model):
    """A named `tf.TensorSpec` for a single input: `"inputs"` if Keras named it."""
    if len(model.inputs) != 1:
        return None  # Keras's own signature
    (spec,) = model.inputs
    name = "inputs" if _GENERATED_NAME.match(spec.name) else spec.name
    return [tf.TensorSpec(spec.shape, spec.dtype, name=name)]


def _versions(model_dir):
    found = model_dir.glob("*/saved_model.pb")  # nothing if model_dir is no folder
    return [int(pb.parent.name) for pb in found if pb.parent.name.isdigit()]


def _check_array(name, value, spec):
    """One signature input as an array of its dtype, or a clear `ValueError`."""
    array, dtype = np.asarray(value), np.dtype(spec.dtype.as_numpy_dtype)
    castable = {"f": "fiu", "i": "iu"}.get(dtype.kind, dtype.kind)
    if array.dtype.kind in castable and spec.shape.is_compatible_with(array.shape):
        return array.astype(dtype, copy=False)
    hint = " Add the batch axis, e.g. x[None]." * (array.ndim == spec.shape.rank - 1)
    raise ValueError(
        f"Invalid input {name!r} for the SavedModel signature. Received: shape "
        f"{array.shape}, dtype {array.dtype}. Expected: shape "
        f"{tuple(spec.shape.as_list())} (None is any size), dtype {dtype.name}.{hint}"
    )
