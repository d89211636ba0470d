"""A run's data: its dataset's files, split by file, and their encoded arrays.

One type for training (``prepare``: encode, split, fit the representation on the
training files, encode with what it learnt) and for evaluation (``open_run`` then
``encode``: the files a finished run was trained on, as it encoded them).

A polyphonic benchmark (``--dataset jsb`` and the others, ``datasets.polyphonic``) is no
MIDI collection: its one ``.mat`` file holds the pieces as piano rolls, already split,
so its arrays are the file's pieces (keyed ``jsb:train:3``), its split the file's own
(test empty when the file has none) and its representation one that reads piano rolls
(``reads_rolls``: ``piano_roll``, ``roll_tokens``) at the benchmark's frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from note_matrix import representations, runs
from note_matrix.config import RunConfig, TrainConfig
from note_matrix.datasets import (
    DatasetFiles,
    encode_dataset,
    file_sha256,
    registered_datasets,
    resolve_dataset,
    split_by_file,
)
from note_matrix.datasets.polyphonic import benchmark_of, keyed_pieces
from note_matrix.errors import DatasetError, RunError, SeedError
from note_matrix.representations import Representation
from note_matrix.representations.base import Encoded

PARTS = ("train", "validation", "test")


@dataclass
class RunData:
    """``split``: file keys of ``train`` / ``validation`` / ``test``; ``arrays``: every
    usable file's steps ``(steps, columns)`` once encoded; ``notes``: what the user should
    know (e.g. the dataset changed since training)."""

    files: DatasetFiles
    split: dict[str, list[str]]
    representation: Representation
    window_length: int
    data_dir: Path
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    total_files: int = 0
    fingerprint: str = ""
    run_dir: Path | None = None
    config: RunConfig | None = None
    notes: list[str] = field(default_factory=list)
    dataset: str = ""  # the name or folder the files came from, as given
    benchmark: dict | None = None  # a polyphonic benchmark's registry entry (``{"file", "frame"}``), else None

    def part(self, name: str) -> list[np.ndarray]:
        """The encoded files of split part ``name``."""
        return [self.arrays[key] for key in self.split[name]]

    def meta(self, key: str) -> dict:
        """What decoding a continuation of ``key`` needs (its tempo, ...): a benchmark piece has no file to read."""
        if self.benchmark is not None:
            return self.representation.encode_roll(self.arrays[key]).meta
        return self.representation.encode(self.files.path(key)).meta


def _encode(files: DatasetFiles, representation: Representation, data_dir: Path, window_length: int, *,
            progress: bool, workers: int = 1):
    return encode_dataset(files, representation, data_dir, min_steps=window_length + 1, progress=progress,
                          workers=workers)


def prepare(config: TrainConfig, representation: Representation, *, progress: bool) -> RunData:
    """Resolve, encode (cached), split by file, fit ``representation`` on the training files.

    The split is over the files that encode (or, with ``split_from``, that run's split,
    ``split_from_run``); a representation that learns from the
    training files (``needs_fit``) is fitted on them and the files encoded again with
    what it learnt (fitting never changes which files encode).
    """
    benchmark = benchmark_of(config.dataset)
    if benchmark is not None:
        return _prepare_benchmark(config, representation, benchmark)
    data_dir = Path(config.data_dir)
    files = resolve_dataset(config.dataset, data_dir, representation.suffixes)
    if config.max_files is not None:
        files.keys = files.keys[: config.max_files]
    encoded = _encode(files, representation, data_dir, config.window_length, progress=progress,
                      workers=config.workers)
    if not encoded.arrays:
        raise DatasetError(
            f"{files.root}: none of {encoded.total_files} files is usable "
            f"(each needs at least {config.window_length + 1} steps); "
            f"first reason: {next(iter(encoded.skipped.values()), 'no files')}"
        )
    if config.split_from is not None:
        split = split_from_run(config.split_from, files, encoded.arrays)
    else:
        split = split_by_file(list(encoded.arrays), validation_fraction=config.validation_fraction,
                              test_fraction=config.test_fraction, seed=config.seed)
    if representation.needs_fit:
        representation.fit([files.path(key) for key in split["train"]])
        encoded = _encode(files, representation, data_dir, config.window_length, progress=progress,
                          workers=config.workers)
    return RunData(files, split, representation, config.window_length, data_dir, dict(encoded.arrays),
                   dict(encoded.skipped), encoded.total_files, encoded.fingerprint, dataset=config.dataset)


def split_from_run(run_dir: str | Path, files: DatasetFiles, usable) -> dict[str, list[str]]:
    """``--split-from``: the train/validation/test files of the run in ``run_dir`` (its
    ``split.json``), keeping only those in ``usable`` (the files that encode with at least a
    window and its next step here). Without it, the split depends on which files are long
    enough for the window, so runs of different windows would be scored on different files.
    ``RunError`` (one line) for a folder without ``split.json``, a split of another dataset
    or one whose training files are all too short here.
    """
    path = Path(run_dir) / runs.SPLIT_FILE
    saved = runs.read_json(path)
    if not isinstance(saved, dict) or not all(isinstance(saved.get(part), list) for part in PARTS):
        raise RunError(f"--split-from {run_dir}: no {runs.SPLIT_FILE} there (the folder of a finished run holds one)")
    if saved.get("dataset") != files.name:
        raise RunError(f"--split-from {run_dir}: its split is of the dataset {saved.get('dataset')}, not {files.name}")
    split = {part: [key for key in saved[part] if key in usable] for part in PARTS}
    if not split["train"]:
        raise RunError(f"--split-from {run_dir}: none of its {len(saved['train'])} training files is long enough "
                       "for this --window")
    return split


def _prepare_benchmark(config: TrainConfig, representation: Representation, benchmark: dict) -> RunData:
    """The benchmark's pieces in its own split (the first ``max_files`` of each part), as piano-roll steps."""
    if config.split_from is not None:
        raise RunError(f"--split-from: {config.dataset} is a benchmark with its own split")
    representation = _benchmark_representation(config, representation, benchmark)
    files = resolve_dataset(config.dataset, Path(config.data_dir))
    pieces = keyed_pieces(config.dataset, _benchmark_file(files, benchmark))
    split = {part: list(pieces.get(part, {}))[: config.max_files] for part in PARTS}
    arrays = {key: representation.encode_roll(pieces[part][key]).steps for part in PARTS for key in split[part]}
    return RunData(files, split, representation, config.window_length, Path(config.data_dir), arrays,
                   total_files=len(arrays), fingerprint=file_sha256(files.path(benchmark["file"])),
                   dataset=config.dataset, benchmark=benchmark)


def _benchmark_representation(config: TrainConfig, representation: Representation,
                              benchmark: dict) -> Representation:
    """``representation`` at the benchmark's frame; ``DatasetError`` unless it reads piano rolls
    (``reads_rolls``) and ``--frame`` (if given) is the benchmark's."""
    if not representation.reads_rolls:
        raise DatasetError(f"--dataset {config.dataset} is a piano-roll benchmark: use --representation piano_roll "
                           "or roll_tokens")
    frame = benchmark["frame"]
    if config.frame is not None and config.frame != frame:
        raise DatasetError(f"--dataset {config.dataset} has the benchmark's frames of {frame:g} beats; "
                           f"leave out --frame {config.frame:g}")
    return representations.from_json({**representation.to_json(), "frame": frame})


def _benchmark_file(files: DatasetFiles, benchmark: dict) -> Path:
    """The benchmark's ``.mat`` file among ``files``; ``DatasetError`` with the reason when it is not there."""
    name = benchmark["file"]
    if name not in files.keys:
        raise DatasetError(f"{files.path(name)}: {files.skipped.get(name, 'not found')}")
    return files.path(name)


def benchmark_piece(seed: str, config: RunConfig) -> Encoded | None:
    """The piece of a benchmark run's dataset that ``seed`` names by its key (``jsb:valid:3``,
    ``datasets.polyphonic.piece_key``) as steps, read from the run's dataset files; None when
    ``seed`` is no such key (a file name). ``SeedError`` for a piece the file does not hold,
    ``DatasetError`` when the file cannot be read."""
    dataset, _, rest = seed.partition(":")
    benchmark = benchmark_of(config.train.dataset)
    if benchmark is None or dataset != config.train.dataset or not rest or Path(seed).exists():
        return None
    try:
        files = resolve_dataset(dataset, Path(config.train.data_dir))
        pieces = keyed_pieces(dataset, _benchmark_file(files, benchmark))
    except DatasetError as error:
        raise DatasetError(f"--seed {seed}: {error}; {_fix(dataset)}") from None
    roll = next((part[seed] for part in pieces.values() if seed in part), None)
    if roll is None:
        sizes = ", ".join(f"{part} {len(keys)}" for part, keys in pieces.items())
        raise SeedError(f"--seed {seed}: no such piece in {benchmark['file']} (pieces per split: {sizes}; "
                        f"keys count from 0, e.g. {dataset}:valid:0)")
    return config.build_representation().encode_roll(roll)


def open_run(run_dir: str | Path, *, dataset: str | None = None, data_dir: str | Path | None = None) -> RunData:
    """A finished run's config, split and dataset files (found, not encoded yet).

    ``dataset`` / ``data_dir`` replace the run's own (a dataset folder that moved, a
    download folder elsewhere). ``RunError`` for a folder that is not a run,
    ``DatasetError`` (with the reason and the fix) when the dataset cannot be read.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run folder")
    config = RunConfig.read(run_dir)
    split = runs.read_split(run_dir)
    name = dataset or config.train.dataset
    representation = config.build_representation()
    try:
        files = resolve_dataset(name, Path(data_dir or config.train.data_dir), representation.suffixes)
    except DatasetError as error:
        raise DatasetError(f"{run_dir}: the run's dataset cannot be read: {error}; {_fix(name)}") from None
    if config.train.max_files is not None:  # the files training encoded, so the cache's manifest stays as it is
        files.keys = files.keys[: config.train.max_files]
    return RunData(files, {p: list(split[p]) for p in PARTS}, representation,
                   config.train.window_length, Path(data_dir or config.train.data_dir), run_dir=run_dir, config=config,
                   dataset=name, benchmark=benchmark_of(config.train.dataset))


def _fix(dataset: str) -> str:
    if dataset in registered_datasets():
        return (f"set NOTE_MATRIX_MIRROR to a folder that holds it, or run again with network access to "
                f"download it (python train.py --dataset {dataset} does too)")
    return "put the files back, or pass --dataset with the folder they are in now"


def require_files(data: RunData, parts: tuple[str, ...]) -> None:
    """``DatasetError`` unless every file of the split ``parts`` is among the dataset's files."""
    present = set(data.files.keys)
    missing = [key for part in parts for key in data.split[part] if key not in present]
    if missing:
        reason = data.files.skipped.get(missing[0], "not found")
        raise DatasetError(
            f"{data.run_dir}: {len(missing)} of the run's {'/'.join(parts)} files are not in {data.files.root} "
            f"(first: {missing[0]}: {reason}); {_fix(data.dataset)}"
        )


def encode(data: RunData, *, progress: bool = False) -> RunData:
    """Encode the dataset as training did (the cache makes this a ``stat`` per file) into ``data.arrays``."""
    if data.benchmark is not None:
        return _encode_benchmark(data)
    require_files(data, PARTS)
    encoded = _encode(data.files, data.representation, data.data_dir, data.window_length, progress=progress)
    wanted = [key for part in PARTS for key in data.split[part]]
    lost = [key for key in wanted if key not in encoded.arrays]
    if lost:
        raise DatasetError(f"{data.run_dir}: {len(lost)} of the run's files cannot be used now "
                           f"(first: {lost[0]}: {encoded.skipped.get(lost[0], 'unknown')})")
    _note_changes(data, encoded.fingerprint)
    data.arrays = {key: encoded.arrays[key] for key in wanted}
    return data


def _note_changes(data: RunData, fingerprint: str) -> None:
    """Record the dataset's ``fingerprint`` now, and a note when it is not the one the run was trained on."""
    saved = data.config.dataset.fingerprint if data.config else ""
    if saved and saved != fingerprint:
        data.notes.append(f"the dataset's files changed since the run was trained (fingerprint {saved[:12]} then, "
                          f"{fingerprint[:12]} now); these scores use the files as they are now")
    data.fingerprint = fingerprint


def _encode_benchmark(data: RunData) -> RunData:
    """A benchmark run's pieces, read from its file again. A test split the file no longer holds (the
    run trained on the upstream file, the mirror's copy withholds it) is left empty, with a note."""
    path = _benchmark_file(data.files, data.benchmark)
    pieces = keyed_pieces(data.config.train.dataset, path)
    if data.split["test"] and "test" not in pieces:
        data.notes.append(f"{path} holds no test split; the run's {len(data.split['test'])} test pieces are not scored")
        data.split["test"] = []
    available = {key: roll for part in pieces.values() for key, roll in part.items()}
    lost = [key for part in PARTS for key in data.split[part] if key not in available]
    if lost:
        raise DatasetError(f"{data.run_dir}: {len(lost)} of the run's pieces are not in {path} (first: {lost[0]})")
    data.arrays = {key: data.representation.encode_roll(available[key]).steps
                   for part in PARTS for key in data.split[part]}
    _note_changes(data, file_sha256(path))
    return data
