"""What sweep.py prints: the dry run's points and commands, a line per finished point under a bar of
points done (on a terminal), and the closing table."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from tqdm import tqdm

from note_matrix import runs
from note_matrix.sweeps.folder import CURVES_PNG, OUTPUT_FOLDER, RESULTS_CSV, RESULTS_MD, Sweep
from note_matrix.sweeps.results import PointResult, markdown_table, progress_line


def shown_command(command: list[str]) -> str:
    """A command as a user would type it: ``python train.py ...`` (train.py relative to here when below it)."""
    script = Path(command[1])
    try:
        script = script.relative_to(Path.cwd())
    except ValueError:
        pass
    return shlex.join(["python", str(script), *command[2:]])


def describe(sweep: Sweep) -> str:
    """``logs/x: 16 points (units x dropout)``."""
    return f"{sweep.folder}: {len(sweep.grid.points())} points ({' x '.join(key.name for key in sweep.grid.keys)})"


def dry_run(sweep: Sweep, statuses: dict[str, str]) -> str:
    """Each point (with its status, if the sweep has run before) and the train.py command it would run."""
    lines = [f"Sweep {describe(sweep)}; --dry-run: nothing is trained"]
    for point in sweep.grid.points():
        status = statuses.get(point.name)
        lines.append(point.label + (f"  ({status})" if status else ""))
        lines.append("  " + shown_command(sweep.command(point)))
    return "\n".join(lines)


class Progress:
    """What ``run_sweep`` reports to: the work ahead, then each finished point's line above a bar of points
    done (on a terminal)."""

    bar: tqdm | None = None

    def begin(self, finished: int, total: int, workers: int) -> None:
        print(
            f"{finished} of {total} points done; training {total - finished} in {workers} worker "
            f"process{'es' if workers > 1 else ''}",
            flush=True,
        )
        self.bar = tqdm(total=total, initial=finished, unit="point", desc="points", disable=None, file=sys.stderr)

    def point(self, result: PointResult, finished: int, total: int) -> None:
        self.bar.write(progress_line(result, finished, total), file=sys.stdout)
        sys.stdout.flush()
        self.bar.n = finished
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _seed_flag(run_dir: Path) -> str:
    """`` --seed <song.mid>`` for a run generate.py primes with a seed; nothing for one that needs no
    seed (``abc_chars``); the seed hint for one whose config cannot be read."""
    from note_matrix.representations import primed_by_seed

    try:
        name = runs.read_json(run_dir / runs.CONFIG_FILE)["train"]["representation"]
        return " --seed <song.mid>" if primed_by_seed(name) else ""
    except (KeyError, TypeError, ValueError):  # no or another config.json: the usual hint
        return " --seed <song.mid>"


def summary(sweep: Sweep, results: list[PointResult]) -> str:
    """The table, where the outputs are, and how to look at them."""
    folder = sweep.folder
    lines = [
        "",
        markdown_table(sweep, results),
        (
            f"Results: {folder / RESULTS_MD}, {folder / RESULTS_CSV}, {folder / CURVES_PNG}; "
            f"train.py's output per point in {folder / OUTPUT_FOLDER}{os.sep}"
        ),
        f"TensorBoard (HParams): tensorboard --logdir {folder}",
    ]
    for result in results:
        if result.best:
            run_dir = sweep.run_dir(result.point)
            lines.append(f"Generate: python generate.py --model {run_dir}{_seed_flag(run_dir)}")
    return "\n".join(lines)
