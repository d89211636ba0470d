"""Well-formed sampling: a tune checked as it is drawn, a header line or a bar at a time.

``TuneChecker`` reads a tune one symbol at a time (its characters, then ``"<end>"``) and
says, for each, whether it is taken or the piece it closes is refused. The pieces are the
header's lines (up to the end of the ``K:`` line) and the body's bars (up to a bar line
``|``). A sampler (``generation.tunes``, ``--well-formed``) that is refused a piece draws
it again from the network's state where the piece began: the tune is the network's, drawn
under the condition that each piece is well formed (rejection sampling, piece by piece).

The rules, each from what the Nottingham tunes hold:

- **Header lines.** A line starts with one of the header's field letters (``HEADER_FIELDS``;
  ``K`` only once ``M:`` has come, ``M``, ``L`` and ``K`` once each) or ``%``, then ``:``
  (other characters are not drawn there), and is refused when it ends unless its value reads:
  ``X:`` a number, ``M:`` one of the tunes' meters (``6/8``, ``C``; not ``none``), ``L:`` a
  unit (``1/8``), ``P:`` a part (``A``, ``AABB``), ``K:`` a key (``G``, ``Am``, ``Dmix``); no
  header line holds a bar line. The ``K:`` line ends the header.
- **Field lines in the body** (``BODY_FIELDS``: ``M:6/8``, ``P:B``) are checked so when they
  end; bar lines inside them are not bar lines.
- **Bars.** A bar is refused when music21 cannot read it or guesses a pitch, when it lasts
  longer than its time signature says, or when it is short beyond one short bar in
  ``SHORT_BARS_PER`` bars (and one more), a pickup apart: the first bar after the header or
  a field line such as ``P:B``, or the second of two short bars that add up to one. Its
  length is read as the playable rule reads it (``abc.bars``: music21's tokens, under the
  ``M:`` and ``L:`` fields so far). A bar is refused before it ends when it has grown past
  ``MAX_BAR_CHARACTERS``, holds a chord longer than ``MAX_CHORD_CHARACTERS`` or a chord
  symbol no chord names (``_CHORD_SYMBOL``, read when its closing quote comes).
- **Symbols never drawn** where they cannot be right (``forbidden``): a bar line, a newline
  or ``<end>`` inside a chord symbol ``"..."``, a chord ``[...]`` or grace notes ``{...}``;
  inside a chord, a quote, ``[``, ``:`` or ``\\``; ``<end>`` in the header or before
  ``MIN_BARS_TO_END`` bars; ``<start>`` and ``<unk>`` anywhere.

When a piece has been refused ``MAX_RETRIES`` times in a row, the pieces before it are given
up too and drawn again (they may be what it cannot follow: a 6/8 bar cannot follow
``M:4/4``): one piece the first time in a tune, two the next, then four, and so on, back as
far as the primer; a piece that can go back no further is then taken as it is, and after
``MAX_REFUSALS`` refusals in one tune nothing more is refused, so sampling always ends.

Real tunes pass: of the 1,034 Nottingham tunes, read symbol by symbol, the test checks
that nearly every one is taken whole (``tests/test_abc_checker.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from fractions import Fraction

END_SYMBOL = "<end>"
NEVER = frozenset({"<start>", "<unk>"})  # never inside a tune
MIN_BARS_TO_END = 8  # the shortest Nottingham tunes have 8 bars (the playable rule asks MIN_BARS)
MAX_RETRIES = 20  # refusals of one piece in a row before pieces before it are drawn again too
MAX_REFUSALS = 300  # refusals in one tune before the checker stops refusing
SHORT_BARS_PER = 8  # one short bar (not a pickup) is taken per this many bars, and one more

_FIELD = re.compile(r"[A-Za-z]:")
HEADER_FIELDS = "XTSYNRQMLPK"  # the fields of the Nottingham tunes' headers
BODY_FIELDS = "KLMPQ"  # and of their bodies
_FIELD_VALUES = {
    "X": re.compile(r"X:\s*\d+\s*"),
    "M": re.compile(r"M:\s*(4/4|6/8|3/4|2/4|9/8|2/2|6/4|5/4|3/2|C\|?)\s*"),  # the Nottingham tunes' meters
    "L": re.compile(r"L:\s*1/(1|2|4|8|16|32|64)\s*"),
    "P": re.compile(r"P:\s*[A-Z][A-Z ]*\d?\s*"),
    "K": re.compile(r"K:\s*[A-G][b#]?\s*(m|min|minor|maj|major|mix|dor|phr|lyd|loc|aeo|ion)?\s*", re.IGNORECASE),
}
# the chord symbols of the Nottingham tunes: root, m/d/a (minor, diminished, augmented), 6/7/9, b9, /bass,
# in ( ) or not, spaces around; an empty one too
_CHORD_SYMBOL = re.compile(r"\s*(\(?[A-G][b#]?\s?[mda]?\d*(b9)?(/[A-Ga-g][b#]?\+?)?\)?)?\s*")
MAX_BAR_CHARACTERS = 80  # the Nottingham tunes' longest bar, chord symbols and spaces included, has 59
MAX_CHORD_CHARACTERS = 20  # from its [: the Nottingham tunes' longest chord, brackets included, has 17
NOT_IN_CHORDS = '"[:\\'  # no chord symbol, chord, field or line break inside a chord [...]
DEFAULT_CHARACTERS = "".join(chr(code) for code in range(32, 127)) + "\n"
_NOTE = re.compile(r"[A-Ga-gz]")
_OPENERS = {'"': '"', "[": "]", "{": "}"}


@dataclass(frozen=True)
class _State:
    """Everything the checker knows of the tune so far (``text``: its characters)."""

    text: str = ""
    in_header: bool = True
    line_start: int = 0
    bar_start: int = 0  # after the last bar line
    meter: str | None = None
    unit: str | None = None
    bars: int = 0  # bars with notes taken
    short_bars: int = 0  # short bars taken that were not pickups
    last_short: Fraction | None = None  # the length of the last bar when it was short
    section_start: bool = True  # no bar yet since the header or a field line of the body (P:B)
    open: str = ""  # the closing character awaited ('"', ']' or '}'), '' when none
    ended: bool = False


class TuneChecker:
    """One tune's checker (module docstring). ``take(symbol)`` is ``True`` when the symbol is
    taken, ``False`` when the piece it closes is refused: the checker is then back where the
    piece began, or ``back`` pieces before it (``text`` cut there), and the caller draws from
    the state it kept there.
    ``piece_ended`` says whether the last symbol taken closed a piece (the caller keeps its
    state there). ``primer``: the tune's opening text, read without checks; ``characters``:
    the characters that can be drawn (the run's vocabulary; default printable ASCII and the
    newline), which ``forbidden`` needs where only a few may come next."""

    def __init__(self, primer: str = "", characters: str = DEFAULT_CHARACTERS):
        self._characters = frozenset(characters)
        self._state = _State()
        for character in primer:
            self._state = self._read(self._state, character)
        self._pieces = [self._state]  # where each piece taken began, the current one's last
        self.piece_ended = False
        self.back = 0  # after a refusal: how many pieces taken before the refused one were given up too
        self.retries = 0  # refusals of the current piece
        self.refusals = 0  # refusals in the whole tune
        self._exhausted = 0  # times a piece was refused MAX_RETRIES times in a row

    @property
    def text(self) -> str:
        return self._state.text

    @property
    def ended(self) -> bool:
        return self._state.ended

    def forbidden(self) -> frozenset[str]:
        """The symbols not to draw next (module docstring)."""
        state = self._state
        if state.ended:
            return frozenset()
        forbidden = set(NEVER)
        if state.open:
            forbidden |= {"|", "\n", END_SYMBOL}
        if state.open == "]":
            forbidden |= set(NOT_IN_CHORDS)
        if state.in_header:
            forbidden |= self._characters - self._header_may_go_on(state)
        if state.in_header or state.bars < MIN_BARS_TO_END:
            forbidden.add(END_SYMBOL)
        return frozenset(forbidden)

    def take(self, symbol: str) -> bool:
        """Read ``symbol`` (a character or ``"<end>"``): ``True`` if taken, ``False`` if its piece is refused."""
        self.piece_ended = False
        state = self._state
        if state.ended:
            return True
        if symbol == END_SYMBOL:
            self._state = replace(state, ended=True)
            return True
        following = self._read(state, symbol)
        closes = (symbol == "\n" and state.in_header) or (not state.in_header and _bar_line(state, symbol))
        field_line = symbol == "\n" and not state.in_header and self._line(state) is not None
        checked = closes or field_line or _bad_in_bar(state, symbol, following)
        if not checked:
            self._state = following
            return True
        can_go_back = len(self._pieces) > 1
        if self.refusals < MAX_REFUSALS and (self.retries < MAX_RETRIES or can_go_back):
            judged = self._judge(state, symbol, following) if closes or field_line else None
            if judged is None:
                self.refusals += 1
                if self.retries < MAX_RETRIES:
                    self.retries, self.back = self.retries + 1, 0
                else:  # the pieces before may be what this one cannot follow: they are drawn again too
                    self.back = min(2**self._exhausted, len(self._pieces) - 1)
                    del self._pieces[len(self._pieces) - self.back :]
                    self.retries, self._exhausted = 0, self._exhausted + 1
                self._state = self._pieces[-1]
                return False
            following = judged
        self._state = following
        if closes:
            self._pieces.append(following)
            self.piece_ended, self.retries = True, 0
        return True

    def _header_may_go_on(self, state: _State) -> set[str]:
        """The characters that may come next in the header: a field's letter (``K`` only once
        ``M:`` has come; ``M``, ``L``, ``K`` once) or ``%`` at a line's start, then ``:``; any after."""
        line = state.text[state.line_start :]
        if not line:
            given = set(re.findall(r"^([MLK]):", state.text, re.MULTILINE))
            letters = set(HEADER_FIELDS) - given - ({"K"} if state.meter is None else set())
            return letters | {"%"}
        if len(line) == 1 and line != "%":
            return {":"}
        return set(self._characters)  # any: the line is checked when it ends

    # -- reading ---------------------------------------------------------------------------

    @staticmethod
    def _line(state: _State) -> str | None:
        """The current line when it is a field (``M:6/8``), else None."""
        line = state.text[state.line_start :]
        return line if _FIELD.match(line) else None

    @staticmethod
    def _read(state: _State, character: str) -> _State:
        """``state`` after ``character``, unchecked: the text, the open chord symbol or chord, lines and fields."""
        text = state.text + character
        if state.open:
            opened = "" if character == state.open else state.open
            if state.open == "]" and len(text) >= 2 and text[-2] == "[" and character.isdigit():
                opened = ""  # [1, [2: an ending, not a chord
            return replace(state, text=text, open=opened)
        if character in _OPENERS and not state.in_header and not _FIELD.match(state.text[state.line_start :]):
            return replace(state, text=text, open=_OPENERS[character])
        if not state.in_header and _bar_line(state, character):
            return replace(state, text=text, bar_start=len(text))
        if character != "\n":
            return replace(state, text=text)
        line = state.text[state.line_start :]
        changes = {"text": text, "line_start": len(text)}
        if line.startswith("%"):
            changes["bar_start"] = len(text)  # a bar is read without the comment lines before it
        if _FIELD.match(line):
            value = line[2:].strip()
            changes["bar_start"] = len(text)  # a bar is read without the field lines before it
            changes["section_start"] = True
            if line[0] == "M":
                changes["meter"] = value
            elif line[0] == "L":
                changes["unit"] = value
            elif line[0] == "K":
                changes["in_header"] = False
        return replace(state, **changes)

    # -- judging -----------------------------------------------------------------------------

    def _judge(self, state: _State, symbol: str, following: _State) -> _State | None:
        """``following`` (with its bar counts) when the piece ``symbol`` closes is well formed, else None."""
        if symbol == "\n":
            return following if _good_field(state.text[state.line_start :], state) else None
        bar = state.text[state.bar_start :]
        if not _NOTE.search(_outside_quotes(bar)) or state.meter is None:
            return following
        lengths = _bar_lengths(bar, state.meter, state.unit)
        if lengths is None:
            return None
        short_bars, bars, last_short = state.short_bars, state.bars, state.last_short
        section_start = state.section_start
        for length, full in lengths:
            if full is None or length > full:
                return None
            if length < full:
                if section_start:  # a pickup
                    last_short = None
                elif last_short is not None and last_short + length == full:  # the second of a pickup pair
                    short_bars, last_short = short_bars - 1, None
                else:
                    short_bars, last_short = short_bars + 1, length
                    if short_bars > 1 + bars // SHORT_BARS_PER:
                        return None
            else:
                last_short = None
            bars, section_start = bars + 1, False
        return replace(following, bars=bars, short_bars=short_bars, last_short=last_short, section_start=False)


def _bar_line(state: _State, character: str) -> bool:
    """Whether ``character`` ends a bar in the body: ``|``, or the second ``:`` of ``::``, outside a chord
    or chord symbol and a field line."""
    if state.open or _FIELD.match(state.text[state.line_start :]):
        return False
    return character == "|" or (character == ":" and state.text.endswith(":") and not state.text.endswith("|:"))


def _bad_in_bar(state: _State, character: str, following: _State) -> bool:
    """Whether the bar being drawn already cannot be right: a chord symbol just closed that no
    chord names (``_CHORD_SYMBOL``), or more than ``MAX_BAR_CHARACTERS`` characters."""
    if state.in_header:
        return False
    if following.open == "]" and len(following.text) - following.text.rindex("[") > MAX_CHORD_CHARACTERS:
        return True
    if state.open == '"' and character == '"':
        symbol = following.text[following.text.rindex('"', 0, len(following.text) - 1) + 1 : -1]
        if not _CHORD_SYMBOL.fullmatch(symbol):
            return True
    return len(following.text) - following.bar_start > MAX_BAR_CHARACTERS


def _good_field(line: str, state: _State) -> bool:
    """Whether a header line (or a field line of the body) is a field with a value music21 reads (module docstring)."""
    if line.startswith("%") and state.in_header:
        return True
    fields = HEADER_FIELDS if state.in_header else BODY_FIELDS
    if not _FIELD.match(line) or line[0] not in fields or "|" in line:
        return False
    if state.in_header and line[0] in "MLK" and re.search(rf"^{line[0]}:", state.text[: state.line_start], re.MULTILINE):
        return False  # a second M:, L: or K: in the header
    pattern = _FIELD_VALUES.get(line[0])
    if pattern is not None and not pattern.fullmatch(line):
        return False
    return not (line[0] == "K" and state.meter is None)


def _outside_quotes(text: str) -> str:
    return re.sub(r'"[^"]*"', "", text)


def _bar_lengths(bar: str, meter: str, unit: str | None) -> list[tuple[Fraction, Fraction | None]] | None:
    """``(length, full length)`` in quarters of each bar music21 reads in ``bar`` under ``meter``
    and ``unit`` (as ``abc.bars`` reads them); None when music21 fails or guesses a pitch."""
    from music21.abcFormat import ABCHandler

    from note_matrix.abc.bars import read_bars
    from note_matrix.abc.score import guessed_pitches, quietly

    unit_line = f"L:{unit}\n" if unit else ""
    with quietly() as held_back:
        try:
            handler = ABCHandler()
            handler.process(f"X:1\nM:{meter}\n{unit_line}K:C\n|{bar}|\n")
            bars = read_bars(handler.tokens)
        except Exception:  # noqa: BLE001 (music21 raises many kinds on bad ABC; each refuses the bar)
            return None
    if guessed_pitches(held_back.getvalue()):
        return None
    return [(bar.length_quarters, bar.full_quarters) for bar in bars]
