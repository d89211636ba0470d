"""A sweep's results: one row per point, from its trials, as results.md, results.csv and the console table.

A point's row comes from its completed trial, else from its last attempt (failed or
interrupted); its time is train.py's wall time over every attempt. The best row is the
completed point with the lowest best validation value (one per monitored value, when the
grid mixes heads or representations whose values are not comparable).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, replace
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from note_matrix import atomic, runs
from note_matrix.sweeps.attempt import DONE, FAILED, INTERRUPTED
from note_matrix.sweeps.folder import RESULTS_CSV, RESULTS_MD, Sweep
from note_matrix.sweeps.grid import Point
from note_matrix.sweeps.study import STALE, trials_by_point

NOT_RUN = "not run"


@dataclass(frozen=True)
class PointResult:
    """A point's row: ``status`` (``done``, ``failed``, ``interrupted``, ``not run``); the ``monitor``,
    its ``best_value`` at ``best_epoch`` (1-based) of the ``epochs`` run (so far, for a run stopped
    midway); ``seconds`` over every attempt; ``run_dir`` relative to the sweep folder; ``failure``: why
    it is not done; ``best``: the done point with the lowest value of its monitor."""

    point: Point
    status: str
    seconds: float = 0.0
    monitor: str | None = None
    best_value: float | None = None
    best_epoch: int | None = None
    epochs: int | None = None
    run_dir: str | None = None
    failure: str | None = None
    best: bool = False
    accuracy: float | None = None  # the run's validation accuracy at its best epoch, where it has one


def validation_accuracy(run_dir: Path, best_epoch: int | None) -> float | None:
    """``val_accuracy`` at ``best_epoch`` (1-based) in the run's ``history.json``; None where it has none
    (a head without an accuracy, a run not done)."""
    history = runs.read_json(run_dir / runs.HISTORY_FILE)
    values = (history.get("epochs") or {}).get("val_accuracy") if isinstance(history, dict) else None
    if best_epoch is None or not isinstance(values, list) or not 0 < best_epoch <= len(values):
        return None
    value = values[best_epoch - 1]
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def point_result(point: Point, trials: list[FrozenTrial]) -> PointResult:
    """The row of ``point`` from its trials (a duplicate, pruned before training, counts for nothing)."""
    tried = [trial for trial in trials if trial.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING)]
    if not tried:
        return PointResult(point, NOT_RUN)
    complete = [trial for trial in tried if trial.state == TrialState.COMPLETE]
    trial = complete[-1] if complete else tried[-1]
    attributes = trial.user_attrs
    seconds = sum(other.user_attrs.get("seconds", 0.0) for other in tried)
    if trial.state == TrialState.RUNNING:  # a worker killed outright; the next run of the sweep continues it
        return PointResult(point, INTERRUPTED, seconds, run_dir=point.name, failure=STALE)
    status = DONE if complete else attributes.get("status", FAILED)
    return PointResult(
        point,
        status,
        seconds,
        attributes.get("monitor"),
        trial.value if complete else attributes.get("best_value"),
        attributes.get("best_epoch"),
        attributes.get("epochs"),
        attributes.get("run_dir"),
        attributes.get("failure"),
    )


def collect(sweep: Sweep, study: optuna.Study) -> list[PointResult]:
    """Every point's row, in the grid's order, the best one marked (one per monitored value: a sweep over
    heads or representations compares each value only with its own kind)."""
    by_point = trials_by_point(study, sweep.grid)
    results = [point_result(point, by_point.get(point.name, [])) for point in sweep.grid.points()]
    results = [
        replace(result, accuracy=validation_accuracy(sweep.folder / result.run_dir, result.best_epoch))
        if result.status == DONE and result.run_dir
        else result
        for result in results
    ]
    done = [result for result in results if result.status == DONE]
    best = [
        min((result for result in done if result.monitor == monitor), key=lambda result: result.best_value)
        for monitor in monitors(done)
    ]
    return [replace(result, best=any(result is other for other in best)) for result in results]


def monitors(results: list[PointResult]) -> list[str]:
    """The monitored values the points used, in order of first use."""
    return list(dict.fromkeys(result.monitor for result in results if result.monitor))


def markdown_table(sweep: Sweep, results: list[PointResult]) -> str:
    """The Markdown table: the grid's keys, the best validation value, its epoch, the epochs run, the time,
    the status; the best row marked **best**, a failed row with its reason."""
    names = monitors(results)
    value_header = f"best {names[0]}" if len(names) == 1 else "best validation value"
    accuracy = any(result.accuracy is not None for result in results)
    header = [key.name for key in sweep.grid.keys] + [value_header] + ["val_accuracy"] * accuracy
    header += ["epoch", "epochs", "time", "status", "note"]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * len(sweep.grid.keys) + ["---:"] * (4 + accuracy) + ["---", "---"]) + "|",
    ]
    for result in results:
        value = "" if result.best_value is None else f"{result.best_value:.6g}"
        if len(names) > 1 and result.monitor:
            value += f" ({result.monitor})"
        note = (f"**best {result.monitor}**" if len(names) > 1 else "**best**") if result.best else result.failure
        note = (note or "").replace("|", "\\|")
        cells = [setting for _, setting in result.point.values] + [value]
        if accuracy:
            cells.append("" if result.accuracy is None else f"{result.accuracy:.4f}")
        cells += [
            _number(result.best_epoch),
            _number(result.epochs),
            format_seconds(result.seconds),
            result.status,
            note,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(sweep: Sweep, results: list[PointResult]) -> None:
    """results.md (a title, the table, what the value is) and results.csv, each written whole."""
    names = monitors(results)
    done = sum(result.status == DONE for result in results)
    text = (
        f"# Sweep {sweep.name}\n\n{done} of {len(results)} points done. Best validation value: the value each run "
        f"kept its best model by ({', '.join(names) or 'none yet'}), at that epoch"
        + (
            "; val_accuracy: the validation accuracy at that epoch"
            if any(r.accuracy is not None for r in results)
            else ""
        )
        + "; time: train.py's wall time.\n\n"
        f"{markdown_table(sweep, results)}"
    )
    atomic.write_text(sweep.folder / RESULTS_MD, text, sync=False)
    atomic.write_text(sweep.folder / RESULTS_CSV, csv_text(sweep, results), sync=False)


def csv_text(sweep: Sweep, results: list[PointResult]) -> str:
    """One row per point: the keys, then status, monitor, best_value (full precision), best_epoch, epochs,
    seconds, best (1 for the best row), run_dir, failure."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [key.name for key in sweep.grid.keys]
        + [
            "status",
            "monitor",
            "best_value",
            "val_accuracy",
            "best_epoch",
            "epochs",
            "seconds",
            "best",
            "run_dir",
            "failure",
        ]
    )
    for result in results:
        writer.writerow(
            [setting for _, setting in result.point.values]
            + [
                result.status,
                result.monitor or "",
                "" if result.best_value is None else repr(result.best_value),
                "" if result.accuracy is None else repr(result.accuracy),
                _number(result.best_epoch),
                _number(result.epochs),
                f"{result.seconds:.3f}",
                int(result.best),
                result.run_dir or "",
                result.failure or "",
            ]
        )
    return buffer.getvalue()


def progress_line(result: PointResult, finished: int, total: int) -> str:
    """``[3/16] units=50,dropout=0.1: done, best val_last_mse 0.17864 at epoch 2 of 2, 21 s``."""
    if result.status == DONE:
        what = f"done, best {result.monitor} {result.best_value:.6g} at epoch {result.best_epoch} of {result.epochs}"
    else:
        what = f"{result.status}: {result.failure}"
    return f"[{finished}/{total}] {result.point.label}: {what}, {format_seconds(result.seconds)}"


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``2 h 7 min``."""
    if not math.isfinite(seconds) or seconds <= 0:
        return ""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def _number(value: int | None) -> str:
    return "" if value is None else str(value)
