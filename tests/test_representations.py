"""The representation interface: the registry, a second representation end to end under
both backends, and run configurations checked on load (new, legacy, tampered)."""

from __future__ import annotations

import json
from pathlib import Path

import mido
import numpy as np
import pytest

from models.head_metrics import ColumnAccuracy, LastSquaredError
from note_matrix import representations
from note_matrix.config import RunConfig
from note_matrix.errors import RunError
from note_matrix.representations.pitch_sequence import END, PitchSequence
from tests.midi_factory import write_song
from tests.test_backends import _run


def test_registry_builds_and_restores_every_representation():
    assert representations.names()[0] == "note_matrix"
    for name in representations.names():
        representation = representations.create(name)
        restored = representations.from_json(json.loads(json.dumps(representation.to_json())))
        assert type(restored) is type(representation) and restored.to_json() == representation.to_json()
        head = representation.head(representation.heads[0], 2)
        assert representation.columns[: head.columns] == head.names
    with pytest.raises(ValueError, match="unknown representation 'nope'"):
        representations.create("nope")


def test_pitch_sequence_keeps_the_highest_pitch_of_each_onset_and_ends(tmp_path):
    path = tmp_path / "song.mid"
    # (start s, end s, pitch, velocity): a chord at 0 (60, 64, 67), then 62, then 72 over 65.
    write_song(path, [(0.0, 0.4, 60, 90), (0.0, 0.4, 64, 90), (0.0, 0.4, 67, 90), (0.5, 0.9, 62, 80),
                      (1.0, 1.4, 65, 70), (1.0, 1.4, 72, 70)])
    encoded = PitchSequence().encode(path)
    assert encoded.steps.dtype == np.int32 and encoded.steps.shape == (4, 1)
    assert encoded.steps[:, 0].tolist() == [67, 62, 72, END]
    out = tmp_path / "out.mid"
    assert PitchSequence().decode(np.array([[67], [62], [END], [50]]), encoded.meta, out) == 2
    struck = [m.note for m in mido.merge_tracks(mido.MidiFile(out).tracks) if m.type == "note_on" and m.velocity]
    assert struck == [67, 62]  # nothing after the end token


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_pitch_sequence_trains_generates_and_evaluates(backend, song_folder, tmp_path):
    logs = tmp_path / "logs"
    trained = _run(backend, "train.py", "--representation", "pitch_sequence", "--dataset", str(song_folder),
                   "--data-dir", str(tmp_path / "data"), "--logdir", str(logs), "--run-name", "tokens", "--units", "8",
                   "--epochs", "2", "--window", "20", "--batch-size", "16", "--sample-every", "1", "--quiet")
    assert trained.returncode == 0, trained.stderr[-3000:]
    run = logs / "tokens"
    config = RunConfig.read(run)
    assert config.train.representation == "pitch_sequence" and config.train.model.head == "categorical"
    assert config.model.inputs["kind"] == "tokens" and config.head().width == 129
    assert (run / "samples" / "epoch-0002.mid").is_file()
    history = json.loads((run / "history.json").read_text())
    assert history["monitor"] == "val_last_loss" and "accuracy" in history["epochs"]

    for method in ("carried", "window"):
        out = tmp_path / f"{method}.mid"
        generated = _run(backend, "generate.py", "--seed", str(song_folder / "song0.mid"), "--model", str(run),
                         "--length", "30", "--method", method, "--random-seed", "4", "--out", str(out), "--quiet")
        assert generated.returncode == 0, generated.stderr[-3000:]
        assert "sampling at temperature 1" in generated.stdout
        midi = mido.MidiFile(out)  # opens: a valid file
        notes = [m for m in mido.merge_tracks(midi.tracks) if m.type == "note_on" and m.velocity]
        assert all(0 <= m.note <= 127 for m in notes)

    evaluated = _run(backend, "evaluate.py", "--model", str(run), "--quiet")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    scores = json.loads((run / "evaluation.json").read_text())["test"]["scores"]
    assert set(scores) == {"model (categorical head)", "repeat previous step", "unigram", "Markov chain"}
    assert 0 <= scores["model (categorical head)"]["accuracy"] <= 1
    assert 0 < scores["model (categorical head)"]["nll"] < 20 and scores["unigram"]["nll"] > 0
    assert "accuracy" in evaluated.stdout and "NLL/step" in evaluated.stdout


def _config(trained_run) -> dict:
    return json.loads((trained_run / "config.json").read_text())


def _write(folder: Path, data: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(data))
    return folder


def test_run_config_records_representation_and_head(trained_run):
    config = RunConfig.read(trained_run)
    assert config.train.representation == "note_matrix"
    assert config.model.head == config.build_representation().head("regression", 5).to_json()
    assert config.model.monitor == "last_mse"


def test_run_config_from_before_the_interface_loads_with_recorded_defaults(trained_run, tmp_path):
    legacy = _config(trained_run)
    del legacy["model"], legacy["train"]["representation"]
    legacy["train"]["model"]["features"] = 3
    legacy["train"]["model"]["head"] = "mdn"
    legacy["train"]["model"]["mixtures"] = 2
    config = RunConfig.read(_write(tmp_path / "old", legacy))
    assert config.train.representation == "note_matrix"
    assert config.head().width == 128 + 5 * 2 and config.model.monitor == "last_loss"


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c["train"].update(window_length="abc"), "field train.window_length must be int"),
    (lambda c: c["train"].update(window_length=-5), "window_length must be at least 1"),
    (lambda c: c["train"].update(colour="red"), "unknown field train.colour"),
    (lambda c: c["train"]["model"].update(units=2.5), "field train.model.units must be int"),
    (lambda c: c.pop("dataset"), "missing field dataset"),
    (lambda c: c.update(representation={"name": "nope"}), "field representation: unknown representation 'nope'"),
    (lambda c: c["model"]["inputs"].update(kind="sound"), "field model.inputs: input kind must be one of"),
    (lambda c: c["model"].update(head=[{"field": "gaussian", "names": ["note"], "bins": []}]), "field model.head"),
])
def test_tampered_run_config_is_refused_with_one_line(trained_run, tmp_path, change, message):
    config = _config(trained_run)
    change(config)
    folder = _write(tmp_path / "bad", config)
    with pytest.raises(RunError, match=message) as error:
        RunConfig.read(folder).head()
    assert str(folder / "config.json") in str(error.value) and "\n" not in str(error.value)


def test_a_json_list_is_not_a_run_config(tmp_path):
    folder = tmp_path / "list"
    folder.mkdir()
    (folder / "config.json").write_text("[1, 2]")
    with pytest.raises(RunError, match="must be a JSON object"):
        RunConfig.read(folder)


def test_a_run_checkpointed_before_the_field_heads_resumes(song_folder, tmp_path):
    """A checkpoint compiled with the old registered functions (``note_matrix>pitch_accuracy``,
    ``note_matrix>last_mse``, the card's "mean_squared_error") beside an old config.json
    resumes in a fresh process, its history keeping its keys."""
    import keras

    import train
    from note_matrix.representations.note_matrix import regression_head

    logs = tmp_path / "logs"
    assert train.main(["--dataset", str(song_folder), "--data-dir", str(tmp_path / "data"), "--logdir", str(logs),
                       "--run-name", "old", "--units", "8", "--epochs", "1", "--sample-every", "0", "--quiet"]) == 0
    run = logs / "old"
    checkpoint = json.loads((run / "checkpoint.json").read_text())
    head = regression_head()
    accuracy, squared_error = ColumnAccuracy(head), LastSquaredError(head)

    @keras.saving.register_keras_serializable(package="note_matrix", name="pitch_accuracy")
    def pitch_accuracy(y_true, y_pred):
        return accuracy.values(y_true, y_pred)

    @keras.saving.register_keras_serializable(package="note_matrix", name="last_mse")
    def last_mse(y_true, y_pred):
        return squared_error.values(y_true, y_pred)

    model = keras.saving.load_model(run / checkpoint["model"])
    model.compile(optimizer=keras.optimizers.RMSprop(1e-4), loss="mean_squared_error",
                  metrics=[pitch_accuracy, last_mse])
    window = np.zeros((2, 50, 3), np.float32)
    model.train_on_batch(window, window)  # the optimizer's variables, as a real checkpoint has them
    model.save(run / checkpoint["model"])
    assert "note_matrix>pitch_accuracy" in (run / checkpoint["model"]).read_bytes().decode("latin-1")

    old = _config(run)
    del old["model"], old["train"]["representation"]
    old["train"]["model"]["features"] = 3
    (run / "config.json").write_text(json.dumps(old))

    resumed = _run("tensorflow", "train.py", "--resume", str(run), "--epochs", "2", "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    history = json.loads((run / "history.json").read_text())["epochs"]
    assert len(history["loss"]) == 2 and len(history["val_last_mse"]) == 2 and len(history["pitch_accuracy"]) == 2
