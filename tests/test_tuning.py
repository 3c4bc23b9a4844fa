import json
import os
import pathlib
import subprocess
import sys

import _tuning_worker as worker
import keras
import keras_tuner
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

from dlkit import training, tuning

WORKER = pathlib.Path(__file__).with_name("_tuning_worker.py")

# Filled by `Record` callbacks: keras-tuner deep-copies callbacks for each trial.
RECORDS = []


class Record(keras.callbacks.Callback):
    """Records how each trial's model is trained."""

    def on_train_begin(self, logs=None):
        RECORDS.append(
            {
                "strategy": type(self.model.distribute_strategy).__name__,
                "policy": self.model.layers[0].dtype_policy.name,
                "learning_rate": float(self.model.optimizer.learning_rate.numpy()),
                "weights": self.model.get_weights(),
                "epochs": 0,
            }
        )

    def on_epoch_end(self, epoch, logs=None):
        RECORDS[-1]["epochs"] += 1


@pytest.fixture(autouse=True)
def clear_records():
    RECORDS.clear()


def search(tuner, log_dir, **options):
    (x, y), validation_data = worker.make_data()
    callbacks = [keras.callbacks.TensorBoard(str(log_dir)), Record()]
    tuner.search(
        x, y, validation_data=validation_data, callbacks=callbacks, verbose=0, **options
    )


def logged_hparams(log_dir):
    """The hyperparameters of a trial, as TensorBoard's HParams view reads them."""
    events = EventAccumulator(str(log_dir))
    events.Reload()
    content = events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    info = hparams_metadata.parse_session_start_info_plugin_data(content)
    return {name: value.number_value for name, value in info.hparams.items()}


def epoch_scalars(log_dir, tag):
    events = EventAccumulator(str(log_dir))
    events.Reload()
    return [float(tf.make_ndarray(event.tensor_proto)) for event in events.Tensors(tag)]


@pytest.mark.slow
def test_random_search_trains_through_the_trainer_and_keras_tuner_logs(tmp_path):
    trainer = training.Trainer(
        ["/cpu:0"], "mixed_float16", seed=7, runs_dir=str(tmp_path / "runs")
    )
    tuner = keras_tuner.RandomSearch(
        tuning.HyperModel(worker.build_model, trainer),
        objective="val_accuracy",
        max_trials=2,
        seed=3,
        directory=str(tmp_path),
        project_name="random",
    )
    search(tuner, tmp_path / "logs", epochs=1)

    table = tuning.results_table(tuner)
    assert list(table.columns) == ["units", "learning_rate", "score", "status"]
    assert sorted(table.index) == ["0", "1"] and (table.status == "COMPLETED").all()
    assert table.score.is_monotonic_decreasing  # best first
    assert table.attrs == {
        "objective": "val_accuracy",
        "direction": "max",
        "log_scale": ["learning_rate"],
    }
    assert [r["strategy"] for r in RECORDS] == ["MirroredStrategy"] * 2
    assert [r["policy"] for r in RECORDS] == ["mixed_float16"] * 2
    for record, trial_id in zip(RECORDS, ["0", "1"], strict=True):
        values = tuner.oracle.get_trial(trial_id).hyperparameters.values
        assert record["learning_rate"] == pytest.approx(values["learning_rate"])
        log_dir = tmp_path / "logs" / trial_id / "execution0"  # keras-tuner's folder
        assert logged_hparams(log_dir) == pytest.approx(values)
        validation = epoch_scalars(log_dir / "validation", "epoch_accuracy")
        assert validation == pytest.approx([table.score[trial_id]])


@pytest.mark.slow
def test_hyperband_continues_trials_from_their_saved_weights(tmp_path):
    trainer = training.Trainer(seed=7, runs_dir=str(tmp_path / "runs"))
    tuner = keras_tuner.Hyperband(
        tuning.HyperModel(worker.build_model, trainer),
        objective="val_loss",
        max_epochs=2,
        factor=2,
        seed=3,
        directory=str(tmp_path),
        project_name="hyperband",
    )
    search(tuner, tmp_path / "logs")

    table = tuning.results_table(tuner).sort_index()
    assert list(table.columns)[-4:] == ["epochs", "initial_epoch", "score", "status"]
    assert list(table.epochs) == [1, 1, 2, 2, 2]
    assert list(table.initial_epoch) == [0, 0, 1, 0, 0]
    assert [record["epochs"] for record in RECORDS] == [1, 1, 1, 2, 2]
    continued = tuner.oracle.get_trial(table.index[2])
    resumed_id = continued.hyperparameters.values["tuner/trial_id"]
    saved = tuner.load_model(tuner.oracle.get_trial(resumed_id)).get_weights()
    for start, weights in zip(RECORDS[2]["weights"], saved, strict=True):
        np.testing.assert_array_equal(start, weights)


def test_fit_outside_a_search_points_to_the_trainer(tmp_path):
    hypermodel = tuning.HyperModel(worker.build_model, training.Trainer())
    hp = keras_tuner.HyperParameters()
    with pytest.raises(ValueError, match=r"trainer.fit\(lambda: build_model\(hp\)"):
        hypermodel.fit(hp, hypermodel.build(hp), *worker.make_data()[0])


# Distributed tuning: a chief and two workers on 127.0.0.1.


@pytest.mark.slow
def test_distributed_tuning_shares_the_trials_between_workers(tmp_path, free_port):
    environment = dict(
        os.environ,
        KERASTUNER_ORACLE_IP="127.0.0.1",
        KERASTUNER_ORACLE_PORT=str(free_port()),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    processes = {}
    try:
        for name in ("chief", "tuner0", "tuner1"):
            with open(tmp_path / f"{name}.log", "w") as log:
                processes[name] = subprocess.Popen(
                    [sys.executable, str(WORKER), str(tmp_path), "--max-trials", "6"],
                    env=dict(environment, KERASTUNER_TUNER_ID=name),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        for name in ("tuner0", "tuner1", "chief"):  # the chief ends last
            processes[name].wait(timeout=300)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    output = {name: (tmp_path / f"{name}.log").read_text() for name in processes}
    for name, process in processes.items():
        assert process.returncode == 0, f"{name}:\n{output[name][-3000:]}"

    ran = {
        name: {line.split()[-1] for line in text.splitlines() if "ran trial" in line}
        for name, text in output.items()
    }
    assert ran["tuner0"] and ran["tuner1"], ran  # both workers took trials
    assert not ran["tuner0"] & ran["tuner1"], ran  # and never the same one
    assert not ran["chief"]  # the chief only runs the oracle
    trials = [
        json.loads(path.read_text())
        for path in (tmp_path / "distributed").glob("trial_*/trial.json")
    ]
    assert {trial["trial_id"] for trial in trials} == ran["tuner0"] | ran["tuner1"]
    assert len(trials) == 6
    for trial in trials:  # scored, and logged by keras-tuner with its hyperparameters
        assert trial["status"] == "COMPLETED" and trial["score"] is not None
        log_dir = tmp_path / "logs" / trial["trial_id"] / "execution0"
        assert logged_hparams(log_dir) == pytest.approx(
            trial["hyperparameters"]["values"]
        )
