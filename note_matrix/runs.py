"""Run folders: ``logs/<run>/`` holds everything generation needs, as JSON and .keras.

::

    logs/<run>/config.json    every hyperparameter, the representation's constants,
                              library/Keras versions, backend, device, dataset
    logs/<run>/model.keras    the best model by validation score (Keras format, no pickle)
    logs/<run>/split.json     which files went to train / validation / test (seeded)
    logs/<run>/skipped.txt    files left out and why, one per line
    logs/<run>/history.json   per-epoch losses and metrics (rewritten every epoch)
    logs/<run>/checkpoint.json        what ``train.py --resume`` needs: epochs done, the
                              checkpoint's file name, best value and epoch, history,
                              TensorBoard step counters, dropout random state
    logs/<run>/checkpoint-NNNN.keras  the model and optimizer after epoch NNNN (the last one)
    logs/<run>/calibration.json       the best model's residual std per column on the
                              validation windows (sampling, likelihoods)
    logs/<run>/loss.png       loss curves, drawn at the end of training
    logs/<run>/samples/       pieces generated every ``--sample-every`` epochs (.mid)
    logs/<run>/evaluation.json        ``evaluate.py``'s scores ("test", "generated")
    logs/<run>/train/, validation/   TensorBoard events

Every file is written whole or not at all: to a temporary ``*.part`` / ``*.part.keras``
name in the same folder, flushed to disk, then renamed over the old one, so a process
killed at any moment leaves the previous or the new file, never a truncated one. Leftover
temporary files are removed when the run is resumed.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from datetime import datetime, timezone
from pathlib import Path

from note_matrix import atomic
from note_matrix.errors import RunError

CONFIG_FILE = "config.json"
MODEL_FILE = "model.keras"
SPLIT_FILE = "split.json"
SKIP_FILE = "skipped.txt"
HISTORY_FILE = "history.json"
CHECKPOINT_FILE = "checkpoint.json"
CALIBRATION_FILE = "calibration.json"  # written by note_matrix.training.calibrate
EVALUATION_FILE = "evaluation.json"  # written by evaluate.py
CHECKPOINT_FORMAT = 1


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
    """Write JSON atomically (``note_matrix.atomic``)."""
    atomic.write_text(path, json.dumps(data, indent=2) + "\n")


def save_model(model, path: Path) -> None:
    """``model.save(path)`` (Keras format, optimizer included), atomically (``<stem>.part.keras`` first)."""
    atomic.write_atomically(path, model.save)


def copy_file(source: Path, destination: Path) -> None:
    """Copy ``source`` over ``destination`` atomically."""
    atomic.write_atomically(destination, lambda temporary: shutil.copyfile(source, temporary))


is_partial = atomic.is_partial


# What Keras raises for a truncated, tampered or unsafe .keras file (safe mode refuses
# lambdas and unknown classes rather than running them).
_MODEL_FILE_ERRORS = (OSError, ValueError, TypeError, KeyError, AttributeError, ImportError, zipfile.BadZipFile)


def load_model(run_dir: str | os.PathLike):
    """The run's best model, loaded in Keras safe mode, without its optimiser."""
    import keras

    import models.builder  # noqa: F401  (registers the layers a model may hold)

    path = Path(run_dir) / MODEL_FILE
    if not path.is_file():
        raise RunError(f"{run_dir}: no {MODEL_FILE} (training did not finish an epoch?)")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except _MODEL_FILE_ERRORS as error:
        first_line = (str(error).strip().splitlines() or [""])[0][:300]
        raise RunError(f"{path}: cannot load the model ({type(error).__name__}: {first_line})") from None


def checkpoint_name(epochs_done: int) -> str:
    """The file name of the checkpoint taken after ``epochs_done`` epochs."""
    return f"checkpoint-{epochs_done:04d}.keras"


def read_checkpoint(run_dir: Path) -> dict:
    """``checkpoint.json`` of a run, checked to name a checkpoint file that exists."""
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT_FILE
    if not path.is_file():
        raise RunError(
            f"{run_dir}: no checkpoint to resume from (training stopped before its first epoch ended); "
            "delete the folder and train again"
        )
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunError(f"{path}: unreadable checkpoint ({error})") from None
    if state.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path}: checkpoint format {state.get('format')!r}, this version reads {CHECKPOINT_FORMAT}")
    if not (run_dir / state["model"]).is_file():
        raise RunError(f"{path}: names {state['model']}, which is missing")
    return state


def remove_stale_files(run_dir: Path, keep: str) -> None:
    """Delete temporary files and every checkpoint model but ``keep`` (the committed one)."""
    for path in Path(run_dir).iterdir():
        stale_checkpoint = path.name.startswith("checkpoint-") and path.suffix == ".keras" and path.name != keep
        if path.is_file() and (is_partial(path) or stale_checkpoint):
            path.unlink()


def read_json(path: Path) -> dict | None:
    """The JSON in ``path``, or None if it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


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
