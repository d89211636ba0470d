"""Generating note matrices with a trained model and writing them as playable MIDI.

Backend-neutral: Keras only (``keras.ops``, no ``tf.*`` or ``jax.*``), so the same code
runs under TensorFlow and JAX; ``note_matrix/backend.py`` holds the one backend-specific
piece (compiling a function).

Two methods, one output format (``(N, length, 3)`` float32, every row valid):

- ``"window"``, the card's: slide a window of ``window_length`` rows over the piece;
  each step predicts the next row from the whole window with ``model.predict_on_batch``,
  the row is made valid and appended. About 50 LSTM steps and one Keras call per row.
- ``"carried"`` (the default): ``engine.CarriedStateGenerator`` runs the primer through
  one recurrent step per row to build the state, then carries it forward, one step per
  new row, in a loop compiled once. The first row equals the window method's; the
  methods agree while the piece fits in the window, after which the carried state keeps
  the whole piece as context (the window method forgets all but the last 50 rows).

Both make each predicted row valid the same way: values clipped to [0, 1], pitch and
velocity rounded to MIDI integers (k / 127), the gap capped at
``MAX_GENERATED_GAP_SECONDS``; ``valid_row`` (NumPy) and ``valid_rows`` (``keras.ops``,
inside the compiled loop, so the row fed back is the row written) compute it in float32
with the same operations. Whatever the model predicts, ``playable_events`` turns the rows
into a file that any MIDI reader accepts and plays: a note-on of a pitch already sounding
first releases it (or, within ``MIN_NOTE_SECONDS`` of its onset, is merged into it), a
note-off of a silent pitch or one sooner than ``MIN_NOTE_SECONDS`` after its onset is
dropped, and every note still sounding at the end is released. No note is shorter than
``MIN_NOTE_SECONDS``.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import keras
import numpy as np
from keras import ops
from tqdm import tqdm

from note_matrix import runs
from note_matrix.engine import CarriedStateGenerator
from note_matrix.errors import RunError
from note_matrix.midi import DEFAULT_TEMPO_US_PER_BEAT, write_midi
from note_matrix.representation import MIDI_MAX, NoteMatrix

MAX_GENERATED_GAP_SECONDS = 4.0  # a predicted silence longer than this is shortened to it
MIN_NOTE_SECONDS = 0.02  # shorter notes (0 ticks, or a few) are merged or held this long
RELEASE_SECONDS = 0.5  # notes still sounding at the end are released this long after the last event
METHODS = ("carried", "window")


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


# -- validity ----------------------------------------------------------------------------------

def max_time_value(representation: NoteMatrix) -> np.float32:
    """The time column of a ``MAX_GENERATED_GAP_SECONDS`` gap: the cap on generated gaps."""
    return np.float32(representation.scale_time(MAX_GENERATED_GAP_SECONDS))


# k / 127 as the note matrix stores it (float64 division, then float32). Rounded values are
# looked up here rather than divided, so NumPy and compiled code (where XLA may turn a
# division into a multiplication) give the very same float32 values as the encoder.
MIDI_GRID = (np.arange(MIDI_MAX + 1) / MIDI_MAX).astype(np.float32)


def valid_row(row: np.ndarray, representation: NoteMatrix) -> np.ndarray:
    """Predicted rows ``(..., 3)`` made valid note-matrix rows (on the MIDI integer grid).

    NaN becomes 0, values are clipped to [0, 1], pitch and velocity rounded to k / 127
    (half to even, k from the float32 product with 127, the value from ``MIDI_GRID``),
    the time column capped at ``max_time_value``. The same float32 operations as
    ``valid_rows``, so both give the same rows.
    """
    row = np.clip(np.nan_to_num(np.asarray(row, dtype=np.float32), nan=0.0), np.float32(0.0), np.float32(1.0))
    grid = MIDI_GRID[np.rint(row[..., :2] * np.float32(MIDI_MAX)).astype(np.int64)]
    time = np.minimum(row[..., 2:], max_time_value(representation))
    return np.concatenate([grid, time], axis=-1)


def valid_rows(predictions, representation: NoteMatrix):
    """``valid_row`` in ``keras.ops``: predictions ``(..., 3)`` to valid rows, in-graph."""
    predictions = ops.clip(ops.nan_to_num(ops.cast(predictions, "float32"), nan=0.0), 0.0, 1.0)
    steps = ops.cast(ops.round(predictions[..., :2] * float(MIDI_MAX)), "int32")
    grid = ops.take(ops.convert_to_tensor(MIDI_GRID), steps, axis=0)
    time = ops.minimum(predictions[..., 2:], float(max_time_value(representation)))
    return ops.concatenate([grid, time], axis=-1)


def deterministic_row_function(representation: NoteMatrix):
    """The row function of carried-state generation without sampling: the valid prediction.

    ``(prediction (N, F), noise_t (N, F)) -> row (N, F)``; ``noise_t`` is the sampling
    hook (see ``note_matrix.engine``), unused here.
    """
    def row_function(prediction, noise_t):
        del noise_t  # sampling (temperature, noise) will use it
        return valid_rows(prediction, representation)

    return row_function


# -- the two methods --------------------------------------------------------------------------

def _as_batch(primers: np.ndarray) -> tuple[np.ndarray, bool]:
    primers = np.asarray(primers, dtype=np.float32)
    if primers.ndim == 2:
        return primers[None], True
    if primers.ndim != 3:
        raise ValueError(f"primers must have shape (k, F) or (N, k, F), got {primers.shape}")
    return primers, False


def generate_window(
    model: keras.Model,
    primers: np.ndarray,
    length: int,
    representation: NoteMatrix,
    *,
    window_length: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """The card's method: ``model.predict_on_batch`` on the last ``window_length`` rows, per new row.

    ``primers`` ``(N, k, F)`` (or ``(k, F)``); ``window_length`` defaults to k. A
    primer shorter than the window grows until it fills it. The model's output may be
    ``(N, F)`` (the next row) or ``(N, steps, F)`` (a row per step; the last is used).
    Returns ``(N, length, F)`` float32 (``(length, F)`` for a 2-D primer), every row valid.
    """
    batch, single = _as_batch(primers)
    window_length = window_length or batch.shape[1]
    context = batch[:, -window_length:]
    rows = np.zeros((batch.shape[0], length, batch.shape[2]), dtype=np.float32)
    for i in tqdm(range(length), desc="generating", unit="row", disable=not progress):
        prediction = keras.ops.convert_to_numpy(model.predict_on_batch(context))
        if prediction.ndim == 3:
            prediction = prediction[:, -1]
        rows[:, i] = valid_row(prediction, representation)
        context = np.concatenate([context, rows[:, i : i + 1]], axis=1)[:, -window_length:]
    return rows[0] if single else rows


def carried_state_generator(model: keras.Model, representation: NoteMatrix) -> CarriedStateGenerator:
    """A compiled carried-state generator for ``model``, writing valid rows (no sampling yet)."""
    return CarriedStateGenerator(model, deterministic_row_function(representation))


def generate_rows(
    model: keras.Model,
    primers: np.ndarray,
    length: int,
    representation: NoteMatrix,
    *,
    method: str = "carried",
    window_length: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """``length`` new valid rows after each primer, by ``method`` (``"carried"`` or ``"window"``).

    ``primers`` ``(N, k, 3)`` float32 in [0, 1] (N pieces in one batch) or ``(k, 3)``.
    Returns ``(N, length, 3)`` float32, or ``(length, 3)`` for a 2-D primer.
    ``window_length`` only concerns the window method (default: k). To generate more
    than once with the same model, build ``carried_state_generator`` once and call its
    ``generate``: it compiles once per set of shapes.
    """
    if method == "window":
        return generate_window(model, primers, length, representation, window_length=window_length, progress=progress)
    if method != "carried":
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    batch, single = _as_batch(primers)
    rows = carried_state_generator(model, representation).generate(batch, length, progress=progress)
    return rows[0] if single else rows


# -- several pieces from one seed ---------------------------------------------------------------

def spread_primers(seed: np.ndarray, window_length: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` primers of ``window_length`` rows from evenly spaced places in ``seed``.

    ``seed`` ``(rows, F)`` with rows >= window_length. The first primer is the seed's
    first rows, the last ends at its last row. Returns ``(primers (count, window, F),
    starts (count,) int)``; a seed with fewer than ``window_length + count - 1`` rows
    has fewer distinct starts than ``count``, so some primers repeat (and, without
    sampling, their pieces too).
    """
    seed = np.asarray(seed, dtype=np.float32)
    if len(seed) < window_length:
        raise ValueError(f"the seed has {len(seed)} rows, fewer than the window ({window_length})")
    starts = np.rint(np.linspace(0, len(seed) - window_length, count)).astype(np.int64)
    return np.stack([seed[s : s + window_length] for s in starts]), starts


def output_paths(out: str | os.PathLike, count: int) -> list[Path]:
    """Where ``count`` pieces go: ``out`` itself for one piece; else ``out`` with ``{n}``
    replaced by 1..count, or, without ``{n}``, ``<stem>-<n><suffix>`` (``generated.mid``
    -> ``generated-1.mid``, ...)."""
    text = str(out)
    if "{n}" in text:
        return [Path(text.replace("{n}", str(n))) for n in range(1, count + 1)]
    path = Path(text)
    if count == 1:
        return [path]
    return [path.with_name(f"{path.stem}-{n}{path.suffix}") for n in range(1, count + 1)]


# -- playable MIDI ---------------------------------------------------------------------------

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
