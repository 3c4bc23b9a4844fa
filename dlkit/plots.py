"""Figures learners look at: training curves, image grids, confusion matrices.

Every function returns a `matplotlib.figure.Figure`. In a notebook, a figure
that is the last expression of a cell is shown as its output; show one held in
a variable with `display(figure)`, or save it with `figure.savefig(path)`.
Arguments `title`, `xlabel` and `ylabel` put text on the figure (none by default).
"""

import math

import matplotlib.pyplot as plt
import numpy as np

__all__ = [
    "plot_bars",
    "plot_class_histogram",
    "plot_confusion_matrix",
    "plot_curves",
    "plot_forecast",
    "plot_gan_history",
    "plot_gradient_flow",
    "plot_history",
    "plot_images",
    "plot_maps",
    "plot_roc_curve",
    "plot_trials",
]


def plot_history(history, metrics=None, title=None):
    """Plots training and validation curves from a Keras `History`.

    One panel a metric, the training curve solid and the validation curve
    dashed, so overfitting shows as the two lines parting.

    >>> history = model.fit(x, y, validation_split=0.2, epochs=5)  # doctest: +SKIP
    >>> dlkit.plots.plot_history(history)  # doctest: +SKIP

    Args:
        history: a `keras.callbacks.History` (what `fit` returns) or its
            `.history` dict.
        metrics: names of the metrics to plot. Defaults to `None`: every
            metric without a `val_` prefix, except the learning rate.
    """
    logs = getattr(history, "history", history)
    if metrics is None:
        metrics = [k for k in logs if not k.startswith("val_") and k != "learning_rate"]
    if not metrics or any(m not in logs for m in metrics):
        raise ValueError(
            f"Invalid value for argument `metrics`. Received: {metrics!r}. "
            f"Expected names logged in the history: {sorted(logs)}."
        )
    figure, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.2))
    for axis, metric in zip(np.atleast_1d(axes), metrics, strict=True):
        epochs = np.arange(1, len(logs[metric]) + 1)
        axis.plot(epochs, logs[metric], label="train")
        if f"val_{metric}" in logs:
            axis.plot(epochs, logs[f"val_{metric}"], "--", label="validation")
        axis.set(xlabel="epoch", ylabel=metric)
        axis.legend()
    if title:
        figure.suptitle(title)
    return _finish(figure)


def plot_images(images, labels=None, predictions=None, ncols=10):
    """Shows images in a grid, titled with their labels and predictions (red if wrong).

    Args:
        images: array of shape `(N, H, W)` or `(N, H, W, C)`.
        labels: the true labels, `N` integers. Defaults to `None`.
        predictions: the predicted labels, `N` integers. Defaults to `None`.
        ncols: images per row. Defaults to `10`.
    """
    images = np.asarray(images)
    ncols = min(ncols, len(images))
    nrows = math.ceil(len(images) / ncols)
    figure, axes = plt.subplots(nrows, ncols, figsize=(1.2 * ncols, 1.4 * nrows))
    for index, axis in enumerate(np.atleast_1d(axes).ravel()):
        axis.axis("off")
        if index >= len(images):
            continue
        axis.imshow(images[index].squeeze(), cmap="gray")
        caption = [] if labels is None else [str(int(labels[index]))]
        if predictions is not None:
            caption.append(f"pred {int(predictions[index])}")
        wrong = len(caption) == 2 and labels[index] != predictions[index]
        color = "red" if wrong else "black"
        axis.set_title("\n".join(caption), fontsize=8, color=color)
    return _finish(figure)


def plot_confusion_matrix(y_true, y_pred):
    """Plots the confusion matrix of true labels `y_true` and predictions `y_pred`.

    Rows are true classes, columns predicted classes; the diagonal holds the
    correct predictions. Uses scikit-learn's `ConfusionMatrixDisplay`.
    """
    from sklearn.metrics import ConfusionMatrixDisplay

    figure, axis = plt.subplots(figsize=(5.5, 5))
    ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, colorbar=False, cmap="Blues", ax=axis
    )
    return _finish(figure)


def plot_curves(curves, x=None, xlabel=None, ylabel=None, title=None, styles=None):
    """Plots several named curves on one set of axes.

    For anything that is not a training history: activation functions,
    learning-rate schedules, losses recorded by hand.

    >>> z = np.linspace(-4, 4, 101)
    >>> dlkit.plots.plot_curves({"tanh": np.tanh(z)}, x=z)  # doctest: +SKIP

    Args:
        curves: a dict mapping each label to its y values.
        x: the shared x values. Defaults to `None`: 0, 1, 2, ...
        styles: a dict mapping labels to matplotlib format strings such as
            `"--"`. Defaults to `None` (solid lines).
    """
    figure, axis = plt.subplots(figsize=(5.5, 3.5))
    for label, values in curves.items():
        xs = np.arange(len(values)) if x is None else x
        axis.plot(xs, np.asarray(values), (styles or {}).get(label, "-"), label=label)
    axis.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axis.legend()
    return _finish(figure)


def plot_roc_curve(y_true, scores, threshold=0.5):
    """Plots ROC curves of binary classifiers, marking one decision threshold.

    Each curve shows the true-positive against the false-positive rate as the
    threshold sweeps from 1 to 0; the dot marks `threshold`. The legend gives
    the area under each curve (AUC).

    Args:
        y_true: the true labels, 0 or 1.
        scores: a dict mapping each classifier's name to its predicted
            probabilities of class 1 (or a single array).
        threshold: the decision threshold to mark. Defaults to `0.5`.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    y_true = np.asarray(y_true)
    scores = scores if isinstance(scores, dict) else {"model": scores}
    figure, axis = plt.subplots(figsize=(4.5, 4.2))
    for name, score in scores.items():
        score = np.ravel(score)
        false_rate, true_rate, _ = roc_curve(y_true, score)
        auc = roc_auc_score(y_true, score)
        (line,) = axis.plot(false_rate, true_rate, label=f"{name} (AUC {auc:.3f})")
        predicted = score >= threshold
        point = (predicted[y_true == 0].mean(), predicted[y_true == 1].mean())
        axis.plot(*point, "o", color=line.get_color())
    axis.plot([0, 1], [0, 1], ":", color="gray", label="chance")
    axis.set(xlabel="false-positive rate", ylabel="true-positive rate")
    axis.set_title(f"ROC (dots: threshold {threshold})")
    axis.legend(loc="lower right")
    return _finish(figure)


def plot_maps(maps, titles=None, ncols=8, cmap="RdBu_r", centered=True, size=1.5):
    """Shows 2D arrays side by side: weight images, filters, feature maps.

    Unlike `plot_images`, the arrays may differ in size and hold negative
    values. With `centered` (the default), each color scale is centered on zero:
    with a diverging colormap, positive values are red, negative blue, zero white.

    Args:
        maps: a sequence of 2D arrays (or an array of shape `(N, H, W)`).
        titles: one title per map. Defaults to `None`.
        ncols: maps per row. Defaults to `8`.
        cmap: a matplotlib colormap name. Defaults to `"RdBu_r"`.
        size: width of each map in inches. Defaults to `1.5`.
    """
    maps = [np.asarray(m, dtype=float) for m in maps]
    ncols = min(ncols, len(maps))
    nrows = math.ceil(len(maps) / ncols)
    figure, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows))
    for index, axis in enumerate(np.atleast_1d(axes).ravel()):
        axis.axis("off")
        if index >= len(maps):
            continue
        limit = np.abs(maps[index]).max() or 1.0
        limits = {"vmin": -limit, "vmax": limit} if centered else {}
        axis.imshow(maps[index], cmap=cmap, **limits)
        if titles is not None:
            axis.set_title(str(titles[index]), fontsize=8)
    return _finish(figure)


def plot_gradient_flow(norms, title=None):
    """Plots gradient norms against how many steps back they travel, log scale.

    `norms` maps each label to its gradient norms, one a step, index 0 being
    the last step of the sequence. A straight falling line on the log scale is
    a gradient that vanishes exponentially; a rising one explodes.
    """
    figure, axis = plt.subplots(figsize=(5.5, 3.5))
    for label, values in norms.items():
        axis.semilogy(np.arange(len(values)), values, label=label)
    axis.set(xlabel="steps back from the last step", ylabel="gradient norm (log scale)")
    axis.set_title(title)
    axis.legend()
    return _finish(figure)


def plot_forecast(times, actual, forecasts, context=None, ylabel=None):
    """Plots a test window's true values against one or more forecasts.

    Args:
        times: the time of each test value (numbers or `datetime64`).
        actual: the true values of the test window.
        forecasts: a dict mapping each forecaster's name to its forecasts,
            one a test value.
        context: `(times, values)` of the series before the test window,
            drawn in gray. Defaults to `None`.
    """
    figure, axis = plt.subplots(figsize=(8, 3.5))
    if context is not None:
        axis.plot(*context, color="0.6", label="before the test window")
    axis.plot(times, actual, "k", linewidth=2, label="actual")
    styles = ("--", ":", "-.", "-")
    for index, (name, values) in enumerate(forecasts.items()):
        axis.plot(times, np.ravel(values), styles[index % 4], label=name)
    axis.set(xlabel="time", ylabel=ylabel)
    axis.legend(fontsize=8)
    return _finish(figure)


def plot_gan_history(history):
    """Plots a GAN's training dynamics: both losses, and what D says.

    Left: both losses per epoch, against their values at the equilibrium
    (D(x) = 1/2 everywhere): `2 ln 2` for D, `ln 2` for the non-saturating G
    loss. Right, if logged: D's mean output on real and generated images.

    Args:
        history: a `keras.callbacks.History` (or its `.history` dict) with
            `d_loss` and `g_loss`, and optionally `d_real` and `d_fake`.
    """
    logs = getattr(history, "history", history)
    panels = 2 if "d_real" in logs and "d_fake" in logs else 1
    figure, axes = plt.subplots(1, panels, figsize=(4.8 * panels, 3.3), squeeze=False)
    epochs = np.arange(1, len(logs["d_loss"]) + 1)
    losses, outputs = axes[0, 0], axes[0, -1]
    losses.plot(epochs, logs["d_loss"], label="discriminator")
    losses.plot(epochs, logs["g_loss"], label="generator")
    losses.axhline(2 * np.log(2), color="C0", linestyle=":", label="2 ln 2")
    losses.axhline(np.log(2), color="C1", linestyle=":", label="ln 2")
    losses.set(xlabel="epoch", ylabel="loss", title="losses")
    if panels == 2:
        outputs.plot(epochs, logs["d_real"], label="D(x), real")
        outputs.plot(epochs, logs["d_fake"], label="D(G(z)), generated")
        outputs.axhline(0.5, color="gray", linestyle=":", label="1/2")
        outputs.set(xlabel="epoch", ylabel="mean D output", ylim=(0, 1))
        outputs.set_title("what the discriminator says")
    for axis in axes[0]:
        axis.legend(fontsize=8)
    return _finish(figure)


def plot_class_histogram(labels, num_classes=10, title=None):
    """Plots how often each class occurs in `labels`, against the even share.

    Shows mode collapse at a glance: labelled by a classifier, the images of a
    GAN that draws only a few digits put tall bars on those classes only.
    """
    labels = np.asarray(labels, dtype=int).ravel()
    counts = np.bincount(labels, minlength=num_classes)[:num_classes]
    figure, axis = plt.subplots(figsize=(5.5, 3.0))
    axis.bar(np.arange(num_classes), counts)
    axis.axhline(len(labels) / num_classes, color="gray", linestyle=":", label="even")
    axis.set(xlabel="class", ylabel="count", xticks=np.arange(num_classes), title=title)
    axis.legend()
    return _finish(figure)


def plot_trials(table, reference=None):
    """Plots each trial's score against each numeric hyperparameter.

    One panel a hyperparameter, one dot a trial: a clear slope says it matters,
    a flat cloud that it matters little in the range searched. Hyperparameters
    sampled on a log scale get a log axis.

    Args:
        table: a DataFrame from `dlkit.tuning.results_table` (or several
            concatenated, with a `search` column to colour them by).
        reference: a score to draw as a dashed line on every panel, e.g. the
            untuned default's. Defaults to `None`.
    """
    skip = {"score", "status", "search", "epochs", "initial_epoch"}
    names = [c for c in table if c not in skip and table[c].dtype.kind in "biuf"]
    if not names or "score" not in table:
        raise ValueError(
            f"Invalid value for argument `table`. Received columns: {list(table)}. "
            "Expected a DataFrame from dlkit.tuning.results_table(tuner)."
        )
    groups = table.groupby("search", sort=False) if "search" in table else [("", table)]
    figure, axes = plt.subplots(
        1, len(names), figsize=(3.2 * len(names), 3.0), sharey=True, squeeze=False
    )
    for axis, name in zip(axes[0], names, strict=True):
        for label, group in groups:
            axis.scatter(group[name], group["score"], label=label or None, alpha=0.8)
        if reference is not None:
            axis.axhline(reference, color="gray", linestyle="--", label="default")
        axis.set_xlabel(name)
        _label_ticks(axis, table[name], name in table.attrs.get("log_scale", ()))
    axes[0, 0].set_ylabel(f"{table.attrs.get('objective', 'score')} (best epoch)")
    if "search" in table or reference is not None:
        axes[0, -1].legend(fontsize="small")
    return _finish(figure)


def plot_bars(values, xlabel=None, log=False, reference=None, title=None):
    """Plots named values as horizontal bars, one a row, first on top.

    For a few numbers a learner compares at a glance: throughputs relative
    to a baseline, differences between runs.

    >>> dlkit.plots.plot_bars({"float32": 1.0, "bf16": 0.5})  # doctest: +SKIP

    Args:
        values: a dict mapping each label to its value (positive if `log`).
        xlabel: the axis label. Defaults to `None`.
        log: a log-scale axis, for values spanning several powers of ten.
            Defaults to `False`.
        reference: a value to draw as a dashed line, e.g. the baseline's.
            Defaults to `None`.
    """
    labels, numbers = list(values), np.asarray(list(values.values()), dtype=float)
    if log and not (numbers > 0).all():
        raise ValueError(
            f"Invalid value for argument `values`. Received: {values!r}. "
            "Expected positive values on a log axis: pass log=False."
        )
    figure, axis = plt.subplots(figsize=(6, 0.45 * len(labels) + 1.2))
    axis.barh(labels, numbers, color=[f"C{i}" for i in range(len(labels))])
    axis.invert_yaxis()
    if log:
        axis.set_xscale("log")
    if reference is not None:
        axis.axvline(reference, color="gray", linestyle="--")
    axis.set(xlabel=xlabel, title=title)
    return _finish(figure)


def _label_ticks(axis, column, log_scale):
    """Ticks at a few integers tried, else at 1-2-5 steps (floats tried overlap)."""
    values = np.unique(column.dropna())
    if log_scale:
        axis.set_xscale("log")
        axis.minorticks_off()
    if column.dtype.kind in "iu" and len(values) <= 5:
        axis.set_xticks(values, [str(value) for value in values])
    elif log_scale:
        low, high = values.min() / 1.3, values.max() * 1.3
        ticks = _log_ticks(low, high)
        axis.set_xlim(min(low, ticks[0] / 1.05), max(high, ticks[-1] * 1.05))
        axis.set_xticks(ticks, [f"{tick:g}" for tick in ticks])


def _log_ticks(low, high, most=4):
    """2 to `most` ticks of 1, 2 or 5 x 10^k, or of decades, over low..high."""
    decades = range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 2)
    for steps in ((1, 2, 5), (1,)):
        grid = [step * 10.0**decade for decade in decades for step in steps]
        ticks = [tick for tick in grid if low <= tick <= high]
        if len(ticks) <= most:
            break
    if len(ticks) < 2:  # a narrow range: add the nearest steps on either side
        below, above = [t for t in grid if t < low], [t for t in grid if t > high]
        ticks = [below[-1], *ticks, above[0]]
    return ticks[:: math.ceil(len(ticks) / most)]


def _finish(figure):
    """Lays the figure out and closes it in pyplot, so a notebook shows it once."""
    figure.tight_layout()
    plt.close(figure)
    return figure
