"""The biaxial LSTM: a piano roll modelled by two LSTMs, one along time and one across keys.

Johnson (EvoMusArt 2017, "Generating Polyphonic Music Using Tied Parallel Networks")
models a frame ``v_{t+1}`` of ``K`` binary keys given the frames before it as
``P(v_{t+1} | v_<=t) = prod_k P(v_{t+1,k} | v_<=t, v_{t+1,<k})``, with weights tied
across keys (the same network for every key, so it transposes) and across time:

    x_{t,k} = [v_{t,k-S..k+S} (2S + 1, zero off the keyboard) | onehot(pc_k) (12)
               | context_{t,k} (12) | k / (K - 1)]                   the key's view of frame t
    context_{t,k,i} = #{j : v_{t,j} = 1, pc_j = (pc_k + i) mod 12}     sounding keys i semitones (mod 12) above
    a_{t,k} = LSTM_time(x_{1..t,k})                              (time_units), one sequence per key
    b_{t,k} = LSTM_key([a_{t,j} | v_{t+1,j-1}] for j = 0..k)      (key_units), low to high, v_{t+1,-1} = 0
    P(v_{t+1,k} = 1 | v_<=t, v_{t+1,<k}) = sigmoid(w . b_{t,k} + w_0)

where ``pc_k = (21 + k) mod 12`` is the pitch class of column ``k`` (column 0 is MIDI 21,
A0, as the piano roll lays out its 88 keys) and ``S`` is the span. The context counts the
keys relative to the key itself, as the paper does, so it reads the same in every key.

``BiaxialLSTM()([window, next])`` is teacher-forced: logit ``(b, t, k)`` is of ``next[b, t,
k]`` (frame ``t + 1``) given ``window[b, :t + 1]`` and ``next[b, t, :k]``. The sigmoid
cross-entropy of these logits against ``next``, summed over the keys, is exactly ``-log
P(next_t | window_<=t)``, so the Bernoulli field (``models.fields.Bernoulli``) trains and
scores the layer as it is. Generation steps the time axis a frame at a time
(``time_step`` from ``zero_state``) and draws each frame with ``sample``, key after key,
each key's LSTM input holding the key drawn below it (a ``fori_loop`` over the keys, so a
compiled graph holds one key's step). ``keras.ops`` only: every backend runs it.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

LOWEST_PITCH = 21  # MIDI A0: column 0 of the 88-key piano roll
PITCH_CLASSES = 12


def _check_size(value, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"a biaxial LSTM's {what} must be an integer of at least {minimum}, got {value!r}")
    return value


@keras.saving.register_keras_serializable(package="note_matrix")
class BiaxialLSTM(keras.layers.Layer):
    """Teacher-forced logits ``(batch, steps, keys)`` of the next frames of a piano roll
    (module docstring); the sublayers are built at construction, so ``time_step`` and
    ``sample`` work before the layer is first called."""

    def __init__(self, keys: int = 88, time_units: int = 64, key_units: int = 32, span: int = 12, **kwargs):
        super().__init__(**kwargs)
        self.keys = _check_size(keys, "keys", 1)
        self.time_units = _check_size(time_units, "time_units", 1)
        self.key_units = _check_size(key_units, "key_units", 1)
        self.span = _check_size(span, "span", 0)
        if span >= keys:
            raise ValueError(f"a biaxial LSTM's span must be below its {keys} keys, got {span}")
        self.features = 2 * span + 1 + 2 * PITCH_CLASSES + 1
        pitch_class = (LOWEST_PITCH + np.arange(keys)) % PITCH_CLASSES
        self._pitch_class = np.eye(PITCH_CLASSES, dtype=np.float32)[pitch_class]  # (keys, 12) one-hot
        self._above = (pitch_class[:, None] + np.arange(PITCH_CLASSES)) % PITCH_CLASSES  # (keys, 12): pc_k + i
        self._position = (np.arange(keys) / max(keys - 1, 1)).astype(np.float32)  # (keys,) in [0, 1]
        self.time_lstm = keras.layers.LSTM(time_units, return_sequences=True, name="time_lstm")
        self.key_lstm = keras.layers.LSTM(key_units, return_sequences=True, name="key_lstm")
        self.logit = keras.layers.Dense(1, name="logit")
        self.time_lstm.build((None, None, self.features))
        self.key_lstm.build((None, keys, time_units + 1))
        self.logit.build((None, key_units))
        self.built = True

    def time_features(self, frame):
        """Each key's view of ``frame`` ``(..., keys)`` 0/1: ``(..., keys, features)``, ``features
        = 2 span + 26`` (vicinity, pitch class, relative pitch-class counts, position)."""
        frame = ops.cast(frame, "float32")
        padded = ops.pad(frame, [(0, 0)] * (len(frame.shape) - 1) + [(self.span, self.span)])
        vicinity = ops.stack([padded[..., d : d + self.keys] for d in range(2 * self.span + 1)], axis=-1)
        counts = ops.matmul(frame, ops.convert_to_tensor(self._pitch_class))  # (..., 12)
        context = ops.take(counts, ops.convert_to_tensor(self._above), axis=-1)  # (..., keys, 12)
        zeros = ops.zeros_like(frame)[..., None]  # (..., keys, 1): broadcasts the per-key constants
        pitch_class = zeros + ops.convert_to_tensor(self._pitch_class)
        position = zeros + ops.convert_to_tensor(self._position)[:, None]
        return ops.concatenate([vicinity, pitch_class, context, position], axis=-1)

    def time_axis(self, window, training=False):
        """The time LSTM's outputs ``(batch, steps, keys, time_units)`` of ``window`` ``(batch,
        steps, keys)``, every key's sequence run separately with the same weights."""
        steps = ops.shape(window)[1]
        features = ops.transpose(self.time_features(window), (0, 2, 1, 3))  # (batch, keys, steps, features)
        outputs = self.time_lstm(ops.reshape(features, (-1, steps, self.features)), training=training)
        return ops.transpose(ops.reshape(outputs, (-1, self.keys, steps, self.time_units)), (0, 2, 1, 3))

    def key_axis(self, time_outputs, following, training=False):
        """Teacher-forced logits ``(batch, steps, keys)``: the key LSTM across each step's keys,
        low to high, reading ``time_outputs`` ``(batch, steps, keys, time_units)`` and the key
        of ``following`` ``(batch, steps, keys)`` below each key."""
        following = ops.cast(following, "float32")
        steps = ops.shape(following)[1]
        below = ops.pad(following[..., :-1], [(0, 0), (0, 0), (1, 0)])  # following[..., k - 1], 0 at key 0
        inputs = ops.concatenate([ops.cast(time_outputs, "float32"), below[..., None]], axis=-1)
        outputs = self.key_lstm(ops.reshape(inputs, (-1, self.keys, self.time_units + 1)), training=training)
        return ops.reshape(self.logit(outputs), (-1, steps, self.keys))

    def call(self, inputs, training=False):
        """``[window (batch, steps, keys), next (batch, steps, keys)]`` 0/1 -> logits ``(batch, steps, keys)``."""
        window, following = inputs
        for tensor in (window, following):
            if tensor.shape[-1] not in (None, self.keys):
                raise ValueError(f"a biaxial LSTM of {self.keys} keys got frames of {tensor.shape[-1]} keys")
        return self.key_axis(self.time_axis(window, training), following, training)

    def zero_state(self, batch):
        """The time LSTM's state before the first frame: ``(h, c)``, zeros of ``(batch * keys, time_units)``."""
        zeros = ops.zeros((batch * self.keys, self.time_units))
        return zeros, zeros

    def time_step(self, frame, state):
        """One step of the time axis: ``frame`` ``(N, keys)`` and ``state`` ``(h, c)`` (``(N * keys,
        time_units)`` each) -> ``(outputs (N, keys, time_units), (h, c))``."""
        features = ops.reshape(self.time_features(frame), (-1, self.features))
        outputs, (h, c) = self.time_lstm.cell(features, list(state))
        return ops.reshape(outputs, (-1, self.keys, self.time_units)), (h, c)

    def sample(self, time_outputs, uniform, temperature: float = 1.0):
        """A frame ``(N, keys)`` float32 0/1 drawn key by key from the key axis over
        ``time_outputs`` ``(N, keys, time_units)``: key ``k`` is on where ``uniform[:, k]`` (in
        (0, 1]) is below ``sigmoid(logit_k / temperature)`` given the keys drawn below it;
        temperature 0 takes each key's more likely state instead."""
        if not temperature >= 0:
            raise ValueError(f"temperature must be at least 0, got {temperature}")
        time_outputs = ops.cast(time_outputs, "float32")
        uniform = ops.cast(uniform, "float32")
        column = ops.zeros_like(uniform[:, :1])  # (N, 1)

        def key(index, carry):
            h, c, below, frame = carry
            inputs = ops.concatenate([ops.take(time_outputs, index, axis=1), below], axis=-1)
            h, (_, c) = self.key_lstm.cell(inputs, [h, c])
            logit = self.logit(h)[:, 0]
            on = logit > 0 if temperature == 0 else ops.take(uniform, index, axis=1) < ops.sigmoid(logit / temperature)
            on = ops.cast(on, "float32")[:, None]
            return h, c, on, frame + on * ops.one_hot(index, self.keys, dtype="float32")

        state = column + ops.zeros((self.key_units,))
        return ops.fori_loop(0, self.keys, key, (state, state, column, ops.zeros_like(uniform)))[-1]

    def compute_output_shape(self, input_shape):
        return (*input_shape[0][:-1], self.keys)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "keys": self.keys,
            "time_units": self.time_units,
            "key_units": self.key_units,
            "span": self.span,
        }
