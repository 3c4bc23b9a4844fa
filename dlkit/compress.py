"""Model compression for Keras 3: knowledge distillation and magnitude pruning.

`tensorflow-model-optimization` prunes Keras 2 models only, so pruning here is
the mechanism itself: a mask per kernel, a gradual sparsity schedule, and
training that goes on while the masks tighten. Notebook 11 builds both pieces
in full before it uses them.

>>> distiller = Distiller(student, teacher_logits, temperature=4.0)  # doctest: +SKIP
>>> distiller.compile(optimizer="adam", metrics=["accuracy"])  # doctest: +SKIP
>>> distiller.fit(x_train, y_train, epochs=5)  # doctest: +SKIP
>>> model.fit(x, y, callbacks=[MagnitudePruning(0.8, end_step=500)])  # doctest: +SKIP
"""

import keras
import numpy as np
from keras import ops

__all__ = ["Distiller", "MagnitudePruning", "distillation_loss", "sparsity"]


def distillation_loss(labels, student_logits, teacher_logits, temperature, alpha):
    """The loss of knowledge distillation (Hinton et al., 2015), averaged over a batch.

    `alpha * CE(labels, softmax(s)) + (1 - alpha) * T**2 * KL(softmax(t / T) ||
    softmax(s / T))`, for student logits `s`, teacher logits `t` and temperature
    `T`. The factor `T**2` keeps the soft term's gradients the same size
    whatever the temperature (they shrink as `1 / T**2` otherwise).

    Args:
        labels: integer class labels, shape `(batch,)`.
        student_logits, teacher_logits: logits, shape `(batch, classes)`.
        temperature: softens both distributions; `1` leaves them as they are.
        alpha: weight of the hard-label cross-entropy, between 0 and 1.

    Returns:
        A scalar tensor.
    """
    hard = keras.losses.sparse_categorical_crossentropy(
        labels, student_logits, from_logits=True
    )
    teacher = ops.softmax(teacher_logits / temperature)
    log_teacher = ops.log_softmax(teacher_logits / temperature)
    log_student = ops.log_softmax(student_logits / temperature)
    soft = ops.sum(teacher * (log_teacher - log_student), axis=-1)
    return ops.mean(alpha * hard + (1 - alpha) * temperature**2 * soft)


class Distiller(keras.Model):
    """A student trained to match a teacher's softened outputs and the labels.

    Calling the distiller calls the student, so `evaluate`, `predict` and the
    metrics of `compile` (e.g. `"accuracy"`) see the student's logits; the
    loss is `distillation_loss`, the teacher called in inference mode on each
    batch. Compile it without a loss.

    Example:
    ```python
    distiller = Distiller(student, teacher, temperature=4.0, alpha=0.1)
    distiller.compile(optimizer="adam", metrics=["accuracy"])
    distiller.fit(x_train, y_train, epochs=5)
    ```

    Args:
        student: a `keras.Model` that outputs logits.
        teacher: a trained `keras.Model` that outputs logits (it is not trained).
        temperature: a number greater than 0. Defaults to `4.0`.
        alpha: weight of the hard-label loss, in `[0, 1]`. Defaults to `0.1`.

    Raises:
        ValueError: for a temperature or alpha out of range.
    """

    def __init__(self, student, teacher, temperature=4.0, alpha=0.1, **kwargs):
        super().__init__(**kwargs)
        if not temperature > 0:
            raise _invalid("temperature", temperature, "a number greater than 0")
        if not 0 <= alpha <= 1:
            raise _invalid("alpha", alpha, "a number between 0 and 1")
        self.student, self.teacher = student, teacher
        self.temperature, self.alpha = float(temperature), float(alpha)
        teacher.trainable = False

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, **kwargs):
        teacher_logits = self.teacher(x, training=False)
        loss = distillation_loss(
            y, y_pred, teacher_logits, self.temperature, self.alpha
        )
        return loss + sum(self.student.losses)  # regularizers, if any


class MagnitudePruning(keras.callbacks.Callback):
    """Gradual magnitude pruning: zeroes the smallest weights of every kernel.

    Every `frequency` training steps from `begin_step` to `end_step` it sets
    each kernel's mask (Dense and convolution kernels; biases and
    normalization layers are kept) to zero its smallest weights by absolute
    value, so that the kernel's sparsity follows Zhu and Gupta's (2017)
    schedule `s(t) = target * (1 - (1 - progress)**3)`: fast at first, slowly
    at the end, while training lets the other weights compensate. After every
    batch it multiplies each kernel by its mask, so pruned weights stay zero
    as long as the callback is in `fit`, including after `end_step`.

    Example:
    ```python
    pruning = MagnitudePruning(0.8, end_step=300, frequency=20)
    model.fit(x, y, epochs=5, callbacks=[pruning])
    sparsity(model)  # 0.8
    ```

    Args:
        target_sparsity: fraction of each kernel to zero, in `[0, 1)`.
        begin_step: the step of the first pruning. Defaults to `0`.
        end_step: the step at which `target_sparsity` is reached. Defaults
            to `1000`.
        frequency: steps between two updates of the masks. Defaults to `50`.
        layers: names of the layers to prune, or `None` for every Dense and
            Conv2D layer. Defaults to `None`.

    Raises:
        ValueError: for a sparsity out of range, or steps out of order.
    """

    def __init__(
        self, target_sparsity, begin_step=0, end_step=1000, frequency=50, layers=None
    ):
        super().__init__()
        if not 0 <= target_sparsity < 1:
            raise _invalid("target_sparsity", target_sparsity, "a fraction in [0, 1)")
        if not 0 <= begin_step < end_step:
            expected = f"0 <= begin_step < end_step (end_step={end_step!r})"
            raise _invalid("begin_step", begin_step, expected)
        if not (isinstance(frequency, int) and frequency >= 1):
            raise _invalid("frequency", frequency, "an integer of 1 or more")
        self.target_sparsity, self.frequency = target_sparsity, frequency
        self.begin_step, self.end_step = begin_step, end_step
        self.step, self.masks, self.layers = 0, None, layers

    def sparsity_at(self, step):
        """The scheduled sparsity at a training step."""
        progress = np.clip(
            (step - self.begin_step) / (self.end_step - self.begin_step), 0, 1
        )
        return self.target_sparsity * (1 - (1 - progress) ** 3)

    def on_train_begin(self, logs=None):
        if self.masks is None:
            self.masks = {
                id(k): np.ones(k.shape, "float32")
                for k in _kernels(self.model, self.layers)
            }
            self._update_masks()

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        due = (self.step - self.begin_step) % self.frequency == 0
        if self.begin_step <= self.step <= self.end_step and due:
            self._update_masks()
        self._apply_masks()

    def _update_masks(self):
        goal = self.sparsity_at(self.step)
        for kernel in _kernels(self.model, self.layers):
            magnitudes = np.abs(kernel.numpy()).ravel()
            count = int(round(goal * magnitudes.size))
            mask = np.ones(magnitudes.size, "float32")
            mask[np.argsort(magnitudes, kind="stable")[:count]] = 0.0
            self.masks[id(kernel)] = mask.reshape(kernel.shape)
        self._apply_masks()

    def _apply_masks(self):
        for kernel in _kernels(self.model, self.layers):
            kernel.assign(kernel.value * self.masks[id(kernel)])


def sparsity(model, layers=None):
    """The fraction of zeros among the weights of a model's kernels.

    Args:
        model: a Keras model.
        layers: names of the layers to count, or `None` for every Dense and
            Conv2D layer (those `MagnitudePruning` prunes). Defaults to `None`.

    Returns:
        A float in `[0, 1]`.
    """
    kernels = [k.numpy() for k in _kernels(model, layers)]
    zeros = sum(int(np.sum(k == 0)) for k in kernels)
    return zeros / max(sum(k.size for k in kernels), 1)


def _kernels(model, names=None):
    """The Dense and Conv2D kernels of a model (those of `names`), nested included."""
    kernels = []
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)):
            if names is None or layer.name in names:
                kernels.append(layer.kernel)
        elif isinstance(layer, keras.Model):
            kernels.extend(_kernels(layer, names))
    return kernels


def _invalid(name, value, expected):
    return ValueError(
        f"Invalid value for argument `{name}`. Received: {name}={value!r}. "
        f"Expected {expected}."
    )
