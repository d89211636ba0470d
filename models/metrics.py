"""Metrics for note-matrix models, written with ``keras.ops`` so every backend runs them.

They work for every head (``models.heads``): the head is read from the output's width
(3, 130 or 128 + 5K), so the functions stay plain registered functions that saved models
name and load in safe mode.
"""

import keras
from keras import ops

from models.heads import MIDI_MAX, head_from_width, loss_values, point_rows


@keras.saving.register_keras_serializable(package="note_matrix")
def pitch_accuracy(y_true, y_pred):
    """Fraction of rows whose predicted pitch is the true one.

    The predicted pitch is the head's point pitch (``point_rows``): the regressed note
    column rounded to a MIDI note, or the most likely of the 128 pitches.
    ``y_true`` ``(batch, 3)`` (or ``(batch, steps, 3)``) with pitch / 127 in column 0,
    ``y_pred`` ``(batch, width)`` (or ``(batch, steps, width)``). Returns ``(batch,)``
    (or ``(batch, steps)``) of 0.0 / 1.0.
    """
    predicted = point_rows(head_from_width(y_pred.shape[-1]), y_pred)
    true_pitch = ops.round(ops.cast(y_true[..., 0], "float32") * MIDI_MAX)
    predicted_pitch = ops.round(predicted[..., 0] * MIDI_MAX)
    return ops.cast(ops.equal(true_pitch, predicted_pitch), "float32")


@keras.saving.register_keras_serializable(package="note_matrix")
def last_mse(y_true, y_pred):
    """Squared error of the last point prediction of each window, averaged over the 3 columns.

    ``y_true`` ``(batch, 3)``, ``y_pred`` ``(batch, width)`` (``targets="last"``) or
    ``(batch, steps, ...)`` (``targets="all"``, only the last step counts); the point row
    is ``point_rows`` (the prediction itself for the card's head). Returns ``(batch,)``.
    Equal to the loss in ``"last"`` mode with the card's head; the card's task in both.
    """
    if len(y_pred.shape) == 3:
        y_true, y_pred = y_true[:, -1], y_pred[:, -1]
    predicted = point_rows(head_from_width(y_pred.shape[-1]), y_pred)
    return ops.mean(ops.square(ops.cast(y_true, "float32") - predicted), axis=-1)


@keras.saving.register_keras_serializable(package="note_matrix")
def last_loss(y_true, y_pred):
    """The head's own loss (``models.heads``) on the last prediction of each window: ``(batch,)``.

    What best-model selection and early stopping watch for the categorical and mdn heads
    (``val_last_loss``), as ``last_mse`` for the card's head.
    """
    if len(y_pred.shape) == 3:
        y_true, y_pred = y_true[:, -1], y_pred[:, -1]
    return loss_values(head_from_width(y_pred.shape[-1]), y_true, y_pred)
