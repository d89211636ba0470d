"""Reading and writing Standard MIDI Files with mido, as flat arrays of note events.

A file is read into :class:`NoteEvents`: every note-on and note-off of every non-drum
channel, all tracks merged in time order, with absolute onsets in seconds computed from
the file's tempo map (or its SMPTE time division). Nothing here scales or encodes:
that is the job of a representation (``note_matrix.representations``).

Reading either returns the notes or raises ``MidiError`` naming the file and the reason,
whatever the bytes are. The file's chunk structure is checked here (header, declared
lengths against the file's size, unknown chunks skipped as the standard says), then
mido decodes the events of each track chunk on its own, so an event can never run from
one track into the next. Three caps (``ReadLimits``) keep a hostile file from hanging a
run or filling memory.
"""

from __future__ import annotations

import io
import os
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import mido
import numpy as np
from mido.midifiles.meta import KeySignatureError
from mido.midifiles.midifiles import read_track

from note_matrix import atomic
from note_matrix.errors import MidiError, NoteMatrixError

DRUM_CHANNEL = 9  # channel 10 in General MIDI's 1-based numbering
DEFAULT_TEMPO_US_PER_BEAT = 500_000  # 120 beats per minute, the MIDI default
DEFAULT_TICKS_PER_BEAT = 960  # used when writing: one tick is 0.52 ms at 120 bpm
SMPTE_FRAME_RATES = (24, 25, 29, 30)  # 29 stands for 29.97 (drop-frame)

# What mido raises on malformed event bytes (it has no exception class of its own).
_MIDO_EVENT_ERRORS = (OSError, ValueError, KeyError, IndexError, TypeError, KeySignatureError)


class MidiLimitError(MidiError):
    """A file refused because it exceeds one of the ``ReadLimits``.

    Unlike other ``MidiError``s this depends on settings, not only on the file, so the
    encoding cache does not remember it.
    """


@dataclass(frozen=True)
class ReadLimits:
    """Caps on one file, each overridable by an environment variable.

    ``max_file_bytes`` (``NOTE_MATRIX_MAX_FILE_BYTES``, 8 MiB): larger files are refused
    before they are read. ``max_events`` (``NOTE_MATRIX_MAX_EVENTS``, 500,000, about
    125 MB of parsed events): reading stops there. ``max_seconds``
    (``NOTE_MATRIX_MAX_PARSE_SECONDS``, 10 s): reading stops after this long. For scale:
    the largest pop file has 912 events, the largest Nottingham file about 1,300, and
    a typical file reads in a few milliseconds.
    """

    max_file_bytes: int = 8 * 2**20
    max_events: int = 500_000
    max_seconds: float = 10.0

    ENV = {
        "max_file_bytes": ("NOTE_MATRIX_MAX_FILE_BYTES", int),
        "max_events": ("NOTE_MATRIX_MAX_EVENTS", int),
        "max_seconds": ("NOTE_MATRIX_MAX_PARSE_SECONDS", float),
    }

    @classmethod
    def from_env(cls) -> ReadLimits:
        """The defaults, with any of the three environment variables applied."""
        values = {}
        for name, (variable, kind) in cls.ENV.items():
            text = os.environ.get(variable)
            if text:
                try:
                    values[name] = kind(text)
                except ValueError:
                    raise NoteMatrixError(f"{variable}={text!r} is not a number") from None
                if values[name] <= 0:
                    raise NoteMatrixError(f"{variable} must be positive, got {text}")
        return cls(**values)


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


def _read_bytes(path: Path, limits: ReadLimits) -> bytes:
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise IsADirectoryError
        if size > limits.max_file_bytes:
            raise MidiLimitError(
                path, f"{size:,} bytes, over the {limits.max_file_bytes:,}-byte limit (NOTE_MATRIX_MAX_FILE_BYTES)"
            )
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


@dataclass(frozen=True)
class _Header:
    format: int
    division: int  # ticks per beat, or negative: SMPTE (see _seconds_per_tick_smpte)
    track_chunks: list[bytes]  # each a whole MTrk chunk, header included
    trailing_bytes: int  # bytes after the last announced track, ignored


def _split_chunks(path: Path, data: bytes) -> _Header:
    """Check the header and the chunk lengths; the MTrk chunks the header announces."""
    if len(data) < 14:
        raise MidiError(path, f"truncated header ({len(data)} bytes, a MIDI header needs 14)")
    (header_length,) = struct.unpack(">I", data[4:8])
    if header_length < 6 or 8 + header_length > len(data):
        raise MidiError(path, f"invalid header length {header_length}")
    midi_format, track_count, division = struct.unpack(">HHh", data[8:14])
    if midi_format > 2:
        raise MidiError(path, f"unknown MIDI format {midi_format} (0, 1 and 2 exist)")
    if division == 0:
        raise MidiError(path, "invalid time division 0")
    if division < 0 and (-(division >> 8) not in SMPTE_FRAME_RATES or division & 0xFF == 0):
        raise MidiError(path, f"invalid SMPTE time division 0x{division & 0xFFFF:04x}")
    chunks = []
    position = 8 + header_length
    while len(chunks) < track_count:
        if position + 8 > len(data):
            raise MidiError(
                path, f"truncated: the header announces {track_count} tracks, the file ends after {len(chunks)}"
            )
        kind = data[position : position + 4]
        if not (kind.isascii() and kind.isalpha()):
            raise MidiError(path, f"no chunk at byte {position} (found {kind!r}): corrupt file")
        (length,) = struct.unpack(">I", data[position + 4 : position + 8])
        end = position + 8 + length
        if end > len(data):
            raise MidiError(
                path,
                f"truncated: track chunk {len(chunks)} declares {length:,} bytes, "
                f"only {len(data) - position - 8:,} remain in the file",
            )
        if kind == b"MTrk":
            chunks.append(data[position:end])
        # else: an unknown chunk type, which the standard says to skip
        position = end
    return _Header(midi_format, division, chunks, len(data) - position)


class _GuardedChunk(io.BytesIO):
    """One track chunk for mido's reader, stopping it at the time and event limits.

    mido's ``read_track`` calls ``tell()`` once per event, so that is where the
    budget is counted.
    """

    def __init__(self, chunk: bytes, budget: _Budget):
        super().__init__(chunk)
        self.budget = budget

    def tell(self) -> int:
        self.budget.spend()
        return super().tell()


class _Budget:
    def __init__(self, path: Path, limits: ReadLimits):
        self.path = path
        self.limits = limits
        self.events_left = limits.max_events
        self.deadline = time.monotonic() + limits.max_seconds

    def spend(self) -> None:
        self.events_left -= 1
        if self.events_left < 0:
            raise MidiLimitError(
                self.path, f"more than {self.limits.max_events:,} events (NOTE_MATRIX_MAX_EVENTS)"
            )
        if time.monotonic() > self.deadline:
            raise MidiLimitError(
                self.path, f"reading took more than {self.limits.max_seconds:g} s (NOTE_MATRIX_MAX_PARSE_SECONDS)"
            )


def _decode_track(path: Path, index: int, chunk: bytes, budget: _Budget) -> mido.MidiTrack:
    budget.events_left += 2  # read_track also calls tell() before its first event and after its last
    try:
        return read_track(_GuardedChunk(chunk, budget))
    except EOFError:
        raise MidiError(path, f"track {index}: an event runs past the end of its track chunk") from None
    except _MIDO_EVENT_ERRORS as error:
        raise MidiError(path, f"track {index}: invalid event ({error or type(error).__name__})") from None


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
    header = _split_chunks(path, _read_bytes(path, limits))
    if header.format == 2:
        raise MidiError(path, "type 2 MIDI (independent sequences per track) is not supported")
    budget = _Budget(path, limits)

    events = []  # (tick, track, position, pitch, velocity)
    tempo_changes = []  # (tick, track, position, tempo)
    drum_messages = 0
    for track_index, chunk in enumerate(header.track_chunks):
        tick = 0
        for position, message in enumerate(_decode_track(path, track_index, chunk, budget)):
            tick += message.time
            if message.type == "set_tempo":
                tempo_changes.append((tick, track_index, position, message.tempo))
            elif message.type in ("note_on", "note_off"):
                if message.channel == DRUM_CHANNEL:
                    drum_messages += 1
                    continue
                velocity = message.velocity if message.type == "note_on" else 0
                events.append((tick, track_index, position, message.note, velocity))

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
    atomic.write_atomically(path, midi.save, sync=False)
