"""Probabilities of binned values (NumPy, float64; no Keras, so baselines load without it).

Every value is scored as discrete: a Gaussian's probability is its mass over the value's
bin (``bins``: ``("levels", L)``, the values ``k / L``; ``("uniform", B)``, ``B`` equal
bins of [0, 1); the end bins reach to infinity), so no density grows without bound where
the data has point masses; probabilities are floored at ``PROBABILITY_FLOOR``.
"""

from __future__ import annotations

import math

import numpy as np

PROBABILITY_FLOOR = 1e-12  # -log P is at most 27.6 nats a field
GAUSSIAN_STD_FLOOR = 1e-6
BIN_KINDS = ("levels", "uniform")

_ERFC = np.vectorize(math.erfc, otypes=[np.float64])


def normal_mass(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``P(low < Z < high)`` for a standard normal Z, without cancellation in either tail."""
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    root2 = math.sqrt(2.0)
    upper = 0.5 * (_ERFC(low / root2) - _ERFC(high / root2))  # Q(low) - Q(high): exact for low > 0
    lower = 0.5 * (_ERFC(-high / root2) - _ERFC(-low / root2))  # Phi(high) - Phi(low)
    return np.where(low > 0, upper, lower)


def bin_edges(bins: tuple[str, int], values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The edges ``(low, high)`` of the bin each value falls in: ``("levels", L)``, the
    values ``k / L`` with bins ``[(k - 0.5) / L, (k + 0.5) / L]``; ``("uniform", B)``, ``B``
    equal bins of [0, 1). The first and last bins reach to -inf and +inf."""
    kind, count = bins
    values = np.asarray(values, np.float64)
    if kind == "levels":
        level = np.clip(np.rint(values * count), 0, count)
        low, high, last = (level - 0.5) / count, (level + 0.5) / count, count
    else:
        level = np.clip(np.floor(values * count), 0, count - 1)
        low, high, last = level / count, (level + 1) / count, count - 1
    return np.where(level == 0, -np.inf, low), np.where(level == last, np.inf, high)


def bin_mass(bins: tuple[str, int], target: np.ndarray, mean: np.ndarray, std) -> np.ndarray:
    """The mass of Gaussians ``(mean, std)`` over each target's bin (``bin_edges``)."""
    low, high = bin_edges(bins, target)
    std = np.maximum(np.asarray(std, np.float64), GAUSSIAN_STD_FLOOR)
    return normal_mass((low - mean) / std, (high - mean) / std)


def neg_log(probability: np.ndarray) -> np.ndarray:
    return -np.log(np.maximum(probability, PROBABILITY_FLOOR))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
