"""Splitting a dataset's files into train / validation / test, and the report of skipped files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from note_matrix import atomic
from note_matrix.errors import DatasetError


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
        return max(1, round(fraction * len(keys)))

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
    """The skipped files twice: ``path`` for people, the same name with ``.json`` for programs.

    A file name may hold any byte but ``/`` and NUL: a tab, a newline, bytes that are not
    UTF-8 (which Python keeps as surrogate escapes, and which no UTF-8 text can hold).

    - ``path`` (``skipped.txt``): one line per file, ``<file>\\t<reason>``, both escaped
      by ``_escape_name`` so that every file stays on its own line;
    - ``skipped.json``: ``{"skipped": [{"file", "file_hex", "reason"}, ...]}``, where
      ``file`` is the name as text (bytes that are not UTF-8 as U+FFFD) and ``file_hex``
      its exact bytes, relative to the dataset folder, in hex:
      ``os.fsdecode(bytes.fromhex(file_hex))`` is the name as Python lists it.

    Both are written whole or not at all (``note_matrix.atomic``).
    """
    ordered = sorted(skipped.items())
    atomic.write_text(path, "".join(f"{_escape_name(key)}\t{_escape_name(reason)}\n" for key, reason in ordered))
    entries = [_skip_entry(key, reason) for key, reason in ordered]
    atomic.write_text(path.with_suffix(".json"), json.dumps({"skipped": entries}, indent=1) + "\n")


def _skip_entry(key: str, reason: str) -> dict[str, str]:
    name = os.fsencode(key)
    return {"file": name.decode("utf-8", "replace"), "file_hex": name.hex(), "reason": reason}


_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape_name(text: str) -> str:
    """``text`` as one unambiguous line of printable UTF-8.

    Backslash, tab, newline and carriage return become ``\\\\ \\t \\n \\r``; a byte
    that is not UTF-8 (a surrogate escape) ``\\xNN``; any other unprintable character
    ``\\uNNNN`` (``\\UNNNNNNNN`` beyond U+FFFF). Other text is kept as it is.
    """
    return "".join(_escaped(char) for char in text)


def _escaped(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    if char in _ESCAPES:
        return _ESCAPES[char]
    if char.isprintable():
        return char
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
