"""Benchmark: what `dlkit.training.Trainer` costs on top of `model.fit`.

    python benchmarks/bench_trainer.py [--epochs 5] [--repeats 6]
        [--images 16000] [--rows trainer,arrays,replicas,precision]

Trains the keras-io style CNN (`dlkit.models.cnn`) on the quick MNIST split,
its 4,000 images repeated to `--images` an epoch, so that an epoch takes
several seconds and the benchmark measures training rather than start-up.
Prints the cost of one backup (the trainer saves one at every epoch end),
then one row per comparison of a against b, measured in this one run:

- trainer: `model.fit` against `Trainer.fit` (TensorBoard and backups on) on
  the same model and the same `tf.data` pipeline (`datasets.make_dataset`);
  the trainer should cost nothing;
- arrays: the same, fed arrays (each side batching them its own way);
- replicas: one replica against two (`MirroredStrategy` over two logical
  CPUs, or two GPUs), at the same global batch;
- precision: `float32` against `mixed_bfloat16` (and, on a GPU, against the
  policy the trainer picks there).

Throughput is measured for every epoch after the first (which traces the
functions), from its start to the next one's or to the return of `fit`, so
every per-epoch cost (backups, TensorBoard) is inside. The sides alternate
(a b, b a, a b, ...), `--repeats` runs each. Columns: each side's median
epoch in images per second, then b / a of the best epochs, of the median
epochs (the trainer's target: 0.97 or more) and of the median images per
CPU-second of this process.
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
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dlkit import datasets, env, models, training  # noqa: E402

LOSS = "sparse_categorical_crossentropy"


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--images", type=int, default=16000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rows", default="trainer,arrays,replicas,precision")
    return parser.parse_args()


class Stopwatch(keras.callbacks.Callback):
    """Wall-clock and CPU seconds of each epoch after the first.

    An epoch runs from its start to the next epoch's start, the last one to
    `stop()` right after `fit` returns, so that a trainer's epoch-end and
    end-of-fit work (backups, TensorBoard) is inside.
    """

    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        if epoch > 0:
            self.times.append((time.perf_counter(), time.process_time()))

    def stop(self):
        self.times.append((time.perf_counter(), time.process_time()))
        pairs = zip(self.times[:-1], self.times[1:], strict=True)
        return [(end[0] - start[0], end[1] - start[1]) for start, end in pairs]


def build():
    return models.cnn((28, 28, 1), 10, rescale=1 / 255)


def model_fit(make_data, arguments):
    def run(stopwatch):
        model = build()
        model.compile("adam", LOSS, metrics=["accuracy"])
        data, batch_size = make_data()
        x, y = data if batch_size else (data, None)
        model.fit(
            x,
            y,
            batch_size=batch_size,
            epochs=arguments.epochs,
            callbacks=[stopwatch],
            verbose=0,
        )
        return stopwatch.stop()

    return run


def trainer_fit(make_data, arguments, precision="float32", **options):
    def run(stopwatch):
        with tempfile.TemporaryDirectory() as runs_dir:
            trainer = training.Trainer(
                precision=precision,
                loss=LOSS,
                metrics=["accuracy"],
                runs_dir=runs_dir,
                **options,
            )
            data, batch_size = make_data()
            with contextlib.redirect_stdout(io.StringIO()):  # its start-up line
                trainer.fit(
                    build,
                    data,
                    batch_size=batch_size,
                    epochs=arguments.epochs,
                    run_name="bench",
                    callbacks=[stopwatch],
                    verbose=0,
                )
            return stopwatch.stop()

    return run


def compare(title, side_a, side_b, arguments):
    """Runs the sides alternately; prints a table row of per-epoch throughput."""
    epochs = {side_a[0]: [], side_b[0]: []}  # (images/s, images/CPU-s) an epoch
    for repeat in range(arguments.repeats):
        for name, run in (side_a, side_b) if repeat % 2 == 0 else (side_b, side_a):
            for wall, cpu in run(Stopwatch()):
                epochs[name].append((arguments.images / wall, arguments.images / cpu))
    (name_a, a), (name_b, b) = epochs.items()
    best = [max(wall for wall, _ in side) for side in (a, b)]
    median = [statistics.median(wall for wall, _ in side) for side in (a, b)]
    cpu = [statistics.median(cpu for _, cpu in side) for side in (a, b)]
    print(
        f"| {title} | {name_a}: {median[0]:,.0f} | {name_b}: {median[1]:,.0f} "
        f"| {best[1] / best[0]:.3f} | **{median[1] / median[0]:.3f}** "
        f"| {cpu[1] / cpu[0]:.3f} |",
        flush=True,
    )


def backup_milliseconds(folder, saves=20):
    """Median wall-clock time of one backup save of the CNN (after the first)."""
    model = build()
    model.compile("adam", LOSS)
    model.optimizer.build(model.trainable_variables)
    backup = training._Backup(folder, model, tf.distribute.get_strategy())
    backup.restore()
    times = []
    for epoch in range(saves + 1):
        start = time.perf_counter()
        backup.on_epoch_end(epoch)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[1:])


def main():
    arguments = parse_arguments()
    if not tf.config.list_physical_devices("GPU"):  # two logical CPUs, first
        cpu = tf.config.list_physical_devices("CPU")[0]
        config = tf.config.LogicalDeviceConfiguration()
        tf.config.set_logical_device_configuration(cpu, [config, config])
    keras.utils.set_random_seed(0)
    (x, y), _ = datasets.load_mnist(profile="quick", verbose=False)
    repeat = -(-arguments.images // len(x))
    x, y = (np.concatenate([a] * repeat)[: arguments.images] for a in (x[..., None], y))
    batch = arguments.batch_size
    gpus = tf.config.list_logical_devices("GPU")
    devices = [device.name for device in (gpus or tf.config.list_logical_devices())]
    print(
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}, devices {devices}, "
        f"{arguments.images} images an epoch, batch {batch}, {arguments.epochs} "
        f"epochs ({arguments.epochs - 1} timed), {arguments.repeats} runs a side\n"
    )
    with tempfile.TemporaryDirectory() as folder:
        print(f"One backup save of the CNN: {backup_milliseconds(folder):.1f} ms\n")
    print(
        "| comparison | a, median img/s | b, median img/s | b / a, best epochs "
        "| b / a, medians | b / a, per CPU-second |\n|---|---|---|---|---|---|"
    )

    def pipeline():  # a dataset of batches, and no batch_size
        return datasets.make_dataset(x, y, batch_size=batch), None

    def arrays():
        return (x, y), batch

    rows = {
        "trainer": (
            "trainer vs model.fit, same tf.data pipeline",
            ("model.fit", model_fit(pipeline, arguments)),
            ("Trainer.fit", trainer_fit(pipeline, arguments)),
        ),
        "arrays": (
            "trainer vs model.fit, arrays",
            ("model.fit", model_fit(arrays, arguments)),
            ("Trainer.fit", trainer_fit(arrays, arguments)),
        ),
        "replicas": (
            "1 vs 2 replicas, same global batch",
            ("1 replica", trainer_fit(pipeline, arguments, strategy=devices[:1])),
            ("2 replicas", trainer_fit(pipeline, arguments, strategy=devices[:2])),
        ),
    }
    gpu_policy = training._select_precision(env.list_devices())
    for policy in {"mixed_bfloat16", gpu_policy} - {"float32"}:
        rows[f"precision {policy}"] = (
            f"float32 vs {policy}",
            ("float32", trainer_fit(pipeline, arguments)),
            (policy, trainer_fit(pipeline, arguments, precision=policy)),
        )
    for key, row in rows.items():
        if key.split()[0] in arguments.rows.split(","):
            compare(*row, arguments)


if __name__ == "__main__":
    main()
