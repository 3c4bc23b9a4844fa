import matplotlib
import numpy as np
import pytest

from dlkit import plots

matplotlib.use("Agg")


def test_plot_history_draws_train_and_validation_curves():
    history = {
        "loss": [1.0, 0.5, 0.3],
        "val_loss": [1.1, 0.7, 0.6],
        "accuracy": [0.5, 0.8, 0.9],
        "val_accuracy": [0.4, 0.7, 0.8],
        "learning_rate": [0.1, 0.1, 0.1],
    }
    figure = plots.plot_history(history)
    axes = figure.get_axes()
    assert [a.get_ylabel() for a in axes] == ["loss", "accuracy"]
    assert [len(a.get_lines()) for a in axes] == [2, 2]
    np.testing.assert_allclose(axes[0].get_lines()[1].get_ydata(), [1.1, 0.7, 0.6])


def test_plot_history_names_unknown_metrics():
    with pytest.raises(ValueError, match=r"Received: \['acc'\].*'loss'"):
        plots.plot_history({"loss": [1.0]}, metrics=["acc"])


def test_plot_images_marks_wrong_predictions_in_red():
    images = np.zeros((3, 28, 28), np.uint8)
    figure = plots.plot_images(images, labels=[1, 2, 3], predictions=[1, 5, 3], ncols=3)
    titles = [a.title for a in figure.get_axes()]
    assert [t.get_text() for t in titles] == ["1\npred 1", "2\npred 5", "3\npred 3"]
    assert titles[1].get_color() == "red" and titles[0].get_color() == "black"


def test_plot_confusion_matrix_counts():
    figure = plots.plot_confusion_matrix(
        [0, 1, 1, 2], [0, 1, 2, 2], class_names=["a", "b", "c"]
    )
    texts = [t.get_text() for t in figure.get_axes()[0].texts]
    assert texts == ["1", "0", "0", "0", "1", "1", "0", "0", "1"]


def test_plot_curves_draws_one_line_per_label():
    x = np.linspace(-1, 1, 5)
    figure = plots.plot_curves({"a": x**2, "b": x}, x=x, xlabel="z", styles={"b": "--"})
    axis = figure.get_axes()[0]
    assert [line.get_label() for line in axis.get_lines()] == ["a", "b"]
    assert axis.get_lines()[1].get_linestyle() == "--"
    assert axis.get_xlabel() == "z"
    with pytest.raises(ValueError, match="Received no curves"):
        plots.plot_curves({})


def test_plot_roc_curve_reports_auc_and_marks_the_threshold():
    y_true = np.array([0, 0, 1, 1])
    figure = plots.plot_roc_curve(y_true, {"perfect": [0.1, 0.2, 0.8, 0.9]})
    axis = figure.get_axes()[0]
    labels = [line.get_label() for line in axis.get_lines()]
    assert labels[0] == "perfect (AUC 1.000)" and labels[-1] == "chance"
    dot = axis.get_lines()[1]
    assert (dot.get_xdata()[0], dot.get_ydata()[0]) == (0.0, 1.0)


def test_plot_maps_centers_each_color_scale_on_zero():
    maps = [np.array([[-1.0, 2.0], [0.0, 1.0]]), np.ones((4, 4))]
    figure = plots.plot_maps(maps, titles=["w", "ones"])
    axes = figure.get_axes()
    assert axes[0].get_images()[0].get_clim() == (-2.0, 2.0)
    assert [a.get_title() for a in axes] == ["w", "ones"]
    with pytest.raises(ValueError, match="Expected at least one 2D array"):
        plots.plot_maps([np.ones(3)])
