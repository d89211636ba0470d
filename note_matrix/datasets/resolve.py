"""Registered datasets and folders of MIDI or ABC files: which files a ``--dataset`` names.

A registered dataset (``registry/<name>.json``: upstream URLs and a SHA-256 per file)
lives in ``data/<name>/``. Its files are downloaded there once, or, with
``NOTE_MATRIX_MIRROR`` naming a local copy laid out like ``../shared/datasets``, copied
there from ``<mirror>/<mirror_subdir>/``; either way each file is checked against its
SHA-256 before it is trusted, files already there and right are kept, and two processes
take turns (a lock file, ``data/.<name>.lock``). An entry with ``"mirror_verified": false``
(the polyphonic benchmarks: the mirror's copies withhold the test split, so they are not
the upstream bytes) is read from the mirror as it is, in place, unchecked; it is still
downloaded verified without a mirror. Any other ``--dataset`` is a folder searched
recursively for the files the representation reads (``suffixes``: ``.mid``/``.midi``,
or ``.abc``).

ABC files hold many tunes each, and their datasets are datasets of tunes
(``datasets.tunes``): an entry with ``"format": "abc"`` (``nottingham-abc``), and a folder
of ``.abc`` files, are keyed ``<file>:<n>`` per tune.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from note_matrix.datasets.cache import hold_lock
from note_matrix.datasets.download import copy_dataset, download_dataset, file_sha256
from note_matrix.datasets.files import DatasetFiles
from note_matrix.datasets.tunes import ABC_SUFFIXES, TUNES_FOLDER, tune_files
from note_matrix.errors import DatasetError

MIRROR_ENV = "NOTE_MATRIX_MIRROR"
REGISTRY_DIR = Path(__file__).with_name("registry")
MIDI_SUFFIXES = (".mid", ".midi")
FORMATS = {"midi": MIDI_SUFFIXES, "abc": ABC_SUFFIXES}  # a registry entry's "format" (default midi): its files


def registered_datasets() -> list[str]:
    return sorted(p.stem for p in REGISTRY_DIR.glob("*.json"))


def load_registry(name: str) -> dict:
    """The registry entry of a named dataset: upstream URL pattern and per-file SHA-256."""
    path = REGISTRY_DIR / f"{name}.json"
    if not path.is_file():
        raise DatasetError(f"unknown dataset {name!r}: give one of {registered_datasets()} or a folder")
    return json.loads(path.read_text(encoding="utf-8"))


def find_files(folder: Path, suffixes: tuple[str, ...]) -> list[str]:
    """Every file under ``folder`` (recursively) whose suffix, in any case, is one of ``suffixes``,
    as sorted relative keys."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.suffix.lower() in suffixes)


def find_midi_files(folder: Path) -> list[str]:
    """Every .mid/.midi under ``folder`` (recursively, any case), as sorted relative keys."""
    return find_files(folder, MIDI_SUFFIXES)


def resolve_dataset(dataset: str, data_dir: Path, suffixes: tuple[str, ...] | None = None) -> DatasetFiles:
    """A registered dataset name (copied from the mirror or downloaded) or a folder, as ``DatasetFiles``
    (``TuneFiles`` for ABC).

    ``suffixes``: the files the representation reads (``Representation.suffixes``). A folder
    is searched for them; without them, for MIDI files, or ``.abc`` files where it holds no
    MIDI. ``DatasetError`` for a registered dataset of another format than ``suffixes``.
    """
    data_dir = Path(data_dir)
    if dataset in registered_datasets():
        registry = load_registry(dataset)
        kind = registry.get("format", "midi")
        if suffixes is not None and "benchmark" not in registry and not set(FORMATS[kind]) & set(suffixes):
            raise DatasetError(f"dataset {dataset} holds {' and '.join(FORMATS[kind])} files; this representation "
                               f"reads {' and '.join(suffixes)} files")
        files = _registered(dataset, registry, data_dir)
        return tune_files(files, data_dir) if kind == "abc" else files
    folder = Path(dataset)
    if not folder.is_dir():
        raise DatasetError(
            f"dataset {dataset!r} is neither a registered name ({', '.join(registered_datasets())}) "
            "nor a folder"
        )
    kinds = suffixes or MIDI_SUFFIXES
    keys = _found(folder, kinds, data_dir)
    if not keys and suffixes is None:
        kinds, keys = ABC_SUFFIXES, _found(folder, ABC_SUFFIXES, data_dir)
        if not keys:
            raise DatasetError(f"{folder}: no .mid or .midi files in this folder or below it, nor .abc files")
    if not keys:
        raise DatasetError(f"{folder}: no {' or '.join(kinds)} files in this folder or below it")
    files = DatasetFiles(folder.name or str(folder), folder, keys)
    return tune_files(files, data_dir) if set(kinds) & set(ABC_SUFFIXES) else files


def _found(folder: Path, suffixes: tuple[str, ...], data_dir: Path) -> list[str]:
    """``find_files``, without the tunes this project wrote when the data folder lies inside ``folder``."""
    keys = find_files(folder, suffixes)
    if not set(suffixes) & set(ABC_SUFFIXES):
        return keys
    written = (data_dir / TUNES_FOLDER).resolve()
    return [key for key in keys if not (folder / key).resolve().is_relative_to(written)]


def _registered(name: str, registry: dict, data_dir: Path) -> DatasetFiles:
    """``data_dir/<name>/`` given every registered file it lacks (``registry``: its entry), from the mirror
    or the network; verified."""
    mirror = os.environ.get(MIRROR_ENV)
    source = Path(mirror) / registry["mirror_subdir"] if mirror else None
    if source is not None and not source.is_dir():
        raise DatasetError(f"{MIRROR_ENV}={mirror} has no folder {registry['mirror_subdir']}/")
    if source is not None and not registry.get("mirror_verified", True):
        return _as_is(name, source, registry["files"])
    root = data_dir / name
    with hold_lock(data_dir / f".{name}.lock"):  # a second run waits, then finds the files in place
        if source is None:
            download_dataset(registry, root)  # all or a DatasetError
            reasons = {}
        else:
            reasons = copy_dataset(registry, source, root)
        return _verified(name, root, registry["files"], reasons)


def _as_is(name: str, source: Path, expected: dict[str, str]) -> DatasetFiles:
    """The registered files the mirror folder ``source`` holds, read there, with no SHA-256 check."""
    present = [key for key in sorted(expected) if (source / key).is_file()]
    missing = {key: f"not in the mirror ({source / key})" for key in sorted(expected) if key not in present}
    return DatasetFiles(name, source, present, missing)


def _verified(name: str, root: Path, expected: dict[str, str], reasons: dict[str, str]) -> DatasetFiles:
    """Registered files present under ``root`` whose SHA-256 matches; the others skipped, with ``reasons``'s
    reason where it has one."""
    keys, skipped = [], {}
    for key, sha256 in sorted(expected.items()):
        path = root / key
        if not path.is_file():
            skipped[key] = reasons.get(key, "missing")
        elif file_sha256(path) != sha256:
            skipped[key] = "SHA-256 does not match the dataset registry"
        else:
            keys.append(key)
    return DatasetFiles(name, root, keys, skipped)
