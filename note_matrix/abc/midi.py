"""An ABC tune written as a MIDI file, through music21."""

from __future__ import annotations

import copy
import io
import os
from pathlib import Path

import mido

from note_matrix.abc.score import Parsed, one_line, parse, quietly, tune_name
from note_matrix.atomic import write_bytes
from note_matrix.errors import MidiError
from note_matrix.midi import DEFAULT_TICKS_PER_BEAT


def to_midi(tune: str, path: str | os.PathLike, parsed: Parsed | None = None) -> int:
    """Write ``tune`` as a Standard MIDI File at ``path`` (whole or not at all); returns the notes written.

    music21 writes the score, made writable first (``_writable``: chord symbols are not
    played, a pitch twice in a chord sounds once), and times are then rescaled from music21's
    10,080 ticks per beat to the project's ``DEFAULT_TICKS_PER_BEAT`` (960, rounding
    absolute times): pretty_midi refuses a file past tick 10,000,000, which a long tune
    reaches at music21's resolution. Repeats are played once, as written. A tune whose
    repeat marks music21 cannot expand (a ``:|`` with no start it accepts, as generated
    tunes often hold) is written with its repeat marks taken out (``_without_repeats``).

    Raises ``MidiError`` naming ``path`` and the tune when music21 cannot parse or write
    it, or when it has no note to write. A tune need not be ``playable`` to be written:
    a pitch music21 guessed is written as the C it chose. ``parsed``: ``parse(tune)`` when the
    caller has it (``playable`` took it), so music21 parses once; its score is changed in place.
    """
    path = Path(path)
    parsed = parse(tune) if parsed is None else parsed
    if parsed.score is None:
        raise MidiError(path, f"{tune_name(tune)}: music21 cannot parse it ({parsed.error})")
    from music21.midi.translate import music21ObjectToMidiFile
    from music21.repeat import ExpanderException

    score = _writable(parsed.score)
    with quietly():
        try:
            try:
                data = music21ObjectToMidiFile(score).writestr()
            except ExpanderException:
                data = music21ObjectToMidiFile(_without_repeats(score)).writestr()
        except Exception as exception:  # noqa: BLE001 (music21's writer, any kind: each means "cannot write")
            raise MidiError(
                path, f"{tune_name(tune)}: music21 cannot write it as MIDI ({one_line(exception)})"
            ) from None
    midi = _rescaled(mido.MidiFile(file=io.BytesIO(data)), DEFAULT_TICKS_PER_BEAT)
    notes = sum(message.type == "note_on" and message.velocity > 0 for track in midi.tracks for message in track)
    if notes == 0:
        raise MidiError(path, f"{tune_name(tune)}: no note to write")
    out = io.BytesIO()
    midi.save(file=out)
    write_bytes(path, out.getvalue())
    return notes


def _without_repeats(score):
    """``score`` with every repeat barline made a plain one and every repeat expression and
    ending bracket taken out (in place), so that music21 has nothing to expand."""
    from music21 import bar, repeat, spanner

    for measure in score.recurse().getElementsByClass("Measure"):
        for side in ("leftBarline", "rightBarline"):
            if isinstance(getattr(measure, side), bar.Repeat):
                setattr(measure, side, bar.Barline("regular"))
    for mark in [
        *score.recurse().getElementsByClass(repeat.RepeatExpression),
        *score.recurse().getElementsByClass(spanner.RepeatBracket),
    ]:
        mark.activeSite.remove(mark)
    return score


def _writable(score):
    """``score`` changed in place (it is this module's own parse) so that music21 writes a clean file.

    - chord symbols (``"G7"``) are removed: music21 10.5 writes each as a chord of length
      0 whose note-offs come before its note-ons, leaving notes sounding;
    - a pitch written twice in one chord (``[e2e2]``) is kept once, so no note-on comes
      for a pitch already sounding;
    - an object music21's ABC translation put in two bars (one ``TimeSignature`` for 6/8,
      then 9/8, then 6/8 again), which its MIDI writer refuses, gets a copy in the second.
    """
    from music21 import chord, harmony

    for symbol in list(score.recurse().getElementsByClass(harmony.Harmony)):
        symbol.activeSite.remove(symbol)
    for struck in score.recurse().getElementsByClass(chord.Chord):
        sounding = set()
        for pitch in list(struck.pitches):
            if pitch.midi in sounding:
                struck.remove(pitch)
            sounding.add(pitch.midi)
    seen: set[int] = set()
    for container in [score, *score.recurse(streamsOnly=True)]:
        for element in list(container):
            if id(element) in seen:
                container.replace(element, copy.deepcopy(element))
            seen.add(id(element))
    return score


def _rescaled(source: mido.MidiFile, ticks_per_beat: int) -> mido.MidiFile:
    """``source`` at ``ticks_per_beat``, each message's absolute time rounded (so errors do not add up)."""
    target = mido.MidiFile(type=source.type, ticks_per_beat=ticks_per_beat)
    for track in source.tracks:
        rescaled = mido.MidiTrack()
        absolute = previous = 0
        for message in track:
            absolute += message.time
            tick = round(absolute * ticks_per_beat / source.ticks_per_beat)
            rescaled.append(message.copy(time=tick - previous))
            previous = tick
        target.tracks.append(rescaled)
    return target
