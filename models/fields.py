"""Output fields: the pieces a head (``models.head.Head``) is made of.

Each field is a frozen, JSON-serialisable dataclass that owns a slice of the network's
output and of the target step, with its loss, point prediction, sampling (``keras.ops``)
and log-likelihood (NumPy, float64):

``Gaussian(names, bins, reduce)``
    regresses its columns, ``width = columns = len(names)``. Loss: the mean (the card's
    ``mean_squared_error``) or the sum of the squared errors. Sampled and scored as a
    Gaussian around the prediction with the run's residual standard deviations
    (``spread``, by column name).
``Categorical(name, classes, scale)``
    ``classes`` logits for one column; the value ``v`` is class ``round(v * scale)``
    (the note matrix's pitch: 128 classes, scale 127; an integer token: scale 1).
    Loss: cross-entropy.
``Mixture(names, components, bins)``
    a mixture of ``K = components`` diagonal Gaussians over its columns, width
    ``K (1 + 2 len(names))``: ``[weights K | means, column by column, K each | log-stds,
    column by column, K each]``; a standard deviation is ``exp(min(s, 5)) + 1e-3`` (the
    floor keeps the density finite on point masses, the cap keeps ``exp`` finite).
    Loss: the mixture's negative log-likelihood.
``Bernoulli(names)`` (or a count)
    independent binary columns (multi-hot), one logit each. Loss: sigmoid cross-entropy.

Likelihoods treat every value as discrete: a Gaussian's probability is its mass over the
value's bin (``bins`` per column: ``("levels", L)``, the values ``k / L``; ``("uniform",
B)``, ``B`` equal bins of [0, 1); the end bins reach to infinity), so no density grows
without bound where the data has point masses, and probabilities are floored at
``PROBABILITY_FLOOR``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from keras import ops

from models.head import Field, Head, HeadLoss, check_count, check_names  # noqa: F401 (Head, HeadLoss: exported)

PROBABILITY_FLOOR = 1e-12  # -log P is at most 27.6 nats a field
GAUSSIAN_STD_FLOOR = 1e-6
MIXTURE_STD_FLOOR = 1e-3  # matrix units: a velocity step is 1/127 = 0.0079
MIXTURE_MAX_LOG_STD = 5.0
LOG_2PI = math.log(2 * math.pi)
BIN_KINDS = ("levels", "uniform")
REDUCTIONS = ("mean", "sum")


# -- NumPy: probabilities of binned values ----------------------------------------------------

_ERFC = np.vectorize(math.erfc, otypes=[np.float64])


def normal_mass(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``P(low < Z < high)`` for a standard normal Z, without cancellation in either tail."""
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    root2 = math.sqrt(2.0)
    upper = 0.5 * (_ERFC(low / root2) - _ERFC(high / root2))  # Q(low) - Q(high): exact for low > 0
    lower = 0.5 * (_ERFC(-high / root2) - _ERFC(-low / root2))  # Phi(high) - Phi(low)
    return np.where(low > 0, upper, lower)


def bin_edges(bins: tuple[str, int], values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The edges ``(low, high)`` of the bin each value falls in: ``("levels", L)``, the
    values ``k / L`` with bins ``[(k - 0.5) / L, (k + 0.5) / L]``; ``("uniform", B)``, ``B``
    equal bins of [0, 1). The first and last bins reach to -inf and +inf."""
    kind, count = bins
    values = np.asarray(values, np.float64)
    if kind == "levels":
        level = np.clip(np.rint(values * count), 0, count)
        low, high, last = (level - 0.5) / count, (level + 0.5) / count, count
    else:
        level = np.clip(np.floor(values * count), 0, count - 1)
        low, high, last = level / count, (level + 1) / count, count - 1
    return np.where(level == 0, -np.inf, low), np.where(level == last, np.inf, high)


def bin_mass(bins: tuple[str, int], target: np.ndarray, mean: np.ndarray, std) -> np.ndarray:
    """The mass of Gaussians ``(mean, std)`` over each target's bin (``bin_edges``)."""
    low, high = bin_edges(bins, target)
    std = np.maximum(np.asarray(std, np.float64), GAUSSIAN_STD_FLOOR)
    return normal_mass((low - mean) / std, (high - mean) / std)


def neg_log(probability: np.ndarray) -> np.ndarray:
    return -np.log(np.maximum(probability, PROBABILITY_FLOOR))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def spread_of(spread, names: tuple[str, ...]) -> tuple[float, ...]:
    """The standard deviations of ``names`` from ``spread`` ``{name: std}``."""
    if spread is None:
        raise ValueError("this head samples and scores regressed columns around its prediction and needs the "
                         "run's residual standard deviations (calibration.json)")
    missing = [name for name in names if name not in spread]
    if missing:
        raise ValueError(f"the residual standard deviations (calibration.json) lack {', '.join(missing)}")
    return tuple(float(spread[name]) for name in names)


# -- keras.ops ---------------------------------------------------------------------------------

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


def _log_normal(x, mean, std):
    return -0.5 * LOG_2PI - ops.log(std) - 0.5 * ops.square((x - mean) / std)


def _pick(values, component):
    """``values`` ``(..., K, C)`` at ``component`` ``(...,)`` int: ``(..., C)``."""
    mask = ops.one_hot(component, values.shape[-2], dtype=values.dtype)
    return ops.sum(values * mask[..., None], axis=-2)


# -- validation ----------------------------------------------------------------------------------

def _bins(value, names: tuple[str, ...], what: str) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, (list, tuple)) or len(value) != len(names):
        raise ValueError(f"{what} needs one bins entry per column {names}, got {value!r}")
    result = []
    for entry in value:
        if not isinstance(entry, (list, tuple)) or len(entry) != 2 or entry[0] not in BIN_KINDS:
            raise ValueError(f"{what}: bins are (kind, count) with kind one of {BIN_KINDS}, got {entry!r}")
        result.append((entry[0], check_count(entry[1], f"{what}: a bins count")))
    return tuple(result)


# -- the fields ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Gaussian(Field):
    """Regressed columns, sampled and scored as Gaussians around the prediction (module docstring)."""

    names: tuple[str, ...]
    bins: tuple[tuple[str, int], ...]
    reduce: str = "mean"

    kind = "gaussian"
    needs_spread = True

    def __post_init__(self):
        object.__setattr__(self, "names", check_names(self.names, "a gaussian field"))
        object.__setattr__(self, "bins", _bins(self.bins, self.names, "a gaussian field"))
        if self.reduce not in REDUCTIONS:
            raise ValueError(f"a gaussian field's reduce must be one of {REDUCTIONS}, got {self.reduce!r}")

    width = property(lambda self: len(self.names))
    normals = property(lambda self: len(self.names))

    def loss(self, y_true, y_pred):
        if self.reduce == "mean":  # keras' mean_squared_error, the card's loss
            return ops.mean(ops.square(y_true - y_pred), axis=-1)
        return ops.sum(ops.square(y_pred - y_true), axis=-1)

    def point(self, output):
        return output

    def sample(self, output, uniform, normal, *, temperature, top_k, spread):
        scale = ops.convert_to_tensor(np.asarray(spread_of(spread, self.names), np.float32) * np.float32(temperature))
        return output + scale * normal

    def nll(self, output, target, spread):
        stds = spread_of(spread, self.names)
        parts = [neg_log(bin_mass(bins, target[:, i], output[:, i], std))
                 for i, (bins, std) in enumerate(zip(self.bins, stds))]
        return sum(parts[1:], parts[0])


@dataclass(frozen=True)
class Categorical(Field):
    """One column as one of ``classes`` classes, from as many logits (module docstring)."""

    name: str
    classes: int
    scale: float = 1.0

    kind = "categorical"
    uniforms = 1

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a categorical field needs a non-empty column name, got {self.name!r}")
        check_count(self.classes, "a categorical field's classes", 2)
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)) or not 0 < self.scale < math.inf:
            raise ValueError(f"a categorical field's scale must be a positive number, got {self.scale!r}")
        object.__setattr__(self, "scale", float(self.scale))

    names = property(lambda self: (self.name,))
    width = property(lambda self: self.classes)
    top_k_classes = property(lambda self: self.classes)

    def _value(self, index):
        return ops.cast(index, "float32") / self.scale

    def loss(self, y_true, y_pred):
        index = ops.clip(ops.round(ops.cast(y_true[..., 0], "float32") * self.scale), 0.0, float(self.classes - 1))
        log_p = ops.log_softmax(y_pred, axis=-1)
        return -ops.squeeze(ops.take_along_axis(log_p, ops.cast(index, "int32")[..., None], axis=-1), axis=-1)

    def point(self, output):
        return self._value(ops.argmax(ops.nan_to_num(output, nan=0.0), axis=-1))[..., None]

    def sample(self, output, uniform, normal, *, temperature, top_k, spread):
        return self._value(sample_categorical(output, uniform[..., 0], temperature, top_k))[..., None]

    def nll(self, output, target, spread):
        index = np.clip(np.rint(target[:, 0] * self.scale), 0, self.classes - 1).astype(np.int64)
        return neg_log(np.exp(log_softmax(output)[np.arange(len(index)), index]))


@dataclass(frozen=True)
class Mixture(Field):
    """A mixture of ``components`` diagonal Gaussians over its columns (module docstring)."""

    names: tuple[str, ...]
    components: int
    bins: tuple[tuple[str, int], ...]

    kind = "mixture"
    uniforms = 1

    def __post_init__(self):
        object.__setattr__(self, "names", check_names(self.names, "a mixture field"))
        check_count(self.components, "a mixture field's components")
        object.__setattr__(self, "bins", _bins(self.bins, self.names, "a mixture field"))

    width = property(lambda self: self.components * (1 + 2 * len(self.names)))
    normals = property(lambda self: len(self.names))

    def _parts(self, output):
        """``(weights (..., K), means (..., K, C), stds (..., K, C))``."""
        k, c = self.components, len(self.names)
        means = ops.stack([output[..., k * (1 + i) : k * (2 + i)] for i in range(c)], axis=-1)
        log_stds = ops.stack([output[..., k * (1 + c + i) : k * (2 + c + i)] for i in range(c)], axis=-1)
        return output[..., :k], means, ops.exp(ops.minimum(log_stds, MIXTURE_MAX_LOG_STD)) + MIXTURE_STD_FLOOR

    def loss(self, y_true, y_pred):
        """``-log sum_j pi_j prod_c N(y_c; mu_jc, sd_jc)``, by logsumexp."""
        weights, means, stds = self._parts(y_pred)
        log_component = ops.sum(_log_normal(y_true[..., None, :], means, stds), axis=-1)
        return -ops.logsumexp(ops.log_softmax(weights, axis=-1) + log_component, axis=-1)

    def point(self, output):
        """The most likely component's means."""
        weights, means, _ = self._parts(output)
        return _pick(means, ops.argmax(ops.nan_to_num(weights, nan=0.0), axis=-1))

    def sample(self, output, uniform, normal, *, temperature, top_k, spread):
        """A component from ``softmax(weights / temperature)``, then its Gaussian with the
        standard deviations scaled by ``temperature``."""
        weights, means, stds = self._parts(output)
        component = sample_categorical(weights, uniform[..., 0], temperature)
        return _pick(means, component) + temperature * _pick(stds, component) * normal

    def nll(self, output, target, spread):
        """The mixture's joint mass over the target's bins (independent within a component)."""
        k, c = self.components, len(self.names)
        joint = np.exp(log_softmax(output[:, :k]))
        for i, bins in enumerate(self.bins):
            stds = np.exp(np.minimum(output[:, k * (1 + c + i) : k * (2 + c + i)], MIXTURE_MAX_LOG_STD))
            joint = joint * bin_mass(bins, target[:, i : i + 1], output[:, k * (1 + i) : k * (2 + i)],
                                     stds + MIXTURE_STD_FLOOR)
        return neg_log(joint.sum(axis=-1))


@dataclass(frozen=True)
class Bernoulli(Field):
    """Independent binary columns (multi-hot), one logit each; ``names`` may be a count
    ``n`` (columns ``bit0 .. bit{n-1}``)."""

    names: tuple[str, ...]

    kind = "bernoulli"

    def __post_init__(self):
        names = self.names
        if isinstance(names, int) and not isinstance(names, bool):
            names = tuple(f"bit{i}" for i in range(check_count(names, "a bernoulli field's count")))
        object.__setattr__(self, "names", check_names(names, "a bernoulli field"))

    width = property(lambda self: len(self.names))
    uniforms = property(lambda self: len(self.names))

    def loss(self, y_true, y_pred):
        """Sigmoid cross-entropy summed over the columns, in its stable form."""
        x = y_pred
        return ops.sum(ops.maximum(x, 0.0) - x * y_true + ops.log1p(ops.exp(-ops.abs(x))), axis=-1)

    def point(self, output):
        return ops.cast(output > 0, "float32")

    def sample(self, output, uniform, normal, *, temperature, top_k, spread):
        return ops.cast(uniform < ops.sigmoid(output / temperature), "float32")

    def nll(self, output, target, spread):
        logit = np.where(target > 0.5, output, -output)  # log P(y) = -log(1 + exp(-logit))
        return neg_log(np.exp(-np.logaddexp(0.0, -logit))).sum(axis=-1)


FIELDS = {cls.kind: cls for cls in (Gaussian, Categorical, Mixture, Bernoulli)}


def field_from_json(data) -> Field:
    """The field of ``Field.to_json``'s dict; ``ValueError`` if it is not one."""
    if not isinstance(data, Mapping) or data.get("field") not in FIELDS:
        raise ValueError(f"a field is a dict with 'field' one of {sorted(FIELDS)}, got {data!r}")
    options = {key: value for key, value in data.items() if key != "field"}
    try:
        return FIELDS[data["field"]](**options)
    except TypeError as error:
        raise ValueError(f"not a {data['field']} field: {error}") from None


# -- the note matrix's heads ------------------------------------------------------------------------

NOTE_MATRIX_COLUMNS = ("note", "velocity", "time")
MIDI_NOTES = 128
NOTE_BINS = ("levels", 127)  # the 128 MIDI levels k / 127
TIME_BINS = ("uniform", 1000)  # the time column [0, 1) in bins of 0.001


def regression_head() -> Head:
    """The card's: the row itself, mean squared error (width 3)."""
    return Head((Gaussian(NOTE_MATRIX_COLUMNS, (NOTE_BINS, NOTE_BINS, TIME_BINS), "mean"),))


def _pitch() -> Categorical:
    return Categorical("note", MIDI_NOTES, scale=127.0)


def categorical_head() -> Head:
    """128 pitch logits (cross-entropy), velocity and time regressed (summed squared errors): width 130."""
    return Head((_pitch(), Gaussian(("velocity", "time"), (NOTE_BINS, TIME_BINS), "sum")))


def mdn_head(mixtures: int) -> Head:
    """128 pitch logits and a ``mixtures``-component mixture over (velocity, time): width 128 + 5K."""
    return Head((_pitch(), Mixture(("velocity", "time"), mixtures, (NOTE_BINS, TIME_BINS))))
