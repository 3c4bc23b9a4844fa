"""Benchmark of `dlkit.training.Trainer` against plain `model.fit`.

    python benchmarks/bench_trainer.py [--epochs 4] [--repeats 3]

Trains the keras-io style CNN (`dlkit.models.cnn`) on the quick MNIST split
(4,000 images) and reports images per second, as ratios measured in one run:

1. the trainer (TensorBoard and backups on) against plain `model.fit` on the
   same model and batch, fed the same arrays, then the same `tf.data`
   pipeline (`dlkit.datasets.make_dataset`): the trainer should cost nothing
   (ratio >= 0.97);
2. one replica against two (`MirroredStrategy` over two logical CPUs, or over
   two GPUs when there are two), at the same global batch;
3. float32 against mixed precision: `mixed_bfloat16` on a CPU, and on a GPU
   the policy the trainer picks there (`mixed_float16` from compute
   capability 7.0).

Throughput counts the epochs after the first (which traces the functions) up
to the moment `fit` returns, so every per-epoch cost of the trainer (backups,
TensorBoard) is inside. The two sides of each comparison run alternately,
`--repeats` times, and the median is reported.
"""

import argparse
import contextlib
import io
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from dlkit import datasets, models, training  # noqa: E402


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    return parser.parse_args()


def use_two_logical_cpus():
    """Splits the CPU into two logical devices (before TensorFlow starts)."""
    if not tf.config.list_physical_devices("GPU"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        config = tf.config.LogicalDeviceConfiguration()
        tf.config.set_logical_device_configuration(cpu, [config, config])


class SteadyClock(keras.callbacks.Callback):
    """Notes when the second epoch starts (wall clock and process CPU time)."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            self.start = (time.perf_counter(), time.process_time())


def images_per_second(run, examples, epochs):
    """Returns (images per wall-clock second, images per CPU second)."""
    clock = SteadyClock()
    run(clock)
    wall, cpu = time.perf_counter(), time.process_time()
    images = examples * (epochs - 1)
    return images / (wall - clock.start[0]), images / (cpu - clock.start[1])


def as_dataset(data, arguments):
    """The same tf.data pipeline for both sides: shuffled, batched, prefetched."""
    return datasets.make_dataset(*data, batch_size=arguments.batch_size)


def plain_fit(data, arguments, pipeline=False):
    def run(clock):
        model = models.cnn((28, 28, 1), 10, rescale=1 / 255)
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        inputs = (
            {"x": as_dataset(data, arguments)}
            if pipeline
            else dict(x=data[0], y=data[1], batch_size=arguments.batch_size)
        )
        model.fit(**inputs, epochs=arguments.epochs, callbacks=[clock], verbose=0)

    return run


def trainer_fit(data, arguments, strategy="auto", precision="float32", replicas=1):
    return trainer_fit_on(lambda: data, arguments, strategy, precision, replicas)


def trainer_pipeline_fit(data, arguments):
    return trainer_fit_on(lambda: as_dataset(data, arguments), arguments)


def trainer_fit_on(
    make_data, arguments, strategy="auto", precision="float32", replicas=1
):
    def build():
        return models.cnn((28, 28, 1), 10, rescale=1 / 255)

    def run(clock):
        quiet = contextlib.redirect_stdout(io.StringIO())  # its one-line summary
        with tempfile.TemporaryDirectory() as runs_dir, quiet:
            trainer = training.Trainer(
                strategy=strategy,
                precision=precision,
                loss="sparse_categorical_crossentropy",
                metrics=["accuracy"],
                runs_dir=runs_dir,
            )
            batch_size = arguments.batch_size // replicas
            data = make_data()
            trainer.fit(
                build,
                data,
                epochs=arguments.epochs,
                batch_size=None if isinstance(data, tf.data.Dataset) else batch_size,
                run_name="bench",
                callbacks=[clock],
                verbose=0,
            )

    return run


def compare(title, side_a, side_b, examples, arguments):
    """Runs the two sides alternately and prints one table row.

    The headline ratio uses each side's best run (like `timeit`): on a shared
    machine other processes only ever slow a run down. The median ratio and
    the ratio of images per CPU-second are printed beside it.
    """
    runs = {name: [] for name, _ in (side_a, side_b)}
    for _ in range(arguments.repeats):
        for name, run in (side_a, side_b):
            runs[name].append(images_per_second(run, examples, arguments.epochs))
    (name_a, a), (name_b, b) = runs.items()
    best_a, best_b = max(wall for wall, _ in a), max(wall for wall, _ in b)
    median_a, median_b = (statistics.median(wall for wall, _ in x) for x in (a, b))
    cpu_a, cpu_b = (statistics.median(cpu for _, cpu in x) for x in (a, b))
    print(
        f"| {title} | {name_a}: {best_a:,.0f} | {name_b}: {best_b:,.0f} "
        f"| **{best_b / best_a:.3f}** | {median_b / median_a:.3f} "
        f"| {cpu_b / cpu_a:.3f} |",
        flush=True,
    )


def main():
    arguments = parse_arguments()
    use_two_logical_cpus()
    keras.utils.set_random_seed(0)
    (x, y), _ = datasets.load_mnist(profile="quick", verbose=False)
    data, examples = (x[..., None], y), len(x)
    gpus = tf.config.list_logical_devices("GPU")
    devices = [device.name for device in (gpus or tf.config.list_logical_devices())]
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, devices "
        f"{devices}, {examples} images, batch {arguments.batch_size}, "
        f"{arguments.epochs} epochs ({arguments.epochs - 1} timed), "
        f"{arguments.repeats} runs a side\n"
    )
    print(
        "| comparison | a (img/s) | b (img/s) | b / a, best runs "
        "| b / a, medians | b / a, per CPU-second |\n|---|---|---|---|---|---|"
    )
    comparisons = [
        (
            "trainer vs plain model.fit, arrays",
            ("model.fit", plain_fit(data, arguments)),
            ("Trainer.fit", trainer_fit(data, arguments)),
        ),
        (
            "trainer vs plain model.fit, same tf.data pipeline",
            ("model.fit", plain_fit(data, arguments, pipeline=True)),
            ("Trainer.fit", trainer_pipeline_fit(data, arguments)),
        ),
        (
            "1 vs 2 replicas, same global batch",
            ("1 replica", trainer_fit(data, arguments, devices[:1])),
            ("2 replicas", trainer_fit(data, arguments, devices[:2], replicas=2)),
        ),
    ]
    for precision in ("mixed_bfloat16", training.select_precision(list_gpus())):
        if precision != "float32" and precision not in [c[2][0] for c in comparisons]:
            comparisons.append(
                (
                    f"float32 vs {precision}",
                    ("float32", trainer_fit(data, arguments)),
                    (precision, trainer_fit(data, arguments, precision=precision)),
                )
            )
    for title, side_a, side_b in comparisons:
        compare(title, side_a, side_b, examples, arguments)


def list_gpus():
    return [d for d in training.list_devices() if d.kind == "GPU"]


if __name__ == "__main__":
    main()
