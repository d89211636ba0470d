"""Training a model on a dataset, end to end: files -> split -> windows -> fit -> run folder."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

import note_matrix
from models import ModelConfig, build_model, compile_model
from note_matrix import runs
from note_matrix.datasets import encode_dataset, resolve_dataset, split_by_file, write_skip_report
from note_matrix.devices import describe_device
from note_matrix.errors import DatasetError
from note_matrix.representation import NoteMatrix
from note_matrix.tensorboard import TensorBoardLogger
from note_matrix.windows import WindowBatches, WindowIndex

PROBE_BATCH_SIZE = 64


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training job, with the design card's defaults (seed 003)."""

    dataset: str = "pop"
    data_dir: str = "data"
    logdir: str = "logs"
    run_name: str | None = None
    window_length: int = 50
    batch_size: int = 64
    epochs: int = 200
    patience: int | None = None  # early stopping on validation loss; None: never
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0  # the split, weight initialisation, dropout and shuffling
    max_files: int | None = None  # the first N files of the dataset (sorted), for quick runs
    histogram_freq: int = 1
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self):
        for name in ("window_length", "batch_size", "epochs", "histogram_freq"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be at least 1, got {self.patience}")
        if self.max_files is not None and self.max_files < 1:
            raise ValueError(f"max_files must be at least 1, got {self.max_files}")

    def to_json(self) -> dict:
        data = asdict(self)
        data["model"] = self.model.to_json()
        return data


@dataclass
class TrainResult:
    run_dir: Path
    history: dict[str, list[float]]
    skipped: dict[str, str]


def train(config: TrainConfig, *, verbose: int = 1) -> TrainResult:
    """Train ``config.model`` on ``config.dataset``; write everything to a new run folder."""
    representation = NoteMatrix()
    files = resolve_dataset(config.dataset, Path(config.data_dir))
    if config.max_files is not None:
        files.keys = files.keys[: config.max_files]
    encoded = encode_dataset(
        files, representation, Path(config.data_dir), min_steps=config.window_length + 1, progress=verbose > 0
    )
    if not encoded.arrays:
        raise DatasetError(
            f"{files.root}: none of {encoded.total_files} files is usable "
            f"(each needs at least {config.window_length + 1} note rows); "
            f"first reason: {next(iter(encoded.skipped.values()), 'no files')}"
        )
    split = split_by_file(
        list(encoded.arrays),
        validation_fraction=config.validation_fraction,
        test_fraction=config.test_fraction,
        seed=config.seed,
    )

    run_dir = runs.new_run_dir(config.logdir, config.run_name)
    device = describe_device()
    runs.write_json(
        run_dir / runs.CONFIG_FILE,
        {
            "created": runs.utc_now(),
            "note_matrix_version": note_matrix.__version__,
            "keras_version": keras.__version__,
            "backend": keras.backend.backend(),
            "device": device,
            "train": config.to_json(),
            "representation": representation.to_json(),
            "dataset": {
                "name": files.name,
                "root": str(files.root),
                "files": encoded.total_files,
                "used": len(encoded.arrays),
                "skipped": len(encoded.skipped),
            },
        },
    )
    runs.write_json(run_dir / runs.SPLIT_FILE, {"dataset": files.name, "root": str(files.root), "seed": config.seed, **split})
    write_skip_report(run_dir / runs.SKIP_FILE, encoded.skipped)
    if encoded.skipped:
        print(f"skipped {len(encoded.skipped)} of {encoded.total_files} files, see {run_dir / runs.SKIP_FILE}")

    keras.utils.set_random_seed(config.seed)
    train_index = WindowIndex([encoded.arrays[k] for k in split["train"]], config.window_length)
    validation_index = WindowIndex([encoded.arrays[k] for k in split["validation"]], config.window_length)
    if len(train_index) == 0:
        raise DatasetError(f"{files.root}: the training split has no windows of {config.window_length} rows")
    has_validation = len(validation_index) > 0
    probe_source = validation_index if has_validation else train_index
    probe_windows, _ = probe_source.batch(np.arange(min(PROBE_BATCH_SIZE, len(probe_source))))

    model = compile_model(build_model(config.model), config.model)
    print(
        f"Training {model.name} on {device}: {len(split['train'])} files / {len(train_index)} windows, "
        f"validation {len(split['validation'])} files / {len(validation_index)} windows -> {run_dir}"
    )
    monitor = "val_loss" if has_validation else "loss"
    callbacks = [
        TensorBoardLogger(run_dir, probe_windows, histogram_freq=config.histogram_freq),
        keras.callbacks.ModelCheckpoint(run_dir / runs.MODEL_FILE, monitor=monitor, save_best_only=True),
    ]
    if config.patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, patience=config.patience, verbose=verbose))
    history = model.fit(
        WindowBatches(train_index, config.batch_size, shuffle=True, seed=config.seed),
        validation_data=WindowBatches(validation_index, config.batch_size, shuffle=False) if has_validation else None,
        epochs=config.epochs,
        callbacks=callbacks,
        verbose=verbose,
    )
    logs = {name: [float(v) for v in values] for name, values in history.history.items()}
    best_epoch = int(np.argmin(logs[monitor]))
    runs.write_json(
        run_dir / runs.HISTORY_FILE,
        {"monitor": monitor, "best_epoch": best_epoch, f"best_{monitor}": logs[monitor][best_epoch], "epochs": logs},
    )
    print(f"best {monitor} {logs[monitor][best_epoch]:.6f} at epoch {best_epoch + 1}; model saved to {run_dir / runs.MODEL_FILE}")
    return TrainResult(run_dir, logs, encoded.skipped)
