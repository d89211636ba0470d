"""Probabilities of note-matrix values, as every head and baseline scores them (NumPy).

The negative log-likelihood of a row treats each column as a discrete value: the pitch
one of the 128 MIDI notes, the velocity one of the 128 MIDI levels, the time one of
``TIME_BINS`` bins of the time column. A continuous prediction (a Gaussian, a mixture of
them) is turned into a probability by its mass over the value's bin (``column_bin``),
so no density can grow without bound on the many rows whose velocity or gap is exactly
0, and heads and baselines land on one scale. No Keras here: evaluation and the
baselines load without a deep-learning framework.
"""

from __future__ import annotations

import math

import numpy as np

MIDI_MAX = 127.0
TIME_BINS = 1000  # the time column [0, 1) in bins of 0.001 (a gap under 0.25 ms is bin 0)
PROBABILITY_FLOOR = 1e-12  # -log P is at most 27.6 nats a column
GAUSSIAN_STD_FLOOR = 1e-6
COLUMNS = ("note", "velocity", "time")


_ERFC = np.vectorize(math.erfc, otypes=[np.float64])


def normal_mass(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``P(low < Z < high)`` for a standard normal Z, without cancellation in either tail."""
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    root2 = math.sqrt(2.0)
    upper = 0.5 * (_ERFC(low / root2) - _ERFC(high / root2))  # Q(low) - Q(high): exact for low > 0
    lower = 0.5 * (_ERFC(-high / root2) - _ERFC(-low / root2))  # Phi(high) - Phi(low)
    return np.where(low > 0, upper, lower)


def midi_pitch(note: np.ndarray) -> np.ndarray:
    """The note column (pitch / 127) as MIDI notes 0..127 (int64), as ``note_matrix.baselines``."""
    return np.clip(np.rint(np.asarray(note, np.float64) * MIDI_MAX), 0, 127).astype(np.int64)


def column_bin(column: str, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The edges ``(low, high)`` of the bin each value falls in, in matrix units.

    ``note`` and ``velocity``: the 128 MIDI levels ``k / 127``, bin ``[(k - 0.5) / 127,
    (k + 0.5) / 127]``; ``time``: ``TIME_BINS`` equal bins of ``[0, 1)``. The first and
    last bins reach to -inf and +inf, as the generator's clipping puts the tails there.
    """
    values = np.asarray(values, np.float64)
    if column in ("note", "velocity"):
        level = np.clip(np.rint(values * MIDI_MAX), 0, MIDI_MAX)
        low, high, last = (level - 0.5) / MIDI_MAX, (level + 0.5) / MIDI_MAX, MIDI_MAX
    elif column == "time":
        level = np.clip(np.floor(values * TIME_BINS), 0, TIME_BINS - 1)
        low, high, last = level / TIME_BINS, (level + 1) / TIME_BINS, TIME_BINS - 1
    else:
        raise ValueError(f"column must be one of {COLUMNS}, got {column!r}")
    return np.where(level == 0, -np.inf, low), np.where(level == last, np.inf, high)


def gaussian_bin_probability(column: str, target: np.ndarray, mean: np.ndarray, std) -> np.ndarray:
    """The mass of Gaussians ``(mean, std)`` over each target's bin (``column_bin``)."""
    low, high = column_bin(column, target)
    std = np.maximum(np.asarray(std, np.float64), GAUSSIAN_STD_FLOOR)
    return normal_mass((low - mean) / std, (high - mean) / std)
