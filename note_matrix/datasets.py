"""Datasets: find, download (checksummed), encode (cached) and split MIDI collections.

``--dataset`` is a registered name (``pop``, ``nottingham``; see ``registry/*.json``)
or a folder of ``.mid``/``.midi`` files, searched recursively. Registered datasets are
downloaded once from their upstream URLs into ``data/<name>/``, every file checked
against its SHA-256; when the environment variable ``NOTE_MATRIX_MIRROR`` names a
folder laid out like ``../shared/datasets``, files are read from there instead.

Encoded files are cached under ``data/cache/`` by the SHA-256 of their bytes and the
representation's constants, so a second run parses no MIDI. Files that cannot be used
are skipped and reported, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from note_matrix.download import download_dataset, file_sha256
from note_matrix.errors import DatasetError, MidiError
from note_matrix.midi import MidiLimitError
from note_matrix.representation import Representation

MIRROR_ENV = "NOTE_MATRIX_MIRROR"
REGISTRY_DIR = Path(__file__).with_name("registry")
MIDI_SUFFIXES = (".mid", ".midi")
CACHE_FORMAT = 1  # bump when the cache layout or the encoders change


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


# -- encoding with a cache --------------------------------------------------------------


class EncodingCache:
    """Encoded arrays keyed by file content and representation constants.

    ``<data_dir>/cache/<representation>-<fingerprint>/<sha256>.npy`` holds an array;
    ``<sha256>.skip`` holds the reason a file could not be encoded.
    """

    def __init__(self, data_dir: Path, representation: Representation):
        constants = json.dumps({"format": CACHE_FORMAT, **representation.to_json()}, sort_keys=True)
        fingerprint = hashlib.sha256(constants.encode()).hexdigest()[:12]
        self.folder = Path(data_dir) / "cache" / f"{representation.name}-{fingerprint}"

    def load(self, sha256: str) -> np.ndarray | str | None:
        array_path = self.folder / f"{sha256}.npy"
        if array_path.is_file():
            return np.load(array_path, allow_pickle=False)
        skip_path = self.folder / f"{sha256}.skip"
        if skip_path.is_file():
            return skip_path.read_text(encoding="utf-8")
        return None

    def store(self, sha256: str, value: np.ndarray | str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if isinstance(value, str):
            final = self.folder / f"{sha256}.skip"
            temporary = final.with_suffix(".skip.part")
            temporary.write_text(value, encoding="utf-8")
        else:
            final = self.folder / f"{sha256}.npy"
            temporary = final.with_suffix(".part.npy")
            np.save(temporary, value, allow_pickle=False)
        os.replace(temporary, final)


@dataclass
class EncodedDataset:
    """Encoded files of a dataset: ``arrays[key]`` is ``(steps, features)``."""

    name: str
    root: Path
    arrays: dict[str, np.ndarray]
    skipped: dict[str, str]  # key -> reason, for every file not in ``arrays``
    total_files: int


def encode_dataset(
    files: DatasetFiles,
    representation: Representation,
    data_dir: Path,
    *,
    min_steps: int = 1,
    use_cache: bool = True,
    progress: bool = True,
) -> EncodedDataset:
    """Encode every file; skip (with a reason) those unreadable or shorter than ``min_steps``."""
    cache = EncodingCache(data_dir, representation) if use_cache else None
    arrays, skipped = {}, dict(files.skipped)
    for key in tqdm(files.keys, desc=f"encoding {files.name}", unit="file", disable=not progress):
        path = files.path(key)
        result = _encode_one(path, representation, cache)
        if isinstance(result, str):
            skipped[key] = result
        elif len(result) < min_steps:
            skipped[key] = (
                "no notes (no note events outside the drum channel)"
                if len(result) == 0
                else f"too short: {len(result)} steps, training needs at least {min_steps}"
            )
        else:
            arrays[key] = result
    return EncodedDataset(files.name, files.root, arrays, skipped, len(files.keys) + len(files.skipped))


def _encode_one(path: Path, representation: Representation, cache: EncodingCache | None):
    """The encoded array of ``path``, or the reason it cannot be encoded."""
    sha256 = None
    if cache is not None:
        try:
            sha256 = file_sha256(path)
        except OSError:
            sha256 = None  # unreadable: encode() below names the reason
        cached = cache.load(sha256) if sha256 else None
        if cached is not None:
            return cached
    try:
        result = representation.encode(path)
    except MidiLimitError as error:
        return error.reason  # depends on the limits in force, not only on the file: not cached
    except MidiError as error:
        result = error.reason
    if cache is not None and sha256:
        cache.store(sha256, result)
    return result


# -- splitting ------------------------------------------------------------------------


def split_by_file(
    keys: list[str], *, validation_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[str]]:
    """Split file keys into train / validation / test, seeded, each part sorted.

    Each non-zero fraction gets at least one file when there are at least three files,
    so a small dataset still validates; training always keeps at least one file.
    """
    if not 0 <= validation_fraction < 1 or not 0 <= test_fraction < 1:
        raise ValueError("validation and test fractions must lie in [0, 1)")
    keys = sorted(keys)
    order = np.random.default_rng(seed).permutation(len(keys))

    def count(fraction: float) -> int:
        if fraction == 0 or len(keys) < 3:
            return 0
        return max(1, int(round(fraction * len(keys))))

    n_test, n_validation = count(test_fraction), count(validation_fraction)
    if n_test + n_validation >= len(keys):
        raise DatasetError(
            f"{len(keys)} usable files cannot be split into train/validation/test with fractions "
            f"{validation_fraction} and {test_fraction}"
        )
    shuffled = [keys[i] for i in order]
    return {
        "train": sorted(shuffled[n_test + n_validation :]),
        "validation": sorted(shuffled[n_test : n_test + n_validation]),
        "test": sorted(shuffled[:n_test]),
    }


def write_skip_report(path: Path, skipped: dict[str, str]) -> None:
    """One line per skipped file: ``<key>\\t<reason>``."""
    lines = [f"{key}\t{reason}" for key, reason in sorted(skipped.items())]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")

