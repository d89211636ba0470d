"""Generating note matrices with a trained model and writing them as playable MIDI.

Backend-neutral: Keras only (no ``tf.*``), so the same code runs under JAX.

The card's method: slide a window of ``window_length`` rows over the song; each step
predicts the next row from the whole window, the row is made valid (values clipped,
pitch and velocity rounded to MIDI integers, the gap capped) and appended. Whatever the
model predicts, ``playable_events`` turns the rows into a file that any MIDI reader
accepts and plays: a note-on of a pitch already sounding first releases it (or, within
``MIN_NOTE_SECONDS`` of its onset, is merged into it), a note-off of a silent pitch or
one sooner than ``MIN_NOTE_SECONDS`` after its onset is dropped, and every note still
sounding at the end is released. No note is shorter than ``MIN_NOTE_SECONDS``.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from note_matrix import runs
from note_matrix.errors import RunError
from note_matrix.midi import DEFAULT_TEMPO_US_PER_BEAT, write_midi
from note_matrix.representation import MIDI_MAX, NoteMatrix

MAX_GENERATED_GAP_SECONDS = 4.0  # a predicted silence longer than this is shortened to it
MIN_NOTE_SECONDS = 0.02  # shorter notes (0 ticks, or a few) are merged or held this long
RELEASE_SECONDS = 0.5  # notes still sounding at the end are released this long after the last event


# What Keras raises for a truncated, tampered or unsafe .keras file (safe mode refuses
# lambdas and unknown classes rather than running them).
_MODEL_FILE_ERRORS = (OSError, ValueError, TypeError, KeyError, AttributeError, ImportError, zipfile.BadZipFile)


def load_model(run_dir: str | os.PathLike) -> keras.Model:
    """The run's best model, loaded in Keras safe mode, without its optimiser."""
    path = Path(run_dir) / runs.MODEL_FILE
    if not path.is_file():
        raise RunError(f"{run_dir}: no {runs.MODEL_FILE} (training did not finish an epoch?)")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except _MODEL_FILE_ERRORS as error:
        first_line = (str(error).strip().splitlines() or [""])[0][:300]
        raise RunError(f"{path}: cannot load the model ({type(error).__name__}: {first_line})") from None


def valid_row(row: np.ndarray, representation: NoteMatrix) -> np.ndarray:
    """A predicted ``(3,)`` row made a valid note-matrix row (on the MIDI integer grid)."""
    max_time = representation.scale_time(MAX_GENERATED_GAP_SECONDS)
    row = np.nan_to_num(np.asarray(row, dtype=np.float64), nan=0.0)
    note = np.rint(np.clip(row[0], 0.0, 1.0) * MIDI_MAX) / MIDI_MAX
    velocity = np.rint(np.clip(row[1], 0.0, 1.0) * MIDI_MAX) / MIDI_MAX
    time = np.clip(row[2], 0.0, max_time)
    return np.array([note, velocity, time], dtype=np.float32)


def generate_rows(
    model: keras.Model,
    primer: np.ndarray,
    length: int,
    representation: NoteMatrix,
    *,
    progress: bool = True,
) -> np.ndarray:
    """``length`` new rows after ``primer`` (``(window, 3)``), window recomputed each step.

    Returns ``(length, 3)`` float32, every row valid (see ``valid_row``).
    """
    window = np.array(primer, dtype=np.float32)[None]  # (1, window, 3)
    rows = np.zeros((length, 3), dtype=np.float32)
    for i in tqdm(range(length), desc="generating", unit="row", disable=not progress):
        prediction = keras.ops.convert_to_numpy(model.predict_on_batch(window))[0]
        rows[i] = valid_row(prediction, representation)
        window = np.concatenate([window[:, 1:], rows[None, i : i + 1]], axis=1)
    return rows


def playable_events(matrix: np.ndarray, representation: NoteMatrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Valid rows to balanced note events ``(time_seconds, pitch, velocity)``.

    Every note-on is matched by exactly one note-off of the same pitch at least
    ``MIN_NOTE_SECONDS`` later.
    """
    onsets, pitches, velocities = representation.to_notes(matrix)
    started: dict[int, float] = {}  # sounding pitch -> onset
    times, out_pitch, out_velocity = [], [], []

    def emit(time: float, pitch: int, velocity: int) -> None:
        times.append(time)
        out_pitch.append(pitch)
        out_velocity.append(velocity)

    for time, pitch, velocity in zip(onsets.tolist(), pitches.tolist(), velocities.tolist()):
        held = time - started[pitch] if pitch in started else None
        if velocity > 0:
            if held is not None and held < MIN_NOTE_SECONDS:
                continue  # the same pitch struck again at once: one note
            if held is not None:
                emit(time, pitch, 0)  # re-strike: release first
            started[pitch] = time
            emit(time, pitch, velocity)
        elif held is not None and held >= MIN_NOTE_SECONDS:
            del started[pitch]
            emit(time, pitch, 0)
        # else: a note-off of a silent pitch, or one at once after its onset: dropped
    end = (times[-1] if times else 0.0) + RELEASE_SECONDS
    for pitch in sorted(started):
        emit(end, pitch, 0)
    return np.array(times, dtype=np.float64), np.array(out_pitch, np.int16), np.array(out_velocity, np.int16)


def write_playable(
    matrix: np.ndarray,
    path: str | os.PathLike,
    representation: NoteMatrix,
    *,
    tempo_us_per_beat: int = DEFAULT_TEMPO_US_PER_BEAT,
) -> int:
    """Write rows as a playable MIDI file; returns the number of notes written."""
    time_seconds, pitch, velocity = playable_events(matrix, representation)
    write_midi(path, time_seconds, pitch, velocity, tempo_us_per_beat=tempo_us_per_beat)
    return int(np.count_nonzero(velocity))
