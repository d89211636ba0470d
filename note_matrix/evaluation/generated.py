"""The ``"generated"`` entry of ``evaluation.json``: music statistics of generated files.

``music_stats.compare`` of a folder of generated MIDI files with the run's training files:
each statistic's mean and range on both sides, the generated files' pitch-class distance
to the training set and the longest run of notes copied from one training file.
"""

from __future__ import annotations

from pathlib import Path

from note_matrix import runs
from note_matrix.datasets import find_midi_files
from note_matrix.errors import MidiError, RunError
from note_matrix.evaluation.music_stats import FILE_STATISTICS, Notes, compare
from note_matrix.midi import read_midi
from note_matrix.run_data import RunData, require_files


def read_notes(paths: dict[str, Path]) -> tuple[dict[str, Notes], dict[str, str]]:
    """``(notes, skipped)``: each readable MIDI file's notes by name; unreadable ones with the reason."""
    notes, skipped = {}, {}
    for name, path in paths.items():
        try:
            notes[name] = Notes.from_events(read_midi(path))
        except MidiError as error:
            skipped[name] = error.reason
    return notes, skipped


def training_notes(data: RunData) -> tuple[dict[str, Notes], dict[str, str]]:
    """``read_notes`` of the run's training files (``DatasetError`` when they are not all there)."""
    require_files(data, ("train",))
    return read_notes({key: data.files.path(key) for key in data.split["train"]})


def compare_generated(data: RunData, directory: str | Path) -> dict:
    """The ``"generated"`` entry of ``evaluation.json``: ``music_stats.compare`` of every
    .mid/.midi under ``directory`` (recursively) with the run's training files.

    Raises ``RunError`` for a missing folder, one without MIDI files or with none readable.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise RunError(f"{directory}: no such folder of generated MIDI files")
    keys = find_midi_files(directory)
    if not keys:
        raise RunError(f"{directory}: no .mid or .midi files in this folder or below it")
    generated, skipped = read_notes({key: directory / key for key in keys})
    if not generated:
        first = next(iter(skipped.items()))
        raise RunError(f"{directory}: none of the {len(keys)} MIDI files can be read (first: {first[0]}: {first[1]})")
    training, training_skipped = training_notes(data)
    result = compare(list(generated.values()), list(training.values()))
    result.update({
        "created": runs.utc_now(),
        "directory": str(directory),
        "files": list(generated),
        "skipped": skipped,
        "training_files_skipped": training_skipped,
        "outside_training_range": outside_training_range(result),
    })
    return result


def outside_training_range(result: dict) -> list[str]:
    """The statistics whose generated mean lies outside the training files' [min, max]."""
    out = []
    for name in FILE_STATISTICS:
        mine, theirs = result["generated"].get(name), result["training"].get(name)
        if mine and theirs and not theirs["min"] <= mine["mean"] <= theirs["max"]:
            out.append(name)
    return out
