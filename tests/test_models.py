"""The card's network: layers, shapes, optimiser, saving, and the real 512-unit size."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from models import HeadLoss, ModelConfig, build_model, compile_model
from note_matrix.representations.note_matrix import regression_head
from models.head_metrics import ColumnAccuracy
from note_matrix.representations import NoteMatrix

REPRESENTATION = NoteMatrix()


def compiled(config: ModelConfig = ModelConfig()):
    """``config``'s note-matrix network, compiled as train.py compiles it."""
    head = REPRESENTATION.head(config.head, config.mixtures)
    model = build_model(config, REPRESENTATION.inputs(), head)
    return compile_model(model, config, head, REPRESENTATION.metrics(config.head, head))


def test_default_is_exactly_the_card_network():
    model = compiled()
    kinds = [(type(layer).__name__, layer.name) for layer in model.layers]
    assert kinds == [("InputLayer", "window"), ("LSTM", "lstm"), ("Dropout", "dropout"),
                     ("Dense", "dense"), ("Activation", "activation")]
    lstm, dropout, dense, activation = model.layers[1:]
    assert lstm.units == 512 and not lstm.return_sequences
    assert dropout.rate == 0.75
    assert dense.units == 3
    assert activation.activation is keras.activations.linear
    assert isinstance(model.optimizer, keras.optimizers.RMSprop)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-4)
    # The card's mean squared error: the regression head's loss, exactly.
    assert isinstance(model.loss, HeadLoss) and model.loss.head == regression_head()
    rng = np.random.default_rng(3)
    y_true, y_pred = rng.random((16, 3), dtype=np.float32), rng.random((16, 3), dtype=np.float32)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.loss(y_true, y_pred)),
                                  keras.ops.convert_to_numpy(keras.losses.MeanSquaredError()(y_true, y_pred)))
    assert [metric.name for metric in REPRESENTATION.metrics("regression", model.loss.head)] == [
        "pitch_accuracy", "last_mse"]
    # Without a head, the builder makes the same network.
    bare = build_model()
    assert [(type(layer).__name__, layer.name) for layer in bare.layers] == kinds
    assert bare.output_shape == model.output_shape == (None, 3)


def test_lstm_stays_cudnn_eligible():
    # TensorFlow uses cuDNN only with these settings (keras.layers.LSTM docs).
    lstm = build_model(ModelConfig(units=8)).get_layer("lstm")
    assert lstm.activation is keras.activations.tanh
    assert lstm.recurrent_activation is keras.activations.sigmoid
    assert lstm.recurrent_dropout == 0 and not lstm.unroll and lstm.use_bias


def test_output_shape_for_any_window_length():
    model = build_model(ModelConfig(units=8))
    for steps in (1, 50, 80):
        assert model(np.zeros((4, steps, 3), np.float32)).shape == (4, 3)


def test_stacked_and_other_cells_build():
    model = build_model(ModelConfig(cell="gru", units=8, layers=2))
    assert [layer.name for layer in model.layers[1:3]] == ["gru", "gru_2"]
    assert model(np.zeros((2, 5, 3), np.float32)).shape == (2, 3)


def test_invalid_config_is_refused():
    with pytest.raises(ValueError, match="dropout_rate"):
        ModelConfig(dropout_rate=1.0)
    with pytest.raises(ValueError, match="cell"):
        ModelConfig(cell="transformer")


def test_pitch_accuracy_rounds_to_midi_notes():
    y_true = np.array([[60 / 127, 0.5, 0.1], [64 / 127, 0.5, 0.1], [0.0, 0.0, 0.0]], np.float32)
    y_pred = np.array([[60.4 / 127, 0.9, 0.9], [64.6 / 127, 0.5, 0.1], [0.3 / 127, 0.0, 0.0]], np.float32)
    accuracy = ColumnAccuracy(regression_head())  # the regression head's point is the row itself
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(accuracy.values(y_true, y_pred)), [1.0, 0.0, 1.0])


def _save_load_step(tmp_path, config):
    model = compiled(config)
    rng = np.random.default_rng(0)
    x = rng.random((4, 50, 3), dtype=np.float32)
    y = rng.random((4, 3), dtype=np.float32)
    before = [w.copy() for w in model.get_weights()]
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"]) and "pitch_accuracy" in logs
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded.predict_on_batch(x), model.predict_on_batch(x), rtol=1e-6, atol=1e-6)
    # The optimiser's state travels with the file.
    assert int(loaded.optimizer.iterations) == 1
    for saved, restored in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(restored), keras.ops.convert_to_numpy(saved))
    return model


def test_tiny_model_save_load_gives_equal_outputs(tmp_path):
    _save_load_step(tmp_path, ModelConfig(units=8))


def test_card_512_unit_model_builds_steps_saves_and_loads(tmp_path):
    model = _save_load_step(tmp_path, ModelConfig())
    assert model.get_layer("lstm").get_weights()[1].shape == (512, 4 * 512)  # recurrent kernel
