"""A tune's bars as written, each with its length and the length its time signature gives.

Read from music21's ABC tokens (``ABCHandler.tokens``), not from the time signatures of
its score: a ``M:`` line in the body between two bars is lost when music21 cuts the
tokens into measures, so the score goes on in the meter before it. (Left to itself,
music21 also re-bars overfull bars: see ``note_matrix.abc.score``.) The lengths match
the measures of the score ``parse`` makes, bar for bar, for all 1,034 Nottingham tunes.

A bar is the notes and rests between two bar lines, or, as music21 cuts its measures,
between a bar line and a field (``P:B`` in the body) that notes follow; stretches with
no note or rest (between ``:|`` and ``[2``) are not bars. Its length is the
sum of its notes', as music21 times them: the token's length (the ``L:`` unit, the
length written, a broken rhythm ``>`` applied), times its tuplet's ratio; a grace note
lasts nothing; a chord lasts once. A ``M:`` field before a bar's first note sets that
bar's time signature, one after it the next bar's. ``M:none`` (free meter) and a
missing ``M:`` give no length to compare with. music21 10.5 drops inline fields such as
``[M:3/4]`` when it reads a tune, so bars after one are held to the meter before it.
Several voices (``V:``) are read one by one, each with the header's fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Bar:
    """``length_quarters``: where its last note or rest ends; ``full_quarters``: the time signature's bar, or ``None``."""

    length_quarters: Fraction
    full_quarters: Fraction | None

    @property
    def full(self) -> bool:
        """Whether it lasts exactly what its time signature says."""
        return self.full_quarters is not None and self.length_quarters == self.full_quarters


def voice_bars(handler) -> list[list[Bar]]:
    """The bars of each voice of a processed ``music21.abcFormat.ABCHandler``, in order."""
    collections = handler.splitByVoice()
    voices = collections if len(collections) == 1 else [collections[0] + voice for voice in collections[1:]]
    return [read_bars(voice.tokens) for voice in voices]


def read_bars(tokens) -> list[Bar]:
    """The bars of one voice's music21 ABC tokens, in order."""
    from music21 import abcFormat

    bars: list[Bar] = []
    length, has_notes = Fraction(0), False
    full = next_full = None
    meter_pending = False  # a M: after the current bar's first note, for the next bar
    for token, following in zip(tokens, [*tokens[1:], None]):
        if isinstance(token, abcFormat.ABCNote):  # a chord is one too
            has_notes = True
            length += _quarters(token)
            continue
        if isinstance(token, abcFormat.ABCMetadata) and token.isMeter():
            if has_notes:
                next_full, meter_pending = _full_quarters(token), True
            else:
                full = _full_quarters(token)
        if isinstance(token, abcFormat.ABCBar) or (
            isinstance(token, abcFormat.ABCMetadata) and isinstance(following, abcFormat.ABCNote)
        ):
            if has_notes:
                bars.append(Bar(length, full))
                length, has_notes = Fraction(0), False
            if meter_pending:
                full, meter_pending = next_full, False
    if has_notes:
        bars.append(Bar(length, full))
    return bars


def _quarters(token) -> Fraction:
    """How long music21 makes a note or chord token last, in quarter notes."""
    if token.inGrace:
        return Fraction(0)
    quarters = Fraction(token.quarterLength)
    if token.activeTuplet is not None:
        quarters *= Fraction(token.activeTuplet.tupletMultiplier())
    return quarters


def _full_quarters(token) -> Fraction | None:
    """The bar length a ``M:`` token gives, ``None`` for free meter (``M:none``)."""
    signature = token.getTimeSignatureObject()
    return None if signature is None else Fraction(signature.barDuration.quarterLength)
