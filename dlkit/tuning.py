"""keras-tuner glue: any `dlkit.models` builder as a hypermodel trained by the trainer.

A search space is a function of keras-tuner's `hp` that returns the builder's
arguments; it is declared once, next to the builder, with `search_space`.
`HyperModel` turns a builder and its space into a `keras_tuner.HyperModel`
whose `fit` trains through a `dlkit.training.Trainer`, so every trial uses the
trainer's strategy, precision policy, backups and TensorBoard logs. The search
algorithms are keras-tuner's own (`RandomSearch`, `Hyperband`,
`BayesianOptimization`); `results_table` lists their trials.

Example:

```python
import keras_tuner
from dlkit import models, training, tuning

trainer = training.Trainer(
    loss="sparse_categorical_crossentropy", metrics=["accuracy"], seed=42
)
hypermodel = tuning.HyperModel(
    models.mlp, trainer, input_shape=(28, 28), num_classes=10, rescale=1 / 255
)
tuner = keras_tuner.RandomSearch(
    hypermodel,
    objective="val_accuracy",
    max_trials=8,
    seed=42,
    directory="runs/tuning",
    project_name="mlp",
)
tuner.search(x_train, y_train, validation_data=(x_val, y_val), epochs=3)
tuning.results_table(tuner)
```

Each trial trains with the trainer and logs next to keras-tuner's own trial
files, in `<directory>/<project_name>/trial_<id>/execution<n>/<timestamp>`,
with the trial's hyperparameters written for TensorBoard's HParams view.

Two names in a space are training hyperparameters rather than builder
arguments: `learning_rate` (the trainer's optimizer is rebuilt with it) and
`batch_size` (per replica).
"""

import copy
import inspect
import os

import keras
import keras_tuner

from dlkit import models

TRAINING_HYPERPARAMETERS = ("learning_rate", "batch_size")
SEARCH_FIT_ARGUMENTS = (
    "x",
    "y",
    "validation_data",
    "epochs",
    "initial_epoch",
    "batch_size",
    "callbacks",
    "verbose",
)

# A ValueError that also stops a running search at once (keras-tuner would
# otherwise record it as a failed trial and try the next configuration).
_SearchError = keras_tuner.errors.FatalValueError

# builder function -> function(hp) returning a dict of the builder's arguments.
SEARCH_SPACES = {}


def _check_callable(name, value):
    if not callable(value):
        raise ValueError(
            f"Invalid value for argument `{name}`. Received: {name}={value!r}. "
            "Expected a function."
        )


def search_space(builder):
    """Declares the search space of a model builder (used as a decorator).

    The decorated function takes keras-tuner's `HyperParameters` object `hp`
    and returns a dict of the builder's arguments, each drawn from `hp`. Give
    each hyperparameter the builder's default as its `default`, so that an
    empty `HyperParameters()` builds the untuned model. The names
    `learning_rate` and `batch_size` set the trainer's learning rate and the
    batch size per replica instead of builder arguments.

    Example:

    ```python
    def tiny_mlp(input_shape, units=16):
        ...

    @tuning.search_space(tiny_mlp)
    def tiny_mlp_space(hp):
        return {"units": hp.Int("units", 8, 64, step=8, default=16)}
    ```

    Args:
        builder: the model-building function the space belongs to.

    Returns:
        A decorator that registers the space in `SEARCH_SPACES` and returns
        the space function unchanged.
    """
    _check_callable("builder", builder)

    def register(space):
        _check_callable("space", space)
        SEARCH_SPACES[builder] = space
        return space

    return register


@search_space(models.logistic_regression)
def logistic_regression_space(hp):
    """L2 penalty and learning rate for `models.logistic_regression`."""
    return {
        "l2": hp.Choice("l2", [0.0, 1e-4, 1e-3, 1e-2], default=0.0),
        "learning_rate": _learning_rate(hp),
    }


@search_space(models.softmax_regression)
def softmax_regression_space(hp):
    """L2 penalty and learning rate for `models.softmax_regression`."""
    return logistic_regression_space(hp)


@search_space(models.mlp)
def mlp_space(hp):
    """Learning rate, depth, width and dropout for `models.mlp`."""
    return {
        "learning_rate": _learning_rate(hp),
        "depth": hp.Int("depth", 1, 3, default=2),
        "width": hp.Int("width", 32, 256, step=2, sampling="log", default=128),
        "dropout": hp.Float("dropout", 0.0, 0.5, step=0.1, default=0.0),
    }


@search_space(models.cnn)
def cnn_space(hp):
    """Filters, dropout and learning rate for `models.cnn`."""
    first = hp.Choice("filters_1", [16, 32, 64], default=32)
    return {
        "filters": (first, first * 2),
        "dropout": hp.Float("dropout", 0.0, 0.5, step=0.1, default=0.5),
        "learning_rate": _learning_rate(hp),
    }


@search_space(models.resnet)
def resnet_space(hp):
    """Width, blocks per stage and learning rate for `models.resnet`."""
    width = hp.Choice("filters_1", [8, 16, 32], default=16)
    return {
        "filters": (width, width * 2, width * 4),
        "blocks_per_stage": hp.Int("blocks_per_stage", 1, 2, default=1),
        "learning_rate": _learning_rate(hp),
    }


@search_space(models.text_classifier)
def text_classifier_space(hp):
    """Sizes, cell type, direction, dropout, learning rate: `models.text_classifier`."""
    return {
        "embedding_dim": hp.Choice("embedding_dim", [32, 64, 128], default=64),
        "units": hp.Choice("units", [32, 64, 128], default=64),
        "rnn": hp.Choice("rnn", ["lstm", "gru"], default="lstm"),
        "bidirectional": hp.Boolean("bidirectional", default=False),
        "dropout": hp.Float("dropout", 0.0, 0.5, step=0.1, default=0.0),
        "learning_rate": _learning_rate(hp),
    }


@search_space(models.bag_of_words_classifier)
def bag_of_words_classifier_space(hp):
    """Hidden units, L2 penalty and learning rate for the bag-of-words model."""
    return {
        "hidden_units": hp.Choice("hidden_units", [0, 16, 64], default=0),
        "l2": hp.Choice("l2", [0.0, 1e-4, 1e-3], default=0.0),
        "learning_rate": _learning_rate(hp),
    }


@search_space(models.sequence_regressor)
def sequence_regressor_space(hp):
    """Units, cell type, dropout and learning rate for `models.sequence_regressor`."""
    return {
        "units": hp.Choice("units", [16, 32, 64], default=32),
        "rnn": hp.Choice("rnn", ["lstm", "gru"], default="lstm"),
        "dropout": hp.Float("dropout", 0.0, 0.5, step=0.1, default=0.0),
        "learning_rate": _learning_rate(hp),
    }


@search_space(models.char_language_model)
def char_language_model_space(hp):
    """Units, layers, dropout and learning rate for `models.char_language_model`."""
    return {
        "units": hp.Choice("units", [128, 256, 512], default=256),
        "num_layers": hp.Int("num_layers", 1, 2, default=1),
        "dropout": hp.Float("dropout", 0.0, 0.3, step=0.1, default=0.0),
        "learning_rate": _learning_rate(hp),
    }


def _learning_rate(hp):
    return hp.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=1e-3)


class HyperModel(keras_tuner.HyperModel):
    """A model builder and its search space as a keras-tuner hypermodel.

    `build(hp)` calls the builder with the fixed arguments given here and the
    arguments the search space draws from `hp`. keras-tuner calls `fit` for
    every trial; it trains a fresh model through `trainer`, logs to the
    trial's folder (TensorBoard scalars and HParams) and returns the
    `keras.callbacks.History`. To train one configuration yourself (the
    default one, or the best one found), use `train`.

    Example:

    ```python
    hypermodel = HyperModel(
        models.mlp, trainer, input_shape=(28, 28), num_classes=10, rescale=1 / 255
    )
    tuner = keras_tuner.Hyperband(
        hypermodel, objective="val_accuracy", max_epochs=3, seed=42,
        directory="runs/tuning", project_name="hyperband",
    )
    tuner.search(x_train, y_train, validation_data=(x_val, y_val))
    best = tuner.get_best_hyperparameters()[0]
    model, history = hypermodel.train(
        best, (x_train, y_train), (x_val, y_val), epochs=3, run_name="best"
    )
    ```

    Args:
        builder: a model-building function, or the name of one in
            `dlkit.models` (e.g. `"mlp"`).
        trainer: the `dlkit.training.Trainer` that trains every trial (loss,
            metrics, optimizer, strategy, precision).
        space: a function of `hp` returning the builder's tuned arguments.
            Defaults to `None`: the space declared for `builder` with
            `search_space`.
        name: a name for the hypermodel. Defaults to `None` (the builder's
            name).
        **fixed: builder arguments that are not tuned, e.g.
            `input_shape=(28, 28), num_classes=10`.

    Raises:
        ValueError: when the builder is unknown or has no declared space.
    """

    def __init__(self, builder, trainer, space=None, name=None, **fixed):
        builder = _resolve_builder(builder)
        _check_trainer(trainer)
        space = _resolve_space(builder, space)
        _check_arguments(builder, fixed, "fixed argument")
        super().__init__(name=name or builder.__name__)
        self.builder = builder
        self.trainer = trainer
        self.space = space
        self.fixed = fixed
        self._executions = {}

    def build(self, hp):
        """Builds the (uncompiled) model for the hyperparameters `hp`."""
        return self.builder(**self.fixed, **self.arguments(hp)[0])

    def arguments(self, hp):
        """Splits the space's values into builder and training arguments.

        Args:
            hp: a `keras_tuner.HyperParameters`; an empty one gives the
                defaults.

        Returns:
            `(builder_arguments, training_arguments)`: two dicts.
        """
        values = self.space(hp)
        if not isinstance(values, dict):
            raise _SearchError(
                f"Invalid return value of the search space {_name(self.space)}. "
                f"Received: {values!r}. Expected a dict of the builder's "
                "arguments, e.g. {'width': hp.Int('width', 32, 256)}."
            )
        training = {k: v for k, v in values.items() if k in TRAINING_HYPERPARAMETERS}
        tuned = {k: v for k, v in values.items() if k not in training}
        _check_arguments(self.builder, tuned, "argument from the search space")
        both = sorted(set(tuned) & set(self.fixed))
        if both:
            raise _SearchError(
                f"Arguments {both} are both fixed (passed to HyperModel) and "
                f"tuned (returned by {_name(self.space)}). Expected each "
                "argument in one place: remove it from one of them."
            )
        return tuned, training

    def fit(self, hp, model, *args, **kwargs):
        """Trains one trial through the trainer (keras-tuner calls this).

        Takes what was given to `tuner.search` (`x`, `y`, `validation_data`,
        `epochs`, `batch_size`, `callbacks`, `verbose`). Hyperband's
        continued trials start from `model`'s weights (loaded by
        keras-tuner) and train the remaining `epochs - initial_epoch`
        epochs.

        Returns:
            The `keras.callbacks.History` of the trial.
        """
        callbacks = list(kwargs.pop("callbacks", None) or [])
        tuner, trial = _tuner_and_trial(callbacks)
        options = _search_options(args, kwargs)
        execution = self._executions.get(trial.trial_id, 0)
        self._executions[trial.trial_id] = execution + 1
        trial_dir = tuner.get_trial_dir(trial.trial_id)
        run_name = f"execution{execution}"
        warm_start = model.get_weights() if "tuner/trial_id" in hp.values else None
        _, history = self._fit(
            hp,
            options,
            runs_dir=trial_dir,
            run_name=run_name,
            callbacks=callbacks,
            weights=warm_start,
        )
        _write_hparams(os.path.join(trial_dir, run_name), hp, trial.trial_id)
        return history

    def train(
        self,
        hp,
        train_data,
        validation_data=None,
        *,
        epochs=1,
        run_name,
        batch_size=None,
        callbacks=None,
        verbose="auto",
    ):
        """Trains the model of one configuration with the trainer, outside a search.

        Logs go to the trainer's `runs_dir/<run_name>` as for `Trainer.fit`.

        Example:

        ```python
        default = keras_tuner.HyperParameters()  # every hyperparameter's default
        model, history = hypermodel.train(
            default, (x_train, y_train), (x_val, y_val), epochs=3, run_name="default"
        )
        ```

        Args:
            hp: the `keras_tuner.HyperParameters` to train with, e.g.
                `tuner.get_best_hyperparameters()[0]`.
            train_data, validation_data, epochs, run_name, batch_size,
            callbacks, verbose: as for `Trainer.fit`. A `batch_size` in the
                search space wins over this one.

        Returns:
            `(model, history)`, as `Trainer.fit`.
        """
        options = {
            "train_data": train_data,
            "validation_data": validation_data,
            "epochs": epochs,
            "batch_size": batch_size,
            "verbose": verbose,
        }
        return self._fit(
            hp,
            options,
            runs_dir=self.trainer.runs_dir,
            run_name=run_name,
            callbacks=list(callbacks or []),
        )

    def _fit(self, hp, options, *, runs_dir, run_name, callbacks, weights=None):
        _, training = self.arguments(hp)
        trainer = _trainer_copy(self.trainer, runs_dir, training.get("learning_rate"))

        def build_model():
            model = self.build(hp)
            if weights is not None:
                model.set_weights(weights)
            return model

        return trainer.fit(
            build_model,
            options["train_data"],
            options["validation_data"],
            epochs=options["epochs"],
            batch_size=training.get("batch_size", options["batch_size"]),
            run_name=run_name,
            callbacks=callbacks,
            verbose=options["verbose"],
        )


def results_table(tuner):
    """Lists the trials of a keras-tuner search, best first, as a pandas DataFrame.

    One row a trial (indexed by trial id): its hyperparameter values, the
    objective's best value (`score`) and the trial's status. Hyperband
    trials also show `epochs` (the epoch they train up to) and
    `initial_epoch` (where a continued trial starts; 0 for a new one).

    Example:

    >>> results_table(tuner).head(3)  # doctest: +SKIP

    Args:
        tuner: a keras-tuner tuner, after `search`.

    Returns:
        A `pandas.DataFrame`, sorted by score (best first; unfinished trials
        last). Its `attrs` hold the `objective`, its `direction` and the
        hyperparameters sampled on a `log_scale`, for `plot_trials`.
    """
    import pandas as pd

    if not isinstance(tuner, keras_tuner.Tuner):
        raise ValueError(
            f"Invalid value for argument `tuner`. Received: {tuner!r}. Expected a "
            "keras-tuner tuner such as keras_tuner.RandomSearch(...), after search."
        )
    objective = tuner.oracle.objective
    rows = [_row(trial) for trial in tuner.oracle.trials.values()]
    table = pd.DataFrame(rows, columns=_columns(rows)).set_index("trial")
    table = table.sort_values(
        "score", ascending=objective.direction == "min", na_position="last"
    )
    space = tuner.oracle.hyperparameters.space
    table.attrs = {
        "objective": objective.name,
        "direction": objective.direction,
        "log_scale": [hp.name for hp in space if getattr(hp, "sampling", "") == "log"],
    }
    return table


def _row(trial):
    row = {"trial": trial.trial_id}
    for name, value in trial.hyperparameters.values.items():
        if name in ("tuner/epochs", "tuner/initial_epoch"):
            row[name.split("/")[1]] = value
        elif not name.startswith("tuner/"):
            row[name] = value
    row["score"] = trial.score
    row["status"] = trial.status
    return row


def _columns(rows):
    columns = []
    for row in rows:
        columns += [name for name in row if name not in columns]
    last = ["epochs", "initial_epoch", "score", "status"]
    return [c for c in columns if c not in last] + [c for c in last if c in columns]


def plot_trials(table, reference=None):
    """Plots each trial's score against each numeric hyperparameter.

    One panel a hyperparameter; each dot is a trial. A cloud with a clear
    slope says the hyperparameter matters; a flat one says it matters little
    (within the range searched). Hyperparameters sampled on a log scale get
    a logarithmic axis.

    Example:

    >>> plot_trials(results_table(tuner))  # doctest: +SKIP

    Args:
        table: a DataFrame from `results_table` (or several concatenated,
            with a `search` column to colour them by).
        reference: a score to draw as a dashed line on every panel, e.g.
            the untuned default's. Defaults to `None` (no line).

    Returns:
        The `matplotlib.figure.Figure`.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    names = _hyperparameter_columns(table)
    groups = [("trials", table)]
    if "search" in table:
        groups = table.groupby("search", sort=False)
    figure, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.0))
    axes = np.atleast_1d(axes)
    for axis, name in zip(axes, names, strict=True):
        for label, group in groups:
            axis.scatter(group[name], group["score"], label=label, alpha=0.8)
        if reference is not None:
            axis.axhline(reference, color="gray", linestyle="--", label="default")
        axis.set_xlabel(name)
        _label_ticks(axis, table[name], name in table.attrs.get("log_scale", ()))
    axes[0].set_ylabel(f"{table.attrs.get('objective', 'score')} (best epoch)")
    if len(groups) > 1 or reference is not None:
        axes[-1].legend(fontsize="small")
    figure.tight_layout()
    plt.close(figure)
    return figure


def _label_ticks(axis, values, log_scale):
    """Ticks at the values tried when there are few; 1-2-5 steps on log axes."""
    import matplotlib.ticker as ticker

    if log_scale:
        axis.set_xscale("log")
        axis.xaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
        axis.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        axis.xaxis.set_minor_formatter(ticker.NullFormatter())
    tried = sorted(set(values.dropna()))
    if len(tried) <= 5:
        axis.set_xticks(tried, [f"{value:g}" for value in tried])


def _hyperparameter_columns(table):
    skip = {"score", "status", "search", "epochs", "initial_epoch"}
    names = [
        name
        for name in table.columns
        if name not in skip and table[name].dtype.kind in "biuf"
    ]
    if not names or "score" not in table:
        raise ValueError(
            "Invalid value for argument `table`: expected a `score` column and "
            f"numeric hyperparameter columns. Received columns: {list(table.columns)}."
            " Pass a DataFrame from dlkit.tuning.results_table(tuner)."
        )
    return names


# Helpers.


def _resolve_builder(builder):
    if isinstance(builder, str):
        function = getattr(models, builder, None)
        if not callable(function) or builder.startswith("_"):
            known = sorted(
                f.__name__ for f in SEARCH_SPACES if f.__module__ == models.__name__
            )
            raise ValueError(
                f"Invalid value for argument `builder`. Received: builder={builder!r}. "
                f"Expected a function, or the name of a dlkit.models builder: {known}."
            )
        return function
    _check_callable("builder", builder)
    return builder


def _resolve_space(builder, space):
    if space is not None:
        _check_callable("space", space)
        return space
    if builder not in SEARCH_SPACES:
        raise ValueError(
            f"No search space declared for the builder {_name(builder)}. Declare "
            "one next to it with @dlkit.tuning.search_space(builder) on a function "
            "of `hp` returning the builder's arguments, or pass space=... to "
            "HyperModel."
        )
    return SEARCH_SPACES[builder]


def _check_trainer(trainer):
    if not (hasattr(trainer, "fit") and hasattr(trainer, "runs_dir")):
        raise ValueError(
            f"Invalid value for argument `trainer`. Received: trainer={trainer!r}. "
            "Expected a dlkit.training.Trainer, e.g. Trainer(loss="
            "'sparse_categorical_crossentropy', metrics=['accuracy'])."
        )


def _check_arguments(builder, arguments, kind):
    parameters = inspect.signature(builder).parameters
    if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        return
    unknown = sorted(set(arguments) - set(parameters))
    if unknown:
        raise _SearchError(
            f"Invalid {kind}(s) {unknown} for the builder {_name(builder)}. "
            f"Expected names among its parameters {list(parameters)}, or "
            f"{list(TRAINING_HYPERPARAMETERS)} in a search space."
        )


def _name(function):
    return getattr(function, "__qualname__", repr(function))


def _tuner_and_trial(callbacks):
    """Finds the trial being run from the callback keras-tuner adds to each fit."""
    for callback in callbacks:
        tuner = getattr(callback, "tuner", None)
        trial = getattr(callback, "trial", None)
        if isinstance(tuner, keras_tuner.Tuner) and trial is not None:
            return tuner, trial
    raise _SearchError(
        "HyperModel.fit is called by a keras-tuner tuner during tuner.search(...); "
        "it received no trial. To train one configuration yourself, use "
        "hypermodel.train(hp, train_data, validation_data, run_name=...)."
    )


def _search_options(args, kwargs):
    """The trainer's arguments from what was passed to `tuner.search`."""
    unknown = sorted(set(kwargs) - set(SEARCH_FIT_ARGUMENTS))
    if unknown or len(args) > 2:
        raise _SearchError(
            f"Unsupported argument(s) for tuner.search: {unknown or args[2:]}. "
            f"Expected x, y and keyword arguments among {SEARCH_FIT_ARGUMENTS}; "
            "set everything else on the dlkit Trainer."
        )
    x = kwargs.get("x", args[0] if args else None)
    y = kwargs.get("y", args[1] if len(args) > 1 else None)
    if x is None:
        raise _SearchError(
            "Missing training data: tuner.search received no `x`. Expected "
            "tuner.search(x_train, y_train, validation_data=(x_val, y_val), ...) "
            "or tuner.search(train_dataset, validation_data=validation_dataset)."
        )
    return {
        "train_data": x if y is None else (x, y),
        "validation_data": kwargs.get("validation_data"),
        "epochs": kwargs.get("epochs", 1) - kwargs.get("initial_epoch", 0),
        "batch_size": kwargs.get("batch_size"),
        "verbose": kwargs.get("verbose", "auto"),
    }


def _trainer_copy(trainer, runs_dir, learning_rate):
    """The trainer with another `runs_dir` (and learning rate); same strategy."""
    trainer.strategy  # noqa: B018 -- create the strategy once, shared by the copies
    trainer = copy.copy(trainer)
    trainer.runs_dir = os.fspath(runs_dir)
    if learning_rate is not None:
        optimizer = keras.optimizers.get(trainer.optimizer)
        config = optimizer.get_config()
        config["learning_rate"] = float(learning_rate)
        trainer.optimizer = type(optimizer).from_config(config)
    return trainer


def _write_hparams(run_dir, hp, trial_id):
    """Writes the trial's hyperparameters into its TensorBoard log for HParams."""
    if not os.path.isdir(run_dir):  # TensorBoard off, or not the chief worker
        return
    logs = sorted(
        entry.path
        for entry in os.scandir(run_dir)
        if entry.is_dir() and entry.name != "backup"
    )
    if not logs:
        return
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hparams_api

    values = {k: v for k, v in hp.values.items() if not k.startswith("tuner/")}
    writer = tf.summary.create_file_writer(logs[-1])
    with writer.as_default():
        hparams_api.hparams(values, trial_id=str(trial_id))
    writer.close()
