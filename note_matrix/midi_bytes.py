"""The byte level of a Standard MIDI File: the file's bytes, its chunks, each track's events.

Only regular files are opened (a FIFO would block, a device such as ``/dev/zero`` never
ends), and never more than the size cap plus one byte is read. The file's chunk
structure is checked here (header, declared lengths against the file's size, unknown
chunks skipped as the standard says), then the events of each track chunk are decoded
on their own, so an event can never run from one track into the next. Every length is
bounded before it is decoded: a variable-length number (delta time, meta or sysex
length) has at most 4 bytes, as the standard says, and a meta or sysex event at most the
bytes left in its chunk, so decoding costs time linear in the file's size and the time
limit holds for any file under the size cap; mido decodes the meta events. Three caps
(``ReadLimits``) keep a hostile file from hanging a run or filling memory. Everything
raises ``MidiError`` naming the file and the reason; ``note_matrix.midi`` reads notes
from what this gives.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import mido
from mido.messages.specs import SPEC_BY_STATUS
from mido.midifiles.meta import KeySignatureError, build_meta_message

from note_matrix.errors import MidiError, NoteMatrixError

SMPTE_FRAME_RATES = (24, 25, 29, 30)  # 29 stands for 29.97 (drop-frame)
MAX_VARLEN_BYTES = 4  # the standard's limit on a variable-length number
MAX_VARLEN_VALUE = 0x0FFFFFFF  # the largest number 4 bytes hold, 7 bits each

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


def _over_size_limit(path: Path, size: str, limits: ReadLimits) -> MidiLimitError:
    return MidiLimitError(
        path, f"{size} bytes, over the {limits.max_file_bytes:,}-byte limit (NOTE_MATRIX_MAX_FILE_BYTES)"
    )


def read_regular_file(path: Path, limits: ReadLimits) -> bytes:
    """The bytes of a regular file of at most ``limits.max_file_bytes`` (MIDI or not; ``MidiError`` otherwise).

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
    return data


def read_bytes(path: Path, limits: ReadLimits) -> bytes:
    """The bytes of a MIDI file (``read_regular_file``, not empty, an ``MThd`` header)."""
    data = read_regular_file(path, limits)
    if not data:
        raise MidiError(path, "empty file (0 bytes)")
    if not data.startswith(b"MThd"):
        kind = "a RIFF container (WAV?)" if data.startswith(b"RIFF") else "no MThd header"
        raise MidiError(path, f"not a MIDI file ({kind})")
    return data


@dataclass(frozen=True)
class Header:
    format: int
    division: int  # ticks per beat, or negative: SMPTE (see note_matrix.midi._seconds_per_tick_smpte)
    track_chunks: list[bytes]  # each a whole MTrk chunk, header included
    trailing_bytes: int  # bytes after the last announced track, ignored


def split_chunks(path: Path, data: bytes) -> Header:
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
    return Header(midi_format, division, chunks, len(data) - position)


class Budget:
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


def decode_track(path: Path, index: int, chunk: bytes, budget: Budget) -> list[tuple]:
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
