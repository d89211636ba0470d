"""Baselines for next-row prediction, and the scores every predictor is judged by.

A model is only worth its training if it beats predictors that need none. Each baseline
here predicts the next note-matrix row from the rows before it, on exactly the rows a
model with window ``W`` is scored on (every row at index ``W`` or later of each file):

- ``repeat``: the previous row again;
- ``mean``: the training set's mean row;
- ``markov``: a first-order Markov chain over pitches (transition counts from the
  training files, smoothed towards the pitch marginal: ``P(next | previous) = (count +
  P(next)) / (count(previous) + 1)``, so a previous pitch never seen in training gives
  the marginal): the most likely next pitch given the previous one; velocity and time
  are the training means.

Scores (``score``): mean squared error per column (note, velocity, time, in the matrix's
[0, 1] units) and overall, pitch accuracy (the prediction's pitch, rounded to a MIDI
note, is the true one), and where a predictor gives a distribution, the negative
log-likelihood per row in nats: ``-log P(pitch) - log P(velocity) - log P(time)``, each
column as a discrete value (the pitch one of 128 notes, velocity one of 128 levels, time
one of 1,000 bins of the time column; ``models.heads.row_nll``), so every head and
baseline lands on one table and no density can grow without bound on the many rows whose
velocity or gap is exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from note_matrix.likelihood import PROBABILITY_FLOOR, gaussian_bin_probability, midi_pitch

MIDI_NOTES = 128
COLUMNS = ("note", "velocity", "time")


@dataclass(frozen=True)
class Prediction:
    """Predicted rows ``(rows, 3)``; optionally pitch probabilities ``(rows, 128)`` and
    standard deviations of Gaussians around the predicted velocity and time (scalars or
    ``(rows,)``), which give each a probability over its bins (``note_matrix.likelihood.column_bin``)."""

    rows: np.ndarray
    pitch_probabilities: np.ndarray | None = None
    velocity_std: np.ndarray | float | None = None
    time_std: np.ndarray | float | None = None


def target_rows(arrays: list[np.ndarray], window: int) -> tuple[np.ndarray, np.ndarray]:
    """``(previous, target)``: every row at index ``window`` or later, and the row before it."""
    previous = [a[window - 1 : -1] for a in arrays if len(a) > window]
    target = [a[window:] for a in arrays if len(a) > window]
    if not target:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)
    return np.concatenate(previous), np.concatenate(target)


def score(prediction: Prediction, target: np.ndarray) -> dict[str, float | None]:
    """The scores of the module docstring for ``prediction`` against ``target`` rows."""
    error = (np.asarray(prediction.rows, np.float64) - target) ** 2
    result: dict[str, float | None] = {f"mse_{name}": float(error[:, i].mean()) for i, name in enumerate(COLUMNS)}
    result["mse"] = float(error.mean())
    result["pitch_accuracy"] = float(np.mean(midi_pitch(prediction.rows[:, 0]) == midi_pitch(target[:, 0])))
    result["nll"] = None
    if prediction.pitch_probabilities is not None and prediction.velocity_std is not None:
        probabilities = [
            prediction.pitch_probabilities[np.arange(len(target)), midi_pitch(target[:, 0])],
            gaussian_bin_probability("velocity", target[:, 1], prediction.rows[:, 1], prediction.velocity_std),
            gaussian_bin_probability("time", target[:, 2], prediction.rows[:, 2], prediction.time_std),
        ]
        result["nll"] = float(sum(-np.log(np.maximum(p, PROBABILITY_FLOOR)) for p in probabilities).mean())
    return result


@dataclass(frozen=True)
class Baselines:
    """What the baselines learn from the training rows."""

    mean_row: np.ndarray  # (3,)
    std_row: np.ndarray  # (3,)
    transitions: np.ndarray  # (128, 128) P(next pitch | previous pitch), smoothed towards the marginal
    pitch_marginal: np.ndarray  # (128,) P(pitch), Laplace-smoothed (add one)

    @classmethod
    def fit(cls, training: list[np.ndarray]) -> Baselines:
        rows = np.concatenate(training)
        counts = np.zeros((MIDI_NOTES, MIDI_NOTES))
        for array in training:
            pitch = midi_pitch(array[:, 0])
            np.add.at(counts, (pitch[:-1], pitch[1:]), 1)
        marginal = np.bincount(midi_pitch(rows[:, 0]), minlength=MIDI_NOTES) + 1.0
        marginal /= marginal.sum()
        transitions = (counts + marginal) / (counts.sum(axis=1, keepdims=True) + 1.0)
        return cls(rows.mean(axis=0), rows.std(axis=0), transitions, marginal)

    def repeat(self, previous: np.ndarray) -> Prediction:
        return Prediction(np.asarray(previous, np.float64))

    def mean(self, count: int) -> Prediction:
        """The training mean row; as a distribution, the training pitches' marginal and
        Gaussians with the training standard deviations."""
        return Prediction(np.tile(self.mean_row, (count, 1)), np.tile(self.pitch_marginal, (count, 1)),
                          self.std_row[1], self.std_row[2])

    def markov(self, previous: np.ndarray) -> Prediction:
        probabilities = self.transitions[midi_pitch(previous[:, 0])]
        rows = np.tile(self.mean_row, (len(previous), 1))
        rows[:, 0] = np.argmax(probabilities, axis=1) / 127
        return Prediction(rows, probabilities, self.std_row[1], self.std_row[2])

    def score_all(self, arrays: list[np.ndarray], window: int) -> dict[str, dict]:
        """Every baseline's scores on the rows a window-``window`` model is scored on."""
        previous, target = target_rows(arrays, window)
        return {
            "repeat previous row": score(self.repeat(previous), target),
            "training mean": score(self.mean(len(target)), target),
            "Markov chain (pitch)": score(self.markov(previous), target),
        }
