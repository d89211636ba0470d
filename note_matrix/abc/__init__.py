"""ABC notation: tunes as text, the rule for a tune that plays, MIDI, and the copy check.

- ``tunes``: ``split_tunes``, ``read_tunes``, ``header``, ``body`` (text only);
- ``score``: ``parse`` and ``to_score``, music21's parser with its messages held back;
- ``playability``: ``playable(tune) -> Playability``, the project's one rule;
- ``midi``: ``to_midi(tune, path)``;
- ``copies``: ``split_bars``, ``BarIndex``, ``copied_bars``.

music21 is imported only inside the functions that need it: importing it takes about 0.3 s
(0.5 s from a cold disk), importing this package does not.
"""

from note_matrix.abc.copies import BarIndex, Copy, copied_bars, split_bars
from note_matrix.abc.midi import to_midi
from note_matrix.abc.playability import MIN_BARS, MIN_FULL_FRACTION, Playability, playable
from note_matrix.abc.score import Parsed, parse, to_score
from note_matrix.abc.tunes import body, header, read_tunes, split_tunes

__all__ = [
    "MIN_BARS",
    "MIN_FULL_FRACTION",
    "BarIndex",
    "Copy",
    "Parsed",
    "Playability",
    "body",
    "copied_bars",
    "header",
    "parse",
    "playable",
    "read_tunes",
    "split_bars",
    "split_tunes",
    "to_midi",
    "to_score",
]
