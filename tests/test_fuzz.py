"""Property-based fuzzing of the MIDI reader: any bytes give a valid matrix or a MidiError.

Valid files built in code are mutated (bytes flipped, inserted, deleted, duplicated,
truncated; lengths and counts in the header and chunk headers rewritten; delta times and
meta lengths spelled with 5 to 12 bytes, over the standard's 4; meta and sysex lengths
rewritten, up to the largest a variable-length number holds). Whatever comes
out, ``midi_to_matrix`` must return a ``(rows, 3)`` float32 matrix in [0, 1] or raise
``MidiError``: never another exception, never a hang. The run uses the ``ci`` profile
(2,000 examples, derandomized so CI is reproducible); ``HYPOTHESIS_PROFILE=explore``
runs 20,000 random ones.
"""

from __future__ import annotations

import os
import struct
import tempfile
import time
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from note_matrix import MidiError, NoteMatrix
from note_matrix.midi import ReadLimits, read_midi
from tests.midi_factory import smf, tempo_event, track_chunk, vlq

settings.register_profile(
    "ci", max_examples=2000, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("explore", max_examples=20000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

LIMITS = ReadLimits(max_file_bytes=1 << 20, max_events=20_000, max_seconds=2.0)

KEY_SIGNATURE = b"\xff\x59\x02\x00\x00"
TIME_SIGNATURE = b"\xff\x58\x04\x04\x02\x18\x08"
TRACK_NAME = b"\xff\x03\x05piano"
SYSEX = b"\xf0\x05\x7e\x7f\x09\x01\xf7"


def _seeds() -> list[bytes]:
    melody = track_chunk([
        (0, TRACK_NAME), (0, b"\xc0\x00"), (0, b"\x90\x3c\x64"), (0, b"\x40\x5a"), (240, b"\x3c\x00"),
        (0, b"\xe0\x00\x40"), (0, b"\xb0\x07\x64"), (120, b"\x80\x40\x00"), (0, b"\x90\x43\x50"),
        (240, b"\x43\x00"), (0, b"\x99\x24\x7f"), (10, b"\x89\x24\x00"),
    ])
    conductor = track_chunk([(0, tempo_event(500_000)), (0, TIME_SIGNATURE), (0, KEY_SIGNATURE), (480, tempo_event(400_000))])
    bass = track_chunk([(0, SYSEX), (0, b"\x91\x24\x60"), (960, b"\x81\x24\x40"), (0, b"\x91\x7f\x01"), (5, b"\x91\x7f\x00")])
    smpte = ((256 - 25) << 8) | 40
    return [
        smf([melody], fmt=0),
        smf([conductor, melody, bass], fmt=1),
        smf([conductor, bass], fmt=1, division=smpte),
        smf([melody, bass], fmt=2),
    ]


SEEDS = _seeds()
SCRATCH = Path(tempfile.mkdtemp(prefix="note-matrix-fuzz-"))


LENGTH_MUTATIONS = ["length", "varlen", "event length"]
MUTATIONS = ["flip", "insert", "delete", "duplicate", "truncate", "count", *LENGTH_MUTATIONS]


@st.composite
def mutated_midi(draw, kinds: list[str] = MUTATIONS) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(kinds))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "duplicate":
            piece = data[at : at + draw(st.integers(1, 16))]
            data[at:at] = piece
        elif kind == "truncate":
            del data[at:]
        elif kind == "length":  # rewrite a declared chunk length (header or a track)
            offsets = [i + 4 for i in range(len(data) - 7) if data[i : i + 4] in (b"MThd", b"MTrk")]
            if offsets:
                offset = draw(st.sampled_from(offsets))
                value = draw(st.one_of(st.integers(0, 64), st.integers(0, 2**32 - 1)))
                data[offset : offset + 4] = struct.pack(">I", value)
        elif kind == "count" and len(data) >= 14:  # the header's format, track count or division
            field = draw(st.sampled_from([8, 10, 12]))
            data[field : field + 2] = struct.pack(">H", draw(st.integers(0, 65535)))
        elif kind == "varlen":  # a track's first delta time or a meta length, respelled with 5-12 bytes
            offsets = _offsets(data, b"MTrk", 8) + _offsets(data, b"\xff", 2)
            if offsets:
                digits = draw(st.binary(min_size=5, max_size=12))  # 7 bits each, 0x80 on all but the last
                spelling = bytes(0x80 | d for d in digits[:-1]) + bytes([digits[-1] & 0x7F])
                _respell(data, draw(st.sampled_from(offsets)), spelling)
        elif kind == "event length":  # the declared length of a meta or sysex event
            offsets = _offsets(data, b"\xff", 2) + _offsets(data, b"\xf0", 1)
            if offsets:
                value = draw(st.one_of(st.integers(0, 127), st.integers(0, 0x0FFFFFFF)))
                _respell(data, draw(st.sampled_from(offsets)), vlq(value))
    return bytes(data)


def _offsets(data: bytearray, tag: bytes, skip: int) -> list[int]:
    """Every offset ``skip`` bytes after an occurrence of ``tag`` that lies inside ``data``."""
    return [i + skip for i in range(len(data) - skip) if data[i : i + len(tag)] == tag]


def _respell(data: bytearray, offset: int, spelling: bytes) -> None:
    """Replace the variable-length number at ``offset`` with ``spelling``, and change the declared
    length of the track chunk around it to match, so that the reader decodes it."""
    end = offset
    while end < len(data) - 1 and data[end] & 0x80:
        end += 1
    chunk = data.rfind(b"MTrk", 0, max(offset - 4, 0))
    if chunk >= 0:
        (length,) = struct.unpack_from(">I", data, chunk + 4)
        struct.pack_into(">I", data, chunk + 4, (length + len(spelling) - (end + 1 - offset)) % 2**32)
    data[offset : end + 1] = spelling


def _check(data: bytes) -> None:
    path = SCRATCH / "fuzz.mid"
    path.write_bytes(data)
    started = time.monotonic()
    try:
        notes = read_midi(path, LIMITS)
    except MidiError as error:
        assert str(error).startswith(f"{path}: ") and error.reason
        return
    finally:
        assert time.monotonic() - started < LIMITS.max_seconds + 1.0
    assert len(notes.time_seconds) == len(notes.pitch) == len(notes.velocity)
    assert np.all((notes.pitch >= 0) & (notes.pitch <= 127))
    assert np.all((notes.velocity >= 0) & (notes.velocity <= 127))
    assert np.all(np.isfinite(notes.time_seconds)) and np.all(np.diff(notes.time_seconds) >= 0)
    try:
        matrix = NoteMatrix().from_notes(notes, path)
    except MidiError:
        return  # a gap too long to represent
    assert matrix.dtype == np.float32 and matrix.shape == (len(notes), 3)
    assert np.all((matrix >= 0) & (matrix <= 1))


def test_seeds_are_valid_or_refused_as_documented():
    for data in SEEDS[:3]:
        _check(data)
        (SCRATCH / "seed.mid").write_bytes(data)
        assert len(read_midi(SCRATCH / "seed.mid", LIMITS)) > 0


@given(mutated_midi())
def test_mutated_midi_gives_a_matrix_or_a_midi_error(data):
    _check(data)


@given(mutated_midi(LENGTH_MUTATIONS))
def test_long_varlens_and_rewritten_lengths_give_a_matrix_or_a_midi_error(data):
    _check(data)


@given(st.binary(max_size=200).map(lambda tail: b"MThd" + tail))
def test_random_bytes_after_a_header_tag(data):
    _check(data)
