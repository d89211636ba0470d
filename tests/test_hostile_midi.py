"""Hostile and awkward MIDI files, built in code: each has one defined outcome.

Refused files raise ``MidiError`` with a message naming the file and the reason; loaded
ones give the notes described here. The README's "Robustness" table lists the same.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from note_matrix import MidiError, NoteMatrixError, midi_to_matrix
from note_matrix.midi import MidiLimitError, ReadLimits, read_midi
from tests.midi_factory import long_vlq, smf, tempo_event, track_chunk, vlq

NOTE = [(0, b"\x90\x3c\x64"), (480, b"\x80\x3c\x00")]  # C4 for one beat
GOOD = smf([track_chunk([(0, tempo_event(500_000)), *NOTE])], fmt=0)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


REFUSED = {
    "empty": (b"", "empty file"),
    "plain text": (b"X:1\nT:A tune\nK:G\n|:GAB c2d|\n", "not a MIDI file (no MThd header)"),
    "random bytes": (np.random.default_rng(0).bytes(300), "not a MIDI file"),
    "wav renamed": (b"RIFF\x24\x08\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x02\x00", "RIFF container"),
    "truncated header": (GOOD[:10], "truncated header (10 bytes"),
    "header length too small": (b"MThd\x00\x00\x00\x02\x00\x00" + GOOD[14:], "invalid header length 2"),
    "truncated track": (GOOD[:-5], f"truncated: track chunk 0 declares {len(GOOD) - 22} bytes, only {len(GOOD) - 27} "),
    "track length past end of file": (
        GOOD[:18] + struct.pack(">I", 10_000) + GOOD[22:], "track chunk 0 declares 10,000 bytes"),
    "track shorter than its events": (
        GOOD[:18] + struct.pack(">I", 9) + GOOD[22:], "track 0: an event runs past the end of its track chunk"),
    "header announces more tracks": (
        GOOD[:10] + struct.pack(">H", 3) + GOOD[12:], "announces 3 tracks, the file ends after 1"),
    "bad status byte": (smf([track_chunk([(0, b"\xf4\x00")])], fmt=0), "undefined status byte 0xf4"),
    "data byte without running status": (
        smf([track_chunk([(0, b"\x3c\x64")])], fmt=0), "running status with nothing to run on"),
    "data byte over 127": (smf([track_chunk([(0, b"\x90\x3c\xc8")])], fmt=0), "data byte must be in range"),
    "garbage between chunks": (
        GOOD[:10] + struct.pack(">H", 2) + GOOD[12:] + b"\x00\x01\x02\x03\x04\x05\x06\x07" + GOOD[14:],
        f"no chunk at byte {len(GOOD)} (found b'\\x00\\x01\\x02\\x03'): corrupt file"),
    "unknown format": (GOOD[:8] + struct.pack(">H", 7) + GOOD[10:], "unknown MIDI format 7"),
    "time division zero": (GOOD[:12] + b"\x00\x00" + GOOD[14:], "invalid time division 0"),
    "bad SMPTE rate": (GOOD[:12] + struct.pack(">H", 0xE928) + GOOD[14:], "invalid SMPTE time division 0xe928"),
    "type 2": (smf([track_chunk(NOTE)] * 2, fmt=2), "type 2 MIDI"),
    "invalid key signature": (smf([track_chunk([(0, b"\xff\x59\x02\x09\x00"), *NOTE])], fmt=0), "key with 9 sharps"),
    # Variable-length numbers over the standard's 4 bytes, even where their value is small.
    "delta time of 9 bytes": (smf([track_chunk([NOTE[0], (b"\xff" * 8 + b"\x7f", b"\x80\x3c\x00")])], fmt=0),
                              "track 0: variable-length number of 9 bytes (the standard allows 4)"),
    "delta time past int64": (smf([track_chunk([NOTE[0], (b"\xff" * 9 + b"\x7f", b"\x80\x3c\x00")])], fmt=0),
                              "track 0: variable-length number of 10 bytes (the standard allows 4)"),
    "delta time of 5 bytes, small value": (smf([track_chunk([NOTE[0], (long_vlq(480, 5), b"\x80\x3c\x00")])], fmt=0),
                                           "track 0: variable-length number of 5 bytes"),
    "meta length of 5 bytes": (smf([track_chunk([(0, b"\xff\x03" + long_vlq(5, 5) + b"piano"), *NOTE])], fmt=0),
                               "track 0: variable-length number of 5 bytes"),
    "meta length past its track": (smf([track_chunk([(0, b"\xff\x01" + vlq(0x0FFFFFFF) + b"abc")])], fmt=0),
                                   "track 0: an event declares 268,435,455 data bytes, only 7 remain in its track"),
    "sysex length past its track": (smf([track_chunk([(0, b"\xf0" + vlq(1000) + b"\x7e\xf7")])], fmt=0),
                                    "track 0: an event declares 1,000 data bytes, only 6 remain in its track"),
    "tempo of 0": (smf([track_chunk([*NOTE, (0, tempo_event(0)), *NOTE])], fmt=0),
                   "track 0: a tempo of 0 microseconds per beat at tick 480"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_with_a_reason(name, tmp_path):
    data, reason = REFUSED[name]
    path = write(tmp_path, "hostile.mid", data)
    with pytest.raises(MidiError) as error:
        midi_to_matrix(path)
    assert str(error.value).startswith(f"{path}: ")
    assert reason in error.value.reason


def test_directory_named_mid_and_unreadable_file(tmp_path, monkeypatch):
    (tmp_path / "folder.mid").mkdir()
    with pytest.raises(MidiError, match="is a directory"):
        midi_to_matrix(tmp_path / "folder.mid")
    locked = write(tmp_path, "locked.mid", GOOD)
    if os.geteuid() == 0:  # root reads anything: simulate the refusal
        real = os.open
        monkeypatch.setattr(os, "open", lambda file, *args: (_ for _ in ()).throw(
            PermissionError(13, "Permission denied")) if Path(file) == locked else real(file, *args))
    else:
        locked.chmod(0)
    with pytest.raises(MidiError, match="permission denied"):
        midi_to_matrix(locked)


def test_huge_delta_time_beyond_representation_is_refused(tmp_path):
    # 0x0FFFFFFF ticks (the largest delta) at 480 per beat, 120 bpm: 77 hours.
    path = write(tmp_path, "huge.mid", smf([track_chunk([(0, b"\x90\x3c\x64"), (0x0FFFFFFF, b"\x80\x3c\x00")])], fmt=0))
    assert read_midi(path).time_seconds[-1] == pytest.approx(0x0FFFFFFF / 960)
    with pytest.raises(MidiError, match="too long for the time column"):
        midi_to_matrix(path)


# -- valid but awkward: loaded -----------------------------------------------------


def test_zero_tracks_no_notes_and_drums_only_load_empty(tmp_path):
    zero = write(tmp_path, "zero.mid", smf([], fmt=1))
    silent = write(tmp_path, "silent.mid", smf([track_chunk([(0, tempo_event(500_000))])], fmt=0))
    drums = write(tmp_path, "drums.mid", smf([track_chunk([(0, b"\x99\x24\x7f"), (100, b"\x89\x24\x00")])], fmt=0))
    for path in (zero, silent, drums):
        assert midi_to_matrix(path).shape == (0, 3)
    assert read_midi(drums).dropped["drum_messages"] == 2


def test_notes_never_released_are_kept_as_they_are(tmp_path):
    path = write(tmp_path, "hanging.mid", smf([track_chunk([(0, b"\x90\x3c\x64"), (10, b"\x90\x40\x50")])], fmt=0))
    matrix = midi_to_matrix(path)
    assert matrix.shape == (2, 3) and np.all(matrix[:, 1] > 0)


def test_huge_but_representable_delta_loads(tmp_path):
    delta = 60 * 960  # one minute of silence
    path = write(tmp_path, "pause.mid", smf([track_chunk([*NOTE, (delta, b"\x90\x3e\x64"), (480, b"\x80\x3e\x00")])],
                                            fmt=0))
    assert read_midi(path).time_seconds[2] == pytest.approx(60.5)
    assert midi_to_matrix(path).shape == (4, 3)


def test_sixty_four_tracks_merge(tmp_path):
    tracks = [track_chunk([(i, bytes([0x90 | (i % 9), i, 100])), (480, bytes([0x80 | (i % 9), i, 0]))])
              for i in range(64)]
    notes = read_midi(write(tmp_path, "many.mid", smf(tracks, fmt=1)))
    assert len(notes) == 128 and sorted(set(notes.pitch.tolist())) == list(range(64))
    assert np.all(np.diff(notes.time_seconds) >= 0)


def test_extreme_pitches_velocity_zero_running_status_smpte(tmp_path):
    smpte = ((256 - 30) << 8) | 4  # 30 fps, 4 ticks per frame
    events = [(0, b"\x90\x00\x01"), (0, b"\x7f\x7f"), (12, b"\x00\x00"), (0, b"\x7f\x00")]
    notes = read_midi(write(tmp_path, "edges.mid", smf([track_chunk(events)], fmt=0, division=smpte)))
    assert notes.pitch.tolist() == [0, 127, 0, 127] and notes.velocity.tolist() == [1, 127, 0, 0]
    assert notes.time_seconds[2] == pytest.approx(0.1)


def test_trailing_garbage_and_unknown_chunks_are_skipped(tmp_path):
    alien = b"XFIH" + struct.pack(">I", 4) + b"\x01\x02\x03\x04"
    data = GOOD[:14] + alien + GOOD[14:] + b"garbage after the last track\x00\xff"
    notes = read_midi(write(tmp_path, "trailing.mid", data))
    assert notes.pitch.tolist() == [60, 60] and notes.dropped["trailing_bytes"] == 30


def test_header_longer_than_six_bytes_is_accepted(tmp_path):
    data = b"MThd" + struct.pack(">IHHH", 8, 0, 1, 480) + b"\x00\x00" + GOOD[14:]
    assert len(read_midi(write(tmp_path, "long_header.mid", data))) == 2


# -- limits ------------------------------------------------------------------------


def test_file_size_limit_refuses_before_reading(tmp_path, monkeypatch):
    path = write(tmp_path, "big.mid", GOOD + b"\x00" * 2000)
    monkeypatch.setenv("NOTE_MATRIX_MAX_FILE_BYTES", "1000")
    monkeypatch.setattr(os, "open", lambda *args: pytest.fail("opened a file over the size limit"))
    with pytest.raises(MidiLimitError, match=f"{path.stat().st_size:,} bytes, over the 1,000-byte limit"):
        read_midi(path)


def test_event_limit_is_exact(tmp_path):
    events = [(1, b"\x90\x3c\x64"), (1, b"\x3c\x00")] * 50  # 100 events, end of track is the 101st
    path = write(tmp_path, "busy.mid", smf([track_chunk(events), track_chunk(events)], fmt=1))
    assert len(read_midi(path, ReadLimits(max_events=202))) == 200
    with pytest.raises(MidiLimitError, match="more than 201 events"):
        read_midi(path, ReadLimits(max_events=201))


def test_time_limit_stops_reading(tmp_path):
    path = write(tmp_path, "slow.mid", smf([track_chunk([(1, b"\x90\x3c\x64"), (1, b"\x3c\x00")] * 500)], fmt=0))
    with pytest.raises(MidiLimitError, match=r"reading took more than 1e-09 s"):
        read_midi(path, ReadLimits(max_seconds=1e-9))


def test_limits_from_the_environment(monkeypatch):
    monkeypatch.setenv("NOTE_MATRIX_MAX_EVENTS", "77")
    monkeypatch.setenv("NOTE_MATRIX_MAX_PARSE_SECONDS", "2.5")
    assert ReadLimits.from_env() == ReadLimits(max_events=77, max_seconds=2.5)
    monkeypatch.setenv("NOTE_MATRIX_MAX_EVENTS", "lots")
    with pytest.raises(NoteMatrixError, match="NOTE_MATRIX_MAX_EVENTS='lots' is not a number"):
        ReadLimits.from_env()


def test_vlq_helper_matches_the_standard():
    # Examples from the Standard MIDI File specification.
    assert [vlq(v) for v in (0, 0x40, 0x7F, 0x80, 0x2000, 0x3FFF, 0x4000, 0x0FFFFFFF)] == [
        b"\x00", b"\x40", b"\x7f", b"\x81\x00", b"\xc0\x00", b"\xff\x7f", b"\x81\x80\x00", b"\xff\xff\xff\x7f"]
