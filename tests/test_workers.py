"""Encoding in worker processes (``encode_dataset(..., workers=N)``): same outcome as one
process, the cache written by the workers, crashes and hangs cost one file, small replies.

Worker processes are fresh interpreters, so a monkeypatch reaches only the parent: the
checks here count what the workers report (``parsed_files``, ``hashed_files``), look at
the cache files they wrote, or patch the parent to prove it never reads a MIDI file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from note_matrix import DatasetError, NoteMatrix
from note_matrix import datasets as ds
from note_matrix.datasets import encode_file
from note_matrix.datasets import workers as ds_workers
from tests.midi_factory import random_song
from tests.test_datasets import _mixed_folder

GOOD = ["good0.mid", "good1.mid", "good2.mid"]


def _encode(folder: Path, data_dir: Path, workers: int) -> ds.EncodedDataset:
    files = ds.resolve_dataset(str(folder), data_dir)
    return ds.encode_dataset(files, NoteMatrix(), data_dir, min_steps=51, progress=False, workers=workers)


def _assert_same(first: ds.EncodedDataset, second: ds.EncodedDataset) -> None:
    assert list(second.skipped.items()) == list(first.skipped.items())
    assert list(second.arrays) == list(first.arrays)
    for key, array in first.arrays.items():
        assert second.arrays[key].dtype == array.dtype
        np.testing.assert_array_equal(second.arrays[key], array)


def _cache_entries(data_dir: Path) -> dict[str, int]:
    """Every content-cache entry (``<sha256>.npy`` / ``.skip``) with its modification time."""
    return {p.name: p.stat().st_mtime_ns for p in (data_dir / "cache").glob("*/*") if p.is_file()}


def test_workers_give_the_same_arrays_and_reasons_as_one_process(tmp_path):
    folder = _mixed_folder(tmp_path)
    alone = _encode(folder, tmp_path / "alone", workers=1)
    together = _encode(folder, tmp_path / "together", workers=2)
    _assert_same(alone, together)
    assert sorted(together.arrays) == GOOD and len(together.skipped) == 5
    assert together.parsed_files == alone.parsed_files == 7  # the folder named .mid has no content to parse
    assert _cache_entries(tmp_path / "alone").keys() == _cache_entries(tmp_path / "together").keys()


def test_the_workers_write_the_cache_and_a_second_run_parses_nothing(tmp_path, monkeypatch):
    folder = _mixed_folder(tmp_path)
    data_dir = tmp_path / "data"
    first = _encode(folder, data_dir, workers=2)
    written = _cache_entries(data_dir)
    assert len(written) == 7  # 4 arrays (short.mid too: min_steps applies on return), 3 reasons

    # The files were just written, so the manifest does not vouch for them by stat
    # ("racy"): they are hashed again, found in the cache and not parsed.
    second = _encode(folder, data_dir, workers=2)
    assert (second.parsed_files, second.hashed_files) == (0, 7)
    _assert_same(first, second)
    assert _cache_entries(data_dir) == written  # not one entry rewritten
    assert not list(data_dir.rglob("*.part"))  # every write was renamed into place

    # What the workers wrote is what one process finds: this process may not parse.
    def no_parsing(self, path):
        if Path(path).is_file():
            raise AssertionError(f"parsed {path} again")
        return original_encode(self, path)

    original_encode = NoteMatrix.encode
    monkeypatch.setattr(NoteMatrix, "encode", no_parsing)
    for manifest in (data_dir / "cache").glob("*/datasets/*"):
        manifest.unlink()  # no manifest and no pack: only the content cache is left
    _assert_same(first, _encode(folder, data_dir, workers=1))


def test_a_file_changed_since_the_last_run_is_encoded_again_by_the_workers(tmp_path):
    folder = tmp_path / "songs"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(6):
        random_song(folder / f"song{i}.mid", rng, 60)
    long_ago = 1_600_000_000 * 10**9
    for path in folder.iterdir():
        os.utime(path, ns=(long_ago, long_ago))
    data_dir = tmp_path / "data"
    first = _encode(folder, data_dir, workers=2)
    warm = _encode(folder, data_dir, workers=2)
    assert (warm.parsed_files, warm.hashed_files) == (0, 0)  # every file trusted by stat
    _assert_same(first, warm)

    random_song(folder / "song3.mid", rng, 70)  # new content
    changed = _encode(folder, data_dir, workers=2)
    assert (changed.parsed_files, changed.hashed_files) == (1, 1)
    np.testing.assert_array_equal(changed.arrays["song3.mid"], NoteMatrix().encode(folder / "song3.mid").steps)
    assert len(changed.arrays["song3.mid"]) != len(first.arrays["song3.mid"])
    for key in first.arrays.keys() - {"song3.mid"}:
        np.testing.assert_array_equal(changed.arrays[key], first.arrays[key])


def test_a_worker_that_dies_costs_only_the_file_it_was_on(tmp_path, monkeypatch):
    folder = _mixed_folder(tmp_path)
    reference = _encode(folder, tmp_path / "reference", workers=1)
    monkeypatch.setenv(ds_workers.WORKER_FAULT_ENV, "exit:good1.mid")  # that worker calls os._exit(70) there
    crashed = _encode(folder, tmp_path / "data", workers=2)
    assert "worker crashed" in crashed.skipped["good1.mid"]
    assert "exit status 70" in crashed.skipped["good1.mid"]
    assert sorted(crashed.arrays) == ["good0.mid", "good2.mid"]
    for key, reason in reference.skipped.items():
        assert crashed.skipped[key] == reason
    # A crash is not remembered: the next run encodes the file.
    monkeypatch.delenv(ds_workers.WORKER_FAULT_ENV)
    _assert_same(reference, _encode(folder, tmp_path / "data", workers=2))


def test_a_worker_that_hangs_is_stopped_and_the_rest_go_on(tmp_path, monkeypatch):
    folder = _mixed_folder(tmp_path)
    monkeypatch.setenv("NOTE_MATRIX_MAX_PARSE_SECONDS", "0.5")
    monkeypatch.setattr(ds_workers, "WORKER_GRACE_SECONDS", 0.5)  # the parent's watchdog: 2 x 0.5 s + 0.5 s
    monkeypatch.setenv(ds_workers.WORKER_FAULT_ENV, "hang:good0.mid")  # that worker sleeps an hour there
    hung = _encode(folder, tmp_path / "data", workers=2)
    assert hung.skipped["good0.mid"].startswith("no result after 1.5 s, the worker process was stopped")
    assert sorted(hung.arrays) == ["good1.mid", "good2.mid"]


def test_the_parent_reads_no_midi_and_gets_only_small_replies(tmp_path, monkeypatch):
    folder = tmp_path / "big"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i in range(8):
        random_song(folder / f"song{i}.mid", rng, 700)
    smallest_file = min(p.stat().st_size for p in folder.iterdir())
    assert smallest_file > 5_000
    reference = _encode(folder, tmp_path / "reference", workers=1)

    def forbidden(*args, **kwargs):
        raise AssertionError("the parent read a MIDI file")

    monkeypatch.setattr(encode_file, "file_sha256", forbidden)
    monkeypatch.setattr(NoteMatrix, "encode", forbidden)
    reply_bytes, replies = [], []
    read_reply = ds_workers._read_reply

    def measured(line):
        reply_bytes.append(len(line))
        replies.append(read_reply(line))
        return replies[-1]

    monkeypatch.setattr(ds_workers, "_read_reply", measured)
    encoded = _encode(folder, tmp_path / "data", workers=2)
    _assert_same(reference, encoded)
    # one reply per file, and a "ready" from each worker that started (the second may not
    # be needed when the first is quick: that depends on the machine's load)
    assert sorted(reply["key"] for reply in replies if "key" in reply) == [f"song{i}.mid" for i in range(8)]
    assert 1 <= sum(1 for reply in replies if reply.get("ready")) <= 2
    assert len(replies) == sum(1 for reply in replies if "key" in reply or reply.get("ready"))
    assert max(reply_bytes) < 400 < smallest_file
    # The arrays are read-only views of one memory-mapped pack, not copies held by the parent.
    arrays = list(encoded.arrays.values())
    assert all(a.base is arrays[0].base and not a.flags.writeable for a in arrays)
    assert isinstance(arrays[0].base.base, np.memmap)


def test_workers_zero_or_none_means_one_per_core():
    assert ds_workers._worker_count(0) == ds_workers._worker_count(None) == (os.cpu_count() or 1)
    assert ds_workers._worker_count(3) == 3
    with pytest.raises(ValueError, match="workers"):
        ds_workers._worker_count(-1)


def test_workers_encode_the_pop_mirror_as_one_process_does(mirror, monkeypatch, tmp_path):
    monkeypatch.setenv(ds.MIRROR_ENV, str(mirror))
    files = ds.resolve_dataset("pop", tmp_path / "data")
    alone = ds.encode_dataset(files, NoteMatrix(), tmp_path / "alone", min_steps=51, progress=False)
    together = ds.encode_dataset(files, NoteMatrix(), tmp_path / "together", min_steps=51, progress=False,
                                 workers=2)
    _assert_same(alone, together)
    assert len(together.arrays) == 126


def test_workers_that_cannot_start_are_a_clear_error(tmp_path, monkeypatch):
    folder = _mixed_folder(tmp_path)
    monkeypatch.setattr(ds_workers, "_WORKER_BOOT", "import sys; sys.exit('no such worker')")
    with pytest.raises(DatasetError, match=r"3 worker processes .* failed to start \(the last: exit status 1: no such"):
        _encode(folder, tmp_path / "data", workers=2)
