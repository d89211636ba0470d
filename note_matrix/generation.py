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

Both turn the model's output into a row with the same ``row_function``: the head's point
row (``models.heads.point_rows``: the card's regressed row, or the most likely pitch),
or, with a ``Sampling`` (temperature, top-k, seed), a row drawn from the head's
distribution (``models.heads.sample_rows``) with random numbers drawn beforehand from
``numpy.random.default_rng(seed)``, so both methods draw the same rows and a seed repeats
a piece exactly. Both make each predicted or sampled row valid the same way: values clipped to [0, 1], pitch and
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
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import ops
from tqdm import tqdm

from models.heads import (
    MIDI_NOTES,
    HeadConfig,
    draw_noise,
    head_config,
    head_from_width,
    head_width,
    noise_width,
    point_rows,
    sample_rows,
    std_triplet,
)
from note_matrix import runs
from note_matrix.runs import load_model  # noqa: F401 (callers still import it from here)
from note_matrix.engine import CarriedStateGenerator
from note_matrix.errors import RunError
from note_matrix.midi import DEFAULT_TEMPO_US_PER_BEAT, write_midi
from note_matrix.representation import MIDI_MAX, NoteMatrix

MAX_GENERATED_GAP_SECONDS = 4.0  # a predicted silence longer than this is shortened to it
MIN_NOTE_SECONDS = 0.02  # shorter notes (0 ticks, or a few) are merged or held this long
RELEASE_SECONDS = 0.5  # notes still sounding at the end are released this long after the last event
METHODS = ("carried", "window")


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


# -- what each generated row is: the head's point row, or a sample -----------------------------

@dataclass(frozen=True)
class Sampling:
    """How rows are drawn from the head's distribution (``models.heads.sample_rows``).

    ``temperature``: softmax temperature of the categorical outputs (the pitch; the MDN's
    mixture weights) and the factor on the standard deviations of the continuous ones; 0
    means the point row (argmax), exactly as no sampling. ``top_k``: draw the pitch among
    the k most likely only. ``random_seed``: seeds ``numpy.random.default_rng``, from
    which every random number is drawn before the loop, so a seed repeats a piece exactly.
    ``residual_std``: ``(note, velocity, time)`` standard deviations around a regressed
    prediction (``calibration.json``); the regression and categorical heads need it.
    """

    temperature: float = 1.0
    top_k: int | None = None
    random_seed: int = 0
    residual_std: tuple[float, float, float] | None = None

    def __post_init__(self):
        if not (self.temperature >= 0 and np.isfinite(self.temperature)):
            raise ValueError(f"temperature must be finite and at least 0, got {self.temperature}")
        if self.top_k is not None and not 1 <= self.top_k <= MIDI_NOTES:
            raise ValueError(f"top_k must be between 1 and {MIDI_NOTES}, got {self.top_k}")
        if self.random_seed < 0:
            raise ValueError(f"random_seed must be 0 or more, got {self.random_seed}")
        if self.residual_std is not None:
            object.__setattr__(self, "residual_std", std_triplet(self.residual_std))

    @property
    def samples(self) -> bool:
        """Whether rows are random (temperature above 0)."""
        return self.temperature > 0


def model_head(model: keras.Model) -> HeadConfig:
    """The head of ``model``, read from its output's width (``models.heads.head_from_width``)."""
    return head_from_width(model.outputs[0].shape[-1])


def _head_of(model: keras.Model, head) -> HeadConfig:
    """``head`` (a ``ModelConfig``, ``HeadConfig`` or None: read from the model), checked against the model."""
    inferred = model_head(model)
    if head is None:
        return inferred
    head = head_config(head)
    if head.head != inferred.head or (head.head == "mdn" and head.mixtures != inferred.mixtures):
        raise RunError(f"{model.name}: its output of width {model.outputs[0].shape[-1]} is not the {head.head} "
                       f"head's ({head_width(head)})")
    return head


def row_function(representation: NoteMatrix, head=None, sampling: Sampling | None = None):
    """The row function of both generation methods (``keras.ops``, in-graph in the carried loop).

    ``(prediction (N, width), noise_t (N, noise_width)) -> row (N, 3)``: the head's
    point row (``sampling`` None or at temperature 0) or a sample from its distribution,
    made valid (``valid_rows``) so that what is written is what is fed back.
    """
    head = HeadConfig() if head is None else head_config(head)
    if sampling is None or not sampling.samples:
        def point(prediction, noise_t):
            del noise_t  # no randomness
            return valid_rows(point_rows(head, prediction), representation)

        return point
    if head.head != "mdn" and sampling.residual_std is None:
        raise RunError(f"sampling from the {head.head} head needs the residual standard deviations of the run "
                       f"({runs.CALIBRATION_FILE})")

    def sample(prediction, noise_t):
        return valid_rows(sample_rows(head, prediction, noise_t, temperature=sampling.temperature,
                                      top_k=sampling.top_k, residual_std=sampling.residual_std), representation)

    return sample


def deterministic_row_function(representation: NoteMatrix, head=None):
    """The row function without sampling: the valid point row of ``head`` (default: the card's regression).

    ``(prediction (N, width), noise_t) -> row (N, 3)``; ``noise_t`` is the sampling hook
    (see ``note_matrix.engine``), unused here.
    """
    return row_function(representation, head)


def sampling_noise(head, sampling: Sampling | None, pieces: int, length: int) -> np.ndarray | None:
    """``(pieces, length, noise_width)`` random numbers from ``sampling.random_seed``, or None
    without sampling. Both methods take the same numbers, so they sample the same rows."""
    if sampling is None or not sampling.samples:
        return None
    return draw_noise(head, np.random.default_rng(sampling.random_seed), (pieces, length))


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
    head=None,
    sampling: Sampling | None = None,
    noise: np.ndarray | None = None,
) -> np.ndarray:
    """The card's method: ``model.predict_on_batch`` on the last ``window_length`` rows, per new row.

    ``primers`` ``(N, k, F)`` (or ``(k, F)``); ``window_length`` defaults to k. A
    primer shorter than the window grows until it fills it. The model's output may be
    ``(N, width)`` (the next row) or ``(N, steps, width)`` (a row per step; the last is
    used). Each row is ``row_function(representation, head, sampling)`` of the prediction,
    the very function the carried loop compiles; ``noise`` ``(N, length, noise_width)``
    (default: drawn from ``sampling.random_seed``). Returns ``(N, length, F)`` float32
    (``(length, F)`` for a 2-D primer), every row valid.
    """
    batch, single = _as_batch(primers)
    head = _head_of(model, head)
    rows_of = row_function(representation, head, sampling)
    if noise is None:
        noise = sampling_noise(head, sampling, batch.shape[0], length)
    if noise is None:
        noise = np.zeros((batch.shape[0], length, noise_width(head)), np.float32)
    window_length = window_length or batch.shape[1]
    context = batch[:, -window_length:]
    rows = np.zeros((batch.shape[0], length, batch.shape[2]), dtype=np.float32)
    for i in tqdm(range(length), desc="generating", unit="row", disable=not progress):
        prediction = keras.ops.convert_to_numpy(model.predict_on_batch(context))
        if prediction.ndim == 3:
            prediction = prediction[:, -1]
        rows[:, i] = ops.convert_to_numpy(rows_of(ops.convert_to_tensor(prediction), ops.convert_to_tensor(noise[:, i])))
        context = np.concatenate([context, rows[:, i : i + 1]], axis=1)[:, -window_length:]
    return rows[0] if single else rows


def carried_state_generator(model: keras.Model, representation: NoteMatrix, *, head=None,
                            sampling: Sampling | None = None) -> CarriedStateGenerator:
    """A compiled carried-state generator for ``model`` writing ``row_function``'s valid rows.

    ``head``: the model's head (default: read from its output width); ``sampling``: None
    for the point rows. Its ``generate`` takes ``noise`` ``(N, length, noise_width)``
    (``sampling_noise``).
    """
    head = _head_of(model, head)
    return CarriedStateGenerator(model, row_function(representation, head, sampling), noise_width=noise_width(head))


def generate_rows(
    model: keras.Model,
    primers: np.ndarray,
    length: int,
    representation: NoteMatrix,
    *,
    method: str = "carried",
    window_length: int | None = None,
    progress: bool = True,
    head=None,
    sampling: Sampling | None = None,
) -> np.ndarray:
    """``length`` new valid rows after each primer, by ``method`` (``"carried"`` or ``"window"``).

    ``primers`` ``(N, k, 3)`` float32 in [0, 1] (N pieces in one batch) or ``(k, 3)``.
    Returns ``(N, length, 3)`` float32, or ``(length, 3)`` for a 2-D primer.
    ``window_length`` only concerns the window method (default: k). ``head``: the
    model's head (default: read from its output width); ``sampling``: None (or
    temperature 0) for the point rows, the card's behaviour, else rows drawn with
    ``sampling``'s temperature, top-k and seed; both methods draw the same random
    numbers. To generate more than once with the same model, build
    ``carried_state_generator`` once and call its ``generate``: it compiles once per set
    of shapes.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    batch, single = _as_batch(primers)
    head = _head_of(model, head)
    noise = sampling_noise(head, sampling, batch.shape[0], length)
    if method == "window":
        rows = generate_window(model, batch, length, representation, window_length=window_length, progress=progress,
                               head=head, sampling=sampling, noise=noise)
    else:
        generator = carried_state_generator(model, representation, head=head, sampling=sampling)
        rows = generator.generate(batch, length, noise=noise, progress=progress)
    return rows[0] if single else rows


# -- calibration: the spread of a regressed prediction ------------------------------------------

def read_calibration(run_dir: str | os.PathLike) -> dict | None:
    """The run's ``calibration.json`` (``{"residual_std": {"note", "velocity", "time"}, "rows",
    "split"}``), or None when the run has none; ``RunError`` if it is unreadable."""
    path = Path(run_dir) / runs.CALIBRATION_FILE
    if not path.is_file():
        return None
    data = runs.read_json(path)
    try:
        std_triplet(data["residual_std"])
    except (TypeError, KeyError, ValueError):
        raise RunError(f"{path}: not a calibration this version reads (needs residual_std note, velocity, "
                       "time)") from None
    return data


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


# -- pictures and sound of a written file -----------------------------------------------------

def _notes_of(midi_path: str | os.PathLike):
    from note_matrix.midi import read_midi
    from note_matrix.music_stats import Notes

    return Notes.from_events(read_midi(midi_path))


def write_piano_roll(midi_path: str | os.PathLike, png_path: str | os.PathLike, title: str = "") -> Path:
    """A piano roll of the MIDI file at ``midi_path`` (as it plays) written to ``png_path``."""
    from note_matrix.render import piano_roll_png  # matplotlib: only when asked for

    piano_roll_png(_notes_of(midi_path), title, png_path)
    return Path(png_path)


def write_audio(midi_path: str | os.PathLike, wav_path: str | os.PathLike, *,
                soundfont: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The MIDI file at ``midi_path`` synthesised offline to a 16-bit mono WAV at ``wav_path``.

    With a General MIDI soundfont (``soundfont``, else ``$NOTE_MATRIX_SOUNDFONT``, else a
    usual place) through FluidSynth when pyfluidsynth is installed, else pretty_midi's
    sine waves (``note_matrix.render.synthesize``). Returns ``(wav_path, which synthesiser)``.
    """
    from note_matrix.render import SAMPLE_RATE, synthesize, wav_bytes

    audio, how = synthesize(_notes_of(midi_path), soundfont=soundfont)
    wav_path = Path(wav_path)
    _write_bytes(wav_path, wav_bytes(audio, SAMPLE_RATE))
    return wav_path, how


def _write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name, so no half-written file is left."""
    temporary = path.with_name(path.name + ".part")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
