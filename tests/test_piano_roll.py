"""The piano-roll representation (``representations.piano_roll``): frames from MIDI on the
beat grid, sustained or re-struck notes back to MIDI, its multi-hot input and Bernoulli
head, and training on it with the project's trainer."""

from __future__ import annotations

import json

import keras
import mido
import numpy as np
import pytest

from note_matrix import representations
from note_matrix.errors import MidiError
from note_matrix.representations.piano_roll import COLUMNS, KEYS, LOWEST, MAX_FRAMES, PianoRoll
from tests.midi_factory import write_song

# (start s, duration s, pitch, velocity) at 120 bpm: an eighth note is 0.25 s. The first note
# comes after a rest of two eighths; 10 and 120 lie outside the piano's 88 keys.
SONG = [
    (0.5, 0.5, 60, 90),
    (0.5, 0.25, 64, 90),
    (1.0, 0.25, 67, 80),
    (1.25, 0.04, 72, 70),
    (1.5, 0.5, 10, 60),
    (1.75, 0.25, 120, 60),
    (1.75, 0.2, 21, 50),
    (1.75, 0.25, 108, 50),
]


def _on(roll: np.ndarray) -> list[list[int]]:
    """The MIDI pitches on in each frame."""
    return [(np.flatnonzero(frame) + LOWEST).tolist() for frame in roll]


def _notes(path) -> list[tuple[float, float, int]]:
    """``(onset s, release s, pitch)`` of every note of a MIDI file, by onset then pitch."""
    midi = mido.MidiFile(path)
    now, started, notes = 0.0, {}, []
    for message in midi:
        now += message.time
        if message.type == "note_on" and message.velocity:
            started[message.note] = now
        elif message.type in ("note_on", "note_off"):
            notes.append((round(started.pop(message.note), 6), round(now, 6), message.note))
    return sorted(notes, key=lambda note: (note[0], note[2]))


def test_a_midi_file_becomes_frames_on_the_beat_grid(tmp_path):
    path = write_song(tmp_path / "song.mid", SONG)
    encoded = PianoRoll().encode(path)
    assert encoded.steps.dtype == np.float32 and encoded.steps.shape == (6, KEYS)
    # The rest before the first note is left out; the 0.04 s note still takes a frame; 10 and 120 are dropped.
    assert _on(encoded.steps) == [[60, 64], [60], [67], [72], [], [21, 108]]
    assert encoded.meta["tempo_us_per_beat"] == 500_000

    quarters = PianoRoll(frame=1.0).encode(path).steps  # onsets on the half beat round up to the next frame
    assert _on(quarters) == [[60, 64], [67], [72], [21, 108]]


def test_frames_follow_beats_not_seconds(tmp_path):
    beats = [(start * 2, duration * 2, pitch, velocity) for start, duration, pitch, velocity in SONG]
    slow = write_song(tmp_path / "slow.mid", beats, tempo_us_per_beat=1_000_000)  # the same beats at 60 bpm
    fast = write_song(tmp_path / "fast.mid", SONG)
    assert np.array_equal(PianoRoll().encode(slow).steps, PianoRoll().encode(fast).steps)


def test_a_held_key_is_one_note_unless_restruck(tmp_path):
    roll = np.zeros((5, KEYS), np.float32)
    roll[[0, 1, 2, 4], 60 - LOWEST] = 1  # held three frames, a rest, struck again
    roll[1:3, 64 - LOWEST] = 1
    sustained, restruck = tmp_path / "sustained.mid", tmp_path / "restruck.mid"
    assert PianoRoll().decode(roll, {"tempo_us_per_beat": 500_000}, sustained) == 3
    assert _notes(sustained) == [(0.0, 0.75, 60), (0.25, 0.75, 64), (1.0, 1.25, 60)]
    assert PianoRoll(restrike=True).decode(roll, {"tempo_us_per_beat": 500_000}, restruck) == 6
    assert _notes(restruck) == [
        (0.0, 0.25, 60),
        (0.25, 0.5, 60),
        (0.25, 0.5, 64),
        (0.5, 0.75, 60),
        (0.5, 0.75, 64),
        (1.0, 1.25, 60),
    ]
    # Either way the file reads back as the same roll.
    for path in (sustained, restruck):
        assert np.array_equal(PianoRoll().encode(path).steps, roll)


def test_decode_refuses_a_roll_of_the_wrong_width(tmp_path):
    with pytest.raises(MidiError, match=r"out\.mid: a piano roll has shape \(frames, 88\), got \(3, 87\)"):
        PianoRoll().decode(np.zeros((3, 87)), {}, tmp_path / "out.mid")


def test_a_piece_too_long_for_a_roll_is_one_midi_error(tmp_path):
    seconds = (MAX_FRAMES + 10) * 0.25  # past the cap in eighth notes at 120 bpm
    path = write_song(tmp_path / "long.mid", [(0.0, 0.25, 60, 80), (seconds, 0.25, 62, 80)])
    with pytest.raises(MidiError, match=r"long\.mid: 100,011 frames of 0\.5 beats, over the 100,000") as error:
        PianoRoll().encode(path)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "options", [{"frame": 0}, {"frame": -1.0}, {"frame": float("nan")}, {"frame": True}, {"restrike": "yes"}]
)
def test_bad_options_are_refused(options):
    with pytest.raises(ValueError):
        PianoRoll(**options)


def test_input_head_and_json():
    roll = representations.create("piano_roll", frame=1.0, restrike=True)
    assert representations.from_json(json.loads(json.dumps(roll.to_json()))).to_json() == {
        "name": "piano_roll",
        "frame": 1.0,
        "restrike": True,
    }
    assert roll.inputs().kind == "multi_hot" and roll.inputs().width == KEYS
    head = roll.head("bernoulli", 1)
    assert head.width == KEYS and head.names == COLUMNS == tuple(f"key{p}" for p in range(21, 109))
    assert head.fields[0].kind == "bernoulli"
    steps = keras.ops.convert_to_numpy(roll.valid_steps(np.array([[0.2, 0.7, 1.0, -3.0, 0.5]] * 2, np.float32)))
    assert steps.tolist() == [[0.0, 1.0, 1.0, 0.0, 0.0]] * 2


def test_scores_use_the_frame_level_nll():
    roll = PianoRoll()
    head = roll.head("bernoulli", 1)
    targets = np.zeros((4, KEYS))
    targets[:, 0] = 1
    scores = roll.distribution_scores(head, np.zeros((4, KEYS)), targets, None)  # logits 0: p = 0.5 everywhere
    assert scores["nll"] == pytest.approx(KEYS * np.log(2))
    baselines = roll.baselines([targets, targets]).score_all([targets], 1)
    assert baselines["repeat previous frame"] == {"accuracy": 1.0, "nll": None}
    # Add-one smoothed: on in 8 of 8 training frames is 9/10, off in 8 of 8 is 9/10 as well; the Markov
    # chain counts the 6 frames that have one before, so 7/8 each.
    assert baselines["key frequencies"]["nll"] == pytest.approx(-KEYS * np.log(9 / 10))
    assert baselines["Markov chain per key"]["nll"] == pytest.approx(-KEYS * np.log(7 / 8))


def test_train_py_trains_a_piano_roll(song_folder, tmp_path, capsys):
    import evaluate
    import train

    logdir = tmp_path / "logs"
    code = train.main(
        [
            "--representation",
            "piano_roll",
            "--dataset",
            str(song_folder),
            "--data-dir",
            str(tmp_path / "data"),
            "--logdir",
            str(logdir),
            "--run-name",
            "roll",
            "--units",
            "8",
            "--epochs",
            "1",
            "--window",
            "8",
            "--batch-size",
            "8",
            "--sample-every",
            "1",
            "--quiet",
        ]
    )
    assert code == 0
    run = logdir / "roll"
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["inputs"]["kind"] == "multi_hot" and config["model"]["head"][0]["field"] == "bernoulli"
    history = json.loads((run / "history.json").read_text())
    assert "bit_accuracy" in history["epochs"]
    assert (run / "samples" / "epoch-0001.mid").is_file()

    capsys.readouterr()
    assert evaluate.main(["--model", str(run), "--quiet"]) == 0  # scored as the benchmarks are
    out = capsys.readouterr().out
    saved = json.loads((run / "evaluation.json").read_text())["frame_nll"]
    assert list(saved["splits"]) == ["validation", "test"] and 0 < saved["scores"]["model (bernoulli head)"]["test"]
    assert f"{song_folder.name} is not one of the four benchmarks: the published figures are not comparable." in out
