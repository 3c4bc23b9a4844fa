"""A keras-tuner search that the distributed-tuning test runs as several processes.

    KERASTUNER_TUNER_ID=chief|tuner0|... KERASTUNER_ORACLE_IP=127.0.0.1 \
    KERASTUNER_ORACLE_PORT=PORT python tests/_tuning_worker.py DIRECTORY

keras-tuner reads its role from the environment: the process whose tuner id
contains "chief" runs the oracle (a gRPC server) and trains nothing; every
other process asks it for trials, trains them through `dlkit.tuning` and
reports the scores back. All share DIRECTORY. Each worker prints
`ran trial <id>` for every trial it runs, and waits (at most
`BARRIER_SECONDS`) until `--barrier` workers are ready, so that each gets
trials.
"""

import argparse
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

BARRIER_SECONDS = 120


def make_data():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(192, 8)).astype("float32")
    y = (x[:, :4].sum(axis=1) > x[:, 4:].sum(axis=1)).astype("int32")
    return (x[:128], y[:128]), (x[128:], y[128:])


def build_model(hp):
    """A tiny classifier: its width and its log-sampled learning rate are tuned."""
    import keras

    model = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(hp.Int("units", 2, 16, default=8), activation="relu"),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    learning_rate = hp.Float("learning_rate", 1e-3, 1e-1, sampling="log")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def wait_for_workers(directory, count):
    """Marks this worker ready and waits until `count` workers are."""
    ready = pathlib.Path(directory) / "ready"
    ready.mkdir(parents=True, exist_ok=True)
    (ready / os.environ["KERASTUNER_TUNER_ID"]).touch()
    deadline = time.monotonic() + BARRIER_SECONDS
    while len(list(ready.iterdir())) < count:
        if time.monotonic() > deadline:
            sys.exit(f"only {len(list(ready.iterdir()))} of {count} workers ready")
        time.sleep(0.1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--max-trials", type=int, default=6)
    parser.add_argument("--barrier", type=int, default=2)
    arguments = parser.parse_args()
    import keras
    import keras_tuner

    from dlkit import training, tuning

    class RecordingRandomSearch(keras_tuner.RandomSearch):
        def on_trial_begin(self, trial):
            super().on_trial_begin(trial)
            print(f"ran trial {trial.trial_id}", flush=True)

    directory = pathlib.Path(arguments.directory)
    trainer = training.Trainer(seed=7, runs_dir=str(directory / "runs"))
    tuner = RecordingRandomSearch(
        tuning.HyperModel(build_model, trainer),
        objective="val_accuracy",
        max_trials=arguments.max_trials,
        seed=1,
        directory=directory,
        project_name="distributed",
    )
    if "chief" not in os.environ["KERASTUNER_TUNER_ID"]:
        wait_for_workers(directory, arguments.barrier)
    (x, y), validation_data = make_data()
    tensorboard = keras.callbacks.TensorBoard(str(directory / "logs"))
    tuner.search(
        x, y, validation_data=validation_data, callbacks=[tensorboard], verbose=0
    )
    print("search done", flush=True)


if __name__ == "__main__":
    main()
