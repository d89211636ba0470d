"""``train.py --transpose N``: each piano-roll training window and its targets shifted
together by up to N semitones (``note_matrix.training.windows.transposed``), never a
sounding key off the keyboard, the same batches again for the same (seed, epoch)."""

from __future__ import annotations

import numpy as np
import pytest

import train
from note_matrix.training.windows import WindowBatches, WindowIndex, transposed

KEYS = 88


def _songs(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    songs = []
    for length, (low, high) in zip((40, 52, 33), ((30, 50), (0, 6), (80, 88))):  # the last two touch the edges
        roll = np.zeros((length, KEYS), np.float32)
        roll[:, low:high] = rng.random((length, high - low)) < 0.3
        songs.append(roll)
    return songs


def _shift_of(original: np.ndarray, shifted: np.ndarray) -> int:
    """The one shift along the keys that turns ``original`` into ``shifted`` (an error if none does)."""
    matches = [s for s in range(-KEYS // 2, KEYS // 2) if np.array_equal(np.roll(original, s, axis=-1), shifted)]
    assert matches, "not a shift of the original"
    return matches[0] if original.any() else 0


def test_each_window_and_its_targets_shift_together_and_no_key_leaves_the_keyboard():
    songs = _songs()
    index = WindowIndex(songs, 8)
    plain = WindowBatches(index, 4, shuffle=True, seed=3, targets="all", layout="chunks")
    moved = WindowBatches(index, 4, shuffle=True, seed=3, targets="all", layout="chunks", transpose=5)
    shifts = []
    for number in range(len(plain)):
        (x, y), (tx, ty) = plain[number], moved[number]
        for i in range(len(x)):
            shift = _shift_of(np.concatenate([x[i], y[i]]), np.concatenate([tx[i], ty[i]]))
            assert -5 <= shift <= 5
            assert tx[i].sum() == x[i].sum() and ty[i].sum() == y[i].sum()  # nothing rolled off an edge
            keys = np.flatnonzero((x[i] > 0).any(axis=0) | (y[i] > 0).any(axis=0))
            assert 0 <= keys.min() + shift and keys.max() + shift < KEYS
            shifts.append(shift)
    assert len(set(shifts)) > 3 and any(s > 0 for s in shifts) and any(s < 0 for s in shifts)
    # the same (seed, epoch) gives the same batches; the next epoch other shifts
    again = WindowBatches(index, 4, shuffle=True, seed=3, targets="all", layout="chunks", transpose=5)
    np.testing.assert_array_equal(again[0][0], moved[0][0])
    np.testing.assert_array_equal(again[0][1], moved[0][1])
    moved.set_epoch(1)
    plain.set_epoch(1)
    assert not all(np.array_equal(moved[n][0], plain[n][0]) for n in range(len(plain)))


def test_a_window_at_an_edge_shifts_only_inward():
    x = np.zeros((50, 4, KEYS), np.float32)
    x[:, :, 86], x[:, :, 2] = 1, 1  # keys 2 to 86: at most 2 down and 1 up
    y = x[:, -1].copy()  # targets="last": (batch, keys)
    tx, ty = transposed(x, y, 12, np.random.default_rng(0))
    shifts = {_shift_of(x[i], tx[i]) for i in range(len(x))}
    assert shifts == {-2, -1, 0, 1}
    assert all(_shift_of(y[i], ty[i]) == _shift_of(x[i], tx[i]) for i in range(len(x)))
    assert x[:, :, 86].all()  # the inputs are left as they were


def test_transpose_is_refused_where_it_cannot_apply(tmp_path, capsys):
    index = WindowIndex([np.arange(40, dtype=np.int32)[:, None]], 8)  # tokens, not keys
    with pytest.raises(ValueError, match="multi-hot steps, or of tokens with key_tokens"):
        WindowBatches(index, 4, shuffle=True, transpose=2)
    shifted = WindowBatches(index, 4, shuffle=True, transpose=2, key_tokens=30)[0][0]  # ids below 30 are keys
    assert np.all(shifted[shifted >= 30] < 40)  # the rest never move
    songs = tmp_path / "songs"
    songs.mkdir()
    from tests.midi_factory import random_song

    for n in range(3):
        random_song(songs / f"s{n}.mid", np.random.default_rng(n), 60)
    argv = ["--dataset", str(songs), "--data-dir", str(tmp_path / "data"), "--logdir", str(tmp_path / "logs"),
            "--units", "8", "--epochs", "1", "--window", "10", "--transpose", "3", "--quiet"]
    assert train.main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        "train.py: error: --transpose shifts the keys of a piano roll; note_matrix reads continuous steps "
        "(use --representation piano_roll or roll_tokens)")
    assert train.main([*argv[:-2], "13"]) == 2
    assert "transpose must lie in 0..12 semitones, got 13" in capsys.readouterr().err
