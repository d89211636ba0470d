"""sweep.py: a grid of tiny train.py runs in worker processes, its results, HParams and resume.

The sweeps run sweep.py as a user does, in a subprocess under JAX (the quicker start), on the
six synthetic songs of ``conftest.song_folder``: 8 units, window 8, one or two epochs.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

import sweep
from note_matrix.sweeps import Sweep, SweepError, hparams, parse_grid, results
from note_matrix.sweeps.folder import CURVES_PNG, RESULTS_CSV, RESULTS_MD
from note_matrix.sweeps.study import has_work, open_study, prepare

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--window", "8", "--batch-size", "32", "--sample-every", "0"]


def run_sweep(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "sweep.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, KERAS_BACKEND="jax"),
        timeout=600,
        check=False,
    )


def rows(folder: Path) -> list[dict]:
    with open(folder / RESULTS_CSV, newline="") as handle:
        return list(csv.DictReader(handle))


def history(run_dir: Path) -> dict:
    return json.loads((run_dir / "history.json").read_text())


@pytest.fixture(scope="module")
def two_points(song_folder, tmp_path_factory):
    """``(sweep folder, arguments, result)`` of a two-point sweep in two worker processes."""
    base = tmp_path_factory.mktemp("sweep")
    args = [
        "--grid",
        "units=8",
        "dropout=0,0.1",
        "--jobs",
        "2",
        "--logdir",
        str(base / "logs"),
        "--name",
        "tiny",
        "--",
        "--dataset",
        str(song_folder),
        "--data-dir",
        str(base / "data"),
        "--epochs",
        "2",
        *TINY,
    ]
    return base / "logs" / "tiny", args, run_sweep(args)


def test_a_two_point_sweep_trains_one_run_folder_per_point(two_points):
    folder, _, result = two_points
    assert result.returncode == 0, result.stderr
    for point in ("units=8,dropout=0", "units=8,dropout=0.1"):
        assert (folder / point / "model.keras").is_file()
        assert len(history(folder / point)["epochs"]["loss"]) == 2
    lines = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert sorted(line[:5] for line in lines) == ["[1/2]", "[2/2]"] and all(": done, best " in line for line in lines)
    assert "Traceback" not in result.stderr
    assert f"Generate: python generate.py --model {folder / 'units=8,dropout=0'} --seed <song.mid>" in result.stdout or (
        f"Generate: python generate.py --model {folder / 'units=8,dropout=0.1'} --seed <song.mid>" in result.stdout
    )


def test_the_results_hold_each_runs_best_validation_value(two_points):
    folder, _, _ = two_points
    found = rows(folder)
    assert [(row["units"], row["dropout"], row["status"]) for row in found] == [
        ("8", "0", "done"),
        ("8", "0.1", "done"),
    ]
    for row in found:
        saved = history(folder / row["run_dir"])
        assert row["monitor"] == saved["monitor"] == "val_last_mse"  # the note matrix's regression head
        assert math.isfinite(float(row["best_value"]))
        assert float(row["best_value"]) == saved[f"best_{saved['monitor']}"]
        assert int(row["best_epoch"]) == saved["best_epoch"] + 1
        assert int(row["epochs"]) == 2 and float(row["seconds"]) > 0
        accuracy = saved["epochs"].get("val_accuracy")  # the regression head has none: an empty cell
        assert row["val_accuracy"] == ("" if accuracy is None else repr(accuracy[saved["best_epoch"]]))
    best = min(found, key=lambda row: float(row["best_value"]))
    assert [row["best"] for row in found] == ["1" if row is best else "0" for row in found]
    table = [line for line in (folder / RESULTS_MD).read_text().splitlines() if line.startswith("| 8 |")]
    assert len(table) == 2
    assert [("**best**" in line) for line in table] == [row is best for row in found]
    assert f"{float(best['best_value']):.6g}" in next(line for line in table if "**best**" in line)


def test_the_generate_hint_asks_a_seed_only_of_runs_that_write_midi(tmp_path):
    from note_matrix.sweeps.console import _seed_flag

    for name, flag in (("abc_chars", ""), ("chord_tokens", " --seed <song.mid>")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"train": {"representation": name}}))
        assert _seed_flag(tmp_path / name) == flag
    assert _seed_flag(tmp_path / "missing") == " --seed <song.mid>"


def test_the_validation_accuracy_is_read_at_the_best_epoch(tmp_path):
    (tmp_path / "history.json").write_text(
        json.dumps({"monitor": "val_loss", "best_epoch": 1, "epochs": {"val_accuracy": [0.25, 0.5, 0.4]}})
    )
    assert results.validation_accuracy(tmp_path, 2) == 0.5  # best_epoch is 1-based here
    assert results.validation_accuracy(tmp_path, 4) is None and results.validation_accuracy(tmp_path, None) is None
    assert results.validation_accuracy(tmp_path / "missing", 1) is None


def test_the_loss_curves_are_drawn(two_points):
    png = (two_points[0] / CURVES_PNG).read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_tensorboard_s_hparams_plugin_reads_the_sweep(two_points):
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment, list_session_groups

    folder = str(two_points[0])
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(folder)
    multiplexer.Reload()
    tb_context = base_plugin.TBContext(
        logdir=folder, multiplexer=multiplexer, data_provider=data_provider.MultiplexerDataProvider(multiplexer, folder)
    )
    plugin, request = backend_context.Context(tb_context), context.RequestContext()
    experiment = get_experiment.Handler(request, plugin, "", api_pb2.GetExperimentRequest()).run()
    assert sorted(info.name for info in experiment.hparam_infos) == ["dropout", "units"]
    assert "val_last_mse" in experiment.metric_infos[0].description
    listing = api_pb2.ListSessionGroupsRequest(start_index=0, slice_size=10, allowed_statuses=[api_pb2.STATUS_SUCCESS])
    groups = list_session_groups.Handler(request, plugin, "", listing).run().session_groups
    best = {row["run_dir"]: float(row["best_value"]) for row in rows(two_points[0])}
    assert sorted(group.name for group in groups) == sorted(best)
    for group in groups:
        assert group.hparams["dropout"].number_value == float(group.name.split("dropout=")[1])
        values = {(value.name.group, value.name.tag): value.value for value in group.metric_values}
        assert values[("", "best_validation")] == pytest.approx(best[group.name], rel=1e-6)
        assert values[("", "epochs")] == 2 and ("validation", "epoch_loss") in values


def test_running_the_same_sweep_again_trains_nothing(two_points):
    folder, args, first = two_points
    assert first.returncode == 0
    models = {path: path.stat().st_mtime_ns for path in folder.glob("*/model.keras")}
    trials = len(optuna.load_study(study_name="tiny", storage=open_study_storage(folder)).trials)
    again = run_sweep(args)
    assert again.returncode == 0, again.stderr
    assert "nothing trained" in again.stdout
    assert {path: path.stat().st_mtime_ns for path in folder.glob("*/model.keras")} == models
    assert len(optuna.load_study(study_name="tiny", storage=open_study_storage(folder)).trials) == trials == 2


def open_study_storage(folder: Path) -> optuna.storages.JournalStorage:
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(folder / "optuna.journal")))


def test_a_failing_point_is_recorded_and_the_other_trains(song_folder, tmp_path):
    result = run_sweep(
        [
            "--grid",
            "dropout=0.1,1.5",
            "--jobs",
            "2",
            "--logdir",
            str(tmp_path),
            "--name",
            "mixed",
            "--",
            "--dataset",
            str(song_folder),
            "--data-dir",
            str(tmp_path / "data"),
            "--units",
            "8",
            "--epochs",
            "1",
            *TINY,
        ]
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    done, failed = rows(tmp_path / "mixed")
    assert (done["dropout"], done["status"]) == ("0.1", "done") and math.isfinite(float(done["best_value"]))
    assert (failed["dropout"], failed["status"], failed["best_value"]) == ("1.5", "failed", "")
    assert failed["failure"].startswith("train.py: error: ") and "dropout" in failed["failure"]
    assert (tmp_path / "mixed" / "dropout=0.1" / "model.keras").is_file()


@pytest.mark.parametrize(
    ("grid", "says"),
    [
        ("colour=red,blue", "train.py has no flag --colour"),
        ("units=8,many", "invalid int value: 'many'"),
        ("cell=lstm,abacus", "invalid choice: 'abacus'"),
        ("run-name=a,b", "--run-name cannot be swept"),
        ("units", "expected KEY=V1,V2,..."),
    ],
)
def test_a_bad_grid_is_one_line_and_status_2(grid, says, tmp_path, capsys):
    assert sweep.main(["--grid", grid, "--logdir", str(tmp_path), "--", "--epochs", "1"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("sweep.py: error: --grid ") and says in error
    assert not any(tmp_path.iterdir())


def test_fixed_flags_are_checked_before_anything_trains(tmp_path, capsys):
    assert sweep.main(["--grid", "units=8", "--logdir", str(tmp_path), "--", "--units", "16"]) == 2
    assert capsys.readouterr().err == "sweep.py: error: --units is both a grid key and a flag after --; give it once\n"
    assert sweep.main(["--grid", "units=8", "--logdir", str(tmp_path), "--", "--epochs", "many"]) == 2
    assert "after --: argument --epochs: invalid int value" in capsys.readouterr().err


def test_a_dry_run_prints_the_points_and_commands_only(tmp_path, capsys):
    args = [
        "--grid",
        "lr_schedule=constant,cyclic",
        "optimizer=adam",
        "--logdir",
        str(tmp_path),
        "--dry-run",
        "--",
        "--learning-rate",
        "1e-3",
        "--lr-min",
        "1e-4",
        "--lr-max=1e-3",
        "--epochs",
        "2",
    ]
    assert sweep.main(args) == 0
    head, constant, constant_command, cyclic, cyclic_command = capsys.readouterr().out.splitlines()
    assert head.startswith(f"Sweep {tmp_path}/sweep-lr-schedule-optimizer-") and "2 points" in head
    assert (constant, cyclic) == ("lr-schedule=constant,optimizer=adam", "lr-schedule=cyclic,optimizer=adam")
    assert constant_command.startswith("  python ")
    # the cyclic rate's flags reach only the cyclic point, --learning-rate only the constant one
    assert "train.py --learning-rate 1e-3 --epochs 2 --lr-schedule=constant --optimizer=adam --logdir " in constant_command
    assert constant_command.endswith(" --run-name lr-schedule=constant,optimizer=adam --quiet")
    assert "train.py --lr-min 1e-4 --lr-max=1e-3 --epochs 2 --lr-schedule=cyclic --optimizer=adam" in cyclic_command
    assert not any(tmp_path.iterdir())


def test_a_point_killed_midway_is_enqueued_again_and_resumes(tmp_path):
    import train

    grid = parse_grid(["units=8,16"], train.build_parser)
    folder = Sweep(tmp_path / "s", grid, ("--epochs", "3"), ROOT / "train.py")
    folder.save()
    study = open_study(folder)
    killed = study.ask()  # a worker killed while it trained units=8
    killed.suggest_categorical("units", ["8", "16"])
    (point,) = [point for point in grid.points() if point.params() == killed.params]
    (folder.run_dir(point)).mkdir()
    (folder.run_dir(point) / "checkpoint.json").write_text("{}")
    study = prepare(folder)
    stale, retry = study.trials
    assert stale.state == optuna.trial.TrialState.FAIL and stale.user_attrs["status"] == "interrupted"
    assert retry.state == optuna.trial.TrialState.WAITING and retry.system_attrs["fixed_params"] == killed.params
    assert has_work(study, grid)
    assert folder.command(point)[2:] == ["--resume", str(folder.run_dir(point)), "--quiet"]
    with pytest.raises(SweepError, match="holds another sweep"):  # the same folder with other flags
        Sweep(folder.folder, grid, ("--epochs", "4"), ROOT / "train.py").save()


def test_the_hparams_summaries_are_those_of_tensorboard_s_v1_api():
    pytest.importorskip("tensorflow")  # the v1 API imports it
    from tensorboard.plugins.hparams import api_pb2, metadata
    from tensorboard.plugins.hparams import summary as v1

    import train

    grid = parse_grid(["units=8,16", "dropout=0,0.5", "cell=lstm,gru", "chord-symbols=true,false"], train.build_parser)
    point = grid.points()[-1]
    ours = hparams.experiment_summary(grid, ["val_last_loss"], 1234.5)
    experiment = metadata.parse_experiment_plugin_data(ours.value[0].metadata.plugin_data.content)
    theirs = v1.experiment_pb(experiment.hparam_infos, experiment.metric_infos, time_created_secs=1234.5)
    assert ours.SerializeToString() == theirs.SerializeToString()
    typed = {"units": 16, "dropout": 0.5, "cell": "gru", "chord-symbols": False}
    assert hparams.session_start_summary(grid, point, 99.0).SerializeToString(
        deterministic=True
    ) == v1.session_start_pb(typed, start_time_secs=99.0).SerializeToString(deterministic=True)
    assert (
        hparams.session_end_summary(api_pb2.STATUS_FAILURE, 100.0).SerializeToString()
        == v1.session_end_pb(api_pb2.STATUS_FAILURE, end_time_secs=100.0).SerializeToString()
    )
