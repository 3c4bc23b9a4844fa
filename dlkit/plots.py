"""Figures learners look at: training curves, image grids, confusion matrices.

Every function returns a `matplotlib.figure.Figure`. In a notebook, a figure
that is the last expression of a cell is shown as its output; show one held in
a variable with `display(figure)`, or save it with `figure.savefig(path)`.
"""

import math

import matplotlib.pyplot as plt
import numpy as np

LN2 = float(np.log(2.0))  # a GAN's losses at equilibrium are multiples of ln 2


def plot_history(history, metrics=None, title=None):
    """Plots training and validation curves from a Keras `History`.

    One panel a metric, the training curve solid and the validation curve
    dashed, so overfitting shows as the two lines parting.

    Example:

    >>> history = model.fit(x, y, validation_split=0.2, epochs=5)  # doctest: +SKIP
    >>> dlkit.plots.plot_history(history)  # doctest: +SKIP

    Args:
        history: a `keras.callbacks.History` (what `fit` returns) or its
            `.history` dict.
        metrics: names of the metrics to plot, e.g. `["loss", "accuracy"]`.
            Defaults to `None`: every metric without a `val_` prefix, except
            the learning rate.
        title: a title over the figure. Defaults to `None`.

    Returns:
        The figure.
    """
    logs = getattr(history, "history", history)
    if metrics is None:
        metrics = [k for k in logs if not k.startswith("val_") and k != "learning_rate"]
    unknown = [m for m in metrics if m not in logs]
    if unknown or not metrics:
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


def plot_images(images, labels=None, predictions=None, class_names=None, ncols=10):
    """Shows images in a grid, titled with their labels (and predictions).

    A prediction that differs from its label is written in red.

    Args:
        images: array of shape `(N, H, W)` or `(N, H, W, C)`.
        labels: the true labels, `N` integers. Defaults to `None`.
        predictions: the predicted labels, `N` integers. Defaults to `None`.
        class_names: names to show instead of integer labels. Defaults to
            `None`.
        ncols: images per row. Defaults to `10`.

    Returns:
        The figure.
    """
    images = np.asarray(images)
    count = len(images)
    if count == 0:
        raise ValueError("Received no images. Expected at least one image to plot.")
    nrows = math.ceil(count / ncols)
    figure, axes = plt.subplots(
        nrows, min(ncols, count), figsize=(1.2 * min(ncols, count), 1.4 * nrows)
    )
    for index, axis in enumerate(np.atleast_1d(axes).ravel()):
        axis.axis("off")
        if index >= count:
            continue
        image = images[index]
        axis.imshow(image.squeeze() if image.shape[-1] == 1 else image, cmap="gray")
        axis.set_title(
            _caption(index, labels, predictions, class_names),
            fontsize=8,
            color=_caption_color(index, labels, predictions),
        )
    return _finish(figure)


def _finish(figure):
    """Lays out the figure and hands it over to the caller.

    The figure is detached from pyplot so a notebook shows it once, as the
    cell's result, instead of a second time when the cell ends.
    """
    figure.tight_layout()
    plt.close(figure)
    return figure


def _name(value, class_names):
    return class_names[int(value)] if class_names is not None else str(int(value))


def _caption(index, labels, predictions, class_names):
    parts = []
    if labels is not None:
        parts.append(_name(labels[index], class_names))
    if predictions is not None:
        parts.append(f"pred {_name(predictions[index], class_names)}")
    return "\n".join(parts)


def _caption_color(index, labels, predictions):
    if labels is None or predictions is None:
        return "black"
    return "black" if labels[index] == predictions[index] else "red"


def plot_confusion_matrix(y_true, y_pred, class_names=None, normalize=None):
    """Plots the confusion matrix of a classifier's predictions.

    Rows are true classes, columns predicted classes; the diagonal holds the
    correct predictions. Uses scikit-learn's `ConfusionMatrixDisplay`.

    Args:
        y_true: the true labels.
        y_pred: the predicted labels.
        class_names: names of the classes, in label order. Defaults to `None`.
        normalize: `None` for counts, `"true"` for shares of each true class.
            Defaults to `None`.

    Returns:
        The figure.
    """
    from sklearn.metrics import ConfusionMatrixDisplay

    figure, axis = plt.subplots(figsize=(5.5, 5))
    ConfusionMatrixDisplay.from_predictions(
        y_true,
        y_pred,
        display_labels=class_names,
        normalize=normalize,
        values_format=".2f" if normalize else "d",
        colorbar=False,
        cmap="Blues",
        ax=axis,
    )
    return _finish(figure)


def plot_curves(curves, x=None, xlabel=None, ylabel=None, title=None, styles=None):
    """Plots several named curves on one set of axes.

    For anything that is not a training history: activation functions,
    learning-rate schedules, losses recorded by hand.

    Example:

    >>> z = np.linspace(-4, 4, 101)
    >>> dlkit.plots.plot_curves({"tanh": np.tanh(z)}, x=z)  # doctest: +SKIP

    Args:
        curves: a dict mapping each label to its y values.
        x: the shared x values. Defaults to `None`: 0, 1, 2, ...
        xlabel: label of the x axis. Defaults to `None`.
        ylabel: label of the y axis. Defaults to `None`.
        title: title of the axes. Defaults to `None`.
        styles: a dict mapping labels to matplotlib format strings such as
            `"--"`. Defaults to `None` (solid lines).

    Returns:
        The figure.
    """
    if not curves:
        raise ValueError(
            "Received no curves. Expected a dict such as {'loss': [1.0, 0.5]}."
        )
    figure, axis = plt.subplots(figsize=(5.5, 3.5))
    for label, values in curves.items():
        values = np.asarray(values)
        xs = np.arange(len(values)) if x is None else x
        axis.plot(xs, values, (styles or {}).get(label, "-"), label=label)
    axis.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axis.legend()
    return _finish(figure)


def plot_roc_curve(y_true, scores, threshold=0.5):
    """Plots ROC curves of binary classifiers, marking one decision threshold.

    Each curve shows the true-positive rate against the false-positive rate
    as the threshold on the predicted probability sweeps from 1 to 0; the dot
    marks `threshold`. The legend gives the area under each curve (AUC).

    Args:
        y_true: the true labels, 0 or 1.
        scores: a dict mapping each classifier's name to its predicted
            probabilities of class 1 (or a single array).
        threshold: the decision threshold to mark. Defaults to `0.5`.

    Returns:
        The figure.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    y_true = np.asarray(y_true)
    if not isinstance(scores, dict):
        scores = {"model": scores}
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
    axis.set(
        xlabel="false-positive rate",
        ylabel="true-positive rate",
        title=f"ROC (dots: threshold {threshold})",
    )
    axis.legend(loc="lower right")
    return _finish(figure)


def plot_maps(maps, titles=None, ncols=8, cmap="RdBu_r", centered=True, size=1.5):
    """Shows 2D arrays side by side: weight images, filters, feature maps.

    Unlike `plot_images`, the arrays may differ in size and hold negative
    values. With `centered`, each color scale is centered on zero, so with a
    diverging colormap positive values are red, negative blue, zero white.

    Args:
        maps: a sequence of 2D arrays (or an array of shape `(N, H, W)`).
        titles: one title per map. Defaults to `None`.
        ncols: maps per row. Defaults to `8`.
        cmap: a matplotlib colormap name. Defaults to `"RdBu_r"`.
        centered: whether to center each color scale on zero. Defaults to
            `True`.
        size: width of each map in inches. Defaults to `1.5`.

    Returns:
        The figure.
    """
    maps = [np.asarray(m, dtype=float) for m in maps]
    if not maps or any(m.ndim != 2 for m in maps):
        shapes = [m.shape for m in maps]
        raise ValueError(
            f"Invalid value for argument `maps`. Received shapes: {shapes}. "
            "Expected at least one 2D array."
        )
    ncols = min(ncols, len(maps))
    nrows = math.ceil(len(maps) / ncols)
    figure, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols, (size + 0.1) * nrows)
    )
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

    A straight falling line on the log scale is a gradient that vanishes
    exponentially; a rising one explodes.

    Example:

    >>> steps_back = np.arange(50)
    >>> dlkit.plots.plot_gradient_flow({"rnn": 0.8**steps_back})  # doctest: +SKIP

    Args:
        norms: a dict mapping each label to the gradient norms, one a step,
            index 0 being the last step of the sequence.
        title: title of the axes. Defaults to `None`.

    Returns:
        The figure.
    """
    if not norms:
        raise ValueError(
            "Received no gradient norms. Expected a dict such as "
            "{'SimpleRNN': [1.0, 0.3, 0.1]}."
        )
    figure, axis = plt.subplots(figsize=(5.5, 3.5))
    for label, values in norms.items():
        values = np.asarray(values, dtype=float)
        axis.semilogy(np.arange(len(values)), values, label=label)
    axis.set(
        xlabel="steps back from the last step",
        ylabel="gradient norm (log scale)",
        title=title,
    )
    axis.legend()
    return _finish(figure)


def plot_forecast(times, actual, forecasts, context=None, ylabel=None):
    """Plots a test window's true values against one or more forecasts.

    Example:

    >>> dlkit.plots.plot_forecast(  # doctest: +SKIP
    ...     months_test, y_test, {"naive": naive, "LSTM": lstm}
    ... )

    Args:
        times: the time of each test value (numbers or `datetime64`).
        actual: the true values of the test window.
        forecasts: a dict mapping each forecaster's name to its forecasts,
            one a test value.
        context: `(times, values)` of the series before the test window,
            drawn in gray. Defaults to `None`.
        ylabel: label of the y axis. Defaults to `None`.

    Returns:
        The figure.
    """
    times, actual = np.asarray(times), np.asarray(actual)
    wrong = {k: np.shape(v) for k, v in forecasts.items() if len(v) != len(actual)}
    if wrong or len(times) != len(actual):
        raise ValueError(
            f"Invalid forecast lengths. Received: {len(times)} times, "
            f"{len(actual)} actual values, forecasts of shapes {wrong}. Expected "
            "one time and one forecast per actual value."
        )
    figure, axis = plt.subplots(figsize=(8, 3.5))
    if context is not None:
        axis.plot(*context, color="0.6", label="before the test window")
    axis.plot(times, actual, "k", linewidth=2, label="actual")
    for (name, values), style in zip(forecasts.items(), _cycle(), strict=False):
        axis.plot(times, np.ravel(values), style, label=name)
    axis.set(xlabel="time", ylabel=ylabel)
    axis.legend(fontsize=8)
    return _finish(figure)


def _cycle():
    while True:
        yield from ("--", ":", "-.", "-")


def plot_gan_history(history):
    """Plots a GAN's training dynamics: both losses, and what D says.

    Left: the discriminator's and the generator's losses per epoch, with
    their values at the game's equilibrium (D(x) = 1/2 everywhere): `2 ln 2`
    for the discriminator's two terms, `ln 2` for the non-saturating
    generator loss. Right: the discriminator's mean output on real images
    and on generated ones, with the equilibrium at 1/2.

    Args:
        history: a `keras.callbacks.History` (or its `.history` dict) with
            `d_loss` and `g_loss`, and optionally `d_real` and `d_fake`.

    Returns:
        The figure.
    """
    logs = getattr(history, "history", history)
    missing = [name for name in ("d_loss", "g_loss") if name not in logs]
    if missing:
        raise ValueError(
            f"Invalid value for argument `history`: no {missing} in it. Received "
            f"metrics: {sorted(logs)}. Expected a GAN's history with 'd_loss' and "
            "'g_loss'."
        )
    panels = 2 if "d_real" in logs and "d_fake" in logs else 1
    figure, axes = plt.subplots(1, panels, figsize=(4.8 * panels, 3.3))
    axes = np.atleast_1d(axes)
    epochs = np.arange(1, len(logs["d_loss"]) + 1)
    axes[0].plot(epochs, logs["d_loss"], label="discriminator")
    axes[0].plot(epochs, logs["g_loss"], label="generator")
    axes[0].axhline(2 * LN2, color="C0", linestyle=":", label="2 ln 2")
    axes[0].axhline(LN2, color="C1", linestyle=":", label="ln 2")
    axes[0].set(xlabel="epoch", ylabel="loss", title="losses")
    axes[0].legend(fontsize=8)
    if panels == 2:
        axes[1].plot(epochs, logs["d_real"], label="D(x), real")
        axes[1].plot(epochs, logs["d_fake"], label="D(G(z)), generated")
        axes[1].axhline(0.5, color="gray", linestyle=":", label="1/2")
        axes[1].set(xlabel="epoch", ylabel="mean D output", ylim=(0, 1))
        axes[1].set_title("what the discriminator says")
        axes[1].legend(fontsize=8)
    return _finish(figure)


def plot_class_histogram(labels, num_classes=10, title=None):
    """Plots how often each class occurs, against the even share.

    Shows mode collapse at a glance: a GAN that draws only a few digits puts
    tall bars on a few classes and none on the others.

    Args:
        labels: integer class labels, e.g. a classifier's predictions for
            generated images.
        num_classes: the number of classes. Defaults to `10`.
        title: title of the axes. Defaults to `None`.

    Returns:
        The figure.
    """
    labels = np.asarray(labels, dtype=int).ravel()
    counts = np.bincount(labels, minlength=num_classes)[:num_classes]
    figure, axis = plt.subplots(figsize=(5.5, 3.0))
    axis.bar(np.arange(num_classes), counts)
    axis.axhline(len(labels) / num_classes, color="gray", linestyle=":", label="even")
    axis.set(xlabel="class", ylabel="count", xticks=np.arange(num_classes), title=title)
    axis.legend()
    return _finish(figure)
