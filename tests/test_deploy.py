"""Export round trips per format, tolerances, and atomic (all-or-nothing) exports."""

import json
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

from dlkit import datasets, deploy, serve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mnist():
    """A slice of the quick-profile MNIST digits, scaled to [0, 1]."""
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist("quick", verbose=False)
    return (
        (x_train[:2000] / 255.0).astype("float32"),
        y_train[:2000],
        (x_test[:300] / 255.0).astype("float32"),
        y_test[:300],
    )


@pytest.fixture(scope="module")
def model(mnist):
    """A tiny softmax classifier trained for two epochs: confident, real outputs."""
    x_train, y_train, _, _ = mnist
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28), name="images"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=2, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def exported(model, mnist, tmp_path_factory):
    x_train, _, x_test, _ = mnist
    directory = tmp_path_factory.mktemp("exports")
    results = deploy.export_all(
        model, directory, x_verify=x_test[:128], representative_data=x_train[:300]
    )
    return directory, results


def accuracy(predictions, labels):
    return float(np.mean(np.argmax(predictions, axis=1) == labels))


def test_export_all_writes_every_format_within_its_tolerance(exported):
    directory, results = exported
    assert list(results) == list(deploy.FORMATS)
    for name, result in results.items():
        assert result.format == name
        assert pathlib.Path(result.path).exists(), name
        assert result.size_bytes == deploy.size_bytes(result.path) > 0
        assert result.num_examples == 128
        tolerance = deploy.TOLERANCES[name]
        for field in ("max_abs_diff", "mean_abs_diff"):
            limit = getattr(tolerance, field)
            assert limit is None or getattr(result, field) <= limit, (name, result)
    assert not [p for p in directory.iterdir() if p.name.startswith(".partial")]


@pytest.mark.parametrize("export_format", deploy.FORMATS)
def test_every_export_round_trips_with_its_own_runtime(
    export_format, exported, model, mnist
):
    _, _, x_test, y_test = mnist
    _, results = exported
    predictor = deploy.load_predictor(results[export_format].path)
    predictions = predictor.predict(x_test)
    expected = model.predict(x_test, verbose=0)
    assert predictions.shape == expected.shape
    lost = accuracy(expected, y_test) - accuracy(predictions, y_test)
    allowed = {"tflite_dynamic_range": 0.005, "tflite_int8": 0.01}
    assert lost <= allowed.get(export_format, 0.0), (export_format, lost)
    if export_format in ("saved_model", "keras", "tflite_float32", "onnx"):
        np.testing.assert_allclose(predictions, expected, atol=1e-4)


def test_saved_model_layout_and_signature(exported, model, mnist):
    directory, results = exported
    assert results["saved_model"].path == str(directory / "model" / "1")
    assert (directory / "model" / "1" / "saved_model.pb").is_file()
    predictor = deploy.SavedModelPredictor(directory / "model")
    assert predictor.path == directory / "model" / "1"
    assert list(predictor.input_specs) == ["images"]
    spec = predictor.input_specs["images"]
    assert spec.shape.as_list() == [None, 28, 28]
    assert spec.dtype.name == "float32"
    assert predictor.predict(mnist[2][:3]).shape == (3, 10)


@pytest.mark.parametrize(
    "input_name, expected", [(None, "inputs"), ("pixels", "pixels")]
)
def test_signature_input_name_is_stable(input_name, expected, tmp_path):
    keras.utils.set_random_seed(0)
    unnamed = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    deploy.export_saved_model(unnamed, tmp_path / "m", x, input_name=input_name)
    predictor = deploy.SavedModelPredictor(tmp_path / "m")
    assert list(predictor.input_specs) == [expected]


def test_int8_model_has_integer_inputs_and_outputs(exported):
    _, results = exported
    predictor = deploy.TFLitePredictor(results["tflite_int8"].path)
    (source,) = predictor.interpreter.get_input_details()
    target = predictor.interpreter.get_output_details()[0]
    assert source["dtype"] == np.int8 and target["dtype"] == np.int8
    assert source["quantization"][0] > 0


def test_quantized_models_are_smaller(exported):
    _, results = exported
    sizes = {name: result.size_bytes for name, result in results.items()}
    assert sizes["tflite_dynamic_range"] < 0.4 * sizes["tflite_float32"]
    assert sizes["tflite_int8"] < 0.4 * sizes["tflite_float32"]
    assert sizes["tflite_float16"] < 0.6 * sizes["tflite_float32"]


def test_next_export_gets_the_next_version(model, mnist, tmp_path):
    x_test = mnist[2][:16]
    first = deploy.export_saved_model(model, tmp_path / "digits", x_test)
    second = deploy.export_saved_model(model, tmp_path / "digits", x_test)
    assert (first.path, second.path) == (
        str(tmp_path / "digits" / "1"),
        str(tmp_path / "digits" / "2"),
    )
    assert deploy.latest_version(tmp_path / "digits") == tmp_path / "digits" / "2"


def test_existing_targets_are_kept_unless_overwrite(model, mnist, tmp_path):
    x_test = mnist[2][:16]
    target = tmp_path / "model.onnx"
    target.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        deploy.export_onnx(model, target, x_test)
    assert target.read_bytes() == b"keep me"
    deploy.export_onnx(model, target, x_test, overwrite=True)
    assert target.stat().st_size > 1000
    deploy.export_saved_model(model, tmp_path / "m", x_test, version=3)
    with pytest.raises(FileExistsError):
        deploy.export_saved_model(model, tmp_path / "m", x_test, version=3)
    deploy.export_saved_model(model, tmp_path / "m", x_test, version=3, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["3"]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, x, d: deploy.export_tflite(m, d / "a.tflite", x, "int4"), "int4"),
        (
            lambda m, x, d: deploy.export_tflite(m, d / "a.tflite", x, "int8"),
            "representative_data",
        ),
        (lambda m, x, d: deploy.export_onnx(m, d / "a.onx", x), "'.onnx'"),
        (lambda m, x, d: deploy.export_keras(m, d / "a.h5", x), "'.keras'"),
        (lambda m, x, d: deploy.export_saved_model(m, d, x, version=0), "version=0"),
        (lambda m, x, d: deploy.export_onnx(m, d / "a.onnx", x[:0]), "x_verify"),
        (lambda m, x, d: deploy.export_onnx(m, d / "a.onnx", [["a"]]), "x_verify"),
        (lambda m, x, d: deploy.latest_version(d), "numbered version"),
        (lambda m, x, d: deploy.load_predictor(d / "model.pt"), ".tflite"),
    ],
)
def test_invalid_arguments_say_what_was_received_and_expected(
    call, message, model, mnist, tmp_path
):
    with pytest.raises(ValueError, match="Expected") as error:
        call(model, mnist[2][:8], tmp_path)
    assert message in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_latest_version_explains_a_version_directory(exported):
    directory, _ = exported
    with pytest.raises(ValueError, match="pass its parent"):
        deploy.latest_version(directory / "model" / "1")


def test_failed_verification_leaves_nothing_behind(model, mnist, tmp_path, monkeypatch):
    _, _, x_test, _ = mnist
    impossible = deploy.Tolerance(max_abs_diff=-1.0)
    monkeypatch.setitem(deploy.TOLERANCES, "tflite_dynamic_range", impossible)
    target = tmp_path / "model.tflite"
    with pytest.raises(deploy.ExportVerificationError, match="max_abs_diff") as error:
        deploy.export_tflite(model, target, x_test[:32], "dynamic_range")
    assert "Nothing was written" in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_exception_during_saved_model_verification_leaves_nothing_behind(
    model, mnist, tmp_path, monkeypatch
):
    def broken_predict(self, x):
        raise RuntimeError("injected failure while verifying")

    monkeypatch.setattr(deploy.SavedModelPredictor, "predict", broken_predict)
    with pytest.raises(RuntimeError, match="injected"):
        deploy.export_saved_model(model, tmp_path / "digits", mnist[2][:8])
    assert list((tmp_path / "digits").iterdir()) == []


KILLED_EXPORT = textwrap.dedent(
    """
    import pathlib, sys, time
    import keras, numpy as np
    from dlkit import deploy

    model_path, model_dir, marker = sys.argv[1:]

    def verify_forever(*args, **kwargs):
        pathlib.Path(marker).write_text("exporting")
        time.sleep(3600)

    deploy._verify = verify_forever
    model = keras.saving.load_model(model_path)
    deploy.export_saved_model(model, model_dir, np.zeros((4, 28, 28), "float32"))
    """
)


def test_sigkilled_export_leaves_no_partial_artifact(model, mnist, tmp_path):
    model_path = tmp_path / "model.keras"
    model.save(model_path)
    model_dir, marker = tmp_path / "digits", tmp_path / "marker"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            KILLED_EXPORT,
            str(model_path),
            str(model_dir),
            str(marker),
        ]
    )
    try:
        for _ in range(1200):  # bounded wait for the export to reach verification
            if marker.exists() or process.poll() is not None:
                break
            time.sleep(0.1)
        assert marker.exists(), "the export subprocess never reached verification"
        leftovers = [p.name for p in model_dir.iterdir()]
        assert len(leftovers) == 1 and leftovers[0].startswith(".partial-")
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert not (model_dir / "1").exists()
    with pytest.raises(ValueError, match="numbered version"):
        deploy.latest_version(model_dir)
    result = deploy.export_saved_model(model, model_dir, mnist[2][:8])
    assert result.path == str(model_dir / "1")
    assert [p.name for p in model_dir.iterdir()] == ["1"]  # stale leftover removed


def test_measure_latency_reports_percentiles(exported, mnist):
    _, results = exported
    predictor = deploy.load_predictor(results["tflite_float32"].path)
    latency = deploy.measure_latency(predictor.predict, mnist[2], num_runs=20, warmup=2)
    assert set(latency) == {"p50_ms", "p99_ms", "mean_ms"}
    assert 0 < latency["p50_ms"] <= latency["p99_ms"]


DEPLOY_ASSETS = pathlib.Path(__file__).resolve().parents[1] / "assets" / "deploy"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def load_manifest(name):
    documents = list(yaml.safe_load_all((DEPLOY_ASSETS / name).read_text()))
    assert len(documents) == 1
    manifest = documents[0]
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1"
    assert manifest["kind"] == "InferenceService"
    assert DNS_LABEL.match(manifest["metadata"]["name"])
    return manifest


def quantity(value):
    """Kubernetes CPU/memory quantities as numbers: '500m', '2', '1Gi'."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if str(value).endswith(suffix):
            return float(str(value)[: -len(suffix)]) * factor
    return float(value)


def check_autoscaling_and_resources(predictor, resources):
    assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"]
    assert predictor["scaleMetric"] in ("concurrency", "rps", "cpu", "memory")
    assert isinstance(predictor["scaleTarget"], int) and predictor["scaleTarget"] > 0
    for name in ("cpu", "memory"):
        assert (
            0
            < quantity(resources["requests"][name])
            <= quantity(resources["limits"][name])
        )


def test_tf_serving_inference_service_manifest():
    manifest = load_manifest("inferenceservice-tfserving.yaml")
    predictor = manifest["spec"]["predictor"]
    model = predictor["model"]
    assert model["modelFormat"]["name"] == "tensorflow"
    assert model["runtime"] == "kserve-tensorflow-serving"
    assert model["protocolVersion"] == "v1"
    assert re.match(r"^(pvc|gs|s3)://[^/]+/.+", model["storageUri"])
    check_autoscaling_and_resources(predictor, model["resources"])
    annotations = manifest["metadata"]["annotations"]
    assert annotations["serving.kserve.io/enable-prometheus-scraping"] == "true"


def test_custom_predictor_manifest_runs_dlkit_serve_with_valid_arguments():
    manifest = load_manifest("inferenceservice-dlkit.yaml")
    predictor = manifest["spec"]["predictor"]
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"
    assert container["command"] == ["python", "-m", "dlkit", "serve"]
    args = serve.build_parser().parse_args(container["args"])  # exits on a bad flag
    assert args.model_dir == "/mnt/models"
    assert args.host == "0.0.0.0"  # inside a pod the server must be reachable
    assert [p["containerPort"] for p in container["ports"]] == [args.port]
    probe = container["readinessProbe"]["httpGet"]
    assert probe == {"path": f"/v1/models/{args.name}", "port": args.port}
    assert args.name == manifest["metadata"]["name"]
    environment = {item["name"]: item["value"] for item in container["env"]}
    assert environment["STORAGE_URI"].startswith("pvc://")
    check_autoscaling_and_resources(predictor, container["resources"])
    annotations = manifest["metadata"]["annotations"]
    assert annotations["prometheus.kserve.io/port"] == str(args.port)
    assert annotations["prometheus.kserve.io/path"] == "/metrics"


def test_dockerfile_entrypoint_matches_the_command_line():
    lines = (DEPLOY_ASSETS / "Dockerfile").read_text().splitlines()
    instructions = {
        line.split(" ", 1)[0]: line.split(" ", 1)[1]
        for line in lines
        if line[:1].isupper()
    }
    assert json.loads(instructions["ENTRYPOINT"]) == ["python", "-m", "dlkit", "serve"]
    args = serve.build_parser().parse_args(json.loads(instructions["CMD"]))
    assert (args.model_dir, args.host, args.port) == ("/mnt/models", "0.0.0.0", 8080)


def test_tf_serving_docker_command_is_documented():
    readme = (DEPLOY_ASSETS / "README.md").read_text()
    assert "tensorflow/serving" in readme
    assert "-e MODEL_NAME=mnist" in readme
    assert ":/models/mnist:ro" in readme
    config = (DEPLOY_ASSETS / "tfserving-monitoring.config").read_text()
    assert "prometheus_config" in config and "enable: true" in config
