"""One builder for the recurrent models, configured by dataclasses.

The default is exactly the design card's network (seed 003)::

    window (None, 3) -> LSTM(512) -> Dropout(0.75) -> Dense(3) -> Activation("linear")

trained with RMSprop(1e-4) on mean squared error. Recurrent layers keep Keras'
defaults (tanh, sigmoid, no recurrent dropout, ``unroll=False``, ``use_bias=True``) so
TensorFlow runs them with cuDNN on a GPU.

What goes in is an ``InputSpec`` (continuous features, integer tokens through an
``Embedding``, or multi-hot frames) and what comes out a ``models.fields.Head``: the
``dense`` layer is as wide as the head's fields. ``targets="last"`` (the card) outputs
``(batch, width)``, the step after the window; ``"all"`` outputs ``(batch, steps,
width)``, the next step at every step.
"""

from __future__ import annotations

import keras

from models.config import DEFAULT_MIXTURES, TARGETS, InputSpec, ModelConfig  # noqa: F401 (exported)
from models.fields import Head, HeadLoss

CELLS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "rnn": keras.layers.SimpleRNN}


def build_model(config: ModelConfig = ModelConfig(), inputs: InputSpec = InputSpec(), head: Head | None = None
                ) -> keras.Model:
    """The network of ``config`` reading ``inputs`` and predicting ``head``'s fields, uncompiled.

    Input ``(batch, steps, width)`` (int32 ``(batch, steps, 1)`` for tokens; any number
    of steps). Output ``(batch, head.width)`` or, with ``targets="all"``, ``(batch, steps,
    head.width)``. Without ``head``: the card's, the row itself (width 3). Layers are named
    ``embedding`` and ``embedded`` (tokens), ``lstm`` (``lstm_2``, ... when stacked),
    ``dropout``, ``dense``, ``activation``; TensorBoard tags use these names.
    """
    window = keras.Input(shape=(None, inputs.width), dtype=inputs.dtype, name="window")
    x = window
    if inputs.kind == "tokens":
        x = keras.layers.Embedding(inputs.vocabulary, inputs.embedding, name="embedding")(x)
        x = keras.layers.Reshape((-1, inputs.embedding), name="embedded")(x)
    for index in range(config.layers):
        suffix = "" if index == 0 else f"_{index + 1}"
        x = CELLS[config.cell](
            config.units,
            return_sequences=config.targets == "all" or index < config.layers - 1,
            name=f"{config.cell}{suffix}",
        )(x)
    x = keras.layers.Dropout(config.dropout_rate, name="dropout")(x)
    x = keras.layers.Dense(inputs.width if head is None else head.width, name="dense")(x)
    outputs = keras.layers.Activation("linear", name="activation")(x)
    return keras.Model(window, outputs, name=f"{config.cell}_{config.units}")


def compile_model(model: keras.Model, config: ModelConfig, head: Head, metrics: list) -> keras.Model:
    """Compile with the card's optimiser, RMSprop, the head's loss (``HeadLoss``: the card's
    mean squared error for its regression head) and ``metrics`` (the representation's)."""
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=config.learning_rate),
        loss=HeadLoss(head),
        metrics=metrics,
    )
    return model
