import inspect
import json
import os
import pathlib
import socket
import subprocess
import sys

import _tuning_worker as worker
import keras
import keras_tuner
import numpy as np
import pandas as pd
import psutil
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

from dlkit import models, training, tuning

WORKER = pathlib.Path(__file__).with_name("_tuning_worker.py")

FIXED_ARGUMENTS = {
    models.logistic_regression: {"input_shape": (4,)},
    models.softmax_regression: {"input_shape": (4,), "num_classes": 3},
    models.mlp: {"input_shape": (28, 28), "num_classes": 10},
    models.cnn: {"input_shape": (28, 28), "num_classes": 10},
    models.resnet: {"input_shape": (16, 16), "num_classes": 3},
    models.text_classifier: {"vocabulary_size": 50},
    models.bag_of_words_classifier: {"vocabulary_size": 50},
    models.sequence_regressor: {"window": 8},
    models.char_language_model: {"vocabulary_size": 20},
}

# Filled by `Record` callbacks: keras-tuner deep-copies callbacks for each trial.
RECORDS = []


class Record(keras.callbacks.Callback):
    """Records how each trial's model is trained."""

    def on_train_begin(self, logs=None):
        model = self.model
        RECORDS.append(
            {
                "strategy": type(model.distribute_strategy).__name__,
                "policy": model.layers[1].dtype_policy.name,
                "learning_rate": float(model.optimizer.learning_rate.numpy()),
                "weights": model.get_weights(),
                "epochs": 0,
            }
        )

    def on_epoch_end(self, epoch, logs=None):
        RECORDS[-1]["epochs"] += 1


@pytest.fixture(autouse=True)
def clear_records():
    RECORDS.clear()


def make_trainer(tmp_path, **options):
    return training.Trainer(
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        seed=7,
        runs_dir=str(tmp_path / "runs"),
        **options,
    )


def tiny_hypermodel(tmp_path, **options):
    return tuning.HyperModel(
        worker.tiny_mlp, make_trainer(tmp_path, **options), space=worker.tiny_mlp_space
    )


def search(tuner, epochs=2, **options):
    (x, y), validation = worker.make_data()
    tuner.search(x, y, validation_data=validation, epochs=epochs, verbose=0, **options)


def log_dir_of(tuner, trial_id, execution=0):
    run = pathlib.Path(tuner.get_trial_dir(trial_id)) / f"execution{execution}"
    (log_dir,) = [path for path in run.iterdir() if path.name != "backup"]
    return log_dir


def logged_hparams(log_dir):
    events = EventAccumulator(str(log_dir))
    events.Reload()
    content = events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    info = hparams_metadata.parse_session_start_info_plugin_data(content)
    return {
        name: getattr(value, value.WhichOneof("kind"))
        for name, value in info.hparams.items()
    }


def epoch_scalars(log_dir, group, tag):
    events = EventAccumulator(str(log_dir / group))
    events.Reload()
    return [float(tf.make_ndarray(event.tensor_proto)) for event in events.Tensors(tag)]


# Search spaces and the hypermodel (no training).


@pytest.mark.parametrize("builder", list(FIXED_ARGUMENTS), ids=lambda b: b.__name__)
def test_declared_space_defaults_are_the_builder_defaults(builder, tmp_path):
    hypermodel = tuning.HyperModel(
        builder, make_trainer(tmp_path), **FIXED_ARGUMENTS[builder]
    )
    hp = keras_tuner.HyperParameters()
    tuned, training_values = hypermodel.arguments(hp)
    defaults = inspect.signature(builder).parameters
    for name, value in tuned.items():
        assert value == defaults[name].default, name
    assert training_values == {"learning_rate": 1e-3}  # Adam's default
    assert isinstance(hypermodel.build(hp), keras.Model)
    assert hypermodel.name == builder.__name__


def test_every_dlkit_builder_that_trains_alone_has_a_space():
    gan_parts = {models.dcgan_generator, models.dcgan_discriminator}
    builders = {
        function
        for name, function in inspect.getmembers(models, inspect.isfunction)
        if function.__module__ == models.__name__ and not name.startswith("_")
    }
    assert builders - gan_parts == set(FIXED_ARGUMENTS)
    assert set(FIXED_ARGUMENTS) <= set(tuning.SEARCH_SPACES)


def test_a_builder_can_be_named(tmp_path):
    hypermodel = tuning.HyperModel(
        "mlp", make_trainer(tmp_path), input_shape=(4,), num_classes=2
    )
    assert hypermodel.builder is models.mlp
    assert hypermodel.space is tuning.mlp_space


def test_learners_declare_spaces_for_their_own_builders(tmp_path):
    def two_layer(input_shape, units=16):
        return keras.Sequential(
            [keras.Input(input_shape), keras.layers.Dense(units), keras.layers.Dense(1)]
        )

    @tuning.search_space(two_layer)
    def two_layer_space(hp):
        return {"units": hp.Int("units", 8, 64, step=8, default=16)}

    hypermodel = tuning.HyperModel(two_layer, make_trainer(tmp_path), input_shape=(3,))
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    assert hp.values == {"units": 16}
    assert model.layers[0].units == 16
    assert tuning.SEARCH_SPACES[two_layer] is two_layer_space


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"builder": "no_such_builder"}, "name of a dlkit.models builder"),
        ({"builder": 3}, "Expected a function"),
        ({"builder": models.dcgan_generator}, "No search space declared"),
        ({"space": "depth"}, "Expected a function"),
        ({"trainer": "adam"}, "Expected a dlkit.training.Trainer"),
        ({"widht": 64}, "Invalid fixed argument(s) ['widht']"),
    ],
)
def test_invalid_hypermodel_arguments(arguments, message, tmp_path):
    arguments = {"builder": models.mlp, "trainer": make_trainer(tmp_path), **arguments}
    with pytest.raises(ValueError) as error:
        tuning.HyperModel(**arguments)
    assert message in str(error.value)


@pytest.mark.parametrize(
    "space, message",
    [
        (lambda hp: [hp.Int("depth", 1, 3)], "Expected a dict of the builder"),
        (lambda hp: {"deepness": hp.Int("deepness", 1, 3)}, "['deepness']"),
        (lambda hp: {"num_classes": hp.Int("num_classes", 2, 3)}, "both fixed"),
    ],
)
def test_invalid_spaces_stop_a_search(space, message, tmp_path):
    hypermodel = tuning.HyperModel(
        models.mlp, make_trainer(tmp_path), space=space, input_shape=(8,), num_classes=2
    )
    with pytest.raises(ValueError) as error:
        hypermodel.build(keras_tuner.HyperParameters())
    assert message in str(error.value)
    assert isinstance(error.value, keras_tuner.errors.FatalError)


def test_fit_outside_a_search_points_to_train(tmp_path):
    hypermodel = tiny_hypermodel(tmp_path)
    hp = keras_tuner.HyperParameters()
    with pytest.raises(ValueError, match="hypermodel.train"):
        hypermodel.fit(hp, hypermodel.build(hp), *worker.make_data()[0])


def test_plot_trials_needs_a_results_table():
    with pytest.raises(ValueError, match="results_table"):
        tuning.plot_trials(pd.DataFrame({"status": ["COMPLETED"]}))


def test_results_table_needs_a_tuner():
    with pytest.raises(ValueError, match="keras-tuner tuner"):
        tuning.results_table({"trial": 1})


# Searches (tiny models, real training).


@pytest.mark.slow
def test_random_search_trains_every_trial_through_the_trainer(tmp_path):
    hypermodel = tiny_hypermodel(
        tmp_path, strategy=["/cpu:0"], precision="mixed_float16"
    )
    tuner = keras_tuner.RandomSearch(
        hypermodel,
        objective="val_accuracy",
        max_trials=2,
        seed=3,
        directory=str(tmp_path),
        project_name="random",
    )
    search(tuner, callbacks=[Record()])

    table = tuning.results_table(tuner)
    assert list(table.columns) == ["units", "learning_rate", "score", "status"]
    assert sorted(table.index) == ["0", "1"]
    assert (table.status == "COMPLETED").all()
    assert table.score.is_monotonic_decreasing  # best first
    assert table.attrs == {
        "objective": "val_accuracy",
        "direction": "max",
        "log_scale": ["learning_rate"],
    }
    figure = tuning.plot_trials(table, reference=0.5)
    assert [axis.get_xscale() for axis in figure.axes] == ["linear", "log"]
    assert figure.axes[0].get_ylabel() == "val_accuracy (best epoch)"
    assert [record["strategy"] for record in RECORDS] == ["MirroredStrategy"] * 2
    assert [record["policy"] for record in RECORDS] == ["mixed_float16"] * 2
    for record, trial_id in zip(RECORDS, ["0", "1"], strict=True):
        values = tuner.oracle.get_trial(trial_id).hyperparameters.values
        assert record["learning_rate"] == pytest.approx(values["learning_rate"])
        log_dir = log_dir_of(tuner, trial_id)
        assert logged_hparams(log_dir) == pytest.approx(values)
        validation = epoch_scalars(log_dir, "validation", "epoch_accuracy")
        assert len(validation) == 2
        assert max(validation) == pytest.approx(table.score[trial_id])


@pytest.mark.slow
def test_hyperband_continues_trials_from_their_best_epoch(tmp_path):
    tuner = keras_tuner.Hyperband(
        tiny_hypermodel(tmp_path),
        objective="val_loss",
        max_epochs=2,
        factor=2,
        seed=3,
        directory=str(tmp_path),
        project_name="hyperband",
    )
    search(tuner, callbacks=[Record()])

    table = tuning.results_table(tuner).sort_index()
    assert list(table.columns)[-4:] == ["epochs", "initial_epoch", "score", "status"]
    assert list(table.epochs) == [1, 1, 2, 2, 2]
    assert list(table.initial_epoch) == [0, 0, 1, 0, 0]
    assert [record["epochs"] for record in RECORDS] == [1, 1, 1, 2, 2]
    continued = tuner.oracle.get_trial(table.index[2])
    resumed_id = continued.hyperparameters.values["tuner/trial_id"]
    checkpoint = tuner.load_model(tuner.oracle.get_trial(resumed_id))
    for start, saved in zip(
        RECORDS[2]["weights"], checkpoint.get_weights(), strict=True
    ):
        np.testing.assert_array_equal(start, saved)


@pytest.mark.slow
def test_bayesian_optimization_trains_through_the_trainer(tmp_path):
    tuner = keras_tuner.BayesianOptimization(
        tiny_hypermodel(tmp_path),
        objective="val_accuracy",
        max_trials=3,
        num_initial_points=2,
        seed=3,
        directory=str(tmp_path),
        project_name="bayesian",
    )
    search(tuner, epochs=1, batch_size=64)
    table = tuning.results_table(tuner)
    assert len(table) == 3 and (table.status == "COMPLETED").all()


def test_unsupported_search_arguments_stop_the_search_at_once(tmp_path):
    tuner = keras_tuner.RandomSearch(
        tiny_hypermodel(tmp_path),
        objective="val_accuracy",
        max_trials=3,
        directory=str(tmp_path),
        project_name="random",
    )
    with pytest.raises(ValueError, match=r"Unsupported argument\(s\).*\['shuffle'\]"):
        search(tuner, epochs=1, shuffle=False)
    assert len(tuner.oracle.trials) == 1  # the first trial failed; no retries


@pytest.mark.slow
def test_train_one_configuration_with_its_learning_rate(tmp_path):
    hypermodel = tiny_hypermodel(tmp_path)
    hp = keras_tuner.HyperParameters()
    hp.Fixed("units", 4)
    hp.Fixed("learning_rate", 0.05)
    train, validation = worker.make_data()
    model, history = hypermodel.train(
        hp,
        train,
        validation,
        epochs=2,
        run_name="best",
        callbacks=[Record()],
        verbose=0,
    )
    assert model.layers[0].units == 4
    assert RECORDS[0]["learning_rate"] == pytest.approx(0.05)
    assert len(history.history["val_accuracy"]) == 2
    assert [p.name for p in (tmp_path / "runs" / "best").iterdir()]  # trainer's logs
    assert hypermodel.trainer.optimizer == "adam"  # the trainer itself is unchanged


# Distributed tuning: a chief and two workers on 127.0.0.1.


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_is_free(port):
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def start(tuner_id, directory, port, log):
    environment = dict(
        os.environ,
        KERASTUNER_TUNER_ID=tuner_id,
        KERASTUNER_ORACLE_IP="127.0.0.1",
        KERASTUNER_ORACLE_PORT=str(port),
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    command = [sys.executable, str(WORKER), str(directory), "--max-trials", "6"]
    return subprocess.Popen(
        command + ["--barrier", "2"],
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.slow
def test_distributed_tuning_shares_the_trials_between_workers(tmp_path):
    port = free_port()
    logs = {name: tmp_path / f"{name}.log" for name in ("chief", "tuner0", "tuner1")}
    processes = {}
    try:
        for name, path in logs.items():
            with open(path, "w") as log:
                processes[name] = start(name, tmp_path, port, log)
        for name in ("tuner0", "tuner1", "chief"):  # the chief ends last
            processes[name].wait(timeout=300)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    output = {name: path.read_text() for name, path in logs.items()}
    for name, process in processes.items():
        assert process.returncode == 0, f"{name}:\n{output[name][-3000:]}"

    ran = {
        name: {
            line.split()[-1]
            for line in output[name].splitlines()
            if "ran trial" in line
        }
        for name in ("tuner0", "tuner1")
    }
    assert ran["tuner0"] and ran["tuner1"], ran  # both workers took trials
    assert not ran["tuner0"] & ran["tuner1"], ran  # and never the same one
    project = tmp_path / "distributed"
    trials = [json.loads(p.read_text()) for p in project.glob("trial_*/trial.json")]
    assert {trial["trial_id"] for trial in trials} == ran["tuner0"] | ran["tuner1"]
    assert len(trials) == 6
    assert all(trial["status"] == "COMPLETED" for trial in trials)
    assert all(trial["score"] is not None for trial in trials)
    for trial in trials:  # trained and logged by the dlkit trainer
        run = project / f"trial_{trial['trial_id']}" / "execution0"
        assert [path for path in run.iterdir() if (path / "validation").is_dir()]
    assert "ran trial" not in output["chief"]  # the chief only runs the oracle

    assert port_is_free(port)
    alive = {process.pid for process in processes.values()} & {
        child.pid for child in psutil.Process().children(recursive=True)
    }
    assert not alive
