"""Comparing runs of different windows on the same files and rows: ``train.py --split-from
RUN`` trains, validates and tests on RUN's files (those too short for the window left
out), and ``evaluate.py --score-from N`` scores only the rows from index N of each file.
Without them, the split is drawn over the files long enough for the window, so a longer
window moves files between the parts."""

from __future__ import annotations

import json

import numpy as np
import pytest

import evaluate
import train
from note_matrix import run_data
from note_matrix.errors import RunError
from note_matrix.evaluation.scores import scored_files
from tests.midi_factory import random_song

TINY = ["--units", "8", "--epochs", "1", "--batch-size", "8", "--sample-every", "0", "--histogram-freq", "100",
        "--validation-fraction", "0.25", "--test-fraction", "0.25", "--quiet"]


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    """12 songs of 14 to 80 notes: a window of 40 rows leaves the shorter ones out."""
    folder = tmp_path_factory.mktemp("songs")
    rng = np.random.default_rng(5)
    for index, notes in enumerate(np.linspace(14, 80, 12).astype(int)):
        random_song(folder / f"song{index:02d}.mid", rng, int(notes))
    return folder


def _train(songs, base, name: str, *flags: str):
    argv = ["--dataset", str(songs), "--data-dir", str(base / "data"), "--logdir", str(base / "logs"), "--run-name",
            name, *TINY, *flags]
    return train.main(argv)


@pytest.fixture(scope="module")
def runs_of_two_windows(songs, tmp_path_factory):
    """(short: window 10, long: window 40 on short's split, plain: window 40 split by itself, base folder)."""
    base = tmp_path_factory.mktemp("split-from")
    assert _train(songs, base, "short", "--window", "10") == 0
    assert _train(songs, base, "long", "--window", "40", "--split-from", str(base / "logs" / "short")) == 0
    assert _train(songs, base, "plain", "--window", "40") == 0
    return base / "logs" / "short", base / "logs" / "long", base / "logs" / "plain", base


def _split(run) -> dict:
    return json.loads((run / "split.json").read_text())


def test_split_from_keeps_the_runs_files_in_their_parts_leaving_out_the_short_ones(runs_of_two_windows):
    short, long, plain, _ = runs_of_two_windows
    rows = {key: len(array) for key, array in run_data.encode(run_data.open_run(short)).arrays.items()}
    expected = {part: [key for key in _split(short)[part] if rows[key] > 40] for part in run_data.PARTS}
    assert {part: _split(long)[part] for part in run_data.PARTS} == expected
    assert sum(map(len, expected.values())) < len(rows)  # the window of 40 did leave some files out
    # without --split-from the same window draws its own split: files move between the parts
    assert {part: _split(plain)[part] for part in run_data.PARTS} != expected
    assert json.loads((long / "config.json").read_text())["train"]["split_from"] == str(short)


def test_score_from_scores_runs_of_different_windows_on_the_same_rows(runs_of_two_windows, tmp_path, capsys):
    short, long, _, _ = runs_of_two_windows
    entries = []
    for run in (short, long):
        path = tmp_path / f"{run.name}.json"
        argv = ["--model", str(run), "--split", "validation", "--score-from", "40", "--json", str(path), "--quiet"]
        assert evaluate.main(argv) == 0
        entries.append(json.loads(path.read_text())["validation"])
    arrays = run_data.encode(run_data.open_run(short)).arrays
    files = [key for key in _split(short)["validation"] if len(arrays[key]) > 40]
    assert files and [entry["files"] for entry in entries] == [files, files]
    assert [entry["rows"] for entry in entries] == [sum(len(arrays[key]) - 40 for key in files)] * 2
    assert "rows scored (every row after the first 40 of each file)" in capsys.readouterr().out
    assert evaluate.main(["--model", str(long), "--score-from", "20", "--json", str(tmp_path / "x.json")]) == 2
    assert capsys.readouterr().err.strip() == (
        "evaluate.py: error: --score-from 20: the run reads windows of 40 rows, so no row before index 40 can be "
        "scored")


def test_scored_files_read_each_row_after_the_windows_rows_before_it():
    arrays = {"a": np.arange(50)[:, None], "b": np.arange(30)[:, None], "c": np.arange(41)[:, None]}
    scored = scored_files(arrays, 10, 40)
    assert {key: a[:, 0].tolist() for key, a in scored.items()} == {"a": list(range(30, 50)), "c": list(range(30, 41))}
    assert scored_files(arrays, 10, None) is arrays
    with pytest.raises(RunError, match="--score-from 9: the run reads windows of 10 rows"):
        scored_files(arrays, 10, 9)


def test_split_from_refuses_in_one_line(runs_of_two_windows, songs, tmp_path, capsys):
    short, _, _, base = runs_of_two_windows
    assert _train(songs, tmp_path, "x", "--window", "10", "--split-from", str(tmp_path)) == 2
    assert capsys.readouterr().err.strip() == (
        f"train.py: error: --split-from {tmp_path}: no split.json there (the folder of a finished run holds one)")
    other = tmp_path / "other"
    other.mkdir()
    random_song(other / "a.mid", np.random.default_rng(1), 60)
    assert _train(other, tmp_path, "y", "--window", "10", "--split-from", str(short)) == 2
    assert capsys.readouterr().err.strip() == (
        f"train.py: error: --split-from {short}: its split is of the dataset {songs.name}, not other")
    assert _train(songs, tmp_path, "z", "--window", "200", "--split-from", str(short)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("train.py: error: ") and "\n" not in err  # no file has 201 rows: refused before the split
