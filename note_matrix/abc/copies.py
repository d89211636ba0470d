"""How many bars of a generated tune come verbatim from one training tune.

A tune's bars are its body (``tunes.body``) cut at every bar line (``|``, ``||``,
``|]``, ``[|``, ``|:``, ``:|``, ``::``, and the ending marks ``[1``, ``|2``, ``:|[2``
...). Field lines in the body (``P:B``, ``K:D``) and comments are left out, a line
ending neither ends nor starts a bar, and all white space is removed (in ABC it only
changes beaming), so ``"A"ecc c2f`` and ``"A"eccc2f`` are one bar. Chord symbols and
decorations stay part of the bar; a bar line inside a chord symbol's quotes or an inline
field (``[M:C|]``) does not cut. Empty bars (between two adjacent bar lines) are dropped.

``BarIndex(training_tunes)`` indexes every bar of the training tunes once;
``longest_copy(tune)`` is then the longest run of consecutive bars of ``tune`` found
consecutively in one training tune, in time proportional to the tune's bars times the
training occurrences of each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from note_matrix.abc.tunes import body

_BAR_LINE = r"(?:\[\||:*\|+\]?:*|::)(?:\[?\d+(?:[-,]\d+)*)?|\[\d+(?:[-,]\d+)*"
_PIECE = re.compile(
    r"(?P<bar>" + _BAR_LINE + r")"  # a bar line, with any ending mark after it
    r'|"[^"]*"?'  # a chord symbol or annotation (to the end if unclosed)
    r"|\[[A-Za-z]:[^\]]*\]?"  # an inline field
    r'|[^"\[|:]+|.',  # anything else
    re.DOTALL,
)
_WHITE_SPACE = re.compile(r"\s+")
_FIELD_OR_COMMENT = re.compile(r"^(?:[A-Za-z]:|%)")


def split_bars(tune: str) -> list[str]:
    """The bars of a tune's body, white space removed (module docstring): ``["GABc", "dedB", ...]``."""
    music = "".join(_music_line(line) for line in body(tune).splitlines() if not _FIELD_OR_COMMENT.match(line))
    bars, current = [], []
    for match in _PIECE.finditer(music):
        if match.group("bar") is None:
            current.append(match.group())
            continue
        bars.append(_WHITE_SPACE.sub("", "".join(current)))
        current = []
    bars.append(_WHITE_SPACE.sub("", "".join(current)))
    return [bar for bar in bars if bar]


def _music_line(line: str) -> str:
    """A body line without its ``%`` comment and its ``\\`` continuation mark."""
    return line.split("%", 1)[0].rstrip().removesuffix("\\")


@dataclass(frozen=True)
class Copy:
    """The longest run of a tune's bars found in one training tune.

    ``bars``: its length (0 when no bar of the tune occurs in any training tune);
    ``training_tune``, ``training_bar``: the index of that training tune and of the
    run's first bar in it (``None`` when ``bars`` is 0); ``tune_bar``: the run's first
    bar in the tune.
    """

    bars: int
    training_tune: int | None = None
    training_bar: int | None = None
    tune_bar: int | None = None


class BarIndex:
    """Every bar of the training tunes, indexed once, for ``longest_copy``."""

    def __init__(self, training_tunes: list[str]):
        self._where: dict[str, list[tuple[int, int]]] = {}  # bar -> (training tune, bar position) of each occurrence
        for tune_index, tune in enumerate(training_tunes):
            for position, bar in enumerate(split_bars(tune)):
                self._where.setdefault(bar, []).append((tune_index, position))

    def longest_run(self, tune: str) -> Copy:
        """The longest run of consecutive bars of ``tune`` that one training tune has consecutively."""
        best = Copy(0)
        runs: dict[tuple[int, int], int] = {}  # (training tune, position) -> length of the run ending there
        for tune_bar, bar in enumerate(split_bars(tune)):
            runs = {(t, p): runs.get((t, p - 1), 0) + 1 for t, p in self._where.get(bar, ())}
            for (t, p), length in runs.items():
                if length > best.bars:
                    best = Copy(length, t, p - length + 1, tune_bar - length + 1)
        return best

    def longest_copy(self, tune: str) -> int:
        """Bars in the longest run of ``tune`` copied verbatim from one training tune (0: none of its bars)."""
        return self.longest_run(tune).bars


def copied_bars(tune: str, training_tunes: list[str]) -> int:
    """``BarIndex(training_tunes).longest_copy(tune)``; build the index once to check many tunes."""
    return BarIndex(training_tunes).longest_copy(tune)
