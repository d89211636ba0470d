"""Encoding a whole dataset: trusted by the manifest, from the cache, or encoded afresh.

Each file is trusted by ``stat`` (``manifest.py``), found in the content cache by the
SHA-256 of its bytes (``cache.py``), or parsed, in this process or in worker processes
(``workers.py``). Files that cannot be used are skipped and reported, never fatal.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from note_matrix.datasets.cache import EncodingCache, _signature
from note_matrix.datasets.encode_file import _Kept, _kept, _process_file
from note_matrix.datasets.manifest import _DatasetIndex
from note_matrix.datasets.resolve import DatasetFiles
from note_matrix.datasets.workers import _encode_in_workers, _worker_count
from note_matrix.representations import Representation


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
            _encode_in_workers(files, to_encode, representation, cache, workers, record)
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
        fingerprint.update(f"{key}\t{kept[key].sha256 or 'unreadable'}\n".encode("utf-8", "surrogateescape"))
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
