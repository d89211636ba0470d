"""Reading and writing Standard MIDI Files with mido, as flat arrays of note events.

A file is read into :class:`NoteEvents`: every note-on and note-off of every non-drum
channel, all tracks merged in time order, with absolute onsets in seconds computed from
the file's tempo map (or its SMPTE time division). Nothing here scales or encodes:
that is the job of a representation (``note_matrix.representations``).

Reading either returns the notes or raises ``MidiError`` naming the file and the reason,
whatever the bytes are. Only regular files are opened (a FIFO would block, a device such
as ``/dev/zero`` never ends), and never more than the size cap plus one byte is read. The
file's chunk structure is checked here (header, declared lengths against the file's
size, unknown chunks skipped as the standard says), then the events of each track chunk
are decoded on their own, so an event can never run from one track into the next. Every
length is bounded before it is decoded: a variable-length number (delta time, meta or
sysex length) has at most 4 bytes, as the standard says, and a meta or sysex event at
most the bytes left in its chunk, so decoding costs time linear in the file's size and
the time limit holds for any file under the size cap; mido decodes the meta events.
Three caps (``ReadLimits``) keep a hostile file from hanging a run or filling memory.

A tempo of 0 microseconds per beat is refused (``MidiError``), not repaired: it would put
every event after it at the same instant, so the file's timing is lost either way, and a
made-up tempo would pass for the file's own.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import mido
import numpy as np
from mido.messages.specs import SPEC_BY_STATUS
from mido.midifiles.meta import KeySignatureError, build_meta_message

from note_matrix import atomic
from note_matrix.errors import MidiError, NoteMatrixError

DRUM_CHANNEL = 9  # channel 10 in General MIDI's 1-based numbering
DEFAULT_TEMPO_US_PER_BEAT = 500_000  # 120 beats per minute, the MIDI default
DEFAULT_TICKS_PER_BEAT = 960  # used when writing: one tick is 0.52 ms at 120 bpm
SMPTE_FRAME_RATES = (24, 25, 29, 30)  # 29 stands for 29.97 (drop-frame)
MAX_VARLEN_BYTES = 4  # the standard's limit on a variable-length number
MAX_VARLEN_VALUE = 0x0FFFFFFF  # the largest number 4 bytes hold, 7 bits each
MAX_TICK = 2**53  # ticks up to here are exact as float64 and far from int64's overflow

# What mido raises when it decodes a malformed meta event (it has no exception class of its own).
_MIDO_META_ERRORS = (ValueError, KeyError, IndexError, TypeError, KeySignatureError)
_CONTINUATION_BYTES = re.compile(rb"[\x80-\xff]*")  # the bytes of a variable-length number before its last


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

    ENV: ClassVar[dict[str, tuple[str, type]]] = {
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


def _over_size_limit(path: Path, size: str, limits: ReadLimits) -> MidiLimitError:
    return MidiLimitError(
        path, f"{size} bytes, over the {limits.max_file_bytes:,}-byte limit (NOTE_MATRIX_MAX_FILE_BYTES)"
    )


def _read_bytes(path: Path, limits: ReadLimits) -> bytes:
    """The file's bytes, from a regular file of at most ``limits.max_file_bytes``.

    The type is checked with ``stat`` before anything is opened: opening a FIFO blocks
    until a writer comes, and a device (``/dev/zero``) never ends. The open does not
    block either (a FIFO put in the file's place after the check), and at most the cap
    plus one byte is read, so a file that grows after the check is refused too.
    """
    try:
        status = os.stat(path)
        if stat.S_ISDIR(status.st_mode):
            raise IsADirectoryError
        if not stat.S_ISREG(status.st_mode):
            raise MidiError(path, "not a regular file (a pipe, socket or device); not read")
        if status.st_size > limits.max_file_bytes:
            raise _over_size_limit(path, f"{status.st_size:,}", limits)
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
            data = handle.read(limits.max_file_bytes + 1)
    except IsADirectoryError:
        raise MidiError(path, "is a directory, not a file") from None
    except PermissionError:
        raise MidiError(path, "permission denied") from None
    except FileNotFoundError:
        raise MidiError(path, "no such file") from None
    except OSError as error:
        raise MidiError(path, f"cannot be read ({error.strerror or error})") from None
    if len(data) > limits.max_file_bytes:
        raise _over_size_limit(path, f"more than {limits.max_file_bytes:,}", limits)  # it grew after the stat
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


class _Budget:
    """The events and the time one file may still take; ``spend`` is called once per event."""

    def __init__(self, path: Path, limits: ReadLimits):
        self.path = path
        self.limits = limits
        self.events_left = limits.max_events
        self.deadline = time.monotonic() + limits.max_seconds

    def spend(self) -> None:
        self.events_left -= 1
        if self.events_left < 0:
            raise MidiLimitError(self.path, f"more than {self.limits.max_events:,} events (NOTE_MATRIX_MAX_EVENTS)")
        if time.monotonic() > self.deadline:
            raise MidiLimitError(
                self.path, f"reading took more than {self.limits.max_seconds:g} s (NOTE_MATRIX_MAX_PARSE_SECONDS)"
            )


class _TrackReader:
    """The event bytes of one track chunk, read with every length checked before it is used.

    mido's own reader decodes a variable-length number of any length, in time quadratic
    in it, and only then compares a meta length with what is left: a 1 MB varlen took
    113 s, and the time limit, checked between events, could not stop it.
    """

    def __init__(self, path: Path, index: int, body: bytes):
        self.path = path
        self.index = index
        self.body = body
        self.position = 0

    def error(self, reason: str) -> MidiError:
        return MidiError(self.path, f"track {self.index}: {reason}")

    def at_end(self) -> bool:
        return self.position >= len(self.body)

    def take(self, count: int) -> bytes:
        end = self.position + count
        if end > len(self.body):
            raise self.error("an event runs past the end of its track chunk")
        self.position = end
        return self.body[end - count : end]

    def byte(self) -> int:
        return self.take(1)[0]

    def data(self) -> bytes:
        """A meta or sysex event's data: its length, refused if over what is left, then its bytes."""
        length = self.varlen()
        left = len(self.body) - self.position
        if length > left:
            raise self.error(f"an event declares {length:,} data bytes, only {left:,} remain in its track chunk")
        return self.take(length)

    def varlen(self) -> int:
        """A variable-length number, refused before it is decoded if it has over 4 bytes."""
        length = _CONTINUATION_BYTES.match(self.body, self.position).end() - self.position + 1
        if length > MAX_VARLEN_BYTES:
            raise self.error(f"variable-length number of {length:,} bytes (the standard allows {MAX_VARLEN_BYTES})")
        value = 0
        for byte in self.take(length):
            value = value << 7 | byte & 0x7F
        return value


def _decode_track(path: Path, index: int, chunk: bytes, budget: _Budget) -> list[tuple]:
    """``(delta ticks, status, content)`` of each event of one track chunk (its 8-byte header
    included): ``content`` is a channel message's data bytes, or for a meta event (status
    0xFF) the message as mido decodes it.

    Sysex events are skipped (nothing in them is a note). Running status is set by channel
    messages only; meta and sysex events leave it as it was.
    """
    reader = _TrackReader(path, index, chunk[8:])
    events = []
    running_status = None
    while not reader.at_end():
        budget.spend()
        delta = reader.varlen()
        status = reader.byte()
        if status == 0xFF:
            events.append((delta, status, _meta_message(reader)))
        elif status in (0xF0, 0xF7):
            reader.data()
        else:
            if status < 0x80:
                if running_status is None:
                    raise reader.error("running status with nothing to run on (a data byte before any status byte)")
                reader.position -= 1
                status = running_status
            elif status < 0xF0:
                running_status = status
            events.append((delta, status, _data_bytes(reader, status)))
    return events


def _meta_message(reader: _TrackReader) -> mido.MetaMessage:
    """A meta event after its status byte, decoded by mido, which refuses malformed ones
    (a key signature with 9 sharps)."""
    meta_type = reader.byte()
    data = reader.data()
    try:
        return build_meta_message(meta_type, data)
    except _MIDO_META_ERRORS as error:
        raise reader.error(f"invalid meta event ({error or type(error).__name__})") from None


def _data_bytes(reader: _TrackReader, status: int) -> bytes:
    """The data bytes of the channel (or system) message that starts with ``status``."""
    spec = SPEC_BY_STATUS.get(status)
    if spec is None:
        raise reader.error(f"undefined status byte 0x{status:02x}")
    data = reader.take(spec["length"] - 1)
    if any(byte > 0x7F for byte in data):
        raise reader.error("data byte must be in range 0..127")
    return data


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
        for position, (delta, status, content) in enumerate(_decode_track(path, track_index, chunk, budget)):
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
