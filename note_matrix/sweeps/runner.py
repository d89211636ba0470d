"""The parent of a sweep: its lock, the worker processes, a line per finished point, and a clean stop.

Each worker is a process of its own session (``start_new_session``), so Ctrl-C in the
terminal reaches only this process; it passes SIGINT on to each worker's process group, the
worker and its train.py together: train.py saves its last finished epoch and exits, the
worker fails that trial as interrupted and ends. A second Ctrl-C kills them outright (the
next run still resumes each run from its last checkpoint).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from optuna.trial import TrialState

from note_matrix.sweeps import hparams
from note_matrix.sweeps.attempt import DONE
from note_matrix.sweeps.folder import Sweep, lock_sweep
from note_matrix.sweeps.results import PointResult, point_result
from note_matrix.sweeps.study import has_work, prepare, trials_by_point
from note_matrix.sweeps.worker import INTERRUPTED_STATUS

POLL_SECONDS = 0.5
ROOT = Path(__file__).resolve().parents[2]  # the folder holding note_matrix: the workers import it from there
GPU_SHARING = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}  # JAX, TensorFlow
STOPPING = "sweep.py: stopping: each run saves its last finished epoch (Ctrl-C again to kill them)"


@dataclass(frozen=True)
class Run:
    """What ``run_sweep`` did: ``workers`` started, ``interrupted`` by a signal, ``crashed`` workers' statuses."""

    workers: int = 0
    interrupted: bool = False
    crashed: tuple[int, ...] = ()


class _Signals:
    """Counts SIGINT and SIGTERM while installed, instead of raising KeyboardInterrupt in the middle of
    reading the study; ``on_signal(count)`` acts on each."""

    def __init__(self, on_signal: Callable[[int], None]):
        self.count = 0
        self.on_signal = on_signal

    def __enter__(self):
        self._previous = {number: signal.signal(number, self._handle) for number in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc_info):
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, signum, frame) -> None:
        self.count += 1
        self.on_signal(self.count)


class Reporter(Protocol):
    """Told of the work ahead (points ``finished`` of ``total``, in how many ``workers``), then of each point
    that finishes."""

    def begin(self, finished: int, total: int, workers: int) -> None: ...

    def point(self, result: PointResult, finished: int, total: int) -> None: ...


def run_sweep(sweep: Sweep, jobs: int, report: Reporter) -> Run:
    """Train every point of ``sweep`` not done yet in up to ``jobs`` worker processes, telling ``report``.
    ``SweepError`` if another sweep.py holds the folder."""
    sweep.save()
    lock = lock_sweep(sweep)
    try:
        study = prepare(sweep)
        if not has_work(study, sweep.grid):
            return Run()
        by_point = trials_by_point(study, sweep.grid)
        total = len(sweep.grid.points())
        left = sum(point_result(point, by_point.get(point.name, [])).status != DONE for point in sweep.grid.points())
        hparams.write_experiment(sweep.folder, sweep.grid, [])  # for TensorBoard while the sweep runs
        report.begin(total - left, total, min(jobs, left))
        workers = [_start_worker(sweep, lock, shared_gpu=jobs > 1) for _ in range(min(jobs, left))]
        with _Signals(lambda count: _pass_on(workers, count)) as signals:
            _watch(sweep, study, workers, signals, report, total - left, total)
        crashed = tuple(worker.returncode for worker in workers if worker.returncode not in (0, INTERRUPTED_STATUS))
        return Run(len(workers), signals.count > 0, crashed)
    finally:
        os.close(lock)


def _start_worker(sweep: Sweep, lock: int, *, shared_gpu: bool) -> subprocess.Popen:
    """A worker process in a session of its own, holding the sweep's lock; ``shared_gpu``: several train.py
    at once, each taking GPU memory as it needs it rather than most of it up front (unless set already)."""
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if shared_gpu:
        for name, value in GPU_SHARING.items():
            environment.setdefault(name, value)
    return subprocess.Popen(
        [sys.executable, "-m", "note_matrix.sweeps.worker", str(sweep.folder), str(sweep.train_script), str(lock)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        pass_fds=(lock,),
        env=environment,
        start_new_session=True,
    )


def _pass_on(workers: list[subprocess.Popen], count: int) -> None:
    """SIGINT to each running worker's process group the first time, SIGKILL after (in a signal handler:
    nothing printed here, where it could cut into a line being written)."""
    for worker in workers:
        if worker.poll() is None:
            try:
                os.killpg(worker.pid, signal.SIGINT if count == 1 else signal.SIGKILL)
            except ProcessLookupError:
                pass


def _watch(
    sweep: Sweep, study, workers: list[subprocess.Popen], signals: _Signals, report: Reporter, finished: int, total: int
) -> None:
    """Report each trial that ends, until every worker has exited."""
    seen = {trial.number for trial in study.get_trials(deepcopy=False) if trial.state.is_finished()}
    told = False
    while True:
        running = any(worker.poll() is None for worker in workers)
        if signals.count and not told:
            print(STOPPING, file=sys.stderr, flush=True)
            told = True
        ended = [
            trial
            for trial in study.get_trials(deepcopy=False)
            if trial.number not in seen and trial.state in (TrialState.COMPLETE, TrialState.FAIL) and trial.params
        ]
        by_point = trials_by_point(study, sweep.grid) if ended else {}
        for trial in ended:
            seen.add(trial.number)
            point = sweep.grid.point(trial.params)
            finished += 1
            report.point(point_result(point, by_point[point.name]), finished, total)
        if not running:
            return
        time.sleep(POLL_SECONDS)
