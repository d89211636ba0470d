"""Reading and writing Standard MIDI Files, as flat arrays of note events.

A file is read into :class:`NoteEvents`: every note-on and note-off of every non-drum
channel, all tracks merged in time order, with absolute onsets in seconds computed from
the file's tempo map (or its SMPTE time division). Nothing here scales or encodes:
that is the job of a representation (``note_matrix.representations``). The bytes of the
file (regular files only, within the caps of ``ReadLimits``), its chunks and each
track's events come from ``note_matrix.midi_bytes``; this module turns those events into
notes and times, and writes notes back with mido.

Reading either returns the notes or raises ``MidiError`` naming the file and the reason,
whatever the bytes are. A tempo of 0 microseconds per beat is refused, not repaired: it
would put every event after it at the same instant, so the file's timing is lost either
way, and a made-up tempo would pass for the file's own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import mido
import numpy as np

from note_matrix import atomic
from note_matrix.errors import MidiError
from note_matrix.midi_bytes import (  # noqa: F401  (MidiLimitError: callers catch it from here)
    MAX_VARLEN_VALUE,
    Budget,
    MidiLimitError,
    ReadLimits,
    decode_track,
    read_bytes,
    split_chunks,
)

DRUM_CHANNEL = 9  # channel 10 in General MIDI's 1-based numbering
DEFAULT_TEMPO_US_PER_BEAT = 500_000  # 120 beats per minute, the MIDI default
DEFAULT_TICKS_PER_BEAT = 960  # used when writing: one tick is 0.52 ms at 120 bpm
MAX_TICK = 2**53  # ticks up to here are exact as float64 and far from int64's overflow


@dataclass(frozen=True)
class NoteEvents:
    """Note events of one file, merged over tracks in time order.

    ``time_seconds``: (events,) float64, absolute onset of each event, non-decreasing.
    ``pitch``: (events,) int16 in 0..127.
    ``velocity``: (events,) int16 in 0..127; 0 marks a note-off (a note_off message, or
    a note_on with velocity 0).
    """

    time_seconds: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray
    ticks_per_beat: int | None = None  # None for SMPTE time division
    tempo_us_per_beat: int = DEFAULT_TEMPO_US_PER_BEAT  # the tempo in force at tick 0
    dropped: dict[str, int] = field(default_factory=dict)  # what the notes leave out

    def __len__(self) -> int:
        return len(self.pitch)


def _seconds_per_tick_smpte(division: int) -> float:
    """``division`` as read (signed): high byte -frames per second, low byte ticks per frame."""
    frames_per_second = -(division >> 8)
    ticks_per_frame = division & 0xFF
    if frames_per_second == 29:
        frames_per_second = 29.97  # drop-frame timecode
    return 1.0 / (frames_per_second * ticks_per_frame)


def read_midi(path: str | os.PathLike, limits: ReadLimits | None = None) -> NoteEvents:
    """Read the note events of a type 0 or type 1 MIDI file.

    Raises ``MidiError`` (naming the file and the reason) for anything that is not a
    readable MIDI file, ``MidiLimitError`` for one over ``limits`` (default:
    ``ReadLimits.from_env()``). A valid file with no notes gives empty arrays.
    """
    path = Path(path)
    limits = limits or ReadLimits.from_env()
    header = split_chunks(path, read_bytes(path, limits))
    if header.format == 2:
        raise MidiError(path, "type 2 MIDI (independent sequences per track) is not supported")
    budget = Budget(path, limits)

    events = []  # (tick, track, position, pitch, velocity)
    tempo_changes = []  # (tick, track, position, tempo)
    drum_messages = 0
    for track_index, chunk in enumerate(header.track_chunks):
        tick = 0
        for position, (delta, status, content) in enumerate(decode_track(path, track_index, chunk, budget)):
            tick += delta
            if status == 0xFF and content.type == "set_tempo":
                if content.tempo == 0:
                    raise MidiError(path, f"track {track_index}: a tempo of 0 microseconds per beat at tick {tick:,}")
                tempo_changes.append((tick, track_index, position, content.tempo))
            elif 0x80 <= status < 0xA0:  # note_off, note_on: (pitch, velocity)
                if status & 0x0F == DRUM_CHANNEL:
                    drum_messages += 1
                    continue
                velocity = content[1] if status >= 0x90 else 0
                events.append((tick, track_index, position, content[0], velocity))
        if tick > MAX_TICK:
            raise MidiError(
                path, f"track {track_index}: events up to tick {tick:,}, past the {MAX_TICK:,} a file may span"
            )

    division = header.division
    smpte = division < 0
    ticks = np.array([e[0] for e in events], dtype=np.int64)
    if smpte:
        seconds = ticks * _seconds_per_tick_smpte(division)
        tempo = DEFAULT_TEMPO_US_PER_BEAT
    else:
        seconds, tempo = _ticks_to_seconds(ticks, division, sorted(tempo_changes))
    if events:
        order = np.lexsort(([e[2] for e in events], [e[1] for e in events], ticks))
    else:
        order = np.zeros(0, dtype=np.int64)
    return NoteEvents(
        time_seconds=seconds[order],
        pitch=np.array([e[3] for e in events], dtype=np.int16)[order],
        velocity=np.array([e[4] for e in events], dtype=np.int16)[order],
        ticks_per_beat=None if smpte else division,
        tempo_us_per_beat=tempo,
        dropped={"drum_messages": drum_messages, "trailing_bytes": header.trailing_bytes},
    )


def _ticks_to_seconds(ticks: np.ndarray, ticks_per_beat: int, tempo_changes: list) -> tuple:
    """Absolute seconds of ``ticks`` under a tempo map, and the tempo at tick 0."""
    change_ticks = [0]
    tempos = [DEFAULT_TEMPO_US_PER_BEAT]
    for tick, _track, _position, tempo in tempo_changes:
        if tick == change_ticks[-1]:
            tempos[-1] = tempo  # the last change at a tick wins
        else:
            change_ticks.append(tick)
            tempos.append(tempo)
    change_ticks = np.array(change_ticks, dtype=np.int64)
    seconds_per_tick = np.array(tempos, dtype=np.float64) / (1e6 * ticks_per_beat)
    segment_start = np.concatenate(([0.0], np.cumsum(np.diff(change_ticks) * seconds_per_tick[:-1])))
    segment = np.searchsorted(change_ticks, ticks, side="right") - 1
    seconds = segment_start[segment] + (ticks - change_ticks[segment]) * seconds_per_tick[segment]
    return seconds, int(tempos[0])


def write_midi(
    path: str | os.PathLike,
    time_seconds: np.ndarray,
    pitch: np.ndarray,
    velocity: np.ndarray,
    *,
    tempo_us_per_beat: int = DEFAULT_TEMPO_US_PER_BEAT,
    ticks_per_beat: int = DEFAULT_TICKS_PER_BEAT,
) -> None:
    """Write note events as a type 0 file with one constant tempo, on channel 0.

    Absolute times are rounded to ticks (never the deltas, so rounding errors do not
    accumulate): every onset lands within half a tick of ``time_seconds``. Velocity 0
    is written as a note_off. ``ticks_per_beat`` is lowered where the longest gap would
    need a delta time over 4 bytes. The file is written to a temporary name and renamed.
    """
    time_seconds = np.asarray(time_seconds, dtype=np.float64)
    if len(time_seconds) and (np.any(np.diff(time_seconds) < 0) or time_seconds[0] < 0):
        raise ValueError("time_seconds must be non-negative and non-decreasing")
    ticks_per_beat = _fitting_ticks_per_beat(time_seconds, tempo_us_per_beat, ticks_per_beat)
    ticks = np.rint(time_seconds * ticks_per_beat * 1e6 / tempo_us_per_beat).astype(np.int64)
    deltas = np.diff(ticks, prepend=0)
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=int(tempo_us_per_beat), time=0))
    for delta, note, vel in zip(deltas.tolist(), np.asarray(pitch).tolist(), np.asarray(velocity).tolist()):
        kind = "note_on" if vel > 0 else "note_off"
        track.append(mido.Message(kind, note=note, velocity=vel, time=delta))
    track.append(mido.MetaMessage("end_of_track", time=0))
    midi = mido.MidiFile(type=0, ticks_per_beat=ticks_per_beat)
    midi.tracks.append(track)
    atomic.write_atomically(path, midi.save, sync=False)


def _fitting_ticks_per_beat(time_seconds: np.ndarray, tempo_us_per_beat: int, ticks_per_beat: int) -> int:
    """``ticks_per_beat``, or fewer where the longest gap would not fit a 4-byte delta time.

    At a seed's very fast tempo (1 microsecond per beat) 960 ticks per beat make 0.28 s
    the longest delta the standard allows, and the reader refuses longer ones.
    """
    longest_beats = float(np.max(np.diff(time_seconds, prepend=0.0), initial=0.0)) * 1e6 / tempo_us_per_beat
    largest_delta = MAX_VARLEN_VALUE - 1  # rounding absolute times may add a tick to a gap
    if longest_beats * ticks_per_beat <= largest_delta:
        return ticks_per_beat
    if longest_beats > largest_delta:
        raise ValueError(f"a gap of {longest_beats:g} beats is longer than a delta time can hold")
    return int(largest_delta / longest_beats)
