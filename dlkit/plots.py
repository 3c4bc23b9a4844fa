"""Figures learners look at: training curves, image grids, confusion matrices.

Every function returns a `matplotlib.figure.Figure`. In a notebook, a figure
that is the last expression of a cell is shown as its output; show one held in
a variable with `display(figure)`, or save it with `figure.savefig(path)`.
"""

import math

import matplotlib.pyplot as plt
import numpy as np


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
