"""Output fields and heads (``models.fields``, ``models.head``, ``models.head_metrics``): the
note matrix's three heads (regression, categorical, mdn) against NumPy formulas written
here (losses, points, samples, noise, likelihoods, residual spread, metrics), hand-computed
likelihoods, the code paths that must agree (bit for bit: the card's mean squared error and
its training, a head and its fields; compiled and eager sampling to the ulp, and on the
grid exactly), the Bernoulli field, JSON and Keras round trips, safe-mode saving, and the
refusal of invalid configs."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest

from models.fields import (
    MIXTURE_MAX_LOG_STD,
    MIXTURE_STD_FLOOR,
    PROBABILITY_FLOOR,
    Bernoulli,
    Categorical,
    Gaussian,
    Head,
    HeadLoss,
    Mixture,
    Toggle,
    bin_edges,
    field_from_json,
    normal_mass,
    sample_categorical,
)
from models.head_metrics import ColumnAccuracy, FieldMetric, LastLoss, LastSquaredError, field_metrics
from note_matrix.representations import NoteMatrix
from note_matrix.representations.note_matrix import categorical_head, mdn_head, regression_head

MIXTURES = 3
NEW = {"regression": regression_head(), "categorical": categorical_head(), "mdn": mdn_head(MIXTURES)}
STD = {"note": 0.05, "velocity": 0.1, "time": 0.2}
STD_ARRAY = np.array([STD["note"], STD["velocity"], STD["time"]])
BINS = (("levels", 127), ("levels", 127), ("uniform", 1000))  # note, velocity, time
LOG_2PI = math.log(2 * math.pi)


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def compiled(function):
    """``function`` compiled as generation compiles it (XLA under TensorFlow, jit under JAX)."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(function, jit_compile=True)
    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(function)
    return function


def targets(rng, n):
    """Rows on the note matrix's grid, about a quarter with velocity 0 and a quarter with time 0."""
    grid = (np.arange(128) / 127).astype(np.float32)
    velocity = np.where(rng.random(n) < 0.25, 0, rng.integers(0, 128, n))
    time = np.where(rng.random(n) < 0.25, 0.0, rng.random(n))
    time[:2] = [0.9995, 0.0005]  # the last and the first time bins
    return np.stack([grid[rng.integers(0, 128, n)], grid[velocity], time.astype(np.float32)], -1)


def outputs(rng, name, target):
    n = len(target)
    if name == "regression":
        output = target + rng.normal(0, 0.05, target.shape)
        output[0] = [-20.0, 3.0, -1.0]  # far beyond the ends: the tails' bins
        return output.astype(np.float32)
    output = rng.normal(0, 1.5, (n, NEW[name].width))
    if name == "mdn":
        k = MIXTURES
        output[:, 128 + k : 128 + 3 * k] = rng.random((n, 2 * k))  # means in the matrix's range
        output[:, 128 + 3 * k :] = rng.normal(-3, 2, (n, 2 * k))
        output[0, 128 + 3 * k :] = -30.0  # below the standard deviations' floor
        output[1, 128 + 3 * k :] = 8.0  # above the cap
    return output.astype(np.float32)


def case(name, n=64, seed=0):
    rng = np.random.default_rng(seed)
    target = targets(rng, n)
    return outputs(rng, name, target), target


# -- the heads' formulas in NumPy (float64) -----------------------------------------------------------

def log_softmax(logits):
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def gaussian_log_density(x, mean, std):
    return -0.5 * LOG_2PI - np.log(std) - 0.5 * ((x - mean) / std) ** 2


def pitch_index(target):
    return np.clip(np.rint(np.asarray(target[..., 0], np.float64) * 127), 0, 127).astype(int)


def mixture_parts(output, k=MIXTURES):
    """``(log weights, means (..., K, 2), stds (..., K, 2))`` of an mdn output's velocity and time."""
    mix = np.asarray(output[..., 128:], np.float64)
    means = np.stack([mix[..., k : 2 * k], mix[..., 2 * k : 3 * k]], axis=-1)
    log_stds = np.stack([mix[..., 3 * k : 4 * k], mix[..., 4 * k : 5 * k]], axis=-1)
    return log_softmax(mix[..., :k]), means, np.exp(np.minimum(log_stds, MIXTURE_MAX_LOG_STD)) + MIXTURE_STD_FLOOR


def reference_loss(name, target, output):
    """Per step: the card's mean squared error; cross-entropy plus summed squared errors; cross-entropy
    plus the mixture's negative log-density."""
    target, output = np.asarray(target, np.float64), np.asarray(output, np.float64)
    if name == "regression":
        return np.mean((output - target) ** 2, axis=-1)
    pitch = -np.take_along_axis(log_softmax(output[..., :128]), pitch_index(target)[..., None], -1)[..., 0]
    if name == "categorical":
        return pitch + ((output[..., 128:] - target[..., 1:]) ** 2).sum(axis=-1)
    log_weights, means, stds = mixture_parts(output)
    joint = log_weights + gaussian_log_density(target[..., None, 1:], means, stds).sum(axis=-1)
    top = joint.max(axis=-1)  # logsumexp
    return pitch - top - np.log(np.exp(joint - top[..., None]).sum(axis=-1))


def reference_point(name, output):
    output = np.asarray(output, np.float32)
    if name == "regression":
        return output
    pitch = (output[:, :128].argmax(axis=1).astype(np.float32) / np.float32(127))[:, None]
    if name == "categorical":
        return np.concatenate([pitch, output[:, 128:]], axis=1)
    k, rows = MIXTURES, np.arange(len(output))
    best = output[:, 128 : 128 + k].argmax(axis=1)
    return np.stack([pitch[:, 0], output[:, 128 + k :][rows, best], output[:, 128 + 2 * k :][rows, best]], -1)


def assert_pitches(values, index, message=""):
    """``values`` are the pitches ``index / 127``: the very classes, the values to the ulp (XLA, and so
    JAX even eagerly, may divide by multiplying with the reciprocal)."""
    np.testing.assert_array_equal(np.rint(values.astype(np.float64) * 127), index, err_msg=message)
    np.testing.assert_allclose(values, np.asarray(index, np.float64) / 127, rtol=2.5e-7, atol=0, err_msg=message)


def phi_mass(low, high):
    """``P(low < Z < high)`` for a standard normal Z, each tail by ``erfc`` (no cancellation)."""
    if low > 0:
        return 0.5 * (math.erfc(low / math.sqrt(2)) - math.erfc(high / math.sqrt(2)))
    return 0.5 * (math.erfc(-high / math.sqrt(2)) - math.erfc(-low / math.sqrt(2)))


def binned_mass(bins, value, mean, std):
    """A Gaussian's mass over ``value``'s bin, written out: the levels ``k / L`` and the uniform bins
    of [0, 1); the end bins reach to infinity."""
    kind, count = bins
    if kind == "levels":
        level = min(max(round(value * count), 0), count)
        low, high, last = (level - 0.5) / count, (level + 0.5) / count, count
    else:
        level = min(max(math.floor(value * count), 0), count - 1)
        low, high, last = level / count, (level + 1) / count, count - 1
    low, high = -math.inf if level == 0 else low, math.inf if level == last else high
    return phi_mass((low - mean) / std, (high - mean) / std)


def reference_nll(name, output, target, spread=STD):
    output, target = np.asarray(output, np.float64), np.asarray(target, np.float64)
    floor = lambda p: -math.log(max(p, PROBABILITY_FLOOR))  # noqa: E731
    result = []
    for out, row in zip(output, target):
        if name == "regression":
            result.append(sum(floor(binned_mass(BINS[c], row[c], out[c], spread[n]))
                              for c, n in enumerate(("note", "velocity", "time"))))
            continue
        pitch = floor(math.exp(log_softmax(out[:128])[pitch_index(row)]))
        if name == "categorical":
            result.append(pitch + sum(floor(binned_mass(BINS[c], row[c], out[127 + c], spread[n]))
                                      for c, n in ((1, "velocity"), (2, "time"))))
            continue
        log_weights, means, stds = mixture_parts(out)
        joint = sum(math.exp(log_weights[j]) * binned_mass(BINS[1], row[1], means[j, 0], stds[j, 0])
                    * binned_mass(BINS[2], row[2], means[j, 1], stds[j, 1]) for j in range(MIXTURES))
        result.append(pitch + floor(joint))
    return np.array(result)


# -- the note matrix's heads ----------------------------------------------------------------------------

def test_the_heads_have_their_widths_and_noise():
    assert [head.width for head in NEW.values()] == [3, 130, 128 + 5 * MIXTURES]
    assert [(head.uniforms, head.normals) for head in NEW.values()] == [(0, 3), (1, 2), (2, 2)]
    assert [head.noise_width for head in NEW.values()] == [3, 3, 4]
    assert all(head.names == ("note", "velocity", "time") and head.columns == 3 for head in NEW.values())
    assert [head.needs_spread for head in NEW.values()] == [True, True, False]
    assert [head.top_k_limit for head in NEW.values()] == [None, 128, 128]
    assert [head.samples_by_default for head in NEW.values()] == [False, True, True]


@pytest.mark.parametrize("name", list(NEW))
def test_losses_follow_their_formulas(name):
    output, target = case(name)
    head = NEW[name]
    np.testing.assert_allclose(numpy(head.loss(target, output)), reference_loss(name, target, output), rtol=2e-5,
                               atol=1e-6)
    steps, outputs_ = target.reshape(4, 16, 3), output.reshape(4, 16, -1)  # targets "all": a value per step
    stepped = numpy(head.loss(steps, outputs_))
    assert stepped.shape == (4, 16)
    np.testing.assert_array_equal(stepped.reshape(-1), numpy(head.loss(target, output)))
    # The Keras loss is the batch mean of the head's.
    np.testing.assert_allclose(numpy(HeadLoss(head)(target, output)), reference_loss(name, target, output).mean(),
                               rtol=2e-5)


def test_the_regression_loss_is_exactly_the_cards_mean_squared_error():
    output, target = case("regression")
    head = NEW["regression"]
    np.testing.assert_array_equal(numpy(head.loss(target, output)),
                                  numpy(keras.losses.mean_squared_error(target, output)))
    np.testing.assert_array_equal(numpy(HeadLoss(head)(target, output)),
                                  numpy(keras.losses.MeanSquaredError()(target, output)))


def test_the_mixture_loss_stays_finite_far_from_every_component():
    k = 2
    output = np.concatenate([np.zeros(128), [0, 0], [50.0, -50.0], [50.0, 50.0], [-20, -20], [-20, -20]])[None]
    value = numpy(mdn_head(k).loss(np.array([[60 / 127, 64 / 127, 0.2]], np.float32), output.astype(np.float32)))
    assert np.all(np.isfinite(value)) and value[0] > 1e6  # logsumexp: no log(0)


@pytest.mark.parametrize("name", list(NEW))
def test_points_noise_and_samples_follow_their_formulas(name):
    output, _ = case(name, seed=1)
    head = NEW[name]
    point = numpy(head.point(output))
    if name == "regression":
        np.testing.assert_array_equal(point, output)
    else:
        assert_pitches(point[:, 0], output[:, :128].argmax(axis=1))
        np.testing.assert_array_equal(point[:, 1:], reference_point(name, output)[:, 1:])
    for shape in ((64,), (2, 7)):
        rng = np.random.default_rng(5)
        uniform = 1.0 - rng.random((*shape, head.uniforms))
        normal = rng.standard_normal((*shape, head.normals))
        noise = head.draw_noise(np.random.default_rng(5), shape)
        assert noise.dtype == np.float32 and noise.shape == (*shape, head.noise_width)
        np.testing.assert_array_equal(noise, np.concatenate([uniform, normal], -1).astype(np.float32))
    noise = head.draw_noise(np.random.default_rng(2), (64,))
    std = STD_ARRAY.astype(np.float32)
    for temperature in (0.5, 1.0, 1.5):
        for top_k in (None,) if name == "regression" else (None, 1, 5):
            sampled = numpy(head.sample(output, noise, temperature=temperature, top_k=top_k, spread=STD))
            message = f"T={temperature} top_k={top_k}"
            if name == "regression":
                np.testing.assert_allclose(sampled, output + temperature * std * noise, rtol=1e-6, atol=1e-6,
                                           err_msg=message)
                continue
            pitch = numpy(sample_categorical(output[:, :128], noise[:, 0], temperature, top_k))
            assert_pitches(sampled[:, 0], pitch, message)
            if top_k == 1:
                np.testing.assert_array_equal(pitch, output[:, :128].argmax(axis=1))
            if name == "categorical":
                np.testing.assert_allclose(sampled[:, 1:], output[:, 128:] + temperature * std[1:] * noise[:, 1:],
                                           rtol=1e-6, atol=1e-6, err_msg=message)
                continue
            # mdn: a component drawn from softmax(weights / T) (top-k concerns the pitch only), then its Gaussian.
            component = numpy(sample_categorical(output[:, 128 : 128 + MIXTURES], noise[:, 1], temperature))
            _, means, stds = mixture_parts(output)
            rows = np.arange(len(output))
            expected = means[rows, component] + temperature * stds[rows, component] * noise[:, 2:]
            np.testing.assert_allclose(sampled[:, 1:], expected, rtol=1e-5, atol=1e-6, err_msg=message)
    np.testing.assert_array_equal(numpy(head.sample(output, noise, temperature=0.0, spread=STD)),
                                  numpy(head.point(output)))


@pytest.mark.parametrize("name", list(NEW))
def test_compiled_samples_and_points_make_the_eager_ones_steps(name):
    """Inside XLA (TensorFlow) or jit (JAX), as the carried loop runs them, and eagerly, as the window
    method does. The compiler may fuse a multiply-add (an ulp apart), but the valid steps' pitch and
    velocity, looked up on the grid, are the very same."""
    output, _ = case(name, n=500, seed=3)
    head, representation = NEW[name], NoteMatrix()
    noise = head.draw_noise(np.random.default_rng(4), (500,))
    top_k = None if name == "regression" else 7
    sample = lambda o, z: head.sample(o, z, temperature=1.2, top_k=top_k, spread=STD)  # noqa: E731
    for function, arguments in ((sample, (output, noise)), (head.point, (output,))):
        eager, fast = numpy(function(*arguments)), numpy(compiled(function)(*arguments))
        np.testing.assert_allclose(fast, eager, rtol=1e-6, atol=1e-6)
        valid = lambda *a: representation.valid_steps(function(*a))  # noqa: E731, B023
        np.testing.assert_array_equal(numpy(compiled(valid)(*arguments))[:, :2], numpy(valid(*arguments))[:, :2])


@pytest.mark.parametrize("name", list(NEW))
def test_likelihoods_and_residual_spread_follow_their_formulas(name):
    output, target = case(name, n=200, seed=6)
    head = NEW[name]
    expected = reference_nll(name, output, target)
    np.testing.assert_allclose(head.nll(output, target, STD), expected, rtol=1e-9, atol=0)
    parts = head.nll_parts(output, target, STD)
    assert list(parts) == [field.label for field in head.fields]
    assert list(parts) == {"regression": ["note+velocity+time"], "categorical": ["note", "velocity+time"],
                           "mdn": ["note", "velocity+time"]}[name]
    np.testing.assert_allclose(sum(parts.values()), expected, rtol=1e-9, atol=0)
    spread = head.residual_std(output, target)
    assert list(spread) == ["note", "velocity", "time"]
    rms = np.sqrt(np.mean((reference_point(name, output).astype(np.float64) - target) ** 2, axis=0))
    np.testing.assert_allclose(list(spread.values()), rms, rtol=1e-8)  # the pitch to the ulp (assert_pitches)
    sequence = (STD["note"], STD["velocity"], STD["time"])  # or in ``names`` order
    np.testing.assert_array_equal(head.nll(output, target, sequence), head.nll(output, target, STD))


def test_bins_reach_to_infinity_at_the_ends():
    low, high = bin_edges(("levels", 127), np.array([0.0, 64 / 127, 1.0, 1.7, -0.2]))
    np.testing.assert_allclose(low, [-np.inf, 63.5 / 127, 126.5 / 127, 126.5 / 127, -np.inf], rtol=1e-15)
    np.testing.assert_allclose(high, [0.5 / 127, 64.5 / 127, np.inf, np.inf, 0.5 / 127], rtol=1e-15)
    low, high = bin_edges(("uniform", 1000), np.array([0.0005, 0.2, 0.9995, 1.0]))
    np.testing.assert_allclose(low, [-np.inf, 0.2, 0.999, 0.999], rtol=1e-15)
    np.testing.assert_allclose(high, [0.001, 0.201, np.inf, np.inf], rtol=1e-15)


def test_normal_mass_keeps_both_tails_and_sums_to_one():
    far_tail = 0.5 * (math.erfc(8 / math.sqrt(2)) - math.erfc(9 / math.sqrt(2)))  # Q(8) - Q(9), no cancellation
    assert normal_mass(np.array([8.0]), np.array([9.0]))[0] == pytest.approx(far_tail, rel=1e-12, abs=0)
    assert normal_mass(np.array([-9.0]), np.array([-8.0]))[0] == pytest.approx(far_tail, rel=1e-12, abs=0)
    edges = np.concatenate([[-np.inf], (np.arange(127) + 0.5) / 127, [np.inf]])  # the 128 pitch bins
    assert normal_mass((edges[:-1] - 0.4) / 0.1, (edges[1:] - 0.4) / 0.1).sum() == pytest.approx(1.0)


def test_likelihoods_by_hand():
    """Regression: Gaussians' masses over the bins; mdn: the softmax's pitch and the mixture's joint mass."""
    phi = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    row = np.array([[60 / 127, 100 / 127, 0.2]])
    std = {"note": 1 / 127, "velocity": 0.1, "time": 0.2}
    # the means at the note's and velocity's bin centres, at the time bin's low edge
    masses = (2 * phi(0.5) - 1, 2 * phi(0.5 / 127 / 0.1) - 1, phi(0.001 / 0.2) - 0.5)
    expected = -sum(map(math.log, masses))
    np.testing.assert_allclose(NEW["regression"].nll(row, row, std), [expected], rtol=1e-9)
    # The ends of the range take the tails (the generator clips): a mean far below gives note 0 all the mass.
    low = NEW["regression"].nll([[-20.0, 100 / 127, 0.2]], [[0.0, 100 / 127, 0.2]], std)
    np.testing.assert_allclose(low, [expected + math.log(masses[0])], rtol=1e-9)
    # mdn, K = 2: a component tight on (0, 0) (std at the floor) and a broad one at (0.5, 0.5), equal weights.
    output = np.concatenate([np.zeros(128), [0, 0], [0, 0.5], [0, 0.5], [-30, 0], [-30, 0]])[None]
    parts = mdn_head(2).nll_parts(output, np.array([[62 / 127, 0.0, 0.0]]))
    tight = phi(0.5 / 127 / MIXTURE_STD_FLOOR) * phi(0.001 / MIXTURE_STD_FLOOR)
    broad = phi((0.5 / 127 - 0.5) / (1 + MIXTURE_STD_FLOOR)) * phi((0.001 - 0.5) / (1 + MIXTURE_STD_FLOOR))
    np.testing.assert_allclose([parts["note"][0], parts["velocity+time"][0]],
                               [math.log(128), -math.log(0.5 * tight + 0.5 * broad)], rtol=1e-9)
    # Probabilities, not densities: the mixture's share is never below 0 however tight a component.
    assert parts["velocity+time"][0] >= 0


def test_metrics_by_hand():
    head = NEW["categorical"]
    target = np.array([[60 / 127, 100 / 127, 0.1], [61 / 127, 0.0, 0.2]], np.float32)
    output = np.zeros((2, 130), np.float32)
    output[0, 60] = output[1, 62] = 5.0
    output[:, 128:] = target[:, 1:]
    np.testing.assert_array_equal(numpy(ColumnAccuracy(head).values(target, output)), [1.0, 0.0])
    np.testing.assert_allclose(numpy(LastSquaredError(head).values(target, output)), [0.0, (1 / 127) ** 2 / 3],
                               rtol=1e-5)
    np.testing.assert_array_equal(numpy(LastLoss(head).values(target, output)), numpy(head.loss(target, output)))
    sequences = np.stack([output * 0.0, output], axis=1)  # (2, 2, 130): only the last step counts
    np.testing.assert_array_equal(numpy(LastLoss(head).values(np.stack([target, target], 1), sequences)),
                                  numpy(head.loss(target, output)))


@pytest.mark.parametrize("name", list(NEW))
def test_metrics_follow_their_formulas(name):
    output, target = case(name, seed=7)
    head = NEW[name]
    metrics = [ColumnAccuracy(head), LastSquaredError(head), LastLoss(head)]
    assert [metric.name for metric in metrics] == ["pitch_accuracy", "last_mse", "last_loss"]
    point = reference_point(name, output)
    accuracy = (np.round(target[:, 0] * np.float32(127)) == np.round(point[:, 0] * np.float32(127)))
    expected = [accuracy.astype(np.float32), np.mean((target - point) ** 2, axis=-1),
                reference_loss(name, target, output)]
    for metric, values in zip(metrics, expected):
        np.testing.assert_allclose(numpy(metric.values(target, output)), values, rtol=2e-5, atol=1e-7,
                                   err_msg=metric.name)
    # Steps: the accuracy counts every step, the others the last one only.
    steps, outputs_ = target.reshape(4, 16, 3), output.reshape(4, 16, -1)
    np.testing.assert_array_equal(numpy(metrics[0].values(steps, outputs_)),
                                  numpy(metrics[0].values(target, output)).reshape(4, 16))
    for metric in metrics[1:]:
        np.testing.assert_array_equal(numpy(metric.values(steps, outputs_)),
                                      numpy(metric.values(steps[:, -1], outputs_[:, -1])), err_msg=metric.name)


def tiny_model(width, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, 3))
    hidden = keras.layers.Dense(8, activation="tanh")(inputs)
    return keras.Model(inputs, keras.layers.Dense(width)(hidden))


@pytest.mark.parametrize("name", list(NEW))
def test_a_compiled_model_logs_the_heads_loss_and_metrics(name):
    """What Keras logs for a batch is the mean of the formulas on the model's output."""
    head = NEW[name]
    rng = np.random.default_rng(8)
    x, y = rng.random((4, 12, 3), dtype=np.float32), targets(rng, 48).reshape(4, 12, 3)
    model = tiny_model(head.width)
    model.compile(optimizer=keras.optimizers.RMSprop(1e-2), loss=HeadLoss(head),
                  metrics=[ColumnAccuracy(head), LastSquaredError(head), LastLoss(head)])
    output = numpy(model(x))
    logs = model.test_on_batch(x, y, return_dict=True)
    flat_y, flat_out = y.reshape(48, 3), output.reshape(48, -1)
    point = reference_point(name, flat_out)
    expected = {"loss": reference_loss(name, flat_y, flat_out).mean(),
                "pitch_accuracy": np.mean(np.round(flat_y[:, 0] * 127) == np.round(point[:, 0] * 127)),
                "last_mse": np.mean((y[:, -1] - reference_point(name, output[:, -1])) ** 2),
                "last_loss": reference_loss(name, y[:, -1], output[:, -1]).mean()}
    assert set(logs) == set(expected)
    for key, value in expected.items():
        assert logs[key] == pytest.approx(value, rel=2e-5, abs=1e-7), key


def test_training_the_regression_head_is_bit_identical_to_the_cards_mean_squared_error():
    """Three RMSprop steps compiled with ``"mean_squared_error"`` (the card) and with the head's loss."""
    head = NEW["regression"]
    rng = np.random.default_rng(8)
    x, y = rng.random((4, 12, 3), dtype=np.float32), targets(rng, 48).reshape(4, 12, 3)
    models = []
    for loss in ("mean_squared_error", HeadLoss(head)):
        model = tiny_model(head.width)
        model.compile(optimizer=keras.optimizers.RMSprop(1e-2), loss=loss,
                      metrics=[ColumnAccuracy(head), LastSquaredError(head)])
        models.append((model, [model.train_on_batch(x, y, return_dict=True) for _ in range(3)]))
    (card, card_logs), (after, new_logs) = models
    assert card_logs == new_logs
    for card_weight, new_weight in zip(card.get_weights(), after.get_weights()):
        np.testing.assert_array_equal(new_weight, card_weight)


# -- Bernoulli ---------------------------------------------------------------------------------------

def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_bernoulli_loss_point_and_likelihood():
    field = Bernoulli(4)
    assert (field.width, field.columns, field.uniforms, field.normals, field.needs_spread) == (4, 4, 4, 0, False)
    assert field.names == ("bit0", "bit1", "bit2", "bit3") and field.label == "bit0+bit1+bit2+bit3"
    rng = np.random.default_rng(9)
    x = rng.normal(0, 3, (50, 4)).astype(np.float32)
    x[0] = [0.0, 40.0, -40.0, 1e-3]
    y = (rng.random((50, 4)) < 0.4).astype(np.float32)
    expected = np.sum(np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x))), axis=-1)
    np.testing.assert_allclose(numpy(Head((field,)).loss(y, x)), expected, rtol=1e-6)
    np.testing.assert_allclose(field.nll(x.astype(np.float64), y, None), expected, rtol=1e-5)  # both -log P(y)
    np.testing.assert_array_equal(numpy(field.point(x)), (x > 0).astype(np.float32))
    # By hand: P(y=1 | x=0) = 1/2 and P(y=0 | x=2) = 1 / (1 + e^2).
    np.testing.assert_allclose(Head((Bernoulli(("a", "b")),)).nll([[0.0, 2.0]], [[1.0, 0.0]]),
                               [math.log(2) + math.log1p(math.exp(2))], rtol=1e-12)
    assert Head((Bernoulli(1),)).nll([[-60.0]], [[1.0]])[0] == pytest.approx(-math.log(1e-12))  # floored


def test_bernoulli_samples_at_the_sigmoid_frequency():
    head = Head((Bernoulli(("a", "b", "c")),))
    logits = np.array([-2.0, 0.0, 1.5], np.float32)
    output = np.tile(logits, (20_000, 1))
    noise = head.draw_noise(np.random.default_rng(10), (20_000,))
    assert noise.shape == (20_000, 3) and noise.min() > 0 and noise.max() <= 1
    drawn = numpy(head.sample(output, noise, temperature=1.0))
    assert set(np.unique(drawn)) <= {0.0, 1.0}
    np.testing.assert_allclose(drawn.mean(axis=0), sigmoid(logits), atol=0.015)
    hot = numpy(head.sample(output, noise, temperature=4.0)).mean(axis=0)  # flatter
    np.testing.assert_allclose(hot, sigmoid(logits / 4), atol=0.015)
    np.testing.assert_array_equal(numpy(head.sample(output, noise, temperature=0.0)), numpy(head.point(output)))


def test_a_mixed_head_slices_output_target_and_noise_in_field_order():
    head = Head((Categorical("token", 5), Bernoulli(("x", "y")), Mixture(("a",), 2, (("uniform", 10),))))
    assert (head.width, head.columns, head.names) == (5 + 2 + 6, 4, ("token", "x", "y", "a"))
    assert (head.uniforms, head.normals, head.noise_width, head.top_k_limit) == (4, 1, 5, 5)
    rng = np.random.default_rng(11)
    output = rng.normal(0, 1, (30, head.width)).astype(np.float32)
    target = np.stack([rng.integers(0, 5, 30), rng.integers(0, 2, 30), rng.integers(0, 2, 30), rng.random(30)],
                      -1).astype(np.float32)
    noise = head.draw_noise(rng, (30,))
    sampled = numpy(head.sample(output, noise, temperature=1.0, top_k=2))
    token = numpy(Categorical("token", 5).sample(output[:, :5], noise[:, :1], None, temperature=1.0, top_k=2,
                                                 spread=None))
    bits = numpy(Bernoulli(("x", "y")).sample(output[:, 5:7], noise[:, 1:3], None, temperature=1.0, top_k=None,
                                              spread=None))
    np.testing.assert_array_equal(sampled[:, :3], np.concatenate([token, bits], -1))
    assert set(np.unique(sampled[:, 0])) <= {0.0, 1.0, 2.0, 3.0, 4.0}
    loss = numpy(head.loss(target, output))
    parts = [numpy(field.loss(target[:, a:b], output[:, c:d])) for field, (a, b), (c, d) in
             zip(head.fields, ((0, 1), (1, 3), (3, 4)), ((0, 5), (5, 7), (7, 13)))]
    np.testing.assert_allclose(loss, parts[0] + parts[1] + parts[2], rtol=1e-6)
    nll = head.nll_parts(output, target)
    assert list(nll) == ["token", "x+y", "a"] and all(part.shape == (30,) for part in nll.values())
    np.testing.assert_allclose(nll["token"], numpy(parts[0]), rtol=1e-5)  # an integer token: scale 1


# -- JSON and Keras round trips, saving ------------------------------------------------------------

FIELDS = [Gaussian(("a", "b"), (("levels", 127), ("uniform", 1000)), "sum"), Categorical("token", 300),
          Categorical("note", 128, scale=127.0), Mixture(("v", "t", "u"), 4, [["levels", 3], ["uniform", 2],
                                                                               ["levels", 1]]),
          Bernoulli(88), Bernoulli(["on"])]


@pytest.mark.parametrize("field", FIELDS, ids=lambda field: field.kind)
def test_fields_round_trip_through_json(field):
    data = json.loads(json.dumps(field.to_json()))
    assert data["field"] == field.kind and field_from_json(data) == field
    assert field_from_json(data).to_json() == field.to_json()


@pytest.mark.parametrize("head", [*NEW.values(), Head(tuple(FIELDS[:2]))],
                         ids=lambda head: "+".join(field.kind for field in head.fields))
def test_heads_loss_and_metrics_round_trip_through_their_configs(head):
    assert Head.from_json(json.loads(json.dumps(head.to_json()))) == head
    for item in (HeadLoss(head), ColumnAccuracy(head, column=1, scale=3.0, name="acc"), LastSquaredError(head),
                 LastLoss(head)):
        config = json.loads(json.dumps(item.get_config()))
        again = type(item).from_config(config)
        assert again.get_config() == item.get_config() and again.head == head and again.name == item.name
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(item))
        assert type(restored) is type(item) and restored.head == head


@pytest.mark.parametrize("name", list(NEW))
def test_a_model_with_the_head_loss_and_metrics_saves_and_loads_in_safe_mode(name, tmp_path):
    head = NEW[name]
    model = tiny_model(head.width, seed=1)
    model.compile(optimizer="rmsprop", loss=HeadLoss(head),
                  metrics=[ColumnAccuracy(head), LastSquaredError(head), LastLoss(head)])
    rng = np.random.default_rng(12)
    x, y = rng.random((4, 10, 3), dtype=np.float32), targets(rng, 40).reshape(4, 10, 3)
    model.train_on_batch(x, y)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)  # compile=True, no custom_objects
    assert isinstance(loaded.loss, HeadLoss) and loaded.loss.head == head
    expected = model.evaluate(x, y, return_dict=True, verbose=0)
    assert loaded.evaluate(x, y, return_dict=True, verbose=0) == expected
    assert set(expected) == {"loss", "pitch_accuracy", "last_mse", "last_loss"}


# -- refusals ------------------------------------------------------------------------------------

LEVELS = (("levels", 127),)


@pytest.mark.parametrize("build", [
    lambda: Gaussian((), ()),
    lambda: Gaussian(("a", "a"), LEVELS * 2),
    lambda: Gaussian(("a",), (("levels", 0),)),
    lambda: Gaussian(("a",), (("steps", 4),)),
    lambda: Gaussian(("a",), (("levels", 2.5),)),
    lambda: Gaussian(("a", "b"), LEVELS),
    lambda: Gaussian(("a",), LEVELS, "max"),
    lambda: Gaussian("", LEVELS),
    lambda: Categorical("", 3),
    lambda: Categorical(("a",), 3),
    lambda: Categorical("a", 1),
    lambda: Categorical("a", True),
    lambda: Categorical("a", 3, scale=0.0),
    lambda: Categorical("a", 3, scale=math.inf),
    lambda: Mixture(("v",), 0, LEVELS),
    lambda: Mixture(("v", "t"), 2, LEVELS),
    lambda: Bernoulli(0),
    lambda: Bernoulli(True),
    lambda: Bernoulli(()),
    lambda: Head(()),
    lambda: Head(("not a field",)),
    lambda: Head((Categorical("a", 3), Bernoulli(("a",)))),
    lambda: Head.from_json({"field": "categorical"}),
    lambda: field_from_json({"field": "poisson"}),
    lambda: field_from_json({"field": "categorical", "name": "a"}),
    lambda: field_from_json({"field": "bernoulli", "names": ["a"], "extra": 1}),
    lambda: field_from_json(["bernoulli"]),
], ids=range(27))
def test_invalid_configs_are_refused(build):
    with pytest.raises(ValueError):
        build()


def test_invalid_sampling_and_likelihood_requests_are_refused():
    output, target = case("categorical", n=4)
    head = NEW["categorical"]
    noise = head.draw_noise(np.random.default_rng(0), (4,))
    for temperature in (-1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="temperature"):
            head.sample(output, noise, temperature=temperature, spread=STD)
    for top_k in (0, 129):
        with pytest.raises(ValueError, match="top_k must be between 1 and 128"):
            head.sample(output, noise, temperature=1.0, top_k=top_k, spread=STD)
    with pytest.raises(ValueError, match="has none"):
        NEW["regression"].sample(target, noise, temperature=1.0, top_k=3, spread=STD)
    with pytest.raises(ValueError, match="calibration"):
        head.sample(output, noise, temperature=1.0)
    with pytest.raises(ValueError, match="calibration"):
        head.nll(output, target)
    with pytest.raises(ValueError, match="lack time"):
        head.nll(output, target, {"velocity": 0.1})
    with pytest.raises(ValueError, match="spread needs 3"):
        head.nll(output, target, (0.1, 0.2))
    with pytest.raises(ValueError, match=r"nll needs output \(rows, 130\) and target \(rows, 3 or more\)"):
        head.nll(output[:, :3], target, STD)
    with pytest.raises(ValueError, match="nll needs"):
        head.nll(output, target[:, :2], STD)
    NEW["mdn"].nll(case("mdn", n=4)[0], target)  # the mixture needs no spread


# -- per-field metrics --------------------------------------------------------------------------------

MIXED = Head((Categorical("token", 4), Gaussian(("x",), (("uniform", 10),)), Bernoulli(3)))


def test_each_field_has_its_own_metric_by_hand():
    # targets [token, x, bit0..bit2]; outputs [4 logits | x | 3 logits]
    target = np.array([[2, 0.5, 1, 0, 1], [3, 0.0, 0, 0, 0]], np.float32)
    output = np.array([[0, 0, 9, 0, 0.25, 2, -1, -3], [9, 0, 0, 0, 1.0, 2, 2, -1]], np.float32)
    metrics = field_metrics(MIXED)
    assert [metric.name for metric in metrics] == ["token_accuracy", "x_squared_error", "bit0+bit1+bit2_bit_accuracy"]
    np.testing.assert_array_equal(numpy(metrics[0].values(target, output)), [1.0, 0.0])
    np.testing.assert_allclose(numpy(metrics[1].values(target, output)), [0.0625, 1.0])
    np.testing.assert_allclose(numpy(metrics[2].values(target, output)), [2 / 3, 1 / 3], rtol=1e-6)
    with pytest.raises(ValueError, match="3 fields, got field 3"):
        FieldMetric(MIXED, 3)


@pytest.mark.parametrize("name", list(NEW))
def test_the_note_matrix_heads_field_metrics_follow_their_formulas(name):
    output, target = case(name, seed=9)
    head = NEW[name]
    point = reference_point(name, output)
    values = [numpy(metric.values(target, output)) for metric in field_metrics(head)]
    if name == "regression":  # one Gaussian field: the card's squared error on every step
        np.testing.assert_allclose(values[0], np.mean((target - point) ** 2, axis=-1), rtol=1e-5)
        return
    accuracy = np.rint(target[:, 0] * np.float32(127)) == np.rint(point[:, 0] * np.float32(127))
    np.testing.assert_array_equal(values[0], accuracy.astype(np.float32))
    np.testing.assert_allclose(values[1], np.mean((target[:, 1:] - point[:, 1:]) ** 2, axis=-1), rtol=1e-5)


def test_a_model_with_field_metrics_saves_and_loads_in_safe_mode(tmp_path):
    model = tiny_model(MIXED.width, seed=2)
    model.compile(optimizer="rmsprop", loss=HeadLoss(MIXED), metrics=field_metrics(MIXED))
    rng = np.random.default_rng(3)
    x = rng.random((4, 6, 3), dtype=np.float32)
    y = np.concatenate([rng.integers(0, 4, (4, 6, 1)), rng.random((4, 6, 1)), rng.integers(0, 2, (4, 6, 3))], -1)
    model.train_on_batch(x, y.astype(np.float32))
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    expected = model.evaluate(x, y, return_dict=True, verbose=0)
    assert loaded.evaluate(x, y, return_dict=True, verbose=0) == expected
    assert set(expected) == {"loss", "token_accuracy", "x_squared_error", "bit0+bit1+bit2_bit_accuracy"}


# -- a field that reads the whole target row ---------------------------------------------------------

TOGGLE = Head((Categorical("gate", 3), Toggle("bit", 4, gate=0, state=2)))  # rows: [gate, bit, state x 4]


def test_toggle_chooses_among_the_bits_that_can_flip():
    # Row 0 clears bit 1 (set before: bits 1 and 3); row 1 sets bit 2 (set before: bit 0).
    target = np.array([[0, 1, 0, 0, 0, 1], [2, 2, 1, 0, 1, 0]], np.float32)
    logits = np.array([[0.5, 1.0, -0.5, 2.0], [0.3, 0.2, 0.1, -1.0]], np.float32)
    output = np.concatenate([np.zeros((2, 3), np.float32), logits], axis=1)
    allowed = [[1, 3], [1, 2, 3]]  # row 0: the set bits; row 1: the clear ones

    def expected(row, index):
        chosen = logits[row, allowed[row]].astype(np.float64)
        return -(logits[row, index] - np.log(np.exp(chosen).sum()))

    loss = numpy(TOGGLE.loss(target, output)) - np.log(3.0)  # minus the gate's uniform cross-entropy
    np.testing.assert_allclose(loss, [expected(0, 1), expected(1, 2)], rtol=1e-5)
    np.testing.assert_allclose(TOGGLE.nll_parts(output, target)["bit"], [expected(0, 1), expected(1, 2)], rtol=1e-6)
    np.testing.assert_array_equal(numpy(FieldMetric(TOGGLE, 1).values(target, output)), [0.0, 0.0])
    np.testing.assert_array_equal(numpy(FieldMetric(TOGGLE, 1).values(target, output + np.eye(7)[[0, 5]] * 9)),
                                  [0.0, 1.0])  # row 1's logit of bit 2 raised: now its best allowed class
    assert Head.from_json(json.loads(json.dumps(TOGGLE.to_json()))) == TOGGLE
    with pytest.raises(ValueError, match="state column"):
        Toggle("bit", 4, gate=0, state=-1)
