"""Output heads: what the network's last layer predicts, its loss, its point row, its
likelihood of a row and how to sample a row from it.

Backend-neutral: the in-graph parts (losses, ``point_rows``, ``sample_rows``) use
``keras.ops`` only; ``row_nll`` and ``draw_noise`` are NumPy. Every head has ONE output
tensor ``(batch, width)`` (or ``(batch, steps, width)`` with ``targets="all"``) from the
``dense`` layer and a linear ``activation``; ``width = head_width(config)``:

``regression`` (the card's), width 3::

    [note, velocity, time]                      the predicted row, in the matrix's units

``categorical``, width 130::

    [pitch logits 0..127 | velocity | time]     128 + 2

``mdn``, width 128 + 5K (K = ``mixtures``, components over (velocity, time))::

    [pitch logits 0..127                         128
     | mixture logits w_1..w_K                   K
     | velocity means mu_v1..mu_vK               K
     | time means mu_t1..mu_tK                   K
     | velocity log-stds s_v1..s_vK              K
     | time log-stds s_t1..s_tK]                 K

  A component's standard deviation is ``exp(min(s, MDN_MAX_LOG_STD)) + MDN_STD_FLOOR``:
  the floor keeps the density finite where the data has a point mass (many rows have a
  gap of exactly 0 or a velocity of exactly 0), the cap keeps ``exp`` finite. Velocity
  and time are independent within a component (diagonal covariance), dependent through
  the mixture.

The widths 3, 130 and 128 + 5K never coincide, so ``head_from_width`` recovers the head
from a model's output alone (the metrics use it; a saved model needs no extra config).

Losses (per row; Keras averages over rows and steps):

- regression: ``mean_squared_error`` over the three columns (the card's);
- categorical: ``-log softmax(pitch logits)[k] + (v_hat - v)^2 + (t_hat - t)^2`` with
  ``k = round(127 note)``: cross-entropy and the two squared errors, an equal sum;
- mdn: ``-log softmax(pitch logits)[k] - log sum_j pi_j N(v; mu_vj, sd_vj) N(t; mu_tj, sd_tj)``,
  the pitch's cross-entropy plus the mixture's negative log-likelihood (by logsumexp).

Why an equal sum for the categorical head: RMSprop scales every weight's step by that
weight's own gradient size, so the output weights of the velocity and time columns learn
at the same rate whatever the scale of their term; the shared recurrent layers follow
mostly the cross-entropy, the part that collapsed under MSE; and the two regression
columns keep exactly the card's squared error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from note_matrix.likelihood import (  # noqa: F401 (also part of this module's interface)
    GAUSSIAN_STD_FLOOR,
    PROBABILITY_FLOOR,
    TIME_BINS,
    column_bin,
    gaussian_bin_probability,
    midi_pitch,
    normal_mass,
)

HEADS = ("regression", "categorical", "mdn")
DEFAULT_MIXTURES = 5
MIDI_NOTES = 128
MIDI_MAX = 127.0
COLUMNS = ("note", "velocity", "time")
MDN_STD_FLOOR = 1e-3  # matrix units: a velocity step is 1/127 = 0.0079
MDN_MAX_LOG_STD = 5.0
LOG_2PI = math.log(2 * math.pi)
REGRESSION_WEIGHT = 1.0  # categorical head: weight of each squared error beside the cross-entropy


@dataclass(frozen=True)
class HeadConfig:
    """The head of a model: ``head`` (one of ``HEADS``) and ``mixtures`` (MDN components).

    ``ModelConfig`` has the same two fields, so every function here takes either.
    """

    head: str = "regression"
    mixtures: int = DEFAULT_MIXTURES

    def __post_init__(self):
        check_head(self.head, self.mixtures)


def check_head(head: str, mixtures: int) -> None:
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    if not isinstance(mixtures, int) or mixtures < 1:
        raise ValueError(f"mixtures must be a positive integer, got {mixtures!r}")


def head_config(config) -> HeadConfig:
    """The ``HeadConfig`` of a ``ModelConfig``, a ``HeadConfig`` or a ``config.json`` model dict."""
    if isinstance(config, Mapping):
        return HeadConfig(config.get("head", "regression"), config.get("mixtures", DEFAULT_MIXTURES))
    return HeadConfig(config.head, getattr(config, "mixtures", DEFAULT_MIXTURES))


def head_width(config) -> int:
    """The output width of ``config``'s head: 3, 130 or 128 + 5K (module docstring)."""
    config = head_config(config)
    if config.head == "regression":
        return 3
    if config.head == "categorical":
        return MIDI_NOTES + 2
    return MIDI_NOTES + 5 * config.mixtures


def head_from_width(width: int) -> HeadConfig:
    """The head whose output has ``width`` columns (widths never coincide)."""
    width = int(width)
    if width == MIDI_NOTES + 2:
        return HeadConfig("categorical")
    if width > MIDI_NOTES and (width - MIDI_NOTES) % 5 == 0:
        return HeadConfig("mdn", (width - MIDI_NOTES) // 5)
    if width < MIDI_NOTES:
        return HeadConfig("regression")
    raise ValueError(f"no head has an output of width {width}")


def noise_width(config) -> int:
    """Random numbers a sampled row needs (``draw_noise``'s last axis):

    regression ``[z_note, z_velocity, z_time]``; categorical ``[u_pitch, z_velocity,
    z_time]``; mdn ``[u_pitch, u_component, z_velocity, z_time]``; ``u`` uniform in
    (0, 1], ``z`` standard normal.
    """
    return 4 if head_config(config).head == "mdn" else 3


def draw_noise(config, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """``shape + (noise_width,)`` float32 random numbers for ``sample_rows``, from ``rng``."""
    config = head_config(config)
    uniforms = {"regression": 0, "categorical": 1, "mdn": 2}[config.head]
    normals = noise_width(config) - uniforms
    uniform = 1.0 - rng.random((*shape, uniforms))  # (0, 1]: never 0, so no zero-probability pitch
    normal = rng.standard_normal((*shape, normals))
    return np.concatenate([uniform, normal], axis=-1).astype(np.float32)


# -- the parts of an output (keras.ops) ----------------------------------------------------------

def _mdn_parts(output, mixtures: int):
    """``(pitch_logits, mixture_logits, means (..., K, 2), stds (..., K, 2))``, last axis (velocity, time)."""
    k, base = mixtures, MIDI_NOTES
    pitch = output[..., :base]
    weights = output[..., base : base + k]
    means = ops.stack([output[..., base + k : base + 2 * k], output[..., base + 2 * k : base + 3 * k]], axis=-1)
    log_stds = ops.stack([output[..., base + 3 * k : base + 4 * k], output[..., base + 4 * k : base + 5 * k]], axis=-1)
    stds = ops.exp(ops.minimum(log_stds, MDN_MAX_LOG_STD)) + MDN_STD_FLOOR
    return pitch, weights, means, stds


def _pitch_index(note):
    """The note column (pitch / 127) as int32 MIDI notes 0..127."""
    return ops.cast(ops.clip(ops.round(ops.cast(note, "float32") * MIDI_MAX), 0.0, MIDI_MAX), "int32")


def _argmax_note(logits):
    """The most likely pitch as the note column, ``argmax / 127``."""
    return ops.cast(ops.argmax(ops.nan_to_num(logits, nan=0.0), axis=-1), "float32") / MIDI_MAX


def _pick(values, component):
    """``values`` ``(..., K, 2)`` at ``component`` ``(...,)`` int: ``(..., 2)``."""
    mask = ops.one_hot(component, values.shape[-2], dtype=values.dtype)
    return ops.sum(values * mask[..., None], axis=-2)


def point_rows(config, output):
    """The deterministic row of each output: ``(..., width)`` -> ``(..., 3)`` float32.

    regression: the output itself; categorical: ``[argmax pitch / 127, velocity, time]``;
    mdn: ``[argmax pitch / 127, the most likely component's velocity and time means]``.
    Not yet valid rows (see ``note_matrix.generation.valid_rows``).
    """
    config = head_config(config)
    output = ops.cast(output, "float32")
    if config.head == "regression":
        return output
    if config.head == "categorical":
        return ops.concatenate([_argmax_note(output[..., :MIDI_NOTES])[..., None], output[..., MIDI_NOTES:]], axis=-1)
    pitch, weights, means, _ = _mdn_parts(output, config.mixtures)
    component = ops.argmax(ops.nan_to_num(weights, nan=0.0), axis=-1)
    return ops.concatenate([_argmax_note(pitch)[..., None], _pick(means, component)], axis=-1)


# -- losses (keras.ops; registered, so saved models load in safe mode) ---------------------------

def _pitch_cross_entropy(y_true, logits):
    """``-log softmax(logits)[round(127 note)]``: ``(...,)``."""
    log_p = ops.log_softmax(logits, axis=-1)
    return -ops.squeeze(ops.take_along_axis(log_p, _pitch_index(y_true[..., 0])[..., None], axis=-1), axis=-1)


def _log_normal(x, mean, std):
    return -0.5 * LOG_2PI - ops.log(std) - 0.5 * ops.square((x - mean) / std)


def _mixture_nll(y_true, output, mixtures: int):
    """``-log sum_j pi_j N(v) N(t)`` of the targets' (velocity, time): ``(...,)``."""
    _, weights, means, stds = _mdn_parts(output, mixtures)
    values = y_true[..., None, 1:3]  # (..., 1, 2) against (..., K, 2)
    log_component = ops.sum(_log_normal(values, means, stds), axis=-1)
    return -ops.logsumexp(ops.log_softmax(weights, axis=-1) + log_component, axis=-1)


@keras.saving.register_keras_serializable(package="note_matrix")
def categorical_loss(y_true, y_pred):
    """Categorical head: pitch cross-entropy + squared errors of velocity and time.

    ``y_true`` ``(..., 3)`` rows, ``y_pred`` ``(..., 130)``; returns ``(...,)`` in nats + squared units.
    """
    y_true, y_pred = ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")
    squared = ops.sum(ops.square(y_pred[..., MIDI_NOTES:] - y_true[..., 1:3]), axis=-1)
    return _pitch_cross_entropy(y_true, y_pred[..., :MIDI_NOTES]) + REGRESSION_WEIGHT * squared


@keras.saving.register_keras_serializable(package="note_matrix")
def mdn_loss(y_true, y_pred):
    """MDN head: pitch cross-entropy + the mixture's negative log-likelihood of (velocity, time).

    ``y_true`` ``(..., 3)``, ``y_pred`` ``(..., 128 + 5K)`` (K from the width); returns ``(...,)`` nats.
    """
    y_true, y_pred = ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")
    mixtures = head_from_width(y_pred.shape[-1]).mixtures
    return _pitch_cross_entropy(y_true, y_pred[..., :MIDI_NOTES]) + _mixture_nll(y_true, y_pred, mixtures)


LOSSES = {"regression": "mean_squared_error", "categorical": categorical_loss, "mdn": mdn_loss}


def head_loss(config):
    """The loss ``compile`` gets for ``config``'s head (a Keras name or a registered function)."""
    return LOSSES[head_config(config).head]


def loss_values(config, y_true, y_pred):
    """The head's loss per row, ``(...,)``, for any head (regression: mean of the three squared errors)."""
    config = head_config(config)
    if config.head == "regression":
        return ops.mean(ops.square(ops.cast(y_true, "float32") - ops.cast(y_pred, "float32")), axis=-1)
    return LOSSES[config.head](y_true, y_pred)


# -- sampling (keras.ops, inside the compiled generation loop) -----------------------------------

def sample_categorical(logits, uniform, temperature: float, top_k: int | None = None):
    """One index per row from ``softmax(logits / temperature)``, restricted to the ``top_k``
    largest logits (ties at the k-th value kept), by inverse CDF of ``uniform`` in (0, 1].

    ``logits`` ``(N, C)``, ``uniform`` ``(N,)``; returns ``(N,)`` int32. A zero-probability
    class is never drawn; as ``temperature`` -> 0 the draw becomes the argmax.
    """
    scaled = ops.nan_to_num(ops.cast(logits, "float32") / temperature, nan=0.0)
    probabilities = ops.softmax(scaled, axis=-1)
    classes = scaled.shape[-1]
    if top_k is not None and top_k < classes:
        kth = ops.top_k(scaled, top_k, sorted=True)[0][..., -1:]
        probabilities = ops.where(scaled >= kth, probabilities, ops.zeros_like(probabilities))
    cdf = ops.cumsum(probabilities, axis=-1)
    threshold = ops.cast(uniform, "float32")[..., None] * cdf[..., -1:]  # renormalises what top-k left
    index = ops.sum(ops.cast(cdf < threshold, "int32"), axis=-1)
    return ops.minimum(index, classes - 1)


def std_triplet(residual_std) -> tuple[float, float, float]:
    """``(note, velocity, time)`` from ``{"note": s, ...}`` or a sequence of three."""
    if residual_std is None:
        raise ValueError("this head samples velocity and time around its prediction and needs the run's "
                         "residual standard deviations (calibration.json)")
    if isinstance(residual_std, Mapping):
        return tuple(float(residual_std[name]) for name in COLUMNS)
    values = tuple(float(v) for v in residual_std)
    if len(values) != 3:
        raise ValueError(f"residual_std needs 3 values (note, velocity, time), got {len(values)}")
    return values


def sample_rows(config, output, noise, *, temperature: float, top_k: int | None = None, residual_std=None):
    """A row drawn from the head's distribution: ``output`` ``(N, width)``, ``noise``
    ``(N, noise_width)`` (``draw_noise``) -> ``(N, 3)`` float32, not yet made valid.

    - regression: ``prediction + temperature * residual_std * z`` per column;
    - categorical: pitch from ``softmax(logits / temperature)`` (optionally top-k),
      velocity and time ``prediction + temperature * residual_std * z``;
    - mdn: pitch as categorical; a component from ``softmax(mixture logits / temperature)``,
      then its Gaussian with the standard deviations scaled by ``temperature``.

    ``temperature`` 0 is ``point_rows``. ``residual_std``: ``{"note", "velocity", "time"}``
    (``calibration.json``) for the regression and categorical heads.
    """
    config = head_config(config)
    if not temperature >= 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be finite and at least 0, got {temperature}")
    if top_k is not None and not 1 <= top_k <= MIDI_NOTES:
        raise ValueError(f"top_k must be between 1 and {MIDI_NOTES}, got {top_k}")
    output = ops.cast(output, "float32")
    if temperature == 0:
        return point_rows(config, output)
    noise = ops.cast(noise, "float32")
    if config.head == "regression":
        scale = ops.convert_to_tensor(np.asarray(std_triplet(residual_std), np.float32) * np.float32(temperature))
        return output + scale * noise
    pitch = sample_categorical(output[..., :MIDI_NOTES], noise[..., 0], temperature, top_k)
    note = ops.cast(pitch, "float32")[..., None] / MIDI_MAX
    if config.head == "categorical":
        _, velocity_std, time_std = std_triplet(residual_std)
        scale = ops.convert_to_tensor(np.array([velocity_std, time_std], np.float32) * np.float32(temperature))
        return ops.concatenate([note, output[..., MIDI_NOTES:] + scale * noise[..., 1:3]], axis=-1)
    _, weights, means, stds = _mdn_parts(output, config.mixtures)
    component = sample_categorical(weights, noise[..., 1], temperature)
    values = _pick(means, component) + temperature * _pick(stds, component) * noise[..., 2:4]
    return ops.concatenate([note, values], axis=-1)


# -- likelihood of rows (NumPy, float64) --------------------------------------------------------

def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def pitch_probability(config, output, target_note, residual_std=None) -> np.ndarray:
    """``P(pitch)`` of each target row's MIDI note under the head: ``(rows,)`` float64.

    regression: the mass of a Gaussian (mean the predicted note column, standard deviation
    the calibration's) over the note's bin ``[(k - 0.5) / 127, (k + 0.5) / 127]``, the
    mass beyond either end going to notes 0 and 127, as the generator's clipping puts it;
    categorical and mdn: the softmax probability.
    """
    config = head_config(config)
    output = np.asarray(output, np.float64)
    pitch = midi_pitch(target_note)
    if config.head == "regression":
        note_std = max(std_triplet(residual_std)[0], GAUSSIAN_STD_FLOOR)
        low = np.where(pitch == 0, -np.inf, (pitch - 0.5) / MIDI_MAX)
        high = np.where(pitch == 127, np.inf, (pitch + 0.5) / MIDI_MAX)
        return normal_mass((low - output[:, 0]) / note_std, (high - output[:, 0]) / note_std)
    return np.exp(_log_softmax(output[:, :MIDI_NOTES])[np.arange(len(pitch)), pitch])


def row_nll(config, output, target, residual_std=None) -> np.ndarray:
    """Negative log-likelihood per row, in nats: ``(rows,)`` float64, never negative.

    ``-log P(pitch) - log P(velocity) - log P(time)`` of the ``target`` rows ``(rows, 3)``
    under the head's ``output`` ``(rows, width)``, every column as a discrete value: the
    pitch one of the 128 MIDI notes (``pitch_probability``), velocity one of the 128 MIDI
    levels and time one of ``TIME_BINS`` bins of the time column (``column_bin``), so a
    density cannot grow without bound on the many rows whose velocity or gap is exactly 0,
    and every head and baseline lands on one scale. Velocity and time: Gaussians around
    the prediction with the calibration's standard deviations (regression, categorical;
    ``residual_std`` ``{"note", "velocity", "time"}`` or three numbers), the mixture's
    joint mass (mdn; ``residual_std`` unused). Probabilities are floored at
    ``PROBABILITY_FLOOR`` (as ``note_matrix.baselines``).
    """
    config = head_config(config)
    output, target = np.asarray(output, np.float64), np.asarray(target, np.float64)
    if output.ndim != 2 or output.shape[1] != head_width(config) or target.shape != (len(output), 3):
        raise ValueError(f"row_nll needs output (rows, {head_width(config)}) and target (rows, 3), "
                         f"got {output.shape} and {target.shape}")
    pitch = -np.log(np.maximum(pitch_probability(config, output, target[:, 0], residual_std), PROBABILITY_FLOOR))
    if config.head == "mdn":
        k, base = config.mixtures, MIDI_NOTES
        weights = np.exp(_log_softmax(output[:, base : base + k]))
        log_stds = np.stack([output[:, base + 3 * k : base + 4 * k], output[:, base + 4 * k : base + 5 * k]])
        stds = np.exp(np.minimum(log_stds, MDN_MAX_LOG_STD)) + MDN_STD_FLOOR
        velocity = gaussian_bin_probability("velocity", target[:, 1:2], output[:, base + k : base + 2 * k], stds[0])
        time = gaussian_bin_probability("time", target[:, 2:3], output[:, base + 2 * k : base + 3 * k], stds[1])
        joint = (weights * velocity * time).sum(axis=-1)  # within a component the two are independent
        return pitch - np.log(np.maximum(joint, PROBABILITY_FLOOR))
    _, velocity_std, time_std = std_triplet(residual_std)
    velocity, time = (output[:, 1], output[:, 2]) if config.head == "regression" else (output[:, 128], output[:, 129])
    velocity_p = gaussian_bin_probability("velocity", target[:, 1], velocity, velocity_std)
    time_p = gaussian_bin_probability("time", target[:, 2], time, time_std)
    return pitch - np.log(np.maximum(velocity_p, PROBABILITY_FLOOR)) - np.log(np.maximum(time_p, PROBABILITY_FLOOR))


def residual_std_of(config, outputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Root mean square of ``point_rows(outputs) - targets`` per column, as ``{"note", "velocity", "time"}``.

    The maximum-likelihood standard deviation of a Gaussian centred on the prediction
    (the bias counts as spread), which is what sampling and ``row_nll`` put around it.
    """
    rows = np.asarray(ops.convert_to_numpy(point_rows(config, outputs)), np.float64)
    squared = np.mean((rows - np.asarray(targets, np.float64)) ** 2, axis=0)
    return {name: float(np.sqrt(value)) for name, value in zip(COLUMNS, squared)}
