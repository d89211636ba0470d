"""The spread of a regressed prediction: written after training, read by sampling and evaluation.

``calibration.json`` in a run folder holds, for every column of a step (the note
matrix: note, velocity, time), the root mean square of the best model's point prediction
minus the truth on the step after every validation window (every training window when
there are none): the maximum-likelihood standard deviation of a Gaussian centred on the
prediction. Sampling puts Gaussians of this spread around a regressed value, and the
likelihood of a ``Gaussian`` field uses it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import keras
import numpy as np

from models import model_inputs, reads_targets
from note_matrix import runs
from note_matrix.errors import RunError

BATCH_SIZE = 256  # windows per prediction
FIELDS = {"residual_std": (lambda value: isinstance(value, dict), "an object of spreads by column name")}


def read_calibration(run_dir: str | os.PathLike, names: tuple[str, ...] = ("note", "velocity", "time")) -> dict | None:
    """The run's ``calibration.json`` (``{"residual_std": {name: std}, "rows", "split"}``), or None
    when the run has none; ``RunError`` naming the file and the field if it is unreadable or
    lacks a finite positive spread for one of ``names`` (with a spread of 0, every value but the
    prediction is impossible)."""
    path = Path(run_dir) / runs.CALIBRATION_FILE
    if not path.exists():
        return None
    data = runs.check_fields(runs.read_run_file(path, "calibration"), path, FIELDS)
    for name in names:
        value = data["residual_std"].get(name)
        if not (runs.is_number(value) and math.isfinite(value) and value > 0):
            raise RunError(f"{path}: field residual_std.{name} must be a finite positive number, got {value!r:.40}")
    return data


def last_predictions(model: keras.Model, index, batch_size: int = BATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """The model's output after each window of ``index`` (a ``WindowIndex``) and the step that
    follows it: ``(outputs (windows, width) float32, targets (windows, columns))``; a sequence
    output is read at its last step (a model that ``reads_targets`` is given the window's next steps)."""
    outputs, targets = [], []
    for first in range(0, len(index), batch_size):
        x, y = index.gather(index.starts[first : first + batch_size], "all" if reads_targets(model) else "last")
        prediction = keras.ops.convert_to_numpy(model.predict_on_batch(model_inputs(model, x, y)))
        outputs.append(prediction[:, -1] if prediction.ndim == 3 else prediction)
        targets.append(y[:, -1] if y.ndim == 3 else y)
    width = int(model.outputs[0].shape[-1])
    if not outputs:
        return np.zeros((0, width), np.float32), np.zeros((0, index.data.shape[-1]), index.data.dtype)
    return np.concatenate(outputs).astype(np.float32), np.concatenate(targets)


def write_calibration(run_dir: Path, model: keras.Model, head, data, *, verbose: int = 1) -> dict:
    """The residual spread of ``model``'s point steps (``Head.residual_std``) on the validation
    windows of ``data`` (a ``RunData``), written atomically to ``calibration.json``; returned."""
    from note_matrix.training.windows import WindowIndex

    split = "validation"
    index = WindowIndex(data.part("validation"), data.window_length)
    if len(index) == 0:
        split = "train"
        index = WindowIndex(data.part("train"), data.window_length)
    outputs, targets = last_predictions(model, index)
    calibration = {
        "residual_std": head.residual_std(outputs, targets),
        "rows": len(targets),
        "split": split,
        "created": runs.utc_now(),
    }
    runs.write_json(Path(run_dir) / runs.CALIBRATION_FILE, calibration)
    if verbose:
        spread = ", ".join(f"{name} {value:.4f}" for name, value in calibration["residual_std"].items())
        print(f"calibration: residual std {spread} on {len(targets)} {split} windows -> {runs.CALIBRATION_FILE}")
    return calibration
