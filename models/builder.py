"""One builder for the recurrent models, configured by dataclasses.

The default is exactly the design card's network (seed 003)::

    window (None, 3) -> LSTM(512) -> Dropout(0.75) -> Dense(3) -> Activation("linear")

trained with RMSprop(1e-4) on mean squared error. ``ModelConfig.optimizer`` picks another
optimizer (SGD, Adagrad, Adam) and ``lr_schedule="cyclic"`` Smith's triangular rate
(``CyclicLearningRate``). Recurrent layers keep Keras'
defaults (tanh, sigmoid, no recurrent dropout, ``unroll=False``, ``use_bias=True``) so
TensorFlow runs them with cuDNN on a GPU.

What goes in is an ``InputSpec`` (continuous features, integer tokens through an
``Embedding``, integer columns through ``OneHotColumns``, or multi-hot frames) and what comes out a ``models.fields.Head``: the
``dense`` layer is as wide as the head's fields. ``targets="last"`` (the card) outputs
``(batch, width)``, the step after the window; ``"all"`` outputs ``(batch, steps,
width)``, the next step at every step.

Head ``nade`` (piano rolls) ends in RNN-NADE's output instead of the dense layer
(``models.nade.NADE``, named ``nade``): the recurrent output conditions a NADE over the
frame's keys. Head ``biaxial`` is Johnson's biaxial LSTM (``models.biaxial.BiaxialLSTM``,
named ``biaxial``) in place of the whole network: ``units`` along time per key,
``output_units`` across keys (``cell``, ``layers`` and ``dropout_rate`` do not apply). In
both, the logit of key ``i`` depends on the true keys below ``i`` of the frame it
predicts, so such a model reads that frame as a second input, ``next`` (teacher forcing:
``reads_targets``, ``model_inputs``), and generation draws the frame key by key.
"""

from __future__ import annotations

import keras

from keras import ops

from models.config import DEFAULT_MIXTURES, TARGETS, InputSpec, ModelConfig  # noqa: F401 (exported)
from models.fields import Head, HeadLoss
from models.biaxial import BiaxialLSTM
from models.nade import NADE
from models.reference_lstm import ReferenceLSTM

CELLS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "rnn": keras.layers.SimpleRNN,
         "lstm-reference": ReferenceLSTM}
FRAME_HEADS = ("nade", "biaxial")  # piano-roll outputs that read the frame they predict (``reads_targets``)
OPTIMIZERS = {"rmsprop": keras.optimizers.RMSprop, "adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
              "adagrad": keras.optimizers.Adagrad}


@keras.saving.register_keras_serializable(package="note_matrix")
class CyclicLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """The triangular cyclical learning rate of Smith 2017 ("Cyclical Learning Rates for
    Training Neural Networks", section 3.1): from ``lr_min`` up to ``lr_max`` in
    ``half_cycle`` optimizer steps (his "step size"), back down in as many, and again::

        cycle = floor(1 + step / (2 * half_cycle))
        x = |step / half_cycle - 2 * cycle + 1|
        rate = lr_min + (lr_max - lr_min) * max(0, 1 - x)

    ``step`` is the optimizer's iteration count, which checkpoints keep, so a resumed run
    goes on along the same triangle. Registered, so a saved model loads in safe mode.
    """

    def __init__(self, lr_min: float, lr_max: float, half_cycle: int):
        self.lr_min = float(lr_min)
        self.lr_max = float(lr_max)
        self.half_cycle = int(half_cycle)

    def __call__(self, step):
        position = ops.cast(step, "float32") / self.half_cycle
        cycle = ops.floor(1 + position / 2)
        x = ops.abs(position - 2 * cycle + 1)
        return self.lr_min + (self.lr_max - self.lr_min) * ops.maximum(0.0, 1 - x)

    def get_config(self) -> dict:
        return {"lr_min": self.lr_min, "lr_max": self.lr_max, "half_cycle": self.half_cycle}


@keras.saving.register_keras_serializable(package="note_matrix")
class OneHotColumns(keras.layers.Layer):
    """Integer columns ``(..., len(classes))`` to float32 features ``(..., sum(classes))``:
    column ``i`` one-hot over ``classes[i]`` classes, or its value where ``classes[i]`` is 1.
    Works on any leading shape, so the carried-state engine runs it one step at a time."""

    def __init__(self, classes, **kwargs):
        super().__init__(**kwargs)
        self.classes = tuple(int(c) for c in classes)
        runs = []  # (start, stop, classes): a one-hot column, or a run of value columns
        for index, count in enumerate(self.classes):
            if count == 1 and runs and runs[-1][2] == 1 and runs[-1][1] == index:
                runs[-1] = (runs[-1][0], index + 1, 1)
            else:
                runs.append((index, index + 1, count))
        self._runs = tuple(runs)

    def call(self, x):
        parts = [ops.cast(x[..., start:stop], "float32") if count == 1
                 else ops.one_hot(ops.cast(x[..., start], "int32"), count, dtype="float32")
                 for start, stop, count in self._runs]
        return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], sum(self.classes))

    def get_config(self) -> dict:
        return {**super().get_config(), "classes": list(self.classes)}


def build_model(config: ModelConfig = ModelConfig(), inputs: InputSpec = InputSpec(), head: Head | None = None
                ) -> keras.Model:
    """The network of ``config`` reading ``inputs`` and predicting ``head``'s fields, uncompiled.

    Input ``(batch, steps, width)`` (int32 ``(batch, steps, 1)`` for tokens; any number
    of steps). Output ``(batch, head.width)`` or, with ``targets="all"``, ``(batch, steps,
    head.width)``. Without ``head``: the card's, the row itself (width 3). Layers are named
    ``embedding`` and ``embedded`` (tokens), ``one_hot`` (one-hot columns), ``lstm`` (``lstm_2``, ... when stacked),
    ``dropout``, ``dense``, ``activation``; TensorBoard tags use these names.
    """
    window = keras.Input(shape=(None, inputs.width), dtype=inputs.dtype, name="window")
    if config.head in FRAME_HEADS and (config.targets != "all" or inputs.kind != "multi_hot" or head is None):
        raise ValueError(f"the {config.head} head predicts a multi-hot frame at every step (targets 'all')")
    if config.head == "biaxial":
        following = keras.Input(shape=(None, head.width), dtype="float32", name="next")
        logits = BiaxialLSTM(head.width, config.units, config.output_units, name="biaxial")([window, following])
        return keras.Model([window, following], logits, name=f"biaxial_{config.units}_{config.output_units}")
    x = window
    if inputs.kind == "tokens":
        x = keras.layers.Embedding(inputs.vocabulary, inputs.embedding, name="embedding")(x)
        x = keras.layers.Reshape((-1, inputs.embedding), name="embedded")(x)
    elif inputs.kind == "one_hot":
        x = OneHotColumns(inputs.classes, name="one_hot")(x)
    for index in range(config.layers):
        suffix = "" if index == 0 else f"_{index + 1}"
        x = CELLS[config.cell](
            config.units,
            return_sequences=config.targets == "all" or index < config.layers - 1,
            name=f"{config.cell}{suffix}",
        )(x)
    x = keras.layers.Dropout(config.dropout_rate, name="dropout")(x)
    if config.head == "nade":
        following = keras.Input(shape=(None, head.width), dtype="float32", name="next")
        logits = NADE(head.width, config.output_units, name="nade")([x, following])
        return keras.Model([window, following], logits, name=f"{config.cell}_{config.units}_nade")
    x = keras.layers.Dense(inputs.width if head is None else head.width, name="dense")(x)
    outputs = keras.layers.Activation("linear", name="activation")(x)
    return keras.Model(window, outputs, name=f"{config.cell}_{config.units}")


def reads_targets(model: keras.Model) -> bool:
    """Whether ``model`` reads the step it predicts as a second input (``FRAME_HEADS``, teacher-forced)."""
    return len(model.inputs) == 2


def model_inputs(model: keras.Model, windows, targets):
    """What ``model`` is called on for ``windows`` and their ``targets`` (``targets="all"``):
    ``[windows, targets]`` for a model that ``reads_targets``, else the windows."""
    return [windows, targets] if reads_targets(model) else windows


def compile_model(model: keras.Model, config: ModelConfig, head: Head, metrics: list) -> keras.Model:
    """Compile with ``config``'s optimiser (the card's: RMSprop at a constant 1e-4, no clipping), the head's loss
    (``HeadLoss``: the card's mean squared error for its regression head) and ``metrics``
    (the representation's)."""
    clip = {} if config.clipnorm is None else {"clipnorm": config.clipnorm}
    model.compile(
        optimizer=OPTIMIZERS[config.optimizer](learning_rate=learning_rate(config), **clip),
        loss=HeadLoss(head),
        metrics=metrics,
    )
    return model


def learning_rate(config: ModelConfig) -> float | CyclicLearningRate:
    """``config``'s rate: ``learning_rate`` when constant, else its cyclic schedule."""
    if config.lr_schedule == "cyclic":
        return CyclicLearningRate(config.lr_min, config.lr_max, config.half_cycle)
    return config.learning_rate


class CarriedState(keras.layers.Layer):
    """A recurrent layer's cell run from the state the previous call left, for training in streams.

    ``layer`` (a ``keras.layers.LSTM``, ``GRU`` or ``SimpleRNN``) lends its cell, so its weights
    are the ones trained. The state after each call is kept in non-trainable variables of
    ``batch_size`` rows (a call with fewer rows uses and keeps the first ones) and is where
    the next call starts: truncated back-propagation through time, the gradient stopping
    at the call's first step. ``reset_state`` starts again from zeros. Variables, not a
    stateful layer, so that every backend carries the state inside its compiled steps
    (JAX returns the new values of a model's non-trainable variables from each step).
    Training only: never saved (``carried_state_twin``).
    """

    def __init__(self, layer: keras.layers.RNN, batch_size: int, **kwargs):
        super().__init__(name=layer.name, **kwargs)
        self.rnn = keras.layers.RNN(layer.cell, return_sequences=layer.return_sequences, return_state=True,
                                    name=f"{layer.name}_cell_loop")
        self.batch_size = int(batch_size)

    def build(self, input_shape):
        size = self.rnn.cell.state_size
        sizes = list(size) if isinstance(size, (list, tuple)) else [size]
        self.carried = [self.add_weight(shape=(self.batch_size, units), initializer="zeros", trainable=False,
                                        name=f"carried_state_{i}") for i, units in enumerate(sizes)]

    def call(self, sequences, training=False):
        rows = ops.shape(sequences)[0]
        output, *states = self.rnn(sequences, initial_state=[state[:rows] for state in self.carried],
                                   training=training)
        for variable, state in zip(self.carried, states):
            variable.assign(ops.slice_update(variable.value, (0, 0), ops.stop_gradient(state)))
        return output

    def reset_state(self) -> None:
        for variable in self.carried:
            variable.assign(ops.zeros_like(variable.value))

    def compute_output_shape(self, input_shape):
        units = self.rnn.cell.output_size
        return (*input_shape[:2], units) if self.rnn.return_sequences else (input_shape[0], units)


def carried_state_twin(model: keras.Model, batch_size: int) -> keras.Model:
    """A model that computes ``model``'s function with every recurrent layer's state carried
    from one call to the next (``CarriedState``), for at most ``batch_size`` rows a call.

    It shares every layer and weight with ``model`` (a chain as ``build_model`` makes), so
    training it trains ``model``, which stays an ordinary model to save, load and generate
    with. ``TypeError`` for a recurrent layer whose state cannot be given (``ReferenceLSTM``).
    """
    window = keras.Input(shape=model.inputs[0].shape[1:], dtype=model.inputs[0].dtype, name="window")
    x = window
    for layer in model.layers[1:]:
        if isinstance(layer, ReferenceLSTM):
            raise TypeError(f"{layer.name}: the hand-written LSTM starts from zero; its state cannot be carried")
        x = CarriedState(layer, batch_size)(x) if isinstance(layer, keras.layers.RNN) else layer(x)
    return keras.Model(window, x, name=f"{model.name}_carried")


def carried_layers(model: keras.Model) -> list[CarriedState]:
    """The ``CarriedState`` layers of a ``carried_state_twin``."""
    return [layer for layer in model.layers if isinstance(layer, CarriedState)]
