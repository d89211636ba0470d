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
