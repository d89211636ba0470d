"""The hand-written LSTM (``--cell lstm-reference``): with ``keras.layers.LSTM``'s weights it
computes LSTM's function under TensorFlow and JAX, the carried-state generator steps it, a
run trained with it generates, and its model file passes the safety check and loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import generate
import train
from models import ModelConfig, build_model
from models.reference_lstm import ReferenceLSTM
from note_matrix import model_check
from note_matrix.generation import generate_rows
from note_matrix.representations import NoteMatrix
from tests.test_generate import assert_playable

ROOT = Path(__file__).resolve().parents[1]
REPRESENTATION = NoteMatrix()
HEAD = REPRESENTATION.head("regression", 1)


def assert_same_as_keras_lstm() -> None:
    """Both output modes, sequences and final states ``h``, ``c``: equal to 1e-5 on random input
    and weights (the bias random too, so a gate read from the wrong slice shows)."""
    rng = np.random.default_rng(3)
    sequences = rng.normal(size=(3, 11, 5)).astype(np.float32)
    for return_sequences in (True, False):
        lstm = keras.layers.LSTM(16, return_sequences=return_sequences, return_state=True)
        reference = ReferenceLSTM(16, return_sequences=return_sequences, return_state=True)
        lstm.build(sequences.shape)
        reference.build(sequences.shape)
        lstm.set_weights([rng.normal(0.0, 0.5, w.shape).astype(np.float32) for w in lstm.get_weights()])
        reference.set_weights(lstm.get_weights())
        expected, got = lstm(sequences), reference(sequences)
        assert len(got) == 3 and tuple(got[0].shape) == tuple(expected[0].shape)
        for want, have in zip(expected, got):
            np.testing.assert_allclose(keras.ops.convert_to_numpy(have), keras.ops.convert_to_numpy(want), atol=1e-5)


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_it_computes_keras_lstm_with_its_weights(backend):
    """Keras picks its backend once per process: the suite's own runs here, the other in a subprocess."""
    if keras.backend.backend() == backend:
        assert_same_as_keras_lstm()
        return
    code = "from tests.test_reference_lstm import assert_same_as_keras_lstm as check; check(); print('same')"
    env = {**os.environ, "KERAS_BACKEND": backend}
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("same"), done.stderr[-3000:]


def test_its_config_round_trips():
    layer = ReferenceLSTM(8, return_sequences=True, name="cell")
    copy = ReferenceLSTM.from_config(layer.get_config())
    assert (copy.units, copy.return_sequences, copy.return_state, copy.name) == (8, True, False, "cell")


@pytest.mark.parametrize("targets", ["last", "all"])
def test_the_carried_state_generator_steps_it_like_the_window_method(targets):
    """The generator reads its weights as an LSTM cell's: carried rows equal the window method's
    while the window holds the whole piece."""
    keras.utils.set_random_seed(0)
    model = build_model(
        ModelConfig(cell="lstm-reference", units=8, layers=2, targets=targets), REPRESENTATION.inputs(), HEAD
    )
    assert isinstance(model.get_layer("lstm-reference_2"), ReferenceLSTM)
    primer = REPRESENTATION.valid_row(np.random.default_rng(1).random((1, 6, 3)))
    carried = generate_rows(model, primer, 3, REPRESENTATION, HEAD, progress=False)
    window = generate_rows(model, primer, 3, REPRESENTATION, HEAD, method="window", window_length=8, progress=False)
    np.testing.assert_allclose(carried, window, atol=1e-5)  # a window of 8 holds the primer and every row
    assert len(np.unique(carried[0, :, 2])) == 3  # the rows differ


def test_its_model_file_passes_the_check_and_loads_in_safe_mode(tmp_path):
    model = build_model(ModelConfig(cell="lstm-reference", units=8, layers=2), REPRESENTATION.inputs(), HEAD)
    path = tmp_path / "model.keras"
    model.save(path)
    model_check.check_model_file(path, REPRESENTATION.inputs())
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded.get_layer("lstm-reference"), ReferenceLSTM)
    window = np.random.default_rng(2).random((2, 7, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(window, verbose=0), model.predict(window, verbose=0), atol=1e-6)


def test_a_run_trained_with_it_generates_with_the_carried_method(song_folder, tmp_path):
    run, out = tmp_path / "logs" / "reference", tmp_path / "out.mid"
    folders = ["--dataset", str(song_folder), "--data-dir", str(tmp_path / "data"), "--logdir", str(run.parent)]
    cell = ["--cell", "lstm-reference", "--units", "8", "--epochs", "1", "--batch-size", "32"]
    assert train.main([*folders, *cell, "--run-name", "reference", "--quiet"]) == 0
    paths = ["--seed", str(song_folder / "song0.mid"), "--model", str(run), "--out", str(out)]
    assert generate.main([*paths, "--length", "40", "--method", "carried", "--quiet"]) == 0
    assert assert_playable(out) > 0
