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
                              validation windows (sampling, likelihoods), for a head
                              with Gaussian fields (``Head.needs_spread``) only
    logs/<run>/loss.png       loss curves, drawn at the end of training
    logs/<run>/samples/       pieces generated every ``--sample-every`` epochs (.mid)
    logs/<run>/evaluation.json        ``evaluate.py``'s scores ("test", "generated")
    logs/<run>/train/, validation/   TensorBoard events

Every file is written whole or not at all: to a temporary ``*.part`` / ``*.part.keras``
name in the same folder, flushed to disk, then renamed over the old one, so a process
killed at any moment leaves the previous or the new file, never a truncated one. Leftover
temporary files are removed when the run is resumed.

Every file is read as untrusted: only a regular file of at most ``MAX_JSON_BYTES``, its JSON
nested at most ``MAX_JSON_DEPTH`` deep (``load_json``), every field checked on load
(``RunConfig.read``, ``read_split``, ``read_checkpoint``, ``calibration.read_calibration``)
with one ``RunError`` line naming the file and the field; ``model.keras`` is checked against
what this project builds (``note_matrix.model_check``) before Keras reads any of it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import zipfile
from collections.abc import Callable
from datetime import datetime, timezone
from itertools import accumulate
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
SPLIT_PARTS = ("train", "validation", "test")
MAX_JSON_BYTES = 16 * 1024 * 1024  # a run's JSON files; the split of 100,000 files takes about 5 MB
MAX_JSON_DEPTH = 32  # arrays and objects inside each other: a run's files nest 6 deep, a model's config 10

_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")
_CHECKPOINT_NAME = re.compile(r"checkpoint-\d{4,}\.keras")


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


# What Keras raises for a model file that passed note_matrix.model_check but still does not load
# (tampered weights, a layer config Keras refuses).
_MODEL_FILE_ERRORS = (
    OSError,
    ValueError,
    TypeError,
    LookupError,
    AttributeError,
    ImportError,
    ArithmeticError,
    RuntimeError,  # Keras' "could not find layer ..." for a graph that names a layer it lacks
    zipfile.BadZipFile,
)


def load_model(run_dir: str | os.PathLike):
    """The run's best model, without its optimiser: checked against what this project builds
    (``note_matrix.model_check``) before Keras reads it, then loaded in Keras safe mode, and
    its output checked to be as wide as the run's head."""
    from note_matrix.startup import import_keras

    keras = import_keras()  # TensorFlow's start-up lines held back: an error below is one line
    import models.builder  # noqa: F401  (registers the layers a model may hold)
    from models import InputSpec
    from note_matrix import model_check
    from note_matrix.config import RunConfig

    path = Path(run_dir) / MODEL_FILE
    if not path.is_file():
        raise RunError(f"{run_dir}: no {MODEL_FILE} (training did not finish an epoch?)")
    config = RunConfig.read(run_dir)
    model_check.check_model_file(path, InputSpec(**config.model.inputs))
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except _MODEL_FILE_ERRORS as error:
        first_line = (str(error).strip().splitlines() or [""])[0][:300]
        raise RunError(f"{path}: cannot load the model ({type(error).__name__}: {first_line})") from None
    width, expected = model.outputs[0].shape[-1], config.head().width
    if width != expected:
        raise RunError(f"{path}: the model outputs {width} numbers a step, the run's head ({CONFIG_FILE}) {expected}")
    return model


def checkpoint_name(epochs_done: int) -> str:
    """The file name of the checkpoint taken after ``epochs_done`` epochs."""
    return f"checkpoint-{epochs_done:04d}.keras"


def read_checkpoint(run_dir: Path) -> dict:
    """``checkpoint.json`` of a run, every field checked, naming a checkpoint file that exists."""
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT_FILE
    if not path.is_file():
        raise RunError(
            f"{run_dir}: no checkpoint to resume from (training stopped before its first epoch ended); "
            "delete the folder and train again"
        )
    state = check_fields(read_run_file(path, "checkpoint"), path, CHECKPOINT_FIELDS)
    if not (run_dir / state["model"]).is_file():
        raise RunError(f"{path}: names {state['model']}, which is missing")
    return state


def remove_stale_files(run_dir: Path, keep: str) -> None:
    """Delete temporary files and every checkpoint model but ``keep`` (the committed one)."""
    for path in Path(run_dir).iterdir():
        stale_checkpoint = path.name.startswith("checkpoint-") and path.suffix == ".keras" and path.name != keep
        if path.is_file() and (is_partial(path) or stale_checkpoint):
            path.unlink()


def parse_json(text: str, max_depth: int = MAX_JSON_DEPTH):
    """``json.loads(text)`` once its arrays and objects are known to nest at most ``max_depth``
    deep, so that neither the parser nor what walks the result recurses without bound;
    ``ValueError`` saying why for text that is not JSON or nests deeper."""
    brackets = _NOT_A_BRACKET.sub("", _JSON_STRING.sub("", text))
    depth = max(accumulate(1 if bracket in "[{" else -1 for bracket in brackets), default=0)
    if depth > max_depth:
        raise ValueError(f"arrays and objects nested {depth:,} deep, over the limit of {max_depth}")
    return json.loads(text)


def read_limited(path: Path, max_bytes: int) -> bytes:
    """The bytes of ``path``, a regular file of at most ``max_bytes``; ``OSError`` or
    ``ValueError`` saying why not. The open does not block (a FIFO), and the type is checked
    before anything is read (a device never ends)."""
    with open(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise ValueError("not a regular file")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"over the {max_bytes:,}-byte limit")
    return data


def load_json(path: Path):
    """The JSON in ``path``, read as untrusted (``read_limited``, ``parse_json``); ``OSError`` or ``ValueError``."""
    return parse_json(read_limited(path, MAX_JSON_BYTES).decode("utf-8"))


def read_json(path: Path):
    """The JSON in ``path``, or None if it is missing or unreadable."""
    try:
        return load_json(path)
    except (OSError, ValueError):
        return None


def read_run_file(path: Path, what: str):
    """The JSON in the run file ``path``; ``RunError`` naming it and the reason if it cannot be read."""
    try:
        return load_json(path)
    except (OSError, ValueError) as error:
        raise RunError(f"{path}: unreadable {what} ({_reason(error)})") from None


def _reason(error: Exception) -> str:
    return (error.strerror if isinstance(error, OSError) and error.strerror else str(error))[:300]


def check_fields(data, path: Path, fields: dict[str, tuple[Callable[[object], bool], str]]) -> dict:
    """``data`` if it is a JSON object whose every field in ``fields`` (name: (test, what it
    must be)) passes its test; else ``RunError`` naming ``path`` and the field."""
    if not isinstance(data, dict):
        raise RunError(f"{path}: the file must be a JSON object, got {type(data).__name__}")
    for name, (valid, must) in fields.items():
        if name not in data:
            raise RunError(f"{path}: missing field {name}")
        if not valid(data[name]):
            raise RunError(f"{path}: field {name} must be {must}, got {data[name]!r:.60}")
    return data


def is_count(value) -> bool:
    """A whole number, 0 or more (not a bool)."""
    return type(value) is int and value >= 0


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_mapping(values: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda value: isinstance(value, dict) and all(values(item) for item in value.values())


def _is_list_of(item: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda value: isinstance(value, list) and all(item(element) for element in value)


def _is_optional(test: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda value: value is None or test(value)


_is_names = _is_list_of(lambda item: isinstance(item, str))
CHECKPOINT_FIELDS = {
    "format": (
        lambda value: type(value) is int and value == CHECKPOINT_FORMAT,
        f"{CHECKPOINT_FORMAT}, the checkpoint format this version reads",
    ),
    "model": (
        lambda value: isinstance(value, str) and _CHECKPOINT_NAME.fullmatch(value) is not None,
        "a checkpoint file name of the run (checkpoint-NNNN.keras)",
    ),
    "epochs_done": (is_count, "a whole number"),
    "stopped_early": (lambda value: isinstance(value, bool), "true or false"),
    "monitor": (lambda value: isinstance(value, str), "a metric name"),
    "best": (_is_optional(is_number), "a number or null"),
    "best_epoch": (_is_optional(is_count), "a whole number or null"),
    "history": (_is_mapping(_is_list_of(_is_optional(is_number))), "an object of lists of numbers"),
    "tensorboard": (_is_mapping(is_count), "an object of step counters"),
    "seed_generators": (_is_mapping(_is_list_of(lambda item: type(item) is int)), "an object of lists of integers"),
}
SPLIT_FIELDS = {part: (_is_names, "a list of file names") for part in SPLIT_PARTS}


def read_split(run_dir: Path) -> dict[str, list[str]]:
    """The run's ``split.json``: which files are ``train``, ``validation`` and ``test``, checked."""
    path = Path(run_dir) / SPLIT_FILE
    split = check_fields(read_run_file(path, "split of the run's files"), path, SPLIT_FIELDS)
    return {part: split[part] for part in SPLIT_PARTS}


def read_config(run_dir: Path):
    """The JSON of the run's ``config.json`` (``note_matrix.config.RunConfig.read`` checks its fields)."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        return load_json(path)
    except FileNotFoundError:
        raise RunError(f"{run_dir}: not a run folder (no {CONFIG_FILE})") from None
    except (OSError, ValueError) as error:
        raise RunError(f"{path}: unreadable run configuration ({_reason(error)})") from None


def is_run(folder: Path) -> bool:
    return (folder / CONFIG_FILE).is_file() and (folder / MODEL_FILE).is_file()


def find_run(model: str | None, logdir: str | Path) -> Path:
    """The run folder ``--model`` names (the folder, or the ``model.keras`` in it), else the newest in ``logdir``."""
    if model is None:
        return newest_run(logdir)
    path = Path(model)
    if not path.is_file():
        return path
    if path.name == MODEL_FILE and is_run(path.parent):
        return path.parent
    raise RunError(
        f"{path}: not a run folder; pass the run folder (logs/<run>, the folder that holds {CONFIG_FILE} "
        f"and {MODEL_FILE})"
    )


def newest_run(logdir: str | Path) -> Path:
    """The most recently created run under ``logdir`` that has a saved model."""
    logdir = Path(logdir)
    runs = [p for p in logdir.iterdir() if is_run(p)] if logdir.is_dir() else []
    if not runs:
        raise RunError(f"{logdir}: no trained run here (train one with: python train.py --dataset pop)")
    return max(runs, key=lambda p: (_created(p), p.stat().st_mtime))


def _created(run_dir: Path) -> str:
    config = read_config(run_dir)
    created = config.get("created") if isinstance(config, dict) else None
    return created if isinstance(created, str) else ""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
