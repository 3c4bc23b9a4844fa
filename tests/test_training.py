"""Tests for dlkit.training: real training on tiny data, on this machine's CPU.

Distributed and fault-tolerance tests run `tests/_train_worker.py` in
subprocesses: to give it two logical CPUs, its own `TF_CONFIG`, or to kill it
with SIGKILL. Their timeouts only guard against hangs; no test measures speed.
"""

import ast
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlkit import models, training
from dlkit.env import DeviceInfo

WORKER = pathlib.Path(__file__).with_name("_train_worker.py")
HANG_GUARD_SECONDS = 600  # generous: only stops a hung subprocess, never a slow one

CPU = DeviceInfo("CPU", "CPU:0")
TPU = DeviceInfo("TPU", "TPU:0")


def gpu(major, minor, index=0):
    return DeviceInfo("GPU", f"GPU:{index}", compute_capability=(major, minor))


def tiny_trainer(tmp_path, **options):
    options.setdefault("loss", "sparse_categorical_crossentropy")
    return training.Trainer(runs_dir=tmp_path / "runs", seed=3, **options)


def test_training_imports_no_dlkit_module_but_env():
    tree = ast.parse(pathlib.Path(training.__file__).read_text())
    modules = {
        alias.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import)
        for alias in n.names
    }
    modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {name for name in modules if name.startswith("dlkit")} == {"dlkit.env"}
    assert training.__all__ == ["Trainer"]


# Strategy and precision, chosen for described hardware.


@pytest.mark.parametrize(
    "devices, expected",
    [
        ([CPU], "float32"),
        ([CPU, gpu(6, 0)], "float32"),
        ([CPU, gpu(7, 0)], "mixed_float16"),
        ([CPU, gpu(9, 0)], "mixed_float16"),
        ([CPU, gpu(8, 0), gpu(6, 1, index=1)], "float32"),
        ([CPU, DeviceInfo("GPU", "GPU:0")], "float32"),
        ([CPU, TPU], "mixed_bfloat16"),
    ],
)
def test_select_precision(devices, expected):
    assert training._select_precision(devices) == expected


@pytest.mark.parametrize(
    "devices, cluster, expected",
    [
        ([CPU], None, "default"),
        ([CPU, gpu(8, 0)], None, "default"),
        ([CPU, gpu(8, 0), gpu(8, 0, index=1)], None, "mirrored"),
        ([CPU, TPU], None, "tpu"),
        ([CPU], {"worker": ["a:1", "b:2"]}, "multi_worker"),
        ([CPU, gpu(9, 0)], {"chief": ["a:1"], "worker": ["b:2"]}, "multi_worker"),
        ([CPU], {"worker": ["a:1"]}, "default"),
    ],
)
def test_select_strategy(devices, cluster, expected):
    assert training._select_strategy(devices, cluster) == expected


def test_this_cpu_machine_gets_default_strategy_and_float32(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("TPU_NAME", raising=False)
    trainer = training.Trainer(loss="mse")
    assert trainer.strategy is tf.distribute.get_strategy()
    assert trainer.precision == "float32"


def test_explicit_precision_and_strategy_are_kept():
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    policy = keras.DTypePolicy("mixed_bfloat16")
    trainer = training.Trainer(strategy=strategy, precision=policy)
    assert trainer.strategy is strategy
    assert trainer.precision == "mixed_bfloat16"


# Argument errors: Keras-style ValueErrors for what the trainer owns.


@pytest.mark.parametrize(
    "options, message",
    [
        ({"precision": "fp8"}, "Received: precision='fp8'. Expected one of 'auto'"),
        ({"strategy": "gpu"}, "Received: strategy='gpu'. Expected 'auto', a list"),
        ({"tensorboard": "on"}, "Received: tensorboard='on'. Expected True, False"),
    ],
)
def test_trainer_rejects_invalid_arguments(options, message):
    with pytest.raises(ValueError, match="Invalid value for argument") as error:
        training.Trainer(**options)
    assert message in str(error.value)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"epochs": 0}, "Received: epochs=0. Expected an integer >= 1"),
        ({"batch_size": 2.5}, "Received: batch_size=2.5. Expected None or"),
        ({"run_name": "a/b"}, "Received: run_name='a/b'. Expected a folder name"),
        ({"run_name": ".."}, "Received: run_name='..'"),
        ({"train_data": "abc"}, "train_data=('abc',). Expected a tf.data.Dataset"),
        ({"train_data": (np.zeros((4, 6)), np.zeros(3))}, "same number of examples"),
        ({"build_model": models.mlp((6,), 2)}, "Expected a function that returns"),
    ],
)
def test_fit_rejects_invalid_arguments(
    tmp_path, build_tiny, tiny_data, arguments, message
):
    given = {"build_model": build_tiny, "train_data": tiny_data(), "run_name": "bad"}
    given.update(arguments)
    with pytest.raises(ValueError, match="Invalid value for argument") as error:
        tiny_trainer(tmp_path).fit(**given)
    assert message in str(error.value)


def test_fit_explains_a_missing_loss(tmp_path, build_tiny, tiny_data):
    trainer = training.Trainer(runs_dir=tmp_path)
    with pytest.raises(ValueError, match="Missing argument `loss`"):
        trainer.fit(build_tiny, tiny_data(), run_name="no_loss")


def test_fit_rejects_what_is_not_a_built_model(tmp_path, tiny_data):
    trainer = tiny_trainer(tmp_path)
    with pytest.raises(ValueError, match="Received: 'model'. Expected a built keras"):
        trainer.fit(lambda: "model", tiny_data(), run_name="not_model")
    with pytest.raises(ValueError, match="Expected a built keras.Model: start it"):
        unbuilt = keras.Sequential([keras.layers.Dense(2)])
        trainer.fit(lambda: unbuilt, tiny_data(), run_name="unbuilt")


def test_a_compiled_model_is_used_as_it_is(tmp_path, build_tiny, tiny_data):
    def build_compiled():
        model = build_tiny()
        model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
        return model

    model, _ = training.Trainer(runs_dir=tmp_path).fit(
        build_compiled, tiny_data(), run_name="compiled", verbose=0
    )
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    with pytest.raises(ValueError, match="returned a compiled model"):
        tiny_trainer(tmp_path).fit(build_compiled, tiny_data(), run_name="twice")


# Training on one device.


class LogDirAtStart(keras.callbacks.Callback):
    def __init__(self, trainer):
        super().__init__()
        self.trainer = trainer

    def on_train_begin(self, logs=None):
        self.log_dir = self.trainer.log_dir


def test_fit_prints_one_line_and_returns_model_and_history(
    tmp_path, build_tiny, tiny_data, capsys
):
    trainer = tiny_trainer(tmp_path, metrics=["accuracy"])
    assert trainer.log_dir is None
    spy = LogDirAtStart(trainer)
    model, history = trainer.fit(
        build_tiny,
        tiny_data(),
        tiny_data(32, seed=1),
        epochs=2,
        run_name="line",
        callbacks=[spy],
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "Training 'line': strategy default, 1 replica, precision float32, "
        "global batch 32 (32 x 1), logs in "
        f"{os.path.join(os.path.dirname(trainer.log_dir), '')}"
    )  # the run's folder: no timestamp, so notebook outputs are the same each run
    assert isinstance(model, keras.Model)
    assert isinstance(history, keras.callbacks.History)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history.history["loss"]) == 2
    # log_dir is runs/<run_name>/<time>, known from the start to callbacks.
    log_dir = pathlib.Path(trainer.log_dir)
    assert spy.log_dir == trainer.log_dir
    assert log_dir.parent == tmp_path / "runs" / "line"
    assert len(log_dir.name) == len("20260101-120000")
    assert sorted(path.name for path in log_dir.parent.iterdir()) == [log_dir.name]


class CountBatches(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.batches = 0

    def on_train_batch_begin(self, batch, logs=None):
        self.batches += 1


def test_batch_size_is_the_global_batch_as_in_model_fit(
    tmp_path, build_tiny, tiny_data, capsys
):
    x, y = tiny_data()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8, drop_remainder=True)
    trainer, counter = tiny_trainer(tmp_path), CountBatches()
    fit = dict(run_name="ds", callbacks=[counter], verbose=0)
    trainer.fit(build_tiny, dataset, **fit)
    assert counter.batches == 12  # the dataset's own batches of 8
    assert "global batch 8 (8 x 1)" in capsys.readouterr().out
    trainer.fit(build_tiny, dataset, batch_size=32, **fit)
    # Rebatched to 32: 3 batches. Keras counts one more step at the end of a
    # dataset of unknown length (rebatching loses the cardinality).
    assert counter.batches in (3, 4)
    trainer.fit(build_tiny, (x, y), batch_size=48, **fit)
    assert counter.batches == 2
    assert "global batch 48 (48 x 1)" in capsys.readouterr().out


def test_precision_policy_is_restored_even_after_an_error(
    tmp_path, build_tiny, tiny_data
):
    previous = keras.config.dtype_policy().name
    trainer = tiny_trainer(tmp_path, precision="mixed_bfloat16")
    with pytest.raises(ValueError):
        trainer.fit(lambda: "not a model", tiny_data(), run_name="error")
    assert keras.config.dtype_policy().name == previous
    trainer.fit(build_tiny, tiny_data(), run_name="fine", verbose=0)
    assert keras.config.dtype_policy().name == previous


def test_mixed_bfloat16_trains_on_cpu(tmp_path, build_tiny, tiny_data):
    trainer = tiny_trainer(tmp_path, precision="mixed_bfloat16")
    model, history = trainer.fit(
        lambda: build_tiny(width=32),
        tiny_data(256),
        epochs=8,
        run_name="bf16",
        verbose=0,
    )
    hidden = model.layers[2]
    assert hidden.compute_dtype == "bfloat16"
    assert hidden.kernel.dtype == "float32"
    assert model.output.dtype == "float32"
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0], losses


def test_mixed_float16_gets_loss_scaling(tmp_path, build_tiny, tiny_data):
    trainer = tiny_trainer(tmp_path, precision="mixed_float16")
    model, history = trainer.fit(build_tiny, tiny_data(), run_name="fp16", verbose=0)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert np.isfinite(history.history["loss"][0])


def test_gradient_accumulation_matches_the_larger_batch(
    tmp_path, build_tiny, tiny_data
):
    def fit(batch_size, steps):
        trainer = tiny_trainer(
            tmp_path,
            optimizer=keras.optimizers.SGD(0.1),
            gradient_accumulation_steps=steps,
        )
        model, _ = trainer.fit(
            build_tiny,
            tiny_data(128),
            epochs=2,
            batch_size=batch_size,
            run_name="acc",
            verbose=0,
        )
        return model

    accumulated = fit(batch_size=16, steps=2)
    large_batch = fit(batch_size=32, steps=None)
    assert accumulated.optimizer.iterations.numpy() == 8  # updates, not batches
    # The mean of two 16-example gradients is the 32-example gradient: the
    # same updates up to float32 rounding.
    for a, b in zip(accumulated.get_weights(), large_batch.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


# TensorBoard.


def epoch_scalars(folder):
    """{tag: [value per step]} of the epoch_ scalars in a TensorBoard run folder."""
    events = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    events.Reload()
    return {
        tag: [
            float(tf.make_ndarray(event.tensor_proto)) for event in events.Tensors(tag)
        ]
        for tag in events.Tags()["tensors"]
        if tag.startswith("epoch_")
    }, events.Tags()["tensors"]


def test_tensorboard_event_files_hold_the_epoch_scalars(
    tmp_path, build_tiny, tiny_data, monkeypatch
):
    summary = keras.callbacks.TensorBoard().summary  # the module Keras writes with
    names, scalar = [], summary.scalar

    def recorded_scalar(name, *args, **kwargs):
        names.append(name)
        return scalar(name, *args, **kwargs)

    monkeypatch.setattr(summary, "scalar", recorded_scalar)
    trainer = tiny_trainer(
        tmp_path, metrics=["accuracy"], tensorboard={"histogram_freq": 1}
    )
    trainer.fit(
        build_tiny, tiny_data(), tiny_data(32, 1), epochs=3, run_name="tb", verbose=0
    )
    train, train_tags = epoch_scalars(pathlib.Path(trainer.log_dir) / "train")
    validation, _ = epoch_scalars(pathlib.Path(trainer.log_dir) / "validation")
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= set(train)
    assert {"epoch_loss", "epoch_accuracy"} <= set(validation)
    assert len(train["epoch_loss"]) == 3
    assert train["epoch_learning_rate"] == pytest.approx([0.001] * 3)
    assert any(tag.endswith("kernel/histogram") for tag in train_tags)
    # Logging per epoch, no summary call at every batch (they would write nothing).
    assert "epoch_loss" in names and not [n for n in names if n.startswith("batch_")]


def test_a_tensorboard_callback_in_callbacks_replaces_the_trainers_own(
    tmp_path, build_tiny, tiny_data
):
    # As keras-tuner passes its per-trial TensorBoard.
    own = keras.callbacks.TensorBoard(str(tmp_path / "mine"))
    trainer = tiny_trainer(tmp_path)
    trainer.fit(
        build_tiny, tiny_data(), epochs=2, run_name="given", callbacks=[own], verbose=0
    )
    assert trainer.log_dir == str(tmp_path / "mine")
    assert len(epoch_scalars(tmp_path / "mine" / "train")[0]["epoch_loss"]) == 2
    assert not any((tmp_path / "runs" / "given").iterdir())  # no logs of its own


# Backups: resuming a crashed run.


class Crash(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.crash_epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.crash_epoch:
            raise RuntimeError("simulated crash")


def test_a_crashed_run_resumes_from_its_backup(tmp_path, build_tiny, tiny_data, capsys):
    data = tiny_data(128)
    trainer = tiny_trainer(tmp_path)
    reference, _ = trainer.fit(
        build_tiny, data, epochs=4, run_name="reference", verbose=0
    )
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer.fit(
            build_tiny,
            data,
            epochs=4,
            run_name="crash",
            callbacks=[Crash(2)],
            verbose=0,
        )
    crashed_log_dir = trainer.log_dir
    assert (tmp_path / "runs" / "crash" / "backup" / "checkpoint").exists()
    capsys.readouterr()
    resumed, history = trainer.fit(
        build_tiny, data, epochs=4, run_name="crash", verbose=0
    )
    assert "resuming after epoch 2" in capsys.readouterr().out
    assert trainer.log_dir == crashed_log_dir  # the resumed run logs on there
    assert history.epoch == [2, 3]
    assert (
        resumed.optimizer.iterations.numpy() == reference.optimizer.iterations.numpy()
    )
    for a, b in zip(reference.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # Finished: the backup is gone, so running the cell again starts afresh.
    assert not (tmp_path / "runs" / "crash" / "backup").exists()
    _, again = trainer.fit(build_tiny, data, epochs=4, run_name="crash", verbose=0)
    assert again.epoch == [0, 1, 2, 3]


def test_a_backup_of_another_model_is_refused_with_a_way_out(
    tmp_path, build_tiny, tiny_data
):
    trainer = tiny_trainer(tmp_path)
    with pytest.raises(RuntimeError):
        trainer.fit(
            build_tiny, tiny_data(), epochs=3, run_name="x", callbacks=[Crash(1)]
        )
    with pytest.raises(ValueError, match="does not match the model") as error:
        trainer.fit(lambda: build_tiny(width=4, depth=2), tiny_data(), run_name="x")
    assert "Delete that folder" in str(error.value)


# Subprocesses: several devices, several workers, SIGKILL.


def worker_command(output, runs_dir, *options):
    return [sys.executable, str(WORKER), str(output), "--runs-dir", str(runs_dir)] + [
        str(option) for option in options
    ]


def worker_env(tf_config=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def start(command, log, tf_config=None):
    return subprocess.Popen(
        command,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=worker_env(tf_config),
    )


def finish(process, log):
    """Waits for a worker; fails with its output unless it exited cleanly."""
    try:
        code = process.wait(timeout=HANG_GUARD_SECONDS)
    finally:
        stop(process)
    assert code == 0, log.read_text()[-3000:]
    return log.read_text()


def stop(process):
    if process.poll() is None:
        process.kill()
        process.wait()


def run_worker(command, log):
    return finish(start(command, log), log)


def wait_for(path, process, log):
    """Polls until `path` exists, failing early if the worker has exited."""
    wait_until(path.exists, process, log, path.name)


def wait_until(ready, process, log, what):
    for _ in range(HANG_GUARD_SECONDS * 10):
        if ready():
            return
        if process.poll() is not None:
            pytest.fail(f"worker exited before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    pytest.fail(f"worker never reached {what}")


def load_weights(path):
    with np.load(path) as archive:
        return [archive[name] for name in archive.files]


def assert_identical(first, second):
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a, b), np.abs(a - b).max()


def log_dir_name(output):
    """The timestamped log folder a worker printed (`log_dir runs/name/<time>`)."""
    return output.split("log_dir ")[1].split()[0].rsplit("/", 1)[1]


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_matches_one_device(tmp_path):
    # Same global batch (32 on one device, 16 x 2 replicas), same data order,
    # plain SGD without dropout or batch norm: the updates are the same sums,
    # the replicas' gradients only added in another order. float32 rounding
    # (relative 6e-8 per operation) over 3 epochs x 16 steps stays far below
    # 1e-5; any real difference (a wrong loss scaling, a lost batch) would be
    # of the order of the update itself, about 1e-2.
    common = ["--model", "plain", "--epochs", "3", "--logical-cpus", "2"]
    single, mirrored = tmp_path / "single.npz", tmp_path / "mirrored.npz"
    run_worker(
        worker_command(single, tmp_path, *common, "--strategy", "/cpu:0"),
        tmp_path / "single.log",
    )
    output = run_worker(
        worker_command(mirrored, tmp_path, *common, "--strategy", "/cpu:0,/cpu:1"),
        tmp_path / "mirrored.log",
    )
    assert "strategy MirroredStrategy, 2 replicas" in output
    assert "global batch 32 (16 x 2)" in output
    differences = [
        np.abs(a - b).max()
        for a, b in zip(load_weights(single), load_weights(mirrored), strict=True)
    ]
    assert max(differences) < 1e-5, differences


@pytest.fixture(scope="module")
def uninterrupted_weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    run_worker(worker_command(folder / "w.npz", folder), folder / "run.log")
    assert not (folder / "worker" / "backup").exists()
    return load_weights(folder / "w.npz")


def kill_when_paused(command, log, marker):
    process = start(command, log)
    try:
        wait_for(marker, process, log)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=HANG_GUARD_SECONDS) == -signal.SIGKILL
    finally:
        stop(process)


@pytest.mark.slow
def test_three_sigkills_then_resume_give_identical_weights(
    tmp_path, uninterrupted_weights
):
    # Killed in the first epoch (no backup yet), then twice in a row after a
    # backup; the same command each time.
    command = worker_command(tmp_path / "w.npz", tmp_path, "--pause-at", "0:3,1:5,3:9")
    backup = str(tmp_path / "worker" / "backup")
    kill_when_paused(command, tmp_path / "run1.log", tmp_path / "paused-0-3")
    assert tf.train.latest_checkpoint(backup) is None
    kill_when_paused(command, tmp_path / "run2.log", tmp_path / "paused-1-5")
    assert "resuming" not in (tmp_path / "run2.log").read_text()
    assert tf.train.latest_checkpoint(backup).endswith("ckpt-1")
    kill_when_paused(command, tmp_path / "run3.log", tmp_path / "paused-3-9")
    assert "resuming after epoch 1" in (tmp_path / "run3.log").read_text()
    assert tf.train.latest_checkpoint(backup).endswith("ckpt-3")
    output = run_worker(command, tmp_path / "run4.log")
    assert "resuming after epoch 3" in output
    assert_identical(load_weights(tmp_path / "w.npz"), uninterrupted_weights)
    assert not pathlib.Path(backup).exists()
    # The resumed processes wrote on in the log dir of the run they resumed.
    runs = [(tmp_path / f"run{i}.log").read_text() for i in (2, 3)] + [output]
    assert len({log_dir_name(run) for run in runs}) == 1
    log_dir = tmp_path / "worker" / log_dir_name(output)
    assert epoch_steps(log_dir / "train", "epoch_loss") == [0, 1, 2, 3, 4]


def epoch_steps(folder, tag):
    events = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    events.Reload()
    return sorted(event.step for event in events.Tensors(tag))


def start_cluster(folder, ports, *options, tag):
    addresses = [f"127.0.0.1:{port}" for port in ports]
    processes = []
    for index in range(2):
        tf_config = {
            "cluster": {"worker": addresses},
            "task": {"type": "worker", "index": index},
        }
        command = worker_command(folder / f"{tag}{index}.npz", folder, *options)
        log = folder / f"{tag}{index}.log"
        processes.append((start(command, log, tf_config), log))
    return processes


def run_cluster(folder, ports, *options, tag="worker", meanwhile=None):
    """Runs two workers to the end, calling `meanwhile(processes)` once they
    have started; returns their outputs."""
    processes = start_cluster(folder, ports, *options, tag=tag)
    try:
        if meanwhile:
            meanwhile(processes)
        return [finish(process, log) for process, log in processes]
    finally:
        for process, _ in processes:
            stop(process)


CLUSTER_OPTIONS = ["--model", "plain", "--epochs", "3", "--batch-size", "32"]


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory, free_port):
    folder = tmp_path_factory.mktemp("cluster")
    return folder, run_cluster(folder, [free_port(), free_port()], *CLUSTER_OPTIONS)


@pytest.mark.slow
def test_two_workers_on_localhost_agree_on_the_weights(tmp_path, two_workers):
    folder, outputs = two_workers
    for output in outputs:
        assert "strategy MultiWorkerMirroredStrategy, 2 replicas" in output
        assert "global batch 32 (16 x 2)" in output
    chief = load_weights(folder / "worker0.npz")
    assert_identical(chief, load_weights(folder / "worker1.npz"))
    histories = [line for o in outputs for line in o.splitlines() if "history" in line]
    assert histories[0] == histories[1]  # logs are averaged over both workers
    # Only the chief (worker 0) writes TensorBoard logs; the backup is gone
    # once the run has finished.
    written = {path.name for path in (folder / "worker").iterdir()}
    assert written == {log_dir_name(outputs[0])}
    assert (folder / "worker" / log_dir_name(outputs[0]) / "train").is_dir()
    # One machine, same global batch: the same training up to float rounding.
    single = tmp_path / "single.npz"
    run_worker(
        worker_command(single, tmp_path, "--model", "plain", "--epochs", "3"),
        tmp_path / "single.log",
    )
    for a, b in zip(load_weights(single), chief, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.slow
def test_two_workers_killed_resume_from_the_chiefs_backup(
    tmp_path, two_workers, free_port
):
    pausing = [*CLUSTER_OPTIONS, "--pause-at", "1:4"]
    killed = start_cluster(tmp_path, [free_port(), free_port()], *pausing, tag="worker")
    try:
        wait_for(tmp_path / "paused-1-4", *killed[0])
        for process, _ in killed:
            process.send_signal(signal.SIGKILL)
    finally:
        for process, _ in killed:
            stop(process)
    assert tf.train.latest_checkpoint(str(tmp_path / "worker" / "backup"))
    outputs = run_cluster(tmp_path, [free_port(), free_port()], *pausing)
    assert all("resuming after epoch 1" in output for output in outputs)
    folder, _ = two_workers
    assert_identical(
        load_weights(tmp_path / "worker0.npz"), load_weights(folder / "worker0.npz")
    )


@pytest.mark.slow
def test_two_workers_outlast_a_chief_frozen_for_15_seconds(
    tmp_path, two_workers, free_port
):
    # SIGSTOP freezes the whole process, heartbeats included, as a VM paused by
    # its host or a swapping laptop would. With TensorFlow's 10 s heartbeat
    # timeout the coordination service (it runs in the chief) failed both
    # workers; the trainer allows HEARTBEAT_TIMEOUT_SECONDS. 15 s stays under
    # gRPC's 20 s connection timeout, which a longer freeze can still trip if
    # it catches a connection being opened.
    assert training.HEARTBEAT_TIMEOUT_SECONDS > 15

    def freeze_the_chief(processes):
        chief, log = processes[0]
        wait_until(lambda: "log_dir" in log.read_text(), chief, log, "training")
        chief.send_signal(signal.SIGSTOP)
        time.sleep(15)
        chief.send_signal(signal.SIGCONT)

    ports = [free_port(), free_port()]
    run_cluster(tmp_path, ports, *CLUSTER_OPTIONS, meanwhile=freeze_the_chief)
    folder, _ = two_workers
    assert_identical(
        load_weights(tmp_path / "worker0.npz"), load_weights(folder / "worker0.npz")
    )


@pytest.mark.slow
def test_mnist_cnn_example_reaches_97_5_percent(tmp_path):
    # The README's example: the keras-io style CNN on the quick MNIST split
    # (4,000 training digits), augmentation in the tf.data pipeline.
    from dlkit import datasets

    keras.utils.set_random_seed(42)
    (x_train, y_train), (x_test, y_test) = datasets.load_mnist(verbose=False)
    x_train, x_test = x_train[..., None], x_test[..., None]
    augment = keras.Sequential(
        [keras.layers.RandomRotation(0.03), keras.layers.RandomTranslation(0.08, 0.08)]
    )
    train_dataset = datasets.make_dataset(x_train, y_train, augment=augment)
    test_dataset = datasets.make_dataset(x_test, y_test, batch_size=256, shuffle=False)

    def build_model():
        return models.cnn((28, 28, 1), num_classes=10, dropout=0.25, rescale=1 / 255)

    epochs = 15
    schedule = keras.optimizers.schedules.CosineDecay(
        3e-3, decay_steps=epochs * len(train_dataset)
    )
    trainer = training.Trainer(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        runs_dir=tmp_path,
    )
    model, history = trainer.fit(
        build_model, train_dataset, test_dataset, epochs=epochs, run_name="mnist_cnn"
    )
    _, test_accuracy = model.evaluate(test_dataset, verbose=0)
    assert test_accuracy >= 0.975, history.history["val_accuracy"]
