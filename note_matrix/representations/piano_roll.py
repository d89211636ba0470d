"""The piano roll of the polyphonic benchmarks: one frame per time step, 88 keys on or off.

A step is a frame of the 88 piano keys, MIDI 21 (A0) to 108 (C8), as float32 0/1
(``(frames, 88)``, column ``k`` the key ``21 + k``): the layout of the four classic
benchmarks (Boulanger-Lewandowski, Bengio and Vincent, ICML 2012), read from their
``.mat`` files by ``note_matrix.datasets.polyphonic`` and turned into steps by
``encode_roll``. The network reads the frame multi-hot and predicts the next one with
one independent Bernoulli field per key (head ``bernoulli``, the LSTM baseline of Bai,
Kolter and Koltun 2018), or with RNN-NADE's output (head ``nade``, Boulanger-Lewandowski,
Bengio and Vincent 2012: ``models.nade``), each key given the keys below it in the frame,
or as the biaxial LSTM (head ``biaxial``, Johnson 2017: ``models.biaxial``), an LSTM along
time per key, tied across keys, then one across each frame's keys. Every head scores a
frame by the same Bernoulli field of 88 logits: the NADE's and the biaxial LSTM's logits
are their conditionals, so the field's loss is their exact negative log-likelihood.

From a MIDI file (``encode``) a frame lasts ``frame`` beats (default 0.5, an eighth
note; the JSB Chorales benchmark uses quarter notes, 1.0). A note covers the frames
from its onset to its release, each rounded to the nearest frame boundary, and at least
one frame, so no note is lost and every duration is kept within half a frame. Notes
outside the 88 keys are left out, and the roll starts at the frame of the first note.
Beats are counted at the tempo in force at the start of the file (``NoteEvents`` keeps
no later tempo changes).

Decoding (``decode``) writes a key held over consecutive frames as one sustained note
from its first frame to the end of its last (the benchmarks cannot tell a held note
from a repeated one; sustaining is how they sound as written); with ``restrike=True``
every sounding frame is a note of its own, struck again at each frame. Frames last
``frame`` beats at the seed's tempo; every note has velocity ``VELOCITY``.
"""

from __future__ import annotations

import math
import os
from typing import ClassVar

import numpy as np

from models.config import InputSpec
from note_matrix.errors import MidiError
from note_matrix.evaluation.music_stats import Notes
from note_matrix.midi import DEFAULT_TEMPO_US_PER_BEAT, DEFAULT_TICKS_PER_BEAT, read_midi
from note_matrix.playable import write_playable
from note_matrix.representations.base import Encoded, Representation, ScoreColumn

LOWEST = 21  # A0, the piano's lowest key
KEYS = 88  # up to 108, C8
DEFAULT_FRAME_BEATS = 0.5  # an eighth note
MAX_FRAMES = 100_000  # about 7 hours of eighth notes at 120 bpm (the longest benchmark piece: 3,857 frames)
VELOCITY = 80
COLUMNS = tuple(f"key{LOWEST + key}" for key in range(KEYS))


def roll_of_notes(start_beats: np.ndarray, end_beats: np.ndarray, pitch: np.ndarray, frame: float) -> np.ndarray:
    """Notes (onset and release in beats, MIDI pitch) to a ``(frames, 88)`` float32 roll
    (module docstring); ``ValueError`` past ``MAX_FRAMES``."""
    pitch = np.asarray(pitch, np.int64)
    keep = (pitch >= LOWEST) & (pitch < LOWEST + KEYS)
    if not keep.any():
        return np.zeros((0, KEYS), np.float32)
    first = np.floor(np.asarray(start_beats)[keep] / frame + 0.5).astype(np.int64)
    last = np.maximum(first + 1, np.floor(np.asarray(end_beats)[keep] / frame + 0.5).astype(np.int64))
    first, last = first - first.min(), last - first.min()
    frames = int(last.max())
    if frames > MAX_FRAMES:
        raise ValueError(f"{frames:,} frames of {frame:g} beats, over the {MAX_FRAMES:,} a piece may have")
    change = np.zeros((frames + 1, KEYS), np.int64)  # +1 where a note starts, -1 where it ends
    np.add.at(change, (first, pitch[keep] - LOWEST), 1)
    np.add.at(change, (last, pitch[keep] - LOWEST), -1)
    return (np.cumsum(change[:-1], axis=0) > 0).astype(np.float32)


def notes_of_roll(roll: np.ndarray, restrike: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(first frame, frame after the last, MIDI pitch)`` of each note of a 0/1 roll: a
    run of consecutive frames of a key is one note, or each frame one with ``restrike``."""
    on = np.asarray(roll) > 0.5
    if restrike:
        frames, keys = np.nonzero(on)
        return frames, frames + 1, keys + LOWEST
    change = np.diff(np.pad(on, ((1, 1), (0, 0))).astype(np.int8), axis=0).T  # (keys, frames + 1)
    keys, starts = np.nonzero(change == 1)  # key by key, in time order: the n-th start pairs with the n-th end
    _, ends = np.nonzero(change == -1)
    return starts, ends, keys + LOWEST


class PianoRoll(Representation):
    """Frames of the 88 piano keys, multi-hot in and out (module docstring)."""

    name = "piano_roll"
    columns = COLUMNS
    heads = ("bernoulli", "nade", "biaxial")
    reads_rolls = True
    # A starting point for the benchmarks (not yet tuned): the next frame at every step.
    recipe: ClassVar[dict] = {
        "model.units": 256,
        "model.dropout_rate": 0.3,
        "model.optimizer": "adam",
        "model.learning_rate": 1e-3,
        "model.clipnorm": 1.0,
        "model.targets": "all",
        "window_length": 64,
        "batch_size": 16,
        "patience": 10,
        "epochs": 100,
    }
    score_columns = (ScoreColumn("accuracy", "frame acc.", True), ScoreColumn("nll", "NLL/frame", False))
    score_legend = (
        "* best in its column. frame acc.: share of frames whose every key is predicted right. NLL/frame: the",
        "benchmarks' frame-level negative log-likelihood, the sum over the 88 keys of each key's Bernoulli NLL,",
        "in nats, averaged over the frames ('-': no distribution; uniform guessing scores 88 ln 2 = 61.0).",
    )

    def __init__(self, frame: float = DEFAULT_FRAME_BEATS, restrike: bool = False):
        if isinstance(frame, bool) or not isinstance(frame, (int, float)) or not 0 < frame < math.inf:
            raise ValueError(f"frame must be a positive number of beats, got {frame!r}")
        if restrike is not True and restrike is not False:
            raise ValueError(f"restrike must be true or false, got {restrike!r}")
        self.frame, self.restrike = float(frame), restrike

    # -- files ---------------------------------------------------------------------
    def encode(self, path: str | os.PathLike) -> Encoded:
        events = read_midi(path)
        notes = Notes.from_events(events)
        beats_per_second = 1e6 / events.tempo_us_per_beat
        try:
            roll = roll_of_notes(
                notes.start_seconds * beats_per_second, notes.end_seconds * beats_per_second, notes.pitch, self.frame
            )
        except ValueError as error:
            raise MidiError(path, str(error)) from None
        return Encoded(
            roll,
            {
                "tempo_us_per_beat": events.tempo_us_per_beat,
                "ticks_per_beat": events.ticks_per_beat or DEFAULT_TICKS_PER_BEAT,
            },
        )

    @staticmethod
    def encode_roll(roll: np.ndarray) -> Encoded:
        """A benchmark piece (``(frames, 88)`` 0/1, ``datasets.polyphonic``) as steps, at the default tempo."""
        return Encoded(
            np.asarray(roll, np.float32),
            {"tempo_us_per_beat": DEFAULT_TEMPO_US_PER_BEAT, "ticks_per_beat": DEFAULT_TICKS_PER_BEAT},
        )

    def decode(self, steps: np.ndarray, meta: dict, path: str | os.PathLike) -> int:
        steps = np.asarray(steps)
        if steps.ndim != 2 or steps.shape[1] != KEYS:
            raise MidiError(path, f"a piano roll has shape (frames, {KEYS}), got {steps.shape}")
        first, after, pitch = notes_of_roll(steps, self.restrike)
        tempo = meta.get("tempo_us_per_beat", DEFAULT_TEMPO_US_PER_BEAT)
        times = np.concatenate([first, after]) * (self.frame * tempo / 1e6)
        velocities = np.repeat(np.array([VELOCITY, 0], np.int16), len(pitch))
        order = np.lexsort((velocities > 0, times))  # at one instant a release comes before a strike
        return write_playable(
            path,
            times[order],
            np.concatenate([pitch, pitch])[order].astype(np.int16),
            velocities[order],
            tempo_us_per_beat=tempo,
        )

    # -- the network -------------------------------------------------------------------
    def inputs(self) -> InputSpec:
        return InputSpec("multi_hot", KEYS)

    def head(self, name: str, mixtures: int):
        from models.fields import Bernoulli, Head

        if name not in self.heads:
            raise ValueError(f"{self.name} has the heads {' and '.join(self.heads)}, not {name!r}")
        return Head((Bernoulli(COLUMNS),))  # nade, biaxial: logits of conditionals (module docstring)

    def metrics(self, head_name: str, head) -> list:
        from models.head_metrics import FieldMetric, LastLoss

        return [FieldMetric(head, 0, name="bit_accuracy"), LastLoss(head)]  # not named by all 88 columns

    def valid_steps(self, steps):
        from keras import ops

        return ops.cast(ops.cast(steps, "float32") > 0.5, "float32")

    # -- evaluation ------------------------------------------------------------------
    def distribution_scores(self, head, outputs: np.ndarray, targets: np.ndarray, spread) -> dict[str, float]:
        """``nll``: the benchmarks' frame-level NLL of the head's logits (``evaluation.frame_nll``)."""
        from note_matrix.evaluation.frame_nll import frame_nll

        return {"nll": frame_nll(np.asarray(targets)[:, :KEYS], logits=outputs)}

    def baselines(self, training: list[np.ndarray], validation: list[np.ndarray] | None = None):
        from note_matrix.evaluation.frame_nll import RollBaselines

        return RollBaselines.fit(training)

    model_label = None  # ``evaluate_frames``: the head's (``model (nade head)``)

    def frames(self, steps: np.ndarray) -> np.ndarray:
        """The piano-roll frames of ``steps``: the steps themselves."""
        return np.asarray(steps)

    def model_frame_nll(self, model, pieces: list[np.ndarray]) -> float:
        """The benchmarks' frame-level NLL of ``model`` on ``pieces`` of frames (``evaluation.frame_nll``)."""
        from note_matrix.evaluation.frame_nll import model_frame_nll

        return model_frame_nll(model, pieces)

    def to_json(self) -> dict:
        return {"name": self.name, "frame": self.frame, "restrike": self.restrike}
