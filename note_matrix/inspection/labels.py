"""The symbol of every token of a representation, as text to draw.

``symbol_labels(representation)[token]`` is the token's symbol: the representation's own
``symbols`` where it has them as a list of strings; for ``abc_chars`` its special symbols
(``<start>``, ``<end>``, ``<unk>``) and then its characters, one each; for
``pitch_sequence`` and ``chord_tokens`` the pitch's note name
(``C4`` is MIDI 60), a chord's note names joined by ``+``, and the special tokens as
``<end>``, ``<next>``, ``<rest>``, ``<unk>``; otherwise the token's number.
"""

from __future__ import annotations

import re

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
SPECIAL = re.compile(r"<[a-z]+>")  # <start>, <end>, <unk>, <next>, <rest>: not characters of the text
_NOTE_NAME = re.compile(r"([A-G]#?)(-?\d+)")


def note_name(pitch: int) -> str:
    """MIDI ``pitch`` as a note name with its octave: 60 is ``C4``, 61 ``C#4``, 21 ``A0``."""
    return f"{PITCH_CLASSES[pitch % 12]}{pitch // 12 - 1}"


def name_pitch(label: str) -> int | None:
    """The MIDI pitch of a label's first note name (``C4``: 60; ``E3+G3``: 52), None if it has none."""
    match = _NOTE_NAME.match(label)
    if match is None:
        return None
    return PITCH_CLASSES.index(match.group(1)) + 12 * (int(match.group(2)) + 1)


def is_text(representation) -> bool:
    """True for a representation of characters (``abc_chars``, or one with a list of ``symbols``):
    its labels are drawn as running text, lines broken where its ``"\\n"`` symbol is."""
    return representation.name == "abc_chars" or _symbol_list(representation) is not None


def _symbol_list(representation) -> list[str] | None:
    symbols = getattr(representation, "symbols", None)
    if isinstance(symbols, (list, tuple)) and all(isinstance(symbol, str) for symbol in symbols):
        return list(symbols)
    return None


def symbol_labels(representation) -> list[str]:
    """The symbol of each token id of ``representation`` (index = token id; module docstring)."""
    symbols = _symbol_list(representation)
    if symbols is not None:
        return symbols
    if representation.name == "abc_chars":
        from note_matrix.representations.abc_chars import SPECIAL_SYMBOLS

        return [*SPECIAL_SYMBOLS, *representation.characters]
    if representation.name == "pitch_sequence":
        from note_matrix.representations.pitch_sequence import END

        return [note_name(pitch) for pitch in range(END)] + ["<end>"]
    if representation.name == "chord_tokens":
        return _chord_token_labels(representation)
    return [str(token) for token in range(representation.inputs().vocabulary)]


def _chord_token_labels(representation) -> list[str]:
    from note_matrix.representations.chord_tokens import PITCHES, SPECIAL_SYMBOLS

    if representation.chord_symbols:
        return [*SPECIAL_SYMBOLS, *("+".join(note_name(p) for p in chord) for chord in representation.chords)]
    return [*(note_name(pitch) for pitch in range(PITCHES)), "<next>", "<end>"]  # NEXT, END follow the pitches
