"""Two processes sharing one ``--data-dir`` at once: both finish, and what they leave is right.

Each child process says "ready", waits for a line on stdin, then works, so the two
overlap: the races that once made one of two trainings die with FileNotFoundError.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from note_matrix import NoteMatrix
from note_matrix import datasets as ds
from tests.test_datasets import _old_songs

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 100

# argv: folder, data dir, first key, rounds. Encodes three files of the folder ``rounds``
# times, checking every array against a fresh parse.
_PREPARE = """
import sys
from pathlib import Path
import numpy as np
from note_matrix import NoteMatrix
from note_matrix import datasets as ds

folder, data_dir, first, rounds = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
files = ds.resolve_dataset(str(folder), data_dir)
files.keys = files.keys[first : first + 3]
expected = {key: NoteMatrix().encode(files.path(key)).steps for key in files.keys}
print("ready", flush=True)
sys.stdin.readline()
for _ in range(rounds):
    encoded = ds.encode_dataset(files, NoteMatrix(), data_dir, progress=False)
    assert sorted(encoded.arrays) == sorted(expected), encoded.skipped
    for key, array in encoded.arrays.items():
        np.testing.assert_array_equal(array, expected[key])
"""

# argv: registry folder, data dir. Resolves the registered dataset "fake" from the mirror.
_RESOLVE = """
import sys
from pathlib import Path
from note_matrix.datasets import resolve

resolve.REGISTRY_DIR = Path(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
files = resolve.resolve_dataset("fake", Path(sys.argv[2]))
assert files.skipped == {}, files.skipped
"""


def _together(snippet: str, *argvs: list[str]) -> None:
    """Run ``snippet`` in one process per argv, all starting their work at once; each must succeed."""
    processes = [subprocess.Popen([sys.executable, "-c", snippet, *argv], cwd=ROOT, text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for argv in argvs]
    for process in processes:
        assert process.stdout.readline() == "ready\n", process.communicate()[1]
    for process in processes:
        process.stdin.write("go\n")
        process.stdin.flush()
    errors = [process.communicate(timeout=120)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * len(processes), "\n".join(errors)


def test_two_processes_preparing_one_data_dir_both_finish(tmp_path):
    # Each encodes another part of the folder over and over, so every round finds the
    # manifest the other wrote, writes a pack of its own and removes the other's.
    folder = _old_songs(tmp_path / "songs", 5)
    data_dir = tmp_path / "data"
    _together(_PREPARE, *([str(folder), str(data_dir), str(first), str(ROUNDS)] for first in (0, 2)))

    files = ds.resolve_dataset(str(folder), data_dir)
    encoded = ds.encode_dataset(files, NoteMatrix(), data_dir, progress=False)
    assert encoded.skipped == {} and encoded.parsed_files == 0  # every file came from the cache
    for key, array in encoded.arrays.items():
        np.testing.assert_array_equal(array, NoteMatrix().encode(folder / key).steps)
    packs = list(data_dir.glob("cache/*/datasets/*.npy"))
    assert len(packs) == 1  # the packs of the rounds before were removed


def test_two_processes_copying_one_dataset_from_the_mirror_both_finish(tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    songs = {f"song{i:02d}.mid": rng.bytes(200_000) for i in range(20)}
    source = tmp_path / "mirror" / "fake"
    source.mkdir(parents=True)
    for name, data in songs.items():
        (source / name).write_bytes(data)
    registry = {"name": "fake", "mirror_subdir": "fake", "url_pattern": "http://127.0.0.1:9/{name}",
                "files": {name: hashlib.sha256(data).hexdigest() for name, data in songs.items()}}
    (tmp_path / "registry").mkdir()
    (tmp_path / "registry" / "fake.json").write_text(json.dumps(registry))
    monkeypatch.setenv(ds.MIRROR_ENV, str(tmp_path / "mirror"))
    data_dir = tmp_path / "data"
    _together(_RESOLVE, *([str(tmp_path / "registry"), str(data_dir)] for _ in range(2)))
    assert sorted(p.name for p in (data_dir / "fake").iterdir()) == sorted(songs)  # no .part left
    assert all((data_dir / "fake" / name).read_bytes() == data for name, data in songs.items())
