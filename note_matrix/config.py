"""Typed, validated configuration: a training job's settings and a run's ``config.json``.

Dataclasses with defaults, written as JSON and read back through ``load``: every field
is checked against its annotation, and an unknown, missing (without a default) or
mistyped field is refused with one ``RunError`` line naming the file and the field. Run
folders written before a field existed load with that field's recorded default
(``_LEGACY``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from models import InputSpec, ModelConfig
from note_matrix import runs
from note_matrix.errors import RunError

DISTRIBUTE = ("none", "data-parallel", "mirrored", "multiworker")
# every window once per epoch in a shuffled order; as many at random positions; the files joined into parallel
# streams, cut into consecutive windows, the recurrent state carried from one window to the next
BATCHES = ("shuffled", "random", "stream")
DEFAULT_TARGETS = "all"  # see the README, "Training modes": the same network, 40x the targets a second


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training job, with the design card's defaults (seed 003)."""

    dataset: str = "pop"
    data_dir: str = "data"
    logdir: str = "logs"
    run_name: str | None = None
    representation: str = "note_matrix"  # a name of note_matrix.representations.REGISTRY
    frame: float | None = None  # piano_roll, chord_tokens: beats per frame from MIDI files (None: theirs)
    chord_symbols: bool = False  # chord_tokens: one symbol per chord (the training files' chords and <unk>)
    window_length: int = 50
    batch_size: int = 64
    epochs: int = 200
    patience: int | None = None  # early stopping on validation loss; None: never
    validation_fraction: float = 0.1
    validation_stride: int = 1  # validate on every window (the card), or on every N-th window of each file
    test_fraction: float = 0.1
    seed: int = 0  # the split, weight initialisation, dropout and shuffling
    # "random": windows at random positions, with replacement (seed 004); "stream": truncated back-propagation,
    # the state carried from window to window (note_matrix.training.windows.StreamBatches)
    batches: str = "shuffled"
    max_files: int | None = None  # the first N files of the dataset (sorted), for quick runs
    transpose: int = 0  # piano rolls: each training window shifted by up to N semitones (training.windows)
    split_from: str | None = None  # a run folder whose split.json this run's files follow (run_data.prepare)
    histogram_freq: int = 1
    sample_every: int = 10  # a generated piece to TensorBoard (image and audio) every N epochs; 0: never
    workers: int = 1  # processes encoding the dataset (0: one per CPU core); the result does not depend on it
    distribute: str = "none"  # "none", "data-parallel" (every device, JAX or TF), "mirrored", "multiworker" (TF)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(targets=DEFAULT_TARGETS))

    def __post_init__(self):
        for name in ("window_length", "batch_size", "epochs", "histogram_freq", "validation_stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be at least 1, got {self.patience}")
        if self.max_files is not None and self.max_files < 1:
            raise ValueError(f"max_files must be at least 1, got {self.max_files}")
        if not 0 <= self.transpose <= 12:
            raise ValueError(f"transpose must lie in 0..12 semitones, got {self.transpose}")
        if self.sample_every < 0:
            raise ValueError(f"sample_every must be 0 (never) or more, got {self.sample_every}")
        if self.workers < 0:
            raise ValueError(f"workers must be 0 (one per CPU core) or more, got {self.workers}")
        if self.distribute not in DISTRIBUTE:
            raise ValueError(f"distribute must be one of {DISTRIBUTE}, got {self.distribute!r}")
        if self.batches not in BATCHES:
            raise ValueError(f"batches must be one of {BATCHES}, got {self.batches!r}")
        if self.batches == "stream":
            self._check_stream()
        if self.frame is not None and not 0 < self.frame < math.inf:
            raise ValueError(f"frame must be a positive number of beats, got {self.frame}")

    def _check_stream(self) -> None:
        """What ``--batches stream`` cannot go with, refused in one line each."""
        refusals = (
            (self.model.targets != "all", "learns the next step at every step of each window: it needs --targets all"),
            (self.model.cell == "lstm-reference",
             "carries the recurrent state of an lstm, gru or rnn cell; lstm-reference always starts from zero"),
            (self.distribute != "none",
             "trains on one device (the state is carried per row of the batch); leave out --distribute"),
            (self.validation_stride != 1, "validates on the whole validation stream; leave out --validation-stride"),
        )
        for refused, why in refusals:
            if refused:
                raise ValueError(f"--batches stream {why}")

    def to_json(self) -> dict:
        return asdict(self)

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


@dataclass(frozen=True)
class ModelSpec:
    """What the network reads and predicts, as built: ``models.InputSpec`` and ``Head`` JSON,
    and the metric that picks the best model."""

    inputs: dict
    head: list
    monitor: str


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    root: str
    files: int
    used: int
    skipped: int
    fingerprint: str


@dataclass(frozen=True)
class RunConfig:
    """A run's ``config.json``: everything generation and evaluation need, no flag passed twice."""

    train: TrainConfig
    representation: dict
    model: ModelSpec
    dataset: DatasetInfo
    created: str = ""
    note_matrix_version: str = ""
    keras_version: str = ""
    backend: str = ""
    device: str = ""
    distribution: dict = field(default_factory=dict)
    resumed: list = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)

    def write(self, run_dir: Path) -> None:
        runs.write_json(Path(run_dir) / runs.CONFIG_FILE, self.to_json())

    def head(self):
        """The run's ``models.Head`` (loads Keras); ``RunError`` naming the field if it is not one."""
        from models.fields import Head

        try:
            return Head.from_json(self.model.head)
        except ValueError as error:
            raise RunError(f"{self._source()}: field model.head: {error}") from None

    def build_representation(self):
        """The run's representation; ``RunError`` naming the field if it is not one."""
        from note_matrix import representations

        try:
            return representations.from_json(self.representation)
        except ValueError as error:
            raise RunError(f"{self._source()}: field representation: {error}") from None

    def _source(self) -> str:
        return getattr(self, "source", runs.CONFIG_FILE)

    @classmethod
    def read(cls, run_dir: str | Path) -> RunConfig:
        """The run's ``config.json``, validated: one ``RunError`` line naming the file and the
        field for anything unknown, missing, mistyped or not finite, the representation, the
        head's name and the input included (the head's fields are checked when it is built,
        ``head``, as that loads Keras)."""
        path = Path(run_dir) / runs.CONFIG_FILE
        data = runs.read_config(run_dir)
        not_finite = _non_finite(data)
        if not_finite is not None:
            raise RunError(f"{path}: field {not_finite} must be a finite number")
        config = load(cls, _fill_legacy(data, path), str(path))
        object.__setattr__(config, "source", str(path))  # not a field: never written
        heads = config.build_representation().heads
        if config.train.model.head not in heads:
            raise RunError(
                f"{path}: field train.model.head must be one of {', '.join(heads)}, got {config.train.model.head!r:.40}"
            )
        try:
            InputSpec(**config.model.inputs)
        except (TypeError, ValueError) as error:
            raise RunError(f"{path}: field model.inputs: {error}") from None
        return config


# -- reading JSON into dataclasses ---------------------------------------------------------------

def load(cls, data, where: str, prefix: str = ""):
    """``cls(**data)`` with every field checked against its annotation; ``RunError`` naming
    ``where`` and the field (``prefix`` + name) for anything unknown, missing or mistyped."""
    if not isinstance(data, dict):
        raise RunError(f"{where}: {prefix.rstrip('.') or 'the file'} must be a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise RunError(f"{where}: unknown field {prefix}{unknown[0]}")
    values = {}
    for name, spec in fields.items():
        if name not in data:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise RunError(f"{where}: missing field {prefix}{name}")
            continue
        values[name] = _value(hints[name], data[name], where, f"{prefix}{name}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise RunError(f"{where}: {prefix.rstrip('.') or 'invalid'}: {error}") from None


def _value(kind, value, where: str, name: str):
    if dataclasses.is_dataclass(kind):
        return load(kind, value, where, f"{name}.")
    options = typing.get_args(kind) if isinstance(kind, types.UnionType) else (kind,)
    for option in options:
        if option is type(None) and value is None:
            return None
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option in (int, str, bool) and type(value) is option:
            return value
        if typing.get_origin(option) in (dict, list) and isinstance(value, typing.get_origin(option)):
            return value
        if option in (dict, list) and isinstance(value, option):
            return value
    expected = " or ".join(getattr(o, "__name__", str(o)) for o in options).replace("NoneType", "null")
    raise RunError(f"{where}: field {name} must be {expected}, got {value!r:.60}")


def _non_finite(data, name: str = "") -> str | None:
    """The name of the first NaN or infinite number in ``data`` (JSON, its nesting bounded by
    ``runs.parse_json``): Python's JSON reader accepts them, and no setting means them."""
    if isinstance(data, float) and not math.isfinite(data):
        return name
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        found = _non_finite(value, f"{name}[{key}]" if isinstance(data, list) else f"{name}.{key}" if name else key)
        if found is not None:
            return found
    return None


def _fill_legacy(data, path: Path):
    """Run folders from before the representation interface: fill what they lack with the
    values they were trained with (the note matrix, its head by name)."""
    if not isinstance(data, dict) or not isinstance(data.get("train"), dict):
        return data
    data = dict(data)
    train = data["train"] = dict(data["train"])
    train.setdefault("representation", "note_matrix")
    model = train.get("model")
    if isinstance(model, dict) and "features" in model:
        model = train["model"] = dict(model)
        if model.pop("features") != 3:
            raise RunError(f"{path}: a run of {model} with other than 3 features is not one this version reads")
    if "model" not in data and isinstance(model, dict):
        from note_matrix import representations

        try:
            representation = representations.from_json(data.get("representation"))
            head = representation.head(model.get("head", "regression"), model.get("mixtures", 5))
        except (ValueError, TypeError) as error:
            raise RunError(f"{path}: cannot rebuild the run's head ({error})") from None
        data["model"] = {"inputs": representation.inputs().to_json(), "head": head.to_json(),
                         "monitor": representation.monitor(model.get("head", "regression"))}
    return data
