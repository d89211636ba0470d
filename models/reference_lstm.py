"""A hand-written LSTM layer (``--cell lstm-reference``): the four gates written out in ``keras.ops``.

Seed 004 trains an LSTM whose gates it writes by hand, gradients by autograd. This layer
does the same on any Keras backend, and computes exactly what ``keras.layers.LSTM`` does
with Keras' defaults (tanh, sigmoid, a bias with the forget gate's set to one at first,
no dropout, no mask): it holds the same weights in the same layout (``kernel`` ``(inputs,
4 units)``, ``recurrent_kernel`` ``(units, 4 units)``, ``bias`` ``(4 units,)``, the gates
in the order i, f, c, o), so ``set_weights(lstm.get_weights())`` makes the two compute the
same function, and ``note_matrix.generation.carried_state`` steps it as it steps an LSTM
(the layer is its own cell: it has the attributes that generator reads from ``LSTM.cell``).
It is the readable reference, not the fast path: there is no cuDNN kernel behind it
(``benchmarks/reference_lstm.py`` measures the cost).
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="note_matrix")
class ReferenceLSTM(keras.layers.Layer):
    """``keras.layers.LSTM(units, return_sequences=, return_state=)`` with its defaults, by hand.

    Input ``(batch, steps, inputs)``; output the last ``h`` ``(batch, units)`` or, with
    ``return_sequences``, every ``h`` ``(batch, steps, units)``; with ``return_state``
    ``(output, h, c)``, as ``LSTM`` returns them.
    """

    # Keras' LSTM defaults, fixed; named as LSTM's cell names them, for the carried-state generator.
    activation = staticmethod(keras.activations.tanh)
    recurrent_activation = staticmethod(keras.activations.sigmoid)
    use_bias = True
    go_backwards = False

    def __init__(self, units: int, return_sequences: bool = False, return_state: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)

    def build(self, input_shape):
        gates = 4 * self.units
        self.kernel = self.add_weight(shape=(input_shape[-1], gates), name="kernel", initializer="glorot_uniform")
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, gates), name="recurrent_kernel", initializer="orthogonal"
        )
        self.bias = self.add_weight(shape=(gates,), name="bias", initializer=self._unit_forget_bias)

    def _unit_forget_bias(self, shape, dtype=None):
        """LSTM's ``unit_forget_bias``: zeros but the forget gate's ones, so early training remembers."""
        zeros = ops.zeros((self.units,), dtype=dtype)
        return ops.concatenate([zeros, ops.ones((self.units,), dtype=dtype), zeros, zeros])

    def call(self, sequences):
        # The input's share of every step's gates in one matrix product, time-major for the scan.
        inputs = ops.matmul(ops.transpose(sequences, (1, 0, 2)), self.kernel) + self.bias
        zeros = ops.zeros_like(inputs[0, :, : self.units])
        (h, c), (outputs, _) = ops.scan(self._step, (zeros, zeros), inputs)
        output = ops.transpose(outputs, (1, 0, 2)) if self.return_sequences else h
        return (output, h, c) if self.return_state else output

    def _step(self, state: tuple, inputs) -> tuple:
        """One time step: ``state`` ``(h, c)`` and this step's input share of the gates ``(batch,
        4 units)`` -> ``((h, c), (h, c))`` (TensorFlow's ``scan`` needs what it stacks shaped as its carry)."""
        h, c = state
        z_i, z_f, z_c, z_o = ops.split(inputs + ops.matmul(h, self.recurrent_kernel), 4, axis=-1)
        input_gate = self.recurrent_activation(z_i)
        forget_gate = self.recurrent_activation(z_f)
        candidate = self.activation(z_c)
        output_gate = self.recurrent_activation(z_o)
        c = forget_gate * c + input_gate * candidate
        h = output_gate * self.activation(c)
        return (h, c), (h, c)

    def compute_output_shape(self, input_shape):
        batch, steps = input_shape[0], input_shape[1]
        output = (batch, steps, self.units) if self.return_sequences else (batch, self.units)
        return (output, (batch, self.units), (batch, self.units)) if self.return_state else output

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "units": self.units,
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
        }
