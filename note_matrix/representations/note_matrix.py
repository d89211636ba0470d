"""The card's note matrix (seed 003): one row per note message of all non-drum tracks.

::

    column 0  note       pitch / 127
    column 1  velocity   velocity / 127, 0 for a note-off
    column 2  time       gap g (seconds) since the previous row, as g / (g + c)

with ``c = TIME_SCALE_SECONDS`` (0.25 s: the median non-zero gap of the pop dataset is
0.012 s, its 99th percentile 0.76 s). The time scaling is invertible for every gap,
``g = c x / (1 - x)``, so nothing is clipped; gaps too long to survive float32 within
the onset tolerance (about 90 s) are refused with a ``MidiError``.

Heads: ``regression`` (the card: the row, mean squared error), ``categorical`` (the pitch
as one of 128 notes, velocity and time regressed), ``mdn`` (the pitch categorical,
velocity and time a mixture of Gaussians); see ``models.fields``. A generated row is made
valid by ``valid_rows``: values clipped to [0, 1], pitch and velocity rounded to k / 127,
the gap capped at ``MAX_GENERATED_GAP_SECONDS``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from models.config import InputSpec
from note_matrix.errors import MidiError
from note_matrix.midi import DEFAULT_TEMPO_US_PER_BEAT, DEFAULT_TICKS_PER_BEAT, NoteEvents, read_midi, write_midi
from note_matrix.playable import write_playable
from note_matrix.representations.base import Encoded, Representation, ScoreColumn

if TYPE_CHECKING:
    from models.head import Head

TIME_SCALE_SECONDS = 0.25
ONSET_TOLERANCE_SECONDS = 1e-3  # the largest onset drift a float32 matrix may introduce
MIDI_MAX = 127
MAX_GENERATED_GAP_SECONDS = 4.0  # a generated silence longer than this is shortened to it
MIDI_NOTES = MIDI_MAX + 1
NOTE_BINS = ("levels", MIDI_MAX)  # note and velocity as discrete values: the 128 MIDI levels k / 127
TIME_BINS = ("uniform", 1000)  # the time column [0, 1) in bins of 0.001

# k / 127 as the note matrix stores it (float64 division, then float32). Rounded values are
# looked up here rather than divided, so NumPy and compiled code (where XLA may turn a
# division into a multiplication) give the very same float32 values as the encoder.
MIDI_GRID = (np.arange(MIDI_MAX + 1) / MIDI_MAX).astype(np.float32)

class NoteMatrix(Representation):
    """The card's note matrix: ``(rows, 3)`` float32 in [0, 1], columns note, velocity, time."""

    name = "note_matrix"
    columns = ("note", "velocity", "time")
    heads = ("regression", "categorical", "mdn")
    continuous = True
    score_columns = (
        ScoreColumn("mse_note", "MSE note", False, "{:.5f}"),
        ScoreColumn("mse_velocity", "MSE velocity", False, "{:.5f}"),
        ScoreColumn("mse_time", "MSE time", False, "{:.5f}"),
        ScoreColumn("mse", "MSE all", False, "{:.5f}"),
        ScoreColumn("pitch_accuracy", "pitch acc.", True),
        ScoreColumn("nll", "NLL/row", False),
    )
    score_legend = (
        "* best in its column. MSE in note-matrix units ([0, 1] per column); pitch acc.: share of rows whose pitch,",
        "rounded to a MIDI note, is right; NLL/row: negative log-likelihood in nats per row, -log P(pitch) - log",
        "p(velocity) - log p(time), where the predictor gives a distribution ('-': none).",
    )

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
    def from_notes(self, notes: NoteEvents, path: str | os.PathLike = "<notes>") -> np.ndarray:
        """``NoteEvents`` to a ``(rows, 3)`` float32 matrix; ``MidiError`` if unrepresentable."""
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
        [0, 1] (time outside [0, 1)); ``valid_steps`` makes any model output valid first.
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
    def encode(self, path: str | os.PathLike) -> Encoded:
        notes = read_midi(path)
        meta = {"tempo_us_per_beat": notes.tempo_us_per_beat,
                "ticks_per_beat": notes.ticks_per_beat or DEFAULT_TICKS_PER_BEAT}
        return Encoded(self.from_notes(notes, path), meta)

    def decode(self, steps: np.ndarray, meta: dict, path: str | os.PathLike) -> int:
        """Valid rows to a playable MIDI file at the seed's tempo (``note_matrix.playable``)."""
        time_seconds, pitch, velocity = self.to_notes(steps)
        return write_playable(path, time_seconds, pitch, velocity,
                              tempo_us_per_beat=meta.get("tempo_us_per_beat", DEFAULT_TEMPO_US_PER_BEAT))

    def write_exact(self, matrix: np.ndarray, path: str | os.PathLike, *,
                    tempo_us_per_beat: int = DEFAULT_TEMPO_US_PER_BEAT,
                    ticks_per_beat: int = DEFAULT_TICKS_PER_BEAT) -> None:
        """Every row as it is, one MIDI message each (``matrix_to_midi``; not made playable)."""
        time_seconds, pitch, velocity = self.to_notes(matrix)
        write_midi(path, time_seconds, pitch, velocity, tempo_us_per_beat=tempo_us_per_beat,
                   ticks_per_beat=ticks_per_beat)

    # -- the network -------------------------------------------------------------------
    def inputs(self) -> InputSpec:
        return InputSpec("continuous", 3)

    def head(self, name: str, mixtures: int) -> Head:
        if name == "regression":
            return regression_head()
        if name == "categorical":
            return categorical_head()
        if name == "mdn":
            return mdn_head(mixtures)
        raise ValueError(f"the note matrix has the heads {', '.join(self.heads)}, not {name!r}")

    def metrics(self, head_name: str, head: Head) -> list:
        """Pitch accuracy and the card's squared error after the window; the other heads' own loss too."""
        from models.head_metrics import ColumnAccuracy, LastLoss, LastSquaredError

        metrics = [ColumnAccuracy(head, column=0, scale=float(MIDI_MAX), name="pitch_accuracy"), LastSquaredError(head)]
        return metrics if head_name == "regression" else [*metrics, LastLoss(head)]

    def monitor(self, head_name: str) -> str:
        return "last_mse" if head_name == "regression" else "last_loss"

    def max_time_value(self) -> np.float32:
        """The time column of a ``MAX_GENERATED_GAP_SECONDS`` gap: the cap on generated gaps."""
        return np.float32(self.scale_time(MAX_GENERATED_GAP_SECONDS))

    def valid_row(self, row: np.ndarray) -> np.ndarray:
        """Rows ``(..., 3)`` made valid in NumPy: the same float32 operations as ``valid_steps``.

        NaN becomes 0, values are clipped to [0, 1], pitch and velocity rounded to k / 127
        (half to even, k from the float32 product with 127, the value from ``MIDI_GRID``),
        the time column capped at ``max_time_value``.
        """
        row = np.clip(np.nan_to_num(np.asarray(row, dtype=np.float32), nan=0.0), np.float32(0.0), np.float32(1.0))
        grid = MIDI_GRID[np.rint(row[..., :2] * np.float32(MIDI_MAX)).astype(np.int64)]
        return np.concatenate([grid, np.minimum(row[..., 2:], self.max_time_value())], axis=-1)

    def valid_steps(self, steps):
        from keras import ops

        steps = ops.clip(ops.nan_to_num(ops.cast(steps, "float32"), nan=0.0), 0.0, 1.0)
        levels = ops.cast(ops.round(steps[..., :2] * float(MIDI_MAX)), "int32")
        grid = ops.take(ops.convert_to_tensor(MIDI_GRID), levels, axis=0)
        return ops.concatenate([grid, ops.minimum(steps[..., 2:], float(self.max_time_value()))], axis=-1)

    # -- evaluation ----------------------------------------------------------------------
    def point_scores(self, points: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        from note_matrix.evaluation.baselines import Prediction, score

        return score(Prediction(points), targets)

    def baselines(self, training: list[np.ndarray], validation: list[np.ndarray] | None = None):
        from note_matrix.evaluation.baselines import Baselines

        return Baselines.fit(training, validation)

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

    @classmethod
    def from_json(cls, data: dict) -> NoteMatrix:
        try:
            return cls(float(data["time_scale_seconds"]), float(data["onset_tolerance_seconds"]))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not a note matrix this version reads ({error})") from None


def midi_to_matrix(path: str | os.PathLike) -> np.ndarray:
    """Read a MIDI file as a note matrix: ``(rows, 3)`` float32 in [0, 1]; ``MidiError`` if it cannot be."""
    return NoteMatrix().encode(path).steps


def matrix_to_midi(matrix: np.ndarray, path: str | os.PathLike, *,
                   tempo_us_per_beat: int = DEFAULT_TEMPO_US_PER_BEAT,
                   ticks_per_beat: int = DEFAULT_TICKS_PER_BEAT) -> None:
    """Write a note matrix as a type 0 MIDI file, one message per row (onsets to the nearest tick)."""
    NoteMatrix().write_exact(matrix, path, tempo_us_per_beat=tempo_us_per_beat, ticks_per_beat=ticks_per_beat)


# -- the heads (models.fields; imported when a head is asked for, so reading files needs no Keras) --

def regression_head() -> Head:
    """The card's: the row itself, mean squared error (width 3)."""
    from models.fields import Gaussian, Head

    return Head((Gaussian(NoteMatrix.columns, (NOTE_BINS, NOTE_BINS, TIME_BINS), "mean"),))


def _pitch():
    from models.fields import Categorical

    return Categorical("note", MIDI_NOTES, scale=float(MIDI_MAX))


def categorical_head() -> Head:
    """128 pitch logits (cross-entropy), velocity and time regressed (summed squared errors): width 130."""
    from models.fields import Gaussian, Head

    return Head((_pitch(), Gaussian(("velocity", "time"), (NOTE_BINS, TIME_BINS), "sum")))


def mdn_head(mixtures: int) -> Head:
    """128 pitch logits and a ``mixtures``-component mixture over (velocity, time): width 128 + 5K."""
    from models.fields import Head, Mixture

    return Head((_pitch(), Mixture(("velocity", "time"), mixtures, (NOTE_BINS, TIME_BINS))))
