"""generate.py --max-copied N: note_events pieces that copy at most N consecutive notes of a training file.

The guard's view of a piece (``NoteOrder``) against the notes read back from the written
file, its check on hand-made sequences with chords, and a tiny run trained to repeat one
phrase: without the guard it copies long runs, with it none longer than N."""

from __future__ import annotations

import numpy as np
import pytest

import generate
from note_matrix.config import RunConfig
from note_matrix.evaluation.generated import compare_generated
from note_matrix.evaluation.music_stats import Notes
from note_matrix.generation import generate_rows, load_model, read_primer
from note_matrix.generation.copy_guard import CopyGuard, NoteOrder, generate_uncopied
from note_matrix.generation.sampling import Sampling
from note_matrix.midi import read_midi
from note_matrix.playable import RELEASE_SECONDS
from note_matrix.representations.note_events import EventFields, time_class
from note_matrix.run_data import open_run
from tests.midi_factory import write_song

EVENTS = EventFields()
QUARTER = int(time_class(0.25))  # the gap bin of 0.25 s
PHRASE = (67, 64, 72, 69, 65, 71)  # each struck with the note an octave below: 12 notes in onset order
MAX_COPIED = 4


def _random_rows(rng, count: int) -> np.ndarray:
    """Valid note events ``(count, 3)`` among 8 pitches: chords (zero gaps), re-strikes within 20 ms
    (gap bins 1-3), note-offs that soon after their onset, gaps of 5 s (bin 79)."""
    sounding, rows = set(), []
    for _ in range(count):
        if sounding and (rng.random() < 0.45 or len(sounding) == 8):
            level, pitch = 0, int(rng.choice(sorted(sounding)))
            sounding.discard(pitch)
        else:
            level, pitch = int(rng.integers(1, 17)), int(rng.choice([p for p in range(58, 66) if p not in sounding]))
            sounding.add(pitch)
        rows.append((level, pitch, int(rng.choice([0, 0, 1, 2, 3, 8, 20, 40, 79]))))
    return np.array(rows, np.int32)


@pytest.mark.parametrize("tempo", [500_000, 9_000_000, 16_000_000, 1])
def test_note_order_is_the_order_of_the_notes_read_back_from_the_written_file(tempo, tmp_path):
    # At 9 and 16 s per beat a tick is 9.8 and 17.4 ms: onsets 5-15 ms apart share a tick and so a chord.
    # At 1 microsecond per beat write_midi lowers the ticks per beat to fit a 5 s gap: ticks stay far finer.
    for seed in range(25):
        rows = _random_rows(np.random.default_rng(seed), 120)
        order = NoteOrder(tempo)
        for row in rows:
            order.take(row)
        EVENTS.decode(rows, {"tempo_us_per_beat": tempo}, tmp_path / "piece.mid")
        np.testing.assert_array_equal(order.pitches, Notes.from_events(read_midi(tmp_path / "piece.mid")).pitch)


def test_the_guard_refuses_a_row_that_completes_a_copy_inside_a_chord_or_after_it():
    guard = CopyGuard.from_pitches([np.array([60, 64, 67, 72, 76]), np.array([50, 52])], 3)
    assert guard.files == 2 and len(guard.grams) == 2  # (60 64 67 72), (64 67 72 76); the short file has none
    order = NoteOrder(500_000)
    for row in ((90, 60, QUARTER), (90, 67, QUARTER), (90, 72, 0)):  # 60, then the chord 67 + 72
        assert not guard.completes_copy(order, row)
        order.take(row)
    assert not guard.completes_copy(order, (0, 60, QUARTER))  # a note-off adds no note
    assert not guard.completes_copy(order, (90, 64, QUARTER))  # 60 67 72 64: no copy
    assert guard.completes_copy(order, (90, 64, 0))  # 64 joins the chord, below it: 60 64 67 72
    order.take((90, 64, 0))  # kept anyway
    assert order.pitches.tolist() == [60, 64, 67, 72]
    assert not guard.completes_copy(order, (90, 90, 0))  # 60 64 67 72 90: the copy was there before
    assert not guard.completes_copy(order, (90, 62, 0))  # 60 62 64 67 72: breaks it
    assert guard.completes_copy(order, (90, 76, QUARTER))  # 64 67 72 76
    assert not guard.completes_copy(order, (90, 60, 1))  # 60 struck again 5 ms on: one note (playable_events)


def _phrase_songs(folder):
    """Five files of one phrase of dyads played 40 times, eighth notes at 120 bpm."""
    folder.mkdir()
    notes = []
    for step in range(40 * len(PHRASE)):
        pitch = PHRASE[step % len(PHRASE)]
        notes += [(0.25 * step, 0.25, pitch, 80), (0.25 * step, 0.25, pitch - 12, 80)]
    for index in range(5):
        write_song(folder / f"song{index}.mid", notes)
    return folder


@pytest.fixture(scope="module")
def phrase_run(tmp_path_factory):
    """A 16-unit note_events run that has learnt the phrase well enough to copy it, and its songs."""
    import train

    base = tmp_path_factory.mktemp("copying")
    songs = _phrase_songs(base / "songs")
    code = train.main([
        "--representation", "note_events", "--dataset", str(songs), "--data-dir", str(base / "data"),
        "--logdir", str(base / "logs"), "--run-name", "phrase", "--units", "16", "--epochs", "12", "--window", "10",
        "--batch-size", "4", "--learning-rate", "0.02", "--validation-stride", "10", "--sample-every", "0", "--quiet",
    ])
    assert code == 0
    return base / "logs" / "phrase", songs


def _longest_copied(run, folder) -> int:
    """``evaluate.py --generated``'s ``longest_copied_notes`` (the max over the folder's files)."""
    return compare_generated(open_run(run), folder)["generated"]["longest_copied_notes"]["max"]


@pytest.mark.parametrize("sampling", [["--temperature", "1"], ["--argmax"]])
def test_guarded_pieces_copy_at_most_n_notes_of_a_training_file(sampling, phrase_run, tmp_path, capsys):
    run, songs = phrase_run
    argv = ["--model", str(run), "--seed", str(songs / "song0.mid"), "--length", "200", "--num-outputs", "4",
            "--random-seed", "3", *sampling, "--quiet"]
    for folder in ("plain", "guarded", "again"):
        (tmp_path / folder).mkdir()
    assert generate.main([*argv, "--out", str(tmp_path / "plain" / "piece.mid")]) == 0
    assert _longest_copied(run, tmp_path / "plain") > 2 * MAX_COPIED  # the run copies its phrase
    capsys.readouterr()
    guarded = [*argv, "--max-copied", str(MAX_COPIED)]
    assert generate.main([*guarded, "--out", str(tmp_path / "guarded" / "piece.mid")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("wrote")]
    assert len(lines) == 4 and all(f"--max-copied {MAX_COPIED}: " in line for line in lines)
    redrawn = [int(line.split(f"--max-copied {MAX_COPIED}: ")[1].split()[0]) for line in lines]
    assert sum(redrawn) > 0 and all(line.endswith(", 0 kept as copies)") for line in lines)
    assert _longest_copied(run, tmp_path / "guarded") <= MAX_COPIED
    assert generate.main([*guarded, "--out", str(tmp_path / "again" / "piece.mid")]) == 0  # a seed repeats it
    for index in range(1, 5):
        assert (tmp_path / "again" / f"piece-{index}.mid").read_bytes() == \
            (tmp_path / "guarded" / f"piece-{index}.mid").read_bytes()


def test_without_the_flag_or_a_copy_the_pieces_are_unchanged(phrase_run, tmp_path):
    run, songs = phrase_run
    config = RunConfig.read(run)
    head, model = config.head(), load_model(run)
    window = config.train.window_length
    primer = read_primer(songs / "song1.mid", EVENTS, window)
    sampling = Sampling(temperature=1.0, random_seed=11)
    rows = generate_rows(model, primer.steps[None, :window], 60, EVENTS, head, sampling=sampling, progress=False)
    EVENTS.decode(rows[0], primer.meta, tmp_path / "expected.mid")
    assert generate.main(["--model", str(run), "--seed", str(songs / "song1.mid"), "--length", "60",
                          "--random-seed", "11", "--out", str(tmp_path / "plain.mid"), "--quiet"]) == 0
    assert (tmp_path / "plain.mid").read_bytes() == (tmp_path / "expected.mid").read_bytes()
    # The guarded loop draws the same rows from the same random numbers until it refuses one.
    never = CopyGuard.from_pitches([np.array([0, 1, 2, 3, 4, 5])], MAX_COPIED)
    guarded = generate_uncopied(model, primer.steps[None, :window], 60, EVENTS, head, never,
                                tempo_us_per_beat=primer.tempo_us_per_beat, sampling=sampling)
    np.testing.assert_array_equal(guarded.rows, rows)
    assert guarded.redrawn.tolist() == [0] and guarded.copies.tolist() == [0]


def test_the_flag_is_refused_for_other_runs_and_the_window_method(trained_run, song_folder, phrase_run, capsys):
    seed = str(song_folder / "song0.mid")
    assert generate.main(["--model", str(trained_run), "--seed", seed, "--max-copied", "8", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == "generate.py: error: --max-copied is for note_events runs; tiny is a note_matrix run\n"
    run, songs = phrase_run
    assert generate.main(["--model", str(run), "--seed", str(songs / "song0.mid"), "--max-copied", "8",
                          "--method", "window", "--quiet"]) == 2
    assert capsys.readouterr().err == ("generate.py: error: --max-copied generates with the carried state only "
                                       "(leave out --method window)\n")


# -- --max-held: stuck notes released ---------------------------------------------------------------------


def _notes(events, max_held, path) -> Notes:
    """``events`` ``(time gap bin, pitch, level)`` rows decoded with ``max_held`` and read back."""
    rows = np.array([(level, pitch, gap) for gap, pitch, level in events], np.int32)
    EVENTS.decode(rows, {"max_held_seconds": max_held}, path)
    return Notes.from_events(read_midi(path))


def test_max_held_releases_a_stuck_note_and_drops_its_late_note_off(tmp_path):
    five = int(time_class(5.0))  # the 5 s bin
    events = [(0, 60, 10), (0, 64, 10), (QUARTER, 64, 0), (five, 67, 10), (five, 60, 0), (QUARTER, 67, 0)]
    plain, held = _notes(events, None, tmp_path / "plain.mid"), _notes(events, 4.0, tmp_path / "held.mid")
    np.testing.assert_array_equal(held.pitch, plain.pitch)  # the same notes, at the same onsets
    np.testing.assert_allclose(held.start_seconds, plain.start_seconds)
    durations = dict(zip(held.pitch.tolist(), (held.end_seconds - held.start_seconds).tolist()))
    plain_durations = dict(zip(plain.pitch.tolist(), (plain.end_seconds - plain.start_seconds).tolist()))
    assert plain_durations[60] == pytest.approx(10.25, abs=0.01) and durations[60] == pytest.approx(4.0, abs=0.01)
    assert durations[64] == pytest.approx(plain_durations[64]) == pytest.approx(0.25, abs=0.01)  # short: kept
    assert plain_durations[67] > 5.0 and durations[67] == pytest.approx(4.0, abs=0.01)
    # A note never released is released max_held after its onset, or as a piece's last notes are.
    unreleased = _notes([(0, 60, 10), (five, 62, 10), (QUARTER, 62, 0), (QUARTER, 64, 10)], 2.0,
                        tmp_path / "end.mid")
    np.testing.assert_allclose(unreleased.end_seconds - unreleased.start_seconds, [2.0, 0.257, RELEASE_SECONDS],
                               atol=0.01)
    assert (tmp_path / "plain.mid").read_bytes() != (tmp_path / "held.mid").read_bytes()
    EVENTS.decode(np.array([(level, pitch, gap) for gap, pitch, level in events], np.int32), {}, tmp_path / "no.mid")
    assert (tmp_path / "no.mid").read_bytes() == (tmp_path / "plain.mid").read_bytes()  # no key: unchanged


def test_generate_max_held_bounds_every_note_of_a_run(phrase_run, tmp_path, capsys):
    run, songs = phrase_run
    argv = ["--model", str(run), "--seed", str(songs / "song0.mid"), "--length", "200", "--random-seed", "5",
            "--quiet"]
    assert generate.main([*argv, "--out", str(tmp_path / "plain.mid")]) == 0
    assert generate.main([*argv, "--max-held", "0.3", "--out", str(tmp_path / "held.mid")]) == 0
    plain, held = (Notes.from_events(read_midi(tmp_path / name)) for name in ("plain.mid", "held.mid"))
    assert (plain.end_seconds - plain.start_seconds).max() > 0.35
    assert (held.end_seconds - held.start_seconds).max() <= 0.3 + 0.002  # a tick at most
    np.testing.assert_array_equal(held.pitch, plain.pitch)  # the same notes drawn, only released sooner
    capsys.readouterr()
    with pytest.raises(SystemExit):
        generate.main([*argv, "--max-held", "0", "--out", str(tmp_path / "x.mid")])
    assert "--max-held: must be a finite number of seconds above 0" in capsys.readouterr().err


def test_max_held_is_refused_for_other_runs(trained_run, song_folder, capsys):
    argv = ["--model", str(trained_run), "--seed", str(song_folder / "song0.mid"), "--max-held", "4", "--quiet"]
    assert generate.main(argv) == 2
    assert capsys.readouterr().err == (
        "generate.py: error: --max-held is for note_events runs; tiny is a note_matrix run\n"
    )
