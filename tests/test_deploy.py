"""Verified, atomic exports of a tiny trained classifier, in every format."""

import importlib.resources
import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import yaml

from dlkit import deploy

pytestmark = pytest.mark.slow

FORMATS = [
    "saved_model",
    "keras",
    "tflite_float32",
    "tflite_dynamic_range",
    "tflite_float16",
    "tflite_int8",
    "onnx",
]


@pytest.fixture(scope="module")
def blobs():
    """Three well separated clusters in 8 dimensions: `(x, y)`."""
    rng = np.random.default_rng(0)
    centers = rng.normal(0.0, 3.0, (3, 8))
    y = rng.integers(0, 3, 600)
    return (centers[y] + rng.normal(0.0, 1.0, (600, 8))).astype("float32"), y


@pytest.fixture(scope="module")
def model(blobs):
    """A small softmax classifier, trained until its outputs are confident."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8,), name="features"),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(*blobs, epochs=20, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def exported(model, blobs, tmp_path_factory):
    x, _ = blobs
    directory = tmp_path_factory.mktemp("exports")
    return directory, deploy.export_all(model, directory, x[:128], x[128:])


def test_export_all_writes_every_format_verified(exported):
    directory, results = exported
    assert list(results) == FORMATS
    assert sorted(p.name for p in directory.iterdir()) == [
        "model",
        "model.keras",
        "model.onnx",
        "model_dynamic_range.tflite",
        "model_float16.tflite",
        "model_float32.tflite",
        "model_int8.tflite",
    ]
    for name, result in results.items():
        assert result.format == name and pathlib.Path(result.path).exists()
        assert result.size_bytes > 0 and result.agreement >= 0.97, result
    assert results["saved_model"].max_abs_diff <= 1e-5
    assert results["tflite_int8"].mean_abs_diff <= 2e-2


@pytest.mark.parametrize("export_format", FORMATS)
def test_every_export_predicts_like_keras_in_its_runtime(
    export_format, exported, model, blobs
):
    x, y = blobs
    path = exported[1][export_format].path
    if export_format == "keras":
        predictions = keras.saving.load_model(path).predict(x, verbose=0)
    else:
        predictions = deploy.load_predictor(path).predict(x)
    expected = model.predict(x, verbose=0)
    assert predictions.shape == expected.shape == (600, 3)
    assert np.mean(predictions.argmax(1) == expected.argmax(1)) >= 0.98
    atol = {"tflite_int8": 0.05, "tflite_float16": 1e-2, "tflite_dynamic_range": 0.05}
    np.testing.assert_allclose(
        predictions, expected, atol=atol.get(export_format, 1e-4)
    )


def test_int8_model_has_integer_inputs_and_outputs(exported):
    predictor = deploy.TFLitePredictor(exported[1]["tflite_int8"].path)
    (source,) = predictor.interpreter.get_input_details()
    target = predictor.interpreter.get_output_details()[0]
    assert source["dtype"] == np.int8 and target["dtype"] == np.int8
    assert source["quantization"][0] > 0


def test_saved_model_versions_count_up_and_inputs_get_stable_names(tmp_path):
    unnamed = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    (tmp_path / "m" / "notes").mkdir(parents=True)  # not a version: ignored
    first = deploy.export(unnamed, tmp_path / "m", x)
    second = deploy.export(unnamed, tmp_path / "m", x)
    assert (first.path, second.path) == (str(tmp_path / "m/1"), str(tmp_path / "m/2"))
    assert deploy.latest_version(tmp_path / "m") == tmp_path / "m" / "2"
    predictor = deploy.SavedModelPredictor(tmp_path / "m")
    assert predictor.path == tmp_path / "m" / "2"
    assert list(predictor.input_specs) == ["inputs"]  # not keras_tensor_NN
    with pytest.raises(ValueError, match="this is a version, pass"):
        deploy.latest_version(tmp_path / "m" / "1")
    with pytest.raises(ValueError, match="numbered versions"):
        deploy.latest_version(tmp_path / "m" / "notes")


@pytest.mark.parametrize(
    "bad, received",
    [
        (np.zeros(8, "float32"), "Received: shape (8,), dtype float32"),
        (np.zeros((2, 8, 1), "float32"), "Received: shape (2, 8, 1)"),
        (np.zeros((2, 7), "float32"), "Received: shape (2, 7)"),
        (np.full((2, 8), "a"), "dtype <U1"),
    ],
)
def test_wrong_input_to_a_saved_model_is_a_clear_value_error(exported, bad, received):
    predictor = deploy.SavedModelPredictor(exported[1]["saved_model"].path)
    with pytest.raises(ValueError, match="Expected: shape") as error:
        predictor.predict(bad)
    message = str(error.value)
    assert received in message and "(None, 8)" in message and "float32" in message
    assert ("x[None]" in message) == (bad.ndim == 1)


def test_wrong_input_names_are_a_clear_value_error(exported):
    predictor = deploy.SavedModelPredictor(exported[1]["saved_model"].path)
    with pytest.raises(ValueError, match=r"inputs=\['images'\]. Expected"):
        predictor.predict_all({"images": np.zeros((1, 8), "float32")})
    outputs = predictor.predict_all({"features": np.zeros((1, 8), int)})  # cast
    assert outputs["output_0"].shape == (1, 3)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"format": "tflite_int4"}, "format='tflite_int4'"),
        ({"filepath": "a.onx", "format": "onnx"}, "a .onnx file"),
        ({"filepath": "a.h5", "format": "keras"}, "a .keras file"),
        ({"format": "tflite_int8"}, "representative_data=None"),
        ({"x_verify": np.zeros((0, 8))}, "x_verify=an array of shape (0, 8)"),
        ({"x_verify": [["a"] * 8]}, "x_verify=an array of shape (1, 8)"),
    ],
)
def test_invalid_arguments_say_what_was_expected_and_write_nothing(
    arguments, message, model, blobs, tmp_path
):
    call = {"filepath": "a.tflite", "x_verify": blobs[0][:8], **arguments}
    call["filepath"] = tmp_path / call["filepath"]
    with pytest.raises(ValueError, match="Expected") as error:
        deploy.export(model, **call)
    assert message in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_failed_verification_keeps_the_old_file_and_leaves_nothing_else(
    model, blobs, tmp_path
):
    x, _ = blobs
    target = tmp_path / "model_int8.tflite"
    target.write_bytes(b"the last good export")
    miscalibrated = x * 1000  # int8 ranges 1000x too wide: every input rounds to 0
    with pytest.raises(deploy.ExportVerificationError, match="disagreement") as error:
        deploy.export(model, target, x[:128], "tflite_int8", miscalibrated)
    assert "Nothing was written" in str(error.value)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    assert target.read_bytes() == b"the last good export"
    deploy.export(model, target, x[:128], "tflite_float32")  # a verified export
    assert target.read_bytes()[4:8] == b"TFL3"


def test_exception_during_export_or_a_bad_path_leaves_nothing(
    model, blobs, tmp_path, monkeypatch
):
    def broken(self, x):
        raise RuntimeError("injected failure while verifying")

    with monkeypatch.context() as patch:
        patch.setattr(deploy.SavedModelPredictor, "predict", broken)
        with pytest.raises(RuntimeError, match="injected"):
            deploy.export(model, tmp_path / "digits", blobs[0][:8])
    assert list((tmp_path / "digits").iterdir()) == []
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OSError):
        deploy.export(model, tmp_path / "file" / "m.onnx", blobs[0][:8], "onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits", "file"]


KILLED_EXPORT = textwrap.dedent(
    """
    import pathlib, sys, time
    import keras, numpy as np
    from dlkit import deploy

    model_dir, marker = sys.argv[1:]

    def verify_forever(path):
        pathlib.Path(marker).write_text(str(path))
        time.sleep(600)

    deploy.load_predictor = verify_forever
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    deploy.export(model, model_dir, np.zeros((2, 4), "float32"))
    """
)


def test_sigkilled_export_never_leaves_a_version_behind(tmp_path):
    model_dir, marker = tmp_path / "digits", tmp_path / "marker"
    command = [sys.executable, "-c", KILLED_EXPORT, str(model_dir), str(marker)]
    process = subprocess.Popen(command)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and process.poll() is None:
            assert time.monotonic() < deadline, "the export never reached verification"
            time.sleep(0.1)
        assert marker.exists(), "the export subprocess failed"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    (leftover,) = model_dir.iterdir()  # the complete but unverified SavedModel
    assert leftover.name.startswith(".partial-")
    assert (leftover / "1" / "saved_model.pb").is_file()
    with pytest.raises(ValueError, match="numbered versions"):
        deploy.latest_version(model_dir)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert deploy.export(model, model_dir, np.zeros((2, 4))).path == str(
        model_dir / "1"
    )


def test_measure_latency_reports_percentiles(exported, blobs):
    predictor = deploy.load_predictor(exported[1]["tflite_float32"].path)
    latency = deploy.measure_latency(predictor.predict, blobs[0], num_runs=20, warmup=2)
    assert set(latency) == {"p50_ms", "p99_ms", "mean_ms"}
    assert 0 < latency["p50_ms"] <= latency["p99_ms"]


def test_load_predictor_names_what_it_can_load(tmp_path):
    with pytest.raises(ValueError, match="SavedModel folder, .tflite or .onnx"):
        deploy.load_predictor(tmp_path / "model.pt")


DEPLOY_ASSETS = importlib.resources.files("dlkit") / "assets/deploy"  # package data
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def quantity(value):
    """Kubernetes CPU/memory quantities as numbers: '500m', '2', '1Gi'."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if str(value).endswith(suffix):
            return float(str(value)[: -len(suffix)]) * factor
    return float(value)


def test_tf_serving_inference_service_manifest():
    text = (DEPLOY_ASSETS / "inferenceservice-tfserving.yaml").read_text()
    (manifest,) = yaml.safe_load_all(text)
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1"
    assert manifest["kind"] == "InferenceService"
    assert DNS_LABEL.match(manifest["metadata"]["name"])
    predictor = manifest["spec"]["predictor"]
    model = predictor["model"]
    assert model["modelFormat"]["name"] == "tensorflow"
    assert model["runtime"] == "kserve-tensorflow-serving"
    assert model["protocolVersion"] == "v1"
    assert re.match(r"^(pvc|gs|s3)://[^/]+/.+", model["storageUri"])
    assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"]
    assert predictor["scaleMetric"] in ("concurrency", "rps", "cpu", "memory")
    assert isinstance(predictor["scaleTarget"], int) and predictor["scaleTarget"] > 0
    resources = model["resources"]
    for name in ("cpu", "memory"):
        requested, limit = resources["requests"][name], resources["limits"][name]
        assert 0 < quantity(requested) <= quantity(limit)
    annotations = manifest["metadata"]["annotations"]
    assert annotations["serving.kserve.io/enable-prometheus-scraping"] == "true"


def test_tf_serving_docker_command_is_documented():
    readme = (DEPLOY_ASSETS / "README.md").read_text()
    assert "tensorflow/serving" in readme
    assert "-e MODEL_NAME=mnist" in readme
    assert ":/models/mnist:ro" in readme
    config = (DEPLOY_ASSETS / "tfserving-monitoring.config").read_text()
    assert "prometheus_config" in config and "enable: true" in config
