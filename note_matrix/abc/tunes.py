"""ABC text as tunes: splitting a corpus, reading a file, a tune's header fields and body.

Pure text work, no music21. A tune starts at a line beginning with ``X:``; its header
is the field lines (``T:``, ``M:``, ``L:`` ...) up to and including the first ``K:``
line, and its body is every line after that one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from note_matrix.errors import MidiError
from note_matrix.midi_bytes import ReadLimits, read_regular_file

_TUNE_START = re.compile(r"^X:", re.MULTILINE)
_FIELD = re.compile(r"^([A-Za-z]):(.*)$")  # an information field line: a letter, a colon, its value


def split_tunes(text: str) -> list[str]:
    """The tunes of a corpus text, each from an ``X:`` line to the next.

    Text before the first ``X:`` line is dropped; each tune loses its trailing blank
    lines and ends with exactly one newline. Line endings are normalised to ``\\n``.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    starts = [match.start() for match in _TUNE_START.finditer(text)]
    ends = starts[1:] + [len(text)]
    return [text[start:end].rstrip() + "\n" for start, end in zip(starts, ends)]


def read_tunes(path: str | os.PathLike, limits: ReadLimits | None = None) -> list[str]:
    """The tunes of an ABC file: utf-8, or latin-1 where it is not utf-8.

    Raises ``MidiError`` naming the file and the reason for a file that cannot be read
    (missing, a directory, a pipe or device, over ``limits.max_file_bytes``: the same
    caps as a MIDI file's), is not text (it holds NUL bytes) or holds no tune.
    """
    path = Path(path)
    data = read_regular_file(path, limits or ReadLimits.from_env())
    if b"\x00" in data:
        raise MidiError(path, "not a text file (it holds NUL bytes), so not ABC")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    tunes = split_tunes(text)
    if not tunes:
        raise MidiError(path, "no ABC tune (no line starts with X:)")
    return tunes


def header(tune: str) -> dict[str, str]:
    """The header's fields, letter to value (``{"X": "1", "T": "Abacus", "M": "6/8", "K": "G"}``).

    The header is the lines up to and including the first ``K:`` line (where there is
    none, the leading block of field and comment lines); comment lines are skipped. A field given twice
    (a second ``T:``) keeps its first value. Values are stripped of spaces and of a
    trailing ``%`` comment.
    """
    fields: dict[str, str] = {}
    for line in _header_lines(tune.splitlines()):
        match = _FIELD.match(line)
        if match:
            fields.setdefault(match.group(1), match.group(2).split("%", 1)[0].strip())
    return fields


def body(tune: str) -> str:
    """The lines after the header's ``K:`` line, as written (field lines in the body included).

    A tune with no ``K:`` line has no proper header end; its body is then the lines after
    its leading block of field and comment lines.
    """
    lines = tune.splitlines()
    return "".join(line + "\n" for line in lines[len(_header_lines(lines)) :])


def _header_lines(lines: list[str]) -> list[str]:
    """The leading lines of a tune that form its header (see ``header``)."""
    for index, line in enumerate(lines):
        if line.startswith("K:"):
            return lines[: index + 1]
    count = 0
    while count < len(lines) and (_FIELD.match(lines[count]) or lines[count].startswith("%")):
        count += 1
    return lines[:count]
