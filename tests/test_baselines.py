"""Baselines and scores on rows built by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from note_matrix.evaluation.baselines import Baselines, Prediction, score, target_rows


def rows(pitches, velocities, times):
    return np.stack([np.array(pitches) / 127, np.array(velocities) / 127, np.array(times)], 1).astype(np.float64)


def test_target_rows_are_those_a_window_model_scores():
    a = rows([60, 62, 64, 65], [100] * 4, [0, 0.1, 0.2, 0.3])
    b = rows([70, 72], [90, 0], [0, 0.5])
    previous, target = target_rows([a, b], window=2)
    np.testing.assert_array_equal(target, a[2:])  # b has no row at index 2
    np.testing.assert_array_equal(previous, a[1:3])


def test_score_by_hand():
    target = rows([60, 62], [100, 0], [0.5, 0.25])
    predicted = rows([60.4, 64], [100, 10], [0.5, 0.75])
    result = score(Prediction(predicted), target)
    assert result["mse_note"] == pytest.approx(((0.4 / 127) ** 2 + (2 / 127) ** 2) / 2)
    assert result["mse_velocity"] == pytest.approx((10 / 127) ** 2 / 2)
    assert result["mse_time"] == pytest.approx(0.5 ** 2 / 2)
    assert result["mse"] == pytest.approx((result["mse_note"] + result["mse_velocity"] + result["mse_time"]) / 3)
    assert result["pitch_accuracy"] == 0.5
    assert result["nll"] is None


def test_nll_by_hand():
    target = rows([60], [100], [0.5])
    probabilities = np.zeros((1, 128))
    probabilities[0, 60] = 0.25
    result = score(Prediction(target, probabilities, 0.1, 0.2), target)
    velocity = math.erf((0.5 / 127) / 0.1 / math.sqrt(2))  # the level's bin, centred on the mean
    time = 0.5 * math.erf((0.001 / 0.2) / math.sqrt(2))  # the bin [0.5, 0.501), the mean at its low edge
    assert result["nll"] == pytest.approx(-np.log(0.25) - np.log(velocity) - np.log(time))
    # The edge bins take the tails: velocity 0 gets everything below half a level.
    off = rows([60], [0], [0.0])
    far = score(Prediction(rows([60], [-500], [-3.0]), probabilities, 0.1, 0.2), off)
    assert far["nll"] == pytest.approx(-np.log(0.25), abs=1e-9)


def test_baselines_by_hand():
    # 60 -> 62 twice, 62 -> 60 once, 62 -> 64 once
    training = [rows([60, 62, 60, 62, 64], [100, 0, 100, 0, 80], [0.0, 0.5, 0.0, 0.5, 0.2])]
    baselines = Baselines.fit(training)
    np.testing.assert_allclose(baselines.mean_row, training[0].mean(axis=0))
    # marginal: 60 twice, 62 twice, 64 once, plus one each: P(60) = 3 / 133
    assert baselines.pitch_marginal[60] == pytest.approx(3 / (5 + 128))
    # P(62 | 60) = (2 + P(62)) / (2 + 1); an unseen previous pitch gives the marginal
    assert baselines.transitions[60, 62] == pytest.approx((2 + 3 / 133) / 3)
    np.testing.assert_allclose(baselines.transitions[64], baselines.pitch_marginal)
    np.testing.assert_allclose(baselines.transitions.sum(axis=1), 1.0)
    test = [rows([60, 62, 64, 60], [100, 0, 100, 0], [0.1, 0.2, 0.3, 0.4])]
    scores = baselines.score_all(test, window=1)
    # repeat: predicts 60, 62, 64 for targets 62, 64, 60: no pitch right
    assert scores["repeat previous row"]["pitch_accuracy"] == 0.0
    # Markov: after 60 -> 62 (right); after 62 -> 60 or 64, once each, and 60 is the likelier
    # in the marginal (target 64: wrong); after 64 (never a previous pitch) -> the marginal's
    # mode, 60 or 62 tied, argmax takes 60 (target 60: right)
    assert scores["Markov chain (pitch)"]["pitch_accuracy"] == pytest.approx(2 / 3)
    markov = baselines.markov(test[0][:-1])
    assert markov.rows[0, 0] * 127 == pytest.approx(62)
    for name in ("training mean", "Markov chain (pitch)"):
        assert scores[name]["nll"] is not None and np.isfinite(scores[name]["nll"])
    assert scores["repeat previous row"]["nll"] is None
    # The pitch n-grams: distributions over the 128 notes, each scored like the Markov chain.
    ngram = baselines.ngram(test, 1, 3)
    np.testing.assert_allclose(ngram.pitch_probabilities.sum(axis=1), 1.0)
    assert ngram.pitch_probabilities.shape == (3, 128) and np.isfinite(scores["n-gram of pitches, order 8"]["nll"])
