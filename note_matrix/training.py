"""Training a model on a dataset, end to end: files -> split -> windows -> fit -> run folder.

Training can be stopped at any moment (Ctrl-C, SIGKILL, a crash) and continued with
``resume``: after every epoch ``EpochCheckpoint`` saves the model with its optimizer and
commits ``checkpoint.json`` (see ``note_matrix.runs``). Batch order depends only on
(seed, epoch) and the dropout random state is checkpointed, so a resumed run trains the
same epochs on the same batches as an uninterrupted one.

Targets (``ModelConfig.targets``): ``"all"`` (the default here) trains the next row at
every step of non-overlapping chunks of ``window_length`` rows; ``"last"`` trains only
the row after each sliding window, as the card does. Validation always uses the card's
sliding windows, and the monitored value (best model, early stopping) is the value after
the whole window, so both modes are measured on the same task: ``val_last_mse``, its
squared error, for the card's regression head; ``val_last_loss``, the head's own loss
(cross-entropy + squared errors, or cross-entropy + mixture negative log-likelihood), for
the ``categorical`` and ``mdn`` heads (``models.heads``).

Calibration: when training ends (and when ``--resume`` completes a run), the best model
predicts the row after every validation window; the root mean square of the residuals of
its point rows, per column, goes to ``calibration.json`` (``calibrate``). Sampling at a
temperature puts Gaussians of this spread around a regressed prediction, and the
negative log-likelihood of the regression and categorical heads uses it.

Distribution (``TrainConfig.distribute``, TensorFlow backend only): ``"mirrored"`` trains
on every local GPU (every logical CPU device when there is none) with
``tf.distribute.MirroredStrategy``, ``"multiworker"`` on the hosts of ``TF_CONFIG`` with
``MultiWorkerMirroredStrategy``; the data then comes from ``note_matrix.pipeline``
(``tf.data``, the same batches in the same order). ``batch_size`` is the global batch,
split among the replicas, so every setting trains the same updates whatever the devices.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import keras
import numpy as np

import note_matrix
from models import ModelConfig, build_model, compile_model
from models.heads import head_config, residual_std_of
from note_matrix import runs
from note_matrix.checkpoints import EpochCheckpoint, complete_commit, load_checkpoint
from note_matrix.datasets import (
    DatasetFiles,
    EncodedDataset,
    encode_dataset,
    resolve_dataset,
    split_by_file,
    write_skip_report,
)
from note_matrix.devices import describe_device
from note_matrix.distribute import DISTRIBUTE, Distribution, build_from_one_window, log_vectors
from note_matrix.errors import DatasetError, RunError
from note_matrix.generation import load_model
from note_matrix.midi import read_midi
from note_matrix.representation import NoteMatrix
from note_matrix.samples import SampleLogger, write_loss_curve
from note_matrix.tensorboard import TensorBoardLogger
from note_matrix.windows import ShuffleEpochs, WindowBatches, WindowIndex

PROBE_BATCH_SIZE = 64
CALIBRATION_BATCH_SIZE = 256  # windows per prediction when calibrating
DEFAULT_TARGETS = "all"  # see the README, "Training modes": the same network, 40x the targets a second
# Train longer; the same files read from elsewhere; other devices (the same updates: the batch is global).
RESUMABLE_CHANGES = ("epochs", "data_dir", "distribute", "workers", "sample_every")


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
    sample_every: int = 10  # a generated piece to TensorBoard (image and audio) every N epochs; 0: never
    workers: int = 1  # processes encoding the dataset (0: one per CPU core); the result does not depend on it
    distribute: str = "none"  # "none", "mirrored" (local GPUs), "multiworker" (TF_CONFIG's hosts)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(targets=DEFAULT_TARGETS))

    def __post_init__(self):
        for name in ("window_length", "batch_size", "epochs", "histogram_freq"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be at least 1, got {self.patience}")
        if self.max_files is not None and self.max_files < 1:
            raise ValueError(f"max_files must be at least 1, got {self.max_files}")
        if self.sample_every < 0:
            raise ValueError(f"sample_every must be 0 (never) or more, got {self.sample_every}")
        if self.workers < 0:
            raise ValueError(f"workers must be 0 (one per CPU core) or more, got {self.workers}")
        if self.distribute not in DISTRIBUTE:
            raise ValueError(f"distribute must be one of {DISTRIBUTE}, got {self.distribute!r}")

    def to_json(self) -> dict:
        data = asdict(self)
        data["model"] = self.model.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict) -> TrainConfig:
        """The config ``to_json`` wrote (the ``train`` entry of ``config.json``).

        Runs written before ``targets`` existed trained on the last row only: a missing
        ``model.targets`` reads as ``"last"`` (``ModelConfig``'s own default).
        """
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
    kept: bool = True  # False on a non-chief worker, whose run folder was temporary and is gone


@dataclass
class PreparedData:
    """A dataset resolved, fingerprinted, encoded and split by file."""

    files: DatasetFiles
    encoded: EncodedDataset
    split: dict[str, list[str]]
    fingerprint: str


def train(config: TrainConfig, *, verbose: int = 1) -> TrainResult:
    """Train ``config.model`` on ``config.dataset``; write everything to a new run folder.

    Under ``--distribute multiworker`` only the chief writes the run folder; the other
    workers write theirs to a temporary folder, removed at the end.
    """
    distribution = Distribution.create(config.distribute)  # before TensorFlow runs anything
    representation = NoteMatrix()
    data = prepare_data(config, representation, verbose)
    if distribution.is_chief:
        run_dir = runs.new_run_dir(config.logdir, config.run_name)
    else:
        run_dir = Path(tempfile.mkdtemp(prefix=f"note_matrix-{distribution.task}-"))
    try:
        result = _train_new(config, data, representation, run_dir, distribution, verbose)
    finally:
        if not distribution.is_chief:
            shutil.rmtree(run_dir, ignore_errors=True)
    result.kept = distribution.is_chief
    return result


def _train_new(
    config: TrainConfig,
    data: PreparedData,
    representation: NoteMatrix,
    run_dir: Path,
    distribution: Distribution,
    verbose: int,
) -> TrainResult:
    device = describe_device()
    runs.write_json(
        run_dir / runs.CONFIG_FILE,
        {
            "created": runs.utc_now(),
            "note_matrix_version": note_matrix.__version__,
            "keras_version": keras.__version__,
            "backend": keras.backend.backend(),
            "device": device,
            "distribution": distribution.to_json(),
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
    return _fit(config, data, run_dir, device, distribution, checkpoint=None, verbose=verbose)


def resume_config(run_dir: str | Path, changes: dict | None = None) -> TrainConfig:
    """The saved config of the run in ``run_dir``, with ``changes`` (as ``TrainConfig.with_changes``).

    Only ``RESUMABLE_CHANGES`` may differ from the saved settings (``epochs``: train
    longer; ``distribute``: other devices); any other difference (``targets`` too) raises
    ``RunError`` naming each setting, saved and given.
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
            f"(only {', '.join('--' + name.replace('_', '-') for name in RESUMABLE_CHANGES)} may change)"
        )
    return config


def resume(run_dir: str | Path, config: TrainConfig, *, verbose: int = 1) -> TrainResult:
    """Continue the interrupted run in ``run_dir`` from its last checkpoint to ``config.epochs``.

    ``config`` comes from ``resume_config``. A finished run is reported and left as it is.
    Raises ``RunError`` when there is no checkpoint, or the dataset's files, the note
    matrix representation or the split differ from the run's. Under ``--distribute
    multiworker`` every worker reads ``run_dir`` (shared storage, or a copy on each host);
    only the chief writes to it, the others work on a temporary copy.
    """
    distribution = Distribution.create(config.distribute)  # before TensorFlow runs anything
    if distribution.is_chief:
        return _resume(Path(run_dir), config, distribution, verbose)
    with tempfile.TemporaryDirectory(prefix=f"note_matrix-{distribution.task}-") as scratch:
        result = _resume(Path(shutil.copytree(run_dir, Path(scratch) / "run")), config, distribution, verbose)
    result.kept = False
    return result


def _resume(run_dir: Path, config: TrainConfig, distribution: Distribution, verbose: int) -> TrainResult:
    saved = runs.read_config(run_dir)
    checkpoint = runs.read_checkpoint(run_dir)
    complete_commit(run_dir, checkpoint)  # what a kill right after the last commit may have left undone
    done = checkpoint["epochs_done"]
    finished = checkpoint["stopped_early"] or done >= config.epochs
    if checkpoint["stopped_early"]:
        print(f"{run_dir}: already finished (stopped early after {done} epochs); nothing to resume")
    elif finished:
        print(f"{run_dir}: already finished ({done} epochs done); nothing to resume. "
              f"To train longer: python train.py --resume {run_dir} --epochs <more than {done}>")
    if finished:
        if distribution.is_chief and (run_dir / runs.MODEL_FILE).is_file() and not (run_dir / runs.CALIBRATION_FILE).is_file():
            calibrate(run_dir, verbose=verbose)  # a run that finished before calibration existed
        return TrainResult(run_dir, checkpoint["history"], {}, epochs_trained=0)
    representation = NoteMatrix()
    if saved["representation"] != representation.to_json():
        raise RunError(f"{run_dir}: the note matrix representation changed since this run started; start a new run")
    data = prepare_data(config, representation, verbose)
    _refuse_changed_data(run_dir, saved, data)
    device = describe_device()
    saved["train"] = config.to_json()  # --epochs may have been raised
    saved.setdefault("resumed", []).append(
        {"at": runs.utc_now(), "epochs_done": done, "device": device, "distribution": distribution.to_json()}
    )
    runs.write_json(run_dir / runs.CONFIG_FILE, saved)
    return _fit(config, data, run_dir, device, distribution, checkpoint=checkpoint, verbose=verbose)


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


def prepare_data(config: TrainConfig, representation: NoteMatrix, verbose: int) -> PreparedData:
    """Resolve, fingerprint, encode (cached) and split the dataset of ``config``."""
    files = resolve_dataset(config.dataset, Path(config.data_dir))
    if config.max_files is not None:
        files.keys = files.keys[: config.max_files]
    encoded = encode_dataset(
        files,
        representation,
        Path(config.data_dir),
        min_steps=config.window_length + 1,
        progress=verbose > 0,
        workers=config.workers,
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
    return PreparedData(files, encoded, split, encoded.fingerprint)


def window_batches(config: TrainConfig, data: PreparedData) -> tuple[WindowBatches, WindowBatches | None]:
    """The training batches and the validation batches (None without validation windows).

    Training: non-overlapping chunks with ``targets="all"``, sliding windows with
    ``"last"``; validation: every sliding window, whatever the targets.
    """
    arrays, targets = data.encoded.arrays, config.model.targets
    train_index = WindowIndex([arrays[k] for k in data.split["train"]], config.window_length)
    validation_index = WindowIndex([arrays[k] for k in data.split["validation"]], config.window_length)
    if len(train_index) == 0:
        raise DatasetError(f"{data.files.root}: the training split has no windows of {config.window_length} rows")
    batches = WindowBatches(train_index, config.batch_size, shuffle=True, seed=config.seed, targets=targets,
                            layout="chunks" if targets == "all" else "sliding")
    if len(validation_index) == 0:
        return batches, None
    return batches, WindowBatches(validation_index, config.batch_size, shuffle=False, targets=targets)


def _sample_logger(config: TrainConfig, data: PreparedData, run_dir: Path) -> SampleLogger:
    """Pieces from the first window of the first validation file, every ``sample_every`` epochs."""
    key = data.split["validation"][0]
    primer = data.encoded.arrays[key][: config.window_length]
    tempo = read_midi(data.files.path(key)).tempo_us_per_beat
    return SampleLogger(run_dir, primer, NoteMatrix(), every=config.sample_every, tempo_us_per_beat=tempo)


def _fit(
    config: TrainConfig,
    data: PreparedData,
    run_dir: Path,
    device: str,
    distribution: Distribution,
    *,
    checkpoint: dict | None,
    verbose: int,
) -> TrainResult:
    """Fit from scratch (``checkpoint`` None) or from a checkpoint, up to ``config.epochs``."""
    keras.utils.set_random_seed(config.seed)
    targets = config.model.targets
    batches, validation = window_batches(config, data)
    train_index = batches.index
    has_validation = validation is not None
    probe_source = validation.index if has_validation else train_index
    probe_windows, _ = probe_source.batch(np.arange(min(PROBE_BATCH_SIZE, len(probe_source))))

    with distribution.scope():
        if checkpoint is None:
            model = compile_model(build_model(config.model), config.model)
            initial_epoch, steps = 0, {"train_step": 0, "validation_step": 0}
            action = "Training"
        else:
            model = load_checkpoint(run_dir, checkpoint)
            initial_epoch, steps = checkpoint["epochs_done"], checkpoint["tensorboard"]
            action = f"Resuming at epoch {initial_epoch + 1} of {config.epochs}:"
    what = (f"{batches.windows} chunks of {config.window_length} rows, every next row a target"
            if targets == "all" else f"{len(train_index)} windows, the row after each a target")
    print(
        f"{action} {model.name} on {device}{distribution.describe()}: {len(data.split['train'])} files / {what}; "
        f"validation {len(data.split['validation'])} files / {validation.windows if has_validation else 0} windows "
        f"-> {run_dir}"
    )
    logger = TensorBoardLogger(
        run_dir, probe_windows, histogram_freq=config.histogram_freq, initial_epoch=initial_epoch, **steps
    )
    # A run started before last_mse existed goes on with its own monitor (in "last" mode, the same value).
    monitor = checkpoint["monitor"] if checkpoint else monitored_value(config.model, has_validation)
    tracker = EpochCheckpoint(run_dir, monitor, config.patience, logger, checkpoint, verbose=verbose)
    if distribution.strategy is None:
        inputs = {"x": batches, "validation_data": validation}
        callbacks = [ShuffleEpochs(batches)]
    else:
        from note_matrix import pipeline  # tf.data: TensorFlow backend only

        build_from_one_window(model, batches)
        if distribution.kind == "multiworker":
            log_vectors(model)
        inputs = {
            "x": pipeline.training_dataset(batches, initial_epoch, config.epochs),
            "steps_per_epoch": len(batches),
            "validation_data": pipeline.evaluation_dataset(validation) if has_validation else None,
        }
        callbacks = []
    if config.sample_every and has_validation:
        callbacks.append(_sample_logger(config, data, run_dir))
    model.fit(
        **inputs,
        shuffle=False,  # batches shuffle themselves, by (seed, epoch); Keras would use the global RNG
        epochs=config.epochs,
        initial_epoch=initial_epoch,
        callbacks=[*callbacks, logger, tracker],
        verbose=verbose,
    )
    if distribution.is_chief and tracker.history:
        write_loss_curve(run_dir, tracker.history)
    if tracker.best_epoch is None:
        print(f"no finite {tracker.monitor} in any epoch; no model saved")
    else:
        print(f"best {tracker.monitor} {tracker.best:.6f} at epoch {tracker.best_epoch + 1}; "
              f"model saved to {run_dir / runs.MODEL_FILE}")
        if distribution.is_chief:
            write_calibration(run_dir, load_model(run_dir), config, data, verbose=verbose)
    return TrainResult(run_dir, tracker.history, data.encoded.skipped, tracker.epochs_done - initial_epoch)


def monitored_value(model: ModelConfig, has_validation: bool = True) -> str:
    """What picks the best model and stops early: the value after the whole window.

    ``val_last_mse`` (the card's squared error) for the regression head, ``val_last_loss``
    (the head's own loss) for the others; without validation windows, the training value.
    """
    name = "last_mse" if model.head == "regression" else "last_loss"
    return f"val_{name}" if has_validation else name


# -- calibration ---------------------------------------------------------------------------------

def calibrate(run_dir: str | Path, *, verbose: int = 0) -> dict:
    """Compute and write ``calibration.json`` for the finished (or stopped) run in ``run_dir``.

    Reads the run's dataset again (cached), checks it is the run's own (as ``--resume``
    does) and scores the best model (``model.keras``) on the validation windows; see
    ``write_calibration``. Returns what it wrote. ``RunError`` without a model, or if the
    dataset changed; ``DatasetError`` if it cannot be read.
    """
    run_dir = Path(run_dir)
    config = _saved_train_config(run_dir)
    saved = runs.read_config(run_dir)
    representation = NoteMatrix()
    if saved.get("representation") != representation.to_json():
        raise RunError(f"{run_dir}: the note matrix representation changed since this run was trained")
    model = load_model(run_dir)
    data = prepare_data(config, representation, verbose)
    _refuse_changed_data(run_dir, saved, data)
    return write_calibration(run_dir, model, config, data, verbose=verbose)


def write_calibration(run_dir: Path, model: keras.Model, config: TrainConfig, data: PreparedData, *,
                      verbose: int = 1) -> dict:
    """Residual standard deviations of ``model``'s point rows on the card's task, to ``calibration.json``.

    The task: the row after every sliding validation window (every training window when
    the split has no validation windows; ``split`` says which). Per column, the root mean
    square of ``point_rows - target`` (``models.heads.residual_std_of``). Written
    atomically as ``{"residual_std": {"note", "velocity", "time"}, "rows", "split", "head",
    "created"}``; returned.
    """
    split = "validation"
    index = WindowIndex([data.encoded.arrays[k] for k in data.split["validation"]], config.window_length)
    if len(index) == 0:
        split = "train"
        index = WindowIndex([data.encoded.arrays[k] for k in data.split["train"]], config.window_length)
    outputs, targets = last_predictions(model, index)
    calibration = {
        "residual_std": residual_std_of(config.model, outputs, targets),
        "rows": len(targets),
        "split": split,
        "head": head_config(config.model).head,
        "created": runs.utc_now(),
    }
    runs.write_json(Path(run_dir) / runs.CALIBRATION_FILE, calibration)
    if verbose:
        spread = ", ".join(f"{name} {value:.4f}" for name, value in calibration["residual_std"].items())
        print(f"calibration: residual std {spread} on {len(targets)} {split} windows -> {runs.CALIBRATION_FILE}")
    return calibration


def last_predictions(model: keras.Model, index: WindowIndex,
                     batch_size: int = CALIBRATION_BATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """The model's output after each window of ``index`` and the row that follows it:
    ``(outputs (windows, width), targets (windows, 3))`` float32 (the last step of a
    sequence output)."""
    outputs, targets = [], []
    for first in range(0, len(index), batch_size):
        x, y = index.batch(np.arange(first, min(first + batch_size, len(index))))
        prediction = keras.ops.convert_to_numpy(model.predict_on_batch(x))
        outputs.append(prediction[:, -1] if prediction.ndim == 3 else prediction)
        targets.append(y)
    width = int(model.outputs[0].shape[-1])
    if not outputs:
        return np.zeros((0, width), np.float32), np.zeros((0, 3), np.float32)
    return np.concatenate(outputs).astype(np.float32), np.concatenate(targets).astype(np.float32)
