"""The NADE output of RNN-NADE (``models.nade``): a distribution (every frame's likelihood
sums to 1), teacher-forced logits as a key-by-key loop computes them, ancestral samples
at the model's frequencies, and training through the Bernoulli field's loss."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
from keras import ops

from models.fields import Bernoulli, Head, HeadLoss
from models.nade import NADE

KEYS, HIDDEN, FEATURES = 4, 3, 2
CONFIGURATIONS = np.array(list(itertools.product([0.0, 1.0], repeat=KEYS)), np.float32)  # all 2^4 frames


def _nade(seed: int = 0) -> NADE:
    """A 4-key NADE whose weights are large enough that the keys depend on each other."""
    nade = NADE(KEYS, HIDDEN)
    nade.build([(None, FEATURES), (None, KEYS)])
    rng = np.random.default_rng(seed)
    nade.set_weights([rng.normal(0.0, 1.5, weight.shape).astype(np.float32) for weight in nade.get_weights()])
    return nade


def _reference_logits(nade: NADE, condition: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """The logits of the NADE's formula, key by key, in NumPy."""
    a_v, a_v0, a_h, a_h0, w, v = (np.asarray(x, np.float64) for x in nade.get_weights())
    logits = np.zeros(visible.shape)
    for row, (c, frame) in enumerate(zip(condition, visible)):
        pre = c @ a_h + a_h0
        for key in range(KEYS):
            logits[row, key] = c @ a_v[:, key] + a_v0[key] + v[key] @ (1 / (1 + np.exp(-pre)))
            pre = pre + frame[key] * w[key]
    return logits


def _numpy(x) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x), np.float64)


def test_the_likelihoods_of_all_frames_sum_to_one():
    nade = _nade()
    for condition in np.random.default_rng(1).normal(size=(3, FEATURES)).astype(np.float32):
        log_p = _numpy(nade.log_prob(np.tile(condition, (len(CONFIGURATIONS), 1)), CONFIGURATIONS))
        assert np.exp(log_p).sum() == pytest.approx(1.0, abs=1e-5)
        assert np.exp(log_p).max() > 1.5 / len(CONFIGURATIONS)  # not the uniform distribution


def test_teacher_forced_logits_are_the_key_by_key_formula():
    nade = _nade(2)
    condition = np.random.default_rng(3).normal(size=(len(CONFIGURATIONS), FEATURES)).astype(np.float32)
    logits = _numpy(nade([condition, CONFIGURATIONS]))
    np.testing.assert_allclose(logits, _reference_logits(nade, condition, CONFIGURATIONS), rtol=1e-4, atol=1e-4)
    # Exact likelihood through the Bernoulli field: its loss is minus the log-likelihood.
    loss = _numpy(HeadLoss(Head((Bernoulli(KEYS),))).call(CONFIGURATIONS, logits))
    np.testing.assert_allclose(loss, -_numpy(nade.log_prob(condition, CONFIGURATIONS)), rtol=1e-5)


def test_samples_come_at_the_models_frequencies():
    nade = _nade(4)
    draws = 20_000
    condition = np.tile(np.array([[0.3, -0.7]], np.float32), (draws, 1))
    uniform = 1.0 - np.random.default_rng(5).random((draws, KEYS)).astype(np.float32)
    frames = _numpy(nade.sample(condition, uniform))
    assert set(np.unique(frames)) <= {0.0, 1.0}
    index = frames @ (2.0 ** np.arange(KEYS - 1, -1, -1))  # the frame's row in CONFIGURATIONS
    frequency = np.bincount(index.astype(np.int64), minlength=len(CONFIGURATIONS)) / draws
    probability = np.exp(_numpy(nade.log_prob(condition[: len(CONFIGURATIONS)], CONFIGURATIONS)))
    tolerance = 4 * np.sqrt(probability * (1 - probability) / draws) + 1e-3
    assert np.all(np.abs(frequency - probability) <= tolerance), (frequency, probability)


def test_temperature_zero_takes_each_keys_more_likely_state():
    nade = _nade(6)
    condition = np.random.default_rng(7).normal(size=(64, FEATURES)).astype(np.float32)
    frames = _numpy(nade.sample(condition, np.ones((64, KEYS), np.float32), temperature=0.0))
    assert len(np.unique(frames, axis=0)) > 2
    for row, frame in enumerate(frames):  # each key's logit given the keys chosen before it
        assert np.array_equal(frame, _reference_logits(nade, condition[row : row + 1], frame[None])[0] > 0)
    with pytest.raises(ValueError, match="temperature"):
        nade.sample(condition, np.ones((5, KEYS)), temperature=-1.0)


def test_an_lstm_nade_learns_and_saves(tmp_path):
    """The RNN-NADE wiring: the LSTM reads frames 0..T-1, the NADE is taught frames 1..T."""
    frames = keras.Input((None, KEYS), name="frames")
    following = keras.Input((None, KEYS), name="following")
    state = keras.layers.LSTM(8, return_sequences=True)(frames)
    model = keras.Model([frames, following], NADE(KEYS, 8, name="nade")([state, following]))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=HeadLoss(Head((Bernoulli(KEYS),))))
    song = np.tile(CONFIGURATIONS[[3, 12, 5, 10]], (6, 1))  # four frames over and over
    x, y = song[None, :-1].repeat(4, axis=0), song[None, 1:].repeat(4, axis=0)
    losses = model.fit([x, y], y, epochs=15, verbose=0).history["loss"]
    assert losses[-1] < 0.5 * losses[0]
    path = tmp_path / "nade.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe mode: the layer is registered
    np.testing.assert_allclose(
        _numpy(loaded.predict([x, y], verbose=0)), _numpy(model.predict([x, y], verbose=0)), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("keys, hidden", [(0, 3), (4, 0), (True, 3), (4, 2.5)])
def test_bad_sizes_are_refused(keys, hidden):
    with pytest.raises(ValueError, match="positive integer"):
        NADE(keys, hidden)
