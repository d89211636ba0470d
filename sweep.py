#!/usr/bin/env python
"""Train train.py over a grid of settings, one run folder per point:

    python sweep.py --grid units=50,100,150,200 dropout=0,0.1,0.2,0.3 --jobs 2 -- --dataset pop --epochs 20

Each KEY=V1,V2,... is a train.py flag without its dashes (units, dropout, cell, optimizer,
lr-schedule, window, learning-rate, ...; a switch such as chord-symbols takes true,false);
the points are every combination of the values. The flags after -- are passed to train.py
for every point, except those that belong to one schedule when lr-schedule is swept: --lr-min,
--lr-max and --cycle-steps reach only the cyclic points, --learning-rate only the constant
ones (lr-schedule=constant,cyclic -- --learning-rate 1e-3 --lr-min 1e-4 --lr-max 1e-2). Each point is a normal run, logs/<sweep>/<units=50,dropout=0>/,
for generate.py and evaluate.py (--model logs/<sweep>/<point>). A point train.py rejects
fails with its one-line reason; the others go on.

The sweep folder (logs/<sweep>, --name; by default named after the grid and a hash of the
arguments) holds results.md and results.csv (a row per point: its settings, the best
validation value, the value the run kept its best model by, at its epoch, the epochs run,
the time; the best row marked), loss_curves.png, train.py's output per point in output/,
and TensorBoard's HParams dashboard: tensorboard --logdir logs/<sweep>.

Optuna schedules the points (a GridSampler study in logs/<sweep>/optuna.journal, shared by
the --jobs worker processes). Browse it with optuna-dashboard, if installed (pip install
optuna-dashboard): optuna-dashboard logs/<sweep>/optuna.journal

Stopped (Ctrl-C, killed)? Run the same command again: finished points are not trained
again, a run stopped midway resumes from its last finished epoch (train.py --resume), a
failed point is tried again.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import train
from note_matrix.errors import NoteMatrixError
from note_matrix.sweeps import Sweep, SweepError, check_fixed_flags, default_name, parse_grid

TRAIN_SCRIPT = Path(train.__file__).resolve()
USAGE = (
    "python sweep.py --grid KEY=V1,V2,... [KEY=...] [--jobs N] [--name NAME] [--logdir DIR] [--dry-run] "
    "[-- TRAIN.PY FLAGS]"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sweep.py", usage=USAGE, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--grid",
        nargs="+",
        action="extend",
        required=True,
        metavar="KEY=V1,V2",
        help="a train.py flag and its values; several keys make their cartesian product",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="points trained at once, each by train.py in a worker process (default: %(default)s)",
    )
    parser.add_argument(
        "--name",
        default=None,
        help="the sweep folder's name (default: sweep-<keys>-<hash of the grid and flags>, so that "
        "the same command continues the same sweep)",
    )
    parser.add_argument("--logdir", default="logs", help="where the sweep folder goes (default: %(default)s)")
    parser.add_argument("--dry-run", action="store_true", help="print the points and their train.py commands only")
    return parser


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """sweep.py's own arguments, and the train.py flags after the first ``--``."""
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1 :]
    return argv, []


def make_sweep(args: argparse.Namespace, fixed: list[str]) -> Sweep:
    grid = parse_grid(args.grid, train.build_parser)
    check_fixed_flags(fixed, grid, train.build_parser)
    name = args.name or default_name(grid, fixed)
    if Path(name).name != name or name in (".", ".."):
        raise SweepError(f"--name must be a plain folder name, got {name!r}")
    return Sweep(Path(args.logdir) / name, grid, tuple(fixed), TRAIN_SCRIPT)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    own, fixed = split_argv(argv)
    parser = build_parser()
    args = parser.parse_args(own)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    try:
        sweep = make_sweep(args, fixed)
        return dry_run(sweep) if args.dry_run else run(sweep, args.jobs, argv)
    except NoteMatrixError as error:
        print(f"sweep.py: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nsweep.py: interrupted; continue with: python sweep.py {shlex.join(argv)}", file=sys.stderr)
        return 130


def dry_run(sweep: Sweep) -> int:
    from note_matrix.sweeps.console import dry_run as dry_run_text

    statuses = {}
    if sweep.journal.is_file():  # it has run before: which points are done
        from note_matrix.sweeps.results import collect
        from note_matrix.sweeps.study import open_study

        statuses = {result.point.name: result.status for result in collect(sweep, open_study(sweep))}
    print(dry_run_text(sweep, statuses))
    return 0


def run(sweep: Sweep, jobs: int, argv: list[str]) -> int:
    """Train what is left of the sweep, write its outputs, print its table; the exit status."""
    from note_matrix.sweeps.console import Progress, describe
    from note_matrix.sweeps.outputs import publish
    from note_matrix.sweeps.runner import run_sweep
    from note_matrix.sweeps.study import open_study

    print(f"Sweep {describe(sweep)}", flush=True)
    progress = Progress()
    try:
        outcome = run_sweep(sweep, jobs, progress)
    finally:
        progress.close()
    return finish(sweep, publish(sweep, open_study(sweep)), outcome, argv)


def finish(sweep: Sweep, results: list, outcome, argv: list[str]) -> int:
    """The closing lines: the table, or how to continue an interrupted sweep; 1 if a point is not done."""
    from note_matrix.sweeps.attempt import DONE
    from note_matrix.sweeps.console import summary
    from note_matrix.sweeps.folder import OUTPUT_FOLDER

    done = sum(result.status == DONE for result in results)
    if outcome.interrupted:
        print(
            f"sweep.py: interrupted with {done} of {len(results)} points done; continue with: "
            f"python sweep.py {shlex.join(argv)}",
            file=sys.stderr,
        )
        return 130
    if outcome.workers == 0:
        print("Every point is done already; nothing trained.")
    print(summary(sweep, results))
    if outcome.crashed:
        print(
            f"sweep.py: a worker process ended with status {outcome.crashed[0]} (its error is above); "
            "run the same command again to continue",
            file=sys.stderr,
        )
        return 1
    if done < len(results):
        print(
            f"sweep.py: {len(results) - done} of {len(results)} points not done; the note column says why, "
            f"train.py's output is in {sweep.folder / OUTPUT_FOLDER}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
