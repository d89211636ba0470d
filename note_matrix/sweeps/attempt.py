"""One attempt at a point: train.py in a subprocess, and what its run folder says afterwards.

The objective is the value the run itself kept its best model by: ``history.json``'s
``monitor`` (``val_last_mse`` for the note matrix's regression head, ``val_last_loss`` for
the other heads) at its ``best_epoch``.
"""

from __future__ import annotations

import math
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from note_matrix import runs
from note_matrix.sweeps.folder import Sweep
from note_matrix.sweeps.grid import Point

DONE, FAILED, INTERRUPTED = "done", "failed", "interrupted"
ERROR_PREFIX = "train.py: error:"
CONTINUED = "running the sweep again continues it from its last finished epoch"  # an interrupted point's note


@dataclass(frozen=True)
class Outcome:
    """What an attempt gave: ``status`` (``done``, ``failed``, ``interrupted``), train.py's ``command``
    and wall time (``started`` and ``seconds``), and for a run with a finite best value, the ``monitor``, its
    ``best_value``, the ``best_epoch`` (1-based) and the ``epochs`` run; ``failure`` says why not."""

    status: str
    command: str
    started: float
    seconds: float
    monitor: str | None = None
    best_value: float | None = None
    best_epoch: int | None = None
    epochs: int | None = None
    failure: str | None = None


def attempt(sweep: Sweep, point: Point, stopped: Callable[[], bool], keep_fds: tuple[int, ...] = ()) -> Outcome:
    """Train ``point`` (or resume its stopped run) with train.py, its output appended to the point's log.

    ``stopped``: whether the sweep was interrupted while train.py ran (it gets the same SIGINT, and
    saves its last finished epoch). ``keep_fds``: descriptors train.py inherits (the locks, which then
    stay held while it lives, even if this process is killed).
    """
    clear_unstarted_run(sweep.run_dir(point))
    command = sweep.command(point)
    log = sweep.output_file(point)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"\n=== {runs.utc_now()}: {shlex.join(command)}\n")
        handle.flush()
        offset = handle.tell()
        started, clock = time.time(), time.perf_counter()
        code = subprocess.run(
            command, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, pass_fds=keep_fds, check=False
        ).returncode
        seconds = time.perf_counter() - clock
    outcome = read_outcome(sweep.run_dir(point), shlex.join(command), started, seconds)
    if code == 0:
        return outcome
    if stopped():  # with what the run got to, if it finished an epoch
        return replace(outcome, status=INTERRUPTED, failure=CONTINUED)
    return replace(outcome, status=FAILED, failure=_failure(code, _tail(log, offset)))


def clear_unstarted_run(run_dir: Path) -> None:
    """Remove a run folder without a finished epoch (no ``checkpoint.json``: killed during its first
    epoch, or holding only a failed attempt's HParams events), which train.py would refuse to reuse."""
    if run_dir.is_dir() and not (run_dir / runs.CHECKPOINT_FILE).is_file():
        shutil.rmtree(run_dir)


def read_outcome(run_dir: Path, command: str, started: float, seconds: float) -> Outcome:
    """The finished run's best value, its epoch and the epochs run, from ``history.json``."""
    history = runs.read_json(run_dir / runs.HISTORY_FILE)
    if not isinstance(history, dict) or not isinstance(history.get("monitor"), str):
        return Outcome(
            FAILED, command, started, seconds, failure=f"{run_dir / runs.HISTORY_FILE}: missing or unreadable"
        )
    monitor = history["monitor"]
    best, best_epoch = history.get(f"best_{monitor}"), history.get("best_epoch")
    epochs = len((history.get("epochs") or {}).get(monitor) or [])
    if not isinstance(best, (int, float)) or not math.isfinite(best) or not isinstance(best_epoch, int):
        return Outcome(
            FAILED,
            command,
            started,
            seconds,
            monitor=monitor,
            epochs=epochs,
            failure=f"no finite {monitor} in any of {epochs} epochs",
        )
    return Outcome(DONE, command, started, seconds, monitor, float(best), best_epoch + 1, epochs)


def _tail(log: Path, offset: int) -> list[str]:
    """The lines this attempt wrote to the log."""
    with open(log, encoding="utf-8", errors="replace") as handle:
        handle.seek(offset)
        return [line.strip() for line in handle.read().splitlines() if line.strip()]


def _failure(code: int, lines: list[str]) -> str:
    """One line: train.py's own error line, else the last line it printed (a traceback's exception)."""
    if code < 0:
        return f"train.py was killed by signal {-code}"
    errors = [line for line in lines if line.startswith(ERROR_PREFIX)]
    if errors:
        return errors[-1]
    return f"train.py exited with status {code}" + (f": {lines[-1]}" if lines else "")
