"""Ways of seeing music, behind one interface (``base.Representation``) and one registry.

To add a representation: write a module with a ``Representation`` subclass and add it
to ``REGISTRY`` below; ``train.py --representation NAME`` then trains on it, and the run
folder records it for ``generate.py`` and ``evaluate.py``.
"""

from __future__ import annotations

import importlib

from note_matrix.representations.base import Encoded, Representation, ScoreColumn
from note_matrix.representations.note_matrix import (
    TIME_SCALE_SECONDS,
    NoteMatrix,
    matrix_to_midi,
    midi_to_matrix,
)

# name -> "module:class", imported when first used
REGISTRY: dict[str, str] = {
    "note_matrix": "note_matrix.representations.note_matrix:NoteMatrix",
    "pitch_sequence": "note_matrix.representations.pitch_sequence:PitchSequence",
    "note_events": "note_matrix.representations.note_events:EventFields",
    "piano_roll": "note_matrix.representations.piano_roll:PianoRoll",
    "roll_tokens": "note_matrix.representations.roll_tokens:RollTokens",
    "chord_tokens": "note_matrix.representations.chord_tokens:ChordTokens",
    "abc_chars": "note_matrix.representations.abc_chars:AbcChars",
}
DEFAULT = "note_matrix"


def names() -> list[str]:
    return list(REGISTRY)


def representation_class(name: str) -> type[Representation]:
    """The class registered as ``name``; ``ValueError`` for an unknown name."""
    if name not in REGISTRY:
        raise ValueError(f"unknown representation {name!r}; known: {', '.join(REGISTRY)}")
    module, _, attribute = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def primed_by_seed(name: str) -> bool:
    """Whether ``generate.py`` primes runs of representation ``name`` with a seed MIDI file: every one
    that decodes to MIDI (``decodes_to``); ``abc_chars``' tunes start from ``<start>`` and need none."""
    return representation_class(name).decodes_to == ".mid"


def create(name: str, **options) -> Representation:
    """A new representation by registry name, with its default options."""
    return representation_class(name)(**options)


def from_json(data: dict) -> Representation:
    """Rebuild a representation saved with ``to_json`` (a run's config.json); ``ValueError`` if unknown."""
    return representation_class(data.get("name") if isinstance(data, dict) else None).from_json(data)


__all__ = ["DEFAULT", "REGISTRY", "TIME_SCALE_SECONDS", "Encoded", "NoteMatrix", "Representation", "ScoreColumn",
           "create", "from_json", "matrix_to_midi", "midi_to_matrix", "names", "representation_class"]
