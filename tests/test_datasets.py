"""Finding, encoding (with the cache), splitting and windowing datasets (downloads: test_downloads.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from note_matrix import DatasetError, NoteMatrix
from note_matrix import datasets as ds
from note_matrix.datasets import download, encode_file
from note_matrix.training.windows import WindowBatches, WindowIndex
from tests.midi_factory import random_song, write_song


def test_folder_datasets_are_searched_recursively(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "a" / "b").mkdir(parents=True)
    random_song(tmp_path / "one.mid", rng, 5)
    random_song(tmp_path / "a" / "TWO.MIDI", rng, 5)
    random_song(tmp_path / "a" / "b" / "three.midi", rng, 5)
    (tmp_path / "notes.txt").write_text("not music")
    files = ds.resolve_dataset(str(tmp_path), tmp_path / "data")
    assert files.keys == ["a/TWO.MIDI", "a/b/three.midi", "one.mid"]


def test_unknown_dataset_and_empty_folder_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="neither a registered name"):
        ds.resolve_dataset("no-such-dataset", tmp_path)
    with pytest.raises(DatasetError, match="no .mid or .midi files"):
        ds.resolve_dataset(str(tmp_path), tmp_path)


def test_split_is_by_file_seeded_and_complete():
    keys = [f"song{i:02d}.mid" for i in range(40)]
    split = ds.split_by_file(keys, validation_fraction=0.1, test_fraction=0.2, seed=3)
    assert (len(split["train"]), len(split["validation"]), len(split["test"])) == (28, 4, 8)
    assert sorted(split["train"] + split["validation"] + split["test"]) == keys
    assert ds.split_by_file(keys, validation_fraction=0.1, test_fraction=0.2, seed=3) == split
    assert ds.split_by_file(keys, validation_fraction=0.1, test_fraction=0.2, seed=4) != split
    small = ds.split_by_file(keys[:3], validation_fraction=0.1, test_fraction=0.1, seed=0)
    assert [len(small[p]) for p in ("train", "validation", "test")] == [1, 1, 1]


def _mixed_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mixed"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        random_song(folder / f"good{i}.mid", rng, 40)
    write_song(folder / "short.mid", [(0.0, 0.5, 60, 100), (0.5, 0.5, 62, 90), (1.0, 0.5, 64, 80)])
    (folder / "text.mid").write_text("hello, I am not music")
    (folder / "empty.mid").write_bytes(b"")
    (folder / "truncated.mid").write_bytes((folder / "good0.mid").read_bytes()[:60])
    (folder / "folder.mid").mkdir()
    return folder


def test_encoding_skips_bad_files_with_reasons_and_keeps_the_rest(tmp_path):
    folder = _mixed_folder(tmp_path)
    files = ds.resolve_dataset(str(folder), tmp_path / "data")
    encoded = ds.encode_dataset(files, NoteMatrix(), tmp_path / "data", min_steps=51, progress=False)
    assert sorted(encoded.arrays) == ["good0.mid", "good1.mid", "good2.mid"]
    assert encoded.total_files == 8
    reasons = encoded.skipped
    assert set(reasons) == {"short.mid", "text.mid", "empty.mid", "truncated.mid", "folder.mid"}
    assert "too short: 6 steps" in reasons["short.mid"]
    assert "not a MIDI file" in reasons["text.mid"]
    assert "empty" in reasons["empty.mid"]
    assert "truncated" in reasons["truncated.mid"]
    assert "directory" in reasons["folder.mid"]
    report = tmp_path / "skipped.txt"
    ds.write_skip_report(report, reasons)
    lines = report.read_text().splitlines()
    assert len(lines) == 5 and all("\t" in line for line in lines)


def test_second_encoding_reads_the_cache_and_parses_nothing(tmp_path, monkeypatch):
    folder = _mixed_folder(tmp_path)
    files = ds.resolve_dataset(str(folder), tmp_path / "data")
    first = ds.encode_dataset(files, NoteMatrix(), tmp_path / "data", min_steps=51, progress=False)

    def no_parsing(self, path):
        if Path(path).is_file():  # a folder named .mid has no content to cache
            raise AssertionError(f"parsed {path} again")
        return original_encode(self, path)

    original_encode = NoteMatrix.encode

    monkeypatch.setattr(NoteMatrix, "encode", no_parsing)
    second = ds.encode_dataset(files, NoteMatrix(), tmp_path / "data", min_steps=51, progress=False)
    assert second.skipped == first.skipped
    for key, array in first.arrays.items():
        np.testing.assert_array_equal(second.arrays[key], array)
    # Other constants are another cache: this one must parse.
    with pytest.raises(AssertionError, match="parsed"):
        ds.encode_dataset(files, NoteMatrix(time_scale_seconds=0.5), tmp_path / "data", progress=False)


def test_files_over_a_limit_are_skipped_but_not_cached(tmp_path, monkeypatch):
    folder = tmp_path / "songs"
    folder.mkdir()
    random_song(folder / "long.mid", np.random.default_rng(0), 60)
    files = ds.resolve_dataset(str(folder), tmp_path / "data")
    monkeypatch.setenv("NOTE_MATRIX_MAX_EVENTS", "50")
    limited = ds.encode_dataset(files, NoteMatrix(), tmp_path / "data", progress=False)
    assert "more than 50 events (NOTE_MATRIX_MAX_EVENTS)" in limited.skipped["long.mid"]
    monkeypatch.delenv("NOTE_MATRIX_MAX_EVENTS")
    assert list(ds.encode_dataset(files, NoteMatrix(), tmp_path / "data", progress=False).arrays) == ["long.mid"]


def test_windows_do_not_copy_the_data_or_cross_songs():
    songs = [np.full((n, 3), i, dtype=np.float32) + np.arange(n, dtype=np.float32)[:, None] / 1000 for i, n in
             enumerate([60, 51, 50, 75])]
    index = WindowIndex(songs, window_length=50)
    assert len(index) == 10 + 1 + 0 + 25
    assert index.data.nbytes == sum(s.nbytes for s in songs)  # the data once, not 50 times
    assert index.starts.dtype == np.int64
    x, y = index.batch(np.arange(len(index)))
    assert x.shape == (36, 50, 3) and y.shape == (36, 3)
    # Every window and its target come from one song (the song number is the integer part).
    assert np.all(np.floor(x[:, :, 0]) == np.floor(y[:, None, 0]))
    np.testing.assert_array_equal(x[10], songs[1][:50])
    np.testing.assert_array_equal(y[10], songs[1][50])


def test_window_batches_cover_every_window_once_per_epoch():
    songs = [np.random.default_rng(0).random((300, 3), dtype=np.float32)]
    batches = WindowBatches(WindowIndex(songs, 50), batch_size=64, shuffle=True, seed=0)
    assert len(batches) == 4
    seen = np.concatenate([batches[i][1] for i in range(len(batches))])
    assert sorted(map(tuple, seen)) == sorted(map(tuple, songs[0][50:]))
    first_order = batches[0][1].copy()
    batches.on_epoch_end()
    assert not np.array_equal(batches[0][1], first_order)


# -- registered datasets and the mirror ---------------------------------------------


def test_registry_lists_the_pop_and_nottingham_files():
    assert ds.registered_datasets() == ["jsb", "musedata", "nottingham", "nottingham-abc", "nottingham-poly", "piano-midi", "pop"]
    pop = ds.load_registry("pop")
    assert len(pop["files"]) == 126
    assert pop["url_pattern"].startswith("https://raw.githubusercontent.com/dshieble/Musical_Matrices/8195f22")
    assert len(ds.load_registry("nottingham")["files"]) == 1034
    assert all(len(sha) == 64 for sha in pop["files"].values())


@pytest.mark.parametrize("name, count", [("pop", 126), ("nottingham", 1034)])
def test_mirror_matches_the_registry_and_lands_in_the_data_folder(mirror, monkeypatch, tmp_path, name, count):
    monkeypatch.setenv(ds.MIRROR_ENV, str(mirror))
    files = ds.resolve_dataset(name, tmp_path / "data")
    assert len(files.keys) == count and files.skipped == {}
    assert files.root == tmp_path / "data" / name  # copied where a download puts them
    assert sorted(p.relative_to(files.root).as_posix() for p in files.root.rglob("*")) == files.keys
    monkeypatch.setattr(download, "copy_verified", lambda *args: pytest.fail("copied a verified file again"))
    assert ds.resolve_dataset(name, tmp_path / "data").keys == files.keys


def test_the_readme_s_seed_path_exists_after_resolving_pop_from_the_mirror(mirror, monkeypatch, tmp_path):
    monkeypatch.setenv(ds.MIRROR_ENV, str(mirror))
    monkeypatch.chdir(tmp_path)
    ds.resolve_dataset("pop", Path("data"))  # train.py's default --data-dir
    seed = Path("data/pop/Roar - Verse.midi")
    assert seed.read_bytes() == (mirror / "pop" / "Roar - Verse.midi").read_bytes()


# -- the manifest and the pack: warm runs -----------------------------------------------


def _old_songs(folder: Path, count: int) -> Path:
    """``count`` songs whose modification time is long past (so the manifest may trust them)."""
    folder.mkdir()
    rng = np.random.default_rng(11)
    long_ago = 1_600_000_000 * 10**9
    for i in range(count):
        random_song(folder / f"song{i}.mid", rng, 40 + 10 * i)
        os.utime(folder / f"song{i}.mid", ns=(long_ago, long_ago))
    return folder


def test_a_warm_run_trusts_unchanged_files_by_stat_and_reads_changed_ones(tmp_path, monkeypatch):
    folder = _old_songs(tmp_path / "songs", 4)
    files = ds.resolve_dataset(str(folder), tmp_path / "data")
    first = ds.encode_dataset(files, NoteMatrix(), tmp_path / "data", progress=False)
    assert (first.parsed_files, first.hashed_files) == (4, 4)

    def forbidden(*args, **kwargs):
        raise AssertionError("an unchanged file was read")

    with monkeypatch.context() as patch:
        patch.setattr(encode_file, "file_sha256", forbidden)
        patch.setattr(NoteMatrix, "encode", forbidden)
        warm = ds.encode_dataset(files, NoteMatrix(), tmp_path / "data", progress=False)
    assert (warm.parsed_files, warm.hashed_files) == (0, 0)
    for key, array in first.arrays.items():
        np.testing.assert_array_equal(warm.arrays[key], array)

    # Same size, and the modification time put back: the changed ctime still gives it away.
    path = folder / "song2.mid"
    before = path.stat()
    data = bytearray(path.read_bytes())
    offset = data.index(b"\x90", data.index(b"MTrk", data.index(b"MTrk") + 8))  # the first note-on of the notes
    data[offset + 1] = (data[offset + 1] + 1) % 128  # one semitone higher
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    changed = ds.encode_dataset(files, NoteMatrix(), tmp_path / "data", progress=False)
    assert (changed.parsed_files, changed.hashed_files) == (1, 1)
    np.testing.assert_array_equal(changed.arrays["song2.mid"], NoteMatrix().encode(path).steps)
    assert not np.array_equal(changed.arrays["song2.mid"], first.arrays["song2.mid"])


def test_arrays_are_read_only_views_of_one_pack_unless_the_cache_is_off(tmp_path):
    folder = _old_songs(tmp_path / "songs", 3)
    files = ds.resolve_dataset(str(folder), tmp_path / "data")
    encoded = ds.encode_dataset(files, NoteMatrix(), tmp_path / "data", progress=False)
    arrays = list(encoded.arrays.values())
    assert all(a.base is arrays[0].base and not a.flags.writeable for a in arrays)
    mapped = arrays[0].base.base
    assert isinstance(mapped, np.memmap)
    pack = np.load(mapped.filename, allow_pickle=False)
    np.testing.assert_array_equal(pack, np.concatenate(arrays))  # back to back, in key order

    uncached = ds.encode_dataset(files, NoteMatrix(), tmp_path / "elsewhere", use_cache=False, progress=False)
    assert not (tmp_path / "elsewhere").exists()
    for key, array in encoded.arrays.items():
        assert type(uncached.arrays[key]) is np.ndarray
        np.testing.assert_array_equal(uncached.arrays[key], array)


def test_a_damaged_manifest_pack_or_cache_entry_is_not_trusted(tmp_path):
    folder = _old_songs(tmp_path / "songs", 3)
    data_dir = tmp_path / "data"
    files = ds.resolve_dataset(str(folder), data_dir)
    first = ds.encode_dataset(files, NoteMatrix(), data_dir, progress=False)
    (manifest,) = data_dir.glob("cache/*/datasets/*.json")

    def again() -> ds.EncodedDataset:
        encoded = ds.encode_dataset(files, NoteMatrix(), data_dir, progress=False)
        assert encoded.skipped == {}
        for key, array in first.arrays.items():
            np.testing.assert_array_equal(encoded.arrays[key], array)
        return encoded

    manifest.write_text('{"format": 1, "files": [')  # torn
    assert (again().hashed_files, again().hashed_files) == (3, 0)  # read once, then trusted again
    (pack,) = data_dir.glob("cache/*/datasets/*.npy")
    pack.unlink()
    assert again().parsed_files == 0  # rebuilt from the content cache
    manifest.unlink()
    for entry in data_dir.glob("cache/*/*.npy"):
        entry.write_bytes(entry.read_bytes()[:-4])  # a torn cache entry is encoded again
    assert again().parsed_files == 3


def test_a_file_changed_while_it_is_read_is_not_cached(tmp_path, monkeypatch):
    folder = _old_songs(tmp_path / "songs", 2)
    files = ds.resolve_dataset(str(folder), tmp_path / "data")
    original_encode = NoteMatrix.encode

    def rewritten_meanwhile(self, path):
        if Path(path).name == "song1.mid":
            random_song(Path(path), np.random.default_rng(99), 70)  # after it was hashed, before it is parsed
        return original_encode(self, path)

    with monkeypatch.context() as patch:
        patch.setattr(NoteMatrix, "encode", rewritten_meanwhile)
        racing = ds.encode_dataset(files, NoteMatrix(), tmp_path / "data", progress=False)
    assert racing.skipped == {"song1.mid": "the file changed while it was read; encode again"}
    assert len(list((tmp_path / "data").glob("cache/*/*.npy"))) == 1  # song0 only
    again = ds.encode_dataset(files, NoteMatrix(), tmp_path / "data", progress=False)
    assert again.skipped == {} and again.parsed_files == 1
    np.testing.assert_array_equal(again.arrays["song1.mid"], NoteMatrix().encode(folder / "song1.mid").steps)
