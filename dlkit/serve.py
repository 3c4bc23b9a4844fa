"""Serves an exported SavedModel with KServe, speaking TF Serving's REST API.

`python -m dlkit serve MODEL_DIR` loads the newest version `MODEL_DIR/N/` into
KServe's `ModelServer`, which answers TF Serving's REST API (`GET
/v1/models/NAME`, `POST /v1/models/NAME:predict` with `instances` or `inputs`),
the V2 inference protocol and Prometheus `/metrics`. KServe parses requests and
options (`python -m dlkit serve --help`); dlkit adds what KServe leaves to the
model: TF Serving's request formats and status, inputs checked against the
signature's names, shapes and dtypes (by `dlkit.deploy.SavedModelPredictor`)
and answered with 400 and what was received and expected, bodies over
`--max_request_bytes` refused (413), the server bound to 127.0.0.1 unless
`--host` says otherwise (KServe binds all interfaces), requests counted by
endpoint and status code, and `--log_inputs FILE` for `dlkit.monitor`.

New versions ship without downtime, as in TF Serving: every `--poll-seconds`
(default 2; 0 turns watching off) the server looks for the highest numbered
version; a new one is loaded in a background thread, run on an all-zeros
example and swapped in with one reference assignment on the event loop: each
request runs wholly on the version it started with, none waits and none fails.
The old version is released when its last request is done. Deleting the served
version rolls back to the highest one left. A version that fails to
load or to run is refused with one log line and status `END` with the error;
the current version keeps serving, and a refused version is tried again only if
its files change. `GET /v1/models/NAME` lists the versions and their states
(`LOADING`, `AVAILABLE`, `END`) in TF Serving's format.

Shipping convention: write a version into a temporary sibling folder whose name
is not all digits (e.g. `.partial-x/` or `3.tmp/`) and `os.rename` it to `3`
when it is complete (atomic on one file system; `dlkit.deploy.export` does so).
Only all-digit folders holding a `saved_model.pb` are versions, and a version
whose files changed since the last poll is left until they stop changing, so a
copy made in place is not loaded half-way either (the rename is the guarantee).

`/metrics` adds `dlkit_model_version`, `dlkit_predictions_total` by predicted
class and the `dlkit_prediction_confidence` histogram (top-class probability)
for models that output probabilities, and `dlkit_model_versions_refused_total`;
`dlkit/assets/monitoring/alerts.yml` holds Prometheus alerting rules on them.
"""

import argparse
import asyncio
import atexit
import inspect
import json
import logging
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

import kserve
import numpy as np
import requests
from kserve import model_server
from kserve.errors import InvalidInput, ModelNotFound
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.utils.numpy_codec import from_np_dtype
from kserve.utils.utils import generate_uuid
from prometheus_client import Counter, Gauge, Histogram
from starlette.responses import JSONResponse

from dlkit import monitor

__all__ = ["LocalServer", "ServingClient", "ServingError", "main"]

_LOOPBACK = "127.0.0.1"
_SIGNATURE_NAME = "serving_default"  # the signature TF Serving's REST API runs
_logger = logging.getLogger("kserve")  # KServe's logger: its handler and format
_REQUESTS = Counter("dlkit_http_requests", "HTTP requests", ["endpoint", "code"])
_VERSION = Gauge("dlkit_model_version", "The served model version", ["model"])
_REFUSED = Counter(
    "dlkit_model_versions_refused", "Versions that failed to load", ["model"]
)
_PREDICTIONS = Counter(
    "dlkit_predictions",
    "Predicted classes (argmax; sigmoid: p >= 0.5)",
    ["model", "class"],
)
_CONFIDENCE = Histogram(
    "dlkit_prediction_confidence",
    "Probability of the predicted class",
    ["model"],
    buckets=(0.2, 0.3, 0.4, *(i / 20 for i in range(10, 20)), 0.98, 0.99, 0.999),
)


class ServingError(RuntimeError):
    """An error answer from a model server: its `status_code` and `message`."""

    def __init__(self, status_code, message):
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code, self.message = status_code, message


# ------------------------------------------------------------------ the server
def main(argv):
    """Runs the model server of `python -m dlkit serve` until it is stopped.

    Args:
        argv: the arguments after `serve`, e.g. `["exports/mnist"]`.

    Returns:
        0 after a clean shutdown (invalid arguments exit with status 2).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.workers != 1:  # KServe's worker processes would bind 0.0.0.0
        parser.error(
            f"Invalid value for argument `--workers`. Received: {args.workers}. "
            "Expected 1: run more servers (replicas) to scale out."
        )
    if not args.poll_seconds >= 0:
        parser.error(
            f"Invalid value for argument `--poll-seconds`. Received: "
            f"{args.poll_seconds}. Expected a number >= 0 (0 turns watching off)."
        )
    model = _SavedModelService(
        args.model_name, args.model_dir, args.log_inputs, args.poll_seconds
    )
    try:
        model.load()
    except ValueError as error:
        parser.error(str(error))
    _add_http_glue(model_server.app, model, args.max_request_bytes)
    options = inspect.signature(kserve.ModelServer).parameters
    options = {k: v for k, v in vars(args).items() if k in options}
    _LoopbackModelServer(args.host, **options).start([model])
    return 0


def _parser():
    """KServe's own parser, plus the model directory and dlkit's options."""
    parser = argparse.ArgumentParser(
        prog="python -m dlkit serve",
        description="Serve a SavedModel over TF Serving's REST API with KServe.",
        parents=[model_server.parser],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("model_dir", help="holds numbered versions 1/, 2/, ...")
    parser.add_argument("--host", default=_LOOPBACK, help="0.0.0.0: all interfaces")
    parser.add_argument("--max_request_bytes", type=int, default=4 * 1024 * 1024)
    parser.add_argument("--log_inputs", help="append input statistics to this file")
    parser.add_argument(
        "--poll-seconds",
        "--poll_seconds",
        dest="poll_seconds",
        type=float,
        default=2.0,
        help="seconds between looks for a new version; 0: never",
    )
    # gRPC binds all interfaces on a fixed port; a log line per request is noise.
    parser.set_defaults(enable_grpc=False, enable_latency_logging=False)
    return parser


class _SavedModelService(kserve.Model):
    """A KServe model serving the newest good version of a SavedModel directory."""

    def __init__(self, name, model_dir, log_inputs=None, poll_seconds=0):
        super().__init__(name)
        self.model_dir, self.log_inputs = pathlib.Path(model_dir), log_inputs
        self.poll_seconds, self.engine = poll_seconds, poll_seconds > 0
        self.predictor, self.version = None, 0
        self.states = {}  # version: (state, error_code, error_message)
        self.seen, self.refused = {}, {}  # version: its files when last seen
        _REFUSED.labels(name)  # at 0: an alert sees the first refusal

    def load(self):
        from dlkit.deploy import _versions, latest_version

        latest_version(self.model_dir)  # a clear ValueError if there is none
        for version in sorted(_versions(self.model_dir), reverse=True):
            self.seen[version] = _fingerprint(self.model_dir / str(version))
            if predictor := self._load_version(version):
                self._swap(predictor, version)
                return self.ready
        raise ValueError(f"No version in {str(self.model_dir)!r} could be loaded.")

    async def start_engine(self):  # KServe runs it on the server's event loop
        while self.ready:
            await asyncio.sleep(self.poll_seconds)
            try:
                version, predictor = await asyncio.to_thread(self._poll)
            except OSError:  # a file vanished while being looked at: look again
                continue
            if predictor and self.ready:
                self._swap(predictor, version)

    def _poll(self):
        """Loads a new highest version once its files stop changing (a thread)."""
        from dlkit.deploy import _versions

        version = max(_versions(self.model_dir), default=0)
        if version in (0, self.version):  # nothing new (lower: a rollback)
            return version, None
        files = _fingerprint(self.model_dir / str(version))
        changing, self.seen[version] = files != self.seen.get(version), files
        if changing or files == self.refused.get(version):
            return version, None
        return version, self._load_version(version)

    def _load_version(self, version):
        """Returns the version's checked predictor, or `None` if it is refused."""
        from dlkit.deploy import SavedModelPredictor

        self.states[version] = ("LOADING", "OK", "")
        try:
            predictor = SavedModelPredictor(self.model_dir / str(version))
            _check_on_zeros(predictor)
            return predictor
        except Exception as error:  # whatever the cause, this version is refused
            reason = " ".join(f"{type(error).__name__}: {error}".split())[:300]
            reason = reason.replace(f"{self.model_dir}{os.sep}", "")  # no paths
            code = "INVALID_ARGUMENT" if isinstance(error, ValueError) else "UNKNOWN"
            self.states[version] = ("END", code, reason)
            self.refused[version] = self.seen.get(version)
            _REFUSED.labels(self.name).inc()
            _logger.error(
                "Refused version %s of model %s (%s); serving version %s.",
                *(version, self.name, reason, self.version or "none"),
            )

    def _swap(self, predictor, version):
        """Serves `predictor` from the next request on (on the event loop)."""
        old, self.predictor, self.version = self.version, predictor, version
        self.states[version], self.ready = ("AVAILABLE", "OK", ""), True
        if old:  # in-flight requests hold the old predictor until they end
            self.states[old] = ("END", "OK", "")
        _VERSION.labels(self.name).set(version)
        _logger.info("Serving version %s of model %s.", version, self.name)

    def get_input_types(self):  # the V2 protocol's model metadata
        return [
            {
                "name": name,
                "datatype": from_np_dtype(spec.dtype.as_numpy_dtype),
                "shape": [-1 if d is None else d for d in spec.shape.as_list()],
            }
            for name, spec in self.predictor.input_specs.items()
        ]

    async def predict(self, payload, headers=None):
        predictor, version = self.predictor, self.version  # one version throughout
        names, v2 = list(predictor.input_specs), isinstance(payload, InferRequest)
        arrays, row_format = (_v2_arrays if v2 else _v1_arrays)(payload, names)
        try:  # TensorFlow runs in a thread, off the event loop
            outputs = await asyncio.to_thread(predictor.predict_all, arrays)
        except ValueError as error:  # inputs that do not fit the signature
            raise InvalidInput(str(error)) from None
        _count_predictions(self.name, outputs[predictor.output_names[0]])
        if self.log_inputs:
            monitor.write_input_log(self.log_inputs, next(iter(arrays.values())))
        if not v2:
            return _v1_response(outputs, row_format)
        outputs = [
            InferOutput(name, list(value.shape), from_np_dtype(value.dtype), value)
            for name, value in outputs.items()
        ]
        response_id = payload.id or generate_uuid()
        return InferResponse(response_id, self.name, outputs, str(version))


def _fingerprint(directory):
    """The names, sizes and modification times of the files under `directory`."""
    files = sorted(path for path in directory.rglob("*") if path.is_file())
    return [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]


def _check_on_zeros(predictor):
    """Runs one all-zeros example; raises `ValueError` if an output is not finite."""
    example = {
        name: np.full(
            [1 if size is None else size for size in spec.shape.as_list()],
            b"" if spec.dtype.name == "string" else 0,
            spec.dtype.as_numpy_dtype,
        )
        for name, spec in predictor.input_specs.items()
    }
    for name, value in predictor.predict_all(example).items():
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            raise ValueError(f"output {name!r} is not finite on an all-zeros input")


def _count_predictions(model, outputs):
    """Counts predicted classes and their probability, if `outputs` are ones."""
    p = np.asarray(outputs)
    if p.dtype.kind != "f" or p.ndim != 2 or not p.size or p.min() < 0 or p.max() > 1:
        return  # not probabilities: no class to count
    if p.shape[1] == 1:  # a sigmoid unit: class 1 if p >= 0.5
        classes = (p[:, 0] >= 0.5).astype(int)
    elif np.allclose(p.sum(axis=1), 1, atol=1e-3):  # a softmax
        classes = p.argmax(axis=1)
    else:  # several independent sigmoids: no single class
        return
    for label, count in zip(*np.unique(classes, return_counts=True), strict=True):
        _PREDICTIONS.labels(model, str(label)).inc(int(count))
    for value in monitor.prediction_confidence(p):
        _CONFIDENCE.labels(model).observe(value)


class _LoopbackModelServer(kserve.ModelServer):
    """KServe's ModelServer bound to `host`: KServe 0.21 always binds 0.0.0.0."""

    def __init__(self, host, **kwargs):
        super().__init__(**kwargs)
        self.host = host

    def setup_event_loop(self):  # start() calls it after creating the server
        self._rest_server.config.host = self.host
        super().setup_event_loop()


# -------------------------------------------------------- TF Serving's requests
def _v1_arrays(body, names):
    """Turns a TF Serving request into `(arrays by input name, row_format)`."""
    if not isinstance(body, dict) or ("instances" in body) == ("inputs" in body):
        received = sorted(body) if isinstance(body, dict) else type(body).__name__
        raise InvalidInput(
            f"Invalid request body. Received: {received}. Expected a JSON object "
            'with exactly one of "instances" (row format) or "inputs" (columnar '
            "format), sent with Content-Type: application/json."
        )
    if body.get("signature_name", _SIGNATURE_NAME) != _SIGNATURE_NAME:
        raise InvalidInput(
            f"Invalid signature_name. Received: {body['signature_name']!r}. "
            f"Expected {_SIGNATURE_NAME!r} (or leave it out)."
        )
    row_format = "instances" in body
    data = body["instances"] if row_format else body["inputs"]
    if row_format and data and all(isinstance(row, dict) for row in data):
        data = {name: [row.get(name) for row in data] for name in data[0]}
    return (data if isinstance(data, dict) else {names[0]: data}), row_format


def _v2_arrays(request, names):
    """Turns a V2 request into `(arrays by input name, None)`."""
    try:
        arrays = {tensor.name: tensor.as_numpy() for tensor in request.inputs}
    except (ValueError, TypeError) as error:
        raise InvalidInput(
            f"Invalid V2 inputs: {error}. Expected each input's `data` to hold "
            "as many values of its `datatype` as its `shape` says: fix one of them."
        ) from None
    if len(names) == len(arrays) == 1:  # a single input: any name will do
        arrays = {names[0]: next(iter(arrays.values()))}
    return arrays, None


def _v1_response(outputs, row_format):
    """Formats outputs as TF Serving does: `predictions` (rows) or `outputs`."""
    values = {name: value.tolist() for name, value in outputs.items()}
    if len(values) == 1:
        (values,) = values.values()
    elif row_format:  # one dict per example
        rows = zip(*values.values(), strict=True)
        values = [dict(zip(values, row, strict=True)) for row in rows]
    return {"predictions" if row_format else "outputs": values}


# ------------------------------------------- HTTP: status, size cap, counter
def _add_http_glue(app, model, max_request_bytes):
    """Adds TF Serving's status route (KServe's says only `ready`), the guard."""

    async def model_status(model_name: str):  # newest first, as TF Serving
        if model_name != model.name:
            raise ModelNotFound(model_name)
        versions = sorted(model.states.items(), reverse=True)
        return {
            "model_version_status": [
                {
                    "version": str(version),
                    "state": state,
                    "status": {"error_code": code, "error_message": message},
                }
                for version, (state, code, message) in versions
            ]
        }

    # Added before KServe adds its routes at start(), so this one answers.
    app.add_api_route("/v1/models/{model_name}", model_status, methods=["GET"])
    app.add_middleware(_RequestGuard, limit=max_request_bytes, counter=_REQUESTS)


class _RequestGuard:
    """ASGI middleware: refuses bodies over `limit` bytes (413), counts requests.

    Neither uvicorn nor KServe caps the body size. This reads the whole body,
    keeping at most `limit` bytes, so that the client can read the answer.
    """

    def __init__(self, app, limit, counter):
        self.app, self.limit, self.counter = app, limit, counter

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status, chunks, size, more = [500], [], 0, True

        async def send_and_record(message):
            status[0] = message.get("status", status[0])
            await send(message)

        while more:  # a disconnect message has no body and no more_body
            message = await receive()
            size += len(message.get("body", b""))
            chunks += [message.get("body", b"")] if size <= self.limit else []
            more = message.get("more_body", False)
        pending = [{"type": "http.request", "body": b"".join(chunks)}]

        async def replay():
            return pending.pop() if pending else await receive()

        try:
            if size <= self.limit:
                return await self.app(scope, replay, send_and_record)
            error = (
                f"Request body too large. Received: {size} bytes. Expected at "
                f"most {self.limit} bytes (--max_request_bytes): send fewer examples."
            )
            await JSONResponse({"error": error}, 413)(scope, replay, send_and_record)
        finally:
            self.counter.labels(_endpoint(scope["path"]), str(status[0])).inc()


def _endpoint(path):
    if path.startswith("/v1/models/"):
        return "v1_predict" if path.endswith(":predict") else "v1_status"
    if path.startswith("/v2/models/"):
        return "v2_infer" if path.endswith("/infer") else "v2_metadata"
    return {"/metrics": "metrics", "/": "live"}.get(path, "other")


# -------------------------------------------------------------------- clients
class ServingClient:
    """A client for TF Serving's REST API: `dlkit serve` and TF Serving alike.

    A thin wrapper over a `requests.Session`, one per thread. `model_url` is
    `<url>/v1/models/<model_name>`.

    >>> client = ServingClient("http://127.0.0.1:8501", "mnist")  # doctest: +SKIP
    >>> client.predict(x_test[:4]).argmax(axis=1)  # doctest: +SKIP

    Args:
        url: the server's base URL, e.g. `"http://127.0.0.1:8501"`.
        model_name: the served model's name.
        timeout: seconds to wait for each answer. Defaults to `30`.
    """

    def __init__(self, url, model_name, timeout=30):
        self.url = url.rstrip("/")
        self.model_url = f"{self.url}/v1/models/{model_name}"
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Content-Type"] = "application/json"

    def status(self):
        """Returns the model's status (`GET /v1/models/NAME`) as a dict."""
        return _checked(self.session.get(self.model_url, timeout=self.timeout)).json()

    def served_version(self):
        """Returns the number of the version in state `AVAILABLE` (or `None`)."""
        states = self.status()["model_version_status"]
        available = [s["version"] for s in states if s["state"] == "AVAILABLE"]
        return int(available[0]) if available else None

    def predict(self, instances):
        """Sends `{"instances": ...}`; returns the predictions as a NumPy array.

        `instances` is a batch of examples (array or nested lists), or a list
        of dicts from input name to value for a model with several inputs.
        Raises `ServingError` if the server answers with an error.
        """
        body = json.dumps({"instances": instances}, default=lambda a: a.tolist())
        url = f"{self.model_url}:predict"
        response = self.session.post(url, data=body, timeout=self.timeout)
        predictions = _checked(response).json()["predictions"]
        several_outputs = predictions and isinstance(predictions[0], dict)
        return predictions if several_outputs else np.asarray(predictions)

    def metrics(self, path="/metrics"):
        """Returns the server's Prometheus metrics text.

        TF Serving serves them where its `--monitoring_config_file` says, e.g.
        `path="/monitoring/prometheus/metrics"`.
        """
        return _checked(self.session.get(self.url + path, timeout=self.timeout)).text

    def close(self):
        """Closes the HTTP connections."""
        self.session.close()


def _checked(response):
    if response.status_code >= 400:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        raise ServingError(response.status_code, message)
    return response


class LocalServer:
    """Runs `python -m dlkit serve` in a subprocess on 127.0.0.1, then stops it.

    For notebooks, tests and benchmarks: `start()` sets `url`, `client` (a
    `ServingClient`) and `process`; the server's output goes to a log file
    (`log_tail()`). It stops on `stop()`, on leaving a `with` block, at
    interpreter exit and, on Linux, when the process that started it dies, even
    by SIGKILL: a restarted kernel leaves no server behind.

    >>> with LocalServer("exports/mnist") as server:  # doctest: +SKIP
    ...     probabilities = server.client.predict(x_test[:8])

    Args:
        model_dir: directory with numbered SavedModel versions.
        name: the model's name. Defaults to `None` (the directory's name).
        extra_args: more options of `python -m dlkit serve`, e.g.
            `["--log_inputs", "inputs.jsonl"]`. Defaults to `()`.
        startup_timeout: seconds to wait for the model. Defaults to `120`.
    """

    def __init__(self, model_dir, name=None, extra_args=(), startup_timeout=120):
        self.model_dir = pathlib.Path(model_dir)
        self.name = name or self.model_dir.resolve().name
        self.extra_args = [str(arg) for arg in extra_args]
        self.startup_timeout = startup_timeout
        self.url = self.client = self.process = self.log_path = None

    def start(self):
        """Starts the server and waits until the model is ready; returns `self`."""
        port = _free_port()
        self.url = f"http://{_LOOPBACK}:{port}"
        command = [sys.executable, "-m", "dlkit", "serve", str(self.model_dir)]
        command += ["--http_port", str(port), "--model_name", self.name]
        log, self.log_path = tempfile.mkstemp(prefix="dlkit-serve-", suffix=".log")
        with os.fdopen(log, "wb") as log:
            self.process = subprocess.Popen(
                [*command, *self.extra_args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_stop_with_parent if sys.platform == "linux" else None,
            )
        atexit.register(self.stop)
        self.client = ServingClient(self.url, self.name)
        try:
            self._wait_until_ready()
        except BaseException:  # a failed start or a KeyboardInterrupt
            self.stop()
            raise
        return self

    def _wait_until_ready(self):
        deadline = time.monotonic() + self.startup_timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                return self.client.status()
            except (requests.ConnectionError, ServingError):
                time.sleep(0.25)
        code = self.process.poll()
        failure = f"exited with status {code}" if code is not None else "timed out"
        raise RuntimeError(f"The model server {failure}:\n{self.log_tail()}")

    def log_tail(self, lines=20):
        """Returns the last lines of the server's output."""
        if not self.log_path or not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, encoding="utf-8", errors="replace") as file:
            return "".join(file.readlines()[-lines:])

    def stop(self, timeout=15):
        """Stops the server: SIGTERM, then SIGKILL after `timeout` seconds.

        Returns:
            The server's exit status, or `None` if it was never started.
        """
        if self.process is None:
            return None
        self.client.close()
        self.process.terminate()  # does nothing if the server has exited
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        atexit.unregister(self.stop)
        pathlib.Path(self.log_path).unlink(missing_ok=True)
        return self.process.returncode

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


def _stop_with_parent():
    """Linux: the server gets SIGTERM when the process that started it dies."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((_LOOPBACK, 0))
        return probe.getsockname()[1]
