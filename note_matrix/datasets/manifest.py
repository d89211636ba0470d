"""The manifest and the pack of one dataset folder, in the content cache's ``datasets/``.

The manifest lets a warm run trust unchanged files by ``os.stat`` without reading them;
the pack holds their arrays back to back, returned as read-only memory-mapped views.
Format and rules: ``_DatasetIndex``. Runs sharing a data folder take turns through a
lock file (``cache.hold_lock``), so each one maps a pack that its manifest names.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import secrets
from pathlib import Path

import numpy as np

from note_matrix.datasets.cache import EncodingCache, _signature, hold_lock, write_shared
from note_matrix.datasets.encode_file import _Kept
from note_matrix.errors import DatasetError

MANIFEST_FORMAT = 2
RACY_MTIME_NS = 2 * 10**9  # a file modified this close to a run's start is hashed again by the next run


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

    Several processes may use one folder's manifest at once (two trainings on one
    ``--data-dir``): reading the manifest and mapping its pack, and writing a pack, the
    manifest and removing the packs it replaces, each happen holding ``<root id>.lock``
    (``hold_lock``). So no process opens a pack that another has just removed; a pack
    already mapped stays readable after its removal (POSIX keeps the data of an open file).
    """

    def __init__(self, cache: EncodingCache, root: Path):
        self.folder = cache.datasets_folder
        self.root = os.path.realpath(root)
        self.root_id = hashlib.sha256(os.fsencode(self.root)).hexdigest()[:16]
        self.manifest_path = self.folder / f"{self.root_id}.json"
        self.lock_path = self.folder / f"{self.root_id}.lock"
        self.entries: dict[str, list] = {}
        self.pack_name: str | None = None
        self.pack: np.ndarray | None = None
        try:
            with hold_lock(self.lock_path), open(self.manifest_path, "rb") as handle:
                manifest = json.load(handle)
                if manifest["format"] != MANIFEST_FORMAT or manifest["root"] != self.root:
                    return
                entries, pack_name = manifest["files"], manifest["pack"]
                pack = None if pack_name is None else self._open_pack(pack_name)
        except FileNotFoundError:
            return  # no manifest yet, or its pack was deleted by hand: hash everything
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return  # torn, foreign or older format: start afresh
        if isinstance(entries, dict):
            self.entries, self.pack_name, self.pack = entries, pack_name, pack

    def _pack_path(self, pack_name: str) -> Path:
        return self.folder / Path(pack_name).name

    def _open_pack(self, pack_name: str) -> np.ndarray:
        """The pack, memory-mapped read-only, as a plain ndarray (its slices are light views)."""
        return np.load(self._pack_path(pack_name), mmap_mode="r", allow_pickle=False).view(np.ndarray)

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
        an encoded file's array is not in the current pack, or if a concurrent run removed
        that pack meanwhile. Both are renamed into place, holding the lock.
        """
        encoded = [key for key in keys if kept[key].final and isinstance(kept[key].value, int)]
        offsets = [self._packed(key, kept[key].sha256) for key in encoded]
        if learnt:
            with hold_lock(self.lock_path):
                offsets = self._record(keys, encoded, offsets, kept, started_ns, cache)
        return {key: self.pack[offset : offset + kept[key].value] for key, offset in zip(encoded, offsets)}

    def _record(self, keys: list[str], encoded: list[str], offsets: list[int | None], kept: dict[str, _Kept],
                started_ns: int, cache: EncodingCache) -> list[int]:
        """Write the manifest (and a new pack when needed, removing the others); the offsets of ``encoded``."""
        if None in offsets or (self.pack_name is not None and not self._pack_path(self.pack_name).is_file()):
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
            return offsets
        located = dict(zip(encoded, offsets))
        # Files not asked for this time stay: the pack still holds them.
        others = ((key, entry) for key, entry in self.entries.items() if key not in kept)
        asked = ((key, self._entry(kept[key], located.get(key), started_ns)) for key in keys if kept[key].final)
        self._write_manifest(itertools.chain(others, asked), self.pack_name)
        return offsets

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

        pack_name = f"{self.root_id}-{secrets.token_hex(6)}.npy"
        write_shared(self.folder / pack_name, write)
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

        write_shared(self.manifest_path, write)

    def _remove_other_packs(self) -> None:
        """Delete this folder's packs other than the current one (older ones, or a concurrent run's).

        Called holding the lock. A run still reading one keeps its mapping on POSIX; where
        a mapped file cannot be deleted it stays until a later run.
        """
        for path in self.folder.glob(f"{self.root_id}-*.npy"):
            if path.name != self.pack_name:
                with contextlib.suppress(OSError):
                    path.unlink()
