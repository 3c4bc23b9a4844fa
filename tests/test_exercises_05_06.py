import keras
import matplotlib
import numpy as np
import pytest

from dlkit import _exercises_05_06, plots
from dlkit import exercises as checks

matplotlib.use("Agg")


def _stub(*args):
    """What a learner's function returns before they fill it in."""


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _lstm_step(x, h, c, kernel, recurrent_kernel, bias):
    i, f, g, o = np.split(x @ kernel + h @ recurrent_kernel + bias, 4, axis=-1)
    c_new = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
    return _sigmoid(o) * np.tanh(c_new), c_new


def _count(kind, input_dim, units):
    block = units * (input_dim + units + 1)
    return {"simple_rnn": block, "lstm": 4 * block, "gru": 3 * (block + units)}[kind]


def _tempered(p, temperature):
    weights = p ** (1 / temperature)
    return weights / weights.sum(axis=-1, keepdims=True)


def _make_windows(series, window):
    inputs = np.lib.stride_tricks.sliding_window_view(series[:-1], window)
    return inputs, series[window:]


def _d_loss(real, fake):
    return -np.mean(np.log(real)) - np.mean(np.log(1 - fake))


def _g_loss(fake):
    return -np.mean(np.log(fake))


def _evenness(labels, num_classes):
    q = np.bincount(labels, minlength=num_classes) / len(labels)
    q = q[q > 0]
    return -(q * np.log(q)).sum() / np.log(num_classes)


RIGHT = [
    (checks.check_lstm_step, _lstm_step),
    (checks.check_recurrent_parameter_count, _count),
    (checks.check_apply_temperature, _tempered),
    (checks.check_make_windows, _make_windows),
    (checks.check_discriminator_loss, _d_loss),
    (checks.check_generator_loss, _g_loss),
    (checks.check_class_evenness, _evenness),
]


@pytest.mark.parametrize(("check", "answer"), RIGHT, ids=lambda x: x.__name__)
def test_right_answer_passes(check, answer, capsys):
    assert check(answer) is True
    assert capsys.readouterr().out.startswith("Correct!")


@pytest.mark.parametrize(
    "check", [check for check, _ in RIGHT], ids=lambda x: x.__name__
)
@pytest.mark.parametrize("stub", [_stub, ..., None, "text"], ids=repr)
def test_stub_or_missing_answer_returns_false_without_raising(check, stub, capsys):
    assert check(stub) is False
    output = capsys.readouterr().out
    assert output.startswith("Not yet.") and "Expected:" in output and "Hint:" in output


@pytest.mark.parametrize(
    "check", [check for check, _ in RIGHT], ids=lambda x: x.__name__
)
def test_answer_that_raises_is_reported(check, capsys):
    def broken(*args):
        raise ZeroDivisionError("boom")

    assert check(broken) is False
    assert "ZeroDivisionError: boom" in capsys.readouterr().out


def _feedback(check, answer, capsys):
    assert check(answer) is False
    return capsys.readouterr().out


def test_lstm_step_matches_keras_lstm_cell():
    x, h, c, kernel, recurrent_kernel, bias = _exercises_05_06._lstm_case()
    cell = keras.layers.LSTMCell(3)
    cell.build((None, 2))
    cell.set_weights([kernel, recurrent_kernel, bias])
    keras_h, (_, keras_c) = cell(x.astype("float32"), [h, c])
    expected_h, expected_c = _lstm_step(x, h, c, kernel, recurrent_kernel, bias)
    np.testing.assert_allclose(keras_h, expected_h, atol=1e-5)
    np.testing.assert_allclose(keras_c, expected_c, atol=1e-5)


def test_lstm_step_hints(capsys):
    def swapped_gates(x, h, c, kernel, recurrent_kernel, bias):
        i, g, f, o = np.split(x @ kernel + h @ recurrent_kernel + bias, 4, axis=-1)
        c_new = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        return _sigmoid(o) * np.tanh(c_new), c_new

    def old_cell_in_h(x, h, c, kernel, recurrent_kernel, bias):
        i, f, g, o = np.split(x @ kernel + h @ recurrent_kernel + bias, 4, axis=-1)
        c_new = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        return _sigmoid(o) * np.tanh(c), c_new

    assert "Keras's order" in _feedback(checks.check_lstm_step, swapped_gates, capsys)
    assert "with the new c" in _feedback(checks.check_lstm_step, old_cell_in_h, capsys)
    single = _feedback(checks.check_lstm_step, lambda *a: a[1], capsys)
    assert "Return a pair" in single


@pytest.mark.parametrize("kind", ["simple_rnn", "lstm", "gru"])
def test_parameter_count_matches_keras_layers(kind):
    layer_class = {
        "simple_rnn": keras.layers.SimpleRNN,
        "lstm": keras.layers.LSTM,
        "gru": keras.layers.GRU,
    }[kind]
    layer = layer_class(7)
    layer.build((None, None, 5))
    assert layer.count_params() == _count(kind, 5, 7)


def test_parameter_count_hints(capsys):
    def no_bias(kind, n, m):
        return {"simple_rnn": 1, "lstm": 4, "gru": 3}[kind] * m * (n + m)

    def gru_one_bias(kind, n, m):
        return {"simple_rnn": 1, "lstm": 4, "gru": 3}[kind] * m * (n + m + 1)

    def lstm_three_blocks(kind, n, m):
        return {"simple_rnn": 1, "lstm": 3, "gru": 3}[kind] * m * (n + m + 1)

    check = checks.check_recurrent_parameter_count
    assert "Count the bias" in _feedback(check, no_bias, capsys)
    assert "two bias vectors a block" in _feedback(check, gru_one_bias, capsys)
    assert "four blocks" in _feedback(check, lstm_three_blocks, capsys)


def test_apply_temperature_hints(capsys):
    check = checks.check_apply_temperature
    assert "do not multiply" in _feedback(
        check, lambda p, t: _tempered(p, 1 / t), capsys
    )
    assert "Normalize" in _feedback(check, lambda p, t: p ** (1 / t), capsys)
    softmax_of_p = _feedback(
        check,
        lambda p, t: np.exp(p / t) / np.exp(p / t).sum(-1, keepdims=True),
        capsys,
    )
    assert "Take the log first" in softmax_of_p


def test_make_windows_agrees_with_keras():
    series = np.arange(10.0)
    dataset = keras.utils.timeseries_dataset_from_array(
        series[:-1], series[4:], sequence_length=4, batch_size=100
    )
    inputs, targets = next(iter(dataset))
    expected_inputs, expected_targets = _exercises_05_06._windows(series, 4)
    np.testing.assert_array_equal(inputs, expected_inputs)
    np.testing.assert_array_equal(targets, expected_targets)


def test_make_windows_hints(capsys):
    def own_last_value(series, window):
        inputs = np.lib.stride_tricks.sliding_window_view(series[:-1], window)
        return inputs, series[window - 1 : -1]

    def one_window_too_many(series, window):
        inputs = np.lib.stride_tricks.sliding_window_view(series, window)
        return inputs, np.append(series[window:], 0.0)

    check = checks.check_make_windows
    assert "not the window's own last" in _feedback(check, own_last_value, capsys)
    assert "has no next value" in _feedback(check, one_window_too_many, capsys)


def test_gan_loss_hints(capsys):
    d_check, g_check = checks.check_discriminator_loss, checks.check_generator_loss
    assert "generated batch's term" in _feedback(
        d_check, lambda r, f: -np.mean(np.log(r)), capsys
    )
    assert "not the reverse" in _feedback(d_check, lambda r, f: _d_loss(f, r), capsys)
    assert "saturating minimax" in _feedback(
        g_check, lambda f: np.mean(np.log(1 - f)), capsys
    )
    assert "minus sign" in _feedback(g_check, lambda f: np.mean(np.log(f)), capsys)


def test_gan_losses_accept_tensorflow_answers():
    import tensorflow as tf

    bce = keras.losses.BinaryCrossentropy()

    def d_loss(real, fake):
        return bce(tf.ones_like(real), real) + bce(tf.zeros_like(fake), fake)

    assert checks.check_discriminator_loss(d_loss)
    assert checks.check_generator_loss(lambda fake: bce(tf.ones_like(fake), fake))


def test_class_evenness_hints(capsys):
    def unnormalized(labels, k):
        q = np.bincount(labels, minlength=k) / len(labels)
        q = q[q > 0]
        return -(q * np.log(q)).sum()

    def with_empty_classes(labels, k):
        q = np.bincount(labels, minlength=k) / len(labels)
        return -(q * np.log(q)).sum() / np.log(k)

    check = checks.check_class_evenness
    assert "Divide by log(num_classes)" in _feedback(check, unnormalized, capsys)
    assert "0 * log(0)" in _feedback(check, with_empty_classes, capsys)


def test_messages_are_deterministic(capsys):
    outputs = []
    for _ in range(2):
        checks.check_generator_loss(lambda f: np.mean(np.log(1 - f)))
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]


# --------------------------------------------------------------------------
# dlkit.plots: the figures of notebooks 05-06
# --------------------------------------------------------------------------


def test_plot_gradient_flow_uses_a_log_scale():
    figure = plots.plot_gradient_flow(
        {"rnn": 0.5 ** np.arange(10), "lstm": np.ones(10)}
    )
    axis = figure.get_axes()[0]
    assert axis.get_yscale() == "log"
    assert [line.get_label() for line in axis.get_lines()] == ["rnn", "lstm"]
    with pytest.raises(ValueError, match="Received no gradient norms"):
        plots.plot_gradient_flow({})


def test_plot_forecast_draws_context_actual_and_each_forecast():
    times = np.arange(5)
    figure = plots.plot_forecast(
        times,
        np.ones(5),
        {"naive": np.zeros(5)},
        context=(np.arange(-3, 0), np.ones(3)),
    )
    labels = [line.get_label() for line in figure.get_axes()[0].get_lines()]
    assert labels == ["before the test window", "actual", "naive"]
    with pytest.raises(ValueError, match="Invalid forecast lengths"):
        plots.plot_forecast(times, np.ones(5), {"short": np.zeros(4)})


def test_plot_gan_history_draws_equilibrium_lines():
    history = {"d_loss": [1.2, 1.3], "g_loss": [0.9, 0.8]}
    figure = plots.plot_gan_history(history)
    assert len(figure.get_axes()) == 1
    levels = [line.get_ydata()[0] for line in figure.get_axes()[0].get_lines()[2:]]
    np.testing.assert_allclose(levels, [2 * np.log(2), np.log(2)])
    history.update(d_real=[0.6, 0.6], d_fake=[0.4, 0.4])
    assert len(plots.plot_gan_history(history).get_axes()) == 2
    with pytest.raises(ValueError, match="no \\['g_loss'\\]"):
        plots.plot_gan_history({"d_loss": [1.0]})


def test_plot_class_histogram_counts_every_class():
    figure = plots.plot_class_histogram([1, 1, 7], num_classes=10)
    heights = [patch.get_height() for patch in figure.get_axes()[0].patches]
    assert heights == [0, 2, 0, 0, 0, 0, 0, 1, 0, 0]
