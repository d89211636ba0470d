"""The reader's bounds: only regular files, never more than the size cap plus one byte,
no variable-length number over 4 bytes, no length past what is left, no tempo of 0.

Each is checked where a file comes in: ``read_midi`` itself, a seed (``generate.py``), a
dataset folder and ``evaluate.py --generated``. A file that the old reader would hang
on (a FIFO) is read under an alarm, so a regression fails instead of hanging.
"""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from pathlib import Path

import mido
import numpy as np
import pytest

import generate
from note_matrix import MidiError, NoteMatrix, midi
from note_matrix import datasets as ds
from note_matrix.evaluation.generated import read_notes
from note_matrix.midi import MidiLimitError, ReadLimits, read_midi, write_midi
from tests.midi_factory import smf, tempo_event, track_chunk
from tests.test_datasets import _mixed_folder

NOTE = [(0, b"\x90\x3c\x64"), (480, b"\x80\x3c\x00")]  # C4 for one beat
GOOD = smf([track_chunk([(0, tempo_event(500_000)), *NOTE])], fmt=0)
NOT_REGULAR = "not a regular file (a pipe, socket or device); not read"
LONG_DELTA = smf([track_chunk([NOTE[0], (b"\xff" * 9 + b"\x7f", b"\x80\x3c\x00")])], fmt=0)
TEMPO_ZERO = smf([track_chunk([(0, tempo_event(0)), *NOTE])], fmt=0)


class Blocked(Exception):
    """Raised by the alarm: the read blocked (it is not an ``OSError``, so no reader hides it)."""


@contextmanager
def alarm(seconds: int = 10):
    """Interrupt the block after ``seconds``: a reader that opens a FIFO waits for a writer forever."""

    def interrupt(signum, frame):
        raise Blocked(f"still reading after {seconds} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def fifo(folder: Path, name: str = "x.mid") -> Path:
    path = folder / name
    os.mkfifo(path)
    return path


def device_link(folder: Path, device: str) -> Path:
    link = folder / f"{Path(device).name}.mid"
    link.symlink_to(device)
    return link


# -- only regular files, at most the cap plus one byte ---------------------------------


def test_a_fifo_named_mid_is_refused_without_being_opened(tmp_path):
    path = fifo(tmp_path)
    with alarm(), pytest.raises(MidiError) as error:
        read_midi(path)
    assert str(error.value) == f"{path}: {NOT_REGULAR}"


def test_links_to_devices_are_refused(tmp_path):
    # /dev/null first: the old reader took it for an empty file (and read /dev/zero until memory ran out).
    for device in ("/dev/null", "/dev/zero", "/dev/urandom"):
        with pytest.raises(MidiError) as error:
            read_midi(device_link(tmp_path, device))
        assert error.value.reason == NOT_REGULAR


def test_a_file_that_grows_after_the_size_check_is_read_no_further_than_the_cap(tmp_path, monkeypatch):
    path = tmp_path / "growing.mid"
    path.write_bytes(GOOD + b"\x00" * 200)
    real_stat = os.stat

    def stat_before_it_grew(target, *args, **kwargs):
        status = real_stat(target, *args, **kwargs)
        return os.stat_result((*status[:6], 10, *status[7:10])) if Path(target) == path else status

    monkeypatch.setattr(os, "stat", stat_before_it_grew)
    with pytest.raises(MidiLimitError) as error:
        read_midi(path, ReadLimits(max_file_bytes=100))
    assert error.value.reason == "more than 100 bytes, over the 100-byte limit (NOTE_MATRIX_MAX_FILE_BYTES)"


# -- lengths bounded before they are decoded ----------------------------------------


@pytest.mark.parametrize("where", ["delta time", "meta length"])
def test_a_500_kb_varlen_is_refused_before_it_is_decoded(where, tmp_path):
    # Decoded first, as the old reader did, this took 40 s (time quadratic in its length)
    # and then escaped as OverflowError or was refused only by mido's message size cap.
    huge = b"\xff" * 500_000 + b"\x7f"
    event = (huge, NOTE[0][1]) if where == "delta time" else (0, b"\xff\x01" + huge + b"text")
    path = tmp_path / "huge.mid"
    path.write_bytes(smf([track_chunk([event])], fmt=0))
    with pytest.raises(MidiError) as error:
        read_midi(path)
    assert error.value.reason == "track 0: variable-length number of 500,001 bytes (the standard allows 4)"


def test_ticks_past_what_float64_holds_exactly_are_refused(tmp_path, monkeypatch):
    # With 4-byte deltas only a file of tens of millions of events gets there: lower the bound to see it hold.
    monkeypatch.setattr(midi, "MAX_TICK", 1000)
    path = tmp_path / "long.mid"
    path.write_bytes(smf([track_chunk([*NOTE, (600, b"\x90\x3c\x64")])], fmt=0))
    with pytest.raises(MidiError) as error:
        read_midi(path)
    assert error.value.reason == "track 0: events up to tick 1,080, past the 1,000 a file may span"


def test_a_fast_seed_tempo_still_writes_standard_delta_times(tmp_path):
    # At 1 microsecond per beat and 960 ticks per beat, a 2 s gap would be a 5-byte delta time.
    path = tmp_path / "fast.mid"
    write_midi(path, [0.0, 2.0, 2.5], [60, 60, 62], [90, 0, 90], tempo_us_per_beat=1)
    assert max(message.time for message in mido.MidiFile(path).tracks[0]) <= 0x0FFFFFFF  # 4 bytes
    notes = read_midi(path)
    np.testing.assert_allclose(notes.time_seconds, [0.0, 2.0, 2.5], atol=1e-6)
    assert notes.tempo_us_per_beat == 1


# -- where files come in: seeds, datasets, evaluate.py --generated ------------------


@pytest.mark.parametrize("name", ["tempo zero", "long delta", "fifo", "device"])
def test_such_a_seed_gets_one_line_and_exit_2(name, trained_run, tmp_path, capsys):
    seeds = {"tempo zero": "track 0: a tempo of 0 microseconds per beat at tick 0",
             "long delta": "track 0: variable-length number of 10 bytes (the standard allows 4)",
             "fifo": NOT_REGULAR, "device": NOT_REGULAR}
    if name == "fifo":
        seed = fifo(tmp_path)
    elif name == "device":
        seed = device_link(tmp_path, "/dev/zero")
    else:
        seed = tmp_path / "seed.mid"
        seed.write_bytes(TEMPO_ZERO if name == "tempo zero" else LONG_DELTA)
    out = tmp_path / "out.mid"
    with alarm(60):
        code = generate.main(["--seed", str(seed), "--model", str(trained_run), "--out", str(out), "--quiet"])
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [f"generate.py: error: {seed}: {seeds[name]}"]
    assert not out.exists()


def test_a_dataset_skips_such_files_and_encodes_the_rest(tmp_path):
    folder = _mixed_folder(tmp_path)  # three good songs, five bad files
    (folder / "long_delta.mid").write_bytes(LONG_DELTA)
    (folder / "tempo_zero.mid").write_bytes(TEMPO_ZERO)
    files = ds.resolve_dataset(str(folder), tmp_path / "data")
    encoded = ds.encode_dataset(files, NoteMatrix(), tmp_path / "data", min_steps=51, progress=False)
    assert sorted(encoded.arrays) == ["good0.mid", "good1.mid", "good2.mid"]
    assert encoded.skipped["long_delta.mid"] == "track 0: variable-length number of 10 bytes (the standard allows 4)"
    assert encoded.skipped["tempo_zero.mid"] == "track 0: a tempo of 0 microseconds per beat at tick 0"


def test_evaluate_generated_skips_fifos_devices_and_long_varlens(tmp_path):
    good = tmp_path / "good.mid"
    good.write_bytes(GOOD)
    long_delta = tmp_path / "long_delta.mid"
    long_delta.write_bytes(LONG_DELTA)
    paths = {"good.mid": good, "x.mid": fifo(tmp_path), "zero.mid": device_link(tmp_path, "/dev/zero"),
             "long_delta.mid": long_delta}
    with alarm():
        notes, skipped = read_notes(paths)
    assert list(notes) == ["good.mid"]
    assert skipped == {"x.mid": NOT_REGULAR, "zero.mid": NOT_REGULAR,
                       "long_delta.mid": "track 0: variable-length number of 10 bytes (the standard allows 4)"}
