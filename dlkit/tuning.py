"""keras-tuner glue: every trial of a search trained by the `dlkit` trainer.

The search space is written as in keras-tuner's guides: a function
`build_model(hp)` that draws each hyperparameter from `hp` and returns a
model, compiled with its tuned learning rate (or uncompiled, if the trainer
has a `loss`). `HyperModel` hands each trial to a `dlkit.training.Trainer`, so
trials get the trainer's strategy, precision policy, seed and crash backup.
The rest is keras-tuner's: the search algorithms (`RandomSearch`, `Hyperband`,
`BayesianOptimization`), distributed tuning, and trial logging: pass a
`keras.callbacks.TensorBoard` to `tuner.search` and keras-tuner logs each
trial to `<log_dir>/<trial_id>/execution<n>`, with its hyperparameters for
TensorBoard's HParams view. `results_table` lists the trials.

Example:

```python
def build_model(hp):
    model = models.mlp((28, 28), 10, width=hp.Int("width", 32, 256, step=32))
    learning_rate = hp.Float("learning_rate", 1e-4, 1e-2, sampling="log")
    model.compile(
        keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model

tuner = keras_tuner.RandomSearch(
    tuning.HyperModel(build_model, training.Trainer(seed=42)),
    objective="val_accuracy",
    max_trials=8,
    directory="runs/tuning",
)
tuner.search(
    x_train, y_train, validation_data=(x_val, y_val), epochs=3,
    callbacks=[keras.callbacks.TensorBoard("runs/tuning/logs")],
)
tuning.results_table(tuner)
```
"""

import keras_tuner
import pandas as pd

__all__ = ["HyperModel", "results_table"]


class HyperModel(keras_tuner.HyperModel):
    """A keras-tuner hypermodel whose trials train through a `dlkit` trainer.

    For every trial keras-tuner calls `build(hp)`, then `fit(hp, model, ...)`
    with the arguments given to `tuner.search`. `fit` builds the model again
    inside `trainer.fit`, so that it is created in the trainer's strategy
    scope, under its precision policy and from its seed, and trains it there.
    A Hyperband trial that continues an earlier one starts from the weights
    keras-tuner loaded into `model`.

    To train one configuration outside a search (the untuned default, or the
    best one found), call the trainer yourself:
    `trainer.fit(lambda: build_model(hp), train_data, ..., run_name="best")`.

    Example:

    >>> keras_tuner.Hyperband(HyperModel(build_model, trainer))  # doctest: +SKIP

    Args:
        build_model: a function of keras-tuner's `hp` returning a
            `keras.Model`.
        trainer: the `dlkit.training.Trainer` that trains every trial.
    """

    def __init__(self, build_model, trainer):
        super().__init__()
        self.build_model = build_model
        self.trainer = trainer

    def build(self, hp):
        """Returns `build_model(hp)`, with its optimizer built if it is compiled.

        Built, the optimizer takes the state that keras-tuner loads from a
        Hyperband checkpoint instead of warning that it cannot.
        """
        model = self.build_model(hp)
        if getattr(model, "optimizer", None) is not None:
            model.optimizer.build(model.trainable_variables)
        return model

    def fit(self, hp, model, x, y=None, epochs=1, initial_epoch=0, **kwargs):
        """Trains one trial with the trainer (keras-tuner calls this).

        Takes the arguments of `tuner.search`, as `model.fit` would:
        `validation_data`, `batch_size`, `callbacks` and `verbose` go to
        `trainer.fit`. The run is named `<project_name>_trial_<trial_id>`.

        Returns:
            The trial's `keras.callbacks.History`.
        """
        # Hyperband continues a trial from the weights keras-tuner loaded.
        weights = model.get_weights() if "tuner/trial_id" in hp.values else None

        def build_trial_model():
            trial_model = self.build(hp)
            if weights is not None:
                trial_model.set_weights(weights)
            return trial_model

        _, history = self.trainer.fit(
            build_trial_model,
            x if y is None else (x, y),
            epochs=epochs - initial_epoch,
            run_name=_run_name(kwargs.get("callbacks") or []),
            **kwargs,
        )
        return history


def _run_name(callbacks):
    """Names the run after the trial, found on the callback keras-tuner adds."""
    for callback in callbacks:
        if hasattr(callback, "tuner") and hasattr(callback, "trial"):
            return f"{callback.tuner.project_name}_trial_{callback.trial.trial_id}"
    raise ValueError(
        "HyperModel.fit runs the trials of tuner.search(...). To train one "
        "configuration, call trainer.fit(lambda: build_model(hp), ...) instead."
    )


def results_table(tuner):
    """Lists the trials of a keras-tuner search, best first, as a DataFrame.

    One row a trial, indexed by trial id: its hyperparameters, `score` (the
    objective at the trial's best epoch) and `status`. Hyperband trials also
    show `epochs`, the epoch they train up to, and `initial_epoch`, where a
    trial that continues an earlier one starts (0 for a new one).

    Example:

    >>> results_table(tuner).head(3)  # doctest: +SKIP

    Args:
        tuner: a keras-tuner tuner, after `search`.

    Returns:
        A `pandas.DataFrame`, best first (trials without a score last). Its
        `attrs` name the `objective`, its `direction` and the hyperparameters
        sampled on a `log_scale`, for `dlkit.plots.plot_trials`.
    """
    trials = list(tuner.oracle.trials.values())
    space = tuner.oracle.hyperparameters.space
    names = [hp.name for hp in space if not hp.name.startswith("tuner/")]
    if any("tuner/epochs" in trial.hyperparameters.values for trial in trials):
        names += ["tuner/epochs", "tuner/initial_epoch"]  # Hyperband's
    rows = [
        [trial.trial_id]
        + [trial.hyperparameters.values.get(name) for name in names]
        + [trial.score, trial.status]
        for trial in trials
    ]
    columns = [name.removeprefix("tuner/") for name in names]
    table = pd.DataFrame(rows, columns=["trial", *columns, "score", "status"])
    objective = tuner.oracle.objective
    table = table.set_index("trial").sort_values(
        "score", ascending=objective.direction == "min", na_position="last"
    )
    table.attrs = {
        "objective": objective.name,
        "direction": objective.direction,
        "log_scale": [hp.name for hp in space if getattr(hp, "sampling", "") == "log"],
    }
    return table
