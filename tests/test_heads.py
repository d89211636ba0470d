"""The note matrix's heads in the network: widths and layers of the built models, the head
chosen by name (never guessed from the output width), the categorical likelihood against
the baselines' score, safe-mode saving, and an mdn run trained by train.py end to end.
The fields' arithmetic (losses, points, samples, likelihoods, metrics) is in
tests/test_fields.py."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import train
from models import ModelConfig, build_model, compile_model
from models.fields import Head, HeadLoss
from note_matrix.representations.note_matrix import categorical_head, mdn_head, regression_head
from note_matrix.config import RunConfig
from note_matrix.errors import RunError
from note_matrix.evaluation.baselines import Prediction, score
from note_matrix.generation import check_model
from note_matrix.representations import NoteMatrix

REPRESENTATION = NoteMatrix()
HEADS = REPRESENTATION.heads


def rows(pitches, velocities, times):
    return np.stack([np.array(pitches) / 127, np.array(velocities) / 127, np.array(times)], -1).astype(np.float32)


def log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def built(config: ModelConfig) -> tuple[keras.Model, Head]:
    head = REPRESENTATION.head(config.head, config.mixtures)
    return build_model(config, REPRESENTATION.inputs(), head), head


# -- widths and the model --------------------------------------------------------------------


@pytest.mark.parametrize("targets", ["last", "all"])
@pytest.mark.parametrize(("head", "mixtures", "width", "expected"), [
    ("regression", 5, 3, regression_head()), ("categorical", 5, 130, categorical_head()),
    ("mdn", 5, 153, mdn_head(5)), ("mdn", 2, 138, mdn_head(2))])
def test_each_head_has_one_output_of_its_width_and_the_card_layer_names(head, mixtures, width, expected, targets):
    config = ModelConfig(units=8, head=head, mixtures=mixtures, targets=targets)
    model, made = built(config)
    assert made == expected and made.width == width
    assert [layer.name for layer in model.layers] == ["window", "lstm", "dropout", "dense", "activation"]
    assert len(model.outputs) == 1
    out = model(np.zeros((2, 7, 3), np.float32))
    assert out.shape == ((2, 7, width) if targets == "all" else (2, width))
    check_model(model, made)  # the model is the head's


def test_the_head_is_never_guessed_from_the_output_width():
    """The width alone does not say the head: an mdn head of K = 2 is 138 wide, as is no other; but a model
    is only ever checked against the head it was built with (a run saves it in config.json)."""
    model, _ = built(ModelConfig(units=8, head="mdn", mixtures=2))
    for other in (categorical_head(), mdn_head(3), regression_head()):
        with pytest.raises(RunError, match="138 is not the run's head's"):
            check_model(model, other)
    # Without a head the builder makes the card's regression, as wide as its input.
    assert build_model(ModelConfig(units=8, head="mdn")).output_shape == (None, 3)


def test_invalid_heads_are_refused():
    with pytest.raises(ValueError, match="the note matrix has the heads regression, categorical, mdn, not 'softmax'"):
        REPRESENTATION.head("softmax", 5)
    with pytest.raises(ValueError, match="mixtures"):
        ModelConfig(head="mdn", mixtures=0)
    with pytest.raises(ValueError, match="components"):
        REPRESENTATION.head("mdn", 0)
    with pytest.raises(TypeError):
        ModelConfig(head="categorical", features=4)  # the input's width is the representation's (InputSpec)
    assert HEADS == ("regression", "categorical", "mdn")


# -- the likelihood against the baselines -----------------------------------------------------------


def test_categorical_nll_agrees_with_the_baselines_score():
    rng = np.random.default_rng(3)
    target = rows([60, 64, 0], [100, 0, 30], [0.1, 0.3, 0.0])
    output = rng.normal(0, 1.5, (3, 130)).astype(np.float32)
    std = {"note": 0.05, "velocity": 0.3, "time": 0.15}
    head = categorical_head()
    probabilities = np.exp(log_softmax(output[:, :128].astype(np.float64)))
    rows_predicted = np.concatenate([np.zeros((3, 1)), output[:, 128:]], axis=1)
    expected = score(Prediction(rows_predicted, probabilities, 0.3, 0.15), target.astype(np.float64))["nll"]
    assert head.nll(output, target, std).mean() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="calibration"):
        head.nll(output, target, None)
    with pytest.raises(ValueError, match="nll needs"):
        head.nll(output[:, :3], target, std)


# -- saving ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("head", HEADS)
def test_each_head_trains_saves_and_loads_in_safe_mode(head, tmp_path):
    config = ModelConfig(units=8, head=head, mixtures=2, targets="all")
    model, fields = built(config)
    compile_model(model, config, fields, REPRESENTATION.metrics(head, fields))
    x = np.random.default_rng(2).random((4, 20, 3), dtype=np.float32)
    logs = model.train_on_batch(x[:, :-1], x[:, 1:], return_dict=True)
    assert all(np.isfinite(v) for v in logs.values())
    assert set(logs) == {"loss", "pitch_accuracy", "last_mse"} | ({"last_loss"} if head != "regression" else set())
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)  # no custom_objects
    assert isinstance(loaded.loss, HeadLoss) and loaded.loss.head == fields
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


def test_an_mdn_run_saves_its_head_monitors_its_last_loss_and_writes_no_calibration(mdn_run):
    config = json.loads((mdn_run / "config.json").read_text())
    assert config["train"]["model"]["head"] == "mdn" and config["train"]["model"]["mixtures"] == 2
    assert "features" not in config["train"]["model"]
    assert config["model"] == {"inputs": REPRESENTATION.inputs().to_json(), "head": mdn_head(2).to_json(),
                               "monitor": "last_loss"}
    assert RunConfig.read(mdn_run).head() == mdn_head(2)
    history = json.loads((mdn_run / "history.json").read_text())
    assert history["monitor"] == "val_last_loss"
    epochs = history["epochs"]
    np.testing.assert_allclose(epochs["val_last_loss"], epochs["val_loss"], rtol=1e-5)  # targets last: the same
    assert history["best_epoch"] == int(np.argmin(epochs["val_last_loss"]))
    assert not RunConfig.read(mdn_run).head().needs_spread  # a mixture is its own spread: nothing would read one
    assert (mdn_run / "model.keras").is_file() and not (mdn_run / "calibration.json").exists()


def test_resume_refuses_another_head_or_mixtures(mdn_run, capsys):
    for flags, message in ((["--head", "categorical"], "head saved 'mdn', given 'categorical'"),
                           (["--mixtures", "3"], "mixtures saved 2, given 3")):
        capsys.readouterr()
        assert train.main(["--resume", str(mdn_run), "--epochs", "3", *flags, "--quiet"]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and message in error


def test_resuming_a_finished_mdn_run_writes_no_calibration(mdn_run):
    assert train.main(["--resume", str(mdn_run), "--quiet"]) == 0  # finished: nothing to train
    assert not (mdn_run / "calibration.json").exists()
