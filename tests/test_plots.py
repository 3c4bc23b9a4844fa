import itertools

import matplotlib
import numpy as np
import pandas as pd
import pytest

from dlkit import plots

matplotlib.use("Agg")


def test_every_public_function_is_a_plot():
    public = [name for name in dir(plots) if name.startswith("plot_")]
    assert sorted(plots.__all__) == public


def test_plot_history_draws_train_and_validation_curves():
    history = {
        "loss": [1.0, 0.5, 0.3],
        "val_loss": [1.1, 0.7, 0.6],
        "accuracy": [0.5, 0.8, 0.9],
        "val_accuracy": [0.4, 0.7, 0.8],
        "learning_rate": [0.1, 0.1, 0.1],
    }
    figure = plots.plot_history(history, title="run")
    axes = figure.get_axes()
    assert [a.get_ylabel() for a in axes] == ["loss", "accuracy"]
    assert [len(a.get_lines()) for a in axes] == [2, 2]
    np.testing.assert_allclose(axes[0].get_lines()[1].get_ydata(), [1.1, 0.7, 0.6])
    with pytest.raises(ValueError, match=r"Received: \['acc'\].*'loss'"):
        plots.plot_history({"loss": [1.0]}, metrics=["acc"])


def test_plot_images_marks_wrong_predictions_in_red():
    images = np.zeros((3, 28, 28, 1), np.uint8)
    figure = plots.plot_images(images, labels=[1, 2, 3], predictions=[1, 5, 3], ncols=2)
    titles = [a.title for a in figure.get_axes()]
    assert [t.get_text() for t in titles] == ["1\npred 1", "2\npred 5", "3\npred 3", ""]
    assert titles[1].get_color() == "red" and titles[0].get_color() == "black"


def test_plot_confusion_matrix_counts():
    figure = plots.plot_confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2])
    texts = [t.get_text() for t in figure.get_axes()[0].texts]
    assert texts == ["1", "0", "0", "0", "1", "1", "0", "0", "1"]


def test_plot_curves_draws_one_line_per_label():
    x = np.linspace(-1, 1, 5)
    figure = plots.plot_curves({"a": x**2, "b": x}, x=x, xlabel="z", styles={"b": "--"})
    axis = figure.get_axes()[0]
    assert [line.get_label() for line in axis.get_lines()] == ["a", "b"]
    assert axis.get_lines()[1].get_linestyle() == "--"
    assert axis.get_xlabel() == "z"


def test_plot_roc_curve_reports_auc_and_marks_the_threshold():
    figure = plots.plot_roc_curve([0, 0, 1, 1], {"perfect": [0.1, 0.2, 0.8, 0.9]})
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


def test_plot_gradient_flow_uses_a_log_scale():
    figure = plots.plot_gradient_flow({"rnn": 0.5 ** np.arange(10), "lstm": [1] * 10})
    axis = figure.get_axes()[0]
    assert axis.get_yscale() == "log"
    assert [line.get_label() for line in axis.get_lines()] == ["rnn", "lstm"]


def test_plot_forecast_draws_context_actual_and_each_forecast():
    figure = plots.plot_forecast(
        np.arange(5), np.ones(5), {"naive": np.zeros(5)}, context=([-2, -1], [1, 1])
    )
    labels = [line.get_label() for line in figure.get_axes()[0].get_lines()]
    assert labels == ["before the test window", "actual", "naive"]


def test_plot_gan_history_draws_equilibrium_lines():
    history = {"d_loss": [1.2, 1.3], "g_loss": [0.9, 0.8]}
    figure = plots.plot_gan_history(history)
    assert len(figure.get_axes()) == 1
    levels = [line.get_ydata()[0] for line in figure.get_axes()[0].get_lines()[2:]]
    np.testing.assert_allclose(levels, [2 * np.log(2), np.log(2)])
    history.update(d_real=[0.6, 0.6], d_fake=[0.4, 0.4])
    assert len(plots.plot_gan_history(history).get_axes()) == 2


def test_plot_class_histogram_counts_every_class():
    figure = plots.plot_class_histogram([1, 1, 7], num_classes=10)
    heights = [patch.get_height() for patch in figure.get_axes()[0].patches]
    assert heights == [0, 2, 0, 0, 0, 0, 0, 1, 0, 0]


def test_plot_bars_draws_one_bar_per_label_first_on_top():
    values = {"one device": 1.0, "mirrored": 0.4, "bfloat16": 2.0}
    figure = plots.plot_bars(values, xlabel="vs one device", reference=1.0)
    axis = figure.get_axes()[0]
    assert [bar.get_width() for bar in axis.patches] == [1.0, 0.4, 2.0]
    labels = [label.get_text() for label in axis.get_yticklabels()]
    assert labels == list(values) and axis.yaxis_inverted()
    assert axis.get_lines()[0].get_xdata()[0] == 1.0
    assert (
        plots.plot_bars({"a": 1e-8, "b": 1e-2}, log=True).axes[0].get_xscale() == "log"
    )
    with pytest.raises(ValueError, match=r"Received: \{'a': 0.0\}.*log=False"):
        plots.plot_bars({"a": 0.0}, log=True)


# plot_trials


def results(learning_rates, search=None):
    """A table shaped like dlkit.tuning.results_table's."""
    count = len(learning_rates)
    table = pd.DataFrame(
        {
            "learning_rate": learning_rates,
            "width": [64, 128, 256, 64, 128][:count],
            "dropout": np.linspace(0.0, 0.4, count),
            "score": np.linspace(0.95, 0.9, count),
            "status": "COMPLETED",
        },
        index=pd.Index([str(i) for i in range(count)], name="trial"),
    )
    table.attrs = {
        "objective": "val_accuracy",
        "direction": "max",
        "log_scale": ["learning_rate", "width"],
    }
    return table if search is None else table.assign(search=search)


def shown_tick_labels(figure, axis):
    """The x tick labels drawn inside the axis, with their boxes on the canvas."""
    figure.draw_without_rendering()
    low, high = axis.get_xlim()
    return [
        (label.get_text(), label.get_window_extent())
        for tick, label in zip(axis.get_xticks(), axis.get_xticklabels(), strict=True)
        if low <= tick <= high and label.get_text()
    ]


@pytest.mark.parametrize(
    "learning_rates, expected",
    [
        ([0.0061, 0.0067, 0.0064], ["0.002", "0.005", "0.01"]),
        ([0.00099, 0.0019, 0.006, 0.0067], ["0.001", "0.002", "0.005"]),
        ([0.0012, 0.0031, 0.0087], ["0.001", "0.002", "0.005", "0.01"]),
        ([1e-5, 3e-3, 0.1, 0.5, 2e-4], ["1e-05", "0.001", "0.1"]),
    ],
)
def test_plot_trials_log_axis_has_readable_ticks(learning_rates, expected):
    table = results(learning_rates)
    figure = plots.plot_trials(table)
    axis = figure.get_axes()[0]
    assert axis.get_xscale() == "log"
    labels = shown_tick_labels(figure, axis)
    assert [text for text, _ in labels] == expected
    for (_, left), (_, right) in itertools.pairwise(labels):
        assert left.x1 < right.x0  # no two labels overlap
    low, high = axis.get_xlim()
    assert low < min(learning_rates) and max(learning_rates) < high


def test_plot_trials_one_panel_per_hyperparameter_coloured_by_search():
    trials = pd.concat(
        [results([1e-3, 2e-3, 5e-3], "random"), results([3e-3, 4e-3], "hyperband")]
    )
    figure = plots.plot_trials(trials, reference=0.92)
    axes = figure.get_axes()
    assert [a.get_xlabel() for a in axes] == ["learning_rate", "width", "dropout"]
    assert [a.get_xscale() for a in axes] == ["log", "log", "linear"]
    assert axes[0].get_ylabel() == "val_accuracy (best epoch)"
    assert [text for text, _ in shown_tick_labels(figure, axes[1])] == [
        "64",
        "128",
        "256",
    ]
    legend = [text.get_text() for text in axes[-1].get_legend().get_texts()]
    assert legend == ["random", "hyperband", "default"]
    with pytest.raises(ValueError, match="results_table"):
        plots.plot_trials(pd.DataFrame({"status": ["COMPLETED"]}))
