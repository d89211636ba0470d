"""Verified downloads and safe archive extraction, against a local HTTP server on 127.0.0.1,
and verified copies from a dataset mirror built in code."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import re
import stat
import tarfile
import threading
import urllib.parse
import zipfile
from pathlib import Path

import numpy as np
import pytest

from note_matrix import DatasetError
from note_matrix import datasets as ds
from note_matrix.datasets import archives, resolve
from note_matrix.datasets import download as dl
from note_matrix.datasets.archives import safe_extract
from note_matrix.datasets.download import download_dataset


class _Server:
    """An HTTP server on 127.0.0.1 (port chosen by the OS) serving ``files`` by name.

    ``drops[name] = n``: the first ``n`` requests for ``name`` announce the full
    Content-Length, send half the body and close the connection.
    ``stalls``: names whose requests send half the body, then wait until ``close()``.
    ``requests`` records ``(path, Range header)`` of every request.
    """

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.drops: dict[str, int] = {}
        self.stalls: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        self.release = threading.Event()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def paths(self) -> list[str]:
        return [path for path, _range in self.requests]

    def _handler_class(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                name = urllib.parse.unquote(self.path.lstrip("/"))
                body = server.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.drops.get(name, 0) > 0:
                    server.drops[name] -= 1
                    self.wfile.write(body[: len(body) // 2])  # then the connection closes
                elif name in server.stalls:
                    self.wfile.write(body[: len(body) // 2])
                    server.release.wait(timeout=10)
                else:
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    rng = np.random.default_rng(2)
    srv = _Server({"a song.mid": rng.bytes(3000), "b's song.mid": rng.bytes(2000)})
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def no_retry_delay(monkeypatch):
    monkeypatch.setattr(dl, "RETRY_DELAY_SECONDS", 0.0)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _registry(server: _Server, files: dict[str, str]) -> dict:
    return {"name": "test", "url_pattern": server.url + "/{name}", "files": files}


def _correct(server: _Server) -> dict[str, str]:
    return {name: _sha256(body) for name, body in server.files.items()}


def _names(folder: Path) -> list[str]:
    """Everything under ``folder`` (hidden files included), as sorted relative paths."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


# -- single files ---------------------------------------------------------------------


def test_download_checks_sha256_and_happens_once(server, tmp_path):
    target = tmp_path / "test"
    download_dataset(_registry(server, _correct(server)), target)
    for name, body in server.files.items():
        assert (target / name).read_bytes() == body
    assert sorted(server.paths()) == ["/a%20song.mid", "/b%27s%20song.mid"]
    download_dataset(_registry(server, _correct(server)), target)
    assert len(server.requests) == 2  # nothing downloaded again
    assert _names(target) == ["a song.mid", "b's song.mid"]  # no .part


def test_download_with_wrong_checksum_leaves_nothing_behind(server, tmp_path):
    wrong = {name: "0" * 64 for name in server.files}
    target = tmp_path / "test"
    with pytest.raises(DatasetError, match=r"could not download 2 of 2 files of test .*SHA-256 mismatch"):
        download_dataset(_registry(server, wrong), target)
    assert _names(target) == []
    assert len(server.requests) == 2  # a complete transfer with another hash is not retried


def test_download_of_a_missing_file_is_a_clear_error_and_not_retried(server, tmp_path):
    with pytest.raises(DatasetError, match=r"missing.mid: download failed \(HTTP 404"):
        download_dataset(_registry(server, {"missing.mid": "0" * 64}), tmp_path / "test")
    assert server.paths() == ["/missing.mid"]


def test_connection_dropped_halfway_every_time_leaves_nothing(server, tmp_path):
    server.drops["a song.mid"] = 99
    target = tmp_path / "test"
    dropped = r"a song.mid: connection dropped after 1500 of 3000 bytes \(after 3 attempts\)"
    with pytest.raises(DatasetError, match=dropped):
        download_dataset(_registry(server, _correct(server)), target)
    assert server.paths().count("/a%20song.mid") == dl.DOWNLOAD_ATTEMPTS
    assert _names(target) == ["b's song.mid"]  # the other file is fine; no .part


def test_connection_dropped_once_is_retried_from_the_start(server, tmp_path):
    server.drops["a song.mid"] = 1
    target = tmp_path / "test"
    download_dataset(_registry(server, _correct(server)), target)
    assert (target / "a song.mid").read_bytes() == server.files["a song.mid"]
    assert [r for r in server.requests if r[0] == "/a%20song.mid"] == [("/a%20song.mid", None)] * 2  # no Range
    assert _names(target) == ["a song.mid", "b's song.mid"]


def test_a_stalled_connection_times_out_and_leaves_nothing(server, tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "DOWNLOAD_TIMEOUT_SECONDS", 0.2)
    monkeypatch.setattr(dl, "DOWNLOAD_ATTEMPTS", 1)
    server.stalls.add("a song.mid")
    target = tmp_path / "test"
    with pytest.raises(DatasetError, match=r"a song.mid: timed out \(no data for 0.2 s\)"):
        download_dataset(_registry(server, {"a song.mid": _correct(server)["a song.mid"]}), target)
    assert _names(target) == []


def test_stale_part_files_and_wrong_files_are_not_trusted(server, tmp_path):
    target = tmp_path / "test"
    target.mkdir()
    # A killed run left a complete-looking .part and a corrupt file in place.
    (target / "a song.mid.part").write_bytes(server.files["a song.mid"])
    (target / "b's song.mid").write_bytes(b"corrupt")
    download_dataset(_registry(server, _correct(server)), target)
    assert sorted(server.paths()) == ["/a%20song.mid", "/b%27s%20song.mid"]  # both fetched again
    for name, body in server.files.items():
        assert (target / name).read_bytes() == body
    assert _names(target) == ["a song.mid", "b's song.mid"]


def test_a_stale_part_file_is_deleted_when_the_new_download_fails(server, tmp_path):
    target = tmp_path / "test"
    target.mkdir()
    (target / "a song.mid.part").write_bytes(server.files["a song.mid"])
    server.drops["a song.mid"] = 99
    with pytest.raises(DatasetError, match="connection dropped"):
        download_dataset(_registry(server, {"a song.mid": _correct(server)["a song.mid"]}), target)
    assert _names(target) == []


def test_registry_file_names_leading_out_of_the_target_are_refused(server, tmp_path):
    with pytest.raises(DatasetError, match=r"'../evil.mid' is unsafe: '..' component"):
        download_dataset(_registry(server, {"../evil.mid": "0" * 64}), tmp_path / "data" / "test")
    assert server.requests == [] and _names(tmp_path) == []


# -- archives built in code -----------------------------------------------------------

SONGS = {"MIDI/one.mid": b"first song", "MIDI/deep/two.mid": b"second song"}


def _zip(members: list[tuple[str, bytes | None]], *, symlinks: tuple[str, ...] = ()) -> bytes:
    """A zip of ``(name, bytes)`` files and ``(name/, None)`` folders; ``symlinks`` get S_IFLNK."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # Unix, so external_attr holds a mode
            kind = stat.S_IFLNK if name in symlinks else stat.S_IFDIR if data is None else stat.S_IFREG
            info.external_attr = (kind | 0o755) << 16
            archive.writestr(info, data or b"")
    return buffer.getvalue()


def _tar_gz(members: list[tuple[str, bytes | None]], *, types: dict[str, bytes] | None = None) -> bytes:
    """A .tar.gz of ``(name, bytes)`` files and ``(name, None)`` folders.

    ``types`` overrides the tar type of some members; links point at ``/etc/passwd``.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.type = (types or {}).get(name, tarfile.DIRTYPE if data is None else tarfile.REGTYPE)
            info.linkname = "/etc/passwd" if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            info.size = len(data) if info.type == tarfile.REGTYPE else 0
            archive.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    return buffer.getvalue()


GOOD_MEMBERS = [("dataset-1.0/", None), ("dataset-1.0/README", b"about"), ("dataset-1.0/MIDI/", None)] + [
    (f"dataset-1.0/{name}", data) for name, data in SONGS.items()
]


@pytest.mark.parametrize("build, suffix", [(_zip, "zip"), (_tar_gz, "tar.gz")])
def test_good_archive_is_downloaded_verified_and_extracted(server, tmp_path, build, suffix):
    archive = build(GOOD_MEMBERS)
    server.files[f"dataset-1.0.{suffix}"] = archive
    registry = {
        "name": "test",
        "archive": {
            "url": f"{server.url}/dataset-1.0.{suffix}",
            "sha256": _sha256(archive),
            "subfolder": "dataset-1.0",
        },
        "files": {name: _sha256(data) for name, data in SONGS.items()},
    }
    data_dir = tmp_path / "data"
    download_dataset(registry, data_dir / "test")
    assert _names(data_dir) == ["test", "test/MIDI", "test/MIDI/deep", "test/MIDI/deep/two.mid",
                                "test/MIDI/one.mid", "test/README"]  # no archive, no staging folder
    for name, data in SONGS.items():
        assert (data_dir / "test" / name).read_bytes() == data
    download_dataset(registry, data_dir / "test")
    assert len(server.requests) == 1  # complete and verified: nothing fetched again


def test_archive_with_wrong_checksum_leaves_nothing(server, tmp_path):
    server.files["dataset.zip"] = _zip(GOOD_MEMBERS)
    registry = {
        "name": "test",
        "archive": {"url": f"{server.url}/dataset.zip", "sha256": "0" * 64},
        "files": {"MIDI/one.mid": _sha256(SONGS["MIDI/one.mid"])},
    }
    with pytest.raises(DatasetError, match=r"could not download test: \.test-dataset\.zip: SHA-256 mismatch"):
        download_dataset(registry, tmp_path / "data" / "test")
    assert _names(tmp_path) == ["data"]


def test_downloaded_archive_with_a_traversal_member_leaves_nothing(server, tmp_path):
    archive = _zip([("MIDI/one.mid", b"fine"), ("../evil.txt", b"gotcha")])
    server.files["evil.zip"] = archive
    registry = {
        "name": "test",
        "archive": {"url": f"{server.url}/evil.zip", "sha256": _sha256(archive)},
        "files": {"MIDI/one.mid": _sha256(b"fine")},
    }
    refused = r"could not download test: \.test-evil\.zip: refusing member '\.\./evil\.txt': '\.\.' component"
    with pytest.raises(DatasetError, match=refused):
        download_dataset(registry, tmp_path / "data" / "test")
    assert _names(tmp_path) == ["data"]  # no target, no staging folder, no archive, no evil.txt


BAD_ARCHIVES = {
    "zip-parent": (_zip([("ok.txt", b"ok"), ("../evil.txt", b"x")]), "../evil.txt", "'..' component"),
    "zip-deep-parent": (_zip([("ok.txt", b"ok"), ("a/../../evil.txt", b"x")]), "a/../../evil.txt", "'..'"),
    "zip-absolute": (_zip([("ok.txt", b"ok"), ("/tmp/evil.txt", b"x")]), "/tmp/evil.txt", "absolute path"),
    "zip-drive": (_zip([("ok.txt", b"ok"), ("C:/evil.txt", b"x")]), "C:/evil.txt", "drive letter"),
    "zip-backslash": (_zip([("ok.txt", b"ok"), ("..\\evil.txt", b"x")]), "..\\evil.txt", "'..' component"),
    "zip-symlink": (_zip([("ok.txt", b"ok"), ("evil.txt", b"/etc/passwd")], symlinks=("evil.txt",)),
                    "evil.txt", "symbolic link"),
    "tar-parent": (_tar_gz([("ok.txt", b"ok"), ("../evil.txt", b"x")]), "../evil.txt", "'..' component"),
    "tar-absolute": (_tar_gz([("ok.txt", b"ok"), ("/tmp/evil.txt", b"x")]), "/tmp/evil.txt", "absolute path"),
    "tar-symlink": (_tar_gz([("ok.txt", b"ok"), ("evil.txt", b"")], types={"evil.txt": tarfile.SYMTYPE}),
                    "evil.txt", "symbolic link"),
    "tar-hardlink": (_tar_gz([("ok.txt", b"ok"), ("evil.txt", b"")], types={"evil.txt": tarfile.LNKTYPE}),
                     "evil.txt", "hard link"),
    "tar-fifo": (_tar_gz([("ok.txt", b"ok"), ("evil.txt", b"")], types={"evil.txt": tarfile.FIFOTYPE}),
                 "evil.txt", "device or fifo"),
}


@pytest.mark.parametrize("case", sorted(BAD_ARCHIVES))
def test_unsafe_archive_members_are_refused_before_anything_is_written(tmp_path, monkeypatch, case):
    def no_writing(*args):
        raise AssertionError("started writing members of an unsafe archive")

    monkeypatch.setattr(archives, "_write_members", no_writing)
    data, member, reason = BAD_ARCHIVES[case]
    archive_path = tmp_path / "archives" / f"{case}.bin"
    archive_path.parent.mkdir()
    archive_path.write_bytes(data)
    work = tmp_path / "work" / "data"
    work.mkdir(parents=True)
    with pytest.raises(DatasetError, match="^" + re.escape(f"{case}.bin: refusing member {member!r}: {reason}")):
        safe_extract(archive_path, work / "target")
    assert _names(tmp_path / "work") == ["data"]  # ok.txt, listed first, was not written either
    assert _names(tmp_path / "archives") == [f"{case}.bin"]


def test_subfolder_selects_part_of_the_archive_and_must_exist(tmp_path):
    archive_path = tmp_path / "dataset.tar.gz"
    archive_path.write_bytes(_tar_gz(GOOD_MEMBERS))
    safe_extract(archive_path, tmp_path / "midi", subfolder="dataset-1.0/MIDI")
    assert _names(tmp_path / "midi") == ["deep", "deep/two.mid", "one.mid"]
    with pytest.raises(DatasetError, match=r"no folder 'dataset-1.0/Midi'"):
        safe_extract(archive_path, tmp_path / "other", subfolder="dataset-1.0/Midi")
    assert not (tmp_path / "other").exists()


def test_existing_target_is_kept_unless_replace(tmp_path):
    archive_path = tmp_path / "dataset.zip"
    archive_path.write_bytes(_zip([("new.mid", b"new")]))
    target = tmp_path / "target"
    target.mkdir()
    (target / "old.mid").write_bytes(b"old")
    with pytest.raises(DatasetError, match="already exists"):
        safe_extract(archive_path, target)
    assert _names(target) == ["old.mid"]
    safe_extract(archive_path, target, replace=True)
    assert _names(target) == ["new.mid"]
    assert _names(tmp_path) == ["dataset.zip", "target", "target/new.mid"]  # nothing left aside


def test_a_file_that_is_not_an_archive_is_a_clear_error(tmp_path):
    archive_path = tmp_path / "dataset.zip"
    archive_path.write_bytes(b"<html>not found</html>")
    with pytest.raises(DatasetError, match=r"dataset.zip: not a zip or tar archive"):
        safe_extract(archive_path, tmp_path / "target")
    assert _names(tmp_path) == ["dataset.zip"]


# -- the mirror: a local download source ----------------------------------------------

MIRRORED = {"a song.mid": b"first song", "deep/b.mid": b"second song"}


@pytest.fixture
def fake_mirror(tmp_path, monkeypatch) -> Path:
    """A registered dataset ``fake`` (the real registry set aside) and a mirror holding its files."""
    registry_dir = tmp_path / "registry"
    registry_dir.mkdir()
    registry = {"name": "fake", "mirror_subdir": "fake/MIDI", "url_pattern": "http://127.0.0.1:9/{name}",
                "files": {name: _sha256(data) for name, data in MIRRORED.items()}}
    (registry_dir / "fake.json").write_text(json.dumps(registry))
    monkeypatch.setattr(resolve, "REGISTRY_DIR", registry_dir)
    mirror = tmp_path / "mirror"
    for name, data in MIRRORED.items():
        (mirror / "fake" / "MIDI" / name).parent.mkdir(parents=True, exist_ok=True)
        (mirror / "fake" / "MIDI" / name).write_bytes(data)
    monkeypatch.setenv(ds.MIRROR_ENV, str(mirror))
    return mirror


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


def test_the_mirror_is_copied_verified_into_the_data_folder_once(fake_mirror, tmp_path, monkeypatch):
    before = _snapshot(fake_mirror)
    data_dir = tmp_path / "data"
    files = ds.resolve_dataset("fake", data_dir)
    assert files.root == data_dir / "fake" and files.keys == sorted(MIRRORED) and files.skipped == {}
    assert _names(data_dir / "fake") == ["a song.mid", "deep", "deep/b.mid"]  # as a download leaves it, no .part
    for name, data in MIRRORED.items():
        assert files.path(name).read_bytes() == data
    assert _snapshot(fake_mirror) == before  # only read

    copied = _snapshot(data_dir / "fake")

    def no_copy(*args):
        raise AssertionError("copied a file already in place again")

    with monkeypatch.context() as patch:
        patch.setattr(dl, "copy_verified", no_copy)
        again = ds.resolve_dataset("fake", data_dir)
    assert again.keys == files.keys and _snapshot(data_dir / "fake") == copied
    # A file damaged in place is copied again, as a download would fetch it again.
    (data_dir / "fake" / "a song.mid").write_bytes(b"damaged")
    assert ds.resolve_dataset("fake", data_dir).keys == sorted(MIRRORED)
    assert (data_dir / "fake" / "a song.mid").read_bytes() == MIRRORED["a song.mid"]


def test_files_the_mirror_lacks_or_holds_wrong_are_left_out_with_the_reason(fake_mirror, tmp_path):
    source = fake_mirror / "fake" / "MIDI"
    (source / "a song.mid").write_bytes(b"another song")
    (source / "deep" / "b.mid").unlink()
    os.mkfifo(source / "deep" / "b.mid")  # never opened: it would block
    files = ds.resolve_dataset("fake", tmp_path / "data")
    assert files.keys == []
    assert re.fullmatch(r"not copied from the mirror: .*a song\.mid: SHA-256 mismatch \(got \w{12}\.\.\., the "
                        r"registry says \w{12}\.\.\.\)", files.skipped["a song.mid"])
    assert files.skipped["deep/b.mid"] == f"not copied from the mirror: {source / 'deep' / 'b.mid'}: not a regular file"
    assert _names(tmp_path / "data" / "fake") == []  # nothing unverified left behind
    (source / "deep" / "b.mid").unlink()
    assert ds.resolve_dataset("fake", tmp_path / "data").skipped["deep/b.mid"].endswith("b.mid: no such file")


def test_a_mirror_without_the_dataset_folder_is_a_clear_error(fake_mirror, tmp_path, monkeypatch):
    monkeypatch.setenv(ds.MIRROR_ENV, str(tmp_path / "elsewhere"))
    with pytest.raises(DatasetError, match=r"NOTE_MATRIX_MIRROR=.*elsewhere has no folder fake/MIDI/"):
        ds.resolve_dataset("fake", tmp_path / "data")
