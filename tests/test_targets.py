"""Training on every position (``--targets all``) beside the card's last row (``--targets last``)."""

from __future__ import annotations

import json
from itertools import pairwise

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import train
from models import ModelConfig, build_model, compile_model
from note_matrix.representations.note_matrix import regression_head
from models.head_metrics import ColumnAccuracy, LastSquaredError
from note_matrix.config import RunConfig
from note_matrix.representations import NoteMatrix
from note_matrix.training import TrainConfig
from note_matrix.training.windows import WindowBatches, WindowIndex


def _numbered_songs(*lengths: int) -> list[np.ndarray]:
    """Songs whose row ``r`` (counted over all songs) is ``[r, r, r]``: a row's value is its index."""
    first = np.cumsum([0, *lengths])
    return [np.repeat(np.arange(a, b, dtype=np.float32)[:, None], 3, axis=1) for a, b in pairwise(first)]


# -- the model ----------------------------------------------------------------------------


def test_all_targets_predict_the_next_row_at_every_step_with_the_same_layers():
    last, every = build_model(ModelConfig(units=8)), build_model(ModelConfig(units=8, targets="all"))
    assert [layer.name for layer in every.layers] == [layer.name for layer in last.layers] == [
        "window", "lstm", "dropout", "dense", "activation"]
    assert every.get_layer("lstm").return_sequences and not last.get_layer("lstm").return_sequences
    for steps in (1, 50):
        assert every(np.zeros((4, steps, 3), np.float32)).shape == (4, steps, 3)
    # The same weights: the last step of the sequence model is the card's model's output.
    last.set_weights(every.get_weights())
    x = np.random.default_rng(0).random((2, 50, 3), dtype=np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(every(x))[:, -1], keras.ops.convert_to_numpy(last(x)),
                               rtol=1e-5, atol=1e-6)


def test_stacked_layers_all_return_sequences():
    model = build_model(ModelConfig(cell="gru", units=8, layers=2, targets="all"))
    assert [layer.return_sequences for layer in model.layers[1:3]] == [True, True]
    assert model(np.zeros((2, 5, 3), np.float32)).shape == (2, 5, 3)


def test_targets_must_be_last_or_all():
    with pytest.raises(ValueError, match="targets must be one of"):
        ModelConfig(targets="every")


def test_last_mse_scores_only_the_row_after_the_window():
    y_true = np.zeros((2, 3, 3), np.float32)
    y_pred = np.zeros((2, 3, 3), np.float32)
    y_pred[:, :2] = 5.0  # errors before the last step do not count
    y_pred[0, 2] = [0.3, 0.0, 0.0]
    y_pred[1, 2] = [0.0, 0.6, 0.3]
    last_mse = LastSquaredError(regression_head()).values
    np.testing.assert_allclose(keras.ops.convert_to_numpy(last_mse(y_true, y_pred)), [0.03, 0.15], rtol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(last_mse(y_true[:, -1], y_pred[:, -1])), [0.03, 0.15],
                               rtol=1e-6)


def test_pitch_accuracy_scores_every_step():
    y_true = np.full((1, 2, 3), 60 / 127, np.float32)
    y_pred = np.array([[[60.2 / 127, 0, 0], [61 / 127, 0, 0]]], np.float32)
    pitch_accuracy = ColumnAccuracy(regression_head()).values
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(pitch_accuracy(y_true, y_pred)), [[1.0, 0.0]])


def test_an_all_targets_model_trains_saves_and_loads(tmp_path):
    config = ModelConfig(units=8, targets="all")
    representation = NoteMatrix()
    head = representation.head(config.head, config.mixtures)
    model = compile_model(build_model(config, representation.inputs(), head), config, head,
                          representation.metrics(config.head, head))
    x = np.random.default_rng(1).random((4, 50, 3), dtype=np.float32)
    logs = model.train_on_batch(x[:, :-1], x[:, 1:], return_dict=True)
    assert {"loss", "last_mse", "pitch_accuracy"} <= logs.keys()
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict_on_batch(x), model.predict_on_batch(x), rtol=1e-6, atol=1e-6)


# -- windows and chunks -------------------------------------------------------------------


def test_all_targets_are_the_window_shifted_by_one_row():
    index = WindowIndex(_numbered_songs(6, 5), window_length=3)
    x, y = index.gather(np.array([0, 7]), "all")
    np.testing.assert_array_equal(x[:, :, 0], [[0, 1, 2], [7, 8, 9]])
    np.testing.assert_array_equal(y[:, :, 0], [[1, 2, 3], [8, 9, 10]])
    x, y = index.gather(np.array([0, 7]), "last")
    np.testing.assert_array_equal(y[:, 0], [3, 10])


def test_chunks_are_window_rows_apart_and_stay_inside_their_song():
    index = WindowIndex(_numbered_songs(11, 7), window_length=3)  # rows 0-10 and 11-17
    np.testing.assert_array_equal(index.chunks_per_song(), [3, 2])  # (11 - 1) // 3, (7 - 1) // 3
    np.testing.assert_array_equal(index.chunk_starts([0, 0]), [0, 3, 6, 11, 14])
    # From offset 2, song 0's third chunk would need row 11 (the next song's): it ends at row 10 instead.
    np.testing.assert_array_equal(index.chunk_starts([2, 1]), [2, 5, 7, 12, 14])


def test_chunk_epochs_cover_the_songs_with_moving_boundaries():
    lengths = (120, 75, 51, 200)
    index = WindowIndex(_numbered_songs(*lengths), window_length=10)
    batches = WindowBatches(index, 8, shuffle=True, seed=3, targets="all", layout="chunks")
    ends = np.cumsum(lengths)
    assert batches.windows == sum((n - 1) // 10 for n in lengths) == 42
    first_rows = set()
    for epoch in range(4):
        batches.set_epoch(epoch)
        x, y = zip(*(batches[i] for i in range(len(batches))))
        x, y = np.concatenate(x)[:, :, 0], np.concatenate(y)[:, :, 0]
        assert len(x) == 42 and np.array_equal(y, x + 1)
        song = np.searchsorted(ends, x[:, 0], side="right")
        assert np.all(y[:, -1] < ends[song])  # no chunk reaches into the next song
        targets = np.unique(y)
        assert len(targets) >= 420 - 4 * 9  # every target row once, but for a song's last chunk moved back
        first_rows |= set(x[:, 0].tolist())
    assert len(first_rows) > 42 * 2  # boundaries moved from epoch to epoch
    batches.set_epoch(2)
    again = WindowBatches(index, 8, shuffle=True, seed=3, targets="all", layout="chunks")
    again.set_epoch(2)
    np.testing.assert_array_equal(again[0][0], batches[0][0])  # the order depends on (seed, epoch) only


# -- train.py -----------------------------------------------------------------------------


def _flags(song_folder, base, run, *extra):
    return ["--dataset", str(song_folder), "--data-dir", str(base / "data"), "--logdir", str(base / "logs"),
            "--run-name", run, "--units", "8", "--epochs", "2", "--batch-size", "8", "--quiet", *extra]


def test_train_defaults_to_every_position_and_monitors_the_last_position(trained_run):
    config = json.loads((trained_run / "config.json").read_text())
    assert config["train"]["model"]["targets"] == "all"
    history = json.loads((trained_run / "history.json").read_text())
    assert history["monitor"] == "val_last_mse" and len(history["epochs"]["val_last_mse"]) == 2
    assert history["best_epoch"] == int(np.argmin(history["epochs"]["val_last_mse"]))
    events = EventAccumulator(str(trained_run / "validation"), size_guidance={"scalars": 0})
    events.Reload()
    assert {"epoch_last_mse", "batch_last_mse", "epoch_loss"} <= set(events.Tags()["scalars"])


def test_last_targets_train_the_card_way_and_resume_refuses_other_targets(song_folder, tmp_path, capsys):
    assert train.main(_flags(song_folder, tmp_path, "last", "--targets", "last")) == 0
    run = tmp_path / "logs" / "last"
    assert json.loads((run / "config.json").read_text())["train"]["model"]["targets"] == "last"
    epochs = json.loads((run / "history.json").read_text())["epochs"]
    np.testing.assert_allclose(epochs["val_last_mse"], epochs["val_loss"], rtol=1e-5)  # one target: the same
    model = keras.saving.load_model(run / "model.keras")
    assert model.output_shape == (None, 3)

    capsys.readouterr()
    assert train.main(["--resume", str(run), "--epochs", "3", "--targets", "all", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "targets saved 'last', given 'all'" in error


def test_runs_saved_before_targets_existed_read_as_last_row_runs(trained_run, tmp_path):
    """A config.json from before ``targets`` (and ``distribute``, the representation interface) existed:
    the model had ``features``, no ``targets``, and there was no top-level ``model`` entry."""
    saved = json.loads((trained_run / "config.json").read_text())
    del saved["model"], saved["train"]["representation"], saved["train"]["distribute"]
    del saved["train"]["model"]["targets"]
    saved["train"]["model"]["features"] = 3
    (tmp_path / "config.json").write_text(json.dumps(saved))
    config = RunConfig.read(tmp_path)
    assert config.train.model.targets == "last" and config.train.distribute == "none"
    assert config.train.representation == "note_matrix" and config.head() == regression_head()
    assert config.model.monitor == "last_mse"
    assert TrainConfig().model.targets == "all"  # what new runs get
