"""train.py end to end on synthetic songs: the run folder and the TensorBoard events."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import train
from models import ModelConfig, build_model
from note_matrix import NoteMatrix
from note_matrix.training.tensorboard import layer_graph
from note_matrix.training.windows import WindowIndex

WEIGHT_TAGS = {"lstm/kernel", "lstm/recurrent_kernel", "lstm/bias", "dense/kernel", "dense/bias"}
OUTPUT_TAGS = {"lstm/output", "dropout/output", "dense/output", "activation/output"}
SCALAR_TAGS = {"batch_loss", "batch_pitch_accuracy", "epoch_loss", "epoch_pitch_accuracy"}


def _events(folder):
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 0})
    accumulator.Reload()
    return accumulator


def test_run_folder_holds_config_model_split_and_history(trained_run, song_folder):
    config = json.loads((trained_run / "config.json").read_text())
    assert config["train"]["model"] == {
        "cell": "lstm", "units": 8, "layers": 1, "dropout_rate": 0.75,
        "head": "regression", "mixtures": 5, "output_units": 150, "learning_rate": 1e-4, "targets": "all",
        "optimizer": "rmsprop", "clipnorm": None,  # the card's
        "lr_schedule": "constant", "lr_min": None, "lr_max": None, "cycle_steps": None,
    }
    # what the network reads and predicts (the 3 features the model config used to hold), as built
    representation = NoteMatrix()
    assert config["model"] == {
        "inputs": {"kind": "continuous", "width": 3, "vocabulary": 0, "embedding": 0, "classes": []},
        "head": representation.head("regression", 5).to_json(),
        "monitor": "last_mse",
    }
    assert config["train"]["window_length"] == 50 and config["train"]["epochs"] == 2
    assert config["train"]["batch_size"] == 32
    assert config["representation"]["time_scale_seconds"] == 0.25
    assert config["backend"] == keras.backend.backend() and "CPU" in config["device"]
    assert (trained_run / "model.keras").is_file()

    split = json.loads((trained_run / "split.json").read_text())
    parts = [split[p] for p in ("train", "validation", "test")]
    assert [len(p) for p in parts] == [4, 1, 1]
    assert sorted(sum(parts, [])) == sorted(p.name for p in song_folder.iterdir())
    assert (trained_run / "skipped.txt").read_text() == ""

    history = json.loads((trained_run / "history.json").read_text())
    assert history["monitor"] == "val_last_mse" and len(history["epochs"]["loss"]) == 2


def test_tensorboard_shows_losses_accuracy_graph_and_histograms(trained_run):
    history = json.loads((trained_run / "history.json").read_text())["epochs"]
    train_events, validation_events = _events(trained_run / "train"), _events(trained_run / "validation")
    for events in (train_events, validation_events):
        assert SCALAR_TAGS <= set(events.Tags()["scalars"])
    assert WEIGHT_TAGS <= set(train_events.Tags()["histograms"])
    assert OUTPUT_TAGS <= set(validation_events.Tags()["histograms"])
    assert train_events.Tags()["graph"]
    ops = {node.op for node in train_events.Graph().node}
    if keras.backend.backend() == "tensorflow":
        assert "MatMul" in ops  # TensorFlow's op graph
    else:
        assert {"LSTM", "Dropout", "Dense", "Activation"} <= ops  # the layer graph

    epoch_loss = [e.value for e in train_events.Scalars("epoch_loss")]
    np.testing.assert_allclose(epoch_loss, history["loss"], rtol=1e-6)
    val_loss = [e.value for e in validation_events.Scalars("epoch_loss")]
    np.testing.assert_allclose(val_loss, history["val_loss"], rtol=1e-6)
    batches = train_events.Scalars("batch_loss")
    assert len(batches) >= 2 and [e.step for e in batches] == list(range(1, len(batches) + 1))  # 1 batch an epoch
    for tag in WEIGHT_TAGS:
        assert [e.step for e in train_events.Histograms(tag)] == [1, 2]  # step = epoch
    kernel = train_events.Histograms("lstm/kernel")[-1].histogram_value
    assert kernel.num == 3 * 4 * 8
    dropout_output = validation_events.Histograms("dropout/output")[-1].histogram_value
    assert dropout_output.num == 64 * 50 * 8  # a fixed probe batch of 64 validation windows x 50 steps x 8 units


def test_training_writes_a_loss_curve_and_sampled_pieces(trained_run):
    assert (trained_run / "loss.png").read_bytes().startswith(b"\x89PNG")
    events = EventAccumulator(str(trained_run / "validation"), size_guidance={"images": 0, "audio": 0})
    events.Reload()
    # --sample-every 10 (the default) over 2 epochs: one piece, after the last epoch
    assert [e.step for e in events.Images("samples/piano_roll")] == [2]  # step = epoch, as the image's title
    assert [e.step for e in events.Audio("samples/audio")] == [2]
    assert (trained_run / "samples" / "epoch-0002.mid").is_file()  # named by epochs done


def test_layer_graph_for_backends_without_tensorflow():
    graph = layer_graph(build_model(ModelConfig(units=8)))
    edges = {node.name: list(node.input) for node in graph.node}
    assert edges == {"window": [], "lstm": ["window"], "dropout": ["lstm"], "dense": ["dropout"],
                     "activation": ["dense"]}
    assert {node.op for node in graph.node} >= {"LSTM", "Dropout", "Dense", "Activation"}


def test_existing_run_name_is_refused(trained_run, song_folder, capsys):
    code = train.main(["--dataset", str(song_folder), "--logdir", str(trained_run.parent), "--run-name", "tiny",
                       "--units", "8", "--epochs", "1", "--quiet", "--data-dir", str(trained_run.parent / "data")])
    assert code == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--units", "many"], ["--dataset"], ["--no-such-flag"]])
def test_wrong_flags_get_argparse_usage(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(argv)
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_invalid_values_are_one_line_errors(capsys):
    assert train.main(["--dropout", "1.5"]) == 2
    assert capsys.readouterr().err.strip() == "train.py: error: dropout_rate must lie in [0, 1), got 1.5"


def test_pop_from_the_mirror_trains_end_to_end(mirror, monkeypatch, tmp_path):
    monkeypatch.setenv("NOTE_MATRIX_MIRROR", str(mirror))
    code = train.main(["--dataset", "pop", "--max-files", "6", "--units", "8", "--epochs", "1", "--quiet",
                       "--data-dir", str(tmp_path / "data"), "--logdir", str(tmp_path / "logs"), "--run-name", "pop"])
    assert code == 0
    split = json.loads((tmp_path / "logs" / "pop" / "split.json").read_text())
    assert split["dataset"] == "pop" and len(split["train"]) == 4
    assert all(key.endswith(".midi") for key in split["train"])


def test_best_epoch_is_kept_and_patience_stops_training(song_folder, tmp_path):
    # A learning rate of 1.0 makes the tiny model diverge after its first epoch.
    logdir = tmp_path / "logs"
    code = train.main(["--dataset", str(song_folder), "--data-dir", str(tmp_path / "data"), "--logdir", str(logdir),
                       "--run-name", "diverge", "--units", "8", "--epochs", "12", "--patience", "2",
                       "--learning-rate", "1.0", "--batch-size", "32", "--targets", "last", "--quiet"])
    assert code == 0
    run = logdir / "diverge"
    history = json.loads((run / "history.json").read_text())
    val_loss = history["epochs"]["val_last_mse"]  # the monitored value
    assert len(val_loss) < 12  # stopped early
    assert history["best_epoch"] == len(val_loss) - 1 - 2 == int(np.argmin(val_loss))

    model = keras.saving.load_model(run / "model.keras")
    split = json.loads((run / "split.json").read_text())
    representation = NoteMatrix()
    index = WindowIndex([representation.encode(song_folder / key).steps for key in split["validation"]], 50)
    x, y = index.batch(np.arange(len(index)))
    saved_loss = float(np.mean((model.predict(x, verbose=0) - y) ** 2))
    assert saved_loss == pytest.approx(min(val_loss), rel=1e-4)
    assert saved_loss < val_loss[-1]


def test_workers_encode_in_parallel_and_may_change_on_resume(song_folder, tmp_path):
    flags = ["--dataset", str(song_folder), "--data-dir", str(tmp_path / "data"), "--logdir", str(tmp_path / "logs"),
             "--units", "8", "--epochs", "1", "--quiet"]
    assert train.main([*flags, "--run-name", "parallel", "--workers", "2"]) == 0
    run = tmp_path / "logs" / "parallel"
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["workers"] == 2
    assert train.main([*flags, "--run-name", "serial"]) == 0  # warm cache, one process: the same split
    assert (tmp_path / "logs" / "serial" / "split.json").read_text() == (run / "split.json").read_text()
    serial = json.loads((tmp_path / "logs" / "serial" / "config.json").read_text())
    assert serial["dataset"]["fingerprint"] == config["dataset"]["fingerprint"]
    assert train.main(["--resume", str(run), "--epochs", "2", "--workers", "1", "--quiet"]) == 0
    assert len(json.loads((run / "history.json").read_text())["epochs"]["loss"]) == 2
