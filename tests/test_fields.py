"""Output fields and heads (``models.fields``, ``models.head``, ``models.head_metrics``): the
three note-matrix heads as field lists give the very numbers of ``models.heads`` (losses,
points, samples bit for bit, likelihoods to 1e-12), the Bernoulli field, JSON and Keras
round trips, safe-mode saving, and the refusal of invalid configs."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest
from keras.src.losses.losses import LossFunctionWrapper  # what compile wraps a loss function in

from models.fields import (
    MIXTURE_STD_FLOOR,
    Bernoulli,
    Categorical,
    Gaussian,
    Head,
    HeadLoss,
    Mixture,
    bin_edges,
    categorical_head,
    field_from_json,
    mdn_head,
    regression_head,
)
from models.head_metrics import ColumnAccuracy, LastLoss, LastSquaredError

try:  # the heads these replace, while they are still there (tests/test_pinned.py pins their numbers for good)
    from models import heads as old
    from models import metrics as old_metrics
except ImportError as error:
    old = old_metrics = None
    OLD_MISSING = f"the old heads do not import ({error})"

needs_old = pytest.mark.skipif(old is None, reason=OLD_MISSING if old is None else "")
MIXTURES = 3
NEW = {"regression": regression_head(), "categorical": categorical_head(), "mdn": mdn_head(MIXTURES)}
OLD = {} if old is None else {"regression": old.HeadConfig("regression"), "categorical": old.HeadConfig("categorical"),
                              "mdn": old.HeadConfig("mdn", MIXTURES)}
STD = {"note": 0.05, "velocity": 0.1, "time": 0.2}


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


# -- the old heads as field lists ------------------------------------------------------------------

def test_the_old_heads_have_their_widths_and_noise():
    assert [head.width for head in NEW.values()] == [3, 130, 128 + 5 * MIXTURES]
    assert [(head.uniforms, head.normals) for head in NEW.values()] == [(0, 3), (1, 2), (2, 2)]
    assert all(head.names == ("note", "velocity", "time") and head.columns == 3 for head in NEW.values())
    assert [head.needs_spread for head in NEW.values()] == [True, True, False]
    assert [head.top_k_limit for head in NEW.values()] == [None, 128, 128]


@needs_old
@pytest.mark.parametrize("name", list(NEW))
def test_losses_are_bit_identical(name):
    output, target = case(name)
    old_loss = keras.losses.get(old.head_loss(OLD[name]))
    np.testing.assert_array_equal(numpy(NEW[name].loss(target, output)), numpy(old_loss(target, output)))
    steps, outputs_ = target.reshape(4, 16, 3), output.reshape(4, 16, -1)  # targets "all": a value per step
    np.testing.assert_array_equal(numpy(NEW[name].loss(steps, outputs_)), numpy(old_loss(steps, outputs_)))
    compiled_loss = (keras.losses.MeanSquaredError() if name == "regression"  # what compile makes of the old ones
                     else LossFunctionWrapper(old_loss))
    np.testing.assert_array_equal(numpy(HeadLoss(NEW[name])(target, output)), numpy(compiled_loss(target, output)))


@needs_old
@pytest.mark.parametrize("name", list(NEW))
def test_points_and_samples_are_bit_identical(name):
    output, _ = case(name, seed=1)
    config, head = OLD[name], NEW[name]
    np.testing.assert_array_equal(numpy(head.point(output)), numpy(old.point_rows(config, output)))
    for shape in ((64,), (2, 7)):
        np.testing.assert_array_equal(head.draw_noise(np.random.default_rng(5), shape),
                                      old.draw_noise(config, np.random.default_rng(5), shape))
    noise = head.draw_noise(np.random.default_rng(2), (64,))
    for temperature in (0.0, 0.5, 1.0, 1.5):
        for top_k in (None,) if name == "regression" else (None, 1, 5):
            new = head.sample(output, noise, temperature=temperature, top_k=top_k, spread=STD)
            expected = old.sample_rows(config, output, noise, temperature=temperature, top_k=top_k, residual_std=STD)
            np.testing.assert_array_equal(numpy(new), numpy(expected), err_msg=f"T={temperature} top_k={top_k}")


@needs_old
@pytest.mark.parametrize("name", list(NEW))
def test_compiled_samples_are_bit_identical(name):
    """Inside XLA (TensorFlow) or jit (JAX), as the generation loop runs them."""
    output, _ = case(name, seed=3)
    noise = NEW[name].draw_noise(np.random.default_rng(4), (64,))
    top_k = None if name == "regression" else 7
    new = compiled(lambda o, z: NEW[name].sample(o, z, temperature=1.2, top_k=top_k, spread=STD))
    expected = compiled(lambda o, z: old.sample_rows(OLD[name], o, z, temperature=1.2, top_k=top_k,
                                                     residual_std=STD))
    np.testing.assert_array_equal(numpy(new(output, noise)), numpy(expected(output, noise)))
    point = compiled(NEW[name].point)(output)
    np.testing.assert_array_equal(numpy(point), numpy(compiled(lambda o: old.point_rows(OLD[name], o))(output)))


@needs_old
@pytest.mark.parametrize("name", list(NEW))
def test_likelihoods_and_residual_spread_agree(name):
    output, target = case(name, n=200, seed=6)
    head, config = NEW[name], OLD[name]
    expected = old.row_nll(config, output, target, STD)
    np.testing.assert_allclose(head.nll(output, target, STD), expected, rtol=1e-12, atol=0)
    parts = head.nll_parts(output, target, STD)
    assert list(parts) == [field.label for field in head.fields]
    np.testing.assert_allclose(sum(parts.values()), expected, rtol=1e-12, atol=0)
    spread = head.residual_std(output, target)
    assert list(spread) == ["note", "velocity", "time"]
    np.testing.assert_allclose(list(spread.values()), list(old.residual_std_of(config, output, target).values()),
                               rtol=1e-12)
    sequence = (STD["note"], STD["velocity"], STD["time"])  # or in ``names`` order
    np.testing.assert_array_equal(head.nll(output, target, sequence), head.nll(output, target, STD))


def test_bins_reach_to_infinity_at_the_ends():
    low, high = bin_edges(("levels", 127), np.array([0.0, 64 / 127, 1.0, 1.7, -0.2]))
    np.testing.assert_allclose(low, [-np.inf, 63.5 / 127, 126.5 / 127, 126.5 / 127, -np.inf], rtol=1e-15)
    np.testing.assert_allclose(high, [0.5 / 127, 64.5 / 127, np.inf, np.inf, 0.5 / 127], rtol=1e-15)
    low, high = bin_edges(("uniform", 1000), np.array([0.0005, 0.2, 0.9995, 1.0]))
    np.testing.assert_allclose(low, [-np.inf, 0.2, 0.999, 0.999], rtol=1e-15)
    np.testing.assert_allclose(high, [0.001, 0.201, np.inf, np.inf], rtol=1e-15)


def test_likelihoods_by_hand():
    """Regression: Gaussians' masses over the bins; mdn: the softmax's pitch and the mixture's joint mass."""
    phi = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    row = np.array([[60 / 127, 100 / 127, 0.2]])
    std = {"note": 1 / 127, "velocity": 0.1, "time": 0.2}
    masses = (2 * phi(0.5) - 1, 2 * phi(0.5 / 127 / 0.1) - 1, phi(0.001 / 0.2) - 0.5)  # means at centres; time: low edge
    np.testing.assert_allclose(NEW["regression"].nll(row, row, std), [-sum(map(math.log, masses))], rtol=1e-9)
    # mdn, K = 2: a component tight on (0, 0) (std at the floor) and a broad one at (0.5, 0.5), equal weights.
    output = np.concatenate([np.zeros(128), [0, 0], [0, 0.5], [0, 0.5], [-30, 0], [-30, 0]])[None]
    parts = mdn_head(2).nll_parts(output, np.array([[62 / 127, 0.0, 0.0]]))
    tight = phi(0.5 / 127 / MIXTURE_STD_FLOOR) * phi(0.001 / MIXTURE_STD_FLOOR)
    broad = phi((0.5 / 127 - 0.5) / (1 + MIXTURE_STD_FLOOR)) * phi((0.001 - 0.5) / (1 + MIXTURE_STD_FLOOR))
    np.testing.assert_allclose([parts["note"][0], parts["velocity+time"][0]],
                               [math.log(128), -math.log(0.5 * tight + 0.5 * broad)], rtol=1e-9)


@needs_old
@pytest.mark.parametrize("name", list(NEW))
def test_metrics_equal_the_old_functions(name):
    output, target = case(name, seed=7)
    head = NEW[name]
    metrics = [(ColumnAccuracy(head), old_metrics.pitch_accuracy), (LastSquaredError(head), old_metrics.last_mse),
               (LastLoss(head), old_metrics.last_loss)]
    for y_true, y_pred in ((target, output), (target.reshape(4, 16, 3), output.reshape(4, 16, -1))):
        for metric, function in metrics:
            np.testing.assert_array_equal(numpy(metric.values(y_true, y_pred)), numpy(function(y_true, y_pred)),
                                          err_msg=metric.name)
    assert [metric.name for metric, _ in metrics] == ["pitch_accuracy", "last_mse", "last_loss"]


def tiny_model(width, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, 3))
    hidden = keras.layers.Dense(8, activation="tanh")(inputs)
    return keras.Model(inputs, keras.layers.Dense(width)(hidden))


@needs_old
@pytest.mark.parametrize("name", list(NEW))
def test_training_with_the_head_loss_and_metrics_is_bit_identical(name):
    """Three RMSprop steps compiled with the old loss and metrics and with the new ones."""
    head, config = NEW[name], OLD[name]
    rng = np.random.default_rng(8)
    x, y = rng.random((4, 12, 3), dtype=np.float32), targets(rng, 48).reshape(4, 12, 3)
    old_list = [old_metrics.pitch_accuracy, old_metrics.last_mse] + ([old_metrics.last_loss] if name != "regression"
                                                                     else [])
    new_list = [ColumnAccuracy(head), LastSquaredError(head)] + ([LastLoss(head)] if name != "regression" else [])
    models = []
    for loss, metrics in ((old.head_loss(config), old_list), (HeadLoss(head), new_list)):
        model = tiny_model(head.width)
        model.compile(optimizer=keras.optimizers.RMSprop(1e-2), loss=loss, metrics=metrics)
        models.append((model, [model.train_on_batch(x, y, return_dict=True) for _ in range(3)]))
    (before, old_logs), (after, new_logs) = models
    assert old_logs == new_logs
    for old_weight, new_weight in zip(before.get_weights(), after.get_weights()):
        np.testing.assert_array_equal(new_weight, old_weight)


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
    with pytest.raises(ValueError, match=r"nll needs output \(rows, 130\) and target \(rows, 3\)"):
        head.nll(output[:, :3], target, STD)
    with pytest.raises(ValueError, match="nll needs"):
        head.nll(output, target[:, :2], STD)
    NEW["mdn"].nll(case("mdn", n=4)[0], target)  # the mixture needs no spread
