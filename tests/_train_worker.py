"""A training script the tests run as a subprocess (to kill it, or to give it
its own devices or its own `TF_CONFIG`).

    python tests/_train_worker.py OUTPUT.npz --runs-dir DIR [options]

Trains a tiny model on fixed random data with `dlkit.training` (TensorFlow's
op determinism on) and saves the final weights to OUTPUT.npz. `--pause-at
EPOCH:BATCH` makes the first run that reaches that batch write
`paused-EPOCH-BATCH` next to the output and wait there to be killed; a later
run of the same command finds the file and goes on.
"""

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

PAUSE_LIMIT_SECONDS = 600


def parse_arguments():
    parser = argparse.ArgumentParser()
    parser.add_argument("output")
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--run-name", default="worker")
    parser.add_argument("--model", choices=("plain", "stateful"), default="stateful")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)  # the global batch
    parser.add_argument("--examples", type=int, default=512)
    parser.add_argument("--pause-at", default="")
    parser.add_argument("--strategy", default="auto")
    parser.add_argument("--logical-cpus", type=int, default=0)
    return parser.parse_args()


def make_data(examples):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(examples + 128, 8)).astype("float32")
    y = (x[:, :4].sum(axis=1) > x[:, 4:].sum(axis=1)).astype("int32")
    return (x[:examples], y[:examples]), (x[examples:], y[examples:])


def build_model(kind):
    import keras
    from keras import layers

    def build():
        hidden = [layers.Dense(16, activation="relu")]
        if kind == "stateful":  # batch-norm statistics and dropout seeds to restore
            hidden += [layers.BatchNormalization(), layers.Dropout(0.3)]
        return keras.Sequential(
            [keras.Input((8,)), *hidden, layers.Dense(2, activation="softmax")]
        )

    return build


def pause_callback(pause_at, folder, trainer):
    import keras

    points = {tuple(map(int, item.split(":"))) for item in pause_at.split(",") if item}

    class Pause(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            print(f"log_dir {trainer.log_dir}", flush=True)  # known from the start

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            marker = folder / f"paused-{self.epoch}-{batch}"
            if (self.epoch, batch) in points and not marker.exists():
                marker.write_text("waiting for SIGKILL\n")
                print(f"paused at epoch {self.epoch} batch {batch}", flush=True)
                time.sleep(PAUSE_LIMIT_SECONDS)
                sys.exit("pause limit reached without being killed")

    return Pause()


def main():
    arguments = parse_arguments()
    import tensorflow as tf

    if arguments.logical_cpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        configuration = [tf.config.LogicalDeviceConfiguration()]
        tf.config.set_logical_device_configuration(
            cpu, configuration * arguments.logical_cpus
        )
    import numpy as np

    from dlkit import training

    tf.config.experimental.enable_op_determinism()

    output = pathlib.Path(arguments.output)
    strategy = arguments.strategy
    if strategy != "auto":
        strategy = strategy.split(",")
    optimizer = "adam" if arguments.model == "stateful" else "sgd"
    trainer = training.Trainer(
        strategy=strategy,
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        seed=7,
        runs_dir=arguments.runs_dir,
    )
    train_data, validation_data = make_data(arguments.examples)
    model, history = trainer.fit(
        build_model(arguments.model),
        train_data,
        validation_data,
        epochs=arguments.epochs,
        batch_size=arguments.batch_size,
        run_name=arguments.run_name,
        callbacks=[pause_callback(arguments.pause_at, output.parent, trainer)],
        verbose=0,
    )
    print("history", {name: values for name, values in history.history.items()})
    np.savez(output, *model.get_weights())
    print("done", flush=True)


if __name__ == "__main__":
    main()
