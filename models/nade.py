"""RNN-NADE's output: a NADE over the keys of a frame, conditioned on the recurrent state.

Boulanger-Lewandowski, Bengio and Vincent (ICML 2012) model a frame ``v`` of ``K``
binary keys given the condition ``c`` (the recurrent network's output at the step
before) as ``P(v | c) = prod_i P(v_i | v_<i, c)``, with ``H`` hidden units::

    h_i = sigmoid(b_h(c) + sum_{j < i} v_j W_j)         W: (K, H), shared by every step
    P(v_i = 1 | v_<i, c) = sigmoid(b_v(c)_i + V_i . h_i)   V: (K, H), shared by every step

where the biases follow the condition linearly: ``b_v(c) = c A_v + a_v`` (``K``) and
``b_h(c) = c A_h + a_h`` (``H``).

``NADE()([condition, visible])`` is teacher-forced: the logit of every key given the
true keys before it, ``(..., K)``, all keys at once (the pre-activations of key ``i`` are
``b_h`` plus the exclusive cumulative sum over keys of ``v_j W_j``). The sigmoid
cross-entropy of these logits against ``visible``, summed over the keys, is exactly
``-log P(v | c)``: the Bernoulli field (``models.fields.Bernoulli``) trains and scores a
NADE as it is, and ``log_prob`` is that sum. ``sample`` draws a frame by ancestral
sampling, key after key, each drawn from its conditional given the keys drawn before
(a ``fori_loop`` over the keys, so a compiled graph holds one key's step, not ``K``).
``keras.ops`` only: every backend runs it.
"""

from __future__ import annotations

import keras
from keras import ops

from models.fields import Bernoulli


@keras.saving.register_keras_serializable(package="note_matrix")
class NADE(keras.layers.Layer):
    """A NADE over ``keys`` binary units with ``hidden`` hidden units, its biases a linear
    function of a condition vector (module docstring)."""

    def __init__(self, keys: int, hidden: int, **kwargs):
        super().__init__(**kwargs)
        for value, what in ((keys, "keys"), (hidden, "hidden")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"a NADE's {what} must be a positive integer, got {value!r}")
        self.keys, self.hidden = keys, hidden

    def build(self, input_shape):
        condition = int(input_shape[0][-1])

        def weight(name: str, shape: tuple[int, ...], initializer: str):
            return self.add_weight(name=name, shape=shape, initializer=initializer)

        self.visible_kernel = weight("visible_kernel", (condition, self.keys), "glorot_uniform")  # A_v
        self.visible_bias = weight("visible_bias", (self.keys,), "zeros")  # a_v
        self.hidden_kernel = weight("hidden_kernel", (condition, self.hidden), "glorot_uniform")  # A_h
        self.hidden_bias = weight("hidden_bias", (self.hidden,), "zeros")  # a_h
        self.w = weight("w", (self.keys, self.hidden), "glorot_uniform")
        self.v = weight("v", (self.keys, self.hidden), "glorot_uniform")

    def _biases(self, condition):
        """``(b_v (..., keys), b_h (..., hidden))`` of the condition ``(..., features)``."""
        return _condition_biases(condition, self.visible_kernel, self.visible_bias, self.hidden_kernel,
                                 self.hidden_bias)

    def call(self, inputs):
        """``[condition (..., features), visible (..., keys)]`` -> the teacher-forced logits ``(..., keys)``."""
        condition, visible = inputs
        visible_bias, hidden_bias = self._biases(condition)
        contributions = ops.cast(visible, "float32")[..., :, None] * self.w  # (..., keys, hidden)
        before = ops.cumsum(contributions, axis=-2) - contributions  # the keys before each key only
        hidden = ops.sigmoid(hidden_bias[..., None, :] + before)
        return visible_bias + ops.sum(hidden * self.v, axis=-1)

    def log_prob(self, condition, visible):
        """``log P(visible | condition)`` in nats, ``(...,)``: minus the Bernoulli field's loss of the logits."""
        return -Bernoulli(self.keys).loss(ops.cast(visible, "float32"), self([condition, visible]))

    @property
    def sampling_weights(self) -> tuple:
        """The variables ``sample_frame`` reads, in its order: ``(A_v, a_v, A_h, a_h, W, V)``."""
        return (self.visible_kernel, self.visible_bias, self.hidden_kernel, self.hidden_bias, self.w, self.v)

    def sample(self, condition, uniform, temperature: float = 1.0):
        """A frame ``(..., keys)`` drawn key by key (``sample_frame`` with this layer's weights)."""
        return sample_frame(tuple(ops.convert_to_tensor(v) for v in self.sampling_weights), condition, uniform,
                            temperature)

    def compute_output_shape(self, input_shape):
        return (*input_shape[0][:-1], self.keys)

    def get_config(self) -> dict:
        return {**super().get_config(), "keys": self.keys, "hidden": self.hidden}


def sample_frame(weights: tuple, condition, uniform, temperature: float = 1.0):
    """A frame ``(..., keys)`` float32 0/1 drawn key by key from the NADE of ``weights``
    (``NADE.sampling_weights``, as tensors: the carried-state generator passes them in so a
    compiled loop never captures them): key ``i`` is on where ``uniform[..., i]`` (in (0, 1])
    is below ``sigmoid(logit_i / temperature)`` given the keys drawn before it; temperature 0
    takes each key's more likely state instead."""
    if not temperature >= 0:
        raise ValueError(f"temperature must be at least 0, got {temperature}")
    *linear, w, v = weights
    visible_bias, hidden_bias = _condition_biases(condition, *linear)
    uniform = ops.cast(uniform, "float32")
    keys = int(w.shape[0])

    def key(index, state):
        pre_activation, visible = state
        logit = ops.take(visible_bias, index, axis=-1) + ops.sum(
            ops.sigmoid(pre_activation) * ops.take(v, index, axis=0), axis=-1
        )
        on = logit > 0 if temperature == 0 else ops.take(uniform, index, axis=-1) < ops.sigmoid(logit / temperature)
        on = ops.cast(on, "float32")[..., None]
        return (
            pre_activation + on * ops.take(w, index, axis=0),
            visible + on * ops.one_hot(index, keys, dtype="float32"),
        )

    _, visible = ops.fori_loop(0, keys, key, (hidden_bias, ops.zeros_like(visible_bias)))
    return visible


def _condition_biases(condition, visible_kernel, visible_bias, hidden_kernel, hidden_bias):
    """``(b_v (..., keys), b_h (..., hidden))`` of the condition ``(..., features)``."""
    condition = ops.cast(condition, "float32")
    return ops.matmul(condition, visible_kernel) + visible_bias, ops.matmul(condition, hidden_kernel) + hidden_bias
