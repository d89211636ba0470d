"""``--batches stream``: the files joined into parallel streams, the state carried from window to window."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from models.builder import build_model, carried_state_twin
from models.config import InputSpec, ModelConfig
from models.fields import Categorical, Head, HeadLoss
from note_matrix.training.windows import CarryState, ShuffleEpochs, StreamBatches, stream_loss
from tests.test_abc_chars import write_corpus

ROOT = Path(__file__).resolve().parents[1]
VOCABULARY = 7


def songs(lengths) -> list[np.ndarray]:
    """Songs whose steps are all different numbers (song ``i`` counts up from ``1000 i``)."""
    return [np.arange(1000 * i, 1000 * i + n, dtype=np.int32)[:, None] for i, n in enumerate(lengths)]


def read_rows(batches: StreamBatches) -> np.ndarray:
    """Every row of the epoch, window after window: ``(rows, row_length)``, checking as it goes that
    each window's targets are its inputs one step on and that window ``k`` continues window ``k - 1``."""
    pieces = []
    for k in range(len(batches)):
        x, y = batches[k]
        assert x.shape == y.shape == (batches.rows, batches.edges[k + 1] - batches.edges[k], 1)
        assert np.array_equal(y[:, :-1], x[:, 1:])
        if pieces:
            assert np.array_equal(x[:, 0], pieces[-1][1][:, -1])  # row i goes on where it stopped
        pieces.append((x, y))
    return np.concatenate([x[:, :, 0] for x, _ in pieces] + [pieces[-1][1][:, -1:, 0]], axis=1)


def test_batch_k_row_i_is_the_window_right_after_batch_k_minus_1_row_i():
    arrays = songs([50, 73, 41, 66, 90, 38])
    batches = StreamBatches(arrays, batch_size=4, window_length=10, shuffle=True, seed=5)
    total, length = sum(map(len, arrays)), sum(map(len, arrays)) // 4
    assert batches.rows == 4 and batches.row_length == length
    assert np.diff(batches.edges).tolist() == [10] * batches.windows and length - 1 - batches.edges[-1] < 10
    rows = read_rows(batches)
    assert rows.shape == (4, batches.edges[-1] + 1)
    stream = batches.steps(np.arange(total))[:, 0]  # the epoch's stream: whole songs, one after another
    order = stream[stream % 1000 == 0] // 1000
    assert sorted(order.tolist()) == list(range(6)) and order.tolist() != list(range(6))
    assert np.array_equal(stream, np.concatenate([arrays[i][:, 0] for i in order]))
    for i in range(4):  # row i: the stream's i-th quarter, read from its start
        assert np.array_equal(rows[i], stream[i * length : i * length + rows.shape[1]])


def test_the_order_of_songs_is_drawn_per_seed_and_epoch():
    arrays = songs([30, 31, 32, 33, 34, 35, 36])
    first = StreamBatches(arrays, 2, 8, shuffle=True, seed=1)
    again = StreamBatches(arrays, 2, 8, shuffle=True, seed=1)
    epoch_0 = read_rows(first)
    assert np.array_equal(epoch_0, read_rows(again))
    first.set_epoch(1)
    assert not np.array_equal(epoch_0, read_rows(first))
    again.set_epoch(1)
    assert np.array_equal(read_rows(first), read_rows(again))


def test_evaluation_streams_keep_the_order_and_windows_of_one_width():
    arrays = songs([50, 73, 41])
    batches = StreamBatches(arrays, 4, 10, shuffle=False)
    widths = np.diff(batches.edges)
    assert len(set(widths.tolist())) == 1 and widths[0] <= 10
    assert batches.row_length - 1 - batches.edges[-1] < batches.windows  # fewer steps left unscored than windows
    rows = read_rows(batches)
    assert np.array_equal(rows[0], np.concatenate([a[:, 0] for a in arrays])[: rows.shape[1]])


def test_a_short_stream_gets_fewer_rows_each_a_whole_window():
    batches = StreamBatches(songs([35, 20]), batch_size=64, window_length=10, shuffle=True)
    assert batches.rows == 55 // 11 and batches.row_length >= 11 and batches.edges[1] == 10
    single = StreamBatches(songs([8]), batch_size=4, window_length=10, shuffle=True)
    assert single.rows == 1 and single.edges.tolist() == [0, 7]  # one window of the whole row
    with pytest.raises(ValueError, match="no step to predict"):
        StreamBatches(songs([1]), 4, 10, shuffle=True)


# -- the state, carried -------------------------------------------------------------------------


def tiny_model(cell: str = "lstm") -> tuple[keras.Model, Head]:
    head = Head((Categorical("token", VOCABULARY, scale=1.0),))
    config = ModelConfig(cell=cell, units=8, layers=2, dropout_rate=0.0, head="categorical", targets="all")
    keras.utils.set_random_seed(3)
    return build_model(config, InputSpec("tokens", 1, vocabulary=VOCABULARY, embedding=4), head), head


def token_songs(rng, lengths) -> list[np.ndarray]:
    return [rng.integers(0, VOCABULARY, (n, 1)).astype(np.int32) for n in lengths]


def whole_row_losses(model, head, batches: StreamBatches) -> np.ndarray:
    """The head's loss at every step of every row, each row run through ``model`` from its first step:
    ``(rows, row_length - 1)``."""
    rows = batches.steps(np.arange(batches.rows)[:, None] * batches.row_length + np.arange(batches.row_length))
    outputs = model.predict_on_batch(rows[:, :-1])
    return keras.ops.convert_to_numpy(head.loss(keras.ops.convert_to_tensor(rows[:, 1:]), outputs))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_the_twin_carries_the_state_so_a_window_sees_the_windows_before_it(cell):
    model, head = tiny_model(cell)
    batches = StreamBatches(token_songs(np.random.default_rng(0), [60, 45, 80]), 3, 12, shuffle=True)
    twin = carried_state_twin(model, 3)
    expected = whole_row_losses(model, head, batches)
    for k in range(len(batches)):
        x, y = batches[k]
        losses = keras.ops.convert_to_numpy(head.loss(keras.ops.convert_to_tensor(y), twin.predict_on_batch(x)))
        np.testing.assert_allclose(losses, expected[:, batches.edges[k] : batches.edges[k + 1]], atol=1e-5)
    # Without the state, the second window is another function of its inputs.
    x, y = batches[1]
    fresh = keras.ops.convert_to_numpy(head.loss(keras.ops.convert_to_tensor(y), model.predict_on_batch(x)))
    assert not np.allclose(fresh, expected[:, batches.edges[1] : batches.edges[2]], atol=1e-3)


class BatchLosses(keras.callbacks.Callback):
    """Each training batch's own loss (Keras logs the running mean within the epoch)."""

    def __init__(self):
        super().__init__()
        self.epochs: list[list[float]] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append([])

    def on_train_batch_end(self, batch, logs=None):
        means = self.epochs[-1]
        running = float(logs["loss"])
        means.append(running * (batch + 1) - sum(means))


def test_fit_carries_the_state_across_batches_resets_it_each_epoch_and_validates_per_step():
    model, head = tiny_model()
    rng = np.random.default_rng(1)
    batches = StreamBatches(token_songs(rng, [70]), 2, 10, shuffle=True)  # one song: the same stream every epoch
    held_out = token_songs(rng, [40, 33])
    validation = StreamBatches(held_out, 2, 10, shuffle=False)
    twin = carried_state_twin(model, 2)
    twin.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss=HeadLoss(head))  # weights stay put
    recorder = BatchLosses()
    history = twin.fit(batches, validation_data=validation, epochs=2, shuffle=False, verbose=0,
                       callbacks=[CarryState(twin, model), ShuffleEpochs(batches), recorder])
    expected = whole_row_losses(model, head, batches)
    per_window = [expected[:, a:b].mean() for a, b in zip(batches.edges[:-1], batches.edges[1:])]
    for losses in recorder.epochs:  # the second epoch starts from zeros again: the same losses
        np.testing.assert_allclose(losses, per_window, rtol=1e-4)
    scored = whole_row_losses(model, head, validation)[:, : validation.edges[-1]]
    np.testing.assert_allclose(history.history["val_loss"], [scored.mean()] * 2, rtol=1e-5)
    np.testing.assert_allclose(stream_loss(model, head, held_out, 2, 10), scored.mean(), rtol=1e-5)


def test_the_hand_written_lstm_cannot_carry_its_state():
    model, _ = tiny_model("lstm-reference")
    with pytest.raises(TypeError, match="cannot be carried"):
        carried_state_twin(model, 2)


# -- train.py ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--targets", "last"], "needs --targets all"),
        (["--representation", "note_matrix"], "streams of tokens"),
        (["--representation", "pitch_sequence", "--cell", "lstm-reference"], "lstm-reference"),
        (["--representation", "pitch_sequence", "--distribute", "data-parallel"], "leave out --distribute"),
        (["--representation", "pitch_sequence", "--validation-stride", "3"], "leave out --validation-stride"),
    ],
)
def test_stream_batches_refuse_what_they_cannot_do_in_one_line(flags, message, song_folder, tmp_path, capsys):
    import train

    argv = ["--dataset", str(song_folder), "--batches", "stream", "--units", "8", "--epochs", "1", "--quiet",
            "--data-dir", str(tmp_path / "data"), "--logdir", str(tmp_path / "logs"), *flags]
    assert train.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("train.py: error: ") and message in error and "\n" not in error
    assert not (tmp_path / "logs").exists()


def test_a_stream_run_resumed_trains_as_an_uninterrupted_one(tmp_path):
    import train

    folder = write_corpus(tmp_path / "corpus")
    common = ["--dataset", str(folder), "--representation", "abc_chars", "--units", "8", "--window", "20",
              "--batch-size", "4", "--data-dir", str(tmp_path / "data"), "--logdir", str(tmp_path / "logs"), "--quiet"]
    assert train.main([*common, "--epochs", "3", "--run-name", "whole"]) == 0
    assert train.main([*common, "--epochs", "1", "--run-name", "parts"]) == 0
    assert train.main(["--resume", str(tmp_path / "logs" / "parts"), "--epochs", "3", "--quiet"]) == 0
    whole, parts = (json.loads((tmp_path / "logs" / name / "history.json").read_text()) for name in ("whole", "parts"))
    np.testing.assert_allclose(parts["epochs"]["loss"], whole["epochs"]["loss"], rtol=1e-5)
    np.testing.assert_allclose(parts["epochs"]["val_loss"], whole["epochs"]["val_loss"], rtol=1e-5)


def _run(backend: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": backend}
    return subprocess.run([sys.executable, *args], check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_train_with_stream_batches_and_generate_under_each_backend(backend, song_folder, tmp_path):
    """A stream run (pitch_sequence on MIDI, sampling a piece after its last epoch) saves an ordinary
    model that generate.py loads and runs with the carried-state method; abc_chars' recipe trains too."""
    logs = tmp_path / "logs"
    common = ["--data-dir", str(tmp_path / "data"), "--logdir", str(logs), "--units", "8", "--epochs", "2", "--quiet"]
    trained = _run(backend, "train.py", "--dataset", str(song_folder), "--representation", "pitch_sequence",
                   "--batches", "stream", "--window", "20", "--batch-size", "4", "--run-name", "pitches", *common)
    assert trained.returncode == 0, trained.stderr[-3000:]
    run = logs / "pitches"
    assert (run / "samples" / "epoch-0002.mid").is_file()  # sampled with the carried-state generator
    layers = json.dumps(json.loads(_model_config(run / "model.keras")))
    assert "CarriedState" not in layers and '"stateful": true' not in layers
    out = tmp_path / "out.mid"
    generated = _run(backend, "generate.py", "--seed", str(song_folder / "song0.mid"), "--model", str(run),
                     "--length", "30", "--out", str(out), "--quiet")
    assert generated.returncode == 0, generated.stderr[-3000:]
    assert out.is_file()

    folder = write_corpus(tmp_path / "corpus")
    trained = _run(backend, "train.py", "--dataset", str(folder), "--representation", "abc_chars", "--window", "20",
                   "--run-name", "abc", *common)
    assert trained.returncode == 0, trained.stderr[-3000:]
    history = json.loads((logs / "abc" / "history.json").read_text())
    assert history["monitor"] == "val_loss" and len(history["epochs"]["val_loss"]) == 2


def _model_config(path: Path) -> str:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return archive.read("config.json").decode("utf-8")
