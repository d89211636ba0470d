"""Note events that any MIDI reader accepts and plays, whatever a model generated.

``playable_events`` balances generated note events: a note-on of a pitch already
sounding first releases it (or, within ``MIN_NOTE_SECONDS`` of its onset, is merged into
it), a note-off of a silent pitch or one sooner than ``MIN_NOTE_SECONDS`` after its onset
is dropped, and every note still sounding at the end is released ``RELEASE_SECONDS``
after the last event. No note is shorter than ``MIN_NOTE_SECONDS``.
"""

from __future__ import annotations

import os

import numpy as np

from note_matrix.midi import DEFAULT_TEMPO_US_PER_BEAT, write_midi

MIN_NOTE_SECONDS = 0.02  # shorter notes (0 ticks, or a few) are merged or held this long
RELEASE_SECONDS = 0.5  # notes still sounding at the end are released this long after the last event


def playable_events(onsets: np.ndarray, pitches: np.ndarray,
                    velocities: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Note events ``(time_seconds, pitch, velocity (0: off))`` to balanced ones, same layout.

    Every note-on is matched by exactly one note-off of the same pitch at least
    ``MIN_NOTE_SECONDS`` later.
    """
    started: dict[int, float] = {}  # sounding pitch -> onset
    times, out_pitch, out_velocity = [], [], []

    def emit(time: float, pitch: int, velocity: int) -> None:
        times.append(time)
        out_pitch.append(pitch)
        out_velocity.append(velocity)

    for time, pitch, velocity in zip(np.asarray(onsets).tolist(), np.asarray(pitches).tolist(),
                                     np.asarray(velocities).tolist()):
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


def write_playable(path: str | os.PathLike, onsets: np.ndarray, pitches: np.ndarray, velocities: np.ndarray, *,
                   tempo_us_per_beat: int = DEFAULT_TEMPO_US_PER_BEAT) -> int:
    """Write ``playable_events`` of the given events as a MIDI file; returns the number of notes written."""
    time_seconds, pitch, velocity = playable_events(onsets, pitches, velocities)
    write_midi(path, time_seconds, pitch, velocity, tempo_us_per_beat=tempo_us_per_beat)
    return int(np.count_nonzero(velocity))
