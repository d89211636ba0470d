"""Reading a seed file to prime generation (no Keras here, so bad seeds fail fast)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from note_matrix.errors import SeedError
from note_matrix.midi import read_midi
from note_matrix.representation import NoteMatrix


@dataclass(frozen=True)
class Primer:
    """The first ``window_length`` rows of a seed: ``matrix`` is ``(window, 3)`` float32."""

    matrix: np.ndarray
    tempo_us_per_beat: int
    seed_rows: int  # how many rows the whole seed has


def read_primer(path: str | os.PathLike, representation: NoteMatrix, window_length: int) -> Primer:
    """The seed's first ``window_length`` note rows and its tempo.

    Raises ``MidiError`` for a file that is not readable MIDI and ``SeedError`` for one
    with no notes or fewer rows than the window.
    """
    notes = read_midi(path)
    matrix = representation.from_notes(notes, path)
    if len(matrix) == 0:
        raise SeedError(f"{path}: no notes to prime the model with (empty, or drums only)")
    if len(matrix) < window_length:
        raise SeedError(
            f"{path}: only {len(matrix)} note rows; the model needs at least {window_length} "
            f"(its window length) to prime generation"
        )
    return Primer(matrix[:window_length], notes.tempo_us_per_beat, len(matrix))
