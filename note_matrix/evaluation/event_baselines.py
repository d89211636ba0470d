"""Baselines of the note events (``representations.note_events``): repeat, unigram and n-grams.

Each predicts the next event's fields (velocity level, pitch, time bin) from the events
before it in the same file, on exactly the events a window-``W`` model is scored on
(index ``W`` or later), and, as the model, only among the events that are valid after
the notes sounding then (a note-off of a sounding note, a note-on of a silent one):

- ``repeat previous event``: its fields again (accuracy only);
- ``unigram``: each field's training frequencies (add-one);
- ``n-gram per field, order k``: each field an interpolated n-gram of its own sequence
  (``evaluation.ngram``; order 2 is a first-order Markov chain), drawn as the network's
  independent fields are (``note_events.drawn_scores``);
- ``n-gram of events, order k``: one interpolated n-gram of whole events (every event seen
  in training a symbol; an unseen event gets its share of the fields' unigrams),
  renormalised over the valid events; the field scores from its marginals.

Every n-gram's strength is tuned on the validation files (lowest NLL of what it predicts),
so each is as strong as counting gets at its order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from note_matrix.evaluation.ngram import NGram
from note_matrix.representations.note_events import (
    PITCHES,
    TIME_CLASSES,
    VELOCITY_CLASSES,
    drawn_scores,
    event_scores,
    point_accuracies,
    sounding_before,
)

CLASSES = (VELOCITY_CLASSES, PITCHES, TIME_CLASSES)
FIELD_ORDERS = (2, 3, 5, 8)
EVENT_ORDERS = (2, 5, 8)


def _unigram(arrays: list[np.ndarray], column: int) -> np.ndarray:
    counts = np.bincount(np.concatenate([a[:, column] for a in arrays]).astype(np.int64),
                         minlength=CLASSES[column]) + 1.0
    return counts / counts.sum()


@dataclass
class EventBaselines:
    training: list[np.ndarray]
    validation: list[np.ndarray]
    unigrams: list[np.ndarray]  # each field's training frequencies (add-one)

    @classmethod
    def fit(cls, training: list[np.ndarray], validation: list[np.ndarray]) -> EventBaselines:
        training = [np.asarray(a[:, :3], np.int64) for a in training if len(a)]
        validation = [np.asarray(a[:, :3], np.int64) for a in validation if len(a)]
        return cls(training, validation, [_unigram(training, c) for c in range(3)])

    def score_all(self, arrays: list[np.ndarray], window: int) -> dict[str, dict]:
        files = [np.asarray(a, np.int64) for a in arrays if len(a) > window]
        targets = np.concatenate([a[window:] for a in files]) if files else np.zeros((0, 3), np.int64)
        previous = np.concatenate([a[window - 1 : -1, :3] for a in files]) if files else targets
        scores = {"repeat previous event": point_accuracies(previous, targets)}
        scores["unigram"] = drawn_scores(*(np.tile(u, (len(targets), 1)) for u in self.unigrams), targets)
        for order in FIELD_ORDERS:
            marginals = []
            for column in range(3):
                model = NGram.tune([a[:, column] for a in self.training], [a[:, column] for a in self.validation],
                                   order, self.unigrams[column], start=window)
                marginals.append(np.concatenate([model.distributions(a[:, column], window)[0] for a in files]))
            scores[f"n-gram per field, order {order}"] = drawn_scores(*marginals, targets)
        for order in EVENT_ORDERS:
            scores[f"n-gram of events, order {order}"] = self._event_ngram(files, targets, window, order)
        return scores

    def _event_ngram(self, files: list[np.ndarray], targets: np.ndarray, window: int, order: int) -> dict:
        """The event n-gram, renormalised over the valid events (module docstring)."""
        seen = np.unique(np.concatenate(self.training), axis=0)  # (V, 3) the events of the training files
        ids = {tuple(event): index for index, event in enumerate(seen.tolist())}
        u_level, u_pitch, u_time = self.unigrams
        base = u_level[seen[:, 0]] * u_pitch[seen[:, 1]] * u_time[seen[:, 2]]
        members = [np.eye(CLASSES[column])[seen[:, column]] for column in range(3)]  # (V, classes) each

        def symbols(array):  # unseen events: -1 (never a context that was counted)
            return np.array([ids.get(tuple(event), -1) for event in array[:, :3].tolist()], np.int64)

        model = NGram.tune([symbols(a) for a in self.training], [symbols(a) for a in self.validation],
                           order, base, start=window)
        parts = []
        for array in files:
            file_ids = symbols(array)
            p, escape = model.distributions(file_ids, window)
            parts.append(self._valid_only(p, escape, array[window:], seen, base, members, file_ids[window:]))
        velocity, pitch, time, joint = (np.concatenate(column) for column in zip(*parts))
        return event_scores(velocity, pitch, time, targets, -np.log(np.maximum(joint, 1e-12)))

    def _valid_only(self, p, escape, targets, seen, base, members, target_ids):
        """``(velocity, pitch, time marginals, P(target))`` of the n-gram's ``p`` ``(rows, V)``
        (seen events) and ``escape`` (unseen ones: ``escape * base``) over the valid events."""
        u_level, u_pitch, u_time = self.unigrams
        before = sounding_before(targets)  # (rows, 128)
        valid = before[:, seen[:, 1]] == (seen[:, 0] == 0)[None]  # (rows, V)
        p = np.where(valid, p, 0.0)
        seen_base = np.where(valid, base[None], 0.0)
        sounding_mass = before.astype(np.float64) @ u_pitch  # base mass of the sounding pitches
        # base mass of the valid events by the value of each field (the unigrams are independent)
        level_base = np.concatenate([(u_level[0] * sounding_mass)[:, None],
                                     u_level[None, 1:] * (1.0 - sounding_mass)[:, None]], axis=1)
        pitch_base = u_pitch[None] * np.where(before, u_level[0], 1.0 - u_level[0])
        total_base = level_base.sum(axis=1)
        time_base = u_time[None] * total_base[:, None]
        marginals = [p @ m + escape[:, None] * np.maximum(full - seen_base @ m, 0.0)
                     for m, full in zip(members, (level_base, pitch_base, time_base))]
        total = marginals[0].sum(axis=1, keepdims=True)
        rows = np.arange(len(targets))
        unseen = escape * u_level[targets[:, 0]] * u_pitch[targets[:, 1]] * u_time[targets[:, 2]]
        joint = np.where(target_ids >= 0, p[rows, np.maximum(target_ids, 0)], unseen) / total[:, 0]
        return (*(m / total for m in marginals), joint)
