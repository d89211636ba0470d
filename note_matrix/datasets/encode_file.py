"""Encoding one file through the content cache, and what the parent keeps of the outcome.

``_process_file`` runs in this process or in a worker process (``workers.py``); either
way it returns only a small JSON-able dict (``_outcome``), the array goes to the cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from note_matrix.datasets.cache import EncodingCache, _signature
from note_matrix.datasets.download import file_sha256
from note_matrix.errors import MidiError
from note_matrix.midi import MidiLimitError
from note_matrix.representations import Representation


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
        value = representation.encode(path).steps
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
