"""Training a model on a dataset, end to end: files -> split -> windows -> fit -> run folder.

Training can be stopped at any moment (Ctrl-C, SIGKILL, a crash) and continued with
``resume``: after every epoch ``EpochCheckpoint`` saves the model with its optimizer and
commits ``checkpoint.json``. Batch order depends only on (seed, epoch) and the dropout
random state is checkpointed, so a resumed run trains the same epochs on the same
batches as an uninterrupted one.

Targets (``ModelConfig.targets``): ``"all"`` (the default) trains the next step at every
step of non-overlapping chunks of ``window_length`` steps; ``"last"`` only the step after
each sliding window, as the card does. Validation always uses sliding windows, and the
monitored value (best model, early stopping) is the one after the whole window
(``Representation.monitor``), so both modes are measured on the same task.

``batches="stream"`` (token representations) trains by truncated back-propagation
through time instead: the training files joined into ``batch_size`` parallel streams, read
window after window with the recurrent state carried from one batch to the next
(``windows.StreamBatches``). What fits is the model's carried-state twin
(``models.builder.carried_state_twin``: the same layers and weights, the same optimizer),
so the model saved, checkpointed, sampled and logged stays an ordinary one. Validation
reads the validation files as one stream the same way, and the monitored value is its
``loss``: the mean of the head's loss over every step of that stream (for tokens, the
NLL in nats per step; ``windows.stream_loss`` computes it again for any files).

Distribution (``TrainConfig.distribute``, ``note_matrix.training.distribute``):
``"data-parallel"`` (every device of every JAX process; ``mirrored`` under TensorFlow),
``"mirrored"`` (every local GPU) or ``"multiworker"`` (the hosts of ``TF_CONFIG``), both
TensorFlow; ``batch_size`` is the global batch.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import keras

import note_matrix
from models import build_model, compile_model, model_inputs, reads_targets
from models.builder import FRAME_HEADS, carried_state_twin
from models.head import HeadLoss
from note_matrix import representations, runs
from note_matrix.calibration import write_calibration
from note_matrix.config import DatasetInfo, ModelSpec, RunConfig, TrainConfig
from note_matrix.datasets import write_skip_report
from note_matrix.errors import DatasetError, RunError
from note_matrix.run_data import RunData, prepare
from note_matrix.training.checkpoints import EpochCheckpoint, checked_checkpoint, complete_commit, load_checkpoint
from note_matrix.training.devices import describe_device
from note_matrix.training.distribute import Distribution, fit_inputs
from note_matrix.training.sample_logger import LOSS_CURVE_FILE, SampleLogger, write_loss_curve
from note_matrix.training.tensorboard import TensorBoardLogger
from note_matrix.training.windows import CarryState, StreamBatches, WindowBatches, WindowIndex

PROBE_BATCH_SIZE = 64
# Train longer; the same files read from elsewhere; other devices (the same updates: the batch is global).
RESUMABLE_CHANGES = ("epochs", "data_dir", "distribute", "workers", "sample_every")


@dataclass
class TrainResult:
    run_dir: Path
    history: dict[str, list[float]]
    skipped: dict[str, str]  # files left out by this call's encoding (none when it trained nothing)
    epochs_trained: int = 0  # by this call; 0 when resuming a finished run
    kept: bool = True  # False on a non-chief worker, whose run folder was temporary and is gone


def _representation(config: TrainConfig):
    """The representation of ``config`` (``frame``, ``chord_symbols``: its options), with its head checked;
    ``RunError`` (one line) if either is unknown, or for an option given to a representation without it."""
    options = {} if config.frame is None else {"frame": config.frame}
    if options and config.representation not in ("piano_roll", "roll_tokens", "chord_tokens"):
        raise RunError(f"--frame sets the frame of --representation piano_roll, roll_tokens or chord_tokens; "
                       f"{config.representation} has none")
    if config.chord_symbols:
        if config.representation != "chord_tokens":
            raise RunError(f"--chord-symbols is an option of --representation chord_tokens, not "
                           f"{config.representation}")
        options["chord_symbols"] = True
    try:
        representation = representations.create(config.representation, **options)
        representation.head(config.model.head, config.model.mixtures)
    except ValueError as error:
        raise RunError(str(error)) from None
    if config.transpose and not representation.reads_rolls:
        raise RunError(f"--transpose shifts the keys of a piano roll; {config.representation} reads "
                       f"{representation.inputs().kind} steps (use --representation piano_roll or roll_tokens)")
    if config.model.head in FRAME_HEADS and config.model.targets != "all":
        raise RunError(f"the {config.model.head} head predicts the frame after every step: use --targets all")
    if config.batches == "stream" and representation.inputs().kind != "tokens":
        raise RunError(f"--batches stream joins the files into streams of tokens; {config.representation} reads "
                       f"{representation.inputs().kind} steps (use pitch_sequence, chord_tokens or abc_chars)")
    return representation


def monitor_of(config: TrainConfig, representation) -> str:
    """The metric that picks the best model and stops early: the representation's (``monitor``),
    or with ``--batches stream`` the loss over every step of the validation stream."""
    return "loss" if config.batches == "stream" else representation.monitor(config.model.head)


def train(config: TrainConfig, *, verbose: int = 1) -> TrainResult:
    """Train ``config.model`` on ``config.dataset``; write everything to a new run folder.

    Under ``--distribute multiworker`` or on a JAX cluster only the chief (process 0) writes
    the run folder; the other processes write theirs to a temporary folder, removed at the end.
    """
    distribution = _distribution(config)
    data = prepare(config, _representation(config), progress=verbose > 0)
    if distribution.is_chief:
        run_dir = runs.new_run_dir(config.logdir, config.run_name)
    else:
        run_dir = Path(tempfile.mkdtemp(prefix=f"note_matrix-{distribution.task}-"))
    try:
        result = _train_new(config, data, run_dir, distribution, verbose)
    finally:
        if not distribution.is_chief:
            shutil.rmtree(run_dir, ignore_errors=True)
    result.kept = distribution.is_chief
    return result


def _distribution(config: TrainConfig) -> Distribution:
    """``config``'s distribution, created before the backend runs anything; ``DistributionError``
    (one line) if the batch does not split among its devices."""
    distribution = Distribution.create(config.distribute)
    distribution.check_batch(config.batch_size)
    return distribution


def run_config(config: TrainConfig, data: RunData, device: str, distribution: Distribution) -> RunConfig:
    representation = data.representation
    head = representation.head(config.model.head, config.model.mixtures)
    return RunConfig(
        train=config,
        representation=representation.to_json(),
        model=ModelSpec(representation.inputs().to_json(), head.to_json(), monitor_of(config, representation)),
        dataset=DatasetInfo(data.files.name, str(data.files.root), data.total_files, len(data.arrays),
                            len(data.skipped), data.fingerprint),
        created=runs.utc_now(), note_matrix_version=note_matrix.__version__, keras_version=keras.__version__,
        backend=keras.backend.backend(), device=device, distribution=distribution.to_json(),
    )


def _train_new(config: TrainConfig, data: RunData, run_dir: Path, distribution: Distribution,
               verbose: int) -> TrainResult:
    device = describe_device()
    saved = run_config(config, data, device, distribution)
    saved.write(run_dir)
    runs.write_json(run_dir / runs.SPLIT_FILE,
                    {"dataset": data.files.name, "root": str(data.files.root), "seed": config.seed, **data.split})
    write_skip_report(run_dir / runs.SKIP_FILE, data.skipped)
    if data.skipped:
        print(f"skipped {len(data.skipped)} of {data.total_files} files, see {run_dir / runs.SKIP_FILE}")
    if distribution.is_chief:  # the other processes' folders are temporary
        print(f"Checkpoints every epoch; if stopped, continue with: python train.py --resume {run_dir}")
    return _fit(config, data, run_dir, device, distribution, checkpoint=None, verbose=verbose)


def resume_config(run_dir: str | Path, changes: dict | None = None) -> TrainConfig:
    """The saved config of the run in ``run_dir``, with ``changes`` (as ``TrainConfig.with_changes``).

    Only ``RESUMABLE_CHANGES`` may differ from the saved settings; any other difference
    raises ``RunError`` naming each setting, saved and given.
    """
    saved = RunConfig.read(run_dir).train
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
    ``RunError`` without a checkpoint, or when the dataset's files, the representation or
    the split differ from the run's. Under ``multiworker`` only the chief writes ``run_dir``.
    """
    distribution = _distribution(config)
    if distribution.is_chief:
        return _resume(Path(run_dir), config, distribution, verbose)
    with tempfile.TemporaryDirectory(prefix=f"note_matrix-{distribution.task}-") as scratch:
        result = _resume(Path(shutil.copytree(run_dir, Path(scratch) / "run")), config, distribution, verbose)
    result.kept = False
    return result


def _resume(run_dir: Path, config: TrainConfig, distribution: Distribution, verbose: int) -> TrainResult:
    saved = RunConfig.read(run_dir)
    checkpoint = runs.read_checkpoint(run_dir)
    checked_checkpoint(run_dir, checkpoint)  # before its model file is copied or loaded
    complete_commit(run_dir, checkpoint)  # what a kill right after the last commit may have left undone
    done = checkpoint["epochs_done"]
    finished = checkpoint["stopped_early"] or done >= config.epochs
    if checkpoint["stopped_early"]:
        print(f"{run_dir}: already finished (stopped early after {done} epochs); nothing to resume")
    elif finished:
        print(f"{run_dir}: already finished ({done} epochs done); nothing to resume. "
              f"To train longer: python train.py --resume {run_dir} --epochs <more than {done}>")
    if finished:
        if (distribution.is_chief and saved.head().needs_spread and (run_dir / runs.MODEL_FILE).is_file()
                and not (run_dir / runs.CALIBRATION_FILE).is_file()):
            calibrate(run_dir, verbose=verbose)  # a run that finished before calibration existed
        if distribution.is_chief and checkpoint["history"] and not (run_dir / LOSS_CURVE_FILE).is_file():
            write_loss_curve(run_dir, checkpoint["history"])  # killed between the last commit and the curve
        return TrainResult(run_dir, checkpoint["history"], {}, epochs_trained=0)
    data = prepare(config, _representation(config), progress=verbose > 0)
    refuse_changed_data(run_dir, saved, data)
    device = describe_device()
    resumed = {"at": runs.utc_now(), "epochs_done": done, "device": device, "distribution": distribution.to_json()}
    replace(saved, train=config, resumed=[*saved.resumed, resumed]).write(run_dir)
    return _fit(config, data, run_dir, device, distribution, checkpoint=checkpoint, verbose=verbose)


def refuse_changed_data(run_dir: Path, saved: RunConfig, data: RunData) -> None:
    """``RunError`` if the representation, the dataset's files or the split are not the run's own."""
    if saved.representation != data.representation.to_json():
        raise RunError(f"{run_dir}: the {data.representation.name} representation changed since this run started; "
                       "start a new run")
    if saved.dataset.fingerprint != data.fingerprint:
        raise RunError(
            f"{run_dir}: the dataset's files changed since this run started (in {data.files.root}: "
            f"fingerprint {saved.dataset.fingerprint[:12]} saved, {data.fingerprint[:12]} now; files added, removed "
            "or modified); resuming would train on other data, start a new run instead"
        )
    split = runs.read_json(run_dir / runs.SPLIT_FILE) or {}
    if any(split.get(part) != data.split[part] for part in data.split):
        raise RunError(f"{run_dir}: the train/validation/test split would differ from {runs.SPLIT_FILE}")


def calibrate(run_dir: str | Path, *, verbose: int = 0) -> dict:
    """Compute and write ``calibration.json`` for the finished (or stopped) run in ``run_dir``.

    Reads the run's dataset again (cached), checks it is the run's own (as ``--resume``
    does) and scores the best model on the validation windows. ``RunError`` without a
    model or if the dataset changed; ``DatasetError`` if it cannot be read.
    """
    run_dir = Path(run_dir)
    saved = RunConfig.read(run_dir)
    model = runs.load_model(run_dir)
    data = prepare(saved.train, saved.build_representation(), progress=verbose > 0)
    refuse_changed_data(run_dir, saved, data)
    return write_calibration(run_dir, model, saved.head(), data, verbose=verbose)


def window_batches(config: TrainConfig, data: RunData
                   ) -> tuple[WindowBatches | StreamBatches, WindowBatches | StreamBatches | None]:
    """The training batches and the validation batches (None without validation windows).

    Training: non-overlapping chunks with ``targets="all"``, sliding windows with
    ``"last"`` (``batches="random"``: as many windows at random starts); validation: every
    sliding window (every ``validation_stride``-th), whatever the targets.
    ``batches="stream"``: ``stream_batches``.
    """
    if config.batches == "stream":
        return stream_batches(config, data)
    targets = config.model.targets
    train_index = WindowIndex(data.part("train"), config.window_length)
    validation_index = WindowIndex(data.part("validation"), config.window_length, config.validation_stride)
    if len(train_index) == 0:
        raise DatasetError(f"{data.files.root}: the training split has no windows of {config.window_length} steps")
    batches = WindowBatches(train_index, config.batch_size, shuffle=True, seed=config.seed, targets=targets,
                            layout="chunks" if targets == "all" else "sliding", draw=config.batches,
                            transpose=config.transpose, key_tokens=data.representation.key_tokens)
    if len(validation_index) == 0:
        return batches, None
    return batches, WindowBatches(validation_index, config.batch_size, shuffle=False, targets=targets)


def stream_batches(config: TrainConfig, data: RunData) -> tuple[StreamBatches, StreamBatches | None]:
    """The training files as ``batch_size`` streams in an order drawn per (seed, epoch), and the
    validation files as streams in split order (None without validation files)."""
    try:
        batches = StreamBatches(data.part("train"), config.batch_size, config.window_length, shuffle=True,
                                seed=config.seed)
    except ValueError as error:
        raise DatasetError(f"{data.files.root}: the training split cannot be read as streams: {error}") from None
    if not data.split["validation"]:
        return batches, None
    return batches, StreamBatches(data.part("validation"), config.batch_size, config.window_length, shuffle=False)


def _carried_state_fit(model: keras.Model, head, metrics: list, batch_size: int, callbacks: list, *, epochs: int,
                       steps: int, verbose: int) -> tuple[keras.Model, keras.callbacks.CallbackList]:
    """What fits with ``--batches stream`` and the callbacks it fits with: ``model``'s carried-state
    twin, compiled with ``model``'s optimizer, the head's loss and ``metrics``; ``callbacks`` (the
    project's) see ``model``, whose weights the twin trains, and save, log and sample it; Keras'
    history and progress bar see the twin; ``CarryState`` resets the state and passes on a stop."""
    twin = carried_state_twin(model, batch_size)
    twin.compile(optimizer=model.optimizer, loss=HeadLoss(head), metrics=metrics)
    callback_list = keras.callbacks.CallbackList([*callbacks, CarryState(twin, model)], add_history=True,
                                                 add_progbar=verbose != 0, verbose=verbose, epochs=epochs,
                                                 steps=steps, model=twin)
    for callback in callbacks:
        callback.set_model(model)
    return twin, callback_list


def _sample_logger(config: TrainConfig, data: RunData, run_dir: Path, head) -> SampleLogger:
    """Pieces from the first window of the first validation file, every ``sample_every`` epochs."""
    key = data.split["validation"][0]
    primer = data.arrays[key][: config.window_length]
    meta = data.meta(key)
    return SampleLogger(run_dir, primer, data.representation, head, meta, every=config.sample_every)


def _fit(config: TrainConfig, data: RunData, run_dir: Path, device: str, distribution: Distribution, *,
         checkpoint: dict | None, verbose: int) -> TrainResult:
    """Fit from scratch (``checkpoint`` None) or from a checkpoint, up to ``config.epochs``."""
    keras.utils.set_random_seed(config.seed)
    representation = data.representation
    head = representation.head(config.model.head, config.model.mixtures)
    batches, validation = window_batches(config, data)
    has_validation = validation is not None
    probe_source = validation.index if has_validation else batches.index
    probe_windows, probe_targets = probe_source.gather(probe_source.starts[:PROBE_BATCH_SIZE], config.model.targets)

    with distribution.scope():  # keras.distribution must be set while building and fitting
        if checkpoint is None:
            model = build_model(config.model, representation.inputs(), head)
            compile_model(model, config.model, head, representation.metrics(config.model.head, head))
            initial_epoch, steps = 0, {"train_step": 0, "validation_step": 0}
            action = "Training"
        else:
            model = load_checkpoint(run_dir, checkpoint, head)
            initial_epoch, steps = checkpoint["epochs_done"], checkpoint["tensorboard"]
            action = f"Resuming at epoch {initial_epoch + 1} of {config.epochs}:"
        if config.transpose and distribution.strategy is not None:
            raise RunError("--transpose cannot train under tf.distribute (--distribute with the TensorFlow backend); "
                           "train on one device or under JAX")
        if reads_targets(model):  # nade, biaxial: teacher-forced, they read the frames they predict
            if distribution.strategy is not None:
                raise RunError(f"the {config.model.head} head cannot train under tf.distribute (--distribute with "
                               "the TensorFlow backend); train it on one device or under JAX")
            for part in (batches, validation):
                if part is not None:
                    part.feed_targets = True
        seen = validation.describe() if has_validation else "0 windows"
        print(
            f"{action} {model.name} on {device}{distribution.describe()}: {len(data.split['train'])} files / "
            f"{batches.describe()}; validation {len(data.split['validation'])} files / {seen} -> {run_dir}"
        )
        logger = TensorBoardLogger(
            run_dir, model_inputs(model, probe_windows, probe_targets), histogram_freq=config.histogram_freq, initial_epoch=initial_epoch, **steps
        )
        monitor = monitor_of(config, representation)
        monitor = checkpoint["monitor"] if checkpoint else (f"val_{monitor}" if has_validation else monitor)
        tracker = EpochCheckpoint(run_dir, monitor, config.patience, logger, checkpoint, verbose=verbose)
        inputs, callbacks = fit_inputs(model, distribution, batches, validation, initial_epoch, config.epochs)
        if config.sample_every and has_validation and representation.decodes_to != ".mid":
            print(f"no samples in TensorBoard: {representation.name} writes {representation.decodes_to} files, not "
                  "MIDI (generate.py writes them)")
        elif config.sample_every and has_validation:
            callbacks.append(_sample_logger(config, data, run_dir, head))
        fitted, callbacks = model, [*callbacks, logger, tracker]
        if config.batches == "stream":
            fitted, callbacks = _carried_state_fit(model, head, representation.metrics(config.model.head, head),
                                                   config.batch_size, callbacks, epochs=config.epochs,
                                                   steps=len(batches), verbose=verbose)
        fitted.fit(
            **inputs,
            shuffle=False,  # batches shuffle themselves, by (seed, epoch); Keras would use the global RNG
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            verbose=verbose,
        )
    if distribution.is_chief and tracker.history:
        write_loss_curve(run_dir, tracker.history)
    if tracker.best_epoch is None:
        print(f"no finite {tracker.monitor} in any epoch; no model saved")
    else:
        print(f"best {tracker.monitor} {tracker.best:.6f} at epoch {tracker.best_epoch + 1}; "
              f"model saved to {run_dir / runs.MODEL_FILE}")
        if distribution.is_chief and head.needs_spread:  # nothing else reads it: no pass over validation for it
            write_calibration(run_dir, runs.load_model(run_dir), head, data, verbose=verbose)
    return TrainResult(run_dir, tracker.history, data.skipped, tracker.epochs_done - initial_epoch)
