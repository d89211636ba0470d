"""Interrupted training resumes: a SIGKILL mid-epoch loses nothing, changed settings or data are refused."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import models.head_metrics  # noqa: F401  (registers the loss and metrics a checkpoint is compiled with)
import train
from models import ModelConfig, build_model
from note_matrix import runs
from note_matrix.training.sample_logger import LOSS_CURVE_FILE
from note_matrix.training.tensorboard import SummaryWriter, discard_events_after
from tests.midi_factory import random_song

REPOSITORY = Path(train.__file__).resolve().parent
KILL_TIMEOUT_SECONDS = 120


def _flags(song_folder: Path, base: Path, run: str, epochs: int, batch_size: int = 8) -> list[str]:
    """train.py flags for a tiny model (8 units) on ``song_folder``, writing under ``base``."""
    return ["--dataset", str(song_folder), "--data-dir", str(base / "data"), "--logdir", str(base / "logs"),
            "--run-name", run, "--units", "8", "--batch-size", str(batch_size), "--epochs", str(epochs), "--quiet"]


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and the SHA-256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _checkpoint(run: Path) -> dict:
    return json.loads((run / runs.CHECKPOINT_FILE).read_text())


def _assert_every_file_loads(run: Path) -> None:
    """Every complete file of a run folder parses or loads; only ``*.part*`` files may be partial."""
    for path in run.iterdir():
        if path.is_dir():
            EventAccumulator(str(path)).Reload()  # TensorBoard events
        elif runs.is_partial(path):
            continue  # a temporary file of a writer that was killed: never read, removed on resume
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".keras":
            keras.saving.load_model(path)
        else:
            assert path.name == runs.SKIP_FILE, f"unexpected file {path.name}"
    state = _checkpoint(run)
    assert (run / state["model"]).is_file() and (run / runs.MODEL_FILE).is_file()


def _scalar_steps(folder: Path, tag: str) -> list[int]:
    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    accumulator.Reload()
    return [event.step for event in accumulator.Scalars(tag)]


def _start_and_kill_mid_epoch(argv: list[str], run: Path, stderr_path: Path, epochs_before_kill: int) -> int:
    """Run ``train.py argv`` in a subprocess; SIGKILL it half an epoch after that many checkpoints."""
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen([sys.executable, "train.py", *argv], cwd=REPOSITORY,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        seen, deadline = {}, time.monotonic() + KILL_TIMEOUT_SECONDS  # epochs done -> when first seen
        while time.monotonic() < deadline and process.poll() is None:
            if (run / runs.CHECKPOINT_FILE).is_file():
                seen.setdefault(_checkpoint(run)["epochs_done"], time.monotonic())
            if len(seen) >= 2 and max(seen) >= epochs_before_kill:
                break
            time.sleep(0.01)
        assert process.poll() is None, f"train.py ended before it could be killed: {stderr_path.read_text()[-2000:]}"
        assert len(seen) >= 2, f"no checkpoints in time: {stderr_path.read_text()[-2000:]}"
        epoch_seconds = (seen[max(seen)] - seen[min(seen)]) / (max(seen) - min(seen))
        time.sleep(epoch_seconds / 2)  # into the middle of the next epoch
        assert process.poll() is None
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    return _checkpoint(run)["epochs_done"]


def test_a_run_killed_mid_epoch_resumes_to_the_configured_epochs(song_folder, tmp_path):
    epochs, run = 6, tmp_path / "logs" / "killed"
    flags = [*_flags(song_folder, tmp_path, "killed", epochs, batch_size=4), "--targets", "last"]  # long epochs
    done = _start_and_kill_mid_epoch(flags, run, tmp_path / "stderr.txt", epochs_before_kill=2)
    assert 2 <= done < epochs
    _assert_every_file_loads(run)
    assert len(json.loads((run / runs.HISTORY_FILE).read_text())["epochs"]["loss"]) == done
    # What a kill in the middle of writing leaves behind: temporary files, resumed around and removed.
    (run / "checkpoint-0099.part.keras").write_bytes(b"PK\x03\x04 half a zip")
    (run / "checkpoint.json.part").write_text('{"format": 1, "epochs_do')

    assert train.main(["--resume", str(run), "--quiet"]) == 0

    history = json.loads((run / runs.HISTORY_FILE).read_text())
    assert len(history["epochs"]["loss"]) == len(history["epochs"]["val_loss"]) == epochs
    assert history["best_epoch"] == int(np.argmin(history["epochs"]["val_loss"]))
    state = _checkpoint(run)
    assert state["epochs_done"] == epochs and state["model"] == runs.checkpoint_name(epochs)
    assert keras.saving.load_model(run / runs.MODEL_FILE).count_params() == 4 * 8 * (3 + 8 + 1) + 8 * 3 + 3
    assert not [p.name for p in run.iterdir() if runs.is_partial(p)]
    assert sorted(p.name for p in run.glob("checkpoint-*")) == [runs.checkpoint_name(epochs)]
    config = json.loads((run / runs.CONFIG_FILE).read_text())
    assert [r["epochs_done"] for r in config["resumed"]] == [done]
    # TensorBoard: one point per epoch, batch steps numbered on without a gap or a repeat.
    assert _scalar_steps(run / "train", "epoch_loss") == list(range(1, epochs + 1))
    train_batches = _scalar_steps(run / "train", "batch_loss")
    assert train_batches == list(range(1, state["tensorboard"]["train_step"] + 1))
    assert len(train_batches) == epochs * 169  # 676 training windows in batches of 4
    validation_batches = _scalar_steps(run / "validation", "batch_loss")
    assert validation_batches == list(range(1, state["tensorboard"]["validation_step"] + 1))


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(song_folder, tmp_path):
    # Batch order depends on (seed, epoch) only, and the optimizer and dropout random state
    # are checkpointed, so on one machine the result is the same to the last bit.
    assert train.main(_flags(song_folder, tmp_path, "straight", 4)) == 0
    assert train.main(_flags(song_folder, tmp_path, "stopped", 2)) == 0
    assert train.main(["--resume", str(tmp_path / "logs" / "stopped"), "--epochs", "4", "--quiet"]) == 0

    straight, stopped = tmp_path / "logs" / "straight", tmp_path / "logs" / "stopped"
    for weights, expected in zip(keras.saving.load_model(stopped / runs.checkpoint_name(4)).get_weights(),
                                 keras.saving.load_model(straight / runs.checkpoint_name(4)).get_weights()):
        np.testing.assert_allclose(weights, expected, rtol=0, atol=1e-6)
    resumed_history = json.loads((stopped / runs.HISTORY_FILE).read_text())
    assert resumed_history == json.loads((straight / runs.HISTORY_FILE).read_text())
    assert json.loads((stopped / runs.CONFIG_FILE).read_text())["train"]["epochs"] == 4  # raised


def test_early_stopping_counts_the_epochs_before_the_interruption(song_folder, tmp_path, capsys):
    # A learning rate of 1.0 makes the tiny model's validation loss jump about (as in test_training):
    # its best epoch comes before the interruption, and the patience runs out after it.
    diverging = ["--patience", "2", "--learning-rate", "1.0", "--targets", "last"]
    assert train.main(_flags(song_folder, tmp_path, "stopped", 3) + diverging) == 0
    stopped = tmp_path / "logs" / "stopped"
    assert _checkpoint(stopped)["best_epoch"] < 2 and not _checkpoint(stopped)["stopped_early"]  # waiting
    assert train.main(["--resume", str(stopped), "--epochs", "12", "--quiet"]) == 0

    history = json.loads((stopped / runs.HISTORY_FILE).read_text())
    assert 3 < len(history["epochs"]["val_loss"]) == history["best_epoch"] + 1 + 2  # the best, then 2 worse
    assert history["best_epoch"] == int(np.argmin(history["epochs"]["val_loss"]))
    assert _checkpoint(stopped)["stopped_early"]
    capsys.readouterr()
    assert train.main(["--resume", str(stopped), "--epochs", "12", "--quiet"]) == 0
    assert "already finished (stopped early after" in capsys.readouterr().out


@pytest.fixture(scope="module")
def finished_run(song_folder, tmp_path_factory) -> Path:
    """A run of 2 epochs that ended normally."""
    base = tmp_path_factory.mktemp("finished")
    assert train.main(_flags(song_folder, base, "done", 2)) == 0
    return base / "logs" / "done"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--units", "16"], "units saved 8, given 16"),
        (["--window", "20", "--learning-rate", "0.01"], "window_length saved 50, given 20; learning_rate saved 0.0001"),
        (["--dataset", "pop"], "dataset saved '"),
        (["--batch-size", "32", "--epochs", "5"], "batch_size saved 8, given 32"),
    ],
)
def test_resuming_with_other_settings_is_refused(finished_run, flags, message, capsys):
    before = _snapshot(finished_run)
    assert train.main(["--resume", str(finished_run), *flags, "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("train.py: error: ") and error.count("\n") == 1
    assert "cannot be resumed with other settings" in error and message in error and "--epochs" in error
    assert _snapshot(finished_run) == before


def test_resuming_a_finished_run_trains_nothing(finished_run, capsys):
    before = _snapshot(finished_run)
    assert train.main(["--resume", str(finished_run), "--units", "8", "--quiet"]) == 0  # same value: fine
    assert f"{finished_run}: already finished (2 epochs done); nothing to resume" in capsys.readouterr().out
    assert _snapshot(finished_run) == before


def test_a_kill_between_the_commit_and_the_best_model_copy_is_repaired(finished_run, tmp_path):
    run = shutil.copytree(finished_run, tmp_path / "run")
    state = _checkpoint(run)
    assert state["best_epoch"] == state["epochs_done"] - 1  # the last epoch was the best
    # What the run folder holds if the kill came right after checkpoint.json was replaced:
    runs.save_model(build_model(ModelConfig(units=8)), run / runs.MODEL_FILE)  # the previous best
    history = json.loads((run / runs.HISTORY_FILE).read_text())
    history["epochs"] = {name: values[:-1] for name, values in history["epochs"].items()}
    runs.write_json(run / runs.HISTORY_FILE, history)  # one epoch behind

    assert train.main(["--resume", str(run), "--quiet"]) == 0  # finished: trains nothing, repairs
    assert (run / runs.MODEL_FILE).read_bytes() == (run / state["model"]).read_bytes()
    repaired, complete = (json.loads((folder / runs.HISTORY_FILE).read_text()) for folder in (run, finished_run))
    assert repaired == complete


def test_a_kill_before_the_loss_curve_is_repaired(finished_run, tmp_path):
    run = shutil.copytree(finished_run, tmp_path / "run")
    (run / LOSS_CURVE_FILE).unlink()  # killed after the last epoch's commit, before the curve was drawn
    assert train.main(["--resume", str(run), "--quiet"]) == 0  # finished: trains nothing, draws the curve
    assert (run / LOSS_CURVE_FILE).read_bytes().startswith(b"\x89PNG")


def test_resuming_after_the_dataset_changed_is_refused(song_folder, tmp_path, capsys):
    songs = shutil.copytree(song_folder, tmp_path / "songs")
    assert train.main(_flags(songs, tmp_path, "run", 1)) == 0
    run = tmp_path / "logs" / "run"
    random_song(songs / "song3.mid", np.random.default_rng(99), n_notes=90)  # same name, other notes
    before = _snapshot(run)
    assert train.main(["--resume", str(run), "--epochs", "2", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("train.py: error: ") and error.count("\n") == 1
    assert "the dataset's files changed since this run started" in error
    assert _snapshot(run) == before


def test_resuming_what_is_not_a_resumable_run_is_a_one_line_error(finished_run, tmp_path, capsys):
    assert train.main(["--resume", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err == f"train.py: error: {tmp_path / 'nothing'}: not a run folder (no config.json)\n"

    early = tmp_path / "killed-in-epoch-1"  # what a kill before the first checkpoint leaves
    early.mkdir()
    for name in (runs.CONFIG_FILE, runs.SPLIT_FILE, runs.SKIP_FILE):
        shutil.copy(finished_run / name, early / name)
    assert train.main(["--resume", str(early)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "no checkpoint to resume from" in error


def test_resume_takes_no_run_name(finished_run, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(["--resume", str(finished_run), "--run-name", "other"])
    assert exit_info.value.code == 2
    assert "--logdir and --run-name do not apply" in capsys.readouterr().err


# -- atomic writes ----------------------------------------------------------------------


def test_a_model_save_that_fails_midway_leaves_the_previous_file(tmp_path, monkeypatch):
    model = build_model(ModelConfig(units=8))
    path = tmp_path / "checkpoint-0001.keras"
    runs.save_model(model, path)
    previous = path.read_bytes()

    def save_half_then_fail(filepath, *args, **kwargs):
        Path(filepath).write_bytes(previous[: len(previous) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(model, "save", save_half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        runs.save_model(model, path)
    assert path.read_bytes() == previous
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # the half-written temporary file is gone
    reloaded = keras.saving.load_model(path)
    for weights, expected in zip(reloaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(weights, expected)


def test_a_json_write_that_fails_before_the_rename_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / runs.CHECKPOINT_FILE
    runs.write_json(path, {"epochs_done": 3})

    def fail(descriptor):
        raise OSError("I/O error")

    monkeypatch.setattr(runs.os, "fsync", fail)  # the new content is written, not yet renamed
    with pytest.raises(OSError, match="I/O error"):
        runs.write_json(path, {"epochs_done": 4})
    assert json.loads(path.read_text()) == {"epochs_done": 3}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_events_logged_after_the_last_checkpoint_are_discarded(tmp_path):
    """What a kill between the epoch's TensorBoard write and its checkpoint leaves behind."""
    for run in ("train", "validation"):
        writer = SummaryWriter(tmp_path / run)
        for step in range(1, 11):
            writer.scalar("batch_loss", 1.0 / step, step)
        for epoch in range(1, 4):
            writer.scalar("epoch_loss", 1.0 / epoch, epoch)
            writer.histogram("lstm/kernel", np.arange(10.0) * epoch, epoch)
        writer.close()
    events = next((tmp_path / "train").glob("events.out.tfevents.*"))
    with open(events, "ab") as handle:
        handle.write(b"\x20\x00\x00")  # a record cut short by the kill

    discard_events_after(tmp_path, train_step=6, validation_step=4, epochs_done=2)

    assert _scalar_steps(tmp_path / "train", "batch_loss") == [1, 2, 3, 4, 5, 6]
    assert _scalar_steps(tmp_path / "validation", "batch_loss") == [1, 2, 3, 4]
    assert _scalar_steps(tmp_path / "train", "epoch_loss") == [1, 2]
    histograms = EventAccumulator(str(tmp_path / "train"), size_guidance={"histograms": 0})
    histograms.Reload()
    assert [event.step for event in histograms.Histograms("lstm/kernel")] == [1, 2]
    assert not list(tmp_path.rglob("*.part"))
