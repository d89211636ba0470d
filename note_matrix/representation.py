"""Representations: how a source file becomes an array of steps, and back.

DESIGN.md plans three (note matrix, pitch/chord tokens, ABC characters) behind one
interface. Each says whether its steps are continuous (regression head) or categorical
(softmax head) and saves its constants as JSON in the run folder, so a trained model is
always decoded with the constants it was trained with.

The note matrix (seed 003, the design card) is one row per note message of all
non-drum tracks, merged in time order::

    column 0  note       pitch / 127
    column 1  velocity   velocity / 127, 0 for a note-off
    column 2  time       gap g (seconds) since the previous row, as g / (g + c)

with ``c = TIME_SCALE_SECONDS`` (0.25 s: a quarter note at 240 bpm maps to 0.5; the
median non-zero gap of the pop dataset is 0.012 s, its 99th percentile 0.76 s). The
time scaling is invertible for every gap, ``g = c x / (1 - x)``, so nothing is clipped;
gaps too long to survive float32 within the onset tolerance (about 90 s) are refused
with a ``MidiError``, never silently shortened.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod

import numpy as np

from note_matrix.errors import MidiError
from note_matrix.midi import (
    DEFAULT_TEMPO_US_PER_BEAT,
    DEFAULT_TICKS_PER_BEAT,
    MidiNotes,
    read_midi,
    write_midi,
)

TIME_SCALE_SECONDS = 0.25
ONSET_TOLERANCE_SECONDS = 1e-3  # the largest onset drift a float32 matrix may introduce
MIDI_MAX = 127


class Representation(ABC):
    """A reversible mapping between a source file and a (steps, features) array."""

    name: str
    features: int
    continuous: bool  # True: regression head; False: categorical (softmax) head

    @abstractmethod
    def encode(self, path: str | os.PathLike) -> np.ndarray:
        """Read ``path``; raise ``MidiError`` (or a subclass's error) if it cannot be."""

    @abstractmethod
    def to_json(self) -> dict:
        """Everything needed to rebuild this representation with its constants."""


class NoteMatrix(Representation):
    """The card's note matrix: ``(rows, 3)`` float32 in [0, 1], columns note, velocity, time."""

    name = "note_matrix"
    features = 3
    continuous = True
    columns = ("note", "velocity", "time")

    def __init__(
        self,
        time_scale_seconds: float = TIME_SCALE_SECONDS,
        onset_tolerance_seconds: float = ONSET_TOLERANCE_SECONDS,
    ):
        if time_scale_seconds <= 0:
            raise ValueError(f"time_scale_seconds must be positive, got {time_scale_seconds}")
        self.time_scale_seconds = float(time_scale_seconds)
        self.onset_tolerance_seconds = float(onset_tolerance_seconds)

    # -- time column ---------------------------------------------------------------
    def scale_time(self, gap_seconds: np.ndarray) -> np.ndarray:
        """Gaps in seconds (>= 0) to the time column, in [0, 1)."""
        gap_seconds = np.asarray(gap_seconds, dtype=np.float64)
        return gap_seconds / (gap_seconds + self.time_scale_seconds)

    def unscale_time(self, time_column: np.ndarray) -> np.ndarray:
        """The time column (in [0, 1)) back to gaps in seconds."""
        x = np.asarray(time_column, dtype=np.float64)
        with np.errstate(divide="ignore"):
            return self.time_scale_seconds * x / (1.0 - x)

    # -- notes <-> matrix ----------------------------------------------------------
    def from_notes(self, notes: MidiNotes, path: str | os.PathLike = "<notes>") -> np.ndarray:
        """``MidiNotes`` to a ``(rows, 3)`` float32 matrix; ``MidiError`` if unrepresentable."""
        if len(notes) == 0:
            return np.zeros((0, 3), dtype=np.float32)
        gaps = np.diff(notes.time_seconds, prepend=0.0)
        matrix = np.stack(
            [notes.pitch / MIDI_MAX, notes.velocity / MIDI_MAX, self.scale_time(gaps)], axis=1
        ).astype(np.float32)
        onsets = np.cumsum(self.unscale_time(matrix[:, 2]))
        within = np.abs(onsets - notes.time_seconds) <= self.onset_tolerance_seconds  # False for nan
        if not within.all():
            worst = int(np.argmin(within))  # the first event that drifts: its gap is the culprit
            raise MidiError(
                path,
                f"a gap of {gaps[worst]:.1f} s before note event {worst} is too long for the "
                f"time column (float32 keeps onsets within {self.onset_tolerance_seconds * 1e3:g} ms "
                f"only for gaps up to about 90 s)",
            )
        return matrix

    def to_notes(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A matrix back to ``(time_seconds float64, pitch int, velocity int)``.

        Raises ``ValueError`` for a matrix of the wrong shape or with values outside
        [0, 1] (time outside [0, 1)); ``generation.playable_matrix`` makes any model
        output valid first.
        """
        matrix = np.asarray(matrix)
        if matrix.ndim != 2 or matrix.shape[1] != 3:
            raise ValueError(f"a note matrix has shape (rows, 3), got {matrix.shape}")
        if not np.all(np.isfinite(matrix)):
            raise ValueError("note matrix holds NaN or infinite values")
        if np.any(matrix < 0) or np.any(matrix[:, :2] > 1) or np.any(matrix[:, 2] >= 1):
            raise ValueError("note matrix values must lie in [0, 1] (time column in [0, 1))")
        pitch = np.rint(matrix[:, 0].astype(np.float64) * MIDI_MAX).astype(np.int16)
        velocity = np.rint(matrix[:, 1].astype(np.float64) * MIDI_MAX).astype(np.int16)
        return np.cumsum(self.unscale_time(matrix[:, 2])), pitch, velocity

    # -- files ---------------------------------------------------------------------
    def encode(self, path: str | os.PathLike) -> np.ndarray:
        return self.from_notes(read_midi(path), path)

    def decode(
        self,
        matrix: np.ndarray,
        path: str | os.PathLike,
        *,
        tempo_us_per_beat: int = DEFAULT_TEMPO_US_PER_BEAT,
        ticks_per_beat: int = DEFAULT_TICKS_PER_BEAT,
    ) -> None:
        time_seconds, pitch, velocity = self.to_notes(matrix)
        write_midi(
            path,
            time_seconds,
            pitch,
            velocity,
            tempo_us_per_beat=tempo_us_per_beat,
            ticks_per_beat=ticks_per_beat,
        )

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "columns": list(self.columns),
            "continuous": self.continuous,
            "time_scale_seconds": self.time_scale_seconds,
            "time_scaling": "gap / (gap + time_scale_seconds)",
            "onset_tolerance_seconds": self.onset_tolerance_seconds,
            "pitch_scale": MIDI_MAX,
            "velocity_scale": MIDI_MAX,
        }


_REPRESENTATIONS = {NoteMatrix.name: NoteMatrix}


def representation_from_json(data: dict) -> Representation:
    """Rebuild a representation saved with ``to_json`` (as in a run's config.json)."""
    name = data.get("name")
    if name == NoteMatrix.name:
        return NoteMatrix(data["time_scale_seconds"], data["onset_tolerance_seconds"])
    raise ValueError(f"unknown representation {name!r}; known: {sorted(_REPRESENTATIONS)}")


def midi_to_matrix(path: str | os.PathLike) -> np.ndarray:
    """Read a MIDI file as a note matrix: ``(rows, 3)`` float32 in [0, 1].

    One row per note message of all non-drum tracks, merged in time order:
    ``[pitch / 127, velocity / 127 (0 = note-off), gap / (gap + 0.25 s)]``.
    Raises ``MidiError`` naming the file and the reason if it cannot be read.
    """
    return NoteMatrix().encode(path)


def matrix_to_midi(
    matrix: np.ndarray,
    path: str | os.PathLike,
    *,
    tempo_us_per_beat: int = DEFAULT_TEMPO_US_PER_BEAT,
    ticks_per_beat: int = DEFAULT_TICKS_PER_BEAT,
) -> None:
    """Write a note matrix as a type 0 MIDI file (one track, channel 0, one tempo).

    Onsets are rounded to the nearest tick of the cumulative time (0.52 ms at the
    defaults); pitches and velocities are written exactly.
    """
    NoteMatrix().decode(matrix, path, tempo_us_per_beat=tempo_us_per_beat, ticks_per_beat=ticks_per_beat)
