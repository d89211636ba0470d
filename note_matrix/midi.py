"""Reading and writing Standard MIDI Files with mido, as flat arrays of note events.

A file is read into :class:`MidiNotes`: every note-on and note-off of every non-drum
channel, all tracks merged in time order, with absolute onsets in seconds computed from
the file's tempo map (or its SMPTE time division). Nothing here scales or encodes:
that is the job of a representation (``note_matrix.representation``).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import mido
import numpy as np

from note_matrix.errors import MidiError

DRUM_CHANNEL = 9  # channel 10 in General MIDI's 1-based numbering
DEFAULT_TEMPO_US_PER_BEAT = 500_000  # 120 beats per minute, the MIDI default
DEFAULT_TICKS_PER_BEAT = 960  # used when writing: one tick is 0.52 ms at 120 bpm

# What mido raises on malformed bytes (it has no exception class of its own).
_MIDO_PARSE_ERRORS = (EOFError, OSError, ValueError, KeyError, IndexError, TypeError)


@dataclass(frozen=True)
class MidiNotes:
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


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise MidiError(path, "is a directory, not a file") from None
    except PermissionError:
        raise MidiError(path, "permission denied") from None
    except FileNotFoundError:
        raise MidiError(path, "no such file") from None
    except OSError as error:
        raise MidiError(path, f"cannot be read ({error.strerror or error})") from None
    if not data:
        raise MidiError(path, "empty file (0 bytes)")
    if not data.startswith(b"MThd"):
        kind = "a RIFF container (WAV?)" if data.startswith(b"RIFF") else "no MThd header"
        raise MidiError(path, f"not a MIDI file ({kind})")
    return data


def _parse(path: Path, data: bytes) -> mido.MidiFile:
    try:
        return mido.MidiFile(file=io.BytesIO(data))
    except _MIDO_PARSE_ERRORS as error:
        reason = str(error) or type(error).__name__
        if isinstance(error, EOFError):
            reason = "truncated (unexpected end of file)"
        raise MidiError(path, f"malformed MIDI: {reason}") from None


def _seconds_per_tick_smpte(division: int) -> float:
    """``division`` as mido reads it (signed): high byte -frames per second, low byte ticks per frame."""
    frames_per_second = -(division >> 8)
    ticks_per_frame = division & 0xFF
    if frames_per_second == 29:
        frames_per_second = 29.97  # drop-frame timecode
    return 1.0 / (frames_per_second * ticks_per_frame)


def read_midi(path: str | os.PathLike) -> MidiNotes:
    """Read the note events of a type 0 or type 1 MIDI file.

    Raises ``MidiError`` (naming the file and the reason) for anything that is not a
    readable MIDI file. A valid file with no notes gives empty arrays.
    """
    path = Path(path)
    midi = _parse(path, _read_bytes(path))
    if midi.type == 2:
        raise MidiError(path, "type 2 MIDI (independent sequences per track) is not supported")
    division = midi.ticks_per_beat  # negative for SMPTE time division
    smpte = division < 0
    if division == 0 or (smpte and division & 0xFF == 0):
        raise MidiError(path, f"invalid time division {division}")

    events = []  # (tick, track, position, pitch, velocity)
    tempo_changes = []  # (tick, position-in-merge, tempo)
    drum_messages = 0
    for track_index, track in enumerate(midi.tracks):
        tick = 0
        for position, message in enumerate(track):
            tick += message.time
            if message.type == "set_tempo":
                tempo_changes.append((tick, track_index, position, message.tempo))
            elif message.type in ("note_on", "note_off"):
                if message.channel == DRUM_CHANNEL:
                    drum_messages += 1
                    continue
                velocity = message.velocity if message.type == "note_on" else 0
                events.append((tick, track_index, position, message.note, velocity))

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
    return MidiNotes(
        time_seconds=seconds[order],
        pitch=np.array([e[3] for e in events], dtype=np.int16)[order],
        velocity=np.array([e[4] for e in events], dtype=np.int16)[order],
        ticks_per_beat=None if smpte else division,
        tempo_us_per_beat=tempo,
        dropped={"drum_messages": drum_messages},
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
    is written as a note_off. The file is written to a temporary name and renamed.
    """
    time_seconds = np.asarray(time_seconds, dtype=np.float64)
    if len(time_seconds) and (np.any(np.diff(time_seconds) < 0) or time_seconds[0] < 0):
        raise ValueError("time_seconds must be non-negative and non-decreasing")
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
    path = Path(path)
    temporary = path.with_name(path.name + ".part")
    midi.save(temporary)
    os.replace(temporary, path)
