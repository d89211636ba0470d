"""Per-epoch checkpoints that make training resumable, and the state Keras does not save.

See ``EpochCheckpoint`` for the order of writes that keeps a run folder consistent
whenever the process is killed, and ``note_matrix.runs`` for the files.
"""

from __future__ import annotations

import filecmp
import math
from pathlib import Path

import keras
import numpy as np

import models.head  # noqa: F401  (registers HeadLoss: checkpoints load compiled)
from models import InputSpec
from models.head_metrics import ColumnAccuracy, LastLoss, LastSquaredError
from note_matrix import model_check, runs
from note_matrix.config import RunConfig
from note_matrix.training.tensorboard import TensorBoardLogger


def load_checkpoint(run_dir: Path, checkpoint: dict, head) -> keras.Model:
    """The checkpointed model, with its optimizer and dropout random state (under a strategy: in its scope).

    ``head``: the run's; a checkpoint written before the field heads names its loss and
    metrics as plain functions, which are computed by ``head`` (the same numbers).
    """
    model = keras.saving.load_model(checked_checkpoint(run_dir, checkpoint), custom_objects=_legacy_objects(head))
    restore_seed_states(model, checkpoint["seed_generators"])
    return model


def checked_checkpoint(run_dir: Path, checkpoint: dict) -> Path:
    """The checkpoint's model file, once ``model_check`` found in it only what this project
    builds (``RunError`` otherwise): before Keras reads it or it is copied to ``model.keras``."""
    path = run_dir / checkpoint["model"]
    model_check.check_model_file(path, InputSpec(**RunConfig.read(run_dir).model.inputs))
    return path


def _legacy_objects(head) -> dict:
    """The registered names of the loss and metric functions that checkpoints from before the
    field heads were compiled with (``note_matrix>pitch_accuracy``, ...), each computed by
    ``head`` under the same name, so the history keeps its keys."""
    functions = {
        "pitch_accuracy": ColumnAccuracy(head).values,
        "last_mse": LastSquaredError(head).values,
        "last_loss": LastLoss(head).values,
        "categorical_loss": head.loss,
        "mdn_loss": head.loss,
    }
    # Checkpoints of the old code name them "note_matrix>NAME"; one that the resumed run saves, "NAME".
    return {key: _named(name, function) for name, function in functions.items()
            for key in (f"note_matrix>{name}", name)}


def _named(name: str, function):
    def named(y_true, y_pred):
        return function(y_true, y_pred)

    named.__name__ = named.__qualname__ = name
    return named


def seed_states(model: keras.Model) -> dict[str, list[int]]:
    """The state of every random seed generator (dropout's), as ``{"<layer>/<n>": [seed, counter]}``.

    Keras does not save these in ``.keras`` files; without them a resumed run would draw
    other dropout masks than an uninterrupted one. Keys use layer names, which are stable
    (the generators' own names are numbered per process).
    """
    return {
        f"{layer.name}/{n}": [int(v) for v in keras.ops.convert_to_numpy(variable)]
        for layer in model.layers
        for n, variable in enumerate(_seed_variables(layer))
    }


def restore_seed_states(model: keras.Model, states: dict[str, list[int]]) -> None:
    """Set the seed generators to ``states`` (from ``seed_states``)."""
    for layer in model.layers:
        for n, variable in enumerate(_seed_variables(layer)):
            if f"{layer.name}/{n}" in states:
                variable.assign(np.asarray(states[f"{layer.name}/{n}"], dtype=variable.dtype))


def _seed_variables(layer: keras.Layer) -> list:
    return [variable for variable in layer.variables if variable.name == "seed_generator_state"]


class EpochCheckpoint(keras.callbacks.Callback):
    """After each epoch: checkpoint, best model, early stopping and history, all resumable.

    In this order, so that a kill at any moment leaves a consistent run folder:

    1. the model with its optimizer goes to ``checkpoint-NNNN.keras`` (atomically);
    2. ``checkpoint.json`` is replaced (atomically) to name it: this commits the epoch;
    3. ``complete_commit``: if this epoch is the best so far, the checkpoint is copied to
       ``model.keras`` (atomically); the previous checkpoint goes; ``history.json`` is
       rewritten. A resume redoes step 3 first, in case a kill came between 2 and 3.

    Early stopping is Keras' rule (stop after ``patience`` epochs without a lower value),
    computed from the best epoch, so it carries across a resume. ``state``: the
    ``checkpoint.json`` to continue from, or None for a new run.
    """

    def __init__(
        self,
        run_dir: Path,
        monitor: str,
        patience: int | None,
        logger: TensorBoardLogger,
        state: dict | None = None,
        *,
        verbose: int = 1,
    ):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.monitor = monitor
        self.patience = patience
        self.logger = logger
        self.verbose = verbose
        state = state or {"epochs_done": 0, "best": None, "best_epoch": None, "history": {}}
        self.epochs_done = state["epochs_done"]
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.history = {name: list(values) for name, values in state["history"].items()}

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        for name, value in logs.items():
            self.history.setdefault(name, []).append(float(value))
        current = logs.get(self.monitor)
        improved = current is not None and math.isfinite(current) and (self.best is None or current < self.best)
        if improved:
            self.best, self.best_epoch = float(current), epoch
        waited = epoch + 1 if self.best_epoch is None else epoch - self.best_epoch
        stop = self.patience is not None and waited >= self.patience
        if stop:
            self.model.stop_training = True
            if self.verbose:
                print(f"Epoch {epoch + 1}: early stopping, no lower {self.monitor} for {self.patience} epochs")
        self.epochs_done = epoch + 1
        self._commit(stopped_early=stop)

    def _commit(self, *, stopped_early: bool) -> None:
        """Steps 1 to 3 of the class docstring."""
        name = runs.checkpoint_name(self.epochs_done)
        runs.save_model(self.model, self.run_dir / name)
        state = {
            "format": runs.CHECKPOINT_FORMAT,
            "updated": runs.utc_now(),
            "epochs_done": self.epochs_done,
            "model": name,
            "stopped_early": stopped_early,
            "monitor": self.monitor,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "tensorboard": {"train_step": self.logger.train_step, "validation_step": self.logger.validation_step},
            "seed_generators": seed_states(self.model),
            "history": self.history,
        }
        runs.write_json(self.run_dir / runs.CHECKPOINT_FILE, state)
        complete_commit(self.run_dir, state)


def complete_commit(run_dir: Path, state: dict) -> None:
    """Bring ``model.keras``, the checkpoint files and ``history.json`` in line with ``state``.

    ``state``: the committed ``checkpoint.json``. Writes only what differs, so a resume can
    call it safely on a run folder that is already complete.
    """
    checkpoint, best_model = run_dir / state["model"], run_dir / runs.MODEL_FILE
    last_is_best = state["best_epoch"] is not None and state["best_epoch"] == state["epochs_done"] - 1
    if last_is_best and not (best_model.is_file() and filecmp.cmp(checkpoint, best_model, shallow=False)):
        runs.copy_file(checkpoint, best_model)
    runs.remove_stale_files(run_dir, keep=state["model"])
    monitor = state["monitor"]
    history = {"monitor": monitor, "best_epoch": state["best_epoch"], f"best_{monitor}": state["best"],
               "epochs": state["history"]}
    if runs.read_json(run_dir / runs.HISTORY_FILE) != history:
        runs.write_json(run_dir / runs.HISTORY_FILE, history)
