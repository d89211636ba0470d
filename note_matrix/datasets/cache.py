"""The content cache: encoded arrays keyed by file content and representation constants.

Under ``<data_dir>/cache/<representation>-<fingerprint>/``, ``<sha256>.npy`` holds the
encoded array of a file whose bytes have that SHA-256 and ``<sha256>.skip`` the reason it
was refused. Shared by every dataset, written by whichever process encoded the file.
The manifest and pack of each dataset folder live beside it, in ``datasets/``
(``manifest.py``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from note_matrix import atomic
from note_matrix.representations import Representation

CACHE_FORMAT = 1  # bump when the cache layout or the encoders change


class EncodingCache:
    """Encoded arrays keyed by file content and representation constants.

    Entries are written to a uniquely named temporary file and renamed into place, so
    concurrent writers (worker processes, two runs) never expose a partial entry.
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
            write_shared(self.folder / f"{sha256}.skip", lambda handle: handle.write(value.encode("utf-8")))
        else:
            write_shared(self.array_path(sha256), lambda handle: np.save(handle, value, allow_pickle=False))


def write_shared(final: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(binary handle)`` on a uniquely named temporary file, then rename it to ``final``.

    For files that several processes may write at once; not flushed to disk (a lost
    entry is only encoded again).
    """

    def write_file(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            write(handle)

    atomic.write_atomically(final, write_file, sync=False, unique=True)


@contextlib.contextmanager
def hold_lock(path: Path) -> Iterator[None]:
    """Hold the lock file ``path`` (``fcntl.flock``, exclusive) for the ``with`` block, waiting for it.

    For work that processes sharing a data folder take turns at. The lock goes with the
    process, so a killed one never leaves it held; the empty file stays. Where the file
    cannot be created (a folder this process may not write to) the block runs without
    it: this process cannot change anything there.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError:
        descriptor = None
    if descriptor is None:
        yield
        return
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


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
