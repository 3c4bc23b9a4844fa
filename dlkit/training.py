"""The trainer: one training call for a laptop CPU, several GPUs, a TPU or machines.

`Trainer.fit` is `model.compile` + `model.fit` with a strategy and precision for
the hardware, TensorBoard logs and two things Keras lacks:

**A complete, atomic crash backup** in `runs/<run_name>/backup`: after a crash,
even a SIGKILL, the same call resumes and ends with the weights of an
uninterrupted run. Keras's `BackupAndRestore` falls short: it leaves out the
dropout seed states (a resumed run differs), writes weights and epoch one after
the other (a kill in between resumes from the wrong epoch), and knows the epoch
only inside `fit` (too late to restart the array pipeline there).

**A multi-worker loop.** Keras 3's `model.fit` fails under
`MultiWorkerMirroredStrategy` (keras-team/keras#20585), so there the trainer runs
the model's own `train_step`/`test_step` under `strategy.run`.
"""

import datetime
import functools
import itertools
import math
import os
import re
import reprlib
import shutil
import tempfile

import keras
import tensorflow as tf

from dlkit.env import DeviceInfo, list_devices

__all__ = ["Trainer"]

_PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
_MULTI_WORKER = tf.distribute.MultiWorkerMirroredStrategy
_STRATEGY_NAMES = {  # names of classes, as printed
    "_DefaultDistributionStrategy": "default",
    "CollectiveAllReduceStrategy": "MultiWorkerMirroredStrategy",
}
_EXPECTED = {  # what `_check` says each argument should be
    "strategy": "'auto', a list of device names or a tf.distribute.Strategy",
    "precision": f"one of {', '.join(map(repr, _PRECISIONS))}",
    "tensorboard": "True, False or a dict of keras.callbacks.TensorBoard arguments",
    "build_model": "a function that returns a new keras.Model, e.g. "
    "lambda: dlkit.models.mlp(input_shape=(28, 28), num_classes=10)",
    "epochs": "an integer >= 1",
    "batch_size": "None or an integer >= 1",
    "run_name": "a folder name of letters, digits, '_', '-' or '.', e.g. 'mnist_cnn'",
    "data": "a tf.data.Dataset of batches, or arrays with the same number of "
    "examples: x, (x, y) or (x, y, sample_weight)",
}


class Trainer:
    """Builds, compiles and trains models on whatever hardware is there.

    A `Trainer` holds how to train (strategy, precision, optimizer, loss,
    metrics, logging); each `fit` says what to train on which data. It builds
    a fresh model with `build_model()` inside the strategy scope and under the
    precision policy, and compiles it with a fresh optimizer made from
    `optimizer`. A model that `build_model` returns compiled (e.g. a GAN with
    its own `compile`) is used as it is; `loss`, `metrics` and
    `gradient_accumulation_steps` must then be unset.

    Example:
    ```python
    trainer = Trainer(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model, history = trainer.fit(
        lambda: dlkit.models.mlp((28, 28), num_classes=10, rescale=1 / 255),
        (x_train, y_train),
        validation_data=(x_test, y_test),
        epochs=20,
        run_name="mlp",
        callbacks=[keras.callbacks.EarlyStopping(patience=3)],
    )
    ```

    Args:
        strategy: `"auto"`, a list of device names for a `MirroredStrategy`
            (e.g. `["/gpu:0", "/gpu:1"]`), or a `tf.distribute.Strategy`.
            `"auto"` takes `MultiWorkerMirroredStrategy` when `TF_CONFIG` lists
            several workers, `TPUStrategy` on a TPU, `MirroredStrategy` over
            two or more GPUs, else the default strategy. Defaults to `"auto"`.
        precision: `"float32"`, `"mixed_float16"`, `"mixed_bfloat16"` or `"auto"`:
            `mixed_float16` on GPUs of compute capability 7.0 or more,
            `mixed_bfloat16` on TPUs, else `float32`. Defaults to `"auto"`.
        optimizer, loss, metrics, jit_compile: as for `model.compile`.
            Default to `"adam"`, `None`, `None` and `"auto"`.
        gradient_accumulation_steps: apply the optimizer every this many
            batches, on their mean gradient (a Keras optimizer argument).
            Defaults to `None` (every batch).
        seed: seed for the weights (`keras.utils.set_random_seed` before each
            build) and for the order of array inputs. Defaults to `None`
            (weights follow the global seed; array order uses 42).
        tensorboard: `True`, `False`, or a dict of arguments for
            `keras.callbacks.TensorBoard`, e.g. `{"histogram_freq": 1}`. A
            `TensorBoard` in `fit`'s callbacks replaces the trainer's own.
            Defaults to `True`.
        runs_dir: folder for logs and backups (the chief writes them; in a
            multi-worker run, on storage every worker reaches). Defaults to `"runs"`.

    Attributes:
        log_dir: the log directory of the last `fit`, set when it starts (so
            callbacks can write there too): `<runs_dir>/<run_name>/<time>`, or
            the `log_dir` of a `TensorBoard` in its callbacks. `None` before.
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
        seed=None,
        tensorboard=True,
        runs_dir="runs",
    ):
        given = isinstance(strategy, (list, tuple, tf.distribute.Strategy))
        _check("strategy", strategy, given or strategy == "auto")
        precision = getattr(precision, "name", precision)  # or a DTypePolicy
        _check("precision", precision, precision in _PRECISIONS)
        _check("tensorboard", tensorboard, isinstance(tensorboard, (bool, dict)))
        self._strategy_spec, self._strategy = strategy, None
        self._precision_spec = precision
        self.optimizer, self.loss, self.metrics = optimizer, loss, metrics
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.jit_compile, self.seed = jit_compile, seed
        self.tensorboard, self.runs_dir = tensorboard, os.fspath(runs_dir)
        self.log_dir = None

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
        return _select_precision(_strategy_devices(self.strategy))

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

        Prints one line first: strategy, precision, batch, log directory.

        Args:
            build_model: function with no arguments that returns a built
                `keras.Model` (pass hyperparameters with `functools.partial`
                or a lambda).
            train_data: a `tf.data.Dataset` of batches, or arrays: `x`,
                `(x, y)` or `(x, y, sample_weight)`. Arrays are shuffled
                every epoch in an order fixed by the seed and the epoch, so a
                resumed run sees the same batches.
            validation_data: same forms as `train_data`. Defaults to `None`.
            epochs: total number of epochs. Defaults to `1`.
            batch_size: the global batch, split between the replicas, as in
                `model.fit`. For arrays, `None` means 32. A dataset's own
                batches are the global batches unless `batch_size` rebatches
                it. Defaults to `None`.
            run_name: the run's folder in `runs_dir`: logs go to
                `<run_name>/<time>`, the backup to `<run_name>/backup`.
            callbacks: as for `model.fit`; in a multi-worker run every worker
                runs them. Defaults to `None`.
            verbose: as for `model.fit`. Defaults to `"auto"`.

        Returns:
            `(model, history)`: the trained `keras.Model` and its `History`.

        Raises:
            ValueError: when an argument has an invalid value, or when the
                backup of `run_name` belongs to a different model.
        """
        builder = callable(build_model) and not isinstance(build_model, keras.Model)
        _check("build_model", build_model, builder)
        size = 1 if batch_size is None else batch_size
        for name, value in (("epochs", epochs), ("batch_size", size)):
            _check(name, value, type(value) is int and value >= 1)
        folder = isinstance(run_name, str) and re.fullmatch(r"[\w.-]+", run_name)
        _check("run_name", run_name, folder and run_name not in (".", ".."))
        strategy, previous = self.strategy, keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.precision)
        try:
            model = self._build(build_model, strategy)
        finally:  # the precision policy holds for the build only
            keras.config.set_dtype_policy(previous)
        backup = _Backup(os.path.join(self.runs_dir, run_name), model, strategy)
        try:
            initial_epoch, log_dir = backup.restore()
            seed = 42 if self.seed is None else self.seed
            epoch_range, drop_remainder = (initial_epoch, epochs), backup.multi_worker
            dataset, steps, batch = _feed(
                "train_data", train_data, batch_size, seed, epoch_range, drop_remainder
            )
            validation = validation_data
            if validation is not None:
                validation = _feed("validation_data", validation, batch_size)[0]
            callbacks = self._callbacks(list(callbacks or []), log_dir, backup.chief)
            print(self._summary(run_name, batch, initial_epoch, backup))
            fit = model.fit
            if backup.multi_worker:
                fit = functools.partial(_multi_worker_fit, model, strategy)
            history = fit(
                dataset,
                validation_data=validation,
                epochs=epochs,
                steps_per_epoch=steps,
                initial_epoch=initial_epoch,
                callbacks=callbacks + [backup],
                verbose=verbose,
                shuffle=False,  # arrays: shuffled by the pipeline; a dataset: as is
            )
            backup.finished = True
        finally:
            backup.close()
        return model, history

    def _build(self, build_model, strategy):
        if self.seed is not None:
            keras.utils.set_random_seed(self.seed)
        with strategy.scope():
            model = build_model()
            if not isinstance(model, keras.Model) or not model.built:
                raise ValueError(  # the backup needs every variable from the start
                    "Invalid return value of `build_model`. Received: "
                    f"{reprlib.repr(model)}. Expected a built keras.Model: start it "
                    "with keras.Input(shape=...) or call model.build(input_shape)."
                )
            if not getattr(model, "compiled", False):
                self._compile(model)
            elif self.loss or self.metrics or self.gradient_accumulation_steps:
                raise ValueError(
                    "`build_model` returned a compiled model, which the trainer "
                    "uses as it is: leave `loss`, `metrics` and "
                    "`gradient_accumulation_steps` unset (pass them to "
                    "`model.compile` in `build_model`), or return an uncompiled model."
                )
            if not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
        return model

    def _compile(self, model):
        if self.loss is None:
            raise ValueError(
                "Missing argument `loss`: the trainer compiles the model that "
                "`build_model` returns. Pass e.g. Trainer(loss='mse'), or return "
                "a compiled model."
            )
        template = keras.optimizers.get(self.optimizer)  # a fresh one every fit
        config = template.get_config()
        if self.gradient_accumulation_steps:
            config["gradient_accumulation_steps"] = self.gradient_accumulation_steps
        model.compile(
            optimizer=type(template).from_config(config),
            loss=self.loss,
            metrics=self.metrics,
            jit_compile=self.jit_compile,
        )

    def _callbacks(self, callbacks, log_dir, chief):
        """Adds TensorBoard unless given or off; sets `log_dir`."""
        tensorboard = keras.callbacks.TensorBoard
        given = [c.log_dir for c in callbacks if isinstance(c, tensorboard)]
        self.log_dir = given[0] if given else log_dir
        if self.tensorboard is not False and not given and chief:
            options = self.tensorboard if isinstance(self.tensorboard, dict) else {}
            callbacks.append(_TensorBoard(log_dir, **options))
        return callbacks

    def _summary(self, run_name, batch, initial_epoch, backup):
        replicas = self.strategy.num_replicas_in_sync
        name = type(self.strategy).__name__
        batch = f"{batch} ({batch / replicas:g} x {replicas})" if batch else None
        line = (
            f"Training {run_name!r}: strategy {_STRATEGY_NAMES.get(name, name)}, "
            f"{replicas} replica{'s' if replicas > 1 else ''}, precision "
            f"{self.precision}, global batch {batch or 'as batched by the dataset'}"
            f", logs in {self._shown_log_dir(backup.run_folder)}"
        )
        if initial_epoch:
            line += f", resuming after epoch {initial_epoch} from {backup.folder}"
        return line

    def _shown_log_dir(self, run_folder):
        """The run's folder, not its timestamped subfolder (outputs stay stable)."""
        own = os.path.dirname(self.log_dir) == run_folder
        return os.path.join(run_folder, "") if own else self.log_dir


def _select_strategy(devices, cluster=None):
    """`"multi_worker"`, `"tpu"`, `"mirrored"` or `"default"` for these devices."""
    cluster = cluster or {}
    if len(cluster.get("chief", [])) + len(cluster.get("worker", [])) > 1:
        return "multi_worker"
    if any(device.kind == "TPU" for device in devices):
        return "tpu"
    if sum(device.kind == "GPU" for device in devices) > 1:
        return "mirrored"
    return "default"


def _select_precision(devices):
    """The mixed-precision policy for the devices the replicas run on."""
    if any(device.kind == "TPU" for device in devices):
        return "mixed_bfloat16"
    gpus = [device for device in devices if device.kind == "GPU"]
    if gpus and all(tuple(gpu.compute_capability or ()) >= (7, 0) for gpu in gpus):
        return "mixed_float16"
    return "float32"


def _resolve_strategy(spec):
    if isinstance(spec, tf.distribute.Strategy):
        return spec
    if isinstance(spec, (list, tuple)):
        return tf.distribute.MirroredStrategy(list(spec))
    cluster = tf.distribute.cluster_resolver.TFConfigClusterResolver().cluster_spec()
    return _auto_strategy(_select_strategy(list_devices(), cluster.as_dict()))


# TensorFlow's coordination service fails the whole run when a worker sends no
# heartbeat for 10 s, but a worker frozen that long (a busy laptop, a VM paused
# by its host) is not dead. XLA's distributed client waits 100 s; so do we. A
# worker that dies is still noticed within seconds: its connections close.
HEARTBEAT_TIMEOUT_SECONDS = 100


def _allow_slow_heartbeats():
    """Sets the heartbeat timeout before MultiWorkerMirroredStrategy starts the
    coordination service (no public API does); TensorFlow fills in the rest."""
    from tensorflow.python.eager import context

    task = tf.distribute.cluster_resolver.TFConfigClusterResolver().task_type
    if task in ("chief", "worker") and not context.context().coordination_service:
        context.context().configure_coordination_service(
            service_type="standalone",
            heartbeat_timeout_in_ms=HEARTBEAT_TIMEOUT_SECONDS * 1000,
        )


@functools.cache
def _auto_strategy(kind):
    """Creates each automatic strategy once per process (they hold resources)."""
    if kind == "multi_worker":
        _allow_slow_heartbeats()
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
    try:
        names = strategy.extended.worker_devices
    except RuntimeError:  # the default strategy: the first GPU, else the CPU
        return [device for device in devices if device.kind == "GPU"][:1] or devices
    by_name = {device.name: device for device in devices}
    names = [re.sub(r".*device:", "", name).upper() for name in names]  # "GPU:0"
    return [by_name.get(name, DeviceInfo(name.split(":")[0])) for name in names]


class _TensorBoard(keras.callbacks.TensorBoard):
    """Keras's `TensorBoard`, without idle per-batch work, flushed every epoch.

    Logging per epoch, Keras still calls `tf.summary.scalar` for every metric at
    every batch: nothing is written, but each batch waits 0.1-0.5 ms for it. The
    flush puts an epoch's curves on disk before its backup, so a killed and
    resumed run shows every epoch once.
    """

    def on_train_batch_end(self, batch, logs=None):
        per_batch = self.update_freq != "epoch"
        super().on_train_batch_end(batch, logs if per_batch else None)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        for writer in self._writers.values():
            writer.flush()


class _Backup(keras.callbacks.Callback):
    """Saves the whole training state at every epoch end; restores it before training.

    A `tf.train.CheckpointManager` over all model and optimizer variables (dropout
    seed states included), the finished epochs and the log directory: a checkpoint
    becomes the latest only once completely written, so a kill leaves the previous
    one usable. Workers other than the chief write to a throwaway folder.
    """

    def __init__(self, run_folder, model, strategy):
        super().__init__()
        self.run_folder, self.folder = run_folder, os.path.join(run_folder, "backup")
        self.multi_worker = isinstance(strategy, _MULTI_WORKER)
        self.chief = not self.multi_worker or strategy.extended.should_checkpoint
        self.finished = False  # set when fit returns: `close` deletes the backup
        self._write_folder = self.folder if self.chief else tempfile.mkdtemp()
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
            self._checkpoint, self._write_folder, max_to_keep=1
        )

    def restore(self):
        """Returns `(initial_epoch, log_dir)`: from the backup if there is one."""
        latest = tf.train.latest_checkpoint(self.folder)
        if latest is None:
            stamp = f"{datetime.datetime.now():%Y%m%d-%H%M%S}"
            self._log_dir.assign(os.path.join(self.run_folder, stamp))
            return 0, self._log_dir.numpy().decode()
        try:  # expect_partial: no second warning about a mismatch
            self._checkpoint.restore(latest).expect_partial().assert_consumed()
        except (AssertionError, ValueError, tf.errors.OpError) as error:
            raise ValueError(
                f"The backup in {self.folder} does not match the model of this run "
                "(it was saved from a different model or optimizer). Delete that "
                f"folder to start afresh, or choose another `run_name`. {error}"
            ) from None
        return int(self._epoch.numpy()), self._log_dir.numpy().decode()

    def on_epoch_end(self, epoch, logs=None):
        self._epoch.assign(epoch + 1)
        self._manager.save(checkpoint_number=epoch + 1)

    def close(self):
        """Deletes a finished run's backup (so running it again starts afresh)."""
        if self.finished or not self.chief:
            shutil.rmtree(self._write_folder, ignore_errors=True)


def _feed(name, data, batch_size, seed=None, epochs=(0, 1), drop_remainder=False):
    """`(dataset, steps per epoch if it streams all epochs, global batch)`: arrays
    stream epochs `epochs[0]` to `epochs[1] - 1`, shuffled by (seed, epoch)."""
    if isinstance(data, tf.data.Dataset):
        if batch_size is not None:
            return data.rebatch(batch_size), None, batch_size
        size = tf.nest.flatten(data.element_spec)[0].shape
        return data, None, size[0] if size.rank else None
    data = tuple(data) if isinstance(data, (tuple, list)) else (data,)
    leaves = tf.nest.flatten(data)
    arrays = leaves and all(hasattr(leaf, "__array__") for leaf in leaves)
    valid = 1 <= len(data) <= 3 and arrays and len(set(map(len, leaves))) == 1
    _check(name, data, valid, _EXPECTED["data"])
    global_batch, count = batch_size or 32, len(leaves[0])
    tensors = tf.nest.map_structure(tf.convert_to_tensor, data)

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
    total = steps * (epochs[1] - epochs[0])
    dataset = tf.data.Dataset.range(*epochs).flat_map(epoch_indices)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(total))
    dataset = dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()  # across workers, shard by example (not file)
    policy = tf.data.experimental.AutoShardPolicy.DATA
    options.experimental_distribute.auto_shard_policy = policy
    dataset = dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
    return dataset, None if epochs == (0, 1) else steps, global_batch


def _multi_worker_fit(
    model, strategy, x, *, validation_data, epochs, steps_per_epoch, **options
):
    """What `model.fit` does, written out for `MultiWorkerMirroredStrategy`.

    The model's own `train_step`/`test_step` (so compiled loss, metrics, loss
    scaling and gradient accumulation apply) run under `strategy.run`, with the
    same callbacks. Epoch-end logs are averaged over all replicas.
    """
    chief, verbose = strategy.extended.should_checkpoint, options["verbose"]
    callbacks = keras.callbacks.CallbackList(
        options["callbacks"],
        add_history=True,
        add_progbar=chief and verbose != 0,
        model=model,
        verbose=(1 if verbose == "auto" else verbose) if chief else 0,
        epochs=epochs,
        steps=steps_per_epoch,
    )
    train_step = _replicated(model.train_step, strategy, model.jit_compile)
    test_step = _replicated(model.test_step, strategy, model.jit_compile)
    train_epochs = _distributed_epochs(strategy, x, steps_per_epoch)
    if validation_data is not None:
        validation_data = _distributed_epochs(strategy, validation_data)
    model.stop_training = False
    callbacks.on_train_begin()
    logs = {}
    for epoch in range(options["initial_epoch"], epochs):
        model.reset_metrics()
        callbacks.on_epoch_begin(epoch)
        outputs = None
        for step, batch in enumerate(next(train_epochs)):
            callbacks.on_train_batch_begin(step)
            outputs = train_step(batch)
            callbacks.on_train_batch_end(step, _logs(outputs, strategy, local=True))
        logs = _logs(outputs, strategy)
        if validation_data is not None:
            model.reset_metrics()
            for batch in next(validation_data):
                outputs = test_step(batch)
            validation_logs = _logs(outputs, strategy).items()
            logs.update({f"val_{name}": value for name, value in validation_logs})
        callbacks.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callbacks.on_train_end(logs)
    return model.history


def _distributed_epochs(strategy, dataset, steps=None):
    """Yields each epoch's distributed batches (one stream when steps are known)."""
    dataset = strategy.experimental_distribute_dataset(dataset)
    stream = iter(dataset) if steps else None
    while True:
        yield itertools.islice(stream, steps) if stream else iter(dataset)


def _replicated(step, strategy, jit_compile):
    step = tf.function(step, jit_compile=True) if jit_compile else step

    def run(batch):
        return strategy.run(step, args=(batch,))

    return tf.function(run, reduce_retracing=True)


def _logs(outputs, strategy, local=False):
    """Floats of this replica's outputs, or of their mean over all replicas."""

    def value(tensor):
        if local:
            return strategy.experimental_local_results(tensor)[0]
        return strategy.reduce("MEAN", tensor, axis=None)

    return {name: float(value(tensor)) for name, tensor in (outputs or {}).items()}


def _check(name, value, valid, expected=None):
    """Raises Keras's "Invalid value for argument" `ValueError` unless `valid`."""
    if not valid:
        raise ValueError(
            f"Invalid value for argument `{name}`. Received: {name}="
            f"{reprlib.repr(value)}. Expected {expected or _EXPECTED[name]}."
        )
