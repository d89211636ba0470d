"""One recurrent layer's output at every step of a token sequence (loads Keras).

The recurrent layers are those ``models.builder`` builds (``CELLS``: LSTM, GRU, simple
RNN, the hand-written LSTM), named ``lstm``, ``lstm_2``, ... A layer that returns only its
last step (the last layer under ``--targets last``) is read through a twin built from its
config with ``return_sequences=True`` and given its weights: the same function, every step.
Dropout is off (inference mode).
"""

from __future__ import annotations

import keras
import numpy as np

from models.builder import CELLS
from note_matrix.inspection import InspectionError

_RECURRENT = tuple(CELLS.values())


def recurrent_layers(model: keras.Model) -> list:
    """The model's recurrent layers, input side first."""
    return [layer for layer in model.layers if isinstance(layer, _RECURRENT)]


def pick_layer(model: keras.Model, which: str | None = None):
    """The recurrent layer ``which`` names (its name, e.g. ``lstm_2``, or its number from 1), the first
    by default; ``InspectionError`` listing the layers for any other."""
    layers = recurrent_layers(model)
    if not layers:
        raise InspectionError(f"{model.name} has no recurrent layer")
    if which is None:
        return layers[0]
    names = [layer.name for layer in layers]
    if which.isdigit() and 1 <= int(which) <= len(layers):
        return layers[int(which) - 1]
    if which in names:
        return layers[names.index(which)]
    raise InspectionError(f"--layer {which}: the model's recurrent layers are {', '.join(names)} "
                          f"(or 1..{len(layers)})")


def layer_activations(model: keras.Model, layer, tokens: np.ndarray) -> np.ndarray:
    """``layer``'s output after each of ``tokens`` ``(steps,)``: float32 ``(steps, units)``."""
    output = layer.output if layer.return_sequences else _every_step(layer)
    probe = keras.Model(model.input, output)
    window = np.asarray(tokens).reshape(1, -1, 1).astype(model.input.dtype)
    return keras.ops.convert_to_numpy(probe(window, training=False))[0]


def _every_step(layer):
    """The symbolic output of a twin of ``layer`` that returns every step, on ``layer``'s input."""
    config = {**layer.get_config(), "return_sequences": True, "name": f"{layer.name}_every_step"}
    twin = type(layer).from_config(config)
    output = twin(layer.input)
    twin.set_weights(layer.get_weights())
    return output
