"""MIDI fixtures built in code: raw Standard MIDI File bytes, and whole songs via mido."""

from __future__ import annotations

import struct
from pathlib import Path

import mido
import numpy as np


def vlq(value: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def track_chunk(events: list[tuple[int | bytes, bytes]]) -> bytes:
    """An MTrk chunk from ``(delta_ticks, raw event bytes)``; the raw bytes may rely on
    running status (no status byte), a delta given as bytes is written as it is. An
    end-of-track meta event is appended."""
    body = b"".join((delta if isinstance(delta, bytes) else vlq(delta)) + data for delta, data in events)
    body += b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(body)) + body


def long_vlq(value: int, length: int) -> bytes:
    """``value`` as a variable-length number padded to ``length`` bytes with leading 0x80 bytes
    (the same value, spelled longer than the standard's 4 bytes allow when ``length`` > 4)."""
    digits = vlq(value)
    return b"\x80" * (length - len(digits)) + digits


def smf(tracks: list[bytes], *, fmt: int = 1, division: int = 480) -> bytes:
    """A whole file: MThd header and the given track chunks."""
    return b"MThd" + struct.pack(">IHHH", 6, fmt, len(tracks), division) + b"".join(tracks)


def tempo_event(us_per_beat: int) -> bytes:
    return b"\xff\x51\x03" + us_per_beat.to_bytes(3, "big")


def write_song(
    path: Path,
    notes: list[tuple[float, float, int, int]],
    *,
    ticks_per_beat: int = 480,
    tempo_us_per_beat: int = 500_000,
    channel: int = 0,
) -> Path:
    """A type 1 file (tempo track + one note track) of ``(start_s, duration_s, pitch, velocity)``."""
    seconds_per_tick = tempo_us_per_beat / 1e6 / ticks_per_beat
    events = []
    for start, duration, pitch, velocity in notes:
        events.append((round(start / seconds_per_tick), 1, pitch, velocity))
        events.append((round((start + duration) / seconds_per_tick), 0, pitch, 0))
    events.sort(key=lambda e: (e[0], e[1]))
    conductor = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=tempo_us_per_beat, time=0)])
    track = mido.MidiTrack()
    previous = 0
    for tick, is_on, pitch, velocity in events:
        kind = "note_on" if is_on else "note_off"
        track.append(mido.Message(kind, channel=channel, note=pitch, velocity=velocity, time=tick - previous))
        previous = tick
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    midi.tracks.extend([conductor, track])
    midi.save(path)
    return path


def random_song(path: Path, rng: np.random.Generator, n_notes: int = 80) -> Path:
    """A melody with occasional chords, in C major, eighth and quarter notes at 120 bpm."""
    scale = np.array([60, 62, 64, 65, 67, 69, 71, 72])
    notes, time = [], 0.0
    for _ in range(n_notes):
        duration = float(rng.choice([0.25, 0.5]))
        pitch = int(rng.choice(scale))
        notes.append((time, duration * 0.9, pitch, int(rng.integers(60, 110))))
        if rng.random() < 0.2:
            notes.append((time, duration * 0.9, pitch - 12, int(rng.integers(50, 90))))
        time += duration
    return write_song(path, notes)
