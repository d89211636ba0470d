"""A worker process of a sweep: ``python -m note_matrix.sweeps.worker <sweep folder> <train.py> <lock fd>``.

It calls ``study.optimize`` for one trial at a time while points are left; each trial trains
its point with train.py (``attempt``) and records the outcome in the trial's user attributes
(what results.md shows and optuna-dashboard lists) and as the point's HParams session. It
prints nothing: the parent reports each finished point from the study.

SIGINT (sent by the parent to the worker's process group, train.py included) does not
interrupt the worker's own writes to the study: it only marks the sweep stopped, and the
trial of the run train.py then saved is failed as interrupted.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import optuna

from note_matrix.sweeps import hparams
from note_matrix.sweeps.attempt import CONTINUED, DONE, INTERRUPTED, Outcome, attempt
from note_matrix.sweeps.folder import Sweep, point_lock
from note_matrix.sweeps.grid import Point
from note_matrix.sweeps.study import has_work, open_study, trials_by_point

INTERRUPTED_STATUS = 130


class PointFailed(Exception):
    """A point whose train.py failed or found no finite value: its trial fails, the sweep goes on."""


class Interrupted(Exception):
    """The sweep was stopped while a point trained: its trial fails and this worker ends."""


class Worker:
    """Trains points of ``sweep`` until none is left or SIGINT comes; ``lock_fd``: the sweep's lock."""

    def __init__(self, sweep: Sweep, lock_fd: int):
        self.sweep = sweep
        self.lock_fd = lock_fd
        self.stopped = False

    def stop(self, signum=None, frame=None) -> None:
        self.stopped = True

    def run(self) -> int:
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGTERM, self.stop)
        study = open_study(self.sweep)
        try:
            while not self.stopped and has_work(study, self.sweep.grid):
                study.optimize(self.objective, n_trials=1, catch=(PointFailed,))
        except Interrupted:
            return INTERRUPTED_STATUS
        return INTERRUPTED_STATUS if self.stopped else 0

    def objective(self, trial: optuna.Trial) -> float:
        grid = self.sweep.grid
        point = grid.point({key.name: trial.suggest_categorical(key.name, list(key.values)) for key in grid.keys})
        if self.stopped:  # SIGINT came as the trial started: train nothing
            trial.set_user_attr("status", INTERRUPTED)
            trial.set_user_attr("failure", CONTINUED)
            raise Interrupted(point.label)
        lock = point_lock(self.sweep, point)
        if lock is None or any(
            other.state == optuna.trial.TrialState.COMPLETE
            for other in trials_by_point(trial.study, grid).get(point.name, [])
        ):
            trial.set_user_attr("status", "duplicate")
            raise optuna.TrialPruned(f"{point.label} is being trained, or was, by another trial")
        try:
            outcome = attempt(self.sweep, point, lambda: self.stopped, keep_fds=(self.lock_fd, lock))
        finally:
            os.close(lock)
        record(trial, point, outcome)
        hparams.write_session(self.sweep.run_dir(point), grid, point, outcome)
        if outcome.status == INTERRUPTED:
            raise Interrupted(outcome.failure)
        if outcome.status != DONE:
            raise PointFailed(outcome.failure)
        return outcome.best_value


def record(trial: optuna.Trial, point: Point, outcome: Outcome) -> None:
    """The outcome as the trial's user attributes."""
    attributes = {
        "status": outcome.status,
        "command": outcome.command,
        "run_dir": point.name,
        "seconds": round(outcome.seconds, 3),
        "monitor": outcome.monitor,
        "best_value": outcome.best_value,
        "best_epoch": outcome.best_epoch,
        "epochs": outcome.epochs,
        "failure": outcome.failure,
    }
    for name, value in attributes.items():
        if value is not None:
            trial.set_user_attr(name, value)


def main(argv: list[str] | None = None) -> int:
    folder, train_script, lock_fd = argv or sys.argv[1:]
    worker = Worker(Sweep.load(Path(folder), Path(train_script)), int(lock_fd))
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed point is reported by the parent, in one line
    return worker.run()


if __name__ == "__main__":
    sys.exit(main())
