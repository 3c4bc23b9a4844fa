"""A keras-tuner search that the distributed-tuning test runs as several processes.

    KERASTUNER_TUNER_ID=chief|tuner0|... KERASTUNER_ORACLE_IP=127.0.0.1 \
    KERASTUNER_ORACLE_PORT=PORT python tests/_tuning_worker.py DIRECTORY

keras-tuner reads its role from the environment: the process whose tuner id
contains "chief" runs the oracle (a gRPC server) and trains nothing; every
other process asks it for trials, trains them through `dlkit.tuning` and
reports the scores back. All share DIRECTORY. Each worker prints
`ran trial <id>` for every trial it runs. With `--barrier N`, workers wait
(at most `BARRIER_SECONDS`) until N workers are ready before searching, so
that each of them gets trials.
"""

import argparse
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

BARRIER_SECONDS = 120


def parse_arguments():
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--max-trials", type=int, default=6)
    parser.add_argument("--barrier", type=int, default=0)
    return parser.parse_args()


def make_data():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(384, 8)).astype("float32")
    y = (x[:, :4].sum(axis=1) > x[:, 4:].sum(axis=1)).astype("int32")
    return (x[:256], y[:256]), (x[256:], y[256:])


def tiny_mlp(units=8):
    import keras

    return keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(units, activation="relu"),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )


def tiny_mlp_space(hp):
    return {
        "units": hp.Int("units", 2, 64, default=8),
        "learning_rate": hp.Float("learning_rate", 1e-3, 1e-1, sampling="log"),
    }


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
    arguments = parse_arguments()
    import keras_tuner

    from dlkit import training, tuning

    class RecordingRandomSearch(keras_tuner.RandomSearch):
        def on_trial_begin(self, trial):
            super().on_trial_begin(trial)
            print(f"ran trial {trial.trial_id}", flush=True)

    trainer = training.Trainer(
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        seed=7,
        runs_dir=arguments.directory,
    )
    hypermodel = tuning.HyperModel(tiny_mlp, trainer, space=tiny_mlp_space)
    tuner = RecordingRandomSearch(
        hypermodel,
        objective="val_accuracy",
        max_trials=arguments.max_trials,
        seed=1,
        directory=arguments.directory,
        project_name="distributed",
    )
    chief = "chief" in os.environ["KERASTUNER_TUNER_ID"]
    if arguments.barrier and not chief:
        wait_for_workers(arguments.directory, arguments.barrier)
    train_data, validation_data = make_data()
    tuner.search(*train_data, validation_data=validation_data, epochs=2, verbose=0)
    print("search done", flush=True)


if __name__ == "__main__":
    main()
