"""Optimizers, the cyclical learning rate (Smith 2017) and windows drawn at random positions."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import train
from models.builder import CyclicLearningRate
from note_matrix import runs
from note_matrix.config import RunConfig
from note_matrix.training.windows import WindowBatches, WindowIndex


def _smith(step: int, lr_min: float, lr_max: float, step_size: int) -> float:
    """Smith 2017, section 3.1, as printed: the triangular policy's rate at iteration ``step``."""
    cycle = np.floor(1 + step / (2 * step_size))
    x = abs(step / step_size - 2 * cycle + 1)
    return lr_min + (lr_max - lr_min) * max(0.0, 1 - x)


def _flags(song_folder: Path, base: Path, run: str, epochs: int, *extra: str) -> list[str]:
    """train.py flags for a tiny model (8 units) on ``song_folder``, writing under ``base``."""
    return [
        "--dataset",
        str(song_folder),
        "--data-dir",
        str(base / "data"),
        "--logdir",
        str(base / "logs"),
        "--run-name",
        run,
        "--units",
        "8",
        "--batch-size",
        "8",
        "--epochs",
        str(epochs),
        "--sample-every",
        "0",
        "--histogram-freq",
        "100",
        "--quiet",
        *extra,
    ]


def _scalars(run: Path, tag: str) -> dict[int, float]:
    accumulator = EventAccumulator(str(run / "train"), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {event.step: event.value for event in accumulator.Scalars(tag)}


def test_the_cyclic_rate_is_smiths_triangle():
    schedule = CyclicLearningRate(1e-3, 5e-3, 4)
    steps = [0, 1, 2, 4, 6, 8, 9, 12, 13, 16, 30]
    rates = [float(schedule(step)) for step in steps]
    np.testing.assert_allclose(rates, [_smith(step, 1e-3, 5e-3, 4) for step in steps], rtol=1e-6)
    np.testing.assert_allclose(rates[:6], [1e-3, 2e-3, 3e-3, 5e-3, 3e-3, 1e-3], rtol=1e-6)  # up 4 steps, down 4
    assert CyclicLearningRate(**schedule.get_config()).get_config() == schedule.get_config()


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
def test_each_optimizer_trains_logs_its_rate_and_resumes(optimizer, song_folder, tmp_path):
    assert train.main(_flags(song_folder, tmp_path, "run", 1, "--optimizer", optimizer, "--learning-rate", "0.01")) == 0
    run = tmp_path / "logs" / "run"
    assert train.main(["--resume", str(run), "--epochs", "2", "--quiet"]) == 0  # loads the epoch-1 checkpoint

    assert _checkpoint_optimizer(run) == optimizer
    rates = _scalars(run, "epoch_learning_rate")
    assert list(rates) == [1, 2]
    np.testing.assert_allclose(list(rates.values()), [0.01, 0.01], rtol=1e-6)
    _assert_old_configs_load_with_the_defaults(run, tmp_path / "old")


def _checkpoint_optimizer(run: Path) -> str:
    model = keras.saving.load_model(run / runs.checkpoint_name(2))
    return type(model.optimizer).__name__.lower()


def _assert_old_configs_load_with_the_defaults(run: Path, scratch: Path) -> None:
    """The run's config.json without the fields this change added reads back with their defaults."""
    saved = json.loads((run / runs.CONFIG_FILE).read_text())
    for name in ("lr_schedule", "lr_min", "lr_max", "cycle_steps"):
        del saved["train"]["model"][name]
    del saved["train"]["batches"]
    scratch.mkdir()
    (scratch / runs.CONFIG_FILE).write_text(json.dumps(saved))
    config = RunConfig.read(scratch).train
    assert (config.batches, config.model.lr_schedule, config.model.lr_min, config.model.cycle_steps) == (
        "shuffled",
        "constant",
        None,
        None,
    )


def test_a_cyclic_random_run_follows_the_schedule_and_resumes_as_if_uninterrupted(song_folder, tmp_path):
    cyclic = [
        "--lr-schedule",
        "cyclic",
        "--lr-min",
        "0.001",
        "--lr-max",
        "0.005",
        "--cycle-steps",
        "2",
        "--batches",
        "random",
    ]
    assert train.main(_flags(song_folder, tmp_path, "straight", 2, *cyclic)) == 0
    assert train.main(_flags(song_folder, tmp_path, "stopped", 1, *cyclic)) == 0
    assert train.main(["--resume", str(tmp_path / "logs" / "stopped"), "--epochs", "2", "--quiet"]) == 0

    straight, stopped = tmp_path / "logs" / "straight", tmp_path / "logs" / "stopped"
    updates_per_epoch = len(_scalars(straight, "batch_loss")) // 2
    rates = _scalars(straight, "epoch_learning_rate")
    expected = [_smith(epoch * updates_per_epoch, 1e-3, 5e-3, 2) for epoch in (1, 2)]
    np.testing.assert_allclose([rates[1], rates[2]], expected, rtol=1e-6)
    assert rates[1] != rates[2]  # the rate moved along the triangle
    assert _scalars(stopped, "epoch_learning_rate") == rates
    for weights, expected_weights in zip(
        keras.saving.load_model(stopped / runs.checkpoint_name(2)).get_weights(),
        keras.saving.load_model(straight / runs.checkpoint_name(2)).get_weights(),
    ):
        np.testing.assert_allclose(weights, expected_weights, rtol=0, atol=1e-6)
    assert json.loads((stopped / runs.HISTORY_FILE).read_text()) == json.loads(
        (straight / runs.HISTORY_FILE).read_text()
    )


def _index() -> WindowIndex:
    rng = np.random.default_rng(3)
    return WindowIndex([rng.random((length, 3), dtype=np.float32) for length in (40, 75, 60)], 10)


@pytest.mark.parametrize("layout", ["sliding", "chunks"])
def test_random_batches_draw_as_many_valid_windows_per_seed_and_epoch(layout):
    index = _index()
    ordered = WindowBatches(index, 8, shuffle=True, seed=5, layout=layout)
    drawn = WindowBatches(index, 8, shuffle=True, seed=5, layout=layout, draw="random")
    first, again = (
        drawn.epoch_starts(1),
        WindowBatches(index, 8, shuffle=True, seed=5, layout=layout, draw="random").epoch_starts(1),
    )
    assert len(first) == len(ordered.epoch_starts(1)) == ordered.windows and len(drawn) == len(ordered)
    np.testing.assert_array_equal(first, again)  # the same (seed, epoch), the same windows
    assert not np.array_equal(first, drawn.epoch_starts(2))
    assert sorted(first) != sorted(ordered.epoch_starts(1))  # not every window once: drawn with replacement
    assert set(first) <= set(index.starts)  # every window lies within one song, with a next row


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--lr-min", "0.001"], "apply only to the cyclic"),
        (["--lr-schedule", "cyclic", "--lr-min", "0.01", "--lr-max", "0.001"], "lr_min <= lr_max"),
        (["--lr-schedule", "cyclic", "--lr-min", "0.001", "--lr-max", "0.01", "--cycle-steps", "0"], "cycle_steps"),
        (["--lr-schedule", "cyclic"], "needs lr_min and lr_max"),
    ],
)
def test_bad_schedule_settings_are_one_line_errors(flags, message, tmp_path, capsys):
    assert train.main(["--dataset", str(tmp_path), "--logdir", str(tmp_path / "logs"), *flags]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1 and "Traceback" not in error
    assert not (tmp_path / "logs").exists()


def test_a_learning_rate_with_the_cyclic_schedule_is_a_usage_error(tmp_path, capsys):
    flags = ["--dataset", str(tmp_path), "--lr-schedule", "cyclic", "--lr-min", "0.001", "--lr-max", "0.01",
             "--learning-rate", "0.1"]
    with pytest.raises(SystemExit) as exit_:
        train.main(flags)
    assert exit_.value.code == 2
    assert "--learning-rate is the constant schedule's rate" in capsys.readouterr().err
