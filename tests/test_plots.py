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
