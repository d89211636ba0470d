"""The chord_tokens representation: frames of struck notes as pitch tokens or chord symbols."""

from __future__ import annotations

import json

import mido
import numpy as np
import pytest

from note_matrix.config import RunConfig, TrainConfig
from note_matrix.representations import from_json
from note_matrix.representations.chord_tokens import END, NEXT, REST, SYMBOL_END, UNK, ChordTokens, frame_chords
from note_matrix.run_data import prepare
from tests.midi_factory import write_song

# (onset s, pitch) of notes of 0.2 s at 120 bpm: a sixteenth-note frame is 0.125 s. A chord written
# top first, its last note 10 ms late (the same frame); two empty frames; 62; three empty frames; 72 over 65.
ONSETS = ((0.0, 67), (0.0, 64), (0.01, 60), (0.375, 62), (0.875, 72), (0.875, 65))
SONG = [(onset, 0.2, pitch, 80) for onset, pitch in ONSETS]
SONG_TOKENS = [60, 64, 67, NEXT, NEXT, NEXT, 62, NEXT, NEXT, NEXT, NEXT, 65, 72, NEXT, END]


def struck(path) -> list[tuple[float, int]]:
    """``(onset in seconds, rounded to ms, pitch)`` of every note-on of the file at ``path``, in order."""
    time, notes = 0.0, []
    for message in mido.MidiFile(path):  # times in seconds
        time += message.time
        if message.type == "note_on" and message.velocity:
            notes.append((round(time, 3), message.note))
    return notes


def test_pitch_tokens_lowest_first_and_round_trip_onsets_and_pitches(tmp_path):
    song = write_song(tmp_path / "song.mid", SONG)
    encoded = ChordTokens().encode(song)
    assert encoded.steps.dtype == np.int32 and encoded.steps[:, 0].tolist() == SONG_TOKENS
    out = tmp_path / "out.mid"
    assert ChordTokens().decode(encoded.steps, encoded.meta, out) == 6
    # frame i (a sixteenth at 120 bpm) at 0.125 i seconds, each chord lowest first.
    assert struck(out) == [(0, 60), (0, 64), (0, 67), (0.375, 62), (0.875, 65), (0.875, 72)]
    assert ChordTokens().encode(out).steps[:, 0].tolist() == SONG_TOKENS


def test_without_rests_steps_follow_one_another(tmp_path):
    song = write_song(tmp_path / "song.mid", SONG)
    tokens = ChordTokens(rests=False).encode(song).steps
    assert tokens[:, 0].tolist() == [60, 64, 67, NEXT, 62, NEXT, 65, 72, NEXT, END]
    out = tmp_path / "out.mid"
    assert ChordTokens(rests=False).decode(tokens, {}, out) == 6
    assert struck(out) == [(0, 60), (0, 64), (0, 67), (0.125, 62), (0.25, 65), (0.25, 72)]


def test_any_token_sequence_decodes_to_valid_midi(tmp_path):
    out = tmp_path / "out.mid"
    # a bare NEXT (a frame with no onset), 60 twice and 50 after it in one frame, pitches with no NEXT after them
    tokens = np.array([NEXT, 60, 60, 50, NEXT, NEXT, 70, END, 40, NEXT])[:, None]
    assert ChordTokens().decode(tokens, {}, out) == 3
    assert struck(out) == [(0.125, 50), (0.125, 60), (0.375, 70)]  # nothing after END
    with pytest.raises(Exception, match="tokens must lie in 0..129"):
        ChordTokens().decode(np.array([[130]]), {}, out)


def test_chord_symbols_decode_rests_and_unknown_chords_as_frames_with_no_onset(tmp_path):
    symbols = ChordTokens(chord_symbols=True, chords=[[60, 64, 67], [62]])
    out = tmp_path / "out.mid"
    assert symbols.decode(np.array([[3], [REST], [UNK], [4], [SYMBOL_END], [3]]), {}, out) == 4
    assert struck(out) == [(0, 60), (0, 64), (0, 67), (0.375, 62)]


def test_chord_vocabulary_is_fitted_on_the_training_files_only(tmp_path):
    """Each file holds a chord of its own: the vocabulary has those of the training files,
    and a validation or test file's own chord encodes as <unk>."""
    folder = tmp_path / "songs"
    folder.mkdir()
    for i in range(10):
        notes = [(0.25 * k, 0.2, 60 + k % 5, 80) for k in range(30)]
        write_song(folder / f"song{i}.mid", [*notes, (8.0, 0.2, 30 + i, 80), (8.0, 0.2, 40 + i, 80)])
    config = TrainConfig(
        dataset=str(folder),
        data_dir=str(tmp_path / "data"),
        window_length=10,
        validation_fraction=0.2,
        test_fraction=0.2,
    )
    data = prepare(config, ChordTokens(chord_symbols=True), progress=False)
    vocabulary = set(data.representation.chords)
    assert {(60 + k,) for k in range(5)} <= vocabulary
    held_out = data.split["validation"] + data.split["test"]
    assert data.split["train"] and held_out
    for key in data.split["train"]:
        i = int(key.removeprefix("song").removesuffix(".mid"))
        assert (30 + i, 40 + i) in vocabulary and data.arrays[key][-2, 0] == data.representation._index[
            (30 + i, 40 + i)
        ]
    for key in held_out:
        i = int(key.removeprefix("song").removesuffix(".mid"))
        assert (30 + i, 40 + i) not in vocabulary and data.arrays[key][-2, 0] == UNK
    restored = from_json(json.loads(json.dumps(data.representation.to_json())))
    assert restored.chords == data.representation.chords and restored.inputs() == data.representation.inputs()


def test_chord_symbols_keep_the_most_frequent_chords(tmp_path):
    song = write_song(tmp_path / "song.mid", [*SONG, (1.0, 0.2, 62, 80)])  # 62 twice, the other chords once
    symbols = ChordTokens(chord_symbols=True, max_chords=2)
    symbols.fit([song])
    assert symbols.chords == ((62,), (60, 64, 67)) and symbols.inputs().vocabulary == 5
    assert symbols.encode(song).steps[:, 0].tolist() == [4, REST, REST, 3, REST, REST, REST, UNK, 3, SYMBOL_END]


@pytest.mark.parametrize(
    "value", [{"chords": [[64, 60]]}, {"chords": [[60], [60]]}, {"chords": "60"}, {"frame": 0}, {"colour": 1}]
)
def test_bad_saved_options_are_value_errors(value):
    with pytest.raises(ValueError):
        ChordTokens.from_json({"name": "chord_tokens", "chord_symbols": True, **value})


@pytest.mark.parametrize("chord_symbols", [False, True])
def test_chord_tokens_train_generate_and_evaluate(chord_symbols, song_folder, tmp_path):
    import evaluate
    import generate
    import train
    logs = tmp_path / "logs"
    assert (
        train.main(
            [
                "--representation",
                "chord_tokens",
                "--dataset",
                str(song_folder),
                "--data-dir",
                str(tmp_path / "data"),
                "--logdir",
                str(logs),
                "--run-name",
                "chords",
                "--units",
                "8",
                "--epochs",
                "1",
                "--window",
                "20",
                "--batch-size",
                "16",
                "--quiet",
                *(["--chord-symbols"] if chord_symbols else []),
            ]
        )
        == 0
    )
    run = logs / "chords"
    saved = RunConfig.read(run).build_representation()
    assert saved.chord_symbols is chord_symbols and bool(saved.chords) is chord_symbols
    if chord_symbols:  # the chords of the training files, nothing else
        split = json.loads((run / "split.json").read_text())
        assert set(saved.chords) == {
            chord for key in split["train"] for chord in frame_chords(song_folder / key, 0.25)[1]
        }
    out = tmp_path / "out.mid"
    assert (
        generate.main(
            [
                "--seed",
                str(song_folder / "song0.mid"),
                "--model",
                str(run),
                "--length",
                "30",
                "--random-seed",
                "4",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert all(0 <= pitch <= 127 for _, pitch in struck(out))  # opens: a valid file
    assert evaluate.main(["--model", str(run), "--quiet"]) == 0
    scores = json.loads((run / "evaluation.json").read_text())["test"]["scores"]
    for order in (2, 3, 5, 8):
        ngram = scores[f"n-gram, order {order}"]
        assert 0 <= ngram["accuracy"] <= 1 and ngram["nll"] > 0
    assert scores["n-gram, order 3"]["nll"] < scores["unigram"]["nll"]


def test_chord_symbols_flag_belongs_to_chord_tokens(song_folder, tmp_path, capsys):
    import train

    flags = ["--dataset", str(song_folder), "--data-dir", str(tmp_path / "data"), "--logdir", str(tmp_path / "logs"),
             "--units", "8", "--epochs", "1", "--quiet", "--chord-symbols"]
    assert train.main(flags) == 2
    error = capsys.readouterr().err
    assert error == "train.py: error: --chord-symbols is an option of --representation chord_tokens, not note_matrix\n"
    assert not (tmp_path / "logs").exists()
