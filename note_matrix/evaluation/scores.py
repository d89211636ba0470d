"""The ``"test"`` entry of ``evaluation.json``: the run's model beside the baselines on its test split.

The model predicts the step after every window of ``window_length`` steps of each test
file (``split.json``), so every step at index ``window_length`` or later is scored, the
steps ``baselines.target_rows`` gives. Model and baselines (the representation's, fitted
on the run's training files) are scored on exactly those steps: the representation's
point scores (the note matrix: MSE per column, pitch accuracy) of the head's point
prediction, and the negative log-likelihood per step under the run's saved head
(``Head.nll``; Gaussian fields use the run's residual spread, ``calibration.json``,
computed from the validation split, and said so, when the run has none).
"""

from __future__ import annotations

import numpy as np

from note_matrix import runs
from note_matrix.errors import RunError
from note_matrix.evaluation.baselines import target_rows
from note_matrix.run_data import RunData

PREDICT_BATCH_SIZE = 256


def predict_outputs(model, arrays: list[np.ndarray], window_length: int, *,
                    batch_size: int = PREDICT_BATCH_SIZE) -> np.ndarray:
    """The model's raw output for the row after every window of every file: ``(rows, width)``.

    Rows in the order of ``baselines.target_rows(arrays, window_length)``. A model that
    predicts every step (``(batch, steps, width)``) is read at its last step. Batches are
    padded to ``batch_size``, so the model is compiled for one shape only.
    """
    import keras

    from note_matrix.training.windows import WindowIndex

    index = WindowIndex(arrays, window_length)
    outputs = []
    for start in range(0, len(index), batch_size):
        ids = np.arange(start, min(start + batch_size, len(index)))
        windows, _ = index.batch(np.pad(ids, (0, batch_size - len(ids)), mode="edge"))
        output = keras.ops.convert_to_numpy(model.predict_on_batch(windows))
        outputs.append(output[:, -1] if output.ndim == 3 else output)
        outputs[-1] = outputs[-1][: len(ids)]
    if not outputs:
        return np.zeros((0, int(model.outputs[0].shape[-1])), np.float32)
    return np.concatenate(outputs)


def calibration(data: RunData, model, head) -> tuple[dict[str, float] | None, str]:
    """``(residual_std, where it came from)``: the run's ``calibration.json``, else computed now
    from the validation split (``Head.residual_std``), else None (no validation files)."""
    from note_matrix.calibration import read_calibration

    saved = read_calibration(data.run_dir, head.names)
    if saved is not None:
        return {name: float(saved["residual_std"][name]) for name in head.names}, \
            f"from the run's {runs.CALIBRATION_FILE}"
    if not data.split["validation"]:
        return None, f"no {runs.CALIBRATION_FILE} and no validation files"
    validation = data.part("validation")
    _, target = target_rows(validation, data.window_length)
    std = head.residual_std(predict_outputs(model, validation, data.window_length), target)
    files = f"{len(validation)} validation file{'s' if len(validation) != 1 else ''}"
    return std, f"computed now from the {files} (the run has no {runs.CALIBRATION_FILE})"


def require_test_files(data: RunData, split: str = "test") -> None:
    if not data.split[split]:
        raise RunError(f"{data.run_dir}: the run has no {split} files (trained with --{split}-fraction 0); "
                       "nothing to score")


def model_label(head: str) -> str:
    return f"model ({head} head)"


def check_score_from(window: int, score_from: int | None) -> None:
    """``RunError`` (one line) if ``score_from`` would score rows before the run's first window ends."""
    if score_from is not None and score_from < window:
        raise RunError(f"--score-from {score_from}: the run reads windows of {window} rows, so no row before "
                       f"index {window} can be scored")


def scored_files(arrays: dict[str, np.ndarray], window: int, score_from: int | None) -> dict[str, np.ndarray]:
    """The files as scored, by key: each whole (every row after the first ``window``), or with
    ``score_from`` only the rows at index ``score_from`` or later, each read after the
    ``window`` rows before it (files of ``score_from`` rows or fewer left out). Runs of
    different windows, given the largest as ``score_from``, are scored on the same rows."""
    if score_from is None:
        return arrays
    check_score_from(window, score_from)
    return {key: array[score_from - window:] for key, array in arrays.items() if len(array) > score_from}


def evaluate_test(data: RunData, model, *, batch_size: int = PREDICT_BATCH_SIZE, split: str = "test",
                  score_from: int | None = None) -> dict:
    """The ``"test"`` entry of ``evaluation.json``: every predictor's scores on the test steps
    (``split="validation"``: on the validation steps, where settings are chosen), from row
    ``score_from`` of each file if given (``scored_files``).

    ``data`` comes from ``run_data.encode(run_data.open_run(...))``; ``RunError`` for a run
    without files in ``split`` (or none longer than ``score_from``).
    """
    import keras

    require_test_files(data, split)
    representation, head, head_name = data.representation, data.config.head(), data.config.train.model.head
    window = data.window_length
    scored = scored_files({key: data.arrays[key] for key in data.split[split]}, window, score_from)
    test = list(scored.values())
    if not test:
        raise RunError(f"{data.run_dir}: no {split} file is longer than --score-from {score_from} rows")
    _, target = target_rows(test, window)
    outputs = predict_outputs(model, test, window, batch_size=batch_size)
    points = np.asarray(keras.ops.convert_to_numpy(head.point(outputs)), np.float64)
    model_scores = representation.point_scores(points, target)
    std, std_source = calibration(data, model, head) if head.needs_spread else (None, "not needed by this head")
    model_scores["nll"] = None
    if std is not None or not head.needs_spread:
        model_scores.update(representation.distribution_scores(head, outputs, target, std))
    validation = data.part("validation") if data.split["validation"] else []
    scores = {model_label(head_name): model_scores,
              **representation.baselines(data.part("train"), validation).score_all(test, window)}
    columns = representation.score_columns
    return {
        "created": runs.utc_now(),
        "split": split,
        "files": list(scored),
        "rows": len(target),
        "window_length": window,
        "score_from": window if score_from is None else score_from,
        "head": head_name,
        "residual_std": std,
        "residual_std_source": std_source,
        "columns": [[c.key, c.header, c.higher_is_better, c.form] for c in columns],
        "legend": list(representation.score_legend),
        "scores": scores,
        "best": best_per_column(scores, columns),
        "not_beaten": not_beaten(scores, model_label(head_name), columns),
        "notes": list(data.notes),
    }


SCORE_NAMES = {"mse_note": "MSE note", "mse_velocity": "MSE velocity", "mse_time": "MSE time",
               "mse": "MSE all", "pitch_accuracy": "pitch accuracy", "nll": "NLL"}


def best_per_column(scores: dict[str, dict], columns) -> dict[str, list[str]]:
    """For each score column, the predictors with the best value (several on a tie; none if no one has it)."""
    best = {}
    for column in columns:
        key, higher = column.key, column.higher_is_better
        values = {name: s[key] for name, s in scores.items() if s.get(key) is not None and np.isfinite(s[key])}
        if values:
            top = max(values.values()) if higher else min(values.values())
            best[key] = [name for name, value in values.items() if value == top]
    return best


def not_beaten(scores: dict[str, dict], model: str, columns) -> list[dict]:
    """Every (score, baseline) where the model is not strictly better than the baseline."""
    out = []
    mine = scores[model]
    for column in columns:
        key, higher = column.key, column.higher_is_better
        for name, theirs in scores.items():
            if name == model or theirs.get(key) is None:
                continue
            value = mine.get(key)
            better = value is not None and np.isfinite(value) and (value > theirs[key] if higher else value < theirs[key])
            if not better:
                out.append({"score": key, "baseline": name, "model": value, "baseline_value": theirs[key]})
    return out
