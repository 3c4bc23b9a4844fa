"""The KServe model server, started for real on 127.0.0.1 in a subprocess."""

import concurrent.futures
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import prometheus_client
import psutil
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from dlkit import deploy, monitor, serve

pytestmark = pytest.mark.slow

MAX_REQUEST_BYTES = 20_000


def tiny_model(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((4, 3), name="images"),
            keras.layers.Flatten(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=1)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).random((6, 4, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    """Serves `tiny/2` (`model`); `tiny/1` is another model, never served."""
    directory = tmp_path_factory.mktemp("served") / "tiny"
    tiny_model(seed=0).export(str(directory / "1"), verbose=False)
    model.export(str(directory / "2"), verbose=False)
    log_inputs = directory.parent / "inputs.jsonl"
    options = ["--log_inputs", log_inputs, "--max_request_bytes", MAX_REQUEST_BYTES]
    local = serve.LocalServer(directory, extra_args=options)
    local.log_inputs = log_inputs
    with local:
        yield local


def post(server, body, path=None):
    url = server.url + (path or f"/v1/models/{server.name}:predict")
    headers = {"Content-Type": "application/json"}
    return requests.post(url, data=body, headers=headers, timeout=30)


def test_status_names_the_newest_version_like_tf_serving(server):
    assert server.client.status() == {
        "model_version_status": [
            {
                "version": "2",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }


def test_server_binds_loopback_only(server):
    listening = [
        c.laddr
        for c in psutil.Process(server.process.pid).connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert listening == [("127.0.0.1", int(server.url.rsplit(":", 1)[1]))]


def test_predict_with_instances_and_inputs(server, model, x):
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(server.client.predict(x), expected, atol=1e-6)
    rows = server.client.predict([{"images": example} for example in x])
    np.testing.assert_allclose(rows, expected, atol=1e-6)
    for inputs in [x.tolist(), {"images": x.tolist()}]:
        answer = post(server, json.dumps({"inputs": inputs}))
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(answer.json()["outputs"], expected, atol=1e-6)


def test_v2_open_inference_protocol(server, model, x):
    base = f"{server.url}/v2/models/{server.name}"
    inputs = requests.get(base, timeout=30).json()["inputs"]
    assert inputs == [{"name": "images", "datatype": "FP32", "shape": [-1, 4, 3]}]
    tensor = {"name": "images", "shape": [6, 4, 3], "datatype": "FP32"}
    request = {"inputs": [{**tensor, "data": x.ravel().tolist()}]}
    answer = requests.post(f"{base}/infer", json=request, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == "2"
    (output,) = answer.json()["outputs"]
    predictions = np.reshape(output["data"], output["shape"])
    np.testing.assert_allclose(predictions, model.predict(x, verbose=0), atol=1e-6)
    request = {"inputs": [{**tensor, "data": [0.5, 0.5]}]}  # 2 values for 72
    answer = requests.post(f"{base}/infer", json=request, timeout=30)
    assert answer.status_code == 400
    assert "Invalid V2 inputs: cannot reshape" in answer.json()["error"]


EXAMPLE = [[0.5] * 3] * 4
BAD_REQUESTS = {  # the request, and what the error message must say
    "wrong shape": ({"instances": [[[0.5] * 2] * 4]}, "Received: shape (1, 4, 2)"),
    "ragged": ({"instances": [EXAMPLE, EXAMPLE[:3]]}, ""),
    "text": ({"instances": [[["x"] * 3] * 4]}, "dtype <U1"),
    "booleans": ({"instances": [[[True] * 3] * 4]}, "dtype bool"),
    "nulls": ({"instances": [[[None] * 3] * 4]}, "dtype object"),
    "empty": ({"instances": []}, "Received: shape (0,)"),
    "unknown input": ({"inputs": {"pixels": [EXAMPLE]}}, "['pixels']"),
    "no key": ({"examples": [EXAMPLE]}, "Received: ['examples']"),
    "both keys": ({"instances": [EXAMPLE], "inputs": [EXAMPLE]}, "exactly one"),
    "signature": ({"instances": [EXAMPLE], "signature_name": "x"}, "signature_name"),
}


def test_bad_requests_get_400_with_what_was_received_and_expected(server, model, x):
    for case, (body, message) in BAD_REQUESTS.items():
        answer = post(server, json.dumps(body))
        assert answer.status_code == 400, (case, answer.text)
        assert answer.json()["error"] and message in answer.json()["error"], case
    np.testing.assert_allclose(
        server.client.predict(x), model.predict(x, verbose=0), atol=1e-6
    )


def test_body_over_the_size_cap_is_refused(server):
    body = json.dumps({"instances": [EXAMPLE] * 1000})
    assert len(body) > MAX_REQUEST_BYTES
    answer = post(server, body)
    assert answer.status_code == 413
    assert f"Expected at most {MAX_REQUEST_BYTES} bytes" in answer.json()["error"]


def test_client_raises_serving_error_with_the_server_message(server, x):
    with pytest.raises(serve.ServingError) as error:
        server.client.predict(x[:, :3])
    assert error.value.status_code == 400
    assert "(6, 3, 3)" in error.value.message
    with pytest.raises(serve.ServingError) as error:
        serve.ServingClient(server.url, "unknown").status()
    assert error.value.status_code == 404


def test_concurrent_clients_get_their_own_answers(server, model, x):
    expected = model.predict(x, verbose=0)

    def client_loop(index):
        client = serve.ServingClient(server.url, server.name)
        try:
            return [client.predict(x[i % 6 : i % 6 + 1])[0] for i in range(index, 24)]
        finally:
            client.close()

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(client_loop, range(4)))
    for index, predictions in enumerate(answers):
        wanted = [expected[i % 6] for i in range(index, 24)]
        np.testing.assert_allclose(predictions, wanted, atol=1e-6)


def test_metrics_count_requests_by_endpoint_and_code(server, x):
    server.client.predict(x[:1])
    post(server, json.dumps({"instances": []}))
    text = server.client.metrics()
    assert 'dlkit_http_requests_total{code="200",endpoint="v1_predict"}' in text
    assert 'dlkit_http_requests_total{code="400",endpoint="v1_predict"}' in text
    assert 'request_predict_seconds_count{model_name="tiny"}' in text


def test_served_inputs_are_logged_for_the_drift_check(server, x):
    log = server.log_inputs
    before = len(monitor.read_input_log(log)["mean"]) if log.exists() else 0
    server.client.predict(x)
    logged = monitor.read_input_log(log)
    for name, values in monitor.input_statistics(x).items():
        assert len(logged[name]) == before + len(x)
        np.testing.assert_allclose(logged[name][-len(x) :], values, rtol=1e-6)


def test_cli_help_shows_kserve_options():
    result = subprocess.run(
        [sys.executable, "-m", "dlkit", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for option in ["--http_port", "--model_name", "--enable_grpc", "--host"]:
        assert option in result.stdout
    assert "--max_request_bytes" in result.stdout


def test_cli_rejects_a_directory_without_versions(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        serve.main([str(tmp_path)])
    assert exit_.value.code == 2
    assert "numbered version" in capsys.readouterr().err


ORPHAN = """
import os, signal, sys
from dlkit.serve import LocalServer

server = LocalServer(sys.argv[1]).start()
print(server.process.pid, server.log_path, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no cleanup code runs in this process
"""


def is_gone(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_local_server_stops_when_its_parent_is_killed(server):
    parent = subprocess.run(
        [sys.executable, "-c", ORPHAN, str(server.model_dir)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert parent.returncode == -signal.SIGKILL, parent.stderr[-2000:]
    pid, log_path = parent.stdout.split()
    pid = int(pid)
    os.remove(log_path)  # the killed parent could not clean up
    try:
        for _ in range(300):  # bounded wait for the orphaned server to exit
            if is_gone(pid):
                break
            time.sleep(0.1)
        assert is_gone(pid), "the server outlived the process that started it"
    finally:
        if not is_gone(pid):
            os.kill(pid, signal.SIGKILL)


def test_stop_ends_the_server_and_removes_its_log(server):  # last: stops it
    log_path = server.log_path
    assert f"Uvicorn running on {server.url}" in server.log_tail(lines=1000)
    assert server.stop() is not None
    assert is_gone(server.process.pid) and not os.path.exists(log_path)


# The deployment files run `python -m dlkit serve`: their arguments must parse.
DEPLOY_ASSETS = (
    pathlib.Path(__file__).resolve().parents[1] / "dlkit" / "assets" / "deploy"
)


def test_custom_predictor_manifest_runs_dlkit_serve_with_valid_arguments():
    text = (DEPLOY_ASSETS / "inferenceservice-dlkit.yaml").read_text()
    (manifest,) = yaml.safe_load_all(text)
    (container,) = manifest["spec"]["predictor"]["containers"]
    assert container["command"] == ["python", "-m", "dlkit", "serve"]
    args = serve._parser().parse_args(container["args"])  # exits on a bad flag
    assert (args.model_dir, args.host) == ("/mnt/models", "0.0.0.0")  # in a pod
    assert args.model_name == manifest["metadata"]["name"]
    assert [port["containerPort"] for port in container["ports"]] == [args.http_port]
    probe = container["readinessProbe"]["httpGet"]
    assert probe == {"path": f"/v1/models/{args.model_name}", "port": args.http_port}
    annotations = manifest["metadata"]["annotations"]
    assert annotations["prometheus.kserve.io/port"] == str(args.http_port)


def test_dockerfile_entrypoint_matches_the_command_line():
    lines = (DEPLOY_ASSETS / "Dockerfile").read_text().splitlines()
    instructions = dict(line.split(" ", 1) for line in lines if line[:1].isupper())
    assert json.loads(instructions["ENTRYPOINT"]) == ["python", "-m", "dlkit", "serve"]
    args = serve._parser().parse_args(json.loads(instructions["CMD"]))
    assert (args.model_dir, args.host, args.http_port) == (
        "/mnt/models",
        "0.0.0.0",
        8080,
    )


def test_cli_rejects_a_negative_poll_interval(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        serve.main([str(tmp_path), "--poll-seconds", "-1"])
    assert exit_.value.code == 2
    assert "`--poll-seconds`. Received: -1.0. Expected a number >= 0" in (
        capsys.readouterr().err
    )


def test_prediction_metrics_for_sigmoid_softmax_and_other_outputs():
    def value(name, **labels):
        return prometheus_client.REGISTRY.get_sample_value(name, labels) or 0

    serve._count_predictions("sigmoid", np.array([[0.93], [0.27], [0.5]]))
    assert value("dlkit_predictions_total", model="sigmoid", **{"class": "1"}) == 2
    assert value("dlkit_predictions_total", model="sigmoid", **{"class": "0"}) == 1
    confidence = "dlkit_prediction_confidence_bucket"  # 0.93, 0.73 and 0.5
    for le, count in {"0.4": 0, "0.5": 1, "0.75": 2, "0.95": 3}.items():
        assert value(confidence, model="sigmoid", le=le) == count, le
    serve._count_predictions("softmax", np.array([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1]]))
    assert value("dlkit_predictions_total", model="softmax", **{"class": "2"}) == 1
    assert value("dlkit_prediction_confidence_sum", model="softmax") == pytest.approx(
        1.3
    )
    serve._count_predictions("logits", np.array([[2.0, -1.0]]))  # not probabilities
    serve._count_predictions("multilabel", np.array([[0.9, 0.8]]))  # no single class
    for model in ["logits", "multilabel"]:
        assert value("dlkit_prediction_confidence_count", model=model) == 0


# ------------------------------------------ new versions while serving (in order)
ANSWERS = {1: [0.88, 0.12], 2: [0.22, 0.78], 4: [0.33, 0.67]}  # each version's
X = np.random.default_rng(0).random((3, 3), dtype=np.float32)
CLIENTS = 8


def constant_model(probabilities):
    """A classifier answering `probabilities` whatever the input."""
    model = keras.Sequential(
        [keras.Input((3,), name="features"), keras.layers.Dense(2, "softmax")]
    )
    kernel, _ = model.layers[0].get_weights()
    bias = np.log(probabilities).astype("float32")
    model.layers[0].set_weights([np.zeros_like(kernel), bias])
    return model


def answered_version(predictions):
    """The version whose answer `predictions` are (each row); raises if none."""
    (version,) = [
        v for v, p in ANSWERS.items() if np.allclose(predictions, p, atol=1e-5)
    ]
    return version


def wait_for(condition, server, what, seconds=120):
    """Polls `condition()` until it holds; fails with the server log if not."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what}:\n{server.log_tail(40)}"
        time.sleep(0.1)


def metric(text, name, **labels):
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """`watched/` starts with version 1; the tests below add 2, 3 and 4."""
    directory = tmp_path_factory.mktemp("versions") / "watched"
    deploy.export(constant_model(ANSWERS[1]), directory, X)
    return directory


@pytest.fixture(scope="module")
def watched(versions):
    with serve.LocalServer(versions) as local:  # --poll-seconds 2, the default
        yield local


@pytest.fixture(scope="module")
def frozen(versions):
    with serve.LocalServer(versions, extra_args=["--poll-seconds", "0"]) as local:
        yield local


def test_new_version_is_swapped_in_under_load_with_no_failed_request(
    watched, frozen, versions
):
    assert watched.client.served_version() == frozen.client.served_version() == 1
    stop, failures, answers = threading.Event(), [], [[] for _ in range(CLIENTS)]

    def client_loop(index):
        client = serve.ServingClient(watched.url, watched.name)
        while not stop.is_set():
            try:
                answers[index].append(answered_version(client.predict(X)))
            except Exception as error:  # a failed request or a wrong answer
                failures.append(repr(error))
        client.close()

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        loops = [pool.submit(client_loop, index) for index in range(CLIENTS)]
        try:
            wait_for(lambda: all(answers), watched, "the clients got no answers")
            deploy.export(constant_model(ANSWERS[2]), versions, X)  # renames to 2/
            shipped = time.monotonic()
            wait_for(
                lambda: all(a[-1] == 2 for a in answers), watched, "no switch to 2"
            )
            switched_after = time.monotonic() - shipped
            counts = [len(a) for a in answers]
            wait_for(  # and a few more answers each
                lambda: all(
                    len(a) > c + 2 for a, c in zip(answers, counts, strict=True)
                ),
                *(watched, "the clients stalled after the switch"),
            )
        finally:
            stop.set()
        for loop in loops:
            loop.result()
    assert failures == [], failures[:5]
    assert switched_after <= 10, switched_after  # the deadline
    for client_answers in answers:  # each client: version 1, then only 2
        switch = client_answers.index(2)
        assert set(client_answers[:switch]) == {1}
        assert set(client_answers[switch:]) == {2}
    assert answered_version(frozen.client.predict(X)) == 1  # never looks
    listed = frozen.client.status()["model_version_status"]
    assert [s["version"] for s in listed] == ["1"]
    assert "Serving version 2 of model watched." in watched.log_tail(10**6)


def test_broken_and_unfinished_versions_are_never_served(watched, versions):
    assert watched.client.served_version() == 2  # the previous test shipped it
    staging = versions.parent / "staging"
    built = deploy.export(constant_model(ANSWERS[4]), staging, X).path
    # A finished copy under a temporary name, and one with saved_model.pb missing.
    shutil.copytree(built, versions / ".4.tmp-copy")
    shutil.copytree(built, versions / "4", ignore=shutil.ignore_patterns("*.pb"))
    # Version 3 is complete (renamed into place) but its saved_model.pb is cut.
    shutil.copytree(versions / "2", versions / ".3.partial")
    graph = versions / ".3.partial" / "saved_model.pb"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    os.rename(versions / ".3.partial", versions / "3")

    def states():
        listed = watched.client.status()["model_version_status"]
        return {s["version"]: (s["state"], s["status"]) for s in listed}

    wait_for(lambda: states().get("3", ("",))[0] == "END", watched, "3 not refused")
    time.sleep(5)  # two more polls: a refused version is not tried again
    state, status = states()["3"]
    assert status["error_code"] != "OK" and "saved_model.pb" in status["error_message"]
    assert str(versions) not in status["error_message"]
    assert sorted(states()) == ["1", "2", "3"]  # 4 is not a version yet
    assert watched.client.served_version() == 2
    assert answered_version(watched.client.predict(X)) == 2
    assert watched.log_tail(10**6).count("Refused version 3 of model watched") == 1

    shutil.copy2(pathlib.Path(built) / "saved_model.pb", versions / "4")  # done
    wait_for(lambda: watched.client.served_version() == 4, watched, "4 not served")
    assert answered_version(watched.client.predict(X)) == 4
    assert [(v, s[0]) for v, s in states().items()] == [
        ("4", "AVAILABLE"),
        ("3", "END"),
        ("2", "END"),
        ("1", "END"),
    ]


def test_metrics_report_the_version_classes_and_confidence(watched):
    before = watched.client.metrics()
    for _ in range(5):
        assert answered_version(watched.client.predict(X)) == 4  # class 1 at 0.67
    after = watched.client.metrics()

    def grown(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    model = {"model": "watched"}
    assert grown("dlkit_predictions_total", **model, **{"class": "1"}) == 15
    assert grown("dlkit_predictions_total", **model, **{"class": "0"}) == 0
    assert metric(after, "dlkit_predictions_total", **model, **{"class": "0"}) > 0
    confidence = "dlkit_prediction_confidence_bucket"
    assert grown(confidence, **model, le="0.65") == 0
    assert grown(confidence, **model, le="0.7") == 15
    assert grown("dlkit_prediction_confidence_count", **model) == 15
    assert metric(after, "dlkit_model_version", **model) == 4
    assert metric(after, "dlkit_model_versions_refused_total", **model) == 1
    assert grown("request_predict_seconds_count", model_name="watched") == 5


def test_deleting_the_served_version_rolls_back(watched, versions):
    shutil.rmtree(versions / "4")
    shutil.rmtree(versions / "3")
    wait_for(lambda: watched.client.served_version() == 2, watched, "no rollback")
    assert answered_version(watched.client.predict(X)) == 2
    listed = watched.client.status()["model_version_status"]
    assert [(s["version"], s["state"]) for s in listed][:2] == [
        ("4", "END"),
        ("3", "END"),
    ]
