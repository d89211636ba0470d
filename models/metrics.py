"""Metrics for note-matrix models, written with ``keras.ops`` so every backend runs them."""

import keras
from keras import ops

MIDI_MAX = 127.0


@keras.saving.register_keras_serializable(package="note_matrix")
def pitch_accuracy(y_true, y_pred):
    """Fraction of rows whose predicted pitch, rounded to a MIDI note, is the true one.

    ``y_true``, ``y_pred``: ``(batch, 3)`` (or ``(batch, steps, 3)``) with pitch / 127
    in column 0. Returns ``(batch,)`` (or ``(batch, steps)``) of 0.0 / 1.0.
    """
    true_pitch = ops.round(y_true[..., 0] * MIDI_MAX)
    predicted_pitch = ops.round(y_pred[..., 0] * MIDI_MAX)
    return ops.cast(ops.equal(true_pitch, predicted_pitch), "float32")


@keras.saving.register_keras_serializable(package="note_matrix")
def last_mse(y_true, y_pred):
    """Squared error of the last prediction of each window, averaged over the features.

    ``y_true``, ``y_pred``: ``(batch, features)`` (``targets="last"``) or
    ``(batch, steps, features)`` (``targets="all"``, only the last step counts).
    Returns ``(batch,)``. Equal to the loss in ``"last"`` mode; the card's task in both.
    """
    if len(y_pred.shape) == 3:
        y_true, y_pred = y_true[:, -1], y_pred[:, -1]
    return ops.mean(ops.square(ops.cast(y_true, y_pred.dtype) - y_pred), axis=-1)
