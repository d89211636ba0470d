"""Datasets: find, download (checksummed), encode (cached) and split MIDI collections.

``--dataset`` is a registered name (``pop``, ``nottingham``; see ``registry/*.json``)
or a folder of ``.mid``/``.midi`` files, searched recursively. Registered datasets are
downloaded once from their upstream URLs into ``data/<name>/``, every file checked
against its SHA-256; when the environment variable ``NOTE_MATRIX_MIRROR`` names a
folder laid out like ``../shared/datasets``, files are read from there instead.

Encoding (``encode_dataset``) runs in this process or in ``workers`` fresh worker
processes that each read, hash, encode and cache their files and send back only a
small JSON result. Encoded files are cached under ``data/cache/`` by the SHA-256 of
their bytes and the representation's constants, so a second run parses no MIDI; a
per-folder manifest lets a warm run trust unchanged files by ``stat`` without reading
them, and a pack of all arrays is memory-mapped, so the arrays cost no memory until
used. Files that cannot be used are skipped and reported, never fatal.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import itertools
import json
import os
import queue
import secrets
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from note_matrix.download import download_dataset, file_sha256
from note_matrix.errors import DatasetError, MidiError
from note_matrix.midi import MidiLimitError, ReadLimits
from note_matrix.representation import Representation, representation_from_json

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
#
# Three layers, all under ``<data_dir>/cache/<representation>-<fingerprint>/``:
#
# * ``<sha256>.npy`` / ``<sha256>.skip``: one entry per file content (the SHA-256 of its
#   bytes), the encoded array or the reason it was refused. Shared by every dataset and
#   written by whichever process encoded the file, atomically.
# * ``datasets/<root id>.json``, the manifest of one dataset folder: for each file key its
#   ``stat`` signature, content SHA-256 and row count (or skip reason), so a warm run
#   trusts an unchanged file by ``os.stat`` alone, without reading it.
# * ``datasets/<root id>-<token>.npy``, the pack: the arrays of the manifest's files back
#   to back in key order, returned as read-only memory-mapped views.

MANIFEST_FORMAT = 2
RACY_MTIME_NS = 2 * 10**9  # a file modified this close to a run's start is hashed again by the next run
WORKER_START_SECONDS = 120.0  # a worker process not ready after this long is stopped
WORKER_GRACE_SECONDS = 5.0  # a worker silent for 2 x NOTE_MATRIX_MAX_PARSE_SECONDS + this on one file is stopped
WORKER_START_ATTEMPTS = 3  # consecutive worker processes dying before they are ready: give up
CHUNK_FILES_MAX = 64  # files handed to a worker at a time
WORKER_FAULT_ENV = "NOTE_MATRIX_TEST_WORKER_FAULT"  # tests only: "exit:<key>" or "hang:<key>" in a worker
_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)
_WORKER_BOOT = "from note_matrix.datasets import _worker_main; _worker_main()"


class EncodingCache:
    """Encoded arrays keyed by file content and representation constants.

    ``<data_dir>/cache/<representation>-<fingerprint>/<sha256>.npy`` holds an array;
    ``<sha256>.skip`` holds the reason a file could not be encoded. Entries are written
    to a uniquely named temporary file and renamed into place, so concurrent writers
    (worker processes, two runs) never expose a partial entry.
    """

    def __init__(self, data_dir: Path, representation: Representation):
        constants = json.dumps({"format": CACHE_FORMAT, **representation.to_json()}, sort_keys=True)
        fingerprint = hashlib.sha256(constants.encode()).hexdigest()[:12]
        self.folder = Path(data_dir) / "cache" / f"{representation.name}-{fingerprint}"

    @classmethod
    def in_folder(cls, folder: Path) -> EncodingCache:
        """The cache whose entries are in ``folder`` (as a worker process is told)."""
        cache = cls.__new__(cls)
        cache.folder = Path(folder)
        return cache

    @property
    def datasets_folder(self) -> Path:
        return self.folder / "datasets"

    def array_path(self, sha256: str) -> Path:
        return self.folder / f"{sha256}.npy"

    def lookup(self, sha256: str) -> int | str | None:
        """The row count of the cached array (only its header is read), the cached reason, or None.

        An entry that cannot be read or whose size does not match its header counts as
        absent, so the file is encoded again and the entry replaced.
        """
        try:
            with open(self.array_path(sha256), "rb") as handle:
                shape, _ = _npy_header(handle)
                return shape[0]
        except FileNotFoundError:
            pass
        except (OSError, ValueError):
            return None
        try:
            return (self.folder / f"{sha256}.skip").read_text(encoding="utf-8")
        except (FileNotFoundError, UnicodeDecodeError):
            return None

    def store(self, sha256: str, value: np.ndarray | str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if isinstance(value, str):
            _write_atomically(self.folder / f"{sha256}.skip", lambda handle: handle.write(value.encode("utf-8")))
        else:
            _write_atomically(self.array_path(sha256), lambda handle: np.save(handle, value, allow_pickle=False))


def _write_atomically(final: Path, write) -> None:
    """Call ``write(binary handle)`` on a uniquely named temporary file, then rename it to ``final``."""
    temporary = final.with_name(f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    try:
        with open(temporary, "wb") as handle:
            write(handle)
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _npy_header(handle) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the ``.npy`` open in ``handle``, checking that the file holds all its data.

    Raises ``ValueError`` for a file that is not a (complete) C-ordered ``.npy``.
    """
    version = np.lib.format.read_magic(handle)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(handle)
    elif version == (2, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(handle)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    if fortran_order or dtype.hasobject or not shape:
        raise ValueError("not a C-ordered numeric array")
    expected = handle.tell() + int(np.prod(shape)) * dtype.itemsize
    if os.fstat(handle.fileno()).st_size != expected:
        raise ValueError("size does not match the header")
    return shape, dtype


def _signature(path: Path) -> tuple[int, int, int] | None:
    """``(size, mtime_ns, ctime_ns)`` of a regular file; None if missing or not a regular file."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(status.st_mode):
        return None
    return (status.st_size, status.st_mtime_ns, status.st_ctime_ns)


def _outcome(sha256: str | None, value: int | str, *, final: bool, signature, hashed: bool, parsed: bool) -> dict:
    """What encoding one file gives, as the small JSON object a worker sends back.

    ``rows`` (the array is in the cache under ``sha256``) or ``skip`` (the reason);
    ``final``: the outcome depends on the file's bytes alone, so the manifest may keep it;
    ``stat``: the signature the file had when it was read.
    """
    outcome = {"sha256": sha256, "stat": signature, "final": final, "hashed": hashed, "parsed": parsed}
    outcome["skip" if isinstance(value, str) else "rows"] = value
    return outcome


def _process_file(path: Path, representation: Representation, cache: EncodingCache) -> dict:
    """Hash ``path``, look its content up in the cache or encode it and store it there.

    Returns ``_outcome``'s small dict, never the array: the array is in the cache.
    """
    signature = _signature(path)
    sha256 = None
    if signature is not None:
        try:
            sha256 = file_sha256(path)
        except OSError:
            pass  # unreadable: the reader names the reason below
        if sha256 is not None:
            cached = cache.lookup(sha256)
            if cached is not None:
                return _outcome(sha256, cached, final=True, signature=signature, hashed=True, parsed=False)
    elif path.exists() and not path.is_dir():
        reason = "not a regular file (a pipe, socket or device); not read"
        return _outcome(None, reason, final=False, signature=None, hashed=False, parsed=False)
    try:
        value = representation.encode(path)
    except MidiLimitError as error:  # depends on the limits in force, not only on the file: not cached
        return _outcome(sha256, error.reason, final=False, signature=None, hashed=sha256 is not None, parsed=True)
    except MidiError as error:
        value = error.reason
    parsed = signature is not None
    if sha256 is None or not _unchanged(path, signature, sha256):
        # Nothing to file the result under (missing, a directory, unreadable), or the
        # bytes parsed may not be the bytes hashed: report it, remember nothing.
        reason = value if isinstance(value, str) else "the file changed while it was read; encode again"
        return _outcome(sha256, reason, final=False, signature=None, hashed=sha256 is not None, parsed=parsed)
    cache.store(sha256, value)
    return _outcome(sha256, value if isinstance(value, str) else len(value), final=True, signature=signature,
                    hashed=True, parsed=parsed)


def _unchanged(path: Path, signature: tuple, sha256: str) -> bool:
    """Whether ``path`` still has ``signature`` and the content ``sha256`` (after it was parsed)."""
    try:
        return _signature(path) == signature and file_sha256(path) == sha256
    except OSError:
        return False


class _Kept(NamedTuple):
    """What the parent keeps of one file while a dataset is encoded (a tuple: 176,000 of them for Lakh)."""

    sha256: str | None
    value: int | str  # rows (the array is in the cache) or the reason it was skipped
    final: bool  # depends on the bytes alone: the manifest may keep it
    signature: tuple[int, int, int] | None  # (size, mtime_ns, ctime_ns) when it was read


def _kept(outcome: dict) -> _Kept:
    signature = outcome["stat"]
    return _Kept(
        outcome["sha256"],
        outcome["rows"] if "rows" in outcome else outcome["skip"],
        outcome["final"],
        None if signature is None else tuple(signature),
    )


class _DatasetIndex:
    """The manifest and the pack of one dataset folder, inside an ``EncodingCache``; one per call.

    ``datasets/<root id>.json`` (the root id is a hash of the folder's real path), one
    line per file::

        {"format": 2, "root": "/real/path", "pack": "<root id>-<token>.npy" or null, "files": {
        "<key>": [size, mtime_ns, ctime_ns, "<sha256>", rows, offset, racy],      # encoded
        "<key>": [size, mtime_ns, ctime_ns, "<sha256>", "reason", null, racy],   # refused
        ...}}

    The pack holds the encoded arrays back to back, ``(total rows, features)``; a file's
    array is ``pack[offset : offset + rows]``. Only outcomes that depend on the bytes
    alone are kept (no limit refusals, crashes or unreadable files). A file is trusted
    without being read only if its ``stat`` signature is the recorded one and it was not
    modified within ``RACY_MTIME_NS`` before it was recorded (``racy`` 1: it could have
    changed again within the clock's resolution, so it is hashed next time).
    """

    def __init__(self, cache: EncodingCache, root: Path):
        self.folder = cache.datasets_folder
        self.root = os.path.realpath(root)
        self.root_id = hashlib.sha256(os.fsencode(self.root)).hexdigest()[:16]
        self.manifest_path = self.folder / f"{self.root_id}.json"
        self.entries: dict[str, list] = {}
        self.pack_name: str | None = None
        self.pack: np.ndarray | None = None
        try:
            with open(self.manifest_path, "rb") as handle:
                manifest = json.load(handle)
            if manifest["format"] != MANIFEST_FORMAT or manifest["root"] != self.root:
                return
            entries, pack_name = manifest["files"], manifest["pack"]
            pack = None if pack_name is None else self._open_pack(pack_name)
        except FileNotFoundError:
            return  # no manifest yet, or its pack was replaced by a concurrent run: hash everything
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return  # torn, foreign or older format: start afresh
        if isinstance(entries, dict):
            self.entries, self.pack_name, self.pack = entries, pack_name, pack

    def _open_pack(self, pack_name: str) -> np.ndarray:
        """The pack, memory-mapped read-only, as a plain ndarray (its slices are light views)."""
        path = self.folder / Path(pack_name).name
        return np.load(path, mmap_mode="r", allow_pickle=False).view(np.ndarray)

    def trusted(self, key: str, path: Path) -> _Kept | None:
        """What the manifest keeps for ``key`` if the file is unchanged (by ``stat``), else None."""
        try:
            size, mtime_ns, ctime_ns, sha256, value, offset, racy = self.entries[key]
        except (KeyError, TypeError, ValueError):
            return None
        if racy or not isinstance(sha256, str) or isinstance(value, bool):
            return None
        if isinstance(value, int):
            if self.pack is None or not isinstance(offset, int) or not 0 <= offset <= len(self.pack) - value:
                return None
        elif not isinstance(value, str):
            return None
        signature = _signature(path)
        if signature is None or signature != (size, mtime_ns, ctime_ns):
            return None
        return _Kept(sha256, value, True, signature)

    def _packed(self, key: str, sha256: str) -> int | None:
        """The offset in the current pack of ``key``'s array if the pack holds this content, else None."""
        entry = self.entries.get(key)
        if self.pack is None or not isinstance(entry, list) or len(entry) != 7 or entry[3] != sha256:
            return None
        return entry[5] if isinstance(entry[5], int) and not isinstance(entry[5], bool) else None

    def arrays(self, keys: list[str], kept: dict[str, _Kept], *, learnt: bool, started_ns: int,
               cache: EncodingCache) -> dict[str, np.ndarray]:
        """Views ``(rows, features)`` into the pack of every encoded file of ``keys``.

        ``learnt``: this run read some file, so the manifest is rewritten; the pack too if
        an encoded file's array is not in the current pack. Both are renamed into place.
        """
        encoded = [key for key in keys if kept[key].final and isinstance(kept[key].value, int)]
        offsets = [self._packed(key, kept[key].sha256) for key in encoded]
        if learnt and None in offsets:
            pack_name = self._write_pack(encoded, kept, cache)
            offsets = list(itertools.accumulate((kept[key].value for key in encoded[:-1]), initial=0))
            located = dict(zip(encoded, offsets))
            self._write_manifest(
                ((key, self._entry(kept[key], located.get(key), started_ns)) for key in keys if kept[key].final),
                pack_name,
            )
            self.pack = None if pack_name is None else self._open_pack(pack_name)
            self.pack_name = pack_name
            self._remove_other_packs()
        elif learnt:
            located = dict(zip(encoded, offsets))
            # Files not asked for this time stay: the pack still holds them.
            others = ((key, entry) for key, entry in self.entries.items() if key not in kept)
            asked = ((key, self._entry(kept[key], located.get(key), started_ns)) for key in keys if kept[key].final)
            self._write_manifest(itertools.chain(others, asked), self.pack_name)
        return {key: self.pack[offset : offset + kept[key].value] for key, offset in zip(encoded, offsets)}

    @staticmethod
    def _entry(kept: _Kept, offset: int | None, started_ns: int) -> list:
        size, mtime_ns, ctime_ns = kept.signature
        return [size, mtime_ns, ctime_ns, kept.sha256, kept.value, offset, int(mtime_ns >= started_ns - RACY_MTIME_NS)]

    def _write_pack(self, encoded: list[str], kept: dict[str, _Kept], cache: EncodingCache) -> str | None:
        """A new pack of the arrays of ``encoded`` (in that order), one array in memory at a time.

        Returns the pack's file name (None if nothing is encoded).
        """
        if not encoded:
            return None
        first = self._source(encoded[0], kept[encoded[0]], cache)
        dtype, trailing = first.dtype, first.shape[1:]
        total_rows = sum(kept[key].value for key in encoded)

        def write(handle) -> None:
            np.lib.format.write_array_header_1_0(handle, {
                "descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (total_rows, *trailing)
            })
            for key in encoded:
                array = self._source(key, kept[key], cache)
                if array.dtype != dtype or array.shape != (kept[key].value, *trailing):
                    raise DatasetError(
                        f"{cache.array_path(kept[key].sha256)}: a {array.dtype} array of shape {array.shape}, where "
                        f"{kept[key].value} rows of {dtype} {trailing} were expected; delete {cache.folder} and "
                        "encode again"
                    )
                handle.write(np.ascontiguousarray(array).data)

        self.folder.mkdir(parents=True, exist_ok=True)
        pack_name = f"{self.root_id}-{secrets.token_hex(6)}.npy"
        _write_atomically(self.folder / pack_name, write)
        return pack_name

    def _source(self, key: str, kept: _Kept, cache: EncodingCache) -> np.ndarray:
        """The array of ``key``: from the current pack if it holds this content, else the content cache."""
        offset = self._packed(key, kept.sha256)
        if offset is not None:
            return self.pack[offset : offset + kept.value]
        path = cache.array_path(kept.sha256)
        return np.load(path, allow_pickle=False)

    def _write_manifest(self, entries, pack_name: str | None) -> None:
        """Write ``(key, entry)`` pairs as the manifest, one line each (never the whole text in memory)."""
        head = {"format": MANIFEST_FORMAT, "root": self.root, "pack": pack_name}

        def write(handle) -> None:
            handle.write(json.dumps(head)[:-1].encode("utf-8") + b', "files": {')
            separator = b"\n"
            for key, entry in entries:
                handle.write(separator + json.dumps(key).encode("utf-8") + b": " + json.dumps(entry).encode("utf-8"))
                separator = b",\n"
            handle.write(b"\n}}\n")

        self.folder.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.manifest_path, write)

    def _remove_other_packs(self) -> None:
        """Delete this folder's packs other than the current one (older ones, or a concurrent run's).

        A run still reading one keeps its mapping on POSIX; where a mapped file cannot be
        deleted it stays until a later run. A run that finds its manifest's pack gone
        hashes its files again.
        """
        for path in self.folder.glob(f"{self.root_id}-*.npy"):
            if path.name != self.pack_name:
                with contextlib.suppress(OSError):
                    path.unlink()


@dataclass
class EncodedDataset:
    """Encoded files of a dataset: ``arrays[key]`` is ``(steps, features)``.

    With the cache (the default) the arrays are read-only views of one memory-mapped
    file, so holding them costs no memory until they are read.
    """

    name: str
    root: Path
    arrays: dict[str, np.ndarray]
    skipped: dict[str, str]  # key -> reason, for every file not in ``arrays``
    total_files: int
    parsed_files: int = 0  # files whose MIDI this call parsed; the others came from the cache
    hashed_files: int = 0  # files whose bytes this call read; the others the manifest vouched for by stat
    fingerprint: str = ""  # SHA-256 over the sorted (key, content SHA-256) pairs: changes when any file does


def encode_dataset(
    files: DatasetFiles,
    representation: Representation,
    data_dir: Path,
    *,
    min_steps: int = 1,
    use_cache: bool = True,
    progress: bool = True,
    workers: int | None = 1,
) -> EncodedDataset:
    """Encode every file; skip (with a reason) those unreadable or shorter than ``min_steps``.

    ``workers``: processes that read, hash, encode and cache the files (1: this process;
    0 or None: one per CPU core). Worker processes are fresh interpreters (never forked
    from this one), are handed files in chunks and send back only small JSON results;
    a worker that dies or stops answering costs only the file it was on, which is
    skipped with the reason. The outcome is the same whatever ``workers`` is.

    Unchanged files of a folder encoded before are trusted by ``stat`` (see
    ``_DatasetIndex``); every other file is hashed and looked up in the content cache.
    ``use_cache=False`` encodes through a temporary cache and returns in-memory arrays.
    """
    workers = _worker_count(workers)
    started_ns = time.time_ns()
    kept: dict[str, _Kept] = {}
    counts = collections.Counter()
    with contextlib.ExitStack() as stack:
        if use_cache:
            cache = EncodingCache(data_dir, representation)
        else:
            cache = EncodingCache(Path(stack.enter_context(tempfile.TemporaryDirectory())), representation)
        index = _DatasetIndex(cache, files.root)
        bar = stack.enter_context(
            tqdm(total=len(files.keys), desc=f"encoding {files.name}", unit="file", disable=not progress)
        )
        to_encode, here = [], []
        for key in files.keys:
            trusted = index.trusted(key, files.path(key))
            if trusted is not None:
                kept[key] = trusted
            elif workers > 1 and _signature(files.path(key)) is not None:
                to_encode.append(key)
            else:
                here.append(key)  # nothing to read (missing, a directory), or no worker processes
        bar.update(len(kept))

        def record(key: str, outcome: dict) -> None:
            kept[key] = _kept(outcome)
            counts.update(hashed=outcome["hashed"], parsed=outcome["parsed"])
            bar.update(1)

        for key in here:
            record(key, _process_file(files.path(key), representation, cache))
        if to_encode:
            _encode_in_workers(files.root, to_encode, representation, cache, workers, record)
        views = index.arrays(files.keys, kept, learnt=counts["hashed"] > 0, started_ns=started_ns, cache=cache)
        if not use_cache:
            views = {key: np.array(view) for key, view in views.items()}

    arrays, skipped = {}, dict(files.skipped)
    for key in files.keys:
        value = kept[key].value
        if isinstance(value, str):
            skipped[key] = value
        elif value < min_steps:
            skipped[key] = (
                "no notes (no note events outside the drum channel)"
                if value == 0
                else f"too short: {value} steps, training needs at least {min_steps}"
            )
        else:
            arrays[key] = views[key]
    fingerprint = hashlib.sha256()
    for key in sorted(files.keys):
        fingerprint.update(f"{key}\t{kept[key].sha256 or 'unreadable'}\n".encode())
    return EncodedDataset(
        files.name,
        files.root,
        arrays,
        skipped,
        len(files.keys) + len(files.skipped),
        parsed_files=counts["parsed"],
        hashed_files=counts["hashed"],
        fingerprint=fingerprint.hexdigest(),
    )


def _worker_count(workers: int | None) -> int:
    if workers is None or workers == 0:
        return os.cpu_count() or 1
    if workers < 0:
        raise ValueError(f"workers must be positive, or 0 for one per CPU core; got {workers}")
    return workers


# -- worker processes -------------------------------------------------------------------
#
# Protocol, one JSON object per line. The parent sends a worker its set-up
# ``{"root", "cache", "representation"}``; the worker answers ``{"ready": true}``. Then
# the parent sends chunks ``{"keys": [...]}`` and the worker answers each key, in order,
# with ``{"key", **_outcome}`` (about 200 bytes: no array, no file bytes). End of input:
# the worker exits. A worker's stdout carries nothing else (its prints go to stderr).


class _Worker:
    """One worker process, a fresh ``python`` (never a fork of this one, which may hold TensorFlow)."""

    def __init__(self, setup: str, replies: queue.Queue):
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_PARENT, environment.get("PYTHONPATH")]))
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WORKER_BOOT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=environment,
        )
        self.keys: collections.deque[str] = collections.deque()  # the chunk in hand, the current file first
        self.ready = False
        self.deadline = time.monotonic() + WORKER_START_SECONDS
        threading.Thread(target=self._read_replies, args=(replies,), daemon=True).start()
        self.send(setup)

    def _read_replies(self, replies: queue.Queue) -> None:
        for line in self.process.stdout:
            replies.put((self, line))
        replies.put((self, None))  # end of output: the worker exited or was stopped

    def send(self, line: str) -> None:
        try:
            self.process.stdin.write(line.encode("utf-8") + b"\n")
            self.process.stdin.flush()
        except OSError:
            pass  # it died: the end of its output reports that

    def death(self) -> str:
        """How the worker ended: exit status or signal, and the last line it wrote to stderr."""
        code = self.process.wait()
        if code < 0:
            try:
                status = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                status = f"killed by signal {-code}"
        else:
            status = f"exit status {code}"
        self.stderr.seek(max(0, self.stderr.seek(0, os.SEEK_END) - 4096))
        lines = self.stderr.read().decode("utf-8", "replace").strip().splitlines()
        return f"{status}: {lines[-1].strip()[:200]}" if lines else status

    def stop(self, *, kill: bool) -> None:
        if kill:
            self.process.kill()
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.stderr.close()


def _encode_in_workers(
    root: Path, keys: list[str], representation: Representation, cache: EncodingCache, workers: int, record
) -> None:
    """Run ``_process_file`` on every key in ``workers`` processes; ``record(key, outcome)`` each result.

    Files go out in chunks to whichever worker is free. A worker that dies, or is silent
    on one file for twice the reader's time limit plus ``WORKER_GRACE_SECONDS``, is
    stopped: its current file is recorded as skipped with the reason, the rest of its
    chunk goes back to the queue, and a new worker takes its place.
    """
    max_seconds = ReadLimits.from_env().max_seconds
    file_seconds = 2 * max_seconds + WORKER_GRACE_SECONDS
    chunk_size = max(1, min(CHUNK_FILES_MAX, len(keys) // (4 * workers)))
    chunks = collections.deque(keys[i : i + chunk_size] for i in range(0, len(keys), chunk_size))
    setup = json.dumps({"root": str(root), "cache": str(cache.folder), "representation": representation.to_json()})
    replies: queue.Queue = queue.Queue()
    pool: list[_Worker] = []
    failed_starts = 0

    def stop(worker: _Worker, reason: str) -> None:
        nonlocal failed_starts
        pool.remove(worker)
        worker.stop(kill=True)
        if worker.keys:
            record(worker.keys.popleft(), _outcome(None, reason, final=False, signature=None, hashed=False,
                                                   parsed=False))
            if worker.keys:
                chunks.appendleft(list(worker.keys))
        elif not worker.ready:
            failed_starts += 1
            if failed_starts >= WORKER_START_ATTEMPTS:
                raise DatasetError(
                    f"{WORKER_START_ATTEMPTS} worker processes for encoding failed to start (the last: {reason}); "
                    "encode in this process with --workers 1"
                )

    def handle(worker: _Worker, line: bytes | None) -> None:
        nonlocal failed_starts
        if line is None:
            death = worker.death()
            stop(worker, f"worker crashed while encoding this file ({death})" if worker.ready else death)
            return
        reply = _read_reply(line)
        if reply is None:
            stop(worker, "worker sent an unreadable reply and was stopped")
        elif reply.get("ready"):
            worker.ready, failed_starts = True, 0
        elif worker.keys and reply.get("key") == worker.keys[0]:
            record(worker.keys.popleft(), {name: value for name, value in reply.items() if name != "key"})
            worker.deadline = time.monotonic() + file_seconds
        else:
            stop(worker, "worker answered out of turn and was stopped")

    try:
        while chunks or any(worker.keys for worker in pool):
            idle = [worker for worker in pool if not worker.keys]
            while len(pool) < workers and len(chunks) > len(idle):
                idle.append(_Worker(setup, replies))
                pool.append(idle[-1])
            for worker in idle:
                if worker.ready and chunks:
                    worker.keys.extend(chunks.popleft())
                    worker.deadline = time.monotonic() + file_seconds
                    worker.send(json.dumps({"keys": list(worker.keys)}))
            waiting = [worker for worker in pool if worker.keys or not worker.ready]
            try:
                worker, line = replies.get(timeout=max(0.0, min(w.deadline for w in waiting) - time.monotonic()))
            except queue.Empty:
                worker = None
            if worker in pool:  # not None, nor the last words of a worker already stopped
                handle(worker, line)
            now = time.monotonic()
            for worker in [w for w in pool if (w.keys or not w.ready) and w.deadline <= now]:
                if worker.ready:
                    stop(worker, f"no result after {file_seconds:g} s, the worker process was stopped "
                                 f"(the reader's own limit is {max_seconds:g} s, NOTE_MATRIX_MAX_PARSE_SECONDS)")
                else:
                    stop(worker, f"not ready after {WORKER_START_SECONDS:g} s")
    finally:
        for worker in pool:
            worker.stop(kill=bool(chunks or worker.keys))


def _read_reply(line: bytes) -> dict | None:
    """One line from a worker as a JSON object, or None if it is not one."""
    try:
        reply = json.loads(line)
    except ValueError:
        return None
    return reply if isinstance(reply, dict) else None


def _worker_main() -> None:
    """A worker process's loop (see the protocol above): set-up, then chunks of keys, until end of input."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt the replies
    sys.stdout = sys.stderr
    setup = json.loads(sys.stdin.buffer.readline())
    root, cache = Path(setup["root"]), EncodingCache.in_folder(Path(setup["cache"]))
    representation = representation_from_json(setup["representation"])
    fault = os.environ.get(WORKER_FAULT_ENV, "")
    replies.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin.buffer:
        for key in json.loads(line)["keys"]:
            if fault == f"exit:{key}":
                os._exit(70)
            if fault == f"hang:{key}":
                time.sleep(3600)
            replies.write(json.dumps({"key": key, **_process_file(root / key, representation, cache)}) + "\n")


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

