"""NoteMatrix: learn music from MIDI with an LSTM, and write new MIDI."""

from note_matrix.errors import DatasetError, MidiError, NoteMatrixError, RunError, SeedError
from note_matrix.representations import TIME_SCALE_SECONDS, NoteMatrix, matrix_to_midi, midi_to_matrix

__version__ = "0.1.0"

__all__ = [
    "TIME_SCALE_SECONDS",
    "DatasetError",
    "MidiError",
    "NoteMatrix",
    "NoteMatrixError",
    "RunError",
    "SeedError",
    "matrix_to_midi",
    "midi_to_matrix",
]
