"""Serves an exported SavedModel with KServe, speaking TF Serving's REST API.

`python -m dlkit serve MODEL_DIR [--port 8501] [--name NAME] [--host 127.0.0.1]`
loads the highest numbered version in `MODEL_DIR` (the layout
`dlkit.deploy.export_saved_model` writes and TF Serving reads) into KServe's
`ModelServer` and answers:

- TF Serving's REST API: `GET /v1/models/NAME` and
  `POST /v1/models/NAME:predict` with `{"instances": ...}` (row format, answered
  with `{"predictions": ...}`) or `{"inputs": ...}` (columnar, answered with
  `{"outputs": ...}`); errors are `{"error": "..."}` with status 400 for bad
  input and 404 for an unknown model, as TF Serving does;
- the V2 open inference protocol: `POST /v2/models/NAME/infer`,
  `GET /v2/models/NAME`;
- Prometheus metrics at `GET /metrics`: `dlkit_http_requests_total` (by
  endpoint and status code), `dlkit_http_request_duration_seconds` and
  KServe's `request_predict_seconds` latency histograms.

Inputs are checked against the signature's shapes and dtypes before the model
runs, and request bodies larger than `--max-request-bytes` are refused (413).
`--log-inputs FILE` appends per-example input statistics to a JSON-lines file
for `drift_report`.

The client side needs only `requests`: `ServingClient` works unchanged against
this server and against TF Serving; `LocalServer` runs this server in a
subprocess for notebooks, tests and benchmarks.

Example:

>>> from dlkit.serve import LocalServer
>>> with LocalServer("exports/mnist") as server:  # doctest: +SKIP
...     probabilities = server.client.predict(x_test[:8])
"""

import argparse
import asyncio
import atexit
import functools
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import numpy as np
import requests

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
STATISTICS = ("mean", "std", "min", "max")
_JSON = {"Content-Type": "application/json"}


class RequestError(ValueError):
    """A request does not match the model's signature (answered with 400)."""


class ServingError(RuntimeError):
    """An error answer from a model server.

    Attributes:
        status_code: the HTTP status, e.g. 400 or 404.
        message: the server's `error` text.
    """

    def __init__(self, status_code, message):
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message


# ----------------------------------------------------------------- command line


def main(argv):
    """Runs the model server until it is stopped; returns the exit status.

    Args:
        argv: the arguments after `serve`, e.g. `["exports/mnist", "--port",
            "8501"]`.

    Returns:
        0 after a clean shutdown, 2 for invalid arguments.
    """
    args = build_parser().parse_args(argv)
    try:
        model = _create_model(args.model_dir, args.name, args.log_inputs)
    except ValueError as error:
        print(f"dlkit serve: {error}", file=sys.stderr)
        return 2
    server = _create_model_server(args, model)
    server.start([model])
    return 0


def build_parser():
    """Returns the `argparse` parser of `python -m dlkit serve`."""
    parser = argparse.ArgumentParser(
        prog="python -m dlkit serve",
        description="Serve a SavedModel over TF Serving's REST API with KServe.",
    )
    parser.add_argument(
        "model_dir", help="directory with numbered versions 1/, 2/, ... of a SavedModel"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--name", default=None, help="default: MODEL_DIR's name")
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="address to bind; 0.0.0.0 for all"
    )
    parser.add_argument(
        "--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES
    )
    parser.add_argument(
        "--log-inputs", default=None, help="append input statistics to this file"
    )
    return parser


# ------------------------------------------------------------ signature checks


class ServingSignature:
    """Checks requests against a SavedModel's serving signature and runs it.

    The framework-free half of the server: parses TF Serving requests
    (`instances` or `inputs`), validates every input's shape and dtype, runs the
    signature and formats the answer.

    Args:
        version_dir: a SavedModel version directory.

    Attributes:
        input_specs: dict from input name to `tf.TensorSpec`.
        output_names: the signature's output names.
    """

    def __init__(self, version_dir):
        from dlkit.deploy import SavedModelPredictor

        self._predictor = SavedModelPredictor(version_dir)
        self.input_specs = self._predictor.input_specs
        self.output_names = self._predictor.output_names

    def parse_v1(self, body):
        """Turns a TF Serving request body into `(arrays, row_format)`."""
        if not isinstance(body, dict):
            raise RequestError(
                f"Invalid request body. Received: JSON {type(body).__name__}. "
                'Expected a JSON object such as {"instances": [...]}.'
            )
        _check_signature_name(body.get("signature_name"))
        row_format = _check_request_keys(body)
        if row_format:
            return self._rows_to_arrays(body["instances"]), True
        return self._columns_to_arrays(body["inputs"]), False

    def validate(self, arrays):
        """Checks arrays against the signature; returns them cast to its dtypes."""
        missing = sorted(set(self.input_specs) - set(arrays))
        unknown = sorted(set(arrays) - set(self.input_specs))
        if missing or unknown:
            raise RequestError(
                f"Invalid input names. Received: {sorted(arrays)}. Expected: "
                f"{sorted(self.input_specs)}."
            )
        checked = {
            name: _check_array(name, arrays[name], spec)
            for name, spec in self.input_specs.items()
        }
        sizes = {len(array) for array in checked.values()}
        if len(sizes) > 1:
            raise RequestError(f"Inputs have different batch sizes: {sorted(sizes)}.")
        return checked

    def run(self, arrays):
        """Runs the signature on validated arrays; returns a dict of outputs."""
        return self._predictor.predict_all(arrays)

    def format_v1(self, outputs, row_format):
        """Formats outputs as TF Serving does: `predictions` or `outputs`."""
        if row_format:
            if len(outputs) == 1:
                return {"predictions": next(iter(outputs.values())).tolist()}
            rows = len(next(iter(outputs.values())))
            return {
                "predictions": [
                    {k: v[i].tolist() for k, v in outputs.items()} for i in range(rows)
                ]
            }
        if len(outputs) == 1:
            return {"outputs": next(iter(outputs.values())).tolist()}
        return {"outputs": {name: value.tolist() for name, value in outputs.items()}}

    def tensor_types(self):
        """Describes the inputs as the V2 protocol's model metadata does."""
        return [
            {
                "name": name,
                "datatype": _v2_datatype(spec.dtype.as_numpy_dtype),
                "shape": [-1 if d is None else d for d in spec.shape.as_list()],
            }
            for name, spec in self.input_specs.items()
        ]

    def _rows_to_arrays(self, instances):
        if not isinstance(instances, list) or not instances:
            raise RequestError(
                'Invalid "instances". Expected a non-empty JSON list with one '
                "entry per example."
            )
        names = list(self.input_specs)
        if all(isinstance(row, dict) for row in instances):
            return {
                name: [row.get(name) for row in instances]
                for name in {k for row in instances for k in row}
            }
        if len(names) > 1:
            raise RequestError(
                f"The model has several inputs {names}: each instance must be a "
                "JSON object mapping input names to values."
            )
        return {names[0]: instances}

    def _columns_to_arrays(self, inputs):
        if isinstance(inputs, dict):
            return inputs
        names = list(self.input_specs)
        if len(names) > 1:
            raise RequestError(
                f'The model has several inputs {names}: "inputs" must be a JSON '
                "object mapping input names to values."
            )
        return {names[0]: inputs}


def _check_signature_name(name):
    from dlkit.deploy import SIGNATURE_NAME

    if name is not None and name != SIGNATURE_NAME:
        raise RequestError(
            f"Invalid signature_name. Received: {name!r}. Expected "
            f"{SIGNATURE_NAME!r} (or leave it out)."
        )


def _check_request_keys(body):
    if "instances" in body and "inputs" in body:
        raise RequestError(
            'Invalid request: it has both "instances" and "inputs". Send exactly '
            'one: "instances" for row format or "inputs" for columnar format.'
        )
    if "instances" not in body and "inputs" not in body:
        raise RequestError(
            f"Invalid request: missing key. Received keys: {sorted(body)}. "
            'Expected "instances" (row format) or "inputs" (columnar format).'
        )
    return "instances" in body


def _check_array(name, value, spec):
    """Converts one input to the signature's dtype after checking it."""
    try:
        array = np.asarray(value)
    except ValueError:
        raise RequestError(
            f"Invalid input {name!r}: nested lists of different lengths. Expected "
            f"a rectangular array of shape {_shape_text(spec)}."
        ) from None
    expected = spec.dtype.as_numpy_dtype
    _check_dtype(name, array, expected)
    _check_shape(name, array, spec)
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise RequestError(
            f"Invalid input {name!r}: it contains NaN or infinity. Expected finite "
            "numbers; replace missing values before sending."
        )
    return array.astype(expected)


def _check_dtype(name, array, expected):
    allowed = {"f": "iuf", "i": "iu", "u": "u", "b": "b"}.get(
        np.dtype(expected).kind, ""
    )
    if array.dtype.kind not in allowed or array.size == 0:
        received = "no values" if array.size == 0 else f"values of type {array.dtype}"
        raise RequestError(
            f"Invalid dtype for input {name!r}. Received: {received}. Expected "
            f"{np.dtype(expected).name} numbers, e.g. [[0.0, 0.5, ...], ...]."
        )


def _check_shape(name, array, spec):
    expected = spec.shape.as_list()
    matches = array.ndim == len(expected) and all(
        e is None or e == r for e, r in zip(expected, array.shape, strict=True)
    )
    if not matches:
        raise RequestError(
            f"Invalid shape for input {name!r}. Received: {tuple(array.shape)}. "
            f"Expected: {_shape_text(spec)}, where None is any batch size. Send "
            "a list of examples, each of the model's input shape."
        )


def _shape_text(spec):
    return (
        "("
        + ", ".join("None" if d is None else str(d) for d in spec.shape.as_list())
        + ")"
    )


def _v2_datatype(dtype):
    names = {
        "float32": "FP32",
        "float64": "FP64",
        "float16": "FP16",
        "int32": "INT32",
        "int64": "INT64",
        "uint8": "UINT8",
        "int8": "INT8",
        "bool": "BOOL",
    }
    return names.get(np.dtype(dtype).name, "BYTES")


# --------------------------------------------------------------- input logging


def input_statistics(x):
    """Computes per-example statistics of model inputs, the drift check's features.

    Args:
        x: a batch of inputs, shape `(batch, ...)`.

    Returns:
        A dict from each name in `STATISTICS` (`mean`, `std`, `min`, `max`) to
        an array of one value per example.
    """
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return {
        "mean": flat.mean(axis=1),
        "std": flat.std(axis=1),
        "min": flat.min(axis=1),
        "max": flat.max(axis=1),
    }


def read_input_log(path):
    """Reads the statistics a server wrote with `--log-inputs PATH`.

    Returns:
        A dict like `input_statistics` returns, one value per served example.
    """
    with open(path, encoding="utf-8") as file:
        records = [json.loads(line) for line in file if line.strip()]
    return {name: np.array([r[name] for r in records]) for name in STATISTICS}


def _append_input_log(path, lock, x):
    stats = input_statistics(x)
    lines = [
        json.dumps({name: float(stats[name][i]) for name in STATISTICS})
        for i in range(len(x))
    ]
    with lock, open(path, "a", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")


def drift_report(reference, served, threshold=0.2, bins=10):
    """Compares served inputs with training inputs, statistic by statistic.

    Each statistic of `STATISTICS` is compared by its population stability
    index, `PSI = sum_i (q_i - p_i) ln(q_i / p_i)`, where `p_i` and `q_i` are
    the fractions of reference and served examples in bin `i` of the
    reference's quantile bins (see `population_stability_index`). PSI below
    0.1 is usually read as no drift and above 0.2 as drift worth a look.

    Example:

    >>> drift_report(x_train, "served_inputs.jsonl")  # doctest: +SKIP

    Args:
        reference: training inputs (array), or their `input_statistics`.
        served: served inputs (array), their statistics, or the path of a
            server's `--log-inputs` file.
        threshold: PSI above which a statistic is flagged. Defaults to `0.2`.
        bins: number of quantile bins. Defaults to `10`.

    Returns:
        A pandas DataFrame indexed by statistic with columns
        `reference_mean`, `served_mean`, `psi` and `drift`.
    """
    import pandas as pd

    reference, served = _as_statistics(reference), _as_statistics(served)
    rows = {
        name: {
            "reference_mean": float(reference[name].mean()),
            "served_mean": float(served[name].mean()),
            "psi": population_stability_index(reference[name], served[name], bins),
        }
        for name in STATISTICS
    }
    report = pd.DataFrame.from_dict(rows, orient="index")
    report["drift"] = report["psi"] > threshold
    return report


def population_stability_index(reference, served, bins=10):
    """Returns the PSI of two samples over the reference's quantile bins.

    The bins lie between the reference's quantiles (deciles for `bins=10`); a
    value equal to a quantile gets a bin of its own, because image statistics
    often pile up on one value (a minimum pixel of 0, a maximum of 255).
    Fractions are floored at 1e-4 so empty bins stay finite.

    Args:
        reference: 1-D sample, e.g. the training images' means.
        served: 1-D sample to compare, e.g. the served images' means.
        bins: number of quantile bins. Defaults to `10`.

    Returns:
        The PSI, 0 for identical distributions.

    Raises:
        ValueError: a sample is empty.
    """
    reference, served = np.asarray(reference), np.asarray(served)
    if len(reference) == 0 or len(served) == 0:
        raise ValueError(
            f"Invalid samples for the drift check. Received: {len(reference)} "
            f"reference and {len(served)} served values. Expected both non-empty; "
            "send some requests to the server first."
        )
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    p = _bin_fractions(reference, edges)
    q = _bin_fractions(served, edges)
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
    if isinstance(data, dict):
        return {name: np.asarray(data[name]) for name in STATISTICS}
    return input_statistics(data)


# ------------------------------------------------------------- KServe glue


def _import_kserve():
    """Imports KServe, which parses `sys.argv` at import: hide ours from it."""
    argv = sys.argv
    sys.argv = argv[:1]
    try:
        import kserve
    finally:
        sys.argv = argv
    return kserve


def _create_model(model_dir, name=None, log_inputs=None):
    """Builds the KServe model for the latest version in `model_dir`."""
    from dlkit.deploy import latest_version

    model_dir = pathlib.Path(model_dir)
    version_dir = latest_version(model_dir)
    name = name or model_dir.resolve().name
    model = _model_class()(name, version_dir, log_inputs)
    model.load()
    return model


@functools.cache
def _model_class():
    kserve = _import_kserve()
    from kserve.errors import InvalidInput
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

    class SavedModelService(kserve.Model):
        """A KServe model that runs a SavedModel's serving signature."""

        def __init__(self, name, version_dir, log_inputs=None):
            super().__init__(name)
            self.version_dir = pathlib.Path(version_dir)
            self.version = int(self.version_dir.name)
            self.log_inputs = log_inputs
            self._log_lock = threading.Lock()
            self.signature = None

        def load(self):
            self.signature = ServingSignature(self.version_dir)
            self.ready = True
            return self.ready

        def get_input_types(self):
            return self.signature.tensor_types()

        async def predict(self, payload, headers=None, response_headers=None):
            try:
                if isinstance(payload, InferRequest):
                    arrays = self.signature.validate(
                        _v2_arrays(payload, self.signature)
                    )
                    outputs = await self._run(arrays)
                    return _v2_response(self, payload, outputs)
                arrays, row_format = self.signature.parse_v1(_decode_json(payload))
                outputs = await self._run(self.signature.validate(arrays))
                return self.signature.format_v1(outputs, row_format)
            except RequestError as error:
                raise InvalidInput(str(error)) from None

        async def _run(self, arrays):
            if self.log_inputs:
                first = next(iter(arrays.values()))
                _append_input_log(self.log_inputs, self._log_lock, first)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, self.signature.run, arrays)

    def _v2_arrays(request, signature):
        names = list(signature.input_specs)
        arrays = {}
        for tensor in request.inputs:
            try:
                array = tensor.as_numpy()
            except (ValueError, TypeError, InvalidInput) as error:
                raise RequestError(
                    f"Invalid V2 input {tensor.name!r}: {error}."
                ) from None
            arrays[
                names[0]
                if len(names) == 1 and len(request.inputs) == 1
                else tensor.name
            ] = array
        return arrays

    def _v2_response(model, request, outputs):
        infer_outputs = []
        for name, value in outputs.items():
            output = InferOutput(
                name=name, shape=list(value.shape), datatype=_v2_datatype(value.dtype)
            )
            output.set_data_from_numpy(value, binary_data=False)
            infer_outputs.append(output)
        response_id = request.id or str(uuid.uuid4())
        return InferResponse(
            response_id=response_id,
            model_name=model.name,
            model_version=str(model.version),
            infer_outputs=infer_outputs,
        )

    return SavedModelService


def _decode_json(payload):
    """KServe hands over bytes when the Content-Type is not JSON: parse them."""
    if not isinstance(payload, (bytes, str)):
        return payload
    try:
        return json.loads(payload)
    except ValueError as error:
        raise RequestError(
            f"Invalid JSON body: {error}. Send a JSON object such as "
            '{"instances": [...]} with Content-Type: application/json.'
        ) from None


def _create_model_server(args, model):
    kserve = _import_kserve()
    from kserve import model_server

    _add_http_glue(model_server.app, args.max_request_bytes, {model.name: model})
    server_class = _loopback_server_class(kserve)
    return server_class(
        host=args.host,
        http_port=args.port,
        enable_grpc=False,
        workers=1,
        enable_latency_logging=False,
    )


def _loopback_server_class(kserve):
    class ModelServer(kserve.ModelServer):
        """KServe's ModelServer, bound to `host` instead of KServe's fixed 0.0.0.0."""

        def __init__(self, host, **kwargs):
            super().__init__(**kwargs)
            self.host = host

        def setup_event_loop(self):
            rest_server = getattr(self, "_rest_server", None)
            if rest_server is None:
                raise RuntimeError(
                    "This KServe version cannot be bound to a host by dlkit."
                )
            rest_server.config.host = self.host
            super().setup_event_loop()

    return ModelServer


def _add_http_glue(app, max_request_bytes, models):
    """Adds what KServe lacks: body cap, request metrics, JSON errors, TF status."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from kserve.errors import ModelNotFound
    from starlette.exceptions import HTTPException

    async def http_error(request, error):
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code)

    async def validation_error(request, error):
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()
        )
        return JSONResponse(
            {"error": f"Invalid inference request: {problems}."}, status_code=400
        )

    async def model_status(model_name: str):
        model = models.get(model_name)
        if model is None:
            raise ModelNotFound(model_name)
        return {
            "model_version_status": [
                {
                    "version": str(model.version),
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ],
            "name": model_name,
            "ready": model.ready,
        }

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_api_route("/v1/models/{model_name}", model_status, methods=["GET"])
    app.add_middleware(
        _RequestGuard, max_request_bytes=max_request_bytes, metrics=_http_metrics()
    )


@functools.cache
def _http_metrics():
    from prometheus_client import Counter, Histogram

    return (
        Counter(
            "dlkit_http_requests_total",
            "HTTP requests by endpoint and status code",
            ["endpoint", "code"],
        ),
        Histogram(
            "dlkit_http_request_duration_seconds",
            "HTTP request latency, body to answer",
            ["endpoint"],
        ),
    )


class _RequestGuard:
    """ASGI middleware: refuses bodies over the cap (413) and records metrics."""

    def __init__(self, app, max_request_bytes, metrics):
        self.app = app
        self.max_request_bytes = max_request_bytes
        self.requests_total, self.duration = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def send_recording_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        endpoint = _endpoint(scope["path"])
        try:
            body_size, replay = await _read_body(receive, self.max_request_bytes)
            if body_size > self.max_request_bytes:
                await _send_json(
                    send_recording_status,
                    413,
                    {
                        "error": (
                            f"Request body too large. Received: {body_size} "
                            f"bytes. Expected at most {self.max_request_bytes} "
                            "bytes (--max-request-bytes); send fewer examples "
                            "per request."
                        )
                    },
                )
            else:
                await self.app(scope, replay, send_recording_status)
        finally:
            self.requests_total.labels(endpoint, str(status[0])).inc()
            self.duration.labels(endpoint).observe(time.perf_counter() - start)


async def _read_body(receive, limit):
    """Reads the whole body (keeping at most `limit` bytes); returns a replayer."""
    chunks, size, more, disconnected = [], 0, True, None
    while more:
        message = await receive()
        if message["type"] != "http.request":
            disconnected = message
            break
        body = message.get("body", b"")
        size += len(body)
        if size <= limit:
            chunks.append(body)
        more = message.get("more_body", False)
    pending = [
        disconnected
        or {"type": "http.request", "body": b"".join(chunks), "more_body": False}
    ]

    async def replay():
        return pending.pop() if pending else await receive()

    return size, replay


async def _send_json(send, status, content):
    body = json.dumps(content).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _endpoint(path):
    if path.startswith("/v1/models/"):
        return "v1_predict" if path.endswith(":predict") else "v1_status"
    if path.startswith("/v2/models/"):
        return "v2_infer" if path.endswith("/infer") else "v2_metadata"
    return {"/metrics": "metrics", "/": "live"}.get(path, "other")


# ------------------------------------------------------------------ clients


class ServingClient:
    """A TF Serving REST client: works with `dlkit serve` and with TF Serving.

    Uses plain `requests`; one client per thread.

    Example:

    >>> client = ServingClient("http://127.0.0.1:8501", "mnist")  # doctest: +SKIP
    >>> client.wait_until_ready()  # doctest: +SKIP
    >>> client.predict(x_test[:4]).argmax(axis=1)  # doctest: +SKIP

    Args:
        url: the server's base URL. Defaults to `"http://127.0.0.1:8501"`.
        model_name: the served model's name. Defaults to `"model"`.
        timeout: seconds to wait for each answer. Defaults to `30`.
    """

    def __init__(self, url="http://127.0.0.1:8501", model_name="model", timeout=30):
        self.url = url.rstrip("/")
        self.model_name = model_name
        self.timeout = timeout
        self.session = requests.Session()

    @property
    def model_url(self):
        """The model's URL, `<url>/v1/models/<model_name>`."""
        return f"{self.url}/v1/models/{self.model_name}"

    def status(self):
        """Returns the model's status (`GET /v1/models/NAME`) as a dict."""
        return self._answer(self.session.get(self.model_url, timeout=self.timeout))

    def is_ready(self):
        """Whether the server answers and a version of the model is AVAILABLE."""
        try:
            versions = self.status().get("model_version_status", [])
        except (requests.ConnectionError, requests.Timeout, ServingError):
            return False
        return any(v.get("state") == "AVAILABLE" for v in versions)

    def wait_until_ready(self, timeout=60, interval=0.25):
        """Polls `is_ready`; raises `TimeoutError` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not self.is_ready():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Model {self.model_url} not ready after {timeout} s."
                )
            time.sleep(interval)

    def predict(self, instances):
        """Sends a row-format request; returns the predictions as a NumPy array.

        Args:
            instances: a batch of examples (array or nested lists), or a list of
                dicts for models with several inputs.

        Returns:
            `np.ndarray` of predictions (a list of dicts for several outputs).

        Raises:
            ServingError: the server answered with an error.
        """
        answer = self.post({"instances": _to_json(instances)})["predictions"]
        return answer if answer and isinstance(answer[0], dict) else np.asarray(answer)

    def predict_columnar(self, inputs):
        """Sends a columnar request (`{"inputs": ...}`); returns the `outputs`."""
        answer = self.post({"inputs": _to_json(inputs)})["outputs"]
        return answer if isinstance(answer, dict) else np.asarray(answer)

    def post(self, body):
        """POSTs a JSON body to `:predict`; returns the JSON answer as a dict."""
        response = self.session.post(
            f"{self.model_url}:predict",
            data=json.dumps(body),
            headers=_JSON,
            timeout=self.timeout,
        )
        return self._answer(response)

    def metrics(self, path="/metrics"):
        """Returns the server's Prometheus metrics text.

        TF Serving serves them where its `--monitoring_config_file` says, e.g.
        `path="/monitoring/prometheus/metrics"`.
        """
        response = self.session.get(self.url + path, timeout=self.timeout)
        response.raise_for_status()
        return response.text

    def close(self):
        """Closes the HTTP connections."""
        self.session.close()

    @staticmethod
    def _answer(response):
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text}
        if response.status_code >= 400:
            raise ServingError(response.status_code, body.get("error", body))
        return body


def _to_json(value):
    if isinstance(value, dict):
        return {name: _to_json(item) for name, item in value.items()}
    if isinstance(value, list):
        return [_to_json(item) for item in value]
    return np.asarray(value).tolist()


class LocalServer:
    """Runs `python -m dlkit serve` in a subprocess on 127.0.0.1, then stops it.

    For notebooks, tests and benchmarks. The server's output goes to a log
    file; the process is stopped by `stop()`, on leaving a `with` block and at
    interpreter exit, whichever comes first; on Linux it also stops when the
    process that started it dies, even by SIGKILL.

    Example:

    >>> with LocalServer("exports/mnist") as server:  # doctest: +SKIP
    ...     print(server.client.predict(x_test[:2]))

    Args:
        model_dir: directory with numbered SavedModel versions.
        name: model name. Defaults to `None` (the directory's name).
        port: TCP port. Defaults to `None` (a free port chosen by the OS).
        extra_args: more command line arguments, e.g.
            `["--log-inputs", "inputs.jsonl"]`. Defaults to `()`.
        startup_timeout: seconds to wait for the model to be ready. Defaults
            to `120`.
    """

    def __init__(
        self, model_dir, name=None, port=None, extra_args=(), startup_timeout=120
    ):
        self.model_dir = pathlib.Path(model_dir)
        self.name = name or self.model_dir.resolve().name
        self._name_argument = name
        self.port = port
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.process = None
        self.log_path = None
        self.client = None

    @property
    def url(self):
        """The server's base URL, e.g. `http://127.0.0.1:8501`."""
        return f"http://{DEFAULT_HOST}:{self.port}"

    def start(self):
        """Starts the server and waits until the model is ready; returns `self`."""
        self.port = self.port or free_port()
        log = tempfile.NamedTemporaryFile(
            "wb", prefix="dlkit-serve-", suffix=".log", delete=False
        )
        self.log_path = log.name
        command = [sys.executable, "-m", "dlkit", "serve", str(self.model_dir)]
        command += ["--port", str(self.port), *self.extra_args]
        if self._name_argument:
            command += ["--name", self._name_argument]
        with log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=_child_environment(),
                preexec_fn=_stop_with_parent if sys.platform == "linux" else None,
            )
        atexit.register(self.stop)
        self.client = ServingClient(self.url, self.name)
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self):
        deadline = time.monotonic() + self.startup_timeout
        while not self.client.is_ready():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"The model server exited with status "
                    f"{self.process.returncode}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"The model server was not ready after "
                    f"{self.startup_timeout} s:\n{self.log_tail()}"
                )
            time.sleep(0.25)

    def log_tail(self, lines=20):
        """Returns the last lines of the server's output."""
        if not self.log_path or not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, encoding="utf-8", errors="replace") as file:
            return "".join(file.readlines()[-lines:])

    def stop(self, timeout=15):
        """Stops the server: SIGTERM, then SIGKILL after `timeout` seconds.

        Returns:
            The process's exit status, or `None` if it was never started.
        """
        if self.process is None:
            return None
        if self.client is not None:
            self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        atexit.unregister(self.stop)
        if self.log_path and os.path.exists(self.log_path):
            os.remove(self.log_path)
        return self.process.returncode

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


def _stop_with_parent():
    """Linux: the server gets SIGTERM if the process that started it dies."""
    import ctypes
    import signal

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # 1 is PR_SET_PDEATHSIG


def free_port():
    """Returns a TCP port on 127.0.0.1 that the OS reports free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((DEFAULT_HOST, 0))
        return probe.getsockname()[1]


def _child_environment():
    package_root = str(pathlib.Path(__file__).resolve().parents[1])
    environment = dict(os.environ)
    path = environment.get("PYTHONPATH")
    environment["PYTHONPATH"] = package_root + (os.pathsep + path if path else "")
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return environment


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
