"""generate.py: priming, generation, and an output file that always plays."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter

import keras
import mido
import numpy as np
import pretty_midi
import pytest

import generate
from note_matrix.config import RunConfig
from note_matrix.generation import generate_rows, load_model
from note_matrix.generation.primer import read_primer
from note_matrix.playable import MIN_NOTE_SECONDS, playable_events
from note_matrix.representations import NoteMatrix
from tests.midi_factory import random_song


def assert_playable(path, *, tempo=None):
    """Opens in mido and pretty_midi; every note-on released once, in range, in order."""
    midi = mido.MidiFile(path)
    sounding = Counter()
    notes = 0
    for message in mido.merge_tracks(midi.tracks):
        if message.type == "set_tempo" and tempo is not None:
            assert message.tempo == tempo
        if message.type == "note_on" and message.velocity > 0:
            assert 0 <= message.note <= 127 and 1 <= message.velocity <= 127
            assert sounding[message.note] == 0, "note-on of a pitch already sounding"
            sounding[message.note] += 1
            notes += 1
        elif message.type in ("note_on", "note_off"):
            assert sounding[message.note] == 1, "note-off of a silent pitch"
            sounding[message.note] -= 1
    assert sum(sounding.values()) == 0, "notes left sounding"
    parsed = pretty_midi.PrettyMIDI(str(path))
    assert sum(len(i.notes) for i in parsed.instruments) == notes
    assert all(n.end - n.start >= MIN_NOTE_SECONDS - 1e-3 for i in parsed.instruments for n in i.notes)
    return notes


def test_generate_cli_writes_a_playable_file_beside_the_run(trained_run, song_folder, tmp_path):
    seed = song_folder / "song0.mid"
    logdir = tmp_path / "logs"
    shutil.copytree(trained_run, logdir / "tiny")
    assert generate.main(["--seed", str(seed), "--logdir", str(logdir), "--length", "120", "--quiet"]) == 0
    out = logdir / "tiny" / "generated.mid"
    assert assert_playable(out, tempo=500_000) > 0


def test_newest_run_is_used_by_default(trained_run, song_folder, tmp_path):
    logdir = tmp_path / "logs"
    shutil.copytree(trained_run, logdir / "older")
    shutil.copytree(trained_run, logdir / "newer")
    config_path = logdir / "newer" / "config.json"
    config = json.loads(config_path.read_text())
    config["created"] = "2099-01-01T00:00:00+00:00"
    config_path.write_text(json.dumps(config))
    assert generate.main(["--seed", str(song_folder / "song1.mid"), "--logdir", str(logdir), "--length", "5",
                          "--quiet"]) == 0
    assert (logdir / "newer" / "generated.mid").is_file()
    assert not (logdir / "older" / "generated.mid").exists()


def test_generation_takes_the_seed_tempo(trained_run, tmp_path):
    seed = random_song(tmp_path / "slow.mid", np.random.default_rng(3), 60)
    midi = mido.MidiFile(seed)
    midi.tracks[0][0].tempo = 750_000  # 80 bpm
    midi.save(seed)
    out = tmp_path / "out.mid"
    assert generate.main(["--seed", str(seed), "--model", str(trained_run), "--length", "30", "--out", str(out),
                          "--quiet"]) == 0
    assert_playable(out, tempo=750_000)


def next_row_prediction(model, window):
    """The model's prediction of the row after ``window`` ``(1, steps, 3)``: ``(3,)``.

    The output is ``(1, 3)``, or ``(1, steps, 3)`` for a model trained on every step
    (the last step is the row after the window).
    """
    prediction = np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(window)))
    return prediction[0, -1] if prediction.ndim == 3 else prediction[0]


def expected_row(model, head, representation, window):
    """The row the point method writes after ``window``: the head's point row of the prediction, made valid."""
    prediction = keras.ops.convert_to_tensor(next_row_prediction(model, window)[None])
    point = keras.ops.convert_to_numpy(head.point(prediction))
    return representation.valid_row(np.asarray(point)[0])


def test_generate_rows_follows_the_window_method(trained_run, song_folder):
    representation = NoteMatrix()
    model = load_model(trained_run)
    head = RunConfig.read(trained_run).head()
    primer = representation.encode(song_folder / "song2.mid").steps[:50]
    rows = generate_rows(model, primer, 3, representation, head, method="window", progress=False)
    assert rows.shape == (3, 3) and rows.dtype == np.float32
    np.testing.assert_allclose(rows[0], expected_row(model, head, representation, primer[None]), atol=1e-6)
    second_window = np.concatenate([primer[1:], rows[:1]])[None]
    np.testing.assert_allclose(rows[1], expected_row(model, head, representation, second_window), atol=1e-6)


def test_carried_state_is_the_default_and_starts_with_the_window_prediction(trained_run, song_folder):
    representation = NoteMatrix()
    model = load_model(trained_run)
    head = RunConfig.read(trained_run).head()
    primer = representation.encode(song_folder / "song2.mid").steps[:50]
    rows = generate_rows(model, primer, 3, representation, head, progress=False)
    assert rows.shape == (3, 3) and rows.dtype == np.float32
    np.testing.assert_allclose(rows[0], expected_row(model, head, representation, primer[None]), atol=1e-5)
    # Row 2 sees all 51 rows (primer and row 1); the window method would see the last 50.
    whole = np.concatenate([primer, rows[:1]])[None]
    np.testing.assert_allclose(rows[1], expected_row(model, head, representation, whole), atol=1e-5)


def test_valid_row_clips_rounds_and_caps_any_prediction():
    representation = NoteMatrix()
    row = representation.valid_row(np.array([1.7, -0.3, 0.9999]))
    assert row[0] == 1.0 and row[1] == 0.0
    assert representation.unscale_time(row[2]) == pytest.approx(4.0)
    row = representation.valid_row(np.array([np.nan, 61.4 / 127, 0.5]))
    assert row[0] == 0.0 and round(row[1] * 127, 4) == 61.0


def test_any_rows_become_a_playable_file(tmp_path):
    """Re-strikes, offs of silent pitches and notes never released, from random rows."""
    representation = NoteMatrix()
    rng = np.random.default_rng(0)
    raw = rng.normal(0.5, 0.6, size=(400, 3))
    raw[::3, 1] = 0.0  # plenty of note-offs
    raw[:, 0] = rng.choice([60, 62, 64], size=400) / 127  # few pitches: many collisions
    rows = np.stack([representation.valid_row(r) for r in raw])
    out = tmp_path / "random.mid"
    written = representation.decode(rows, {"tempo_us_per_beat": 600_000}, out)
    assert written == assert_playable(out, tempo=600_000)
    times, pitch, velocity = playable_events(*representation.to_notes(rows))
    assert np.all(np.diff(times) >= 0)
    assert np.count_nonzero(velocity) == np.count_nonzero(velocity == 0)


def test_generated_file_opens_at_the_output_path_only(trained_run, song_folder, tmp_path):
    out = tmp_path / "piece.mid"
    assert generate.main(["--seed", str(song_folder / "song3.mid"), "--model", str(trained_run), "--out", str(out),
                          "--length", "10", "--quiet"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["piece.mid"]  # no temporary file left


def test_every_pop_file_can_prime_the_card_window(mirror):
    representation = NoteMatrix()
    files = sorted((mirror / "pop").glob("*.midi"))
    for path in files:
        primer = read_primer(path, representation, 50)
        assert primer.steps.ndim == 2 and len(primer.steps) >= 50 and primer.steps.dtype == np.float32
        assert primer.steps[:50].shape == (50, 3) and primer.tempo_us_per_beat > 0
