"""A sweep's folder, what it holds, and the train.py command of each point.

::

    logs/<sweep>/sweep.json        the grid and the fixed train.py flags (a re-run must match)
    logs/<sweep>/optuna.journal    Optuna's study: every trial, shared by the worker processes
    logs/<sweep>/<point>/          train.py's run folder of each point (``units=50,dropout=0``)
    logs/<sweep>/output/<point>.log   what train.py printed for the point, every attempt
    logs/<sweep>/results.md, results.csv, loss_curves.png, events.out.tfevents.*.sweep (HParams)
    logs/<sweep>/.locks/           one lock per point and one for the sweep (flock, gone with the process)
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from note_matrix import runs
from note_matrix.sweeps.grid import Grid, Point, SweepError

SWEEP_FILE = "sweep.json"
JOURNAL_FILE = "optuna.journal"
OUTPUT_FOLDER = "output"
LOCK_FOLDER = ".locks"
SWEEP_LOCK = "sweep.lock"
RESULTS_MD = "results.md"
RESULTS_CSV = "results.csv"
CURVES_PNG = "loss_curves.png"
SWEEP_FORMAT = 1


@dataclass(frozen=True)
class Sweep:
    """A grid trained with fixed train.py flags into ``folder``, with ``train_script`` (train.py)."""

    folder: Path
    grid: Grid
    fixed: tuple[str, ...]
    train_script: Path

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def journal(self) -> Path:
        return self.folder / JOURNAL_FILE

    def run_dir(self, point: Point) -> Path:
        return self.folder / point.name

    def output_file(self, point: Point) -> Path:
        return self.folder / OUTPUT_FOLDER / f"{point.name}.log"

    def command(self, point: Point) -> list[str]:
        """train.py's command for a point: a new run, or ``--resume`` of one stopped after an epoch."""
        run_dir = self.run_dir(point)
        if (run_dir / runs.CHECKPOINT_FILE).is_file():
            return [sys.executable, str(self.train_script), "--resume", str(run_dir), "--quiet"]
        return [
            sys.executable,
            str(self.train_script),
            *self.grid.fixed_flags(point, list(self.fixed)),
            *self.grid.flags(point),
            "--logdir",
            str(self.folder),
            "--run-name",
            point.name,
            "--quiet",
        ]

    def to_json(self) -> dict:
        return {"format": SWEEP_FORMAT, "grid": self.grid.to_json(), "fixed": list(self.fixed)}

    def save(self) -> None:
        """Write ``sweep.json``; ``SweepError`` if the folder holds another sweep."""
        path = self.folder / SWEEP_FILE
        if runs.read_json(path) == self.to_json():
            return
        if path.exists():
            raise SweepError(
                f"{self.folder} holds another sweep ({path}: other grid or train.py flags); "
                "give the same arguments to continue it, or another --name"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        runs.write_json(path, self.to_json())

    @classmethod
    def load(cls, folder: Path, train_script: Path) -> Sweep:
        saved = runs.read_json(Path(folder) / SWEEP_FILE)
        if not isinstance(saved, dict) or saved.get("format") != SWEEP_FORMAT:
            raise SweepError(f"{folder}: no readable {SWEEP_FILE}")
        return cls(Path(folder), Grid.from_json(saved["grid"]), tuple(saved["fixed"]), Path(train_script))


def default_name(grid: Grid, fixed: list[str]) -> str:
    """``sweep-<keys>-<hash>``: the same for the same grid and flags, so re-running a command continues it."""
    text = json.dumps({"grid": grid.to_json(), "fixed": fixed}, sort_keys=True)
    return f"sweep-{'-'.join(key.name for key in grid.keys)}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def hold_lock(path: Path) -> int | None:
    """An open file descriptor holding an exclusive ``flock`` on ``path``, or None if another process holds it.

    The lock goes with the last process holding the descriptor (also one killed), so it is never stale;
    passed to child processes, it stays held until they end too.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    return descriptor


def lock_sweep(sweep: Sweep) -> int:
    """Hold the sweep's lock; ``SweepError`` if another sweep.py is working in its folder."""
    descriptor = hold_lock(sweep.folder / LOCK_FOLDER / SWEEP_LOCK)
    if descriptor is None:
        raise SweepError(f"{sweep.folder}: another sweep.py is training this sweep; wait for it or stop it first")
    return descriptor


def point_lock(sweep: Sweep, point: Point) -> int | None:
    """Hold the point's lock (None: another worker trains it)."""
    return hold_lock(sweep.folder / LOCK_FOLDER / f"{point.name}.lock")
