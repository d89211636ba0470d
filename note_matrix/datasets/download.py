"""Verified downloads of registered datasets, and verified copies from a local mirror.

A registry entry (``registry/<name>.json``) says where its files come from in one of
two ways; ``files`` (path relative to ``data/<name>/`` -> SHA-256) is required in both::

    # one download per file; {name} is replaced by the URL-quoted key of "files"
    "url_pattern": "https://host/pinned/commit/MIDI/{name}",
    "files": {"song.mid": "<sha256>", ...}

    # one archive (.zip, .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz; told apart by content)
    "archive": {
        "url": "https://host/dataset-1.0.tar.gz",
        "sha256": "<SHA-256 of the archive file>",
        "subfolder": "dataset-1.0/MIDI"     # optional: keep only this folder of the archive
    },
    "files": {"song.mid": "<sha256>", ...}  # relative to "subfolder" when it is given

What a download guarantees:

- Nothing untrusted is left behind. A file streams into ``<file>.part`` beside its
  destination and is hashed while it streams; it is renamed into place only when as many
  bytes arrived as the server announced and the SHA-256 matches the registry. On any
  failure (HTTP error, refused or dropped connection, timeout, mismatch, interruption)
  the ``.part`` is deleted. A ``.part`` left by a killed run is overwritten, never read.
- Retries restart from the first byte (no HTTP ``Range`` resume): up to
  ``DOWNLOAD_ATTEMPTS`` attempts, waiting ``RETRY_DELAY_SECONDS`` (doubled each time)
  between them. Errors a retry cannot fix are not retried: HTTP 4xx other than 408 and
  429, and a SHA-256 mismatch after a complete transfer (the upstream file changed).
- Files already present with the right SHA-256 are not fetched again.
- An archive is downloaded the same way, then extracted by ``safe_extract``
  (``archives.py``) and deleted.

Failures raise ``DatasetError`` with one line naming the file and the reason.

A mirror (a local folder holding the registered files, ``copy_dataset``) is a download
source like the upstream one: each missing or wrong file is copied through a ``.part``,
hashed while it is copied and renamed into place only if its SHA-256 matches the
registry; the mirror is only read. A file the mirror lacks or holds with another SHA-256
is left out with the reason, not fatal.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from note_matrix import atomic
from note_matrix.datasets.archives import BLOCK_BYTES, safe_extract, unsafe_path_reason
from note_matrix.errors import DatasetError

DOWNLOAD_TIMEOUT_SECONDS = 30  # longest wait for a connection or for the next bytes
DOWNLOAD_ATTEMPTS = 3
RETRY_DELAY_SECONDS = 1.0  # before the second attempt; doubled before each later one
MIRROR_HINT = "run again to retry, or set NOTE_MATRIX_MIRROR to a local copy"
_RETRYABLE_HTTP_CODES = {408, 429}  # besides every 5xx


class _AttemptFailed(Exception):
    """One failed download attempt: ``reason`` for the message; whether a retry may help."""

    def __init__(self, reason: str, *, retryable: bool = True):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


# -- datasets -------------------------------------------------------------------------


def download_dataset(registry: dict, target: Path) -> None:
    """Make ``target`` hold every file of ``registry`` with its SHA-256; fetch what is not.

    Per-file entries fetch only the missing or wrong files into ``target``; archive
    entries fetch and extract the archive (replacing ``target``) unless every file is
    already there and correct.
    """
    target = Path(target)
    if "archive" in registry:
        _download_archive(registry, target)
    elif "url_pattern" in registry:
        _download_files(registry, target)
    else:
        raise DatasetError(f"registry entry {registry.get('name')!r} has neither 'url_pattern' nor 'archive'")


def _download_files(registry: dict, target: Path) -> None:
    """Fetch each missing or wrong file from ``url_pattern``, one verified download each."""
    wanted = _missing_or_wrong(target, registry["files"])
    if not wanted:
        return
    failures = []
    for name in tqdm(wanted, desc=f"downloading {registry['name']}", unit="file"):
        url = registry["url_pattern"].format(name=urllib.parse.quote(name))
        try:
            fetch_verified(url, target / name, registry["files"][name])
        except DatasetError as error:
            failures.append(str(error))
    if failures:
        raise DatasetError(
            f"could not download {len(failures)} of {len(wanted)} files of {registry['name']} "
            f"(first: {failures[0]}); {MIRROR_HINT}"
        )


def _download_archive(registry: dict, target: Path) -> None:
    """Fetch the registry's archive, extract it over ``target``, check the files it gave."""
    if not _missing_or_wrong(target, registry["files"]):
        return
    spec = registry["archive"]
    target.parent.mkdir(parents=True, exist_ok=True)
    archive_path = target.with_name(f".{target.name}-{_url_basename(spec['url'])}")
    try:
        fetch_verified(spec["url"], archive_path, spec["sha256"], progress=f"downloading {registry['name']}")
        safe_extract(archive_path, target, subfolder=spec.get("subfolder"), replace=True)
    except DatasetError as error:
        raise DatasetError(f"could not download {registry['name']}: {error}; {MIRROR_HINT}") from error
    finally:
        archive_path.unlink(missing_ok=True)
    wrong = _missing_or_wrong(target, registry["files"])
    if wrong:
        raise DatasetError(
            f"the archive of {registry['name']} lacks {len(wrong)} of its registered files or "
            f"holds them with another SHA-256 (first: {wrong[0]}): the registry entry is wrong"
        )


def copy_dataset(registry: dict, source: Path, target: Path) -> dict[str, str]:
    """Copy each missing or wrong file of ``registry`` from the folder ``source`` into ``target``, verified.

    Returns ``{file: reason}`` for the files that could not be copied (``source`` lacks
    them, or holds them with another SHA-256); the others are in ``target`` after it.
    """
    wanted = _missing_or_wrong(target, registry["files"])
    failures = {}
    for name in tqdm(wanted, desc=f"copying {registry['name']} from the mirror", unit="file", disable=not wanted):
        try:
            copy_verified(source / name, target / name, registry["files"][name])
        except DatasetError as error:
            failures[name] = f"not copied from the mirror: {error}"
    return failures


def _missing_or_wrong(target: Path, files: dict[str, str]) -> list[str]:
    """Sorted names of ``files`` absent from ``target`` or whose SHA-256 differs."""
    for name in files:
        reason = unsafe_path_reason(name)
        if reason:
            raise DatasetError(f"registry file name {name!r} is unsafe: {reason}")
    return [
        name
        for name, sha256 in sorted(files.items())
        if not (target / name).is_file() or file_sha256(target / name) != sha256
    ]


def _url_basename(url: str) -> str:
    """The last path segment of ``url`` (``"archive"`` when it has none usable)."""
    name = PurePosixPath(urllib.parse.urlparse(url).path).name
    return name if name not in ("", ".", "..") else "archive"


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- one verified file ----------------------------------------------------------------


def fetch_verified(url: str, destination: Path, sha256: str, *, progress: str | None = None) -> bool:
    """Download ``url`` to ``destination`` only if its SHA-256 is ``sha256``.

    Returns False when ``destination`` already holds the right bytes (nothing fetched),
    True after a download. ``progress``, when given, is the label of a bytes progress bar.
    Raises ``DatasetError("<destination name>: <reason>")`` after the last failed attempt.
    """
    destination = Path(destination)
    if destination.is_file() and file_sha256(destination) == sha256:
        return False
    destination.parent.mkdir(parents=True, exist_ok=True)
    attempts = 0
    while True:
        attempts += 1
        try:
            _fetch_once(url, destination, sha256, progress)
            return True
        except _AttemptFailed as failure:
            if not failure.retryable or attempts == DOWNLOAD_ATTEMPTS:
                tries = f" (after {attempts} attempts)" if attempts > 1 else ""
                raise DatasetError(f"{destination.name}: {failure.reason}{tries}") from failure
        time.sleep(RETRY_DELAY_SECONDS * 2 ** (attempts - 1))


def copy_verified(source: Path, destination: Path, sha256: str) -> None:
    """Copy the regular file ``source`` to ``destination`` if its SHA-256 is ``sha256``, as a download would.

    Raises ``DatasetError("<source>: <reason>")``: not a regular file (a pipe or a device
    is never opened), unreadable, or another SHA-256.
    """
    if not source.is_file():
        raise DatasetError(f"{source}: {'not a regular file' if source.exists() else 'no such file'}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        _place_verified(destination, sha256, lambda partial: _copy(source, partial))
    except _AttemptFailed as failure:
        raise DatasetError(f"{source}: {failure.reason}") from failure
    except OSError as error:
        raise DatasetError(f"{source}: cannot be copied ({error.strerror or error})") from error


def _copy(source: Path, partial: Path) -> str:
    """Copy ``source`` to ``partial`` (truncating it); the SHA-256 of what was copied, as hex."""
    digest = hashlib.sha256()
    with open(source, "rb") as handle, open(partial, "wb") as out:
        for block in iter(lambda: handle.read(BLOCK_BYTES), b""):
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def _fetch_once(url: str, destination: Path, sha256: str, progress: str | None) -> None:
    """One attempt: stream into ``<destination>.part``, verify, rename; never leave the .part."""
    _place_verified(destination, sha256, lambda partial: _stream(url, partial, progress))


def _place_verified(destination: Path, sha256: str, write) -> None:
    """``write(<destination>.part)`` returns the SHA-256 it wrote; rename it into place only if it is ``sha256``.

    The ``.part`` is never left behind. A mismatch is ``_AttemptFailed``, not retryable.
    """
    partial = atomic.temporary_name(destination)
    try:
        digest = write(partial)
        if digest != sha256:
            raise _AttemptFailed(
                f"SHA-256 mismatch (got {digest[:12]}..., the registry says {sha256[:12]}...)", retryable=False
            )
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)


def _stream(url: str, partial: Path, progress: str | None) -> str:
    """Write the body of ``url`` to ``partial`` (truncating it); its SHA-256 as hex.

    Raises ``_AttemptFailed`` when the request fails, the connection drops or stalls for
    ``DOWNLOAD_TIMEOUT_SECONDS``, or fewer bytes arrive than the Content-Length announced
    (``http.client`` then just reports the end of the body, so the bytes are counted here).
    """
    digest = hashlib.sha256()
    received, announced = 0, None
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response, open(partial, "wb") as out:
            announced = _content_length(response)
            with tqdm(total=announced, unit="B", unit_scale=True, desc=progress, disable=progress is None) as bar:
                for block in iter(lambda: response.read(BLOCK_BYTES), b""):
                    digest.update(block)
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as error:
        retryable = error.code >= 500 or error.code in _RETRYABLE_HTTP_CODES
        raise _AttemptFailed(f"download failed (HTTP {error.code} {error.reason})", retryable=retryable) from error
    except urllib.error.URLError as error:
        raise _AttemptFailed(f"download failed (cannot connect: {error.reason})") from error
    except http.client.IncompleteRead as error:
        raise _AttemptFailed(f"connection dropped after {received + len(error.partial)} bytes") from error
    except http.client.HTTPException as error:
        raise _AttemptFailed(f"download failed (bad HTTP response: {type(error).__name__})") from error
    except TimeoutError as error:
        raise _AttemptFailed(f"timed out (no data for {DOWNLOAD_TIMEOUT_SECONDS} s)") from error
    except OSError as error:
        raise _AttemptFailed(f"download failed ({type(error).__name__}: {error})") from error
    if announced is not None and received != announced:
        raise _AttemptFailed(f"connection dropped after {received} of {announced} bytes")
    return digest.hexdigest()


def _content_length(response) -> int | None:
    """The announced body size in bytes, or None when the server did not say."""
    value = response.headers.get("Content-Length")
    return int(value) if value is not None and value.strip().isdigit() else None
