"""Training a model on a dataset, end to end: files -> split -> windows -> fit -> run folder.

Training can be stopped at any moment (Ctrl-C, SIGKILL, a crash) and continued with
``resume``: after every epoch ``EpochCheckpoint`` saves the model with its optimizer and
commits ``checkpoint.json`` (see ``note_matrix.runs``). Batch order depends only on
(seed, epoch) and the dropout random state is checkpointed, so a resumed run trains the
same epochs on the same batches as an uninterrupted one.
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import keras
import numpy as np

import note_matrix
from models import ModelConfig, build_model, compile_model
from note_matrix import runs
from note_matrix.datasets import (
    DatasetFiles,
    EncodedDataset,
    encode_dataset,
    file_sha256,
    resolve_dataset,
    split_by_file,
    write_skip_report,
)
from note_matrix.devices import describe_device
from note_matrix.errors import DatasetError, RunError
from note_matrix.representation import NoteMatrix
from note_matrix.tensorboard import TensorBoardLogger
from note_matrix.windows import ShuffleEpochs, WindowBatches, WindowIndex

PROBE_BATCH_SIZE = 64
RESUMABLE_CHANGES = ("epochs", "data_dir")  # train longer; the same files read from elsewhere


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

    @classmethod
    def from_json(cls, data: dict) -> TrainConfig:
        """The config ``to_json`` wrote (the ``train`` entry of ``config.json``)."""
        return cls(**{**data, "model": ModelConfig(**data["model"])})

    def with_changes(self, changes: dict) -> TrainConfig:
        """A copy with ``changes`` applied: field names, ``model.<field>`` for the model's."""
        model = {name[len("model."):]: value for name, value in changes.items() if name.startswith("model.")}
        top = {name: value for name, value in changes.items() if not name.startswith("model.")}
        return replace(self, **top, model=replace(self.model, **model))

    def flat(self) -> dict:
        """Every setting by name, ``model.<field>`` for the model's: what ``with_changes`` takes."""
        flat = {}
        for name, value in self.to_json().items():
            if name == "model":
                flat.update({f"model.{field}": setting for field, setting in value.items()})
            else:
                flat[name] = value
        return flat


@dataclass
class TrainResult:
    run_dir: Path
    history: dict[str, list[float]]
    skipped: dict[str, str]  # files left out by this call's encoding (none when it trained nothing)
    epochs_trained: int = 0  # by this call; 0 when resuming a finished run


@dataclass
class PreparedData:
    """A dataset resolved, fingerprinted, encoded and split by file."""

    files: DatasetFiles
    encoded: EncodedDataset
    split: dict[str, list[str]]
    fingerprint: str


def dataset_fingerprint(files: DatasetFiles) -> str:
    """SHA-256 over the sorted (file key, file SHA-256) pairs: changes when any file does."""
    digest = hashlib.sha256()
    for key in sorted(files.keys):
        try:
            content = file_sha256(files.path(key))
        except OSError as error:  # encoding skips it and names the reason
            content = f"unreadable: {type(error).__name__}"
        digest.update(f"{key}\t{content}\n".encode())
    return digest.hexdigest()


def train(config: TrainConfig, *, verbose: int = 1) -> TrainResult:
    """Train ``config.model`` on ``config.dataset``; write everything to a new run folder."""
    representation = NoteMatrix()
    data = _prepare_data(config, representation, verbose)
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
                "name": data.files.name,
                "root": str(data.files.root),
                "files": data.encoded.total_files,
                "used": len(data.encoded.arrays),
                "skipped": len(data.encoded.skipped),
                "fingerprint": data.fingerprint,
            },
        },
    )
    runs.write_json(
        run_dir / runs.SPLIT_FILE,
        {"dataset": data.files.name, "root": str(data.files.root), "seed": config.seed, **data.split},
    )
    write_skip_report(run_dir / runs.SKIP_FILE, data.encoded.skipped)
    if data.encoded.skipped:
        skipped = data.encoded.skipped
        print(f"skipped {len(skipped)} of {data.encoded.total_files} files, see {run_dir / runs.SKIP_FILE}")
    print(f"Checkpoints every epoch; if stopped, continue with: python train.py --resume {run_dir}")
    return _fit(config, data, run_dir, device, checkpoint=None, verbose=verbose)


def resume_config(run_dir: str | Path, changes: dict | None = None) -> TrainConfig:
    """The saved config of the run in ``run_dir``, with ``changes`` (as ``TrainConfig.with_changes``).

    Only ``RESUMABLE_CHANGES`` may differ from the saved settings (``epochs``: train
    longer); any other difference raises ``RunError`` naming each setting, saved and given.
    """
    saved = _saved_train_config(Path(run_dir))
    config = saved.with_changes(changes or {})
    given = config.flat()
    differences = [
        f"{name.removeprefix('model.')} saved {value!r}, given {given[name]!r}"
        for name, value in saved.flat().items()
        if given[name] != value and name not in RESUMABLE_CHANGES
    ]
    if differences:
        raise RunError(
            f"{run_dir} cannot be resumed with other settings: {'; '.join(differences)} "
            f"(only {' and '.join('--' + name.replace('_', '-') for name in RESUMABLE_CHANGES)} may change)"
        )
    return config


def resume(run_dir: str | Path, config: TrainConfig, *, verbose: int = 1) -> TrainResult:
    """Continue the interrupted run in ``run_dir`` from its last checkpoint to ``config.epochs``.

    ``config`` comes from ``resume_config``. A finished run is reported and left as it is.
    Raises ``RunError`` when there is no checkpoint, or the dataset's files, the note
    matrix representation or the split differ from the run's.
    """
    run_dir = Path(run_dir)
    saved = runs.read_config(run_dir)
    checkpoint = runs.read_checkpoint(run_dir)
    complete_commit(run_dir, checkpoint)  # what a kill right after the last commit may have left undone
    done = checkpoint["epochs_done"]
    if checkpoint["stopped_early"]:
        print(f"{run_dir}: already finished (stopped early after {done} epochs); nothing to resume")
        return TrainResult(run_dir, checkpoint["history"], {}, epochs_trained=0)
    if done >= config.epochs:
        print(f"{run_dir}: already finished ({done} epochs done); nothing to resume. "
              f"To train longer: python train.py --resume {run_dir} --epochs <more than {done}>")
        return TrainResult(run_dir, checkpoint["history"], {}, epochs_trained=0)
    representation = NoteMatrix()
    if saved["representation"] != representation.to_json():
        raise RunError(f"{run_dir}: the note matrix representation changed since this run started; start a new run")
    data = _prepare_data(config, representation, verbose)
    _refuse_changed_data(run_dir, saved, data)
    device = describe_device()
    saved["train"] = config.to_json()  # --epochs may have been raised
    saved.setdefault("resumed", []).append({"at": runs.utc_now(), "epochs_done": done, "device": device})
    runs.write_json(run_dir / runs.CONFIG_FILE, saved)
    return _fit(config, data, run_dir, device, checkpoint=checkpoint, verbose=verbose)


def _saved_train_config(run_dir: Path) -> TrainConfig:
    """The ``TrainConfig`` stored in a run's ``config.json``."""
    saved = runs.read_config(run_dir)
    try:
        return TrainConfig.from_json(saved["train"])
    except (KeyError, TypeError, ValueError) as error:
        path = run_dir / runs.CONFIG_FILE
        raise RunError(f"{path}: not a training configuration this version reads ({error})") from None


def _refuse_changed_data(run_dir: Path, saved: dict, data: PreparedData) -> None:
    """Raise ``RunError`` if the dataset's files or the split are not the run's own."""
    fingerprint = saved["dataset"].get("fingerprint")
    if fingerprint != data.fingerprint:
        raise RunError(
            f"{run_dir}: the dataset's files changed since this run started (in {data.files.root}: "
            f"fingerprint {str(fingerprint)[:12]} saved, {data.fingerprint[:12]} now; files added, removed or "
            "modified); resuming would train on other data, start a new run instead"
        )
    split = json.loads((run_dir / runs.SPLIT_FILE).read_text(encoding="utf-8"))
    if any(split.get(part) != data.split[part] for part in data.split):
        raise RunError(f"{run_dir}: the train/validation/test split would differ from {runs.SPLIT_FILE}")


def _prepare_data(config: TrainConfig, representation: NoteMatrix, verbose: int) -> PreparedData:
    """Resolve, fingerprint, encode (cached) and split the dataset of ``config``."""
    files = resolve_dataset(config.dataset, Path(config.data_dir))
    if config.max_files is not None:
        files.keys = files.keys[: config.max_files]
    fingerprint = dataset_fingerprint(files)
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
    return PreparedData(files, encoded, split, fingerprint)


def _fit(
    config: TrainConfig, data: PreparedData, run_dir: Path, device: str, *, checkpoint: dict | None, verbose: int
) -> TrainResult:
    """Fit from scratch (``checkpoint`` None) or from a checkpoint, up to ``config.epochs``."""
    keras.utils.set_random_seed(config.seed)
    arrays = data.encoded.arrays
    train_index = WindowIndex([arrays[k] for k in data.split["train"]], config.window_length)
    validation_index = WindowIndex([arrays[k] for k in data.split["validation"]], config.window_length)
    if len(train_index) == 0:
        raise DatasetError(f"{data.files.root}: the training split has no windows of {config.window_length} rows")
    has_validation = len(validation_index) > 0
    probe_source = validation_index if has_validation else train_index
    probe_windows, _ = probe_source.batch(np.arange(min(PROBE_BATCH_SIZE, len(probe_source))))

    if checkpoint is None:
        model = compile_model(build_model(config.model), config.model)
        initial_epoch, steps = 0, {"train_step": 0, "validation_step": 0}
        action = "Training"
    else:
        model = _load_checkpoint(run_dir, checkpoint)
        initial_epoch, steps = checkpoint["epochs_done"], checkpoint["tensorboard"]
        action = f"Resuming at epoch {initial_epoch + 1} of {config.epochs}:"
    print(
        f"{action} {model.name} on {device}: {len(data.split['train'])} files / {len(train_index)} windows, "
        f"validation {len(data.split['validation'])} files / {len(validation_index)} windows -> {run_dir}"
    )
    batches = WindowBatches(train_index, config.batch_size, shuffle=True, seed=config.seed)
    logger = TensorBoardLogger(
        run_dir, probe_windows, histogram_freq=config.histogram_freq, initial_epoch=initial_epoch, **steps
    )
    tracker = EpochCheckpoint(
        run_dir, "val_loss" if has_validation else "loss", config.patience, logger, checkpoint, verbose=verbose
    )
    model.fit(
        batches,
        validation_data=WindowBatches(validation_index, config.batch_size, shuffle=False) if has_validation else None,
        shuffle=False,  # batches shuffle themselves, by (seed, epoch); Keras would use the global RNG
        epochs=config.epochs,
        initial_epoch=initial_epoch,
        callbacks=[ShuffleEpochs(batches), logger, tracker],
        verbose=verbose,
    )
    if tracker.best_epoch is None:
        print(f"no finite {tracker.monitor} in any epoch; no model saved")
    else:
        print(f"best {tracker.monitor} {tracker.best:.6f} at epoch {tracker.best_epoch + 1}; "
              f"model saved to {run_dir / runs.MODEL_FILE}")
    return TrainResult(run_dir, tracker.history, data.encoded.skipped, tracker.epochs_done - initial_epoch)


def _load_checkpoint(run_dir: Path, checkpoint: dict) -> keras.Model:
    """The checkpointed model, with its optimizer and dropout random state."""
    model = keras.saving.load_model(run_dir / checkpoint["model"])
    restore_seed_states(model, checkpoint["seed_generators"])
    return model


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
