"""Run files read as untrusted: every field of config.json, split.json, calibration.json and
checkpoint.json checked on load, with one line naming the file and the field; evaluation.json
read without ever raising; ``--model`` given the run's model.keras."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import evaluate
import generate
import train
from note_matrix import runs


def copy_run(trained_run: Path, tmp_path: Path) -> Path:
    """A copy of the tiny trained run, free to tamper with."""
    return Path(shutil.copytree(trained_run, tmp_path / "logs" / "tiny"))


def files_under(folder: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def refused(script, argv: list[str], tmp_path: Path, capsys) -> str:
    """``script.main(argv)``'s one error line, once it has exited 2 without writing under ``tmp_path``."""
    before = files_under(tmp_path)
    assert script.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert files_under(tmp_path) == before
    return lines[0]


def refused_by_both(run: Path, seed: Path, tmp_path: Path, capsys) -> list[str]:
    """The error lines of generate.py and evaluate.py on ``run`` (each exit 2, one line, nothing written)."""
    return [
        refused(generate, ["--seed", str(seed), "--model", str(run), "--quiet"], tmp_path, capsys),
        refused(evaluate, ["--model", str(run), "--quiet"], tmp_path, capsys),
    ]


def _set(*keys, value):
    """An edit of the parsed JSON: ``value`` at ``keys`` (``value`` ``KeyError``: the key removed)."""

    def edit(data):
        for key in keys[:-1]:
            data = data[key]
        if value is KeyError:
            del data[keys[-1]]
        else:
            data[keys[-1]] = value

    return edit


def _tamper(run: Path, name: str, edit) -> None:
    path = run / name
    if isinstance(edit, str):
        path.write_text(edit)
        return
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


DEEP = "[" * 10_000 + "]" * 10_000

CONFIG_VALUES = [  # (edit, what the line says after "config.json: ")
    (_set("train", "window_length", value=-5), "train: window_length must be at least 1, got -5"),
    (_set("train", "window_length", value=0), "train: window_length must be at least 1, got 0"),
    (_set("train", "window_length", value="abc"), "field train.window_length must be int, got 'abc'"),
    (
        _set("train", "model", "head", value="xyz"),
        "field train.model.head must be one of regression, categorical, mdn, got 'xyz'",
    ),
    (_set("representation", "time_scale_seconds", value=-1.0), "time_scale_seconds must be positive, got -1.0"),
    (_set("representation", "time_scale_seconds", value="abc"), "could not convert string to float: 'abc'"),
    (
        _set("representation", "time_scale_seconds", value=float("nan")),
        "field representation.time_scale_seconds must be a finite number",
    ),
    (
        _set("train", "model", "learning_rate", value=float("inf")),
        "field train.model.learning_rate must be a finite number",
    ),
    (_set("train", value=KeyError), "missing field train"),
    ("[1, 2]", "the file must be a JSON object, got list"),
    (DEEP, "unreadable run configuration (arrays and objects nested 10,000 deep, over the limit of 32)"),
    ('{"train": {"window_length": 1' + "0" * 5000 + "}}", "unreadable run configuration (Exceeds the limit"),
]


@pytest.mark.parametrize(("edit", "message"), CONFIG_VALUES)
def test_tampered_config_json_is_one_line_from_generate_and_evaluate(
    edit, message, trained_run, song_folder, tmp_path, capsys
):
    run = copy_run(trained_run, tmp_path)
    _tamper(run, runs.CONFIG_FILE, edit)
    for script, line in zip(
        ("generate.py", "evaluate.py"), refused_by_both(run, song_folder / "song0.mid", tmp_path, capsys)
    ):
        assert line.startswith(f"{script}: error: {run / runs.CONFIG_FILE}: ") and message in line


CALIBRATION_VALUES = [  # (edit, what the line says after "calibration.json: ", evaluate.py too)
    (
        _set("residual_std", "note", value=float("nan")),
        "field residual_std.note must be a finite positive number",
        True,
    ),
    (
        _set("residual_std", "velocity", value=float("inf")),
        "field residual_std.velocity must be a finite positive number",
        True,
    ),
    (_set("residual_std", "time", value=-0.1), "field residual_std.time must be a finite positive number", True),
    (_set("residual_std", "time", value=0), "field residual_std.time must be a finite positive number, got 0", True),
    (_set("residual_std", "note", value="wide"), "field residual_std.note must be a finite positive number", False),
    (_set("residual_std", value=KeyError), "missing field residual_std", False),
    ("[]", "the file must be a JSON object, got list", False),
    ("{", "unreadable calibration (Expecting property name", False),
]


@pytest.mark.parametrize(("edit", "message", "evaluate_too"), CALIBRATION_VALUES)
def test_tampered_calibration_json_is_one_line(edit, message, evaluate_too, trained_run, song_folder, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path)
    _tamper(run, runs.CALIBRATION_FILE, edit)
    # --temperature 1: the regression head samples around its prediction with the calibrated spread.
    lines = [
        (
            "generate.py",
            refused(
                generate,
                ["--seed", str(song_folder / "song0.mid"), "--model", str(run), "--quiet", "--temperature", "1"],
                tmp_path,
                capsys,
            ),
        )
    ]
    if evaluate_too:  # evaluate.py reads it after scoring the test windows: a few seconds each
        lines.append(("evaluate.py", refused(evaluate, ["--model", str(run), "--quiet"], tmp_path, capsys)))
    for script, line in lines:
        assert line.startswith(f"{script}: error: {run / runs.CALIBRATION_FILE}: ") and message in line


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("test", value=KeyError), "missing field test"),
        (_set("test", value=[1, 2]), "field test must be a list of file names, got [1, 2]"),
        (_set("train", value="song0.mid"), "field train must be a list of file names"),
        ("[]", "the file must be a JSON object, got list"),
        (DEEP, "unreadable split"),
    ],
)
def test_tampered_split_json_is_one_line_from_evaluate(edit, message, trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path)
    _tamper(run, runs.SPLIT_FILE, edit)
    line = refused(evaluate, ["--model", str(run), "--quiet"], tmp_path, capsys)
    assert line.startswith(f"evaluate.py: error: {run / runs.SPLIT_FILE}: ") and message in line


def test_missing_split_json_is_one_line_from_evaluate(trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path)
    (run / runs.SPLIT_FILE).unlink()
    line = refused(evaluate, ["--model", str(run), "--quiet"], tmp_path, capsys)
    assert (
        line == f"evaluate.py: error: {run / runs.SPLIT_FILE}: unreadable split of the run's files (No such file "
        "or directory)"
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set("model", value="../../elsewhere/checkpoint-0002.keras"), "field model must be a checkpoint file name"),
        (_set("epochs_done", value="2"), "field epochs_done must be a whole number, got '2'"),
        (_set("history", value=[1]), "field history must be an object of lists of numbers"),
        (_set("seed_generators", value=KeyError), "missing field seed_generators"),
        (_set("format", value=2), "field format must be 1, the checkpoint format this version reads, got 2"),
        ("[]", "the file must be a JSON object, got list"),
        (DEEP, "unreadable checkpoint (arrays and objects nested 10,000 deep"),
    ],
)
def test_tampered_checkpoint_json_is_one_line_from_resume(edit, message, trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path)
    _tamper(run, runs.CHECKPOINT_FILE, edit)
    line = refused(train, ["--resume", str(run), "--epochs", "3", "--quiet"], tmp_path, capsys)
    assert line.startswith(f"train.py: error: {run / runs.CHECKPOINT_FILE}: ") and message in line


def test_checkpoint_json_as_training_writes_it_is_accepted(trained_run):
    assert runs.read_checkpoint(trained_run)["epochs_done"] == 2


@pytest.mark.parametrize("content", ["[1, 2]", DEEP, "{"])
def test_unreadable_evaluation_json_is_replaced_not_a_traceback(content, trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path)
    (run / runs.EVALUATION_FILE).write_text(content)
    assert evaluate.main(["--model", str(run), "--quiet"]) == 0
    assert list(json.loads((run / runs.EVALUATION_FILE).read_text())) == ["test"]


def test_run_files_that_are_not_regular_files_are_refused_without_blocking(trained_run, song_folder, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path)
    (run / runs.CONFIG_FILE).unlink()
    (run / runs.CONFIG_FILE).symlink_to("/dev/zero")
    for line in refused_by_both(run, song_folder / "song0.mid", tmp_path, capsys):
        assert line.endswith(f"{run / runs.CONFIG_FILE}: unreadable run configuration (not a regular file)")


def test_model_flag_takes_the_run_folder_or_its_model_file(trained_run, song_folder, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path)
    out = tmp_path / "out.mid"
    argv = ["--seed", str(song_folder / "song0.mid"), "--length", "20", "--out", str(out), "--quiet"]
    assert generate.main([*argv, "--model", str(run / runs.MODEL_FILE)]) == 0
    assert out.is_file() and f"({run.name}, seed" in capsys.readouterr().out
    assert runs.find_run(str(run / runs.MODEL_FILE), "logs") == run
    assert runs.find_run(str(run), "logs") == run


def test_a_model_file_outside_a_run_names_what_to_pass(trained_run, song_folder, tmp_path, capsys):
    lone = tmp_path / "elsewhere" / runs.MODEL_FILE
    lone.parent.mkdir()
    shutil.copy(trained_run / runs.MODEL_FILE, lone)
    lines = refused_by_both(lone, song_folder / "song0.mid", tmp_path, capsys)
    for script, line in zip(("generate.py", "evaluate.py"), lines):
        assert line.startswith(f"{script}: error: {lone}: ") and "pass the run folder (" in line


def test_a_hostile_created_field_does_not_break_the_newest_run(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path)
    other = Path(shutil.copytree(run, tmp_path / "logs" / "other"))
    _tamper(other, runs.CONFIG_FILE, _set("created", value=5))
    assert runs.newest_run(tmp_path / "logs") == run


def test_parse_json_bounds_the_nesting_whatever_the_strings_hold():
    assert runs.parse_json('{"a": ["[[[[", {"b": "\\"]]]"}]}') == {"a": ["[[[[", {"b": '"]]]'}]}
    assert json.dumps(runs.parse_json("[" * 32 + "]" * 32)) == "[" * 32 + "]" * 32
    with pytest.raises(ValueError, match="nested 33 deep, over the limit of 32"):
        runs.parse_json("[" * 33 + "]" * 33)
