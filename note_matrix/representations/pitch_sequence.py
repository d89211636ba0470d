"""The melody's pitches as tokens: a small representation that shows the interface at work.

One token per onset: the highest pitch struck at that moment (the "skyline", the
melody of most songs), as its MIDI number 0..127, then ``END`` (128) after the last note.
Steps are ``(tokens, 1)`` int32; the network embeds them and predicts the next token
with one categorical field. Decoding writes each pitch as an eighth note at the seed's
tempo, velocity ``VELOCITY``, and stops at the first ``END``. Timing, dynamics and
harmony are not kept.
"""

from __future__ import annotations

import os

import numpy as np

from models.config import InputSpec
from note_matrix.errors import MidiError
from note_matrix.midi import DEFAULT_TEMPO_US_PER_BEAT, DEFAULT_TICKS_PER_BEAT, read_midi
from note_matrix.playable import write_playable
from note_matrix.representations.base import Encoded, Representation

END = 128
VOCABULARY = 129  # pitches 0..127 and END
VELOCITY = 80
NOTE_BEATS = 0.5  # every decoded note lasts an eighth note


class PitchSequence(Representation):
    name = "pitch_sequence"
    columns = ("pitch",)
    heads = ("categorical",)

    def __init__(self, embedding: int = 32):
        if not isinstance(embedding, int) or embedding < 1:
            raise ValueError(f"embedding must be a positive integer, got {embedding!r}")
        self.embedding = embedding

    def encode(self, path: str | os.PathLike) -> Encoded:
        notes = read_midi(path)
        struck = notes.velocity > 0
        times, pitches = notes.time_seconds[struck], notes.pitch[struck].astype(np.int64)
        if len(pitches) == 0:
            return Encoded(np.zeros((0, 1), np.int32))
        first_of_onset = np.flatnonzero(np.diff(times, prepend=-np.inf) > 0)
        melody = np.maximum.reduceat(pitches, first_of_onset)  # the highest pitch of each onset
        tokens = np.append(melody, END).astype(np.int32)[:, None]
        return Encoded(tokens, {"tempo_us_per_beat": notes.tempo_us_per_beat,
                                "ticks_per_beat": notes.ticks_per_beat or DEFAULT_TICKS_PER_BEAT})

    def decode(self, steps: np.ndarray, meta: dict, path: str | os.PathLike) -> int:
        tokens = np.asarray(steps).reshape(-1)
        if np.any((tokens < 0) | (tokens > END)):
            raise MidiError(path, f"tokens must lie in 0..{END}")
        ends = np.flatnonzero(tokens == END)
        pitches = tokens[: ends[0] if len(ends) else len(tokens)].astype(np.int16)
        tempo = meta.get("tempo_us_per_beat", DEFAULT_TEMPO_US_PER_BEAT)
        seconds = NOTE_BEATS * tempo / 1e6
        onsets = np.arange(len(pitches)) * seconds
        times = np.stack([onsets, onsets + seconds], axis=1).reshape(-1)
        velocities = np.tile(np.array([VELOCITY, 0], np.int16), len(pitches))
        return write_playable(path, times, np.repeat(pitches, 2), velocities, tempo_us_per_beat=tempo)

    def inputs(self) -> InputSpec:
        return InputSpec("tokens", 1, vocabulary=VOCABULARY, embedding=self.embedding)

    def head(self, name: str, mixtures: int):
        from models.fields import Categorical, Head

        if name != "categorical":
            raise ValueError(f"{self.name} has the head categorical only, not {name!r}")
        return Head((Categorical("pitch", VOCABULARY, scale=1.0),))

    def metrics(self, head_name: str, head) -> list:
        from models.head_metrics import ColumnAccuracy, LastLoss

        return [ColumnAccuracy(head, column=0, scale=1.0, name="accuracy"), LastLoss(head)]

    def valid_steps(self, steps):
        from keras import ops

        return ops.cast(ops.clip(ops.round(ops.cast(steps, "float32")), 0.0, float(END)), "int32")

    def to_json(self) -> dict:
        return {"name": self.name, "embedding": self.embedding, "vocabulary": VOCABULARY, "end_token": END}

    @classmethod
    def from_json(cls, data: dict) -> PitchSequence:
        return cls(int(data.get("embedding", 32)))
