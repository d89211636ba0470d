"""Output heads: widths, losses and likelihoods against NumPy on hand-built tensors, point
rows, metrics, safe-mode saving, and an mdn run trained by train.py end to end."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest

import train
from models import ModelConfig, build_model, compile_model, last_loss, last_mse, pitch_accuracy
from models.heads import (
    HEADS,
    MDN_STD_FLOOR,
    HeadConfig,
    categorical_loss,
    head_from_width,
    head_width,
    mdn_loss,
    normal_mass,
    point_rows,
    row_nll,
)
from note_matrix.evaluation.baselines import Prediction, score

LOG_2PI = math.log(2 * math.pi)


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def gaussian_log_density(x, mean, std):
    return -0.5 * LOG_2PI - np.log(std) - 0.5 * ((x - mean) / std) ** 2


def rows(pitches, velocities, times):
    return np.stack([np.array(pitches) / 127, np.array(velocities) / 127, np.array(times)], -1).astype(np.float32)


def mdn_output(pitch_logits, weights, means_v, means_t, log_std_v, log_std_t):
    """One mdn output row per argument row, in the documented order."""
    return np.concatenate([pitch_logits, weights, means_v, means_t, log_std_v, log_std_t], axis=-1).astype(np.float32)


# -- widths and the model --------------------------------------------------------------------


@pytest.mark.parametrize("targets", ["last", "all"])
@pytest.mark.parametrize(("head", "mixtures", "width"), [("regression", 5, 3), ("categorical", 5, 130),
                                                        ("mdn", 5, 153), ("mdn", 2, 138)])
def test_each_head_has_one_output_of_its_width_and_the_card_layer_names(head, mixtures, width, targets):
    config = ModelConfig(units=8, head=head, mixtures=mixtures, targets=targets)
    assert head_width(config) == width and head_from_width(width) == HeadConfig(head, mixtures if head == "mdn" else 5)
    model = build_model(config)
    assert [layer.name for layer in model.layers] == ["window", "lstm", "dropout", "dense", "activation"]
    assert len(model.outputs) == 1
    out = model(np.zeros((2, 7, 3), np.float32))
    assert out.shape == ((2, 7, width) if targets == "all" else (2, width))


def test_invalid_heads_are_refused():
    with pytest.raises(ValueError, match="head must be one of"):
        ModelConfig(head="softmax")
    with pytest.raises(ValueError, match="mixtures"):
        ModelConfig(head="mdn", mixtures=0)
    with pytest.raises(ValueError, match="features 3"):
        ModelConfig(head="categorical", features=4)
    with pytest.raises(ValueError, match="no head"):
        head_from_width(129)
    assert HEADS == ("regression", "categorical", "mdn")


# -- losses on hand-built tensors -----------------------------------------------------------------


def test_categorical_loss_is_cross_entropy_plus_squared_errors():
    rng = np.random.default_rng(0)
    target = rows([60, 0, 127], [100, 0, 64], [0.0, 0.5, 0.9])
    output = rng.normal(0, 2, (3, 130)).astype(np.float32)
    expected = (-log_softmax(output[:, :128].astype(np.float64))[np.arange(3), [60, 0, 127]]
                + (output[:, 128] - target[:, 1]) ** 2 + (output[:, 129] - target[:, 2]) ** 2)
    np.testing.assert_allclose(numpy(categorical_loss(target, output)), expected, rtol=1e-5)
    # Sequences: one value per step.
    assert numpy(categorical_loss(target[None], output[None])).shape == (1, 3)


def test_mdn_loss_is_cross_entropy_plus_mixture_nll():
    rng = np.random.default_rng(1)
    k = 3
    target = rows([62, 70], [90, 0], [0.1, 0.0])
    pitch = rng.normal(0, 1, (2, 128))
    weights, mv, mt = rng.normal(0, 1, (2, k)), rng.random((2, k)), rng.random((2, k))
    sv, st = rng.normal(-2, 0.5, (2, k)), rng.normal(-2, 0.5, (2, k))
    sv[1, 0] = -30.0  # below the floor: the floor holds
    output = mdn_output(pitch, weights, mv, mt, sv, st)
    std_v, std_t = np.exp(sv) + MDN_STD_FLOOR, np.exp(st) + MDN_STD_FLOOR
    joint = (log_softmax(weights) + gaussian_log_density(target[:, 1:2], mv, std_v)
             + gaussian_log_density(target[:, 2:3], mt, std_t))
    mixture_nll = -np.log(np.exp(joint).sum(axis=1))
    expected = -log_softmax(pitch)[np.arange(2), [62, 70]] + mixture_nll
    np.testing.assert_allclose(numpy(mdn_loss(target, output)), expected, rtol=1e-4)


def test_mdn_nll_is_the_mixture_mass_of_the_velocity_level_and_time_bin():
    k = 2
    target = rows([62], [0], [0.0])  # a note-off in a chord: velocity 0, gap 0
    pitch = np.zeros((1, 128))
    # component 0: tight on (0, 0), a density of about 1e5 there; component 1: broad
    output = mdn_output(pitch, [[0.0, 0.0]], [[0.0, 0.5]], [[0.0, 0.5]], [[-30.0, 0.0]], [[-30.0, 0.0]])
    std = MDN_STD_FLOOR  # exp(-30) + floor
    mass_v0 = 0.5 * (1 + math.erf((0.5 / 127) / std / math.sqrt(2)))  # P(v < 0.5/127) for the tight one
    mass_t0 = 0.5 * (1 + math.erf(0.001 / std / math.sqrt(2)))  # P(t < 0.001)
    broad_v = 0.5 * (1 + math.erf((0.5 / 127 - 0.5) / (1 + MDN_STD_FLOOR) / math.sqrt(2)))
    broad_t = 0.5 * (1 + math.erf((0.001 - 0.5) / (1 + MDN_STD_FLOOR) / math.sqrt(2)))
    expected = math.log(128) - math.log(0.5 * mass_v0 * mass_t0 + 0.5 * broad_v * broad_t)
    np.testing.assert_allclose(row_nll(HeadConfig("mdn", k), output, target), [expected], rtol=1e-6)
    # Probabilities, not densities: the NLL never goes below the pitch's share.
    assert row_nll(HeadConfig("mdn", k), output, target)[0] >= math.log(128) - 1e-9


def test_mdn_loss_stays_finite_far_from_every_component():
    output = mdn_output(np.zeros((1, 128)), np.zeros((1, 2)), [[50.0, -50.0]], [[50.0, 50.0]], [[-20, -20]],
                        [[-20, -20]])
    value = numpy(mdn_loss(rows([60], [64], [0.2]), output))
    assert np.all(np.isfinite(value)) and value[0] > 1e6  # logsumexp: no log(0)


# -- point rows and metrics ------------------------------------------------------------------------


def test_point_rows_per_head():
    categorical = np.zeros((1, 130), np.float32)
    categorical[0, 64] = 3.0
    categorical[0, 128:] = [0.6, 0.2]
    np.testing.assert_allclose(numpy(point_rows(HeadConfig("categorical"), categorical)), [[64 / 127, 0.6, 0.2]],
                               rtol=1e-6)
    pitch = np.zeros((1, 128))
    pitch[0, 70] = 1.0
    mdn = mdn_output(pitch, [[0.1, 2.0]], [[0.3, 0.7]], [[0.05, 0.4]], [[0, 0]], [[0, 0]])
    np.testing.assert_allclose(numpy(point_rows(HeadConfig("mdn", 2), mdn)), [[70 / 127, 0.7, 0.4]], rtol=1e-6)
    regression = rows([60.3], [90], [0.25])
    np.testing.assert_array_equal(numpy(point_rows(HeadConfig(), regression)), regression)


def test_metrics_use_the_heads_point_pitch():
    target = rows([60, 61], [100, 0], [0.1, 0.2])
    output = np.zeros((2, 130), np.float32)
    output[0, 60] = output[1, 62] = 5.0
    output[:, 128:] = target[:, 1:]
    np.testing.assert_array_equal(numpy(pitch_accuracy(target, output)), [1.0, 0.0])
    np.testing.assert_allclose(numpy(last_mse(target, output)), [0.0, (1 / 127) ** 2 / 3], rtol=1e-5)
    np.testing.assert_allclose(numpy(last_loss(target, output)), numpy(categorical_loss(target, output)), rtol=1e-6)
    sequences = np.stack([output, output * 0.0], axis=1)  # (2, 2, 130): only the last step counts
    np.testing.assert_allclose(numpy(last_loss(np.stack([target, target], 1), sequences)),
                               numpy(categorical_loss(target, sequences[:, -1])), rtol=1e-6)


# -- negative log-likelihood per row ---------------------------------------------------------------


def test_regression_nll_uses_the_gaussian_mass_of_the_pitch_bin():
    target = rows([60], [100], [0.2])
    std = {"note": 1 / 127, "velocity": 0.1, "time": 0.2}
    bin_mass = math.erf(0.5 / math.sqrt(2))  # mean at the bin's centre, std one bin: P(|Z| < 0.5)
    velocity_mass = math.erf((0.5 / 127) / 0.1 / math.sqrt(2))  # the level 100 bin, centred
    time_mass = 0.5 * math.erf((0.001 / 0.2) / math.sqrt(2))  # the bin [0.2, 0.201), mean at its low edge
    expected = -math.log(bin_mass) - math.log(velocity_mass) - math.log(time_mass)
    np.testing.assert_allclose(row_nll(HeadConfig(), target, target, std), [expected], rtol=1e-6)
    # The ends of the range take the tails (the generator clips): a mean far below gives note 0 all the mass.
    low = row_nll(HeadConfig(), rows([-20], [100], [0.2]), rows([0], [100], [0.2]), std)
    np.testing.assert_allclose(low, [expected + math.log(bin_mass)], rtol=1e-6)
    # The 128 bin masses sum to 1.
    edges = np.concatenate([[-np.inf], (np.arange(127) + 0.5) / 127, [np.inf]])
    assert normal_mass((edges[:-1] - 0.4) / 0.1, (edges[1:] - 0.4) / 0.1).sum() == pytest.approx(1.0)
    far_tail = 0.5 * (math.erfc(8 / math.sqrt(2)) - math.erfc(9 / math.sqrt(2)))  # Q(8) - Q(9), no cancellation
    assert normal_mass(np.array([8.0]), np.array([9.0]))[0] == pytest.approx(far_tail, rel=1e-12, abs=0)
    assert normal_mass(np.array([-9.0]), np.array([-8.0]))[0] == pytest.approx(far_tail, rel=1e-12, abs=0)


def test_categorical_nll_agrees_with_the_baselines_score():
    rng = np.random.default_rng(3)
    target = rows([60, 64, 0], [100, 0, 30], [0.1, 0.3, 0.0])
    output = rng.normal(0, 1.5, (3, 130)).astype(np.float32)
    std = {"note": 0.05, "velocity": 0.3, "time": 0.15}
    probabilities = np.exp(log_softmax(output[:, :128].astype(np.float64)))
    rows_predicted = np.concatenate([np.zeros((3, 1)), output[:, 128:]], axis=1)
    expected = score(Prediction(rows_predicted, probabilities, 0.3, 0.15), target.astype(np.float64))["nll"]
    assert row_nll(HeadConfig("categorical"), output, target, std).mean() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="calibration"):
        row_nll(HeadConfig("categorical"), output, target, None)
    with pytest.raises(ValueError, match="row_nll needs"):
        row_nll(HeadConfig("categorical"), output[:, :3], target, std)


# -- saving ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("head", HEADS)
def test_each_head_trains_saves_and_loads_in_safe_mode(head, tmp_path):
    config = ModelConfig(units=8, head=head, mixtures=2, targets="all")
    model = compile_model(build_model(config), config)
    x = np.random.default_rng(2).random((4, 20, 3), dtype=np.float32)
    logs = model.train_on_batch(x[:, :-1], x[:, 1:], return_dict=True)
    assert all(np.isfinite(v) for v in logs.values())
    assert {"loss", "pitch_accuracy", "last_mse"} | ({"last_loss"} if head != "regression" else set()) <= logs.keys()
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)  # no custom_objects
    np.testing.assert_allclose(loaded.predict_on_batch(x), model.predict_on_batch(x), rtol=1e-6, atol=1e-6)
    again = loaded.train_on_batch(x[:, :-1], x[:, 1:], return_dict=True)  # the loss came back too
    assert np.isfinite(again["loss"])


# -- train.py with the mdn head ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def mdn_run(song_folder, tmp_path_factory):
    base = tmp_path_factory.mktemp("mdn")
    assert train.main(["--dataset", str(song_folder), "--data-dir", str(base / "data"), "--logdir", str(base / "logs"),
                       "--run-name", "mdn", "--units", "8", "--epochs", "2", "--batch-size", "32", "--targets",
                       "last", "--head", "mdn", "--mixtures", "2", "--quiet"]) == 0
    return base / "logs" / "mdn"


def test_an_mdn_run_monitors_its_last_loss_and_writes_a_calibration(mdn_run):
    config = json.loads((mdn_run / "config.json").read_text())
    assert config["train"]["model"]["head"] == "mdn" and config["train"]["model"]["mixtures"] == 2
    history = json.loads((mdn_run / "history.json").read_text())
    assert history["monitor"] == "val_last_loss"
    epochs = history["epochs"]
    np.testing.assert_allclose(epochs["val_last_loss"], epochs["val_loss"], rtol=1e-5)  # targets last: the same
    assert history["best_epoch"] == int(np.argmin(epochs["val_last_loss"]))
    calibration = json.loads((mdn_run / "calibration.json").read_text())
    assert calibration["split"] == "validation" and calibration["rows"] > 0
    assert set(calibration["residual_std"]) == {"note", "velocity", "time"}
    assert all(0 < value < 2 for value in calibration["residual_std"].values())


def test_resume_refuses_another_head_or_mixtures(mdn_run, capsys):
    for flags, message in ((["--head", "categorical"], "head saved 'mdn', given 'categorical'"),
                           (["--mixtures", "3"], "mixtures saved 2, given 3")):
        capsys.readouterr()
        assert train.main(["--resume", str(mdn_run), "--epochs", "3", *flags, "--quiet"]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and message in error


def test_resuming_a_finished_run_without_calibration_writes_it(mdn_run):
    (mdn_run / "calibration.json").unlink()
    assert train.main(["--resume", str(mdn_run), "--quiet"]) == 0  # finished: nothing to train
    calibration = json.loads((mdn_run / "calibration.json").read_text())
    assert calibration["head"] == "mdn" and calibration["rows"] > 0
