"""A head: the network's output read as a tuple of output fields (``models.fields``).

A field owns a slice of the output (``width`` numbers) and of the target step
(``columns`` values) and says how they meet: its loss, its point prediction, how to
sample it and its log-likelihood. A ``Head`` lays its fields side by side, in order::

    output  [field 1's width | field 2's width | ...]
    target  [field 1's columns | field 2's columns | ...]
    noise   [every field's uniforms, in field order | every field's normals, in field order]

and adds their losses and likelihoods. Target rows may carry more columns after the
head's (inputs only); a field that ``reads_row`` sees the whole row (its own column at
``first``: ``row_loss``, ``row_metric``, ``row_nll``). The in-graph parts (``loss``, ``point``,
``sample``) use ``keras.ops`` only, so every backend runs them; ``nll`` and
``draw_noise`` are NumPy (float64 likelihoods). A head is saved as JSON (``to_json``),
inside a saved model through ``HeadLoss`` and the metrics of ``models.head_metrics``,
so a ``.keras`` file loads in safe mode.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import ClassVar

import keras
import numpy as np
from keras import ops


class Field(ABC):
    """What a head needs of an output field (the concrete ones are in ``models.fields``).

    Every field declares ``width`` (output numbers), ``columns`` (target values),
    ``names`` (its target columns), ``uniforms`` and ``normals`` (random numbers per
    sampled step), ``needs_spread`` (sampling and ``nll`` need the run's residual
    standard deviations by column name), ``label`` (its key in ``Head.nll_parts``) and
    ``top_k_classes`` (the classes a top-k draw chooses among; None: no top-k) and
    ``metric_name`` (what ``metric`` measures).
    """

    kind: ClassVar[str]
    reads_row: ClassVar[bool] = False  # True: loss, metric and nll see the whole target row (``row_*``)
    uniforms: ClassVar[int] = 0
    needs_spread: ClassVar[bool] = False
    top_k_classes: ClassVar[int | None] = None
    metric_name: ClassVar[str] = "squared_error"

    names: tuple[str, ...]

    @property
    def columns(self) -> int:
        return len(self.names)

    @property
    def normals(self) -> int:
        return 0

    @property
    def label(self) -> str:
        return "+".join(self.names)

    @property
    @abstractmethod
    def width(self) -> int: ...

    @abstractmethod
    def loss(self, y_true, y_pred):
        """Per step: float32 ``(..., columns)`` targets and ``(..., width)`` outputs -> ``(...,)``."""

    @abstractmethod
    def point(self, output):
        """The deterministic prediction: float32 ``(..., width)`` -> ``(..., columns)``."""

    @abstractmethod
    def sample(self, output, uniform, normal, *, temperature: float, top_k: int | None, spread):
        """A draw at ``temperature`` > 0: ``(N, width)`` outputs, ``(N, uniforms)`` uniforms in
        (0, 1] and ``(N, normals)`` standard normals (float32) -> ``(N, columns)``."""

    def metric(self, y_true, y_pred):
        """The field's metric per step (``keras.ops``): ``(..., columns)``, ``(..., width)`` ->
        ``(...,)``; here the squared error of ``point``, averaged over the columns."""
        return ops.mean(ops.square(y_true - self.point(y_pred)), axis=-1)

    @abstractmethod
    def nll(self, output: np.ndarray, target: np.ndarray, spread) -> np.ndarray:
        """``-log P(target)`` per row in nats: float64 ``(rows, width)``, ``(rows, columns)`` -> ``(rows,)``."""

    def to_json(self) -> dict:
        """The field as JSON, ``{"field": kind, ...its dataclass fields}`` (``models.fields.field_from_json``)."""
        return {"field": self.kind, **{key: _lists(value) for key, value in asdict(self).items()}}


def _lists(value):
    return [_lists(item) for item in value] if isinstance(value, (list, tuple)) else value


def check_count(value, what: str, minimum: int = 1) -> int:
    """``value`` if it is an integer (not a bool) of at least ``minimum``, else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{what} must be an integer of at least {minimum}, got {value!r}")
    return value


def check_names(value, what: str) -> tuple[str, ...]:
    """Distinct non-empty column names (a sequence of them) as a tuple, else ``ValueError``."""
    names = tuple(value) if isinstance(value, (list, tuple)) else ()
    if not names or not all(isinstance(name, str) and name for name in names) or len(set(names)) != len(names):
        raise ValueError(f"{what} needs distinct non-empty column names, got {value!r}")
    return names


def _part(x, start: int, stop: int):
    """``x[..., start:stop]``, or ``x`` itself when that is all of its last axis."""
    return x if start == 0 and stop == x.shape[-1] else x[..., start:stop]


@dataclass(frozen=True)
class Head:
    """The output fields of a network, in output order (module docstring)."""

    fields: tuple[Field, ...]

    def __post_init__(self):
        fields = tuple(self.fields) if isinstance(self.fields, (list, tuple)) else None
        if not fields or not all(isinstance(field, Field) for field in fields):
            raise ValueError(f"a head needs a non-empty sequence of output fields, got {self.fields!r}")
        object.__setattr__(self, "fields", fields)
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"the fields of a head need distinct column names, got {self.names}")

    # -- shape --------------------------------------------------------------------------
    width = property(lambda self: sum(field.width for field in self.fields))
    columns = property(lambda self: sum(field.columns for field in self.fields))
    names = property(lambda self: tuple(name for field in self.fields for name in field.names))
    uniforms = property(lambda self: sum(field.uniforms for field in self.fields))
    normals = property(lambda self: sum(field.normals for field in self.fields))
    noise_width = property(lambda self: self.uniforms + self.normals)
    needs_spread = property(lambda self: any(field.needs_spread for field in self.fields))
    # The columns the run's residual spread must give (those of its Gaussian fields).
    spread_names = property(lambda self: tuple(n for field in self.fields if field.needs_spread for n in field.names))
    # Sampled at temperature 1 unless every field is continuous (the card's regression writes its prediction).
    samples_by_default = property(lambda self: any(field.uniforms for field in self.fields))

    @property
    def top_k_limit(self) -> int | None:
        """The most classes a top-k draw may keep: the largest categorical field's (None: no such field)."""
        classes = [field.top_k_classes for field in self.fields if field.top_k_classes is not None]
        return max(classes) if classes else None

    def _spans(self):
        """``(field, output span, column span, uniform span, normal span)`` per field."""
        width = columns = uniforms = normals = 0
        for field in self.fields:
            yield (field, (width, width + field.width), (columns, columns + field.columns),
                   (uniforms, uniforms + field.uniforms), (normals, normals + field.normals))
            width, columns = width + field.width, columns + field.columns
            uniforms, normals = uniforms + field.uniforms, normals + field.normals

    # -- JSON -----------------------------------------------------------------------------
    def to_json(self) -> list[dict]:
        return [field.to_json() for field in self.fields]

    @classmethod
    def from_json(cls, data) -> Head:
        from models.fields import field_from_json  # the concrete fields import this module

        if not isinstance(data, (list, tuple)):
            raise ValueError(f"a head is a list of fields, got {data!r}")
        return cls(tuple(field_from_json(item) for item in data))

    # -- in the graph (keras.ops) -------------------------------------------------------------
    def loss(self, y_true, y_pred):
        """The sum of the fields' losses per step: ``(..., columns)``, ``(..., width)`` -> ``(...,)``."""
        y_true, y_pred = ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")
        total = None
        for field, (start, stop), (first, last), _, _ in self._spans():
            output = _part(y_pred, start, stop)
            value = field.row_loss(y_true, first, output) if field.reads_row else \
                field.loss(_part(y_true, first, last), output)
            total = value if total is None else total + value
        return total

    def field_metric(self, index: int, y_true, y_pred):
        """Field ``index``'s ``metric`` per step on its slices of ``y_true`` and ``y_pred``."""
        for number, (field, (start, stop), (first, last), _, _) in enumerate(self._spans()):
            if number == index:
                y_true, y_pred = ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")
                if field.reads_row:
                    return field.row_metric(y_true, first, _part(y_pred, start, stop))
                return field.metric(_part(y_true, first, last), _part(y_pred, start, stop))
        raise ValueError(f"this head has {len(self.fields)} fields, got field {index}")

    def point(self, output):
        """The deterministic step of each output: ``(..., width)`` -> ``(..., columns)`` float32."""
        output = ops.cast(output, "float32")
        points = [field.point(_part(output, start, stop)) for field, (start, stop), *_ in self._spans()]
        return points[0] if len(points) == 1 else ops.concatenate(points, axis=-1)

    def sample(self, output, noise, *, temperature: float, top_k: int | None = None, spread=None):
        """A step drawn from the head's distribution: ``(N, width)`` outputs and ``(N,
        noise_width)`` noise (``draw_noise``) -> ``(N, columns)`` float32; ``temperature`` 0
        is ``point``. ``spread``: standard deviations by column name (or in ``names``
        order), for the fields that ``needs_spread``."""
        if not temperature >= 0 or not math.isfinite(temperature):
            raise ValueError(f"temperature must be finite and at least 0, got {temperature}")
        self._check_top_k(top_k)
        output = ops.cast(output, "float32")
        if temperature == 0:
            return self.point(output)
        spread = self._spread(spread)
        noise = ops.cast(noise, "float32")
        uniform, normal = noise[..., : self.uniforms], noise[..., self.uniforms :]
        samples = [field.sample(_part(output, start, stop), uniform[..., u0:u1], normal[..., n0:n1],
                                temperature=temperature, top_k=top_k, spread=spread)
                   for field, (start, stop), _, (u0, u1), (n0, n1) in self._spans()]
        return samples[0] if len(samples) == 1 else ops.concatenate(samples, axis=-1)

    def _check_top_k(self, top_k: int | None) -> None:
        if top_k is None:
            return
        if self.top_k_limit is None:
            raise ValueError("top_k draws among a categorical field's most likely classes; this head has none")
        if not 1 <= top_k <= self.top_k_limit:
            raise ValueError(f"top_k must be between 1 and {self.top_k_limit}, got {top_k}")

    def _spread(self, spread):
        """``spread`` as ``{name: std}`` (a sequence is read in ``names`` order); None stays None."""
        if spread is None or isinstance(spread, Mapping):
            return spread
        values = tuple(float(value) for value in spread)
        if len(values) != len(self.names):
            raise ValueError(f"spread needs {len(self.names)} values {self.names}, got {len(values)}")
        return dict(zip(self.names, values))

    # -- NumPy ------------------------------------------------------------------------------
    def draw_noise(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """``shape + (noise_width,)`` float32 for ``sample``: every uniform in (0, 1] (never 0,
        so no zero-probability class is drawn), then every standard normal."""
        uniform = 1.0 - rng.random((*shape, self.uniforms))
        normal = rng.standard_normal((*shape, self.normals))
        return np.concatenate([uniform, normal], axis=-1).astype(np.float32)

    def nll_parts(self, output, target, spread=None) -> dict[str, np.ndarray]:
        """``-log P`` per row of each field's columns, in nats: ``{label: (rows,) float64}``."""
        output, target = np.asarray(output, np.float64), np.asarray(target, np.float64)
        if output.ndim != 2 or output.shape[1] != self.width or target.ndim != 2 or len(target) != len(output) \
                or target.shape[1] < self.columns:
            raise ValueError(f"nll needs output (rows, {self.width}) and target (rows, {self.columns} or more), "
                             f"got {output.shape} and {target.shape}")
        spread = self._spread(spread)
        return {field.label: field.row_nll(output[:, start:stop], target, first) if field.reads_row
                else field.nll(output[:, start:stop], target[:, first:last], spread)
                for field, (start, stop), (first, last), _, _ in self._spans()}

    def nll(self, output, target, spread=None) -> np.ndarray:
        """Negative log-likelihood per row, in nats: the sum of ``nll_parts``, ``(rows,)`` float64."""
        parts = list(self.nll_parts(output, target, spread).values())
        return sum(parts[1:], parts[0])

    def residual_std(self, outputs, targets) -> dict[str, float]:
        """Root mean square of ``point(outputs) - targets`` per column, ``{name: value}``: the
        maximum-likelihood standard deviation of a Gaussian centred on the point (the bias
        counts as spread), what sampling and ``nll`` put around a regressed column."""
        points = np.asarray(ops.convert_to_numpy(self.point(outputs)), np.float64)
        targets = np.asarray(targets, np.float64)[..., : self.columns]  # steps may carry more columns (inputs only)
        squared = np.mean((points - targets) ** 2, axis=0)
        return {name: float(np.sqrt(value)) for name, value in zip(self.names, squared)}


def as_head(head) -> Head:
    """A ``Head``, or one rebuilt from its JSON list."""
    return head if isinstance(head, Head) else Head.from_json(head)


@keras.saving.register_keras_serializable(package="note_matrix")
class HeadLoss(keras.losses.Loss):
    """The head's loss (``Head.loss``) as a Keras loss; its config is the head's JSON."""

    def __init__(self, head, name: str = "head_loss", reduction: str = "sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.head = as_head(head)

    def call(self, y_true, y_pred):
        return self.head.loss(y_true, y_pred)

    def get_config(self) -> dict:
        return {**super().get_config(), "head": self.head.to_json()}
