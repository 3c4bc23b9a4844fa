"""The trainer: the same training call on a laptop CPU, several GPUs, a TPU or
several machines.

`Trainer.fit` (or the one-call `train`) takes a model-building function and
data, then picks a `tf.distribute` strategy and a mixed-precision policy for
the hardware, builds the model inside the strategy scope, compiles it, logs to
TensorBoard, backs the run up at the end of every epoch and returns the
trained `keras.Model` with its `keras.callbacks.History`, like `model.fit`.

Example:

```python
from dlkit import models, training

trainer = training.Trainer(
    loss="sparse_categorical_crossentropy", metrics=["accuracy"]
)
model, history = trainer.fit(
    lambda: models.cnn(input_shape=(28, 28), num_classes=10, rescale=1 / 255),
    (x_train, y_train),
    validation_data=(x_test, y_test),
    epochs=5,
    run_name="mnist_cnn",
)
```

Which strategy (`strategy="auto"`):

- `MultiWorkerMirroredStrategy` when `TF_CONFIG` describes a cluster of
  several workers;
- `TPUStrategy` when a TPU is attached;
- `MirroredStrategy` over all visible GPUs when there are two or more;
- the default strategy otherwise (one GPU, or the CPU).

Which precision (`precision="auto"`): `mixed_float16` on GPUs of compute
capability 7.0 or more, `mixed_bfloat16` on TPUs, `float32` on CPUs and older
GPUs. Keras handles loss scaling. The global policy is restored when `fit`
returns, so one notebook cell's choice does not leak into the next.

Batches: `batch_size` is per replica; the global batch is `batch_size` times
the number of replicas.

Fault tolerance: at the end of every epoch the whole training state (weights,
optimizer, batch-norm statistics, dropout seeds, epoch, log directory) is
saved to `runs/<run_name>/backup` with a `tf.train.CheckpointManager`. Running
the same command again after a crash resumes from there; a run that finishes
deletes its backup, so running a finished cell again starts afresh.

Multi-worker: Keras 3's `model.fit` fails under `MultiWorkerMirroredStrategy`
(keras-team/keras#20585). The trainer runs a custom loop there instead: the
model's own `train_step`/`test_step` under `strategy.run`, with the same
callbacks, TensorBoard written by the chief only, the same backups, and a
`History` like `fit`'s. The backup directory must be on storage that every
worker can read (a shared disk or a bucket).
"""

import contextlib
import dataclasses
import datetime
import functools
import math
import os
import re
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
STRATEGY_KINDS = ("multi_worker", "tpu", "mirrored", "default")
DEFAULT_BATCH_SIZE = 32
DEFAULT_SEED = 42


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    """One device as the trainer sees it, for choosing a strategy and a precision.

    Example:

    >>> DeviceInfo("GPU", "GPU:0", compute_capability=(8, 0))
    DeviceInfo(kind='GPU', name='GPU:0', compute_capability=(8, 0))

    Args:
        kind: `"CPU"`, `"GPU"` or `"TPU"`.
        name: the device name, e.g. `"GPU:0"`. Defaults to `""`.
        compute_capability: `(major, minor)` for NVIDIA GPUs, else `None`.
    """

    kind: str
    name: str = ""
    compute_capability: tuple = None


def list_devices():
    """Describes the devices of this machine as `DeviceInfo`s.

    TPUs are listed when TensorFlow sees local TPU devices or when `TPU_NAME`
    names a remote TPU.

    Returns:
        A list of `DeviceInfo`.
    """
    devices = [DeviceInfo("CPU", "CPU:0")]
    for index, gpu in enumerate(tf.config.list_physical_devices("GPU")):
        details = tf.config.experimental.get_device_details(gpu)
        capability = details.get("compute_capability")
        devices.append(DeviceInfo("GPU", f"GPU:{index}", capability))
    tpus = tf.config.list_physical_devices("TPU")
    devices += [DeviceInfo("TPU", f"TPU:{i}") for i in range(len(tpus))]
    if not tpus and os.environ.get("TPU_NAME"):
        devices.append(DeviceInfo("TPU", os.environ["TPU_NAME"]))
    return devices


def select_strategy(devices, cluster=None):
    """Chooses the kind of `tf.distribute` strategy for the given devices.

    Example:

    >>> select_strategy([DeviceInfo("CPU"), DeviceInfo("GPU"), DeviceInfo("GPU")])
    'mirrored'

    Args:
        devices: list of `DeviceInfo`, e.g. from `list_devices()`.
        cluster: the `"cluster"` part of `TF_CONFIG` (a dict of job name to
            list of addresses), or `None` when there is no cluster.

    Returns:
        `"multi_worker"`, `"tpu"`, `"mirrored"` or `"default"`.
    """
    workers = len((cluster or {}).get("chief", [])) + len(
        (cluster or {}).get("worker", [])
    )
    if workers > 1:
        return "multi_worker"
    if any(device.kind == "TPU" for device in devices):
        return "tpu"
    if sum(device.kind == "GPU" for device in devices) > 1:
        return "mirrored"
    return "default"


def select_precision(devices):
    """Chooses the mixed-precision policy for the devices that will compute.

    Example:

    >>> select_precision([DeviceInfo("GPU", compute_capability=(8, 0))])
    'mixed_float16'

    Args:
        devices: list of `DeviceInfo` the replicas run on.

    Returns:
        `"mixed_bfloat16"` on TPUs, `"mixed_float16"` when every GPU has
        compute capability 7.0 or more, else `"float32"`.
    """
    kinds = {device.kind for device in devices}
    if "TPU" in kinds:
        return "mixed_bfloat16"
    gpus = [device for device in devices if device.kind == "GPU"]
    if gpus and all(
        device.compute_capability and tuple(device.compute_capability) >= (7, 0)
        for device in gpus
    ):
        return "mixed_float16"
    return "float32"


class Trainer:
    """Trains models from model-building functions on whatever hardware is there.

    A `Trainer` holds how to train (strategy, precision, optimizer, loss,
    callbacks on or off); `fit` says what to train on which data. The same
    trainer can fit several models. Each `fit` builds the model with
    `build_model()` inside the strategy scope and under the precision policy,
    compiles it with a fresh optimizer made from `optimizer` (so the
    optimizer's state never carries over from one `fit` to the next), and
    trains it.

    If `build_model` returns an already compiled model (for example a GAN with
    its own `compile`), the trainer uses that compilation as it is, and `loss`,
    `metrics` and `gradient_accumulation_steps` must be left unset.

    Example:

    ```python
    trainer = Trainer(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model, history = trainer.fit(
        build_model, train_dataset, validation_dataset, epochs=5, run_name="cnn"
    )
    ```

    Args:
        strategy: `"auto"`, a list of device names for a `MirroredStrategy`
            (e.g. `["/gpu:0", "/gpu:1"]`), or any `tf.distribute.Strategy`.
            Defaults to `"auto"` (see the module documentation).
        precision: `"auto"`, `"float32"`, `"mixed_float16"` or
            `"mixed_bfloat16"`. Defaults to `"auto"`.
        optimizer: optimizer name or instance; rebuilt from its config inside
            the strategy scope for every `fit`. Defaults to `"adam"`.
        loss: loss name or instance, as for `model.compile`. Required unless
            `build_model` returns a compiled model. Defaults to `None`.
        metrics: list of metrics, as for `model.compile`. Defaults to `None`.
        gradient_accumulation_steps: apply the optimizer every this many
            batches, on gradients averaged over them (a larger effective
            batch in the same memory). Defaults to `None` (every batch).
        jit_compile: `True`, `False` or `"auto"` to compile with XLA, as for
            `model.compile`. Defaults to `"auto"`.
        deterministic: whether to make results repeatable: seeds everything
            with `seed` (42 when `seed` is `None`) and turns on TensorFlow's
            op determinism for the rest of the process (slower). Defaults to
            `False`.
        seed: seed for weight initialisation (`keras.utils.set_random_seed`)
            and for the order of array inputs. Defaults to `None` (weights
            follow the global seed; array order uses 42).
        early_stopping: `None`, a patience in epochs (stop when the
            validation loss, else the loss, has not improved for that many
            epochs, and restore the best weights), or a
            `keras.callbacks.EarlyStopping`. Defaults to `None`.
        save_best: whether to save the best model (by validation loss, else
            loss) to `runs/<run_name>/best.keras`. Defaults to `False`.
        tensorboard: `True`, `False`, or a dict of extra arguments for
            `keras.callbacks.TensorBoard`, e.g. `{"histogram_freq": 1}` or
            `{"profile_batch": (2, 4)}`. Defaults to `True`.
        runs_dir: folder for logs, backups and best models. Defaults to
            `"runs"` (relative to the working directory).

    Raises:
        ValueError: when an argument has an invalid value.
    """

    def __init__(
        self,
        strategy="auto",
        precision="auto",
        *,
        optimizer="adam",
        loss=None,
        metrics=None,
        gradient_accumulation_steps=None,
        jit_compile="auto",
        deterministic=False,
        seed=None,
        early_stopping=None,
        save_best=False,
        tensorboard=True,
        runs_dir="runs",
    ):
        _check_strategy(strategy)
        _check_precision(precision)
        _check_int("gradient_accumulation_steps", gradient_accumulation_steps, None)
        _check_choice("jit_compile", jit_compile, (True, False, "auto"))
        _check_choice("deterministic", deterministic, (True, False))
        _check_int("seed", seed, None, minimum=0)
        _check_early_stopping(early_stopping)
        _check_choice("save_best", save_best, (True, False))
        _check_tensorboard(tensorboard)
        self._strategy_spec = strategy
        self._precision_spec = getattr(precision, "name", precision)
        self.optimizer = optimizer
        self.loss = loss
        self.metrics = metrics
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.jit_compile = jit_compile
        self.deterministic = deterministic
        self.seed = seed
        self.early_stopping = early_stopping
        self.save_best = save_best
        self.tensorboard = tensorboard
        self.runs_dir = os.fspath(runs_dir)
        self._strategy = None

    @property
    def strategy(self):
        """The `tf.distribute.Strategy` in use, created on first use."""
        if self._strategy is None:
            self._strategy = _resolve_strategy(self._strategy_spec)
        return self._strategy

    @property
    def precision(self):
        """The name of the precision policy `fit` trains with."""
        if self._precision_spec != "auto":
            return self._precision_spec
        return select_precision(_strategy_devices(self.strategy))

    def fit(
        self,
        build_model,
        train_data,
        validation_data=None,
        *,
        epochs=1,
        batch_size=None,
        run_name,
        callbacks=None,
        verbose="auto",
    ):
        """Builds, compiles and trains a model; resumes a crashed run of the same name.

        Prints one line first: strategy, replicas, precision, global batch
        and log directory.

        Args:
            build_model: function with no arguments returning a `keras.Model`
                (use `functools.partial` or a lambda to pass hyperparameters).
            train_data: a `tf.data.Dataset` of batches, or arrays: `x`,
                `(x, y)` or `(x, y, sample_weight)`. Arrays are shuffled
                every epoch in an order that depends only on the seed and the
                epoch, so a resumed run sees the same batches.
            validation_data: same forms as `train_data`, or `None`.
                Defaults to `None`.
            epochs: total number of epochs. Defaults to `1`.
            batch_size: batch size per replica. For arrays, defaults to `32`.
                A dataset is rebatched to `batch_size` x replicas; with
                `batch_size=None` its own batches are taken as per-replica
                batches. Defaults to `None`.
            run_name: name of the run: logs go to
                `runs/<run_name>/<timestamp>`, the backup to
                `runs/<run_name>/backup`.
            callbacks: list of extra `keras.callbacks.Callback`. Defaults to
                `None`.
            verbose: `"auto"`, 0, 1 or 2, as for `model.fit`. Defaults to
                `"auto"`.

        Returns:
            `(model, history)`: the trained `keras.Model` and its
            `keras.callbacks.History`.

        Raises:
            ValueError: when an argument has an invalid value, or when the
                backup of `run_name` belongs to a different model.
        """
        _check_fit_arguments(build_model, epochs, batch_size, run_name, callbacks)
        strategy = self.strategy
        data = _Data(
            train_data, validation_data, batch_size, strategy, self._data_seed()
        )
        with _dtype_policy(self.precision):
            model = self._build(build_model, strategy)
            run = _Run(self.runs_dir, run_name, chief=_is_chief(strategy))
            try:
                history = self._train(model, run, data, epochs, callbacks, verbose)
            finally:
                run.cleanup()
        return model, history

    def _train(self, model, run, data, epochs, callbacks, verbose):
        backup = _Backup(run, model)
        initial_epoch, log_dir = backup.restore(run.new_log_dir())
        train = data.train(initial_epoch, epochs)
        strategy = self.strategy
        print(
            _summary_line(run, strategy, self.precision, train, log_dir, initial_epoch)
        )
        fit_arguments = dict(
            epochs=epochs,
            initial_epoch=initial_epoch,
            callbacks=self._callbacks(run, log_dir, data, callbacks, backup),
            verbose=verbose,
        )
        validation = data.validation()
        if _is_multi_worker(strategy):
            history = _custom_loop_fit(
                model, strategy, train, validation, **fit_arguments
            )
        else:
            history = model.fit(
                train.dataset,
                validation_data=validation and validation.dataset,
                steps_per_epoch=train.steps,
                shuffle=False,  # the pipeline shuffles, by (seed, epoch)
                **fit_arguments,
            )
        backup.delete()
        return history

    def _build(self, build_model, strategy):
        seed = self.seed
        if self.deterministic:
            tf.config.experimental.enable_op_determinism()
            seed = DEFAULT_SEED if seed is None else seed
        if seed is not None:
            keras.utils.set_random_seed(seed)
        with strategy.scope():
            model = build_model()
            _check_model(model)
            if getattr(model, "compiled", False):
                self._check_precompiled()
            else:
                self._compile(model)
            if not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
        return model

    def _compile(self, model):
        if self.loss is None:
            raise ValueError(
                "Missing argument `loss`: `build_model` returned an uncompiled "
                "model, so the trainer compiles it and needs a loss. Pass e.g. "
                "Trainer(loss='sparse_categorical_crossentropy'), or compile the "
                "model in `build_model`."
            )
        model.compile(
            optimizer=_make_optimizer(self.optimizer, self.gradient_accumulation_steps),
            loss=self.loss,
            metrics=self.metrics,
            jit_compile=self.jit_compile,
        )

    def _check_precompiled(self):
        given = {
            "loss": self.loss,
            "metrics": self.metrics,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
        }
        given = {name: value for name, value in given.items() if value is not None}
        if given:
            raise ValueError(
                "`build_model` returned a compiled model, which the trainer uses "
                f"as it is. Received: {given}. Expected these unset; pass them to "
                "`model.compile` inside `build_model` instead, or return an "
                "uncompiled model."
            )

    def _data_seed(self):
        return DEFAULT_SEED if self.seed is None else self.seed

    def _callbacks(self, run, log_dir, data, user_callbacks, backup):
        monitor = "val_loss" if data.has_validation else "loss"
        callbacks = list(user_callbacks or [])
        if self.early_stopping is not None:
            callbacks.append(_early_stopping(self.early_stopping, monitor))
        if self.save_best:
            callbacks.append(
                keras.callbacks.ModelCheckpoint(
                    run.best_model_path, monitor=monitor, save_best_only=True
                )
            )
        if self.tensorboard is not False and run.chief:
            options = self.tensorboard if isinstance(self.tensorboard, dict) else {}
            callbacks.append(_TensorBoard(log_dir, **options))
        return callbacks + [backup]


def train(
    build_model,
    train_data,
    validation_data=None,
    *,
    epochs=1,
    batch_size=None,
    run_name,
    callbacks=None,
    verbose="auto",
    **trainer_options,
):
    """Trains a model in one call: `Trainer(**trainer_options).fit(...)`.

    Example:

    ```python
    model, history = train(
        build_model,
        (x_train, y_train),
        validation_data=(x_test, y_test),
        epochs=5,
        run_name="mlp",
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    ```

    Args:
        build_model, train_data, validation_data, epochs, batch_size,
        run_name, callbacks, verbose: as for `Trainer.fit`.
        **trainer_options: arguments of `Trainer`, e.g. `loss`, `metrics`,
            `precision`, `strategy`.

    Returns:
        `(model, history)`, as `Trainer.fit`.
    """
    trainer = Trainer(**trainer_options)
    return trainer.fit(
        build_model,
        train_data,
        validation_data,
        epochs=epochs,
        batch_size=batch_size,
        run_name=run_name,
        callbacks=callbacks,
        verbose=verbose,
    )


# Strategy and precision.


def _resolve_strategy(spec):
    if isinstance(spec, tf.distribute.Strategy):
        return spec
    if isinstance(spec, (list, tuple)):
        return tf.distribute.MirroredStrategy(list(spec))
    return _auto_strategy(select_strategy(list_devices(), _cluster_from_env()))


def _cluster_from_env():
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    return resolver.cluster_spec().as_dict()


@functools.cache
def _auto_strategy(kind):
    """Creates each automatic strategy once per process (they hold resources)."""
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=os.environ.get("TPU_NAME", "local")
        )
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _strategy_devices(strategy):
    """The `DeviceInfo`s of the devices the strategy's replicas run on."""
    devices = list_devices()
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return [DeviceInfo("TPU")]
    try:
        names = strategy.extended.worker_devices
    except RuntimeError:  # the default strategy has no device list
        gpus = [device for device in devices if device.kind == "GPU"]
        return gpus[:1] or devices[:1]
    by_name = {device.name: device for device in devices}
    found = [by_name.get(re.sub(r".*device:", "", name).upper()) for name in names]
    return [device or DeviceInfo("CPU") for device in found]


@contextlib.contextmanager
def _dtype_policy(name):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _is_multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def _is_chief(strategy):
    return not _is_multi_worker(strategy) or strategy.extended.should_checkpoint


def _strategy_name(strategy):
    if _is_multi_worker(strategy):  # its class is CollectiveAllReduceStrategy
        return "MultiWorkerMirroredStrategy"
    name = type(strategy).__name__
    return "default" if name == "_DefaultDistributionStrategy" else name


def _make_optimizer(optimizer, gradient_accumulation_steps):
    """Makes a new optimizer in the current scope from a name or an instance."""
    template = keras.optimizers.get(optimizer)
    config = template.get_config()
    if gradient_accumulation_steps:
        config["gradient_accumulation_steps"] = gradient_accumulation_steps
    return type(template).from_config(config)


def _early_stopping(early_stopping, monitor):
    if isinstance(early_stopping, keras.callbacks.EarlyStopping):
        return early_stopping
    return keras.callbacks.EarlyStopping(
        monitor=monitor, patience=early_stopping, restore_best_weights=True
    )


class _TensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard callback, flushed at every epoch end.

    The curves then appear in TensorBoard as each epoch ends, and the epochs
    that a backup holds are on disk too when a run is killed.
    """

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        for writer in getattr(self, "_writers", {}).values():
            writer.flush()


# Run folders and backups.


class _Run:
    """Where one run writes: `<runs_dir>/<run_name>/{<timestamp>,backup,best.keras}`."""

    def __init__(self, runs_dir, run_name, chief):
        self.name = run_name
        self.root = os.path.join(runs_dir, run_name)
        self.chief = chief
        self.backup_dir = os.path.join(self.root, "backup")
        # Workers other than the chief write to throwaway folders: in a
        # multi-worker run every worker must take part in saving.
        self._scratch = None if chief else tempfile.mkdtemp(prefix="dlkit-worker-")
        self.backup_write_dir = self.backup_dir if chief else self._scratch
        folder = self.root if chief else self._scratch
        self.best_model_path = os.path.join(folder, "best.keras")

    def new_log_dir(self):
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        return os.path.join(self.root, stamp)

    def cleanup(self):
        """Removes a worker's throwaway folder."""
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)


class _Backup(keras.callbacks.Callback):
    """Saves the training state at every epoch end; restores it before training.

    A `tf.train.CheckpointManager` over all the model's variables (weights,
    batch-norm statistics, dropout seed states), the optimizer's variables,
    the number of finished epochs and the log directory. A checkpoint only
    becomes the latest once completely written, so a kill at any moment
    leaves the previous one usable.

    Why not `keras.callbacks.BackupAndRestore`: its weights file leaves out
    the dropout seed states (a resumed run then differs from an uninterrupted
    one), its weights and epoch files are written one after the other (a kill
    in between resumes from the wrong epoch), the epoch it resumes from is
    only known inside `fit` (too late to start the data pipeline there), and
    every worker of a multi-worker run would write into the same folder.
    """

    def __init__(self, run, model):
        super().__init__()
        self._run = run
        self._epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._log_dir = tf.Variable("", dtype=tf.string, trainable=False)
        self._checkpoint = tf.train.Checkpoint(
            model=list(model.variables),
            optimizer=list(model.optimizer.variables),
            epoch=self._epoch,
            log_dir=self._log_dir,
        )
        _ = self._checkpoint.save_counter  # create it now: restore() then finds it
        self._manager = tf.train.CheckpointManager(
            self._checkpoint, run.backup_write_dir, max_to_keep=1
        )

    def restore(self, new_log_dir):
        """Returns `(initial_epoch, log_dir)`: from the backup if there is one."""
        latest = tf.train.latest_checkpoint(self._run.backup_dir)
        if latest is None:
            self._log_dir.assign(new_log_dir)
            return 0, new_log_dir
        status = None
        try:
            status = self._checkpoint.restore(latest)
            status.assert_consumed()
        except (AssertionError, ValueError, tf.errors.OpError) as error:
            if status is not None:
                status.expect_partial()  # no second warning about the mismatch
            raise ValueError(
                f"The backup in {self._run.backup_dir} does not match the model of "
                f"run_name={self._run.name!r} (it was saved from a different model "
                f"or optimizer). Delete that folder to start afresh, or choose "
                f"another `run_name`. Details: {error}"
            ) from None
        return int(self._epoch.numpy()), self._log_dir.numpy().decode()

    def on_epoch_end(self, epoch, logs=None):
        self._epoch.assign(epoch + 1)
        self._manager.save(checkpoint_number=epoch + 1)

    def delete(self):
        """Removes a finished run's backup: running it again starts afresh."""
        shutil.rmtree(self._run.backup_write_dir, ignore_errors=True)


def _summary_line(run, strategy, precision, train, log_dir, initial_epoch):
    replicas = strategy.num_replicas_in_sync
    if train.global_batch is None:
        batch = "as batched by the dataset"
    else:
        batch = f"{train.global_batch} ({train.global_batch // replicas} x {replicas})"
    line = (
        f"Training {run.name!r}: strategy {_strategy_name(strategy)}, "
        f"{replicas} replica{'s' if replicas > 1 else ''}, precision {precision}, "
        f"global batch {batch}, logs {log_dir}"
    )
    if initial_epoch:
        line += f", resuming after epoch {initial_epoch} from {run.backup_dir}"
    return line


# Data.


@dataclasses.dataclass
class _Feed:
    """A dataset for `fit`, with steps per epoch when it streams all epochs."""

    dataset: tf.data.Dataset
    steps: int = None
    global_batch: int = None


class _Data:
    """Turns training and validation data into `tf.data` global batches."""

    def __init__(self, train, validation, batch_size, strategy, seed):
        self._train = _as_arrays_or_dataset(train, "train_data")
        self._validation = (
            None
            if validation is None
            else _as_arrays_or_dataset(validation, "validation_data")
        )
        self._batch_size = batch_size
        self._replicas = strategy.num_replicas_in_sync
        self._multi_worker = _is_multi_worker(strategy)
        self._seed = seed
        self.has_validation = validation is not None

    def train(self, first_epoch, epochs):
        if isinstance(self._train, tf.data.Dataset):
            return _rebatched(self._train, self._batch_size, self._replicas)
        global_batch = (self._batch_size or DEFAULT_BATCH_SIZE) * self._replicas
        return _array_feed(
            self._train,
            global_batch,
            seed=self._seed,
            epochs=(first_epoch, epochs),
            drop_remainder=self._multi_worker,
        )

    def validation(self):
        if self._validation is None:
            return None
        if isinstance(self._validation, tf.data.Dataset):
            return _rebatched(self._validation, self._batch_size, self._replicas)
        global_batch = (self._batch_size or DEFAULT_BATCH_SIZE) * self._replicas
        return _array_feed(self._validation, global_batch)


def _as_arrays_or_dataset(data, name):
    if isinstance(data, tf.data.Dataset):
        return data
    if isinstance(data, list):
        data = tuple(data)
    if not isinstance(data, tuple):
        data = (data,)
    if not 1 <= len(data) <= 3 or not all(_is_array_like(part) for part in data):
        raise ValueError(
            f"Invalid value for argument `{name}`. Received: {name} of type "
            f"{_describe(data)}. "
            "Expected a tf.data.Dataset of batches, or arrays: x, (x, y) or "
            "(x, y, sample_weight), e.g. (x_train, y_train)."
        )
    sizes = {len(leaf) for leaf in tf.nest.flatten(data)}
    if len(sizes) != 1:
        raise ValueError(
            f"Invalid value for argument `{name}`: the arrays have different "
            f"numbers of examples: {sorted(sizes)}. Expected the same first "
            "dimension for x, y (and sample_weight)."
        )
    return data


def _is_array_like(part):
    leaves = tf.nest.flatten(part)
    return bool(leaves) and all(
        isinstance(leaf, (np.ndarray, tf.Tensor)) or hasattr(leaf, "__array__")
        for leaf in leaves
    )


def _describe(data):
    return ", ".join(type(part).__name__ for part in data)


def _array_feed(arrays, global_batch, seed=None, epochs=(0, 1), drop_remainder=False):
    """Batches of arrays; with a seed, shuffled in an order fixed by (seed, epoch).

    One pipeline streams epochs `epochs[0]` to `epochs[1] - 1`, so a resumed
    run starting at epoch 3 sees the same batches as an uninterrupted one.
    """
    tensors = tf.nest.map_structure(tf.convert_to_tensor, arrays)
    count = len(tf.nest.flatten(arrays)[0])

    @tf.autograph.experimental.do_not_convert  # no tensor-dependent Python here
    def epoch_indices(epoch):
        order = tf.range(count, dtype=tf.int64)
        if seed is not None:
            pair = tf.stack([tf.constant(seed, tf.int64), epoch])
            order = tf.random.experimental.stateless_shuffle(order, seed=pair)
        batches = tf.data.Dataset.from_tensor_slices(order)
        return batches.batch(global_batch, drop_remainder=drop_remainder)

    @tf.autograph.experimental.do_not_convert
    def gather(indices):
        return tf.nest.map_structure(lambda t: tf.gather(t, indices), tensors)

    steps = count // global_batch if drop_remainder else math.ceil(count / global_batch)
    dataset = tf.data.Dataset.range(*epochs).flat_map(epoch_indices)
    dataset = dataset.apply(
        tf.data.experimental.assert_cardinality(steps * (epochs[1] - epochs[0]))
    )
    dataset = dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    dataset = dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
    streams_epochs = epochs != (0, 1)
    return _Feed(dataset, steps if streams_epochs else None, global_batch)


def _rebatched(dataset, batch_size, replicas):
    """A batched dataset regrouped into global batches of batch_size x replicas.

    On one replica without `batch_size` the dataset is used as it is. Otherwise
    its batch size is read from its element spec, or from its first batch when
    the spec leaves it open.
    """
    if batch_size is None and replicas == 1:
        return _Feed(dataset, global_batch=_batch_size_of(dataset, peek=False))
    current = _batch_size_of(dataset, peek=True)
    global_batch = (batch_size or current) * replicas
    if current != global_batch:
        dataset = dataset.unbatch().batch(global_batch)
    return _Feed(dataset, global_batch=global_batch)


def _batch_size_of(dataset, peek):
    size = tf.nest.flatten(dataset.element_spec)[0].shape[:1]
    if size.rank and size[0] is not None:
        return int(size[0])
    if not peek:
        return None
    first = next(iter(dataset.take(1)))
    return int(tf.nest.flatten(first)[0].shape[0])


# The multi-worker loop.


def _custom_loop_fit(
    model, strategy, train, validation, *, epochs, initial_epoch, callbacks, verbose
):
    """What `model.fit` does, written out for `MultiWorkerMirroredStrategy`.

    Runs the model's own `train_step` and `test_step` under `strategy.run`
    (so the compiled loss, metrics, loss scaling and gradient accumulation
    all apply) and drives the same Keras callbacks. Logs at epoch end are
    averaged over all replicas of all workers.
    """
    chief = _is_chief(strategy)
    history = keras.callbacks.History()
    callback_list = keras.callbacks.CallbackList(
        callbacks + [history],
        add_progbar=chief and verbose != 0,
        model=model,
        verbose=(1 if verbose == "auto" else verbose) if chief else 0,
        epochs=epochs,
        steps=train.steps,
    )
    train_step = _replicated(model.train_step, strategy, model.jit_compile)
    test_step = _replicated(model.test_step, strategy, model.jit_compile)
    train_batches = _DistributedBatches(strategy, train)
    validation_batches = validation and _DistributedBatches(strategy, validation)
    model.stop_training = False
    callback_list.on_train_begin()
    logs = {}
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        outputs = None
        for step, batch in enumerate(train_batches.epoch()):
            callback_list.on_train_batch_begin(step)
            outputs = train_step(batch)
            callback_list.on_train_batch_end(step, _local_logs(outputs, strategy))
        logs = _global_logs(outputs, strategy)
        if validation_batches:
            logs.update(_evaluate(model, strategy, test_step, validation_batches))
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    return history


def _evaluate(model, strategy, test_step, batches):
    model.reset_metrics()
    outputs = None
    for batch in batches.epoch():
        outputs = test_step(batch)
    return {
        f"val_{name}": value for name, value in _global_logs(outputs, strategy).items()
    }


class _DistributedBatches:
    """Per-epoch batches of a distributed dataset (one stream when steps are known)."""

    def __init__(self, strategy, feed):
        self._dataset = strategy.experimental_distribute_dataset(feed.dataset)
        self._steps = feed.steps
        self._iterator = iter(self._dataset) if feed.steps else None

    def epoch(self):
        if self._iterator is None:
            return iter(self._dataset)
        return (next(self._iterator) for _ in range(self._steps))


def _replicated(step_function, strategy, jit_compile):
    if jit_compile:
        step_function = tf.function(step_function, jit_compile=True)

    @tf.function(reduce_retracing=True)
    def run(batch):
        return strategy.run(step_function, args=(batch,))

    return run


def _local_logs(outputs, strategy):
    return {
        name: float(strategy.experimental_local_results(value)[0])
        for name, value in outputs.items()
    }


def _global_logs(outputs, strategy):
    if outputs is None:
        return {}
    return {
        name: float(strategy.reduce("MEAN", value, axis=None))
        for name, value in outputs.items()
    }


# Argument checks.


def _check_choice(name, value, choices):
    def matches(choice):
        return value is choice if isinstance(choice, bool) else value == choice

    if not any(matches(choice) for choice in choices):
        raise ValueError(
            f"Invalid value for argument `{name}`. Received: {name}={value!r}. "
            f"Expected one of {', '.join(map(repr, choices))}."
        )


def _check_precision(precision):
    name = getattr(precision, "name", precision)
    if name not in PRECISIONS:
        raise ValueError(
            f"Invalid value for argument `precision`. Received: "
            f"precision={precision!r}. Expected one of "
            f"{', '.join(map(repr, PRECISIONS))}."
        )


def _check_strategy(strategy):
    devices_given = isinstance(strategy, (list, tuple)) and all(
        isinstance(device, str) for device in strategy
    )
    if strategy == "auto" or devices_given:
        return
    if not isinstance(strategy, tf.distribute.Strategy):
        raise ValueError(
            f"Invalid value for argument `strategy`. Received: strategy={strategy!r}. "
            "Expected 'auto', a list of device names such as ['/gpu:0', '/gpu:1'], "
            "or a tf.distribute.Strategy instance."
        )


def _check_int(name, value, default=..., minimum=1):
    """Checks an integer argument; `default=None` allows `None`."""
    if value is None and default is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        expected = f"an integer >= {minimum}"
        if default is None:
            expected = f"None or {expected}"
        raise ValueError(
            f"Invalid value for argument `{name}`. Received: {name}={value!r}. "
            f"Expected {expected}."
        )


def _check_early_stopping(early_stopping):
    if isinstance(early_stopping, keras.callbacks.EarlyStopping):
        return
    _check_int("early_stopping", early_stopping, None, minimum=0)


def _check_tensorboard(tensorboard):
    if not isinstance(tensorboard, (bool, dict)):
        raise ValueError(
            f"Invalid value for argument `tensorboard`. Received: "
            f"tensorboard={tensorboard!r}. Expected True, False or a dict of "
            "keras.callbacks.TensorBoard arguments, e.g. {'histogram_freq': 1}."
        )


def _check_fit_arguments(build_model, epochs, batch_size, run_name, callbacks):
    if not callable(build_model) or isinstance(build_model, keras.Model):
        raise ValueError(
            f"Invalid value for argument `build_model`. Received: {build_model!r}. "
            "Expected a function that returns a new keras.Model, e.g. "
            "lambda: dlkit.models.mlp(input_shape=(28, 28), num_classes=10)."
        )
    _check_int("epochs", epochs)
    _check_int("batch_size", batch_size, None)
    if (
        not isinstance(run_name, str)
        or not re.fullmatch(r"[\w.-]+", run_name)
        or (run_name in (".", ".."))
    ):
        raise ValueError(
            f"Invalid value for argument `run_name`. Received: run_name={run_name!r}. "
            "Expected a folder name of letters, digits, '_', '-' or '.', e.g. "
            "run_name='mnist_cnn'."
        )
    if callbacks is not None and not all(
        isinstance(callback, keras.callbacks.Callback) for callback in callbacks
    ):
        raise ValueError(
            f"Invalid value for argument `callbacks`. Received: "
            f"callbacks={callbacks!r}. Expected a list of "
            "keras.callbacks.Callback instances."
        )


def _check_model(model):
    if not isinstance(model, keras.Model):
        raise ValueError(
            "Invalid return value of `build_model`. Received: "
            f"{type(model).__name__}. Expected a keras.Model."
        )
    if not model.built:
        raise ValueError(
            f"The model returned by `build_model` ({model.name}) is not built, so "
            "its weights cannot be backed up. Start it with keras.Input(shape=...) "
            "or call model.build(input_shape) in `build_model`."
        )
