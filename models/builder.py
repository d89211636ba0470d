"""One builder for the recurrent models, configured by a dataclass (DESIGN.md, Models).

The default is exactly the design card's network (seed 003)::

    window (None, 3) -> LSTM(512) -> Dropout(0.75) -> Dense(3) -> Activation("linear")

trained with RMSprop(1e-4) on mean squared error. Recurrent layers keep Keras'
defaults (tanh, sigmoid, no recurrent dropout, ``unroll=False``, ``use_bias=True``) so
TensorFlow runs them with cuDNN on a GPU.

``head`` (``models.heads``) widens the ``dense`` layer for the other output heads:
``"categorical"`` (128 pitch logits, velocity, time; cross-entropy + squared errors) and
``"mdn"`` (pitch logits and a mixture density over velocity and time); the layers and
their names stay the same.

``targets`` says what the loss sees; the weights are the same network either way:

- ``"last"`` (the card): output ``(batch, width)``, the row after the window;
- ``"all"``: the recurrent layers return sequences and Dropout, Dense and Activation
  apply at every step, output ``(batch, steps, width)``: step ``t`` predicts row ``t + 1``,
  so one window of 50 rows yields 50 targets for the price of one.

(``width = head_width(config)``: 3 for the card's regression head.) Both compile the
metric ``last_mse``, the squared error of the point prediction after the whole window
(the card's task), so validation figures compare across modes and heads; the other heads
also compile ``last_loss``, their own loss after the whole window.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras

from models.heads import DEFAULT_MIXTURES, check_head, head_loss, head_width
from models.metrics import last_loss, last_mse, pitch_accuracy

CELLS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "rnn": keras.layers.SimpleRNN}
TARGETS = ("last", "all")


@dataclass(frozen=True)
class ModelConfig:
    """Every hyperparameter of the network and its optimiser, with the card's defaults."""

    cell: str = "lstm"
    units: int = 512
    layers: int = 1
    dropout_rate: float = 0.75
    features: int = 3
    head: str = "regression"  # "regression" (the card), "categorical", "mdn": see models.heads
    mixtures: int = DEFAULT_MIXTURES  # MDN components (the mdn head only)
    learning_rate: float = 1e-4
    targets: str = "last"  # "last": the row after the window (the card); "all": the next row at every step

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {self.cell!r}")
        check_head(self.head, self.mixtures)
        if self.head != "regression" and self.features != 3:
            raise ValueError(f"the {self.head} head reads note-matrix rows (features 3), got features {self.features}")
        if self.targets not in TARGETS:
            raise ValueError(f"targets must be one of {TARGETS}, got {self.targets!r}")
        if self.units < 1 or self.layers < 1 or self.features < 1:
            raise ValueError("units, layers and features must be positive")
        if not 0 <= self.dropout_rate < 1:
            raise ValueError(f"dropout_rate must lie in [0, 1), got {self.dropout_rate}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")

    def to_json(self) -> dict:
        return asdict(self)


def build_model(config: ModelConfig = ModelConfig()) -> keras.Model:
    """The network of ``config``, uncompiled.

    Input ``(batch, steps, features)`` float32 (any number of steps; training uses the
    window length). Output ``(batch, width)``, the prediction of the row after the window,
    or with ``targets="all"`` ``(batch, steps, width)``, of the next row at every step;
    ``width = head_width(config)`` (3 for the card's regression head: the row itself).
    Layers are named ``lstm`` (``lstm_2``, ... when stacked), ``dropout``, ``dense``,
    ``activation``; TensorBoard tags use these names.
    """
    inputs = keras.Input(shape=(None, config.features), name="window")
    x = inputs
    for index in range(config.layers):
        suffix = "" if index == 0 else f"_{index + 1}"
        x = CELLS[config.cell](
            config.units,
            return_sequences=config.targets == "all" or index < config.layers - 1,
            name=f"{config.cell}{suffix}",
        )(x)
    x = keras.layers.Dropout(config.dropout_rate, name="dropout")(x)
    width = config.features if config.head == "regression" else head_width(config)  # the card: the row itself
    x = keras.layers.Dense(width, name="dense")(x)
    outputs = keras.layers.Activation("linear", name="activation")(x)
    return keras.Model(inputs, outputs, name=f"{config.cell}_{config.units}")


def compile_model(model: keras.Model, config: ModelConfig = ModelConfig()) -> keras.Model:
    """Compile with the card's optimiser, RMSprop, and the head's loss (``models.heads``):
    mean squared error for the card's regression head.

    Metrics: ``pitch_accuracy`` (every predicted row) and ``last_mse`` (the row after the
    window only; see ``last_mse``); for the other heads also ``last_loss``.
    """
    metrics = [pitch_accuracy, last_mse] + ([] if config.head == "regression" else [last_loss])
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=config.learning_rate),
        loss=head_loss(config),
        metrics=metrics,
    )
    return model
