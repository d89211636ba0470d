"""Writing a file whole or not at all: the one helper every writer uses.

``write_atomically(path, write)`` calls ``write(temporary)`` on a temporary name in the
same folder, optionally flushes it to disk, then renames it over ``path``; whatever
fails, the temporary file is removed. A process killed at any moment leaves the previous
or the new file, never a truncated one. Temporary names end in ``.part`` (``PARTIAL_SUFFIXES``)
so that leftovers are recognisable.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

PARTIAL_SUFFIXES = (".part", ".part.keras")  # temporary names, never complete files


def temporary_name(path: Path, *, unique: bool = False) -> Path:
    """Where ``path`` is written before the rename.

    ``<name>.part``, or ``<stem>.part.keras`` for a Keras file (Keras insists on the
    suffix); ``unique``: a hidden name of its own per process and call
    (``.<name>.<pid>.<random>.part``), for files that several processes may write at once.
    """
    path = Path(path)
    if unique:
        return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    if path.suffix == ".keras":
        return path.with_name(path.stem + ".part.keras")
    return path.with_name(path.name + ".part")


def write_atomically(path: str | os.PathLike, write: Callable[[Path], object], *, sync: bool = True,
                     unique: bool = False) -> Path:
    """``write(temporary)``, flush it to disk when ``sync``, rename it to ``path``; returns ``path``."""
    path = Path(path)
    temporary = temporary_name(path, unique=unique)
    try:
        write(temporary)
        if sync:
            with open(temporary, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)  # only still there if something above failed
    return path


def write_bytes(path: str | os.PathLike, data: bytes, **options) -> Path:
    return write_atomically(path, lambda temporary: temporary.write_bytes(data), **options)


def write_text(path: str | os.PathLike, text: str, **options) -> Path:
    return write_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"), **options)


def is_partial(path: Path) -> bool:
    """A temporary file left by a writer that was killed: incomplete by design."""
    return Path(path).name.endswith(PARTIAL_SUFFIXES)
