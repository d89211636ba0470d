"""Registered datasets and folders of MIDI files: which files a ``--dataset`` names.

A registered dataset (``registry/<name>.json``: upstream URLs and a SHA-256 per file) is
downloaded once into ``data/<name>/``, or read from the folder named by
``NOTE_MATRIX_MIRROR`` (laid out like ``../shared/datasets``); either way only files whose
SHA-256 matches the registry are used. Any other ``--dataset`` is a folder searched
recursively for ``.mid``/``.midi`` files.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from note_matrix.datasets.download import download_dataset, file_sha256
from note_matrix.errors import DatasetError

MIRROR_ENV = "NOTE_MATRIX_MIRROR"
REGISTRY_DIR = Path(__file__).with_name("registry")
MIDI_SUFFIXES = (".mid", ".midi")


def registered_datasets() -> list[str]:
    return sorted(p.stem for p in REGISTRY_DIR.glob("*.json"))


def load_registry(name: str) -> dict:
    """The registry entry of a named dataset: upstream URL pattern and per-file SHA-256."""
    path = REGISTRY_DIR / f"{name}.json"
    if not path.is_file():
        raise DatasetError(f"unknown dataset {name!r}: give one of {registered_datasets()} or a folder")
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass
class DatasetFiles:
    """The files of a dataset. ``keys`` are paths relative to ``root``, POSIX style."""

    name: str
    root: Path
    keys: list[str]
    skipped: dict[str, str] = field(default_factory=dict)  # key -> reason

    def path(self, key: str) -> Path:
        return self.root / key


def find_midi_files(folder: Path) -> list[str]:
    """Every .mid/.midi under ``folder`` (recursively, any case), as sorted relative keys."""
    keys = [
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.suffix.lower() in MIDI_SUFFIXES
    ]
    return sorted(keys)


def resolve_dataset(dataset: str, data_dir: Path) -> DatasetFiles:
    """A registered dataset name (mirror or download) or a folder, as ``DatasetFiles``."""
    if dataset in registered_datasets():
        registry = load_registry(dataset)
        mirror = os.environ.get(MIRROR_ENV)
        if mirror:
            root = Path(mirror) / registry["mirror_subdir"]
            if not root.is_dir():
                raise DatasetError(f"{MIRROR_ENV}={mirror} has no folder {registry['mirror_subdir']}/")
            return _verified(dataset, root, registry["files"])
        root = Path(data_dir) / dataset
        download_dataset(registry, root)
        return _verified(dataset, root, registry["files"])
    folder = Path(dataset)
    if not folder.is_dir():
        raise DatasetError(
            f"dataset {dataset!r} is neither a registered name ({', '.join(registered_datasets())}) "
            "nor a folder"
        )
    keys = find_midi_files(folder)
    if not keys:
        raise DatasetError(f"{folder}: no .mid or .midi files in this folder or below it")
    return DatasetFiles(folder.name or str(folder), folder, keys)


def _verified(name: str, root: Path, expected: dict[str, str]) -> DatasetFiles:
    """Registered files present under ``root`` whose SHA-256 matches; others skipped."""
    keys, skipped = [], {}
    for key, sha256 in sorted(expected.items()):
        path = root / key
        if not path.is_file():
            skipped[key] = "missing"
        elif file_sha256(path) != sha256:
            skipped[key] = "SHA-256 does not match the dataset registry"
        else:
            keys.append(key)
    return DatasetFiles(name, root, keys, skipped)
