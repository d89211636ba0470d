"""Generation that copies at most N consecutive notes of a training file (``generate.py --max-copied N``).

For ``note_events`` runs. Evaluation's ``longest_copied_notes`` reads a generated MIDI file
back, orders its notes by onset, then pitch, and finds the longest run of their pitches
found verbatim in one training file (``evaluation.music_stats.CopiedRuns``). This module
keeps that run at most N long while the piece is drawn:

- ``CopyGuard``: the (N+1)-grams of the training files' pitches, read as evaluation reads
  them (``evaluation.generated.training_notes``), and the question "does this row complete one?".
- ``NoteOrder``: one piece's notes in the metric's order, kept up to date row by row. It
  reads a row as the written file will hold it: times are the sums of the decoded gaps
  (``EventFields.to_events``), a note-on of a pitch struck under ``MIN_NOTE_SECONDS`` before
  is merged into that note and a note-off that soon is dropped (``playable_events``), and
  onsets are rounded to the file's ticks (``write_midi``), so a note-on on the last onset's
  tick joins that chord, in pitch order, which may put it between the chord's notes.
- ``generate_uncopied``: the carried-state loop stepped in Python
  (``CarriedStateGenerator.start``/``advance``). Each step draws every piece's row with the
  compiled loop's own row function and random numbers (``sampling_noise``), so until its
  first redraw a piece is the one generated without the guard; a row that would complete
  a copy is drawn again with fresh random numbers and its pitch avoided (fresh numbers
  alone would mostly draw a memorised pitch again), at most ``MAX_REDRAWS`` times, then
  kept and counted.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from note_matrix.evaluation.music_stats import CopiedRuns
from note_matrix.midi import DEFAULT_TICKS_PER_BEAT
from note_matrix.playable import MIN_NOTE_SECONDS
from note_matrix.representations.note_events import BLOCKED, TIME_VALUES, VELOCITY_CLASSES, EventFields

MAX_REDRAWS = 16  # draws of one row after the first; each avoids one more pitch, so this many copying pitches
AVOIDED = BLOCKED / 2  # the logit of a pitch avoided by a redraw: drawn only if every valid pitch is avoided
REDRAW_STREAM = 1  # the redraws' random numbers: default_rng((random seed, REDRAW_STREAM)), apart from the rows'


def guards(representation) -> bool:
    """Whether ``representation``'s runs can be generated with a ``CopyGuard`` (note events only)."""
    return isinstance(representation, EventFields)


class NoteOrder:
    """One generated piece's note pitches in the metric's order (onset tick, then pitch), row by row.

    ``take(row)`` adds a row ``(F,)`` of note events (velocity level, pitch, gap bin, ...);
    ``change(row, context)`` says, without taking it, how the row would change the end of
    the sequence. A piece starts at time 0 with nothing sounding, as it is decoded.
    """

    def __init__(self, tempo_us_per_beat: int):
        self.tempo_us_per_beat = int(tempo_us_per_beat)
        self.time_seconds = 0.0  # of the last row taken
        self._started: dict[int, float] = {}  # pitch -> onset seconds of the notes sounding in the written file
        self._settled: list[int] = []  # pitches before the last onset tick, in order
        self._chord: list[int] = []  # pitches on the last onset tick, ascending
        self._chord_tick = -1

    @property
    def pitches(self) -> np.ndarray:
        """``(notes,)`` int16: every note's pitch so far, in the metric's order."""
        return np.array(self._settled + self._chord, np.int16)

    def _read(self, row) -> tuple[float, int, float | None, int | None]:
        """``(time_seconds, pitch, held, tick)`` of ``row``: ``held``, the seconds since ``pitch``'s onset
        if it sounds in the written file (else None); ``tick``, of the note the row adds (None: no note)."""
        level, pitch, gap = int(row[0]), int(row[1]), int(row[2])
        time = self.time_seconds + TIME_VALUES[gap]  # as np.cumsum adds the gaps in to_events
        onset = self._started.get(pitch)
        held = None if onset is None else time - onset
        if level == 0 or (held is not None and held < MIN_NOTE_SECONDS):
            return time, pitch, held, None  # a note-off, or a re-strike playable_events merges into the note
        return time, pitch, held, int(np.rint(time * DEFAULT_TICKS_PER_BEAT * 1e6 / self.tempo_us_per_beat))

    def take(self, row) -> None:
        time, pitch, held, tick = self._read(row)
        self.time_seconds = time
        if tick is not None:
            self._started[pitch] = time
            if tick != self._chord_tick:
                self._settled += self._chord
                self._chord, self._chord_tick = [], tick
            bisect.insort(self._chord, pitch)
        elif int(row[0]) == 0 and held is not None and held >= MIN_NOTE_SECONDS:
            del self._started[pitch]  # released; a sooner note-off is dropped and the note sounds on

    def change(self, row, context: int) -> tuple[list[int], list[int]] | None:
        """``(before, after)``: the end of the sequence before and after ``row``, from ``context`` >= 1
        notes ahead of the last onset on, so that each (context + 1)-gram the row makes is in ``after``
        and not in ``before``; None when the row adds no note."""
        _, pitch, _, tick = self._read(row)
        if tick is None:
            return None
        if tick == self._chord_tick:  # a chord note: the chord's order may change, not only its end
            ahead = self._settled[-context:]
            chord = list(self._chord)
            bisect.insort(chord, pitch)
            return ahead + self._chord, ahead + chord
        before = (self._settled[-context:] + self._chord)[-context:]
        return before, [*before, pitch]


@dataclass(frozen=True)
class CopyGuard:
    """The ``max_copied + 1``-grams of the training files' pitch sequences (``grams``: int16 bytes,
    ``CopiedRuns.grams``), ``files`` training files read and the ``skipped`` ones (name: reason)."""

    max_copied: int
    grams: set[bytes]
    files: int
    skipped: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_pitches(cls, sources: list[np.ndarray], max_copied: int, skipped: dict | None = None) -> CopyGuard:
        """From the training files' pitches, each in the metric's order."""
        if max_copied < 1:
            raise ValueError(f"max_copied must be at least 1, got {max_copied}")
        grams = CopiedRuns(sources).source_grams(max_copied + 1)
        return cls(max_copied, grams, len(sources), dict(skipped or {}))

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, max_copied: int) -> CopyGuard:
        """From the run's training files, read as ``evaluate.py --generated`` reads them; ``DatasetError``
        when they are not all there."""
        from note_matrix.evaluation.generated import training_notes
        from note_matrix.run_data import open_run

        notes, skipped = training_notes(open_run(run_dir))
        return cls.from_pitches([file.pitch for file in notes.values()], max_copied, skipped)

    def completes_copy(self, order: NoteOrder, row) -> bool:
        """Whether taking ``row`` into ``order`` would make a run of more than ``max_copied`` consecutive
        pitches found in one training file (one that was there before does not count)."""
        change = order.change(row, self.max_copied)
        if change is None:
            return False
        before, after = (np.array(pitches, np.int16) for pitches in change)
        length = self.max_copied + 1
        return bool((CopiedRuns.grams(after, length) - CopiedRuns.grams(before, length)) & self.grams)


@dataclass(frozen=True)
class GuardedRows:
    """``rows`` ``(N, length, F)`` int32, and per piece ``(N,)`` the rows ``redrawn`` (each draw after
    a row's first) and the ``copies`` kept, rows that still completed a copy after ``MAX_REDRAWS``."""

    rows: np.ndarray
    redrawn: np.ndarray
    copies: np.ndarray


def generate_uncopied(
    model,
    primers: np.ndarray,
    length: int,
    representation,
    head,
    guard: CopyGuard,
    *,
    tempo_us_per_beat: int,
    sampling=None,
    progress: bool = False,
) -> GuardedRows:
    """``length`` rows after each primer ``(N, k, F)`` with the state carried (module docstring),
    none completing a copy longer than ``guard.max_copied`` unless ``MAX_REDRAWS`` could not avoid it.

    ``sampling`` None: the most likely rows (a redraw takes the most likely pitch not avoided);
    ``tempo_us_per_beat``: the tempo the pieces are written at (the seed's), which sets their ticks.
    """
    from keras import ops

    from note_matrix.generation.compile import compile_function
    from note_matrix.generation.methods import carried_state_generator
    from note_matrix.generation.sampling import row_function, sampling_noise

    primers = np.asarray(primers)
    batch = primers.shape[0]
    generator = carried_state_generator(model, representation, head, sampling)
    row_of = row_function(representation, head, sampling)
    draw = compile_function(
        lambda output, noise, previous, avoided: row_of(ops.where(avoided, AVOIDED, output), noise, previous)
    )
    noise = sampling_noise(head, sampling, batch, length)
    zeros = np.zeros((batch, head.noise_width), np.float32)  # no sampling: the noise is not read
    redraw_rng = None if noise is None else np.random.default_rng((sampling.random_seed, REDRAW_STREAM))

    def draw_again(output, previous, avoided) -> np.ndarray:
        fresh = zeros if redraw_rng is None else head.draw_noise(redraw_rng, (batch,))
        return ops.convert_to_numpy(draw(output, fresh, previous, avoided))

    orders = [NoteOrder(tempo_us_per_beat) for _ in range(batch)]
    rows = np.empty((batch, length, generator.features), np.int32)
    redrawn, copies = np.zeros(batch, np.int64), np.zeros(batch, np.int64)
    states, output = generator.start(primers)
    previous = primers[:, -1].astype(np.int32)
    for t in tqdm(range(length), desc="generating", unit="row", disable=not progress):
        avoided = np.zeros((batch, output.shape[-1]), bool)
        row = np.array(ops.convert_to_numpy(draw(output, zeros if noise is None else noise[:, t], previous, avoided)))
        refused = [i for i in range(batch) if guard.completes_copy(orders[i], row[i])]
        for _ in range(MAX_REDRAWS):
            if not refused:
                break
            avoided[refused, VELOCITY_CLASSES + row[refused, 1]] = True  # the refused note-on's pitch
            row[refused] = draw_again(output, previous, avoided)[refused]
            redrawn[refused] += 1
            refused = [i for i in refused if guard.completes_copy(orders[i], row[i])]
        copies[refused] += 1
        for order, piece_row in zip(orders, row):
            order.take(piece_row)
        rows[:, t] = previous = row
        if t + 1 < length:
            states, output = generator.advance(states, row)
    return GuardedRows(rows, redrawn, copies)
