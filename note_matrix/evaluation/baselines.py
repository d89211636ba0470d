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
  are the training means;
- ``n-gram of pitches, order k`` (k = 3, 5, 8): an interpolated n-gram of the pitches
  (``evaluation.ngram``, its strength tuned on the validation files), velocity and time
  as the Markov chain's.

Scores (``score``): mean squared error per column (note, velocity, time, in the matrix's
[0, 1] units) and overall, pitch accuracy (the prediction's pitch, rounded to a MIDI
note, is the true one), and where a predictor gives a distribution, the negative
log-likelihood per row in nats: ``-log P(pitch) - log P(velocity) - log P(time)``, each
column as a discrete value (the pitch one of 128 notes, velocity one of 128 levels, time
one of 1,000 bins of the time column; ``models.head.Head.nll``), so every head and
baseline lands on one table and no density can grow without bound on the many rows whose
velocity or gap is exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.likelihood import PROBABILITY_FLOOR, bin_mass, neg_log
from note_matrix.evaluation.ngram import NGram
from note_matrix.representations.note_matrix import MIDI_MAX, MIDI_NOTES, NOTE_BINS, TIME_BINS, NoteMatrix




def midi_pitch(note: np.ndarray) -> np.ndarray:
    """The note column (pitch / 127) as MIDI notes 0..127 (int64)."""
    return np.clip(np.rint(np.asarray(note, np.float64) * MIDI_MAX), 0, MIDI_MAX).astype(np.int64)

COLUMNS = NoteMatrix.columns
PITCH_ORDERS = (3, 5, 8)


@dataclass(frozen=True)
class Prediction:
    """Predicted rows ``(rows, 3)``; optionally pitch probabilities ``(rows, 128)`` and
    standard deviations of Gaussians around the predicted velocity and time (scalars or
    ``(rows,)``), which give each a probability over its bins (``models.likelihood.bin_edges``)."""

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
            bin_mass(NOTE_BINS, target[:, 1], prediction.rows[:, 1], prediction.velocity_std),
            bin_mass(TIME_BINS, target[:, 2], prediction.rows[:, 2], prediction.time_std),
        ]
        result["nll"] = float(sum(-np.log(np.maximum(p, PROBABILITY_FLOOR)) for p in probabilities).mean())
    return result


def markov_chain(sequences: list[np.ndarray], classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(transitions (classes, classes), marginal (classes,))`` of int sequences: the marginal
    Laplace-smoothed (add one), ``P(next | previous) = (count + P(next)) / (count(previous) + 1)``."""
    counts = np.zeros((classes, classes))
    for sequence in sequences:
        np.add.at(counts, (sequence[:-1], sequence[1:]), 1)
    marginal = np.bincount(np.concatenate(sequences), minlength=classes) + 1.0
    marginal /= marginal.sum()
    return (counts + marginal) / (counts.sum(axis=1, keepdims=True) + 1.0), marginal


@dataclass(frozen=True)
class Baselines:
    """What the baselines learn from the training rows."""

    mean_row: np.ndarray  # (3,)
    std_row: np.ndarray  # (3,)
    transitions: np.ndarray  # (128, 128) P(next pitch | previous pitch), smoothed towards the marginal
    pitch_marginal: np.ndarray  # (128,) P(pitch), Laplace-smoothed (add one)
    pitches: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])  # training and validation pitch sequences

    @classmethod
    def fit(cls, training: list[np.ndarray], validation: list[np.ndarray] | None = None) -> Baselines:
        rows = np.concatenate(training)
        pitches = [midi_pitch(array[:, 0]) for array in training]
        transitions, marginal = markov_chain(pitches, MIDI_NOTES)
        return cls(rows.mean(axis=0), rows.std(axis=0), transitions, marginal,
                   (pitches, [midi_pitch(array[:, 0]) for array in validation or [] if len(array)]))

    def ngram(self, arrays: list[np.ndarray], window: int, order: int) -> Prediction:
        """The interpolated pitch n-gram of ``order`` on the rows ``target_rows`` gives."""
        model = NGram.tune(*self.pitches, order, self.pitch_marginal, start=window)
        files = [midi_pitch(array[:, 0]) for array in arrays if len(array) > window]
        probabilities = np.concatenate([model.distributions(pitch, window)[0] for pitch in files]) if files \
            else np.zeros((0, MIDI_NOTES))
        rows = np.tile(self.mean_row, (len(probabilities), 1))
        rows[:, 0] = np.argmax(probabilities, axis=1) / 127 if len(probabilities) else rows[:, 0]
        return Prediction(rows, probabilities, self.std_row[1], self.std_row[2])

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
            **{f"n-gram of pitches, order {order}": score(self.ngram(arrays, window, order), target)
               for order in PITCH_ORDERS},
        }


@dataclass(frozen=True)
class TokenBaselines:
    """Baselines for one column of integer tokens: repeat the previous token, the training
    marginal (unigram), and a first-order Markov chain, each scored on accuracy and NLL."""

    transitions: np.ndarray  # (classes, classes)
    marginal: np.ndarray  # (classes,)

    @classmethod
    def fit(cls, training: list[np.ndarray], classes: int) -> TokenBaselines:
        return cls(*markov_chain([np.asarray(array[:, 0], np.int64) for array in training], classes))

    @staticmethod
    def score(probabilities: np.ndarray | None, predicted: np.ndarray, target: np.ndarray) -> dict:
        nll = None
        if probabilities is not None:
            nll = float(np.mean(neg_log(probabilities[np.arange(len(target)), target])))
        return {"accuracy": float(np.mean(predicted == target)), "nll": nll}

    def score_all(self, arrays: list[np.ndarray], window: int) -> dict[str, dict]:
        previous, target = (np.asarray(part[:, 0], np.int64) for part in target_rows(arrays, window))
        unigram = np.tile(self.marginal, (len(target), 1))
        markov = self.transitions[previous]
        return {
            "repeat previous step": self.score(None, previous, target),
            "unigram": self.score(unigram, unigram.argmax(axis=1), target),
            "Markov chain": self.score(markov, markov.argmax(axis=1), target),
        }
