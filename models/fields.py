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
    Loss: cross-entropy. Metric: accuracy of the most likely class.
``Mixture(names, components, bins)``
    a mixture of ``K = components`` diagonal Gaussians over its columns, width
    ``K (1 + 2 len(names))``: ``[weights K | means, column by column, K each | log-stds,
    column by column, K each]``; a standard deviation is ``exp(min(s, 5)) + 1e-3`` (the
    floor keeps the density finite on point masses, the cap keeps ``exp`` finite).
    Loss: the mixture's negative log-likelihood.
``Toggle(name, classes, gate, state)``
    a categorical whose class flips one bit of a multi-hot state: ``classes`` target
    columns from ``state`` hold the bits after the step, and column ``gate`` says which
    way (0: a set bit is cleared, else a clear bit is set), so only the bits that can flip
    are candidates. Loss, metric and likelihood renormalise the softmax over them (the
    note events' pitch: a note-off releases a sounding note, a note-on strikes a silent
    one); ``point`` and ``sample`` know no state (``next_step`` of the representation
    applies it).
``Bernoulli(names)`` (or a count)
    independent binary columns (multi-hot), one logit each. Loss: sigmoid cross-entropy.
    Metric: the fraction of columns whose rounded logit is right.

The other fields' metric is the squared error of their point prediction (``Field.metric``).

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
from models.likelihood import (  # noqa: F401 (PROBABILITY_FLOOR, bin_edges, normal_mass: exported)
    BIN_KINDS,
    PROBABILITY_FLOOR,
    bin_edges,
    bin_mass,
    log_softmax,
    neg_log,
    normal_mass,
)

MIXTURE_STD_FLOOR = 1e-3  # matrix units: a velocity step is 1/127 = 0.0079
MIXTURE_MAX_LOG_STD = 5.0
LOG_2PI = math.log(2 * math.pi)
REDUCTIONS = ("mean", "sum")


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
    metric_name = "accuracy"

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

    def metric(self, y_true, y_pred):
        target = ops.round(y_true[..., 0] * self.scale)
        return ops.cast(ops.equal(target, ops.round(self.point(y_pred)[..., 0] * self.scale)), "float32")

    def sample(self, output, uniform, normal, *, temperature, top_k, spread):
        return self._value(sample_categorical(output, uniform[..., 0], temperature, top_k))[..., None]

    def nll(self, output, target, spread):
        index = np.clip(np.rint(target[:, 0] * self.scale), 0, self.classes - 1).astype(np.int64)
        return neg_log(np.exp(log_softmax(output)[np.arange(len(index)), index]))


@dataclass(frozen=True)
class Toggle(Categorical):
    """A categorical among the bits that can flip (module docstring)."""

    gate: int = 0
    state: int = 1

    kind = "toggle"
    reads_row = True

    def __post_init__(self):
        super().__post_init__()
        check_count(self.gate, "a toggle field's gate column", 0)
        check_count(self.state, "a toggle field's state column", 0)

    def _allowed(self, row, index):
        """Which classes could be this step's, from the row's bits after it and its gate."""
        after = row[..., self.state : self.state + self.classes] > 0.5
        mine = ops.one_hot(ops.cast(index, "int32"), self.classes) > 0.5
        released = (row[..., self.gate] < 0.5)[..., None]
        before = ops.where(mine, released, after)
        return ops.where(released, before, ops.logical_not(before))

    def _log_p(self, row, first, y_pred):
        index = ops.clip(ops.round(row[..., first] * self.scale), 0.0, float(self.classes - 1))
        logits = ops.where(self._allowed(row, index), y_pred, -1e9)
        return ops.log_softmax(logits, axis=-1), index

    def row_loss(self, row, first, y_pred):
        log_p, index = self._log_p(row, first, y_pred)
        return -ops.squeeze(ops.take_along_axis(log_p, ops.cast(index, "int32")[..., None], axis=-1), axis=-1)

    def row_metric(self, row, first, y_pred):
        log_p, index = self._log_p(row, first, y_pred)
        return ops.cast(ops.equal(ops.cast(ops.argmax(log_p, axis=-1), "float32"), index), "float32")

    def row_nll(self, output, row, first):
        index = np.clip(np.rint(row[:, first] * self.scale), 0, self.classes - 1).astype(np.int64)
        rows = np.arange(len(index))
        after = row[:, self.state : self.state + self.classes] > 0.5
        after[rows, index] = row[:, self.gate] < 0.5  # the bits before the step
        allowed = np.where((row[:, self.gate] < 0.5)[:, None], after, ~after)
        return neg_log(np.exp(log_softmax(np.where(allowed, output, -1e9))[rows, index]))


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
    metric_name = "bit_accuracy"

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

    def metric(self, y_true, y_pred):
        return ops.mean(ops.cast(ops.equal(ops.cast(y_true > 0.5, "float32"), self.point(y_pred)), "float32"), axis=-1)

    def sample(self, output, uniform, normal, *, temperature, top_k, spread):
        return ops.cast(uniform < ops.sigmoid(output / temperature), "float32")

    def nll(self, output, target, spread):
        logit = np.where(target > 0.5, output, -output)  # log P(y) = -log(1 + exp(-logit))
        return neg_log(np.exp(-np.logaddexp(0.0, -logit))).sum(axis=-1)


FIELDS = {cls.kind: cls for cls in (Gaussian, Categorical, Toggle, Mixture, Bernoulli)}


def field_from_json(data) -> Field:
    """The field of ``Field.to_json``'s dict; ``ValueError`` if it is not one."""
    if not isinstance(data, Mapping) or data.get("field") not in FIELDS:
        raise ValueError(f"a field is a dict with 'field' one of {sorted(FIELDS)}, got {data!r}")
    options = {key: value for key, value in data.items() if key != "field"}
    try:
        return FIELDS[data["field"]](**options)
    except TypeError as error:
        raise ValueError(f"not a {data['field']} field: {error}") from None
