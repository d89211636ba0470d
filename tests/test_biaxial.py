"""The biaxial LSTM (``models.biaxial``): teacher-forced logits that see only the past frames
and the keys below, a time step and a key-by-key sampler that compute what the call does,
samples at the model's frequencies, a distribution over frames, training and saving."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
from keras import ops

from models.biaxial import BiaxialLSTM
from models.fields import Bernoulli, Head, HeadLoss

KEYS, SPAN, TIME_UNITS, KEY_UNITS = 13, 3, 8, 6
ROWS, STEPS = 32, 6  # the 13-key tests' batch: one shape, one compilation


def _biaxial(keys: int = KEYS, span: int = SPAN, seed: int = 0) -> BiaxialLSTM:
    """A tiny biaxial LSTM whose weights are large enough that keys and frames matter."""
    layer = BiaxialLSTM(keys, TIME_UNITS, KEY_UNITS, span)
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(0.0, 0.8, weight.shape).astype(np.float32) for weight in layer.get_weights()])
    return layer


def _compiled(layer: BiaxialLSTM):
    """The layer's teacher-forced logits as a compiled function (a model's ``predict_on_batch``),
    much faster than eager calls when called several times on one shape."""
    window = keras.Input((None, layer.keys))
    following = keras.Input((None, layer.keys))
    model = keras.Model([window, following], layer([window, following]))
    return lambda *inputs: _numpy(model.predict_on_batch(list(inputs)))


@pytest.fixture(scope="module")
def axes():
    """A tiny biaxial LSTM of 13 keys and its compiled call."""
    layer = _biaxial(seed=3)
    return layer, _compiled(layer)


def _rolls(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) < 0.35).astype(np.float32)


def _numpy(x) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x), np.float64)


def test_time_features_by_hand():
    frame = np.zeros(KEYS, np.float32)
    frame[[0, 3, 12]] = 1.0  # A0, C1, A1: pitch classes 9, 0, 9
    features = _numpy(BiaxialLSTM(KEYS, TIME_UNITS, KEY_UNITS, span=1).time_features(frame[None]))[0]
    assert features.shape == (KEYS, 3 + 12 + 12 + 1)
    np.testing.assert_array_equal(features[:, :3][[0, 2, 3, 12]], [[0, 1, 0], [0, 0, 1], [0, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(features[:, 3:15].argmax(axis=1), (21 + np.arange(KEYS)) % 12)
    context = np.zeros((KEYS, 12))
    context[0, [0, 3]] = context[12, [0, 3]] = [2, 1]  # from an A: two As, one C three semitones up
    context[3, [0, 9]] = [1, 2]  # from a C: one C, two As nine semitones up
    np.testing.assert_array_equal(features[:, 15:27][[0, 3, 12]], context[[0, 3, 12]])
    np.testing.assert_allclose(features[:, 27], np.arange(KEYS) / (KEYS - 1))


@pytest.mark.parametrize("step, key", [(0, 0), (2, 5), (4, 12)])
def test_logits_see_only_the_past_and_the_keys_below(axes, step, key):
    _, logits = axes
    window, following = _rolls((ROWS, STEPS, KEYS), 1), _rolls((ROWS, STEPS, KEYS), 2)
    logit = logits(window, following)[:, step, key]
    # Everything the logit must not see: later frames of the window, the key itself and
    # those above it, and the next frames of every other step.
    later = window.copy()
    later[:, step + 1 :] = 1.0 - later[:, step + 1 :]
    hidden = 1.0 - following
    hidden[:, step, :key] = following[:, step, :key]
    np.testing.assert_array_equal(logits(later, hidden)[:, step, key], logit)
    # What it must see: this frame of the window, and the key just below.
    changed = window.copy()
    changed[:, step] = 1.0 - changed[:, step]
    assert np.all(np.abs(logits(changed, following)[:, step, key] - logit) > 1e-4)
    if key > 0:
        below = following.copy()
        below[:, step, key - 1] = 1.0 - below[:, step, key - 1]
        assert np.all(np.abs(logits(window, below)[:, step, key] - logit) > 1e-4)


def test_time_step_and_sample_compute_the_two_axes_of_the_call(axes):
    layer, logits = axes
    rows, steps = ROWS, STEPS
    window = _rolls((rows, steps, KEYS), 4)
    state, outputs = layer.zero_state(rows), []
    for step in range(steps):
        output, state = layer.time_step(window[:, step], state)
        outputs.append(_numpy(output))
    np.testing.assert_allclose(np.stack(outputs, axis=1), _numpy(layer.time_axis(window)), rtol=1e-5, atol=1e-5)
    frames = _numpy(layer.sample(outputs[-1], np.ones((rows, KEYS), np.float32), temperature=0.0))
    assert set(np.unique(frames)) <= {0.0, 1.0} and len(np.unique(frames, axis=0)) > 2
    following = np.zeros_like(window)
    following[:, -1] = frames
    np.testing.assert_array_equal(logits(window, following)[:, -1] > 0, frames > 0.5)
    with pytest.raises(ValueError, match="temperature"):
        layer.sample(outputs[-1], np.ones((rows, KEYS), np.float32), temperature=-1.0)


def test_samples_come_at_the_models_frequencies():
    keys, draws = 4, 20_000
    frames = np.array(list(itertools.product([0.0, 1.0], repeat=keys)), np.float32)  # all 2^4 frames
    layer = _biaxial(keys, span=1, seed=5)
    window = np.tile(_rolls((1, 3, keys), 6), (len(frames), 1, 1))
    following = np.zeros_like(window)
    following[:, -1] = frames
    logits = _numpy(layer([window, following]))[:, -1]
    log_p = -_numpy(HeadLoss(Head((Bernoulli(keys),))).call(frames, logits))
    probability = np.exp(log_p)
    assert probability.sum() == pytest.approx(1.0, abs=1e-5)
    assert probability.max() > 1.5 / len(frames)  # not the uniform distribution
    outputs = np.tile(_numpy(layer.time_axis(window[:1]))[:, -1], (draws, 1, 1))
    uniform = 1.0 - np.random.default_rng(7).random((draws, keys)).astype(np.float32)
    drawn = _numpy(layer.sample(outputs, uniform))
    first = 1 / (1 + np.exp(-logits[0, 0]))  # key 0 depends on no key of its frame
    assert abs(drawn[:, 0].mean() - first) <= 4 * np.sqrt(first * (1 - first) / draws)
    index = drawn @ (2.0 ** np.arange(keys - 1, -1, -1))  # the frame's row in ``frames``
    frequency = np.bincount(index.astype(np.int64), minlength=len(frames)) / draws
    tolerance = 4 * np.sqrt(probability * (1 - probability) / draws) + 1e-3
    assert np.all(np.abs(frequency - probability) <= tolerance), (frequency, probability)


@pytest.fixture(scope="module")
def trained():
    """A biaxial LSTM of 8 keys fitted for 60 steps to a rising scale, one key a frame, with
    its losses, inputs and the loss of the best guess that ignores the past (3.0 nats)."""
    keys = 8
    window_input = keras.Input((None, keys), name="window")
    next_input = keras.Input((None, keys), name="next")
    layer = BiaxialLSTM(keys, TIME_UNITS, KEY_UNITS, SPAN, name="biaxial")
    model = keras.Model([window_input, next_input], layer([window_input, next_input]))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=HeadLoss(Head((Bernoulli(keys),))))
    song = np.tile(np.eye(keys, dtype=np.float32), (4, 1))
    x = np.stack([song[offset : offset + 12] for offset in range(4)])
    y = np.stack([song[offset + 1 : offset + 13] for offset in range(4)])
    losses = model.fit([x, y], y, epochs=60, verbose=0).history["loss"]
    on = 1 / keys
    marginal = -keys * (on * np.log(on) + (1 - on) * np.log(1 - on))
    return model, losses, [x, y], marginal


def test_it_learns_a_periodic_roll(trained):
    _, losses, _, marginal = trained
    assert losses[-1] < 0.5 * losses[0], losses
    assert losses[-1] < 0.8 * marginal, (losses, marginal)  # it reads the frames before


def test_a_saved_model_loads_with_its_weights(trained, tmp_path):
    model, _, inputs, _ = trained
    path = tmp_path / "biaxial.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)  # safe mode: the layer is registered
    np.testing.assert_allclose(
        _numpy(loaded.predict(inputs, verbose=0)), _numpy(model.predict(inputs, verbose=0)), rtol=1e-5, atol=1e-5
    )


def test_config_round_trip():
    layer = BiaxialLSTM(KEYS, TIME_UNITS, KEY_UNITS, SPAN, name="axes")
    copy = BiaxialLSTM.from_config(layer.get_config())
    assert copy.get_config() == layer.get_config()
    assert (copy.keys, copy.time_units, copy.key_units, copy.span) == (KEYS, TIME_UNITS, KEY_UNITS, SPAN)
    assert copy.name == "axes"
    assert [w.shape for w in copy.weights] == [w.shape for w in layer.weights]


@pytest.mark.parametrize(
    "arguments",
    [
        {"keys": 0},
        {"time_units": 0},
        {"key_units": 0},
        {"span": -1},
        {"keys": True},
        {"time_units": 8.0},
        {"span": "3"},
    ],
)
def test_bad_arguments_are_refused(arguments):
    with pytest.raises(ValueError, match="biaxial LSTM"):
        BiaxialLSTM(**arguments)


def test_frames_of_the_wrong_width_are_refused():
    with pytest.raises(ValueError, match="13 keys got frames of 12"):
        BiaxialLSTM(KEYS, TIME_UNITS, KEY_UNITS, SPAN)([np.zeros((1, 2, 12)), np.zeros((1, 2, 12))])
