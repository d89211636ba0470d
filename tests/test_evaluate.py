"""evaluate.py: test-split scores beside the baselines, and music statistics of generated files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import evaluate
from note_matrix import NoteMatrix
from note_matrix.evaluation import best_per_column, not_beaten, verdict
from note_matrix.evaluation.baselines import Baselines, Prediction, score
from note_matrix.evaluation.music_stats import CopiedRuns, jensen_shannon
from note_matrix.generation import load_model
from tests.midi_factory import smf, tempo_event, track_chunk, write_song

ROOT = Path(__file__).resolve().parents[1]
PREDICTORS = ["model (regression head)", "repeat previous row", "training mean", "Markov chain (pitch)",
              "n-gram of pitches, order 3", "n-gram of pitches, order 5", "n-gram of pitches, order 8"]
SCORES = ["mse_note", "mse_velocity", "mse_time", "mse", "pitch_accuracy", "nll"]


@pytest.fixture
def run(trained_run, tmp_path) -> Path:
    """A copy of the tiny trained run, free to change."""
    return Path(shutil.copytree(trained_run, tmp_path / "logs" / "tiny"))


def error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("evaluate.py: error: ")
    return lines[0]


def test_scores_model_and_baselines_on_the_test_split(run, capsys):
    assert evaluate.main(["--model", str(run), "--quiet"]) == 0
    out = capsys.readouterr().out
    for name in PREDICTORS:
        assert name in out
    assert "MSE note" in out and "pitch acc." in out and "NLL/row" in out
    result = json.loads((run / "evaluation.json").read_text())["test"]
    assert list(result["scores"]) == PREDICTORS
    for name in PREDICTORS:
        assert sorted(result["scores"][name]) == sorted(SCORES)
    assert result["scores"]["repeat previous row"]["nll"] is None  # no distribution
    for name in ("model (regression head)", "training mean", "Markov chain (pitch)"):
        assert np.isfinite(result["scores"][name]["nll"])
    assert result["residual_std"] is not None and set(result["residual_std"]) == {"note", "velocity", "time"}

    # The same rows scored independently: the row after every 50-row window of the test file.
    split = json.loads((run / "split.json").read_text())
    representation = NoteMatrix()
    test = [representation.encode(Path(split["root"]) / key).steps for key in split["test"]]
    train = [representation.encode(Path(split["root"]) / key).steps for key in split["train"]]
    windows = np.stack([a[i - 50 : i] for a in test for i in range(50, len(a))])
    target = np.concatenate([a[50:] for a in test])
    assert result["rows"] == len(target) and result["files"] == split["test"]
    output = keras.ops.convert_to_numpy(load_model(run)(windows, training=False))[:, -1]
    expected = score(Prediction(output.astype(np.float64)), target.astype(np.float64))
    for key in ("mse_note", "mse_velocity", "mse_time", "mse", "pitch_accuracy"):
        assert result["scores"]["model (regression head)"][key] == pytest.approx(expected[key], rel=1e-5, abs=1e-7)
    validation = [representation.encode(Path(split["root"]) / key).steps for key in split["validation"]]
    baselines = Baselines.fit(train, validation).score_all(test, 50)  # the n-grams tuned on validation
    for name, scores in baselines.items():
        for key in SCORES:
            assert result["scores"][name][key] == pytest.approx(scores[key])


def test_residual_std_from_calibration_json_else_the_validation_split(run, capsys):
    std = {"note": 0.05, "velocity": 0.2, "time": 0.1}
    (run / "calibration.json").write_text(json.dumps({"residual_std": std, "rows": 10, "split": "validation"}))
    assert evaluate.main(["--model", str(run), "--quiet"]) == 0
    result = json.loads((run / "evaluation.json").read_text())["test"]
    assert result["residual_std"] == std and "calibration.json" in result["residual_std_source"]
    (run / "calibration.json").unlink()
    assert evaluate.main(["--model", str(run), "--quiet"]) == 0
    result = json.loads((run / "evaluation.json").read_text())["test"]
    assert result["residual_std_source"] == "computed now from the 1 validation file (the run has no calibration.json)"
    assert result["residual_std"] != std and np.isfinite(result["scores"]["model (regression head)"]["nll"])
    assert "computed now from the 1 validation file " in capsys.readouterr().out


def test_a_model_worse_than_repeating_is_reported_as_such(run, capsys):
    model = load_model(run)
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])  # predicts the row (0, 0, 0)
    model.save(run / "model.keras")
    assert evaluate.main(["--model", str(run), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "The model (regression head) does not beat the repeat previous row on MSE note" in out
    result = json.loads((run / "evaluation.json").read_text())["test"]
    assert {"score": "mse", "baseline": "repeat previous row"}.items() <= next(
        item for item in result["not_beaten"] if item["score"] == "mse" and item["baseline"] == "repeat previous row"
    ).items()
    assert "model (regression head)" not in result["best"]["mse"]


def test_verdict_by_hand():
    names = ("mse_note", "mse_velocity", "mse_time", "mse", "pitch_accuracy", "nll")
    scores = {
        "model (regression head)": dict(zip(names, (0.1, 0.2, 0.3, 0.2, 0.5, 1.0))),
        "repeat previous row": dict(zip(names, (0.05, 0.3, 0.4, 0.25, 0.5, None))),
        "Markov chain (pitch)": dict(zip(names, (0.2, 0.3, 0.4, 0.3, 0.7, 0.5))),
    }
    columns = NoteMatrix.score_columns  # the note matrix's score columns, in the order of ``names``
    assert [column.key for column in columns] == list(names)
    assert best_per_column(scores, columns) == {
        "mse_note": ["repeat previous row"], "mse_velocity": ["model (regression head)"],
        "mse_time": ["model (regression head)"], "mse": ["model (regression head)"],
        "pitch_accuracy": ["Markov chain (pitch)"], "nll": ["Markov chain (pitch)"],
    }
    beaten = not_beaten(scores, "model (regression head)", columns)
    assert [(i["score"], i["baseline"]) for i in beaten] == [
        ("mse_note", "repeat previous row"), ("pitch_accuracy", "repeat previous row"),  # a tie is not a win
        ("pitch_accuracy", "Markov chain (pitch)"), ("nll", "Markov chain (pitch)")]
    assert verdict({"head": "regression", "not_beaten": beaten}) == [
        "The model (regression head) does not beat the repeat previous row on MSE note and pitch accuracy.",
        "The model (regression head) does not beat the Markov chain (pitch) on pitch accuracy and NLL."]
    assert verdict({"head": "regression", "not_beaten": []}) == [
        "The model (regression head) beats every baseline on every score."]


# -- generated files ------------------------------------------------------------------------------

def notes(pitches, step, duration):
    """``(start, duration, pitch, velocity)`` of one note per ``step`` seconds."""
    return [(i * step, duration, pitch, 90) for i, pitch in enumerate(pitches)]


@pytest.fixture
def hand_run(tmp_path) -> Path:
    """A run folder over two training files built in code (no model: --generated needs none)."""
    songs = tmp_path / "songs"
    songs.mkdir()
    write_song(songs / "up.mid", notes([60, 62, 64, 65, 67, 69, 71, 72], 0.5, 0.4))
    write_song(songs / "down.mid", notes([67, 65, 64, 62, 60], 0.5, 0.4))
    run = tmp_path / "logs" / "hand"
    run.mkdir(parents=True)
    config = {"train": {"dataset": str(songs), "data_dir": str(tmp_path / "data"), "window_length": 4,
                        "max_files": None, "model": {}},
              "representation": NoteMatrix().to_json(),
              "dataset": {"name": str(songs), "root": str(songs), "files": 2, "used": 2, "skipped": 0,
                          "fingerprint": ""}}
    (run / "config.json").write_text(json.dumps(config))
    split = {"dataset": "songs", "root": str(songs), "seed": 0, "train": ["down.mid", "up.mid"], "validation": [],
             "test": []}
    (run / "split.json").write_text(json.dumps(split))
    return run


def test_generated_statistics_by_hand(hand_run, tmp_path, capsys):
    generated = tmp_path / "generated"
    (generated / "sub").mkdir(parents=True)
    write_song(generated / "collapse.mid", notes([60] * 8, 0.25, 0.2))  # one pitch, 8 times
    write_song(generated / "sub" / "copy.midi", notes([62, 64, 65, 67, 50], 0.5, 0.4))  # 4 notes of up.mid
    (generated / "broken.mid").write_bytes(b"not a MIDI file at all")
    assert evaluate.main(["--model", str(hand_run), "--generated", str(generated)]) == 0
    out = capsys.readouterr().out
    result = json.loads((hand_run / "evaluation.json").read_text())["generated"]
    assert result["files"] == ["collapse.mid", "sub/copy.midi"]
    assert list(result["skipped"]) == ["broken.mid"] and "not a MIDI file" in result["skipped"]["broken.mid"]
    mine, theirs = result["generated"], result["training"]
    assert (mine["files"], theirs["files"]) == (2, 2)
    # collapse: range 0, 1 pitch, intervals 0, 8 notes in 1.95 s, onsets 0.25 s apart, run of 8, 4-grams 1 - 1/5
    # copy: range 67 - 50, 5 pitches, 4 classes (D E F G), intervals 2 1 2 17, 5 notes in 2.4 s, run of 1, no repeat
    expected = {
        "pitch_range": (17 / 2, 0, 17), "pitches_used": (3, 1, 5), "pitch_classes_used": (2.5, 1, 4),
        "average_pitch_interval": (22 / 4 / 2, 0, 5.5), "note_density": ((8 / 1.95 + 5 / 2.4) / 2, 5 / 2.4, 8 / 1.95),
        "average_inter_onset_interval": (0.375, 0.25, 0.5), "polyphony": (1, 1, 1), "in_scale_rate": (1, 1, 1),
        "longest_repeated_pitch": (4.5, 1, 8), "repeated_4gram_fraction": (0.4, 0, 0.8),
    }
    for name, (mean, low, high) in expected.items():
        assert mine[name] == pytest.approx({"mean": mean, "min": low, "max": high}), name
    # training: up (range 12, 8 pitches) and down (range 7, 5 pitches); no repeated pitch or 4-gram
    assert theirs["pitch_range"] == {"mean": 9.5, "min": 7, "max": 12}
    assert theirs["longest_repeated_pitch"] == {"mean": 1, "min": 1, "max": 1}
    assert theirs["repeated_4gram_fraction"] == {"mean": 0, "min": 0, "max": 0}
    # pooled pitch classes: generated C x8, D x2 (62, 50), E, F, G; training C x3, D x2, E x2, F x2, G x2, A, B
    histogram = np.array([8, 0, 2, 0, 1, 1, 0, 1, 0, 0, 0, 0]) / 13
    training_histogram = np.array([3, 0, 2, 0, 2, 2, 0, 2, 0, 1, 0, 1]) / 13
    np.testing.assert_allclose(mine["pitch_class_histogram"], histogram, atol=1e-6)
    np.testing.assert_allclose(theirs["pitch_class_histogram"], training_histogram, atol=1e-6)
    assert mine["pitch_class_distance"] == pytest.approx(jensen_shannon(histogram, training_histogram), abs=1e-5)
    assert mine["longest_copied_notes"] == {"mean": 2.5, "max": 4}  # 60 alone; 62 64 65 67 from up.mid
    # flagged: generated means outside the training files' [min, max]. Training: up (8 pitches, 7 classes,
    # intervals 12/7, 8 notes in 3.9 s), down (5, 5, 7/4, 5 notes in 2.4 s), onsets 0.5 s apart, polyphony 1.
    assert result["outside_training_range"] == [
        "pitches_used", "pitch_classes_used", "average_pitch_interval", "note_density",
        "average_inter_onset_interval", "longest_repeated_pitch", "repeated_4gram_fraction"]
    flagged = [line for line in out.splitlines() if "! " in line and "[" in line]
    assert [line.split("  ")[0] for line in flagged] == [
        "pitches used", "pitch classes used", "average pitch interval (semitones)", "note density (notes/s)",
        "average inter-onset interval (s)", "longest run of one pitch (notes)", "repeated 4-gram fraction (collapse)"]
    assert "longest run of notes copied from one training file (memorisation): max 4" in out
    assert "skipped broken.mid: not a MIDI file" in out


def test_generated_files_without_notes(hand_run, tmp_path, capsys):
    generated = tmp_path / "generated"
    generated.mkdir()
    drums = track_chunk([(0, tempo_event(500_000)), (0, b"\x99\x24\x7f"), (100, b"\x89\x24\x00")])
    (generated / "drums.mid").write_bytes(smf([drums], fmt=0))
    assert evaluate.main(["--model", str(hand_run), "--generated", str(generated)]) == 0
    out = capsys.readouterr().out
    result = json.loads((hand_run / "evaluation.json").read_text())["generated"]
    assert result["generated"]["pitch_range"] is None and result["generated"]["pitch_class_distance"] is None
    assert result["generated"]["longest_copied_notes"] == {"mean": 0.0, "max": 0}
    assert result["outside_training_range"] == []
    assert "pitch-class distance to the training set (Jensen-Shannon, 0 same .. 1 disjoint): -" in out


def test_longest_copied_run_agrees_with_brute_force():
    rng = np.random.default_rng(5)
    sources = [rng.integers(60, 64, size) for size in (40, 3, 25)]
    finder = CopiedRuns(sources)

    def brute(generated):
        return max((n for n in range(1, len(generated) + 1) for i in range(len(generated) - n + 1)
                    for s in sources for j in range(len(s) - n + 1)
                    if np.array_equal(generated[i : i + n], s[j : j + n])), default=0)

    for size in (0, 1, 5, 30):
        generated = rng.integers(60, 65, size)
        assert finder.longest(generated) == brute(generated)
    assert finder.longest(sources[0][7:31]) == 24  # a verbatim copy
    assert CopiedRuns([]).longest(np.array([60, 62])) == 0


def test_test_scores_and_generated_statistics_share_one_file(run, song_folder, tmp_path, capsys):
    generated = tmp_path / "generated"
    generated.mkdir()
    shutil.copy(song_folder / "song0.mid", generated / "a.mid")
    assert evaluate.main(["--model", str(run), "--quiet"]) == 0
    assert evaluate.main(["--model", str(run), "--generated", str(generated)]) == 0
    saved = json.loads((run / "evaluation.json").read_text())
    assert sorted(saved) == ["generated", "test"]
    elsewhere = tmp_path / "out.json"
    assert evaluate.main(["--model", str(run), "--generated", str(generated), "--json", str(elsewhere)]) == 0
    assert list(json.loads(elsewhere.read_text())) == ["generated"]
    capsys.readouterr()


def test_newest_run_is_evaluated_by_default(run, tmp_path, capsys):
    assert evaluate.main(["--logdir", str(run.parent), "--quiet"]) == 0
    assert (run / "evaluation.json").is_file()
    capsys.readouterr()


# -- bad input: one line, exit status 2 ----------------------------------------------------------

def test_missing_run_is_one_line_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "evaluate.py", "--model", str(tmp_path / "nope")], cwd=ROOT,
                            capture_output=True, check=False, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"evaluate.py: error: {tmp_path / 'nope'}: no such run folder"]


def test_empty_logdir_is_one_line_exit_2(tmp_path, capsys):
    assert evaluate.main(["--logdir", str(tmp_path)]) == 2
    assert "no trained run here" in error_line(capsys)


def test_run_without_test_files(run, capsys):
    split = json.loads((run / "split.json").read_text())
    split["train"] += split.pop("test")
    split["test"] = []
    (run / "split.json").write_text(json.dumps(split))
    assert evaluate.main(["--model", str(run), "--quiet"]) == 2
    assert "the run has no test files" in error_line(capsys)
    assert not (run / "evaluation.json").exists()


def test_dataset_gone(run, tmp_path, capsys):
    config = json.loads((run / "config.json").read_text())
    config["train"]["dataset"] = str(tmp_path / "moved-away")
    (run / "config.json").write_text(json.dumps(config))
    assert evaluate.main(["--model", str(run), "--quiet"]) == 2
    line = error_line(capsys)
    assert "the run's dataset cannot be read" in line and "moved-away" in line and "--dataset" in line


def test_dataset_missing_a_test_file(run, song_folder, tmp_path, capsys):
    split = json.loads((run / "split.json").read_text())
    partial = tmp_path / "partial"
    shutil.copytree(song_folder, partial)
    (partial / split["test"][0]).unlink()
    assert evaluate.main(["--model", str(run), "--dataset", str(partial), "--quiet"]) == 2
    line = error_line(capsys)
    assert f"1 of the run's train/validation/test files are not in {partial}" in line
    assert split["test"][0] in line


def test_moved_dataset_is_found_with_the_dataset_flag(run, song_folder, tmp_path, capsys):
    config = json.loads((run / "config.json").read_text())
    config["train"]["dataset"] = str(tmp_path / "moved-away")
    (run / "config.json").write_text(json.dumps(config))
    moved = Path(shutil.copytree(song_folder, tmp_path / "moved"))
    assert evaluate.main(["--model", str(run), "--dataset", str(moved), "--quiet"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("kind", ["missing", "empty", "unreadable"])
def test_bad_generated_folder(hand_run, tmp_path, capsys, kind):
    folder = tmp_path / "generated"
    if kind != "missing":
        folder.mkdir()
    if kind == "unreadable":
        (folder / "x.mid").write_bytes(b"")
    assert evaluate.main(["--model", str(hand_run), "--generated", str(folder)]) == 2
    line = error_line(capsys)
    assert {"missing": "no such folder", "empty": "no .mid or .midi files",
            "unreadable": "none of the 1 MIDI files can be read (first: x.mid: empty file"}[kind] in line
