"""Metrics of a head (``models.head.Head``), written with ``keras.ops`` so every backend runs them.

Each is a registered ``MeanMetricWrapper`` whose config carries the head's JSON, so a
saved model names them and loads in safe mode. ``y_true`` ``(batch, columns)`` or
``(batch, steps, columns)``; ``y_pred`` ``(batch, width)`` or ``(batch, steps, width)``.
"""

from __future__ import annotations

import keras
from keras import ops

from models.head import as_head


class _HeadMetric(keras.metrics.MeanMetricWrapper):
    """A mean over steps of ``self.values(y_true, y_pred)``; config: name, dtype, head and ``_options``."""

    _options: tuple[str, ...] = ()

    def __init__(self, head, name: str, dtype=None):
        super().__init__(fn=self.values, name=name, dtype=dtype)
        self.head = as_head(head)

    def values(self, y_true, y_pred):
        raise NotImplementedError

    def get_config(self) -> dict:
        options = {option: getattr(self, option) for option in self._options}
        return {"name": self.name, "dtype": self.dtype, "head": self.head.to_json(), **options}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)


def _last(y_true, y_pred):
    """Only the last step counts when ``y_pred`` is ``(batch, steps, width)``."""
    if len(y_pred.shape) == 3:
        return y_true[:, -1], y_pred[:, -1]
    return y_true, y_pred


@keras.saving.register_keras_serializable(package="note_matrix")
class ColumnAccuracy(_HeadMetric):
    """Fraction of steps whose point prediction of ``column``, times ``scale`` and rounded,
    is the target's (the note matrix's pitch: column 0, scale 127). Every step counts."""

    _options = ("column", "scale")

    def __init__(self, head, column: int = 0, scale: float = 127.0, name: str = "pitch_accuracy", dtype=None):
        super().__init__(head, name=name, dtype=dtype)
        self.column, self.scale = int(column), float(scale)

    def values(self, y_true, y_pred):
        predicted = self.head.point(y_pred)
        true_value = ops.round(ops.cast(y_true[..., self.column], "float32") * self.scale)
        predicted_value = ops.round(predicted[..., self.column] * self.scale)
        return ops.cast(ops.equal(true_value, predicted_value), "float32")


@keras.saving.register_keras_serializable(package="note_matrix")
class LastSquaredError(_HeadMetric):
    """Squared error of the point prediction after the whole window, averaged over the columns:
    the card's task whatever the head and targets mode."""

    def __init__(self, head, name: str = "last_mse", dtype=None):
        super().__init__(head, name=name, dtype=dtype)

    def values(self, y_true, y_pred):
        y_true, y_pred = _last(y_true, y_pred)
        return ops.mean(ops.square(ops.cast(y_true, "float32") - self.head.point(y_pred)), axis=-1)


@keras.saving.register_keras_serializable(package="note_matrix")
class LastLoss(_HeadMetric):
    """The head's own loss (``Head.loss``) after the whole window."""

    def __init__(self, head, name: str = "last_loss", dtype=None):
        super().__init__(head, name=name, dtype=dtype)

    def values(self, y_true, y_pred):
        return self.head.loss(*_last(y_true, y_pred))


@keras.saving.register_keras_serializable(package="note_matrix")
class FieldMetric(_HeadMetric):
    """Output field ``field``'s own metric (``Field.metric``: accuracy for a categorical field,
    bit accuracy for a Bernoulli one, squared error otherwise) on every step; named
    ``{label}_{metric_name}`` unless ``name`` is given."""

    _options = ("field",)

    def __init__(self, head, field: int = 0, name: str | None = None, dtype=None):
        head = as_head(head)
        if isinstance(field, bool) or not isinstance(field, int) or not 0 <= field < len(head.fields):
            raise ValueError(f"this head has {len(head.fields)} fields, got field {field!r}")
        chosen = head.fields[field]
        super().__init__(head, name=name or f"{chosen.label}_{chosen.metric_name}", dtype=dtype)
        self.field = field

    def values(self, y_true, y_pred):
        return self.head.field_metric(self.field, y_true, y_pred)


def field_metrics(head) -> list[FieldMetric]:
    """One ``FieldMetric`` per field of ``head``."""
    head = as_head(head)
    return [FieldMetric(head, index) for index in range(len(head.fields))]
