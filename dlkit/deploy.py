"""Exports a trained Keras model for serving and checks every export.

One function per format, each writing to a temporary path next to the target,
comparing the export's predictions with the Keras model's on real inputs, and
only then renaming it into place. A failed or interrupted export never leaves a
half-written artifact at the target path.

Formats, the runtime each is checked with, and the tolerance (`TOLERANCES`):

- `saved_model`: `model.export()` into `<model_dir>/<version>/`, run by TF
  Serving, KServe and `tf.saved_model.load`; max abs diff 1e-5.
- `keras`: `model.save()`, `keras.saving.load_model`; max abs diff 1e-6.
- `tflite_float32`, `tflite_float16`, `tflite_dynamic_range`, `tflite_int8`:
  `tf.lite.TFLiteConverter`, the LiteRT `Interpreter` (`ai-edge-litert`); max
  abs diff 1e-4 (float32) and 1e-2 (float16); mean abs diff 1e-2 and 98% same
  top-1 class (dynamic range); mean abs diff 2e-2 and 97% same top-1 (int8).
- `onnx`: `model.export(format="onnx")`, onnxruntime; max abs diff 1e-4.

Example:

>>> from dlkit import deploy
>>> results = deploy.export_all(  # doctest: +SKIP
...     model, "artifacts/exports", x_verify=x_test[:256],
...     representative_data=x_train[:500])
>>> results["tflite_int8"].size_bytes  # doctest: +SKIP
"""

import contextlib
import dataclasses
import os
import pathlib
import re
import shutil
import tempfile
import time
import uuid

import numpy as np

FORMATS = (
    "saved_model",
    "keras",
    "tflite_float32",
    "tflite_dynamic_range",
    "tflite_float16",
    "tflite_int8",
    "onnx",
)
TFLITE_QUANTIZATIONS = ("float32", "dynamic_range", "float16", "int8")
SIGNATURE_NAME = "serving_default"
_PARTIAL = re.compile(r"^\.partial-(\d+)-")
_GENERATED_NAME = re.compile(r"^(keras_tensor|input_layer)(_\d+)?$")
_CALIBRATION_EXAMPLES = 200


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """How far an export's outputs may be from the Keras model's.

    Differences are absolute differences of the outputs divided by
    `max(1, max |keras output|)`, so probabilities are compared as they are and
    large logits relative to their scale.

    Args:
        max_abs_diff: largest allowed difference of any output value, or `None`.
        mean_abs_diff: largest allowed mean difference, or `None`.
        min_agreement: smallest allowed fraction of examples whose top-1 class
            (argmax of a `(batch, classes)` output) equals the Keras model's, or
            `None`. Ignored for outputs that are not class scores.
    """

    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None
    min_agreement: float | None = None


TOLERANCES = {
    "saved_model": Tolerance(max_abs_diff=1e-5),
    "keras": Tolerance(max_abs_diff=1e-6),
    "tflite_float32": Tolerance(max_abs_diff=1e-4),
    "tflite_float16": Tolerance(max_abs_diff=1e-2),
    "tflite_dynamic_range": Tolerance(mean_abs_diff=1e-2, min_agreement=0.98),
    "tflite_int8": Tolerance(mean_abs_diff=2e-2, min_agreement=0.97),
    "onnx": Tolerance(max_abs_diff=1e-4),
}


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """A verified export: where it is, how big, and how close to the Keras model.

    Attributes:
        format: one of `FORMATS`.
        path: the file, or for `saved_model` the version directory.
        size_bytes: size of the file or of everything in the directory.
        max_abs_diff: largest scaled output difference from the Keras model.
        mean_abs_diff: mean scaled output difference.
        agreement: fraction of examples with the same top-1 class, or `None`
            when the output is not class scores.
        num_examples: number of real examples the export was checked on.
    """

    format: str
    path: str
    size_bytes: int
    max_abs_diff: float
    mean_abs_diff: float
    agreement: float | None
    num_examples: int


class ExportVerificationError(RuntimeError):
    """An export's predictions differ from the Keras model's beyond tolerance."""


def export_saved_model(
    model, model_dir, x_verify, version=None, overwrite=False, input_name=None
):
    """Exports a versioned SavedModel with a `serving_default` signature.

    Writes `<model_dir>/<version>/`, the layout TF Serving and KServe load, by
    `model.export()`. The new version is loaded back with
    `tf.saved_model.load` and its `serving_default` signature is compared with
    the Keras model on `x_verify` before it is renamed into place.

    Example:

    >>> result = export_saved_model(  # doctest: +SKIP
    ...     model, "exports/mnist", x_test[:256])
    >>> result.path  # doctest: +SKIP
    'exports/mnist/1'

    Args:
        model: a built Keras model with one input and one output.
        model_dir: the model's directory; versions are its numbered subfolders.
        x_verify: real inputs (a NumPy array) to compare predictions on.
        version: positive integer version. Defaults to `None`: one more than
            the highest existing version, or 1.
        overwrite: whether to replace an existing version. Defaults to `False`.
        input_name: name of the signature's input, which clients of the V2
            protocol and TF Serving's named inputs use. Defaults to `None`: the
            Keras input's name, or `"inputs"` when Keras generated that name
            (`keras_tensor_3`, `input_layer_1`, ...), so it stays stable.

    Returns:
        An `ExportResult`.

    Raises:
        ValueError: invalid `version` or `x_verify`.
        FileExistsError: the version exists and `overwrite` is `False`.
        ExportVerificationError: the export does not match the Keras model.
    """
    x_verify = _check_x_verify(x_verify)
    model_dir = pathlib.Path(model_dir)
    version = _check_version(version, model_dir)
    target = model_dir / str(version)
    with _atomic_path(target, overwrite) as temporary:
        model.export(
            str(temporary),
            format="tf_saved_model",
            verbose=False,
            input_signature=_input_signature(model, input_name),
        )
        return _verify(
            "saved_model",
            SavedModelPredictor(temporary),
            model,
            x_verify,
            temporary,
            target,
        )


def export_keras(model, filepath, x_verify, overwrite=False):
    """Saves the model as a `.keras` file and checks it loads and predicts the same.

    Args:
        model: a Keras model with one output.
        filepath: target path ending in `.keras`.
        x_verify: real inputs to compare predictions on.
        overwrite: whether to replace an existing file. Defaults to `False`.

    Returns:
        An `ExportResult`.

    Raises:
        ValueError: `filepath` does not end in `.keras`, or invalid `x_verify`.
        FileExistsError: the file exists and `overwrite` is `False`.
        ExportVerificationError: the reloaded model predicts differently.
    """
    target = _check_suffix(filepath, ".keras")
    x_verify = _check_x_verify(x_verify)
    with _atomic_path(target, overwrite) as temporary:
        model.save(temporary)
        return _verify(
            "keras", KerasPredictor(temporary), model, x_verify, temporary, target
        )


def export_tflite(
    model,
    filepath,
    x_verify,
    quantization="float32",
    representative_data=None,
    overwrite=False,
):
    """Converts the model to TFLite and checks it in the LiteRT interpreter.

    Quantization variants:
    - `"float32"`: no quantization.
    - `"dynamic_range"`: int8 weights, float activations (about 4x smaller).
    - `"float16"`: float16 weights (about 2x smaller).
    - `"int8"`: full-integer model with int8 inputs and outputs, calibrated on
      `representative_data` (for integer-only hardware). `TFLitePredictor`
      quantizes float inputs and dequantizes outputs for you.

    Example:

    >>> export_tflite(  # doctest: +SKIP
    ...     model, "exports/mnist_int8.tflite", x_test[:256],
    ...     quantization="int8", representative_data=x_train[:500])

    Args:
        model: a Keras model with one input and one output.
        filepath: target path ending in `.tflite`.
        x_verify: real inputs to compare predictions on.
        quantization: one of `TFLITE_QUANTIZATIONS`. Defaults to `"float32"`.
        representative_data: real training inputs used to calibrate the int8
            ranges (the first 200 are used). Required for `"int8"`, ignored
            otherwise. Defaults to `None`.
        overwrite: whether to replace an existing file. Defaults to `False`.

    Returns:
        An `ExportResult` whose format is `"tflite_<quantization>"`.

    Raises:
        ValueError: invalid `quantization`, `filepath` or data.
        FileExistsError: the file exists and `overwrite` is `False`.
        ExportVerificationError: the TFLite model is outside its tolerance.
    """
    target = _check_suffix(filepath, ".tflite")
    _check_quantization(quantization, representative_data)
    x_verify = _check_x_verify(x_verify)
    content = _convert_to_tflite(model, quantization, representative_data)
    with _atomic_path(target, overwrite) as temporary:
        temporary.write_bytes(content)
        predictor = TFLitePredictor(temporary)
        return _verify(
            f"tflite_{quantization}", predictor, model, x_verify, temporary, target
        )


def export_onnx(model, filepath, x_verify, overwrite=False):
    """Exports the model to ONNX and checks it with onnxruntime.

    Args:
        model: a Keras model with one input and one output.
        filepath: target path ending in `.onnx`.
        x_verify: real inputs to compare predictions on.
        overwrite: whether to replace an existing file. Defaults to `False`.

    Returns:
        An `ExportResult`.

    Raises:
        ValueError: `filepath` does not end in `.onnx`, or invalid `x_verify`.
        FileExistsError: the file exists and `overwrite` is `False`.
        ExportVerificationError: onnxruntime predicts differently.
    """
    target = _check_suffix(filepath, ".onnx")
    x_verify = _check_x_verify(x_verify)
    with _atomic_path(target, overwrite) as temporary:
        model.export(str(temporary), format="onnx", verbose=False)
        return _verify(
            "onnx", OnnxPredictor(temporary), model, x_verify, temporary, target
        )


def export_all(model, directory, x_verify, representative_data, name="model"):
    """Exports the model in every format of `FORMATS`, each one verified.

    Writes into `directory`: `<name>/<version>/` (SavedModel), `<name>.keras`,
    `<name>_<quantization>.tflite` for each TFLite variant and `<name>.onnx`.

    Args:
        model: a Keras model with one input and one output.
        directory: folder to write into (created if missing).
        x_verify: real inputs, e.g. a slice of the test split, to compare
            predictions on.
        representative_data: real training inputs to calibrate the int8 model.
        name: base name of the exports. Defaults to `"model"`.

    Returns:
        A dict from format name to `ExportResult`, in the order of `FORMATS`.

    Raises:
        FileExistsError: a file export already exists; delete it or choose
            another `directory`.
        ExportVerificationError: an export is outside its tolerance.
    """
    directory = pathlib.Path(directory)
    results = {
        "saved_model": export_saved_model(model, directory / name, x_verify),
        "keras": export_keras(model, directory / f"{name}.keras", x_verify),
    }
    for quantization in TFLITE_QUANTIZATIONS:
        path = directory / f"{name}_{quantization}.tflite"
        results[f"tflite_{quantization}"] = export_tflite(
            model, path, x_verify, quantization, representative_data
        )
    results["onnx"] = export_onnx(model, directory / f"{name}.onnx", x_verify)
    return results


def latest_version(model_dir):
    """Returns the path of the highest numbered version in a model directory.

    Args:
        model_dir: a directory holding versions `1/`, `2/`, ... as TF Serving
            expects.

    Returns:
        The `pathlib.Path` of the highest version.

    Raises:
        ValueError: no numbered version holding a `saved_model.pb` exists.
    """
    model_dir = pathlib.Path(model_dir)
    versions = sorted(_versions(model_dir))
    if versions:
        return model_dir / str(versions[-1])
    hint = (
        f" It is itself a SavedModel: pass its parent, {str(model_dir.parent)!r}."
        if (model_dir / "saved_model.pb").is_file()
        else " Export one with `dlkit.deploy.export_saved_model(model, model_dir, x)`."
    )
    raise ValueError(
        f"Invalid model directory. Received: {str(model_dir)!r}. Expected a "
        f"directory with numbered version subdirectories (1/, 2/, ...) that each "
        f"hold a saved_model.pb.{hint}"
    )


def load_predictor(path):
    """Loads an export for prediction, choosing the runtime from the path.

    Args:
        path: a SavedModel directory (model or version directory), or a
            `.keras`, `.tflite` or `.onnx` file.

    Returns:
        An object with a `predict(x)` method returning a NumPy array:
        `SavedModelPredictor`, `KerasPredictor`, `TFLitePredictor` or
        `OnnxPredictor`.

    Raises:
        ValueError: the path is not a recognized export.
    """
    path = pathlib.Path(path)
    predictors = {
        ".keras": KerasPredictor,
        ".tflite": TFLitePredictor,
        ".onnx": OnnxPredictor,
    }
    if path.is_dir():
        return SavedModelPredictor(path)
    if path.suffix in predictors and path.is_file():
        return predictors[path.suffix](path)
    raise ValueError(
        f"Invalid export path. Received: {str(path)!r}. Expected an existing "
        "SavedModel directory or a .keras, .tflite or .onnx file."
    )


class SavedModelPredictor:
    """Runs a SavedModel's serving signature, as TF Serving does.

    Args:
        path: a version directory, or a model directory (its latest version
            is used).
        signature_name: Defaults to `"serving_default"`.

    Attributes:
        signature: the concrete function of the signature.
        input_specs: dict from input name to `tf.TensorSpec`.
        output_names: names of the signature's outputs, sorted.
    """

    def __init__(self, path, signature_name=SIGNATURE_NAME):
        import tensorflow as tf

        path = pathlib.Path(path)
        if not (path / "saved_model.pb").is_file():
            path = latest_version(path)
        self.path = path
        self._loaded = tf.saved_model.load(str(path))
        if signature_name not in self._loaded.signatures:
            raise ValueError(
                f"Invalid signature name. Received: {signature_name!r}. Expected "
                f"one of {sorted(self._loaded.signatures)} (found in {str(path)!r})."
            )
        self.signature = self._loaded.signatures[signature_name]
        self.input_specs = dict(self.signature.structured_input_signature[1])
        self.output_names = sorted(self.signature.structured_outputs)

    def predict_all(self, inputs):
        """Runs the signature on a dict of arrays; returns a dict of arrays."""
        import tensorflow as tf

        tensors = {
            name: tf.constant(np.asarray(inputs[name]), dtype=spec.dtype)
            for name, spec in self.input_specs.items()
        }
        return {
            name: value.numpy() for name, value in self.signature(**tensors).items()
        }

    def predict(self, x):
        """Runs a single-input, single-output signature on an array `x`."""
        (name,) = self.input_specs
        return self.predict_all({name: x})[self.output_names[0]]


class KerasPredictor:
    """Runs a `.keras` file with `keras.saving.load_model`.

    Args:
        path: the `.keras` file.
    """

    def __init__(self, path):
        import keras

        self.path = pathlib.Path(path)
        self.model = keras.saving.load_model(self.path)

    def predict(self, x):
        """Returns the model's predictions on the batch `x` as a NumPy array."""
        return np.asarray(self.model(np.asarray(x), training=False))


class TFLitePredictor:
    """Runs a `.tflite` model in the LiteRT interpreter (`ai-edge-litert`).

    Float inputs are quantized and outputs dequantized automatically for
    integer models, so every variant is called the same way.

    Args:
        path: the `.tflite` file.
        num_threads: interpreter threads. Defaults to `None` (LiteRT decides).
    """

    def __init__(self, path, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        self.path = pathlib.Path(path)
        self.interpreter = Interpreter(
            model_path=str(self.path), num_threads=num_threads
        )
        self.interpreter.allocate_tensors()
        self._batch_size = None

    def predict(self, x):
        """Returns the model's float predictions on the batch `x`."""
        x = np.asarray(x)
        self._resize(x.shape)
        interpreter = self.interpreter
        (source,) = interpreter.get_input_details()
        interpreter.set_tensor(source["index"], _quantize(x, source))
        interpreter.invoke()
        target = interpreter.get_output_details()[0]
        return _dequantize(interpreter.get_tensor(target["index"]), target)

    def _resize(self, shape):
        if shape[0] == self._batch_size:
            return
        (source,) = self.interpreter.get_input_details()
        self.interpreter.resize_tensor_input(source["index"], list(shape))
        self.interpreter.allocate_tensors()
        self._batch_size = shape[0]


class OnnxPredictor:
    """Runs an `.onnx` model with onnxruntime on the CPU.

    Args:
        path: the `.onnx` file.
    """

    def __init__(self, path):
        import onnxruntime

        self.path = pathlib.Path(path)
        self.session = onnxruntime.InferenceSession(
            str(self.path), providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    def predict(self, x):
        """Returns the model's predictions on `x` as a NumPy array."""
        x = np.asarray(x, dtype=np.float32)
        return self.session.run(None, {self.input_name: x})[0]


def measure_latency(predict, x, num_runs=200, warmup=10):
    """Measures per-example latency: `predict` called on one example at a time.

    Example:

    >>> predictor = load_predictor("model.tflite")  # doctest: +SKIP
    >>> measure_latency(predictor.predict, x_test)  # doctest: +SKIP
    {'p50_ms': 0.05, 'p99_ms': 0.09, 'mean_ms': 0.06}

    Args:
        predict: a callable taking a batch of inputs.
        x: inputs; examples are taken in turn, cycling if needed.
        num_runs: number of timed calls. Defaults to `200`.
        warmup: untimed calls first. Defaults to `10`.

    Returns:
        A dict with `p50_ms`, `p99_ms` and `mean_ms`.
    """
    x = np.asarray(x)
    for index in range(warmup):
        predict(x[index % len(x)][None])
    timings = []
    for index in range(num_runs):
        example = x[index % len(x)][None]
        start = time.perf_counter()
        predict(example)
        timings.append((time.perf_counter() - start) * 1000)
    return {
        "p50_ms": float(np.percentile(timings, 50)),
        "p99_ms": float(np.percentile(timings, 99)),
        "mean_ms": float(np.mean(timings)),
    }


def size_bytes(path):
    """Returns the size of a file, or of all files under a directory."""
    path = pathlib.Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _input_signature(model, input_name):
    """One named `tf.TensorSpec` for a single-input model, else `None` (Keras's)."""
    import tensorflow as tf

    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1:
        return None
    name = input_name or inputs[0].name
    if input_name is None and _GENERATED_NAME.match(name):
        name = "inputs"
    return [tf.TensorSpec(inputs[0].shape, inputs[0].dtype, name=name)]


def _verify(export_format, predictor, model, x_verify, temporary, target):
    expected = np.asarray(model.predict(x_verify, verbose=0))
    actual = np.asarray(predictor.predict(x_verify))
    if actual.shape != expected.shape:
        raise ExportVerificationError(
            f"The {export_format} export's output shape {actual.shape} differs "
            f"from the Keras model's {expected.shape}; nothing was written to "
            f"{str(target)!r}."
        )
    result = ExportResult(
        export_format,
        str(target),
        size_bytes(temporary),
        *_differences(expected, actual),
        num_examples=len(x_verify),
    )
    _check_tolerance(result, TOLERANCES[export_format])
    return result


def _differences(expected, actual):
    scale = max(1.0, float(np.max(np.abs(expected))))
    difference = np.abs(actual.astype(np.float64) - expected) / scale
    agreement = None
    if expected.ndim == 2 and expected.shape[1] > 1:
        agreement = float(np.mean(expected.argmax(1) == actual.argmax(1)))
    return float(difference.max()), float(difference.mean()), agreement


def _check_tolerance(result, tolerance):
    failures = []
    if (
        tolerance.max_abs_diff is not None
        and result.max_abs_diff > tolerance.max_abs_diff
    ):
        failures.append(
            f"max_abs_diff={result.max_abs_diff:.3g} > {tolerance.max_abs_diff}"
        )
    if (
        tolerance.mean_abs_diff is not None
        and result.mean_abs_diff > tolerance.mean_abs_diff
    ):
        failures.append(
            f"mean_abs_diff={result.mean_abs_diff:.3g} > {tolerance.mean_abs_diff}"
        )
    if (
        tolerance.min_agreement is not None
        and result.agreement is not None
        and result.agreement < tolerance.min_agreement
    ):
        failures.append(
            f"top-1 agreement={result.agreement:.3f} < {tolerance.min_agreement}"
        )
    if failures:
        raise ExportVerificationError(
            f"The {result.format} export does not match the Keras model on "
            f"{result.num_examples} verification examples: {', '.join(failures)}. "
            f"Nothing was written to {result.path!r}. Check that `x_verify` (and "
            "for int8 `representative_data`) are real inputs preprocessed the way "
            "the model was trained on."
        )


def _check_x_verify(x_verify):
    x_verify = np.asarray(x_verify)
    if x_verify.ndim < 1 or len(x_verify) == 0 or x_verify.dtype.kind not in "fiub":
        raise ValueError(
            "Invalid value for argument `x_verify`. Received: an array of shape "
            f"{x_verify.shape} and dtype {x_verify.dtype}. Expected a non-empty "
            "numeric batch of real model inputs, e.g. `x_test[:256]`."
        )
    return x_verify.astype(np.float32) if x_verify.dtype.kind != "f" else x_verify


def _check_version(version, model_dir):
    if version is None:
        return max(_versions(model_dir), default=0) + 1
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(
            f"Invalid value for argument `version`. Received: version={version!r}. "
            "Expected a positive integer (TF Serving serves numbered versions), or "
            "None for the next free version."
        )
    return version


def _versions(model_dir):
    if not model_dir.is_dir():
        return []
    return [
        int(child.name)
        for child in model_dir.iterdir()
        if child.name.isdigit() and (child / "saved_model.pb").is_file()
    ]


def _check_suffix(filepath, suffix):
    path = pathlib.Path(filepath)
    if path.suffix != suffix:
        raise ValueError(
            f"Invalid value for argument `filepath`. Received: {str(path)!r}. "
            f"Expected a path ending in {suffix!r}, e.g. 'model{suffix}'."
        )
    return path


def _check_quantization(quantization, representative_data):
    if quantization not in TFLITE_QUANTIZATIONS:
        raise ValueError(
            "Invalid value for argument `quantization`. Received: "
            f"quantization={quantization!r}. Expected one of {TFLITE_QUANTIZATIONS}."
        )
    if quantization == "int8" and representative_data is None:
        raise ValueError(
            "Missing argument `representative_data` for quantization='int8'. "
            "Expected a few hundred real training inputs (e.g. "
            "`representative_data=x_train[:500]`) to calibrate the int8 ranges."
        )


def _convert_to_tflite(model, quantization, representative_data):
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="dlkit-tflite-") as scratch:
        saved_model = os.path.join(scratch, "saved_model")
        model.export(saved_model, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        if quantization != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantization == "int8":
            converter.representative_dataset = _calibration_batches(representative_data)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        return converter.convert()


def _calibration_batches(representative_data):
    data = np.asarray(representative_data, dtype=np.float32)[:_CALIBRATION_EXAMPLES]

    def batches():
        for example in data:
            yield [example[None]]

    return batches


def _quantize(x, details):
    dtype = details["dtype"]
    scale, zero_point = details["quantization"]
    if not np.issubdtype(dtype, np.integer) or scale == 0:
        return x.astype(dtype)
    limits = np.iinfo(dtype)
    values = np.round(x.astype(np.float32) / scale + zero_point)
    return np.clip(values, limits.min, limits.max).astype(dtype)


def _dequantize(y, details):
    scale, zero_point = details["quantization"]
    if not np.issubdtype(y.dtype, np.integer) or scale == 0:
        return y
    return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)


@contextlib.contextmanager
def _atomic_path(target, overwrite):
    """Yields a temporary sibling of `target`; renames it into place on success."""
    target = pathlib.Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"Export target already exists: {str(target)!r}. Delete it, choose "
            "another path or version, or pass overwrite=True."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(target.parent)
    temporary = target.with_name(
        f".partial-{os.getpid()}-{uuid.uuid4().hex[:8]}-{target.name}"
    )
    try:
        yield temporary
        _move_into_place(temporary, target)
    finally:
        _remove(temporary)


def _move_into_place(temporary, target):
    if not temporary.is_dir() or not target.exists():
        os.replace(temporary, target)
        return
    old = target.with_name(f".partial-{os.getpid()}-{uuid.uuid4().hex[:8]}-old")
    os.replace(target, old)
    os.replace(temporary, target)
    _remove(old)


def _remove(path):
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def _remove_stale_partials(directory):
    """Deletes leftovers of exports whose process died (e.g. was killed)."""
    if os.name != "posix":
        return
    for child in directory.iterdir():
        match = _PARTIAL.match(child.name)
        if match and not _process_alive(int(match.group(1))):
            _remove(child)


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
