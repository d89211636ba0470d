"""ABC corpora as datasets of tunes: every tune of every ``.abc`` file is a key of its own.

An ABC file holds many tunes (one starts at each line beginning ``X:``;
``note_matrix.abc.read_tunes``), and the split, the encoding cache and the model all work
on tunes, so a tune leaks into no other part of the split than its own. ``tune_files``
reads each ``.abc`` file of a dataset and keys its tunes ``<file>:<n>``: ``jigs.abc:12``
is the 12th tune of ``jigs.abc``, counting from 1 (in the Nottingham files, the tune
numbered ``X: 12``). Each tune's text is written to a file of its own,
``<data_dir>/tunes/<dataset>-<id>/<file>/<n>.abc`` (``id``: a hash of the real path of the
dataset's folder), only when its text changed, so from there a tune is a file like any
other: the encoding cache keys it by the SHA-256 of its text, the manifest trusts it by
``stat``, worker processes read it. A file that is not ABC (binary bytes, no ``X:`` line,
over the size limit, unreadable) is skipped with the reason, as a MIDI file that cannot
be read is; the others are kept.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from note_matrix.abc import read_tunes
from note_matrix.datasets.cache import write_shared
from note_matrix.datasets.files import DatasetFiles, TuneFiles
from note_matrix.errors import DatasetError, MidiError

ABC_SUFFIXES = (".abc",)
TUNES_FOLDER = "tunes"  # under the data folder


def tune_key(file_key: str, number: int) -> str:
    """The key of tune ``number`` (from 1) of the ``.abc`` file ``file_key``."""
    return f"{file_key}:{number}"


def tune_files(files: DatasetFiles, data_dir: Path) -> TuneFiles:
    """The tunes of ``files`` (``.abc`` files), each written to its own file under ``data_dir``.

    Keys follow the files' order, then the tunes' within each file. ``DatasetError`` if a
    tune's file cannot be written.
    """
    root_id = hashlib.sha256(os.fsencode(os.path.realpath(files.root))).hexdigest()[:12]
    tunes = TuneFiles(files.name, files.root, [], dict(files.skipped),
                      Path(data_dir) / TUNES_FOLDER / f"{files.name}-{root_id}")
    for file_key in files.keys:
        try:
            texts = read_tunes(files.path(file_key))
        except MidiError as error:
            tunes.skipped[file_key] = error.reason
            continue
        for number, text in enumerate(texts, start=1):
            key = tune_key(file_key, number)
            _write_if_changed(tunes.path(key), text.encode("utf-8"))
            tunes.keys.append(key)
    return tunes


def _write_if_changed(path: Path, data: bytes) -> None:
    """``data`` to ``path`` (renamed into place) unless the file holds it already: an unchanged
    tune keeps its ``stat``, so the manifest trusts it without reading it."""
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass  # not there yet (or unreadable): write it
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_shared(path, lambda handle: handle.write(data))
    except OSError as error:
        raise DatasetError(f"{path}: cannot write the tune ({error.strerror or error})") from None
