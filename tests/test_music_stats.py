"""Music statistics on notes built in code, with answers computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from note_matrix.midi import NoteEvents
from note_matrix.evaluation.music_stats import (
    Notes,
    compare,
    describe,
    in_scale_rate,
    jensen_shannon,
    longest_copied_run,
    longest_run,
    pitch_class_histogram,
    polyphony,
    repeated_ngram_fraction,
)

# C4 E4 G4 as a chord (0-1 s), then a melody D4 D4 D4 F#4 (1-2 s), quarter seconds each.
SONG = Notes.build([
    (0.0, 1.0, 60), (0.0, 1.0, 64), (0.0, 1.0, 67),
    (1.0, 1.25, 62), (1.25, 1.5, 62), (1.5, 1.75, 62), (1.75, 2.0, 66),
])


def test_describe_by_hand():
    stats = describe(SONG)
    assert stats["notes"] == 7
    assert stats["pitch_range"] == 67 - 60
    assert stats["pitches_used"] == 5  # 60 62 64 66 67
    assert stats["pitch_classes_used"] == 5
    # onset order: 60 64 67 62 62 62 66 -> |4|+|3|+|5|+0+0+|4| = 16 over 6 steps
    assert stats["average_pitch_interval"] == pytest.approx(16 / 6)
    assert stats["note_density"] == pytest.approx(7 / 2.0)
    # distinct onsets 0, 1, 1.25, 1.5, 1.75: gaps 1, .25, .25, .25
    assert stats["average_inter_onset_interval"] == pytest.approx(1.75 / 4)
    # 3 notes for 1 s, then 1 note for 1 s
    assert stats["polyphony"] == pytest.approx(2.0)
    assert stats["longest_repeated_pitch"] == 3
    # 4-grams: (60,64,67,62) (64,67,62,62) (67,62,62,62) (62,62,62,66): all distinct
    assert stats["repeated_4gram_fraction"] == 0.0


def test_pitch_class_histogram_and_scale():
    histogram = pitch_class_histogram(SONG)
    expected = np.zeros(12)
    expected[[0, 4, 7, 6]] = 1 / 7
    expected[2] = 3 / 7
    np.testing.assert_allclose(histogram, expected)
    # F#4 is outside C major; G major (G A B C D E F#) holds all seven notes
    assert in_scale_rate(SONG) == 1.0
    assert in_scale_rate(Notes.build([(0, 1, 60), (1, 2, 61), (2, 3, 62), (3, 4, 63)])) == pytest.approx(3 / 4)


def test_jensen_shannon_limits():
    p = np.array([0.5, 0.5, 0, 0])
    assert jensen_shannon(p, p) == 0.0
    assert jensen_shannon(p, np.array([0, 0, 0.5, 0.5])) == pytest.approx(1.0)
    # half the mass shared: M = (.5,.25,.25): KL(p||M) = .5 log2(1/.5)... = 0.5, symmetric -> 0.5
    assert jensen_shannon(np.array([1.0, 0, 0]), np.array([0.5, 0.5, 0])) == pytest.approx(
        0.5 * (1 * np.log2(1 / 0.75)) + 0.5 * (0.5 * np.log2(0.5 / 0.75) + 0.5 * np.log2(0.5 / 0.25)))


def test_collapse_statistics():
    collapsed = np.array([60] * 10 + [62, 60, 62, 60, 62, 60])
    assert longest_run(collapsed) == 10
    # 13 4-grams: (60,60,60,60) x7, (60,60,60,62), (60,60,62,60), (60,62,60,62), (62,60,62,60),
    # (60,62,60,62) again, (62,60,62,60) again: 5 distinct of 13
    assert repeated_ngram_fraction(collapsed, 4) == pytest.approx(1 - 5 / 13)
    assert repeated_ngram_fraction(np.array([60, 60, 60, 60, 60, 60]), 4) == pytest.approx(2 / 3)
    assert repeated_ngram_fraction(np.array([60, 62, 64]), 4) == 0.0
    assert longest_run(np.array([])) == 0


def test_polyphony_counts_only_sounding_time():
    # one note 0-1, silence 1-3, two notes 3-4: (1*1 + 2*1) / 2 s sounding
    notes = Notes.build([(0, 1, 60), (3, 4, 62), (3, 4, 65)])
    assert polyphony(notes) == pytest.approx(1.5)
    # touching notes are not overlapping
    assert polyphony(Notes.build([(0, 1, 60), (1, 2, 60)])) == pytest.approx(1.0)


def test_longest_copied_run():
    training = [np.array([60, 62, 64, 65, 67]), np.array([70, 71, 72, 60, 62, 64, 65])]
    assert longest_copied_run(np.array([1, 2, 62, 64, 65, 67, 9]), training) == 4
    assert longest_copied_run(np.array([72, 60, 62, 64, 65, 67]), training) == 5  # 72 60 62 64 65
    assert longest_copied_run(np.array([1, 2, 3]), training) == 0


def test_notes_from_events_pairs_first_on_first_off():
    events = NoteEvents(
        time_seconds=np.array([0.0, 0.5, 1.0, 1.5, 2.0]),
        pitch=np.array([60, 60, 60, 60, 64], np.int16),
        velocity=np.array([100, 90, 0, 0, 80], np.int16),
    )
    notes = Notes.from_events(events)
    assert list(zip(notes.start_seconds, notes.end_seconds, notes.pitch)) == [
        (0.0, 1.0, 60), (0.5, 1.5, 60), (2.0, 2.0, 64)]  # the last never released


def test_compare_reports_ranges_distance_and_copying():
    training = [SONG, Notes.build([(0, 1, 60), (1, 2, 62), (2, 3, 64), (3, 4, 65)])]
    generated = [Notes.build([(i * 0.5, i * 0.5 + 0.4, 60) for i in range(8)])]
    result = compare(generated, training)
    assert result["generated"]["longest_repeated_pitch"] == {"mean": 8.0, "min": 8.0, "max": 8.0}
    assert result["training"]["longest_repeated_pitch"] == {"mean": 2.0, "min": 1.0, "max": 3.0}
    assert result["generated"]["longest_copied_notes"] == {"mean": 1.0, "max": 1}
    assert 0 < result["generated"]["pitch_class_distance"] < 1
    assert result["training"]["files"] == 2


def test_notes_validation():
    with pytest.raises(ValueError, match="ends before it starts"):
        Notes(np.array([1.0]), np.array([0.5]), np.array([60]))
