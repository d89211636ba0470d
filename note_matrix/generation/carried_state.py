"""Carried-state generation: one recurrent step per new row, the loop compiled once.

The primer rows run through the same step function to build the recurrent state; then
each step predicts a row from the top layer's output, turns it into the row that is
written (``row_function``: ``sampling.row_function``, a point row or a sample, made
valid), and feeds exactly that row back for one more step. While the piece fits in the
window this agrees with the window method (to float tolerance); after that the carried
state keeps the whole piece as context. ``compile.compile_function`` compiles the two
loops; the weights are read from the model's own variables at every call (arguments,
never captured or copied), so the model stays the single source of truth.

Supported models: a chain ``Input -> LSTM | GRU | SimpleRNN (stacked, any mix) ->
Dropout | Dense | Activation | TimeDistributed(one of these) ...``, with the last
recurrent layer returning the last output or the whole sequence, or ending in RNN-NADE's
output (``models.nade.NADE``, head ``nade``): each row's frame is then drawn key by key
from the top layer's output (``models.nade.sample_frame``, at the generator's
``temperature``) and ``row_function`` receives that frame. Dropout is the identity
at inference. Anything else is refused with a ``RunError`` naming the layer, so the
caller can fall back to the window method. The output may be wider than a row (the
head's width, ``models.fields``).

Sampling hook: ``generate(..., noise=)`` takes random numbers ``(N, length,
noise_width)``, drawn outside the compiled loop from a seeded NumPy generator;
``row_function(prediction, noise_t, previous)`` sees row t's slice ``(N, noise_width)``
(zeros when no noise is given) and the row fed last (the primer's last row at first).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops
from tqdm import tqdm

from models.builder import OneHotColumns, ReferenceLSTM
from models.nade import NADE, sample_frame
from note_matrix.errors import RunError
from note_matrix.generation.compile import compile_function

CHUNK_STEPS = 1024  # rows per compiled call: the progress bar moves and the noise is sliced per chunk

# (prediction (N, width), noise_t (N, noise_width), previous row (N, F)) -> row (N, F)
RowFunction = Callable[[object, object, object], object]


@dataclass(frozen=True)
class _Step:
    """One layer of the per-row computation and the model variables it reads."""

    kind: str  # "embedding", "one_hot" (inputs); "lstm", "gru", "rnn" (recurrent); "dense", "activation" (head)
    name: str
    variables: tuple  # the layer's own keras.Variable objects, in the order the step reads them
    activation: Callable | None = None
    recurrent_activation: Callable | None = None
    units: int = 0
    reset_after: bool = True  # GRU only


_RECURRENT = {keras.layers.LSTM: "lstm", keras.layers.GRU: "gru", keras.layers.SimpleRNN: "rnn", ReferenceLSTM: "lstm"}


def _plan(model: keras.Model) -> tuple[tuple[_Step, ...], tuple[_Step, ...], int, int]:
    """The model as ``(recurrent steps, head steps, features, output width)``; ``RunError``
    if it is not a supported chain."""

    def refuse(layer, why: str):
        return RunError(
            f"{model.name}: carried-state generation cannot run layer {layer.name!r} "
            f"({type(layer).__name__}): {why}; use the window method (--method window)"
        )

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    nade = layers.pop() if len(model.inputs) == 2 and isinstance(layers[-1], NADE) else None
    if len(model.inputs) != 1 + (nade is not None) or len(model.outputs) != 1:
        raise RunError(f"{model.name}: carried-state generation needs one input and one output")
    previous = model.inputs[0]
    recurrent, head = [], []
    for layer in layers:
        if layer.input is not previous:
            raise refuse(layer, "the model is not a simple chain of layers")
        previous = layer.output
        inner = layer.layer if isinstance(layer, keras.layers.TimeDistributed) else layer
        kind = _RECURRENT.get(type(inner))
        if isinstance(layer, keras.layers.Embedding) and not recurrent:
            recurrent.append(_Step("embedding", layer.name, (layer.embeddings,)))  # token ids in: a lookup
        elif isinstance(layer, OneHotColumns) and not recurrent:
            recurrent.append(_Step("one_hot", layer.name, (), activation=layer.call))  # integer columns in
        elif isinstance(layer, keras.layers.Reshape) and recurrent and recurrent[-1].kind == "embedding":
            continue  # (N, 1, E) -> (N, E) per step: the lookup already gives (N, E)
        elif kind is not None:
            if head:
                raise refuse(layer, "a recurrent layer after the head")
            if inner.go_backwards or inner.return_state:
                raise refuse(layer, "go_backwards and return_state are not supported")
            if inner is not layer:
                raise refuse(layer, "a recurrent layer inside TimeDistributed")
            cell = getattr(inner, "cell", inner)  # ReferenceLSTM is its own cell
            bias = (cell.bias,) if cell.use_bias else ()
            recurrent.append(_Step(
                kind, layer.name, (cell.kernel, cell.recurrent_kernel, *bias),
                activation=cell.activation,
                recurrent_activation=getattr(cell, "recurrent_activation", None),
                units=cell.units, reset_after=getattr(cell, "reset_after", True),
            ))
        elif not recurrent:
            raise refuse(layer, "the first layers must be recurrent (LSTM, GRU or SimpleRNN)")
        elif isinstance(inner, keras.layers.Dropout):
            continue  # the identity at inference
        elif isinstance(inner, keras.layers.Dense):
            bias = (inner.bias,) if inner.use_bias else ()
            head.append(_Step("dense", layer.name, (inner.kernel, *bias), activation=inner.activation))
        elif isinstance(inner, keras.layers.Activation):
            head.append(_Step("activation", layer.name, (), activation=inner.activation))
        else:
            raise refuse(layer, "only Dropout, Dense and Activation may follow the recurrent layers")
    if nade is not None:
        if nade.input[0] is not previous:
            raise refuse(nade, "the NADE must read the last layer's output")
        head.append(_Step("nade", nade.name, nade.sampling_weights))
        previous = nade.output
    if previous is not model.outputs[0]:
        raise RunError(f"{model.name}: carried-state generation needs the last layer to be the output")
    if not any(step.kind in _RECURRENT.values() for step in recurrent):
        raise RunError(f"{model.name}: no recurrent layer (LSTM, GRU or SimpleRNN) to carry state in")
    features = int(model.inputs[0].shape[-1])
    return tuple(recurrent), tuple(head), features, int(model.outputs[0].shape[-1])


# -- the per-row computation (keras.ops; runs inside the compiled loops) -------------------------

def _zero_state(step: _Step, batch: int) -> tuple:
    if step.kind in ("embedding", "one_hot"):
        return ()
    zeros = ops.zeros((batch, step.units), dtype="float32")
    return (zeros, zeros) if step.kind == "lstm" else (zeros,)


def _recurrent_step(step: _Step, weights: tuple, state: tuple, x) -> tuple:
    """One time step of one recurrent layer, as ``keras.layers.<cell>.call`` computes it.

    ``x`` ``(N, inputs)``, ``state`` ``(h,)`` or ``(h, c)`` each ``(N, units)``; returns the new state.
    """
    kernel, recurrent_kernel, *bias = weights
    units = step.units
    if step.kind == "lstm":  # gates i, f, c, o
        h, c = state
        z = ops.matmul(x, kernel) + ops.matmul(h, recurrent_kernel)
        if bias:
            z = z + bias[0]
        z_i, z_f, z_c, z_o = ops.split(z, 4, axis=-1)
        c = step.recurrent_activation(z_f) * c + step.recurrent_activation(z_i) * step.activation(z_c)
        h = step.recurrent_activation(z_o) * step.activation(c)
        return (h, c)
    if step.kind == "gru":  # gates z (update), r (reset), h (candidate)
        (h,) = state
        matrix_x = ops.matmul(x, kernel)
        if step.reset_after:
            matrix_inner = ops.matmul(h, recurrent_kernel)
            if bias:
                matrix_x = matrix_x + bias[0][0]
                matrix_inner = matrix_inner + bias[0][1]
        else:
            matrix_inner = ops.matmul(h, recurrent_kernel[:, : 2 * units])
            if bias:
                matrix_x = matrix_x + bias[0]
        x_z, x_r, x_h = ops.split(matrix_x, 3, axis=-1)
        z = step.recurrent_activation(x_z + matrix_inner[:, :units])
        r = step.recurrent_activation(x_r + matrix_inner[:, units : 2 * units])
        if step.reset_after:
            recurrent_h = r * matrix_inner[:, 2 * units :]
        else:
            recurrent_h = ops.matmul(r * h, recurrent_kernel[:, 2 * units :])
        candidate = step.activation(x_h + recurrent_h)
        return (z * h + (1 - z) * candidate,)
    (h,) = state  # SimpleRNN
    output = ops.matmul(x, kernel)
    if bias:
        output = output + bias[0]
    return (step.activation(output + ops.matmul(h, recurrent_kernel)),)


def _stack_step(recurrent: tuple[_Step, ...], weights: tuple, states: tuple, row) -> tuple:
    """Every recurrent layer one step on ``row`` ``(N, F)``; returns the new states."""
    new_states, x = [], row
    for step, layer_weights, state in zip(recurrent, weights, states):
        if step.kind == "embedding":  # token ids (N, 1) -> their vectors (N, E)
            new_states.append(())
            x = ops.take(layer_weights[0], ops.cast(x[:, 0], "int32"), axis=0)
            continue
        if step.kind == "one_hot":  # integer columns (N, C) -> their one-hot features
            new_states.append(())
            x = step.activation(x)
            continue
        state = _recurrent_step(step, layer_weights, state, x)
        new_states.append(state)
        x = state[0]
    return tuple(new_states)


def _head(head: tuple[_Step, ...], weights: tuple, x):
    """The layers after the recurrent ones, on the top layer's output ``(N, units)``: ``(N, width)``
    (a NADE's condition, the output itself: ``CarriedStateGenerator`` draws its frame)."""
    for step, layer_weights in zip(head, weights):
        if step.kind == "nade":
            continue
        if step.kind == "dense":
            x = ops.matmul(x, layer_weights[0])
            if len(layer_weights) > 1:
                x = x + layer_weights[1]
        x = step.activation(x)
    return x


# -- the generator ---------------------------------------------------------------------------------

class CarriedStateGenerator:
    """Generates rows from ``model`` with its recurrent state carried forward.

    ``row_function(prediction, noise_t, previous)`` (``keras.ops``; prediction ``(N,
    width)``, the model's output, noise ``(N, noise_width)`` and the row fed last ``(N,
    features)``) returns the row ``(N, features)`` that is written and fed back. ``noise_width``: random numbers per row (default
    ``features``). ``generate`` reads the weights from ``model`` at every call. ``traces``
    counts how often each compiled function's Python body ran: once per new set of input
    shapes under TensorFlow and JAX. A model ending in a NADE draws each frame key by key at
    ``temperature`` (0: each key's more likely state) from ``noise_t``, and ``row_function``
    receives that frame as its prediction; ``start`` and ``advance`` return the NADE's condition.
    """

    def __init__(self, model: keras.Model, row_function: RowFunction, *, noise_width: int | None = None,
                 chunk_steps: int = CHUNK_STEPS, temperature: float = 0.0):
        self.model_name = model.name
        self._read_model(model)
        self.dtype = "int32" if "int" in str(model.inputs[0].dtype) else "float32"  # token ids or values
        self.noise_width = self.features if noise_width is None else int(noise_width)
        if self.noise_width < 1:
            raise ValueError(f"noise_width must be positive, got {noise_width}")
        self._row_function = row_function
        self._nade = bool(self._head) and self._head[-1].kind == "nade"
        self.temperature = float(temperature)
        self.chunk_steps = int(chunk_steps)
        self.traces: Counter[str] = Counter()
        self._prime = compile_function(self._prime_body)
        self._run = compile_function(self._run_body)
        self._output = compile_function(self._output_body)
        self._advance = compile_function(self._advance_body)

    def _read_model(self, model: keras.Model) -> None:
        """The per-row computation of ``model`` (``_plan``): a subclass for another kind of model overrides
        this, ``_weights`` and the compiled bodies (``generation.biaxial``)."""
        self._recurrent, self._head, self.features, self.output_width = _plan(model)

    # The two compiled functions. Arguments are tensors only (nested tuples of them).
    def _prime_body(self, weights, primers):
        """State after the primer rows ``(N, k, F)``, from a zero state."""
        self.traces["prime"] += 1
        recurrent_weights = weights[0]
        batch, steps = primers.shape[0], primers.shape[1]
        states = tuple(_zero_state(step, batch) for step in self._recurrent)

        def body(t, states):
            row = ops.squeeze(ops.slice(primers, (0, t, 0), (batch, 1, self.features)), axis=1)
            return _stack_step(self._recurrent, recurrent_weights, states, row)

        return ops.fori_loop(0, steps, body, states)

    def _run_body(self, weights, states, previous, noise):
        """``noise.shape[1]`` rows from ``states`` after row ``previous`` ``(N, F)``: returns
        ``(states, rows (N, steps, F))``."""
        self.traces["run"] += 1
        recurrent_weights, head_weights = weights
        batch, steps = noise.shape[0], noise.shape[1]
        rows = ops.zeros((steps, batch, self.features), dtype=self.dtype)  # time-major buffer

        def body(t, carry):
            states, previous, rows = carry
            prediction = _head(self._head, head_weights, states[-1][0])
            noise_t = ops.squeeze(ops.slice(noise, (0, t, 0), (batch, 1, self.noise_width)), axis=1)
            if self._nade:
                prediction = sample_frame(head_weights[-1], prediction, noise_t, self.temperature)
            row = ops.cast(self._row_function(prediction, noise_t, previous), self.dtype)
            rows = ops.slice_update(rows, (t, 0, 0), row[None])
            return _stack_step(self._recurrent, recurrent_weights, states, row), row, rows

        states, _, rows = ops.fori_loop(0, steps, body, (states, previous, rows))
        return states, ops.transpose(rows, (1, 0, 2))

    def _output_body(self, weights, states):
        """The model's output ``(N, width)`` from ``states``."""
        self.traces["output"] += 1
        return _head(self._head, weights[1], states[-1][0])

    def _advance_body(self, weights, states, row):
        """``(states, output)`` after one more row ``(N, F)``."""
        self.traces["advance"] += 1
        recurrent_weights, head_weights = weights
        states = _stack_step(self._recurrent, recurrent_weights, states, row)
        return states, _head(self._head, head_weights, states[-1][0])

    # Step by step, for a caller that decides each row in Python (``generation.tunes``' well-formed sampling).
    def start(self, primers: np.ndarray) -> tuple[tuple, np.ndarray]:
        """``(states, output (N, width))`` after the primer rows ``(N, k >= 1, F)``, as NumPy arrays
        (``states``: a tuple per layer of the layer's ``(N, units)`` arrays)."""
        weights = self._weights()
        states = self._prime(weights, np.asarray(primers, dtype=self.dtype))
        return _to_numpy(states), ops.convert_to_numpy(self._output(weights, states))

    def advance(self, states: tuple, rows: np.ndarray) -> tuple[tuple, np.ndarray]:
        """``(states, output)`` after one more row of each piece, ``rows`` ``(N, F)``."""
        states, output = self._advance(self._weights(), states, np.asarray(rows, dtype=self.dtype))
        return _to_numpy(states), ops.convert_to_numpy(output)

    def _weights(self) -> tuple:
        """The model's variables as tensors, now (the model is the single source)."""
        def read(steps):
            return tuple(tuple(ops.convert_to_tensor(v) for v in step.variables) for step in steps)

        return read(self._recurrent), read(self._head)

    def generate(
        self,
        primers: np.ndarray,
        length: int,
        *,
        noise: np.ndarray | None = None,
        progress: bool = False,
        until: Callable[[np.ndarray], bool] | None = None,
    ) -> np.ndarray:
        """``length`` rows after each primer.

        ``primers`` ``(N, k, F)`` float32, k >= 1 (the N pieces run as one batch);
        ``noise`` ``(N, length, noise_width)`` float32, the per-step random input that
        ``row_function`` receives (zeros when None). Returns ``(N, length, F)`` float32.
        The loop runs in chunks of at most ``chunk_steps`` rows, all of the same size
        (the last one padded and cut), so one compiled function serves the whole piece.
        ``until(rows so far (N, t, F))``, asked after each chunk, ends the loop early when it
        returns True (every tune has ended): fewer than ``length`` rows are returned then.
        """
        primers = np.asarray(primers, dtype=self.dtype)
        if primers.ndim != 3 or primers.shape[1] < 1 or primers.shape[2] != self.features:
            raise ValueError(f"primers must have shape (N, k >= 1, {self.features}), got {primers.shape}")
        batch = primers.shape[0]
        if length < 1:
            raise ValueError(f"length must be positive, got {length}")
        if noise is not None:
            noise = np.asarray(noise, dtype=np.float32)
            if noise.shape != (batch, length, self.noise_width):
                raise ValueError(f"noise must have shape {(batch, length, self.noise_width)}, got {noise.shape}")
        chunks = math.ceil(length / self.chunk_steps)
        steps = math.ceil(length / chunks)
        weights = self._weights()
        states = self._prime(weights, primers)
        previous = primers[:, -1]
        out = np.empty((batch, chunks * steps, self.features), dtype=self.dtype)
        with tqdm(total=length, desc="generating", unit="row", disable=not progress) as bar:
            for start in range(0, chunks * steps, steps):
                chunk_noise = np.zeros((batch, steps, self.noise_width), dtype=np.float32)
                if noise is not None:
                    part = noise[:, start : start + steps]
                    chunk_noise[:, : part.shape[1]] = part
                states, rows = self._run(weights, states, previous, chunk_noise)
                out[:, start : start + steps] = ops.convert_to_numpy(rows)
                previous = out[:, start + steps - 1]
                bar.update(min(steps, length - start))
                if until is not None and until(out[:, : min(start + steps, length)]):
                    return out[:, : min(start + steps, length)]
        return out[:, :length]


def _to_numpy(states: tuple) -> tuple:
    return tuple(tuple(np.array(ops.convert_to_numpy(part)) for part in layer) for layer in states)

