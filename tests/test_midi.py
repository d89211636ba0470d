"""MIDI -> note matrix -> MIDI, on bytes and songs built in code, and on the pop mirror."""

from __future__ import annotations

import mido
import numpy as np
import pretty_midi
import pytest

from note_matrix import MidiError, NoteMatrix, matrix_to_midi, midi_to_matrix
from note_matrix.midi import read_midi
from tests.midi_factory import smf, tempo_event, track_chunk, write_song

C = 0.25  # the documented time constant


def s(gap):
    """The documented time scaling, written out by hand."""
    return gap / (gap + C)


def test_time_constant_is_the_documented_one():
    assert NoteMatrix().time_scale_seconds == C
    assert NoteMatrix().to_json()["time_scale_seconds"] == C


# One track, 480 ticks per beat, 120 bpm then 240 bpm from tick 480; a chord written
# with running status, a note-on with velocity 0 as note-off, a note_off message.
RUNNING_STATUS_TRACK = [
    (0, tempo_event(500_000)),
    (0, b"\x90\x3c\x64"),  # C4 on, velocity 100, at 0 s
    (0, b"\x40\x5a"),  # running status: E4 on, velocity 90
    (480, b"\x3c\x00"),  # running status: C4 velocity 0 (off) at 0.5 s
    (0, b"\x80\x40\x40"),  # E4 note_off at 0.5 s
    (0, tempo_event(250_000)),  # tempo doubles at tick 480
    (480, b"\x90\x43\x50"),  # G4 on at 0.5 + 0.25 = 0.75 s
    (240, b"\x80\x43\x00"),  # G4 off at 0.875 s
]
EXPECTED = np.array(
    [
        [60 / 127, 100 / 127, 0.0],
        [64 / 127, 90 / 127, 0.0],
        [60 / 127, 0.0, s(0.5)],
        [64 / 127, 0.0, 0.0],
        [67 / 127, 80 / 127, s(0.25)],
        [67 / 127, 0.0, s(0.125)],
    ],
    dtype=np.float32,
)


def test_running_status_velocity_zero_and_tempo_change(tmp_path):
    path = tmp_path / "running.mid"
    path.write_bytes(smf([track_chunk(RUNNING_STATUS_TRACK)], fmt=0))
    matrix = midi_to_matrix(path)
    assert matrix.dtype == np.float32 and matrix.shape == (6, 3)
    np.testing.assert_allclose(matrix, EXPECTED, rtol=0, atol=1e-7)
    notes = read_midi(path)
    np.testing.assert_allclose(notes.time_seconds, [0, 0, 0.5, 0.5, 0.75, 0.875])


def test_type_1_merges_tracks_in_time_order_and_drops_drums(tmp_path):
    conductor = track_chunk([(0, tempo_event(500_000)), (480, tempo_event(250_000))])
    melody = track_chunk([(0, b"\x90\x3c\x64"), (480, b"\x80\x3c\x00"), (480, b"\x90\x43\x50"), (240, b"\x80\x43\x00")])
    harmony = track_chunk([(0, b"\x91\x40\x5a"), (480, b"\x91\x40\x00")])
    drums = track_chunk([(0, b"\x99\x24\x7f"), (100, b"\x89\x24\x00")])
    path = tmp_path / "type1.mid"
    path.write_bytes(smf([conductor, melody, harmony, drums], fmt=1))
    matrix = midi_to_matrix(path)
    np.testing.assert_allclose(matrix, EXPECTED, rtol=0, atol=1e-7)
    assert read_midi(path).dropped["drum_messages"] == 2


def test_overlapping_notes_and_same_pitch_in_two_tracks_round_trip(tmp_path):
    # Overlapping notes, a chord, and pitch 60 sounding in two tracks at once.
    a = track_chunk([(0, b"\x90\x3c\x64"), (100, b"\x90\x40\x50"), (100, b"\x80\x3c\x00"), (300, b"\x80\x40\x00")])
    b = track_chunk([(50, b"\x91\x3c\x30"), (500, b"\x81\x3c\x00"), (1, b"\x91\x00\x01"), (7, b"\x91\x7f\x7f"),
                     (3, b"\x81\x00\x00"), (0, b"\x81\x7f\x00")])
    path = tmp_path / "overlap.mid"
    path.write_bytes(smf([a, b], fmt=1, division=96))
    original = read_midi(path)
    matrix = midi_to_matrix(path)
    out = tmp_path / "out.mid"
    matrix_to_midi(matrix, out)
    again = read_midi(out)
    np.testing.assert_array_equal(again.pitch, original.pitch)
    np.testing.assert_array_equal(again.velocity, original.velocity)
    half_tick = 0.5 * 0.5 / 960  # the writer's half tick at 120 bpm, 960 ticks per beat
    assert np.max(np.abs(again.time_seconds - original.time_seconds)) <= half_tick + 1e-6
    assert {0, 127} <= set(original.pitch.tolist())


def test_type_0_and_type_1_of_the_same_song_agree(tmp_path):
    notes = [(0.0, 0.5, 60, 100), (0.25, 0.5, 64, 80), (1.0, 0.25, 67, 70)]
    type1 = write_song(tmp_path / "one.mid", notes)
    merged = mido.MidiFile(type1)
    single = mido.MidiFile(type=0, ticks_per_beat=merged.ticks_per_beat)
    single.tracks.append(mido.merge_tracks(merged.tracks))
    single.save(tmp_path / "zero.mid")
    np.testing.assert_array_equal(midi_to_matrix(tmp_path / "zero.mid"), midi_to_matrix(type1))


def test_writing_rounds_cumulative_time_not_each_delta(tmp_path):
    # 2,000 gaps of 0.7 ticks each: rounding every delta would lose 0.3 tick a row.
    tick = 0.5 / 960
    gaps = np.full(2000, 0.7 * tick)
    rows = len(gaps)
    matrix = np.stack([np.full(rows, 60 / 127), np.tile([100 / 127, 0.0], rows // 2), s(gaps)], 1).astype(np.float32)
    out = tmp_path / "drift.mid"
    matrix_to_midi(matrix, out)
    onsets = read_midi(out).time_seconds
    expected = np.cumsum(NoteMatrix().unscale_time(matrix[:, 2]))
    assert np.max(np.abs(onsets - expected)) <= 0.5 * tick + 1e-9


def test_long_gap_is_invertible_and_too_long_gap_is_reported(tmp_path):
    minute = write_song(tmp_path / "minute.mid", [(0.0, 0.5, 60, 100), (60.5, 0.5, 62, 100)])
    matrix = midi_to_matrix(minute)
    assert 0 < matrix[2, 2] < 1
    out = tmp_path / "minute_out.mid"
    matrix_to_midi(matrix, out)
    assert abs(read_midi(out).time_seconds[2] - 60.5) < 1e-3

    hour = write_song(tmp_path / "hour.mid", [(0.0, 0.5, 60, 100), (3600.0, 0.5, 62, 100)])
    with pytest.raises(MidiError, match=r"hour\.mid: a gap of 3599\.5 s .* too long"):
        midi_to_matrix(hour)


def test_smpte_time_division(tmp_path):
    # 25 frames per second, 40 ticks per frame: 1 ms per tick; tempo events do not apply.
    division = ((256 - 25) << 8) | 40
    track = track_chunk([(0, tempo_event(250_000)), (0, b"\x90\x3c\x64"), (500, b"\x80\x3c\x00")])
    path = tmp_path / "smpte.mid"
    path.write_bytes(smf([track], fmt=0, division=division))
    np.testing.assert_allclose(read_midi(path).time_seconds, [0.0, 0.5])
    assert read_midi(path).ticks_per_beat is None


def test_file_without_notes_gives_empty_matrix(tmp_path):
    path = tmp_path / "silent.mid"
    path.write_bytes(smf([track_chunk([(0, tempo_event(500_000))])], fmt=0))
    assert midi_to_matrix(path).shape == (0, 3)


def test_type_2_is_refused_with_a_reason(tmp_path):
    path = tmp_path / "type2.mid"
    path.write_bytes(smf([track_chunk([(0, b"\x90\x3c\x64"), (10, b"\x80\x3c\x00")])] * 2, fmt=2))
    with pytest.raises(MidiError, match="type 2"):
        midi_to_matrix(path)


@pytest.mark.parametrize(
    "matrix, message",
    [
        (np.zeros((4, 2)), "shape"),
        (np.array([[0.5, 1.2, 0.0]]), r"\[0, 1\]"),
        (np.array([[0.5, 0.5, 1.0]]), r"\[0, 1\)"),
        (np.array([[np.nan, 0.5, 0.1]]), "NaN"),
    ],
)
def test_matrix_to_midi_rejects_invalid_matrices(tmp_path, matrix, message):
    with pytest.raises(ValueError, match=message):
        matrix_to_midi(matrix, tmp_path / "bad.mid")
    assert not (tmp_path / "bad.mid").exists()


@pytest.mark.filterwarnings("ignore:Tempo, Key or Time signature change events")
def test_pop_mirror_round_trip(mirror, tmp_path):
    """Every pop file: pitches and velocities exact, onsets within 1 ms, checked against
    pretty_midi's independent reading of the original file."""
    files = sorted((mirror / "pop").glob("*.midi"))
    assert len(files) == 126
    worst = 0.0
    for path in files:
        matrix = midi_to_matrix(path)
        assert matrix.dtype == np.float32 and matrix.ndim == 2 and matrix.shape[1] == 3
        assert matrix.min() >= 0 and matrix.max() <= 1
        out = tmp_path / "round.mid"
        matrix_to_midi(matrix, out)
        again = midi_to_matrix(out)
        np.testing.assert_array_equal(np.rint(again[:, :2] * 127), np.rint(matrix[:, :2] * 127))

        original = pretty_midi.PrettyMIDI(str(path))
        written = pretty_midi.PrettyMIDI(str(out))
        expected = sorted((n.start, n.pitch, n.velocity) for i in original.instruments if not i.is_drum for n in i.notes)
        actual = sorted((n.start, n.pitch, n.velocity) for i in written.instruments for n in i.notes)
        assert [e[1:] for e in expected] == [a[1:] for a in actual], path.name
        worst = max(worst, max(abs(e[0] - a[0]) for e, a in zip(expected, actual)))
    assert worst <= 1e-3
