"""Serving benchmark: CPU latency per export format, and the model server on loopback.

Trains the course's MNIST CNN briefly (quick profile), exports it in every
format with `dlkit.deploy`, then measures:

1. per-example CPU latency (p50/p99, batch of one) of the SavedModel signature,
   each TFLite variant (LiteRT interpreter) and ONNX (onnxruntime), in-process;
2. `python -m dlkit serve` on 127.0.0.1: latency (p50/p99) of one client
   sending one example per request, and throughput with several concurrent
   clients, each sending a bounded number of requests.

Results are printed as Markdown tables, with ratios to the SavedModel row so
numbers from different machines can be compared, and optionally written as
JSON. Run from the repository root:

    .venv/bin/python benchmarks/bench_serving.py [--requests 300] [--json out.json]
"""

import argparse
import concurrent.futures
import json
import pathlib
import sys
import tempfile
import time

import numpy as np

IN_PROCESS = (
    "saved_model",
    "tflite_float32",
    "tflite_dynamic_range",
    "tflite_float16",
    "tflite_int8",
    "onnx",
)


def train_model(x_train, y_train):
    from dlkit import models

    model = models.cnn(input_shape=(28, 28), num_classes=10, rescale=1 / 255)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=2, batch_size=64, verbose=0)
    return model


def in_process_latency(results, x_test, y_test, num_runs):
    from dlkit import deploy

    rows = {}
    for name in IN_PROCESS:
        predictor = deploy.load_predictor(results[name].path)
        accuracy = float(np.mean(predictor.predict(x_test).argmax(1) == y_test))
        latency = deploy.measure_latency(predictor.predict, x_test, num_runs=num_runs)
        rows[name] = {
            "size_bytes": results[name].size_bytes,
            "accuracy": accuracy,
            **latency,
        }
    return rows


def client_loop(url, name, x, num_requests, offset):
    from dlkit.serve import ServingClient

    client = ServingClient(url, name)
    timings = []
    try:
        for step in range(num_requests):
            example = x[(offset + step) % len(x)][None]
            start = time.perf_counter()
            client.predict(example)
            timings.append((time.perf_counter() - start) * 1000)
    finally:
        client.close()
    return timings


def server_load(server, x, num_clients, num_requests):
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(num_clients) as pool:
        futures = [
            pool.submit(client_loop, server.url, server.name, x, num_requests, i * 97)
            for i in range(num_clients)
        ]
        timings = [t for future in futures for t in future.result()]
    elapsed = time.perf_counter() - started
    return {
        "clients": num_clients,
        "requests": len(timings),
        "p50_ms": float(np.percentile(timings, 50)),
        "p99_ms": float(np.percentile(timings, 99)),
        "requests_per_s": len(timings) / elapsed,
    }


def print_tables(in_process, server_rows):
    base = in_process["saved_model"]["p50_ms"]
    print(
        "\n| format | size (KB) | accuracy | p50 (ms) | p99 (ms) | p50 vs SavedModel |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in in_process.items():
        print(
            f"| {name} | {row['size_bytes'] / 1024:.1f} | {row['accuracy']:.3f} | "
            f"{row['p50_ms']:.3f} | {row['p99_ms']:.3f} | {row['p50_ms'] / base:.2f}x |"
        )
    print("\n| dlkit serve, clients | requests | p50 (ms) | p99 (ms) | requests/s |")
    print("|---:|---:|---:|---:|---:|")
    for row in server_rows:
        print(
            f"| {row['clients']} | {row['requests']} | {row['p50_ms']:.2f} | "
            f"{row['p99_ms']:.2f} | {row['requests_per_s']:.0f} |"
        )


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="per client")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--runs", type=int, default=500, help="in-process calls")
    parser.add_argument("--json", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)

    import dlkit
    from dlkit import datasets, deploy
    from dlkit.serve import LocalServer

    dlkit.setup(seed=42, verbose=False)
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist("quick", verbose=False)
    x_train, x_test = x_train.astype("float32"), x_test.astype("float32")
    model = train_model(x_train, y_train)
    with tempfile.TemporaryDirectory(prefix="dlkit-bench-") as directory:
        results = deploy.export_all(
            model, directory, x_test[:256], x_train[:500], name="mnist"
        )
        in_process = in_process_latency(results, x_test, y_test, args.runs)
        with LocalServer(pathlib.Path(directory) / "mnist") as server:
            client_loop(server.url, server.name, x_test, 50, 0)  # warm-up
            server_rows = [
                server_load(server, x_test, clients, args.requests)
                for clients in args.clients
            ]
    print_tables(in_process, server_rows)
    if args.json:
        args.json.write_text(
            json.dumps({"in_process": in_process, "server": server_rows}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
