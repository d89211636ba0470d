"""Run folders: ``logs/<run>/`` holds everything generation needs, as JSON and .keras.

::

    logs/<run>/config.json    every hyperparameter, the representation's constants,
                              library/Keras versions, backend, device, dataset
    logs/<run>/model.keras    the best model by validation loss (Keras format, no pickle)
    logs/<run>/split.json     which files went to train / validation / test (seeded)
    logs/<run>/skipped.txt    files left out and why, one per line
    logs/<run>/history.json   per-epoch losses and metrics
    logs/<run>/train/, validation/   TensorBoard events
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from note_matrix.errors import RunError

CONFIG_FILE = "config.json"
MODEL_FILE = "model.keras"
SPLIT_FILE = "split.json"
SKIP_FILE = "skipped.txt"
HISTORY_FILE = "history.json"


def new_run_dir(logdir: str | Path, run_name: str | None) -> Path:
    """Create ``logdir/run_name`` (default: a UTC timestamp); refuse one that holds files."""
    logdir = Path(logdir)
    if run_name is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        run_name, n = stamp, 1
        while (logdir / run_name).exists():
            n += 1
            run_name = f"{stamp}-{n}"
    elif not run_name or Path(run_name).name != run_name or run_name in (".", ".."):
        raise RunError(f"--run-name must be a plain folder name, got {run_name!r}")
    run_dir = logdir / run_name
    if run_dir.exists() and any(run_dir.iterdir()):
        raise RunError(f"{run_dir}: run folder already exists and is not empty; choose another --run-name")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    temporary = path.with_name(path.name + ".part")
    temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def read_config(run_dir: Path) -> dict:
    path = Path(run_dir) / CONFIG_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{run_dir}: not a run folder (no {CONFIG_FILE})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunError(f"{path}: unreadable run configuration ({error})") from None


def is_run(folder: Path) -> bool:
    return (folder / CONFIG_FILE).is_file() and (folder / MODEL_FILE).is_file()


def newest_run(logdir: str | Path) -> Path:
    """The most recently created run under ``logdir`` that has a saved model."""
    logdir = Path(logdir)
    runs = [p for p in logdir.iterdir() if is_run(p)] if logdir.is_dir() else []
    if not runs:
        raise RunError(f"{logdir}: no trained run here (train one with: python train.py --dataset pop)")
    return max(runs, key=lambda p: (read_config(p).get("created", ""), p.stat().st_mtime))


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
