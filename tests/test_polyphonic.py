"""The polyphonic benchmarks' ``.mat`` files (``datasets.polyphonic``): splits read, every
malformed file refused with one line naming it, and the mirror's JSB Chorales as it is."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from note_matrix.datasets.polyphonic import BenchmarkFileError, read_benchmark
from note_matrix.errors import DatasetError
from note_matrix.representations.piano_roll import KEYS, PianoRoll


def cells(*pieces) -> np.ndarray:
    """A MATLAB cell array (a row of objects) of the pieces as they are."""
    cells = np.empty((1, len(pieces)), object)
    for index, piece in enumerate(pieces):
        cells[0, index] = piece
    return cells


def _roll(frames: int, *keys: int) -> np.ndarray:
    roll = np.zeros((frames, KEYS), np.uint8)
    roll[:, list(keys)] = 1
    return roll


def _write(path, **variables):
    scipy.io.savemat(path, variables)
    return path


def test_splits_are_read_piece_by_piece(tmp_path):
    path = _write(
        tmp_path / "tiny.mat",
        traindata=cells(_roll(3, 0, 87), _roll(1, 39)),
        validdata=cells(_roll(2, 40)),
        testdata=cells(_roll(4), _roll(5, 1), _roll(1, 2)),
    )
    splits = read_benchmark(path)
    assert list(splits) == ["train", "validation", "test"]
    assert [piece.shape for piece in splits["train"]] == [(3, KEYS), (1, KEYS)]
    assert [len(splits["validation"]), len(splits["test"])] == [1, 3]
    assert splits["train"][0].dtype == np.uint8 and np.flatnonzero(splits["train"][0][0]).tolist() == [0, 87]
    encoded = PianoRoll.encode_roll(splits["validation"][0])  # the representation's steps, as from MIDI
    assert encoded.steps.dtype == np.float32 and encoded.steps[:, 40].tolist() == [1.0, 1.0]


def test_the_test_split_may_be_absent(tmp_path):
    path = _write(tmp_path / "mirror.mat", traindata=cells(_roll(2, 3)), validdata=cells(_roll(2, 4)))
    assert list(read_benchmark(path)) == ["train", "validation"]


@pytest.mark.parametrize(
    "variables, reason",
    [
        ({"traindata": cells(_roll(2))}, r"no 'validdata' \(the validation split\)"),
        ({"validdata": cells(_roll(2))}, r"no 'traindata' \(the train split\)"),
        ({"traindata": np.ones((3, KEYS)), "validdata": cells(_roll(2))}, "traindata is not a non-empty cell array"),
        ({"traindata": cells(_roll(2)), "validdata": np.empty((1, 0), object)}, "validdata is not a non-empty cell"),
        (
            {"traindata": cells(_roll(2), np.zeros((3, 87))), "validdata": cells(_roll(2))},
            r"traindata piece 1 is not a \(frames, 88\) piano roll \(shape \(3, 87\)\)",
        ),
        ({"traindata": cells(_roll(2)), "validdata": cells(np.zeros((0, KEYS)))}, "validdata piece 0 has no frames"),
        (
            {
                "traindata": cells(_roll(2)),
                "validdata": cells(_roll(2)),
                "testdata": cells(_roll(1), 2 * _roll(2, 5)),
            },
            "testdata piece 1 holds values other than 0 and 1",
        ),
        ({"traindata": cells("C major"), "validdata": cells(_roll(2))}, "traindata piece 0 is not a"),
        ({"traindata": cells(cells(_roll(2))), "validdata": cells(_roll(2))}, "traindata piece 0 is not a"),
    ],
)
def test_a_malformed_file_is_one_line_naming_it(tmp_path, variables, reason):
    path = _write(tmp_path / "bad.mat", **variables)
    with pytest.raises(BenchmarkFileError, match=reason) as error:
        read_benchmark(path)
    assert isinstance(error.value, DatasetError) and error.value.path == str(path)
    assert str(error.value).startswith(f"{path}: ") and "\n" not in str(error.value)


@pytest.mark.parametrize("content", [b"", b"not a MATLAB file at all" * 20, b"MATLAB 5.0 MAT-file" + bytes(200)])
def test_bytes_that_are_not_a_mat_file_are_one_line(tmp_path, content):
    path = tmp_path / "junk.mat"
    path.write_bytes(content)
    with pytest.raises(BenchmarkFileError, match=r"junk\.mat: not a readable MATLAB file \(.+\)$") as error:
        read_benchmark(path)
    assert "\n" not in str(error.value)


def test_a_missing_file_or_a_folder_is_one_line(tmp_path):
    with pytest.raises(BenchmarkFileError, match=r"nowhere\.mat: no such file$"):
        read_benchmark(tmp_path / "nowhere.mat")
    with pytest.raises(BenchmarkFileError, match="not a regular file"):
        read_benchmark(tmp_path)


def test_the_mirrors_jsb_chorales(mirror):
    """The mirror's copy as SOURCES.md describes it: train and validation only, quarter-note
    frames of the 88 keys; sizes counted from the file itself."""
    splits = read_benchmark(mirror / "polyphonic" / "JSB_Chorales.mat")
    assert list(splits) == ["train", "validation"]
    assert [len(splits["train"]), len(splits["validation"])] == [229, 76]
    assert [sum(len(piece) for piece in splits[name]) for name in ("train", "validation")] == [13807, 4602]
    frames = np.concatenate(splits["train"] + splits["validation"])
    assert frames.shape[1] == KEYS and frames.sum(axis=1).max() == 4  # four voices
    sounding = np.flatnonzero(frames.any(axis=0)) + 21
    assert (sounding.min(), sounding.max()) == (43, 96)  # G2 to C7: column 0 is MIDI 21
