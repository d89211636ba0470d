"""Safe extraction of a downloaded .zip or .tar archive (``safe_extract``).

Every member is checked before anything is written: names that lead outside the target,
links, devices, fifos, sockets and encrypted entries make the whole archive refused.
Files are written into a staging folder that is renamed into place only when every
member was written, so a failure leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import lzma
import os
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from note_matrix.errors import DatasetError

BLOCK_BYTES = 1 << 16
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
# NotImplementedError: a zip compression method this Python cannot read (deflate64, ...)
_ARCHIVE_ERRORS = (
    OSError, EOFError, NotImplementedError, zipfile.BadZipFile, tarfile.TarError, zlib.error, lzma.LZMAError
)


def unsafe_path_reason(name: str) -> str | None:
    """Why ``name`` could point outside the folder it is joined to, or None if it cannot.

    Backslashes count as separators (archives written on Windows use them).
    """
    posix = name.replace("\\", "/")
    if "\x00" in name:
        return "NUL character in the name"
    if posix.startswith("/"):
        return "absolute path"
    if _DRIVE_LETTER.match(posix):
        return "drive letter"
    if ".." in posix.split("/"):
        return "'..' component"
    return None


@dataclass(frozen=True)
class _Member:
    """An archive member: its stored name, its kind and how to read a file's bytes."""

    name: str
    kind: str  # "file", "folder", or what makes it refused ("symbolic link", ...)
    open: Callable[[], IO[bytes]]


def safe_extract(archive_path: Path, target: Path, *, subfolder: str | None = None, replace: bool = False) -> None:
    """Extract a .zip or .tar (.gz, .bz2, .xz) archive into the folder ``target``.

    Every member is checked before anything is written; a member with an absolute path,
    a drive letter, a ``..`` component, or that is a symbolic or hard link, a device, a
    fifo, a socket or an encrypted zip entry, makes the whole archive refused with
    ``DatasetError("<archive>: refusing member '<name>': <reason>")``. With ``subfolder``,
    only that folder of the archive is kept and becomes ``target`` (members elsewhere are
    still checked). Files are written into ``.<target name>.extracting`` beside
    ``target`` (only regular files and folders are ever created there, so nothing can
    lead out of it) and that folder is renamed to ``target`` only when all succeeded:
    a failure leaves neither ``target`` nor the staging folder. An existing ``target``
    is an error unless ``replace``, which swaps it for the new one.
    """
    archive_path, target = Path(archive_path), Path(target)
    if (target.exists() or target.is_symlink()) and not replace:
        raise DatasetError(f"{target}: already exists; not extracting {archive_path.name} over it")
    keep = _subfolder_parts(archive_path, subfolder)
    with contextlib.ExitStack() as stack:
        members = _open_members(archive_path, stack)
        plan = _plan_extraction(archive_path, members, keep)
        staging = target.with_name(f".{target.name}.extracting")
        _remove(staging)  # left by a killed run: never trusted
        try:
            staging.mkdir(parents=True)
            _write_members(archive_path, staging, plan)
            _move_into_place(staging, target)
        finally:
            _remove(staging)


def _subfolder_parts(archive_path: Path, subfolder: str | None) -> tuple[str, ...]:
    """``subfolder`` as path components (empty for the whole archive), checked like members."""
    if not subfolder:
        return ()
    reason = unsafe_path_reason(subfolder)
    if reason:
        raise DatasetError(f"{archive_path.name}: subfolder {subfolder!r} is unsafe: {reason}")
    return _parts(subfolder)


def _parts(name: str) -> tuple[str, ...]:
    """The components of an archive name, without empty and ``.`` ones."""
    return tuple(part for part in name.replace("\\", "/").split("/") if part not in ("", "."))


def _open_members(archive_path: Path, stack: contextlib.ExitStack) -> list[_Member]:
    """Open the archive (closed by ``stack``) and list its members."""
    try:
        if zipfile.is_zipfile(archive_path):
            archive = stack.enter_context(zipfile.ZipFile(archive_path))
            return [_Member(info.filename, _zip_kind(info), _opener(archive.open, info)) for info in archive.infolist()]
        if tarfile.is_tarfile(archive_path):
            archive = stack.enter_context(tarfile.open(archive_path, "r:*"))  # noqa: SIM115 (closed by stack)
            return [_Member(info.name, _tar_kind(info), _opener(archive.extractfile, info)) for info in archive]
    except _ARCHIVE_ERRORS as error:
        raise DatasetError(f"{archive_path.name}: unreadable archive ({type(error).__name__}: {error})") from error
    raise DatasetError(f"{archive_path.name}: not a zip or tar archive")


def _opener(open_member: Callable, info) -> Callable[[], IO[bytes]]:
    """A function reading member ``info`` (bound now, not when a loop variable changes)."""
    return lambda: open_member(info)


def _zip_kind(info: zipfile.ZipInfo) -> str:
    """What a zip member is, from its name and the Unix mode in ``external_attr``."""
    mode = info.external_attr >> 16
    if info.flag_bits & 0x1:
        return "encrypted"
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return "device, fifo or socket"
    return "folder" if info.is_dir() or stat.S_ISDIR(mode) else "file"


def _tar_kind(info: tarfile.TarInfo) -> str:
    if info.isfile():
        return "file"
    if info.isdir():
        return "folder"
    if info.issym():
        return "symbolic link"
    if info.islnk():
        return "hard link"
    if info.isdev():
        return "device or fifo"
    return f"unsupported tar member type {info.type!r}"


def _plan_extraction(
    archive_path: Path, members: list[_Member], keep: tuple[str, ...]
) -> list[tuple[tuple[str, ...], _Member]]:
    """Check every member; the (path inside the target, member) pairs to write."""
    plan, seen = [], set()
    for member in members:
        reason = unsafe_path_reason(member.name)
        if reason is None and member.kind not in ("file", "folder"):
            reason = member.kind
        if reason is None and member.kind == "file" and not _parts(member.name):
            reason = "a file without a name"
        if reason:
            raise DatasetError(f"{archive_path.name}: refusing member {member.name!r}: {reason}")
        parts = _parts(member.name)
        if parts[: len(keep)] != keep or len(parts) == len(keep):
            continue  # outside the kept subfolder, or the subfolder itself
        relative = parts[len(keep) :]
        if relative in seen:
            raise DatasetError(f"{archive_path.name}: refusing member {member.name!r}: appears twice")
        seen.add(relative)
        plan.append((relative, member))
    if keep and not plan:
        raise DatasetError(f"{archive_path.name}: no folder {'/'.join(keep)!r} (or it is empty)")
    return plan


def _write_members(archive_path: Path, staging: Path, plan: list[tuple[tuple[str, ...], _Member]]) -> None:
    """Create the planned folders and regular files under ``staging``."""
    for relative, member in plan:
        destination = staging.joinpath(*relative)
        try:
            if member.kind == "folder":
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            with member.open() as source, open(destination, "xb") as out:
                shutil.copyfileobj(source, out, BLOCK_BYTES)
        except _ARCHIVE_ERRORS as error:
            raise DatasetError(f"{archive_path.name}: cannot extract {member.name!r} ({error})") from error


def _move_into_place(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``, swapping out (then deleting) an existing ``target``."""
    previous = target.with_name(f".{target.name}.previous")
    _remove(previous)
    try:
        if target.exists() or target.is_symlink():
            os.replace(target, previous)
        try:
            os.replace(staging, target)
        except OSError:
            if previous.exists() or previous.is_symlink():
                os.replace(previous, target)
            raise
    except OSError as error:
        raise DatasetError(f"{target}: cannot move the extracted files into place ({error})") from error
    _remove(previous)


def _remove(path: Path) -> None:
    """Delete a file, link or folder tree if it exists (a link, not what it points to)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
