"""Chords as tokens: the notes struck together, frame by frame, lowest pitch first.

Time is cut into frames of ``frame`` beats (default 0.25, a sixteenth note), counted at
the tempo in force at the start of the file (``NoteEvents`` keeps no later tempo
changes), from the first onset. The notes whose onsets round to one frame (to the
nearest frame boundary) form one step; every frame up to the last onset is a step, so
a frame with no onset is a step with no pitches and the gap between steps is always known.
With ``rests=False`` (as seed 004) only the frames with onsets are steps, one after the
other, and the gaps between them are lost.

Two ways of writing a step, as ``(tokens, 1)`` int32 steps the network embeds and
predicts with one categorical field:

- pitch tokens (default): each pitch struck in the frame, lowest first, one token each
  (its MIDI number 0..127), then ``NEXT`` (128); a frame with no onset is a bare
  ``NEXT``. ``END`` (129) follows the last frame. A fixed vocabulary of 130.
- chord symbols (``chord_symbols=True``, as seed 004): one token per frame, ``REST``
  (0) for a frame with no onset, a chord (one note or several) as 3 + its index in
  ``chords``, ``UNK`` (2) for a chord not among them, ``END`` (1) after the last frame.
  ``chords`` is fitted on the training files (``fit``: the ``max_chords`` (default 500)
  most frequent chords they hold, most frequent first) and saved with the run in
  ``to_json``; every other chord is ``UNK``.

Decoding stops at the first end token and writes step ``i`` at ``i * frame`` beats at
the seed's tempo (the frame gap; without rests, every step the fixed duration of one
frame), velocity ``VELOCITY``. Each note holds until the next frame with an
onset, at most ``MAX_HOLD_BEATS`` (so frames with no onset make a rest once the notes
before them have held that long), the last frame's notes one frame. Any token sequence
decodes to valid MIDI: a pitch repeated within a frame is struck once, pitches written
in any order are sorted, ``UNK`` plays as a frame with no onset, and pitches after the
last ``NEXT`` form a last frame. Durations and dynamics are not kept.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path
from typing import ClassVar

import numpy as np

from note_matrix.errors import MidiError
from note_matrix.midi import DEFAULT_TEMPO_US_PER_BEAT, DEFAULT_TICKS_PER_BEAT, read_midi
from note_matrix.playable import write_playable
from note_matrix.representations.base import Encoded
from note_matrix.representations.symbols import SymbolSteps

PITCHES = 128
NEXT, END = 128, 129  # pitch tokens: the end of a frame, the end of the piece
PITCH_VOCABULARY = 130
REST, SYMBOL_END, UNK = 0, 1, 2  # chord symbols: a frame with no onset, the end, a chord not in the vocabulary
SPECIAL_SYMBOLS = ("<rest>", "<end>", "<unk>")
DEFAULT_FRAME_BEATS = 0.25  # a sixteenth note
DEFAULT_MAX_CHORDS = 500  # chord symbols: the most frequent training chords kept
MAX_FRAMES = 200_000  # about 7 hours of sixteenth notes at 120 bpm
MAX_HOLD_BEATS = 1.0  # the longest a decoded note holds
VELOCITY = 80

Chord = tuple[int, ...]


def frame_chords(path: str | os.PathLike, frame: float) -> tuple[np.ndarray, list[Chord], dict]:
    """``(frame index of each frame with onsets (ascending, the first 0), its chord (pitches
    lowest first, each once), decoding meta)`` of the file at ``path``; ``MidiError`` if it
    cannot be read or spans more than ``MAX_FRAMES``."""
    notes = read_midi(path)
    meta = {
        "tempo_us_per_beat": notes.tempo_us_per_beat,
        "ticks_per_beat": notes.ticks_per_beat or DEFAULT_TICKS_PER_BEAT,
    }
    struck = notes.velocity > 0
    if not struck.any():
        return np.zeros(0, np.int64), [], meta
    beats = notes.time_seconds[struck] * 1e6 / notes.tempo_us_per_beat
    frames = np.floor(beats / frame + 0.5).astype(np.int64)
    frames -= frames.min()
    if frames.max() >= MAX_FRAMES:
        raise MidiError(
            path, f"{frames.max() + 1:,} frames of {frame:g} beats, over the {MAX_FRAMES:,} a piece may have"
        )
    keys = np.unique(frames * PITCHES + notes.pitch[struck].astype(np.int64))  # by frame, then pitch
    starts = np.flatnonzero(np.diff(keys // PITCHES, prepend=-1))
    chords = [tuple(chord.tolist()) for chord in np.split(keys % PITCHES, starts[1:])]
    return keys[starts] // PITCHES, chords, meta


def pitch_tokens(onset_frames: np.ndarray, chords: list[Chord]) -> np.ndarray:
    """Each frame's pitches then ``NEXT``, frames with no onset a bare ``NEXT``, then ``END``."""
    if not chords:
        return np.zeros(0, np.int32)
    pitches = np.concatenate([np.array(chord, np.int64) for chord in chords])
    frame_of_pitch = np.repeat(onset_frames, [len(chord) for chord in chords])
    tokens = np.full(len(pitches) + onset_frames[-1] + 2, NEXT, np.int32)
    tokens[np.arange(len(pitches)) + frame_of_pitch] = pitches  # frame f's pitches come after f NEXTs
    tokens[-1] = END
    return tokens


def frames_of_pitch_tokens(tokens: np.ndarray) -> list[Chord]:
    """Pitch tokens back to each frame's chord (empty: no onset), up to the first ``END``."""
    frames: list[Chord] = []
    current: set[int] = set()
    for token in tokens.tolist():
        if token == END:
            break
        if token == NEXT:
            frames.append(tuple(sorted(current)))
            current = set()
        else:
            current.add(token)
    return frames + [tuple(sorted(current))] if current else frames


def notes_of_frames(frames: list[Chord], frame: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(onset, release, pitch)`` of every note of ``frames`` of ``frame`` beats, in beats: each
    holds until the next frame with an onset, at most ``MAX_HOLD_BEATS``; the last frame's one frame."""
    onset_frames = np.array([i for i, chord in enumerate(frames) if chord], np.int64)
    if len(onset_frames) == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0, np.int16)
    held = np.minimum(np.diff(onset_frames, append=onset_frames[-1] + 1) * frame, MAX_HOLD_BEATS)
    counts = [len(frames[i]) for i in onset_frames]
    onsets = np.repeat(onset_frames * frame, counts)
    pitches = np.array([pitch for i in onset_frames for pitch in frames[i]], np.int16)
    return onsets, onsets + np.repeat(held, counts), pitches


def checked_chords(chords) -> tuple[Chord, ...]:
    """``chords`` (lists of MIDI pitches) as a tuple of chords; ``ValueError`` unless each is
    non-empty, strictly rising within 0..127, and none repeats."""
    rising = isinstance(chords, (list, tuple)) and all(
        isinstance(chord, (list, tuple))
        and chord
        and all(type(p) is int and 0 <= p < PITCHES for p in chord)
        and list(chord) == sorted(set(chord))
        for chord in chords
    )
    if not rising:
        raise ValueError("chords must be a list of chords, each rising MIDI pitches 0..127")
    result = tuple(tuple(chord) for chord in chords)
    if len(set(result)) != len(result):
        raise ValueError("chords must not repeat")
    return result


class ChordTokens(SymbolSteps):
    """Frames of struck notes as pitch tokens or chord symbols (module docstring)."""

    name = "chord_tokens"
    columns = ("token",)
    # Seed 004's setting (a 64-unit LSTM, Adam), every next token a target: a starting point, not yet tuned.
    recipe: ClassVar[dict] = {
        "model.units": 64,
        "model.optimizer": "adam",
        "model.learning_rate": 1e-3,
        "model.clipnorm": 1.0,
        "model.targets": "all",
        "window_length": 100,
    }
    options = ("frame", "rests", "chord_symbols", "max_chords", "embedding", "chords")

    def __init__(
        self,
        frame: float = DEFAULT_FRAME_BEATS,
        rests: bool = True,
        chord_symbols: bool = False,
        max_chords: int = DEFAULT_MAX_CHORDS,
        embedding: int = 32,
        chords=(),
    ):
        if isinstance(frame, bool) or not isinstance(frame, (int, float)) or not 0 < frame < math.inf:
            raise ValueError(f"frame must be a positive number of beats, got {frame!r}")
        for option, value in (("rests", rests), ("chord_symbols", chord_symbols)):
            if value is not True and value is not False:
                raise ValueError(f"{option} must be true or false, got {value!r}")
        self.rests = rests
        if type(embedding) is not int or embedding < 1:
            raise ValueError(f"embedding must be a positive integer, got {embedding!r}")
        self.frame, self.chord_symbols, self.embedding = float(frame), chord_symbols, embedding
        if type(max_chords) is not int or max_chords < 1:
            raise ValueError(f"max_chords must be a positive integer, got {max_chords!r}")
        self.max_chords = max_chords
        self.use_chords(checked_chords(chords)[:max_chords] if chord_symbols else ())

    def use_chords(self, chords: tuple[Chord, ...]) -> None:
        """Make ``chords`` the symbols after the special ones, in that order."""
        self.chords = chords
        self._index = {chord: len(SPECIAL_SYMBOLS) + i for i, chord in enumerate(chords)}

    @property
    def needs_fit(self) -> bool:
        """Only chord symbols learn from the training files: their vocabulary."""
        return self.chord_symbols

    @property
    def vocabulary(self) -> int:
        return len(SPECIAL_SYMBOLS) + len(self.chords) if self.chord_symbols else PITCH_VOCABULARY

    def fit(self, paths: list[Path]) -> None:
        """Chord symbols: the ``max_chords`` most frequent chords of the training ``paths`` (ties by pitch)."""
        if not self.chord_symbols:
            return
        counts = Counter(chord for path in paths for chord in frame_chords(path, self.frame)[1])
        self.use_chords(tuple(sorted(counts, key=lambda chord: (-counts[chord], chord))[: self.max_chords]))

    # -- files ---------------------------------------------------------------------
    def encode(self, path: str | os.PathLike) -> Encoded:
        onset_frames, chords, meta = frame_chords(path, self.frame)
        if not self.rests:  # the frames with onsets only, one after the other
            onset_frames = np.arange(len(chords))
        if not self.chord_symbols:
            return Encoded(pitch_tokens(onset_frames, chords)[:, None], meta)
        if not chords:
            return Encoded(np.zeros((0, 1), np.int32), meta)
        symbols = np.full(onset_frames[-1] + 2, REST, np.int32)
        symbols[onset_frames] = [self._index.get(chord, UNK) for chord in chords]
        symbols[-1] = SYMBOL_END
        return Encoded(symbols[:, None], meta)

    def frames(self, tokens: np.ndarray) -> list[Chord]:
        """Tokens (in range) back to each frame's chord (empty: no onset), up to the first end token."""
        if not self.chord_symbols:
            return frames_of_pitch_tokens(tokens)
        ends = np.flatnonzero(tokens == SYMBOL_END)
        symbols = tokens[: ends[0] if len(ends) else len(tokens)].tolist()
        return [self.chords[s - len(SPECIAL_SYMBOLS)] if s >= len(SPECIAL_SYMBOLS) else () for s in symbols]

    def decode(self, steps: np.ndarray, meta: dict, path: str | os.PathLike) -> int:
        tokens = np.asarray(steps).reshape(-1).astype(np.int64)
        if np.any((tokens < 0) | (tokens >= self.vocabulary)):
            raise MidiError(path, f"tokens must lie in 0..{self.vocabulary - 1}")
        onsets, releases, pitches = notes_of_frames(self.frames(tokens), self.frame)
        tempo = meta.get("tempo_us_per_beat", DEFAULT_TEMPO_US_PER_BEAT)
        times = np.concatenate([onsets, releases]) * tempo / 1e6
        velocities = np.repeat(np.array([VELOCITY, 0], np.int16), len(pitches))
        order = np.lexsort((velocities, times))  # in time, a release before an onset at the same time
        return write_playable(
            path, times[order], np.tile(pitches, 2)[order], velocities[order], tempo_us_per_beat=tempo
        )

    # -- saving ------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "name": self.name,
            "frame": self.frame,
            "rests": self.rests,
            "chord_symbols": self.chord_symbols,
            "max_chords": self.max_chords,
            "embedding": self.embedding,
            "chords": [list(chord) for chord in self.chords],
        }
