"""Carried-state generation for the biaxial LSTM (head ``biaxial``, ``models.biaxial``).

The same loop as ``CarriedStateGenerator`` (chunks, noise, progress, ``until``), with the
biaxial LSTM's own step: the primer frames run through the time axis a frame at a time
(``BiaxialLSTM.time_step``, one state per key), then each new frame is drawn key by key
from the key axis (``BiaxialLSTM.sample``, at the generator's ``temperature``), made valid
by ``row_function`` and fed back. The layer's variables are passed to the compiled
functions as arguments and read through ``keras.StatelessScope``, so a compiled loop never
captures them and always uses the model's current weights.
"""

from __future__ import annotations

import keras
from keras import ops

from models.biaxial import BiaxialLSTM
from note_matrix.errors import RunError
from note_matrix.generation.carried_state import CarriedStateGenerator


def biaxial_layer(model: keras.Model) -> BiaxialLSTM | None:
    """The model's biaxial LSTM, or None for any other model."""
    return next((layer for layer in model.layers if isinstance(layer, BiaxialLSTM)), None)


class BiaxialGenerator(CarriedStateGenerator):
    """Frames from a biaxial model with the time axis's state carried forward (module docstring),
    built as ``CarriedStateGenerator`` is (``temperature``: the draw's); ``row_function(frame,
    noise_t, previous)`` receives each drawn frame. ``start`` and ``advance``
    (``generation.tunes``) are not available."""

    def _read_model(self, model: keras.Model) -> None:
        layer = biaxial_layer(model)
        if layer is None:
            raise RunError(f"{model.name}: no biaxial LSTM to generate with")
        self._layer, self._recurrent, self._head = layer, (), ()
        self.features = self.output_width = layer.keys

    def _weights(self) -> tuple:
        return tuple(ops.convert_to_tensor(variable) for variable in self._layer.variables)

    def _scope(self, weights) -> keras.StatelessScope:
        return keras.StatelessScope(state_mapping=list(zip(self._layer.variables, weights)))

    def _prime_body(self, weights, primers):
        """``(time outputs (N, keys, units), time state)`` after the primer frames ``(N, k, keys)``."""
        self.traces["prime"] += 1
        batch, steps = primers.shape[0], primers.shape[1]
        with self._scope(weights):

            def body(t, carry):
                frame = ops.squeeze(ops.slice(primers, (0, t, 0), (batch, 1, self.features)), axis=1)
                return self._layer.time_step(frame, carry[1])

            first = ops.zeros((batch, self.features, self._layer.time_units))
            return ops.fori_loop(0, steps, body, (first, self._layer.zero_state(batch)))

    def _run_body(self, weights, states, previous, noise):
        """``noise.shape[1]`` frames after ``states`` (``_prime_body``'s): ``(states, frames (N, steps, keys))``."""
        self.traces["run"] += 1
        batch, steps = noise.shape[0], noise.shape[1]
        rows = ops.zeros((steps, batch, self.features), dtype="float32")  # time-major buffer
        with self._scope(weights):

            def body(t, carry):
                (outputs, state), previous, rows = carry
                noise_t = ops.squeeze(ops.slice(noise, (0, t, 0), (batch, 1, self.noise_width)), axis=1)
                frame = self._layer.sample(outputs, noise_t, self.temperature)
                row = ops.cast(self._row_function(frame, noise_t, previous), "float32")
                rows = ops.slice_update(rows, (t, 0, 0), row[None])
                return self._layer.time_step(row, state), row, rows

            states, _, rows = ops.fori_loop(0, steps, body, (states, previous, rows))
        return states, ops.transpose(rows, (1, 0, 2))

    def start(self, primers):
        raise RunError(f"{self.model_name}: the biaxial LSTM generates whole pieces only (generate)")

    def advance(self, states, rows):
        return self.start(rows)
