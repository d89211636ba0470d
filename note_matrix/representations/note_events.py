"""Note events as categorical fields, in and out: the note matrix's rows made learnable.

One step per note-on or note-off of all non-drum tracks, as int32 columns::

    column 0      velocity   0 for a note-off, else its level 1..16 (velocity v -> ceil(v / 8))
    column 1      pitch      the MIDI note 0..127
    column 2      time       the gap since the previous event, one of 80 bins (below)
    columns 3-130 sounding   1 for each of the 128 pitches sounding after this event

The network reads the columns one-hot (the sounding notes as they are) and predicts the
next event's velocity level (which says note-on or note-off), pitch and gap as three
categorical fields; the pitch's (``models.fields.Toggle``) is trained, scored and drawn
among the sounding notes for a note-off and among the silent ones for a note-on. Decoding is within documented tolerances:

- velocity: level ``c`` plays as ``8 c - 4``, within 4 of the original;
- time: bin 0 is a gap under 5 ms (played as 0, so chords stay chords); bins 1..78 split
  5 ms .. 5 s into log-spaced bins (ratio ``1000 ** (1 / 78)``, about 1.093), each played
  at its geometric centre, within 4.6 % of the original gap; bin 79 is 5 s or more,
  played as 5 s.

Generation may release stuck notes at decoding (``release_held``, generate.py
``--max-held``). Encoding keeps every event that means something: a note-on of a pitch already sounding
is preceded by its note-off (a re-strike), a note-off of a pitch not sounding is
dropped. So the data obeys the rule generation keeps (``next_step``): the fields are drawn
in turn, velocity first, then a pitch that is sounding for a note-off and silent for a
note-on, then the gap, so no generated note is released that is not sounding or struck
while it sounds.
"""

from __future__ import annotations

import os

import numpy as np

from models.config import InputSpec
from note_matrix.midi import DEFAULT_TEMPO_US_PER_BEAT, DEFAULT_TICKS_PER_BEAT, read_midi, write_midi
from note_matrix.playable import playable_events
from note_matrix.representations.base import Encoded, Representation, ScoreColumn

PITCHES = 128
VELOCITY_STEP = 8
VELOCITY_CLASSES = 17  # 0: note-off; 1..16: note-on at velocity level c
TIME_CLASSES = 80
MIN_GAP_SECONDS = 0.005  # below: bin 0, played as no gap
MAX_GAP_SECONDS = 5.0  # at or above: the last bin, played as 5 s
TIME_EDGES = np.geomspace(MIN_GAP_SECONDS, MAX_GAP_SECONDS, TIME_CLASSES - 1)  # bin k (1..78): [edge k-1, edge k)
TIME_VALUES = np.concatenate([[0.0], np.sqrt(TIME_EDGES[:-1] * TIME_EDGES[1:]), [MAX_GAP_SECONDS]])
FIELDS = ("velocity", "pitch", "time")
SOUNDING = tuple(f"sounding_{pitch}" for pitch in range(PITCHES))
BLOCKED = -1e9  # the logit of a class that would make the step invalid


def velocity_class(velocity: np.ndarray) -> np.ndarray:
    """MIDI velocities 0..127 to classes: 0 stays 0 (note-off), v >= 1 becomes ceil(v / 8)."""
    return (np.asarray(velocity, np.int64) + VELOCITY_STEP - 1) // VELOCITY_STEP


def class_velocity(level: np.ndarray) -> np.ndarray:
    """Classes back to MIDI velocities: 0 -> 0, level c -> 8 c - 4."""
    level = np.asarray(level, np.int64)
    return np.where(level > 0, VELOCITY_STEP * level - VELOCITY_STEP // 2, 0)


def time_class(gap_seconds: np.ndarray) -> np.ndarray:
    """Gaps in seconds to time bins 0..79 (module docstring)."""
    gap = np.asarray(gap_seconds, np.float64)
    return np.where(gap < MIN_GAP_SECONDS, 0, np.searchsorted(TIME_EDGES, gap, side="right"))


def events(time_seconds, pitch, velocity) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The note events kept (module docstring): ``(time_seconds, pitch, velocity class)``."""
    sounding = np.zeros(PITCHES, bool)
    kept: list[tuple[float, int, int]] = []
    for time, note, level in zip(np.asarray(time_seconds).tolist(), np.asarray(pitch).tolist(),
                                 velocity_class(velocity).tolist()):
        if sounding[note]:
            kept.append((time, note, 0))  # a note-off, or the release before a re-strike
        sounding[note] = level > 0
        if level > 0:
            kept.append((time, note, level))
    if not kept:
        return np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64)
    times, notes, levels = zip(*kept)
    return np.array(times), np.array(notes, np.int64), np.array(levels, np.int64)


def release_held(time_seconds: np.ndarray, pitch: np.ndarray, velocity: np.ndarray, max_held: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Balanced events (``playable.playable_events``: ``(time_seconds, pitch, velocity (0:
    off))``, each note-on followed by its one note-off) with every note released at most
    ``max_held`` seconds after its onset (a stuck note: the network can lose track of a note
    it struck long before), in time order, a release before a strike at one instant."""
    times = np.array(time_seconds, np.float64)
    onsets: dict[int, float] = {}
    for index, (time, key, level) in enumerate(zip(times.tolist(), pitch.tolist(), velocity.tolist())):
        if level > 0:
            onsets[key] = time
        else:
            times[index] = min(time, onsets.pop(key) + max_held)
    order = np.lexsort((velocity > 0, times))
    return times[order], pitch[order], velocity[order]


def sounding_after(pitch: np.ndarray, level: np.ndarray) -> np.ndarray:
    """``(events, 128)`` int32: which pitches sound after each event of a valid event list."""
    change = np.zeros((len(pitch), PITCHES), np.int32)
    change[np.arange(len(pitch)), pitch] = np.where(level > 0, 1, -1)
    return np.cumsum(change, axis=0, dtype=np.int32)


class EventFields(Representation):
    """Note events as three categorical fields plus the sounding notes (module docstring)."""

    name = "note_events"
    columns = (*FIELDS, *SOUNDING)
    heads = ("categorical",)
    # The training recipe: see the README, "Note events".
    recipe = {"model.units": 256, "model.dropout_rate": 0.1, "model.optimizer": "adam",
              "model.learning_rate": 2e-3, "model.clipnorm": 1.0, "model.targets": "all",
              "window_length": 100, "batch_size": 16, "validation_stride": 5, "patience": 10, "epochs": 150}
    score_columns = (
        ScoreColumn("pitch_accuracy", "pitch acc.", True),
        ScoreColumn("on_off_accuracy", "on/off acc.", True),
        ScoreColumn("time_accuracy", "time acc.", True),
        ScoreColumn("nll_pitch", "NLL pitch", False),
        ScoreColumn("nll_on_off", "NLL on/off", False),
        ScoreColumn("nll_velocity", "NLL vel.", False),
        ScoreColumn("nll_time", "NLL time", False),
        ScoreColumn("nll", "NLL/event", False),
    )
    score_legend = (
        "* best in its column. Every predictor draws among the valid events only (a note-off of a sounding note,",
        "a note-on of a silent one). acc.: share of events whose most likely value is right. NLL: negative",
        "log-likelihood in nats per event of each field's marginal (pitch of 128; on/off; the velocity level",
        "given a note-on, 0 for a note-off; time of 80 bins); NLL/event: of the whole event, -log P(level)",
        "- log P(pitch | on or off) - log P(time) for independent fields. '-': no distribution.",
    )

    # -- files ---------------------------------------------------------------------
    def from_events(self, time_seconds, pitch, velocity) -> np.ndarray:
        """Note events (seconds, MIDI pitch, MIDI velocity; 0 = off) to ``(steps, 131)`` int32."""
        times, notes, levels = events(time_seconds, pitch, velocity)
        gaps = np.diff(times, prepend=0.0)
        fields = np.stack([levels, notes, time_class(gaps)], axis=1)
        return np.concatenate([fields, sounding_after(notes, levels)], axis=1).astype(np.int32)

    def encode(self, path: str | os.PathLike) -> Encoded:
        notes = read_midi(path)
        meta = {"tempo_us_per_beat": notes.tempo_us_per_beat,
                "ticks_per_beat": notes.ticks_per_beat or DEFAULT_TICKS_PER_BEAT}
        return Encoded(self.from_events(notes.time_seconds, notes.pitch, notes.velocity), meta)

    def to_events(self, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Steps back to ``(time_seconds, pitch, velocity)``; ``ValueError`` for values out of range."""
        steps = np.asarray(steps)
        if steps.ndim != 2 or steps.shape[1] < len(FIELDS):
            raise ValueError(f"note events have shape (steps, {len(self.columns)}), got {steps.shape}")
        level, pitch, time = (steps[:, i].astype(np.int64) for i in range(len(FIELDS)))
        for values, count, what in ((level, VELOCITY_CLASSES, "velocity"), (pitch, PITCHES, "pitch"),
                                    (time, TIME_CLASSES, "time")):
            if np.any((values < 0) | (values >= count)):
                raise ValueError(f"note events: {what} must lie in 0..{count - 1}")
        return np.cumsum(TIME_VALUES[time]), pitch.astype(np.int16), class_velocity(level).astype(np.int16)

    def decode(self, steps: np.ndarray, meta: dict, path: str | os.PathLike) -> int:
        """The steps as a MIDI file (``playable.write_playable``'s); with ``meta["max_held_seconds"]``
        (generate.py ``--max-held``), every note still sounding that long after its onset is
        released then (``release_held``). Returns the number of notes written."""
        time_seconds, pitch, velocity = playable_events(*self.to_events(steps))  # what write_playable writes
        if meta.get("max_held_seconds") is not None:
            time_seconds, pitch, velocity = release_held(time_seconds, pitch, velocity, meta["max_held_seconds"])
        write_midi(path, time_seconds, pitch, velocity,
                   tempo_us_per_beat=meta.get("tempo_us_per_beat", DEFAULT_TEMPO_US_PER_BEAT))
        return int(np.count_nonzero(velocity))

    # -- the network -------------------------------------------------------------------
    def inputs(self) -> InputSpec:
        return InputSpec("one_hot", len(self.columns), classes=(VELOCITY_CLASSES, PITCHES, TIME_CLASSES,
                                                                *[1] * PITCHES))

    def head(self, name: str, mixtures: int):
        from models.fields import Categorical, Head, Toggle

        if name != "categorical":
            raise ValueError(f"{self.name} has the head categorical only, not {name!r}")
        return Head((Categorical("velocity", VELOCITY_CLASSES),
                     Toggle("pitch", PITCHES, gate=0, state=len(FIELDS)),  # a note-off's among the sounding notes
                     Categorical("time", TIME_CLASSES)))

    def metrics(self, head_name: str, head) -> list:
        from models.head_metrics import LastLoss, field_metrics

        return [*field_metrics(head), LastLoss(head)]

    def valid_steps(self, steps):
        from keras import ops

        limits = np.array([VELOCITY_CLASSES - 1, PITCHES - 1, TIME_CLASSES - 1, *[1] * PITCHES], np.float32)
        clipped = ops.clip(ops.round(ops.cast(steps, "float32")), 0.0, ops.convert_to_tensor(limits))
        return ops.cast(clipped, "int32")

    def next_step(self, head, prediction, noise, previous, *, temperature, top_k, spread):
        """Velocity, then pitch, then gap, each drawn (or, at temperature 0, the most likely)
        among the classes that keep the step valid after ``previous``'s sounding notes."""
        from keras import ops

        from models.fields import sample_categorical

        def choose(logits, allowed, uniform):
            logits = ops.where(allowed, logits, BLOCKED)
            if temperature == 0:
                return ops.cast(ops.argmax(logits, axis=-1), "int32")
            return sample_categorical(logits, uniform, temperature, top_k)

        prediction = ops.cast(prediction, "float32")
        uniform = ops.cast(noise, "float32")
        sounding = ops.cast(previous, "int32")[:, len(FIELDS):] > 0
        some, every = ops.any(sounding, axis=-1), ops.all(sounding, axis=-1)
        off_allowed = ops.concatenate([some[:, None], ops.repeat(ops.logical_not(every)[:, None],
                                                                 VELOCITY_CLASSES - 1, axis=1)], axis=1)
        level = choose(prediction[:, :VELOCITY_CLASSES], off_allowed, uniform[:, 0])
        on = level > 0
        pitch_allowed = ops.where(on[:, None], ops.logical_not(sounding), sounding)
        pitch = choose(prediction[:, VELOCITY_CLASSES : VELOCITY_CLASSES + PITCHES], pitch_allowed, uniform[:, 1])
        time = choose(prediction[:, VELOCITY_CLASSES + PITCHES :], ops.ones((1, TIME_CLASSES), "bool"),
                      uniform[:, 2])
        struck = ops.one_hot(pitch, PITCHES, dtype="int32") > 0
        now = ops.where(struck, on[:, None], sounding)
        return ops.concatenate([ops.stack([level, pitch, time], axis=1), ops.cast(now, "int32")], axis=1)

    # -- evaluation ------------------------------------------------------------------
    def point_scores(self, points: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        return point_accuracies(points, targets)

    def distribution_scores(self, head, outputs: np.ndarray, targets: np.ndarray, spread) -> dict[str, float]:
        """Scores of the distribution the generator draws from at temperature 1 (``next_step``):
        the velocity level among the valid ones, then the pitch among the sounding notes (a
        note-off) or the silent ones (a note-on), then the gap (``drawn_scores``)."""
        from models.likelihood import log_softmax

        outputs = np.asarray(outputs, np.float64)
        fields = np.split(outputs, [VELOCITY_CLASSES, VELOCITY_CLASSES + PITCHES], axis=1)
        return drawn_scores(*(np.exp(log_softmax(logits)) for logits in fields), targets)

    def baselines(self, training: list[np.ndarray], validation: list[np.ndarray] | None = None):
        from note_matrix.evaluation.event_baselines import EventBaselines

        return EventBaselines.fit(training, validation or [])

    def to_json(self) -> dict:
        return {"name": self.name}


def point_accuracies(points: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Pitch, on/off and time accuracy of predicted events ``(rows, 3 or more)`` against the targets."""
    points, targets = np.rint(points).astype(np.int64), np.asarray(targets, np.int64)
    return {"pitch_accuracy": float(np.mean(points[:, 1] == targets[:, 1])),
            "on_off_accuracy": float(np.mean((points[:, 0] > 0) == (targets[:, 0] > 0))),
            "time_accuracy": float(np.mean(points[:, 2] == targets[:, 2]))}


def sounding_before(targets: np.ndarray) -> np.ndarray:
    """``(rows, 128)`` bool: the notes sounding before each event of valid ``targets``, its
    sounding columns with its own pitch undone."""
    targets = np.asarray(targets, np.int64)
    before = targets[:, len(FIELDS):] > 0
    before[np.arange(len(targets)), targets[:, 1]] = targets[:, 0] == 0  # a note-off's pitch sounded, a note-on's not
    return before


def drawn_probabilities(velocity: np.ndarray, pitch: np.ndarray, time: np.ndarray, before: np.ndarray):
    """Independent field probabilities ``(rows, 17)``, ``(rows, 128)``, ``(rows, 80)`` as
    ``next_step`` draws from them with ``before`` sounding: ``(velocity among the valid
    levels, pitch given a note-on (among the silent notes), pitch given a note-off (among
    the sounding ones), time)``, each renormalised."""
    def kept(probabilities, allowed):
        masked = np.where(allowed, probabilities, 0.0)
        total = masked.sum(axis=1, keepdims=True)
        return np.divide(masked, total, out=np.zeros_like(masked), where=total > 0)

    levels = np.concatenate([before.any(axis=1, keepdims=True),
                             np.repeat(~before.all(axis=1, keepdims=True), VELOCITY_CLASSES - 1, axis=1)], 1)
    return kept(velocity, levels), kept(pitch, ~before), kept(pitch, before), np.asarray(time, np.float64)


def drawn_scores(velocity: np.ndarray, pitch: np.ndarray, time: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Scores of independent field predictions drawn as ``next_step`` draws them
    (``drawn_probabilities``) for valid ``targets``: the pitch's of its marginal, ``P(off)
    P(pitch | off) + P(on) P(pitch | on)``; ``nll`` of the whole event, ``-log P(level) -
    log P(pitch | on or off) - log P(gap)``."""
    from models.likelihood import neg_log

    targets = np.asarray(targets, np.int64)
    rows = np.arange(len(targets))
    velocity, given_on, given_off, time = drawn_probabilities(velocity, pitch, time, sounding_before(targets))
    p_off = velocity[:, :1]
    struck = np.where(targets[:, 0] > 0, given_on[rows, targets[:, 1]], given_off[rows, targets[:, 1]])
    joint = neg_log(velocity[rows, targets[:, 0]]) + neg_log(struck) + neg_log(time[rows, targets[:, 2]])
    return event_scores(velocity, p_off * given_off + (1.0 - p_off) * given_on, time, targets, joint)


def event_scores(velocity: np.ndarray, pitch: np.ndarray, time: np.ndarray, targets: np.ndarray,
                 joint_nll: np.ndarray) -> dict[str, float]:
    """Accuracies and ``field_nll`` of the per-event marginals of each field, and ``nll``,
    the mean of ``joint_nll`` (``-log P`` of each whole event)."""
    targets = np.asarray(targets, np.int64)
    return {"pitch_accuracy": float(np.mean(pitch.argmax(axis=1) == targets[:, 1])),
            "on_off_accuracy": float(np.mean((velocity[:, 0] < 0.5) == (targets[:, 0] > 0))),
            "time_accuracy": float(np.mean(time.argmax(axis=1) == targets[:, 2])),
            **field_nll(velocity, targets, pitch=pitch, time=time), "nll": float(np.mean(joint_nll))}


def field_nll(velocity: np.ndarray, targets: np.ndarray, *, pitch: np.ndarray, time: np.ndarray) -> dict[str, float]:
    """Mean NLL per event of each field from per-event class probabilities (``velocity``
    ``(rows, 17)``, ``pitch`` ``(rows, 128)``, ``time`` ``(rows, 80)``): ``nll_pitch``,
    ``nll_on_off`` (-log P(off) or -log P(on)), ``nll_velocity`` (-log P(level | on) on a
    note-on, 0 on a note-off) and ``nll_time``."""
    from models.likelihood import neg_log

    rows = np.arange(len(targets))
    level = targets[:, 0]
    p_off = velocity[:, 0]
    on = level > 0
    p_level = velocity[rows, level]
    on_off = neg_log(np.where(on, 1.0 - p_off, p_off))
    given_on = np.where(on, np.maximum(neg_log(p_level) - neg_log(1.0 - p_off), 0.0), 0.0)  # >= 0 despite rounding
    return {"nll_pitch": float(np.mean(neg_log(pitch[rows, targets[:, 1]]))),
            "nll_on_off": float(np.mean(on_off)),
            "nll_velocity": float(np.mean(given_on)),
            "nll_time": float(np.mean(neg_log(time[rows, targets[:, 2]])))}
