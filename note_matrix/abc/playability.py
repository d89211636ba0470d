"""The project's one rule for an ABC tune that plays: ``playable(tune) -> Playability``.

A tune is playable when music21 parses it with no exception and no pitch it had to guess
(its "Could not get pitch information ... assuming C" warning), it has at least 4 bars,
and at least three quarters of its inner bars (all but the first and last) last exactly
what the time signature says.

How the rule is read:

- bars are the bars as written, read from music21's tokens (``note_matrix.abc.bars``
  says why not from its score): a repeated section counts once, a first and a second
  ending are a bar each;
- a pickup bar, and a short last bar that completes it, are the first and last bars,
  which the rule leaves out. Inside a tune, a section often ends on a short bar and the
  next one starts with a pickup that completes it (``...|e2c2 d2:|fg|a2f2...``): such a
  pair, two adjacent short bars under one time signature adding up to exactly one bar,
  counts as two bars that last what the time signature says. (Read literally, without
  this, 4 of the 1,034 Nottingham tunes, in three or more short sections each, fail.)
- a ``M:`` line in the body changes the meter from the bar it opens;
- several voices (``V:``): ``bars`` is the longest voice's count, and the inner bars of
  every voice are pooled for the three quarters;
- no time signature (``M:`` missing or ``M:none``, ABC's free meter) fails: nothing says
  how long a bar should be. music21 does not assume 4/4 there (its
  ``Measure.barDuration`` would guess a meter from each bar's own notes), and with
  neither ``M:`` nor ``L:`` it cannot tell a note's length and raises.

``playable`` never raises, whatever the string, and prints nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from note_matrix.abc.bars import Bar, voice_bars
from note_matrix.abc.score import Parsed, one_line, parse

MIN_BARS = 4
MIN_FULL_FRACTION = Fraction(3, 4)  # of the inner bars, lasting what the time signature says


@dataclass(frozen=True)
class Playability:
    """The verdict on one tune, and the counts behind it.

    ``reason`` is ``''`` when ``ok``, else one line saying the first clause of the rule
    that failed. The counts are filled as far as parsing got: ``bars`` (the longest
    voice's), ``inner_bars`` and ``full_inner_bars`` (pooled over voices; a pickup pair
    counted full), ``guessed_pitches`` (notes music21 played as C), ``notes`` (pitches
    sounded; chord symbols are not counted).
    """

    ok: bool
    reason: str
    bars: int = 0
    inner_bars: int = 0
    full_inner_bars: int = 0
    guessed_pitches: int = 0
    notes: int = 0


def playable(tune: str, parsed: Parsed | None = None) -> Playability:
    """Whether ``tune`` meets the rule (module docstring), with the counts and the reason.

    ``parsed``: ``parse(tune)`` when the caller has it (to hand on to ``to_midi``, so music21 parses once).
    """
    parsed = parse(tune) if parsed is None else parsed
    if parsed.score is None:
        return Playability(False, f"music21 cannot parse it ({parsed.error})")
    try:
        voices = voice_bars(parsed.handler)
        notes = _count_notes(parsed.score)
    except Exception as exception:  # noqa: BLE001 (music21 tokens of any text: a verdict, never a crash)
        return Playability(False, f"music21 cannot measure its bars ({one_line(exception)})")
    counts = {
        "bars": max((len(bars) for bars in voices), default=0),
        "inner_bars": sum(max(0, len(bars) - 2) for bars in voices),
        "full_inner_bars": sum(_full_inner_bars(bars) for bars in voices),
        "guessed_pitches": len(parsed.guessed_pitches),
        "notes": notes,
    }
    has_time_signature = any(bar.full_quarters is not None for bars in voices for bar in bars)
    reason = _first_failure(counts, parsed.guessed_pitches, has_time_signature)
    return Playability(not reason, reason, **counts)


def _first_failure(counts: dict, guessed_pitches: tuple[str, ...], has_time_signature: bool) -> str:
    """The reason for the first clause of the rule that fails, ``''`` when none does."""
    if guessed_pitches:
        return f"music21 guessed {len(guessed_pitches)} pitch(es) as C (it could not read {guessed_pitches[0]!r})"
    if counts["bars"] < MIN_BARS:
        return f"{counts['bars']} bar(s), fewer than {MIN_BARS}"
    if not has_time_signature:
        return "no time signature (M: missing or M:none), so no bar length to check"
    if counts["full_inner_bars"] < MIN_FULL_FRACTION * counts["inner_bars"]:
        return (
            f"{counts['full_inner_bars']} of {counts['inner_bars']} inner bars last what the time signature "
            "says, fewer than three quarters"
        )
    return ""


def _full_inner_bars(bars: list[Bar]) -> int:
    """Inner bars that last what their time signature says, alone or as one of a pickup pair."""
    return sum(bars[index].full or _completes_a_neighbour(bars, index) for index in range(1, len(bars) - 1))


def _completes_a_neighbour(bars: list[Bar], index: int) -> bool:
    """Whether bar ``index`` and the bar before or after it are both short and together last one bar."""
    bar = bars[index]
    for other in (bars[index - 1], bars[index + 1]):
        if (
            bar.full_quarters is not None
            and other.full_quarters == bar.full_quarters
            and bar.length_quarters > 0
            and other.length_quarters > 0
            and bar.length_quarters + other.length_quarters == bar.full_quarters
        ):
            return True
    return False


def _count_notes(score) -> int:
    """Pitches sounded: a note counts one, a chord its pitches; chord symbols (``"G7"``) are not played."""
    from music21 import harmony

    return sum(len(element.pitches) for element in score.recurse().notes if not isinstance(element, harmony.Harmony))
