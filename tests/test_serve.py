"""The KServe model server, started for real on 127.0.0.1 in a subprocess."""

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import psutil
import pytest
import requests

from dlkit import datasets, deploy, serve

pytestmark = pytest.mark.slow

NUM_CLIENTS, REQUESTS_PER_CLIENT = 8, 200


@pytest.fixture(scope="module")
def mnist():
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist("quick", verbose=False)
    scale = np.float32(255)
    return x_train[:2000] / scale, y_train[:2000], x_test[:200] / scale, y_test[:200]


def tiny_classifier(x_train=None, y_train=None):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28), name="images"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    if x_train is not None:
        model.fit(x_train, y_train, epochs=1, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def model(mnist):
    return tiny_classifier(*mnist[:2])


@pytest.fixture(scope="module")
def server(model, mnist, tmp_path_factory):
    """Serves `digits/2` (the trained model); `digits/1` is an untrained one."""
    directory = tmp_path_factory.mktemp("served")
    x_verify = mnist[2][:16]
    deploy.export_saved_model(tiny_classifier(), directory / "digits", x_verify)
    deploy.export_saved_model(model, directory / "digits", x_verify)
    log_inputs = directory / "inputs.jsonl"
    local = serve.LocalServer(
        directory / "digits", extra_args=["--log-inputs", str(log_inputs)]
    )
    local.start()
    local.inputs_log = log_inputs
    yield local
    assert local.stop() is not None
    assert local.process.poll() is not None, "the server process survived stop()"


def post(server, body, path=None, **kwargs):
    url = server.url + (path or f"/v1/models/{server.name}:predict")
    return requests.post(url, data=body, timeout=30, **kwargs)


def assert_still_serving(server, model, x):
    predictions = server.client.predict(x[:2])
    np.testing.assert_allclose(predictions, model.predict(x[:2], verbose=0), atol=1e-6)


def test_status_names_the_highest_version_like_tf_serving(server):
    assert server.name == "digits"
    status = server.client.status()
    assert status["model_version_status"] == [
        {
            "version": "2",
            "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""},
        }
    ]
    assert server.client.is_ready()


def test_server_binds_loopback_only(server):
    listening = [
        c.laddr
        for c in psutil.Process(server.process.pid).connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert listening == [("127.0.0.1", server.port)]


def test_row_format_predictions_equal_the_keras_model(server, model, mnist):
    x_test = mnist[2][:50]
    predictions = server.client.predict(x_test)
    np.testing.assert_allclose(predictions, model.predict(x_test, verbose=0), atol=1e-6)


def test_columnar_and_named_requests_give_the_same_answer(server, model, mnist):
    x = mnist[2][:5]
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(server.client.predict_columnar(x), expected, atol=1e-6)
    named = server.client.predict_columnar({"images": x})
    np.testing.assert_allclose(named, expected, atol=1e-6)
    rows = server.client.predict([{"images": example} for example in x])
    np.testing.assert_allclose(rows, expected, atol=1e-6)


def test_v2_open_inference_protocol(server, model, mnist):
    x = mnist[2][:3]
    base = f"{server.url}/v2/models/{server.name}"
    metadata = requests.get(base, timeout=30).json()
    assert metadata["inputs"] == [
        {"name": "images", "datatype": "FP32", "shape": [-1, 28, 28]}
    ]
    request = {
        "inputs": [
            {
                "name": "images",
                "shape": [3, 28, 28],
                "datatype": "FP32",
                "data": x.ravel().tolist(),
            }
        ]
    }
    answer = requests.post(f"{base}/infer", json=request, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == "2"
    (output,) = answer.json()["outputs"]
    assert output["shape"] == [3, 10]
    predictions = np.reshape(output["data"], output["shape"])
    np.testing.assert_allclose(predictions, model.predict(x, verbose=0), atol=1e-6)


IMAGE = [[0.5] * 28] * 28
OVERSIZE = json.dumps({"instances": [IMAGE] * 1200})  # about 5 MB > 4 MiB cap

MALFORMED = {
    "invalid JSON": ('{"instances": [1, 2', 400),
    "not an object": ("[1, 2, 3]", 400),
    "missing key": (json.dumps({"examples": [IMAGE]}), 400),
    "both keys": (json.dumps({"instances": [IMAGE], "inputs": [IMAGE]}), 400),
    "empty instances": (json.dumps({"instances": []}), 400),
    "wrong shape": (json.dumps({"instances": [[[0.5] * 27] * 28]}), 400),
    "ragged": (json.dumps({"instances": [IMAGE, IMAGE[:27]]}), 400),
    "wrong dtype": (json.dumps({"instances": [[["x"] * 28] * 28]}), 400),
    "booleans": (json.dumps({"instances": [[[True] * 28] * 28]}), 400),
    "nulls": (json.dumps({"instances": [[[None] * 28] * 28]}), 400),
    "NaN": (json.dumps({"instances": [[[float("nan")] * 28] * 28]}), 400),
    "infinity": (json.dumps({"instances": [[[float("inf")] * 28] * 28]}), 400),
    "unknown input": (json.dumps({"inputs": {"pixels": [IMAGE]}}), 400),
    "unknown signature": (
        json.dumps({"instances": [IMAGE], "signature_name": "x"}),
        400,
    ),
    "oversize body": (OVERSIZE, 413),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_request_gets_a_json_error_and_server_keeps_serving(
    case, server, model, mnist
):
    body, status = MALFORMED[case]
    answer = post(server, body, headers={"Content-Type": "application/json"})
    assert answer.status_code == status, answer.text
    assert isinstance(answer.json()["error"], str) and answer.json()["error"]
    assert_still_serving(server, model, mnist[2])


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("POST", "/v1/models/unknown:predict", json.dumps({"instances": [IMAGE]})),
        ("GET", "/v1/models/unknown", None),
        ("POST", "/v2/models/unknown/infer", json.dumps({"inputs": []})),
        ("GET", "/v1/nothing/here", None),
    ],
)
def test_unknown_model_or_route_is_a_json_404(method, path, body, server, model, mnist):
    answer = requests.request(
        method,
        server.url + path,
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 404, answer.text
    assert "error" in answer.json()
    assert_still_serving(server, model, mnist[2])


@pytest.mark.parametrize(
    "request_body",
    [
        {
            "inputs": [
                {"name": "images", "shape": [1, 3], "datatype": "FP32", "data": [1, 2]}
            ]
        },
        {
            "inputs": [
                {"name": "images", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}
            ]
        },
        {
            "inputs": [
                {"name": "images", "shape": [1], "datatype": "BYTES", "data": ["a"]}
            ]
        },
        {"outputs": []},
    ],
)
def test_malformed_v2_request_is_a_json_400(request_body, server, model, mnist):
    url = f"{server.url}/v2/models/{server.name}/infer"
    answer = requests.post(url, json=request_body, timeout=30)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]
    assert_still_serving(server, model, mnist[2])


def test_request_without_json_content_type_is_still_understood(server, model, mnist):
    x = mnist[2][:2]
    body = json.dumps({"instances": x.tolist()})
    answer = post(
        server, body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(
        answer.json()["predictions"], model.predict(x, verbose=0), atol=1e-6
    )


def test_client_raises_serving_error_with_status_and_message(server, mnist):
    with pytest.raises(serve.ServingError) as error:
        server.client.predict(mnist[2][:2, :27])
    assert error.value.status_code == 400
    assert "Received: (2, 27, 28)" in error.value.message


def test_concurrent_clients_complete_without_errors(server, model, mnist):
    x = mnist[2]
    expected = model.predict(x, verbose=0).argmax(axis=1)

    def client_loop(client_index):
        client = serve.ServingClient(server.url, server.name)
        mismatches = 0
        try:
            for step in range(REQUESTS_PER_CLIENT):
                index = (client_index * REQUESTS_PER_CLIENT + step) % len(x)
                predicted = client.predict(x[index : index + 1]).argmax(axis=1)[0]
                mismatches += int(predicted != expected[index])
        finally:
            client.close()
        return mismatches

    with concurrent.futures.ThreadPoolExecutor(NUM_CLIENTS) as pool:
        results = list(pool.map(client_loop, range(NUM_CLIENTS)))  # raises on any error
    assert results == [0] * NUM_CLIENTS
    text = server.client.metrics()
    assert 'dlkit_http_requests_total{code="200",endpoint="v1_predict"}' in text


def test_metrics_count_requests_and_record_latency(server):
    server.client.predict(np.zeros((1, 28, 28)))
    text = server.client.metrics()
    counts = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("dlkit_http_requests_total{")
    }
    assert counts['dlkit_http_requests_total{code="200",endpoint="v1_predict"}'] >= 1
    assert 'request_predict_seconds_bucket{le="0.005",model_name="digits"}' in text
    assert (
        'dlkit_http_request_duration_seconds_bucket{endpoint="v1_predict",le="0.1"}'
        in text
    )


def test_served_inputs_are_logged_for_the_drift_check(server, mnist):
    x = mnist[2][:7]
    log = server.inputs_log
    before = len(log.read_text().splitlines()) if log.exists() else 0
    server.client.predict(x)
    logged = serve.read_input_log(log)
    expected = serve.input_statistics(x)
    assert len(logged["mean"]) == before + 7
    for name in serve.STATISTICS:
        np.testing.assert_allclose(logged[name][-7:], expected[name], rtol=1e-6)


def test_drift_report_flags_shifted_inputs_only(mnist):
    x_train, _, x_test, _ = mnist
    same = serve.drift_report(x_train, x_test)
    shifted = serve.drift_report(x_train, np.clip(x_test * 0.6 + 0.3, 0, 1))
    assert list(same.index) == list(serve.STATISTICS)
    assert not same["drift"].any(), same
    assert shifted["drift"].all(), shifted  # mean, std, min (0 -> 0.3), max (1 -> 0.9)
    assert shifted.loc["mean", "served_mean"] > shifted.loc["mean", "reference_mean"]


def test_population_stability_index_of_piled_up_values():
    reference = np.r_[np.zeros(900), np.linspace(0.01, 0.5, 100)]  # 90% exactly 0
    assert serve.population_stability_index(reference, reference) == 0
    assert serve.population_stability_index(reference, np.full(50, 0.3)) > 1
    assert serve.population_stability_index(reference, np.full(50, -0.1)) > 1
    assert serve.population_stability_index(reference, reference[::10]) < 0.1


def test_population_stability_index_needs_data():
    with pytest.raises(ValueError, match="send some requests"):
        serve.population_stability_index(np.ones(10), np.array([]))


def test_cli_rejects_a_directory_without_versions(tmp_path, capsys):
    assert serve.main([str(tmp_path)]) == 2
    assert "numbered version" in capsys.readouterr().err


ORPHAN = """
import os, signal, sys
from dlkit.serve import LocalServer

server = LocalServer(sys.argv[1]).start()
print(server.process.pid, server.log_path, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no cleanup code runs in this process
"""


def server_is_gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_server_stops_when_its_parent_is_killed(server):
    model_dir = server.model_dir
    parent = subprocess.run(
        [sys.executable, "-c", ORPHAN, str(model_dir)], capture_output=True, text=True
    )
    assert parent.returncode == -signal.SIGKILL, parent.stderr[-2000:]
    pid, log_path = parent.stdout.split()
    pid = int(pid)
    os.remove(log_path)  # the killed parent could not clean up
    try:
        for _ in range(300):  # bounded wait for the orphaned server to exit
            if server_is_gone(pid):
                break
            time.sleep(0.1)
        assert server_is_gone(pid), "the server outlived the process that started it"
    finally:
        if not server_is_gone(pid):
            os.kill(pid, signal.SIGKILL)
