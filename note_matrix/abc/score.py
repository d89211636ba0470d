"""A tune through music21's ABC parser, silently, with the pitches it had to guess.

music21 reports a note whose pitch it cannot read by writing "music21.abcFormat:
WARNING: Could not get pitch information from note: <text>, assuming C" straight to
``sys.stderr`` (``Environment.warn``, not the ``warnings`` module) and going on with a
C. ``parse`` holds back everything music21 writes to stdout and stderr, and every Python
warning, while it parses, and reads those messages from what it held back.

``parse`` also switches off two steps of music21's ABC translation (``abcToStreamPart``)
that only lay the score out, so notes keep their pitches and times and the MIDI is the
same: re-barring (``translate.reBar``), which cuts an overfull bar into a full one and a
remainder with a time signature of its own, hiding the very bars the playable rule
looks for, and which can take minutes on a bar of an odd length (it looks for the best
time signature for, say, 1234/2304); and beaming (``Stream.makeBeams``), a third of the
time of a typical tune and quadratic in its bars (8 s for 1,000 bars).

Holding back output and switching these steps off are process-wide while a tune is
being parsed: parse from one thread at a time (worker processes are fine). music21 is
imported here, inside the functions, because importing it takes about 0.3 s.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from note_matrix.abc.tunes import header
from note_matrix.errors import MidiError

_GUESSED_PITCH = re.compile(r"Could not get pitch information from note:\s*(.*?),\s*assuming C")
_TUNE_START = re.compile(r"^X:", re.MULTILINE)
MAX_REASON_CHARS = 160  # a parser's message is cut here, to keep a reason on one readable line


@dataclass(frozen=True)
class Parsed:
    """What music21 made of a tune.

    ``score``: a ``music21.stream.Score``, ``None`` when parsing failed; ``handler``:
    the ``music21.abcFormat.ABCHandler`` holding the tune's tokens, ``None`` with the
    score; ``error``: why it failed, ``''`` when it parsed; ``guessed_pitches``: the note
    texts whose pitch music21 could not read and played as a C.
    """

    score: Any
    handler: Any
    error: str
    guessed_pitches: tuple[str, ...]


def parse(tune: str) -> Parsed:
    """``tune`` parsed by music21's ABC parser; never raises for any string, prints nothing.

    A string holding more than one ``X:`` line is refused as several tunes (music21 would
    make an ``Opus`` of them).
    """
    if len(_TUNE_START.findall(tune)) > 1:
        return Parsed(None, None, "holds more than one tune (several X: lines)", ())
    from music21.abcFormat import ABCFile, translate

    with quietly() as held_back, _layout_off():
        try:
            handler = ABCFile().readstr(tune)
            score = translate.abcToStreamScore(handler)
            error = ""
        except Exception as exception:  # noqa: BLE001 (music21 raises many kinds on bad ABC; each means "does not parse")
            handler, score, error = None, None, one_line(exception)
    return Parsed(score, handler, error, guessed_pitches(held_back.getvalue()))


def guessed_pitches(printed: str) -> tuple[str, ...]:
    """The note texts music21 said (in ``printed``, what ``quietly`` held back) it played as a C."""
    return tuple(_GUESSED_PITCH.findall(printed))


@contextlib.contextmanager
def quietly() -> Iterator[io.StringIO]:
    """Hold back what music21 prints (stdout, stderr) and its Python warnings; yields what was printed."""
    held_back = io.StringIO()
    with contextlib.redirect_stderr(held_back), contextlib.redirect_stdout(held_back), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield held_back


@contextlib.contextmanager
def _layout_off() -> Iterator[None]:
    """music21's ABC translation without re-barring and beaming (module docstring)."""
    from music21 import stream
    from music21.abcFormat import translate

    replaced = [(translate, "reBar", _keep_bars), (stream.Stream, "makeBeams", _no_beams)]
    originals = [getattr(owner, name) for owner, name, _ in replaced]
    for owner, name, replacement in replaced:
        setattr(owner, name, replacement)
    try:
        yield
    finally:
        for (owner, name, _), original in zip(replaced, originals):
            setattr(owner, name, original)


def _keep_bars(part, *, inPlace=False):
    return part


def _no_beams(self, *, inPlace=False, **options):
    return None if inPlace else self


def to_score(tune: str) -> Any:
    """The ``music21.stream.Score`` of a tune; raises ``MidiError`` naming the tune when music21 cannot parse it."""
    parsed = parse(tune)
    if parsed.score is None:
        raise MidiError(tune_name(tune), f"music21 cannot parse it ({parsed.error})")
    return parsed.score


def tune_name(tune: str) -> str:
    """How an error names a tune that has no file: ``ABC tune X:3 'Abacus'``."""
    fields = header(tune)
    name = "ABC tune" + (f" X:{fields['X']}" if fields.get("X") else "")
    return name + (f" {fields['T']!r}" if fields.get("T") else "")


def one_line(exception: Exception) -> str:
    """``"<ExceptionType>: <message>"`` on one line of at most ``MAX_REASON_CHARS`` message characters."""
    message = " ".join(str(exception).split())
    if len(message) > MAX_REASON_CHARS:
        message = message[: MAX_REASON_CHARS - 3] + "..."
    return f"{type(exception).__name__}: {message}" if message else type(exception).__name__
