"""Features of a symbol sequence, and how closely each hidden unit tracks them.

A feature is one number per step, NaN where it does not apply (such steps are left out of
its correlations). For ABC text (``abc_features``; one character per step, special
symbols such as ``<start>`` NaN throughout, and ``<unk>`` an unknown character of its line):

- ``bar line``: 1 for ``|``, and for ``:`` next to a ``|`` (``|:``, ``:|``), else 0;
- ``in header``: 1 for the characters of the header's field lines (``X:``, ``T:``,
  ``M:`` ... up to and including the first ``K:`` line of each tune, the line's newline
  included) and of ``%`` comment lines among them, else 0; a tune starts at ``<start>``,
  at an ``X:`` line and at the start of the sequence, and any other line ends the header;
- ``note pitch``: the letter of a note as its height in diatonic steps, ``C`` 0 ... ``B``
  6, ``c`` 7 ... ``b`` 13, each ``'`` after it 7 higher and each ``,`` 7 lower
  (accidentals ignored); NaN for every other character;
- ``chord symbol``: 1 from an opening double quote to its closing one, both included, else 0.

Bar lines, notes and chord symbols are read on music lines only, not on field or comment
lines (``T:Dance``'s letters are not notes); ``!...!`` decorations and ``[K:G]``-style inline
fields hold no notes and no bar lines.

For other token sequences (``token_features``, read from their labels, ``labels.symbol_labels``):
``end token`` and, where the vocabulary has them, ``frame end`` (``<next>``) and ``rest``
(``<rest>``), each 0/1; ``pitch height``, the MIDI number of a pitch token (a chord's
lowest), NaN for the others.

A unit's score for a feature is the absolute Pearson correlation of its activation with the
feature over the steps where the feature is defined (for a 0/1 feature, the point-biserial
correlation); ``rank_units`` sorts units by their best feature.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from note_matrix.inspection.labels import SPECIAL, name_pitch

_FIELD_LINE = re.compile(r"[A-Za-z]:")  # a header or body field: a letter and a colon open the line
_INLINE_FIELD = re.compile(r"\[[A-Za-z]:[^\]\n]*\]?")
_DECORATION = re.compile(r"![^!\n]*!?")
_NOTE_HEIGHT = {letter: index for index, letter in enumerate("CDEFGABcdefgab")}
TUNE_BOUNDS = ("<start>", "<end>")
MIN_STEPS = 3  # defined steps a correlation needs


@dataclass(frozen=True)
class UnitScore:
    """A unit's best feature: ``correlation`` is Pearson's r (signed; units are ranked by |r|)."""

    unit: int
    feature: str
    correlation: float


def abc_features(symbols: list[str]) -> dict[str, np.ndarray]:
    """The four ABC features (module docstring) of ``symbols``, one per step: float64 ``(steps,)``."""
    steps = len(symbols)
    bar, header, chord = np.zeros(steps), np.zeros(steps), np.zeros(steps)
    pitch = np.full(steps, np.nan)
    in_header = True
    for indices, tune_start in _lines(symbols):
        text = "".join(symbols[i] if len(symbols[i]) == 1 else "\0" for i in indices).rstrip("\n")
        in_header = in_header or tune_start or text.startswith("X:")
        if _FIELD_LINE.match(text) or text.startswith("%"):
            header[indices] = in_header
            in_header = in_header and not text.startswith("K:")
            continue
        in_header = False
        line_bar, line_chord, line_pitch = _music_line(text)
        music = indices[: len(text)]  # the newline ending the line is none of these
        bar[music], chord[music], pitch[music] = line_bar, line_chord, line_pitch
    special = np.array([_is_special(symbol) for symbol in symbols], dtype=bool)
    features = {"bar line": bar, "in header": header, "note pitch": pitch, "chord symbol": chord}
    for values in features.values():
        values[special] = np.nan
    return features


def _is_special(symbol: str) -> bool:
    return SPECIAL.fullmatch(symbol) is not None


def _lines(symbols: list[str]):
    """``(step indices, starts a tune)`` of each line: its steps and the newline ending it.
    ``<start>`` and ``<end>`` end a line and belong to none; ``<start>`` starts a tune."""
    indices, tune_start = [], False
    for index, symbol in enumerate(symbols):
        if symbol in TUNE_BOUNDS:
            if indices:
                yield indices, tune_start
            indices, tune_start = [], symbol == "<start>"
            continue
        indices.append(index)
        if symbol == "\n":
            yield indices, tune_start
            indices, tune_start = [], False
    if indices:
        yield indices, tune_start


def _music_line(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(bar line, chord symbol, note pitch)`` of each character of one music line."""
    bar, chord = np.zeros(len(text)), np.zeros(len(text))
    pitch = np.full(len(text), np.nan)
    position = 0
    while position < len(text):
        character = text[position]
        if character == '"':
            end = text.find('"', position + 1)
            end = len(text) - 1 if end < 0 else end
            chord[position:end + 1] = 1
            position = end + 1
            continue
        skipped = _INLINE_FIELD.match(text, position) or _DECORATION.match(text, position)
        if skipped:
            position = skipped.end()
            continue
        if character == "|" or (character == ":" and "|" in text[max(position - 1, 0):position + 2]):
            bar[position] = 1
        elif character in _NOTE_HEIGHT:
            pitch[position] = _NOTE_HEIGHT[character] + 7 * _octave_marks(text, position + 1)
        position += 1
    return bar, chord, pitch


def _octave_marks(text: str, position: int) -> int:
    """Octaves up (``'``) minus octaves down (``,``) written right after a note letter."""
    marks = re.match(r"[',]*", text[position:]).group()
    return marks.count("'") - marks.count(",")


def token_features(labels: list[str]) -> dict[str, np.ndarray]:
    """``end token``, ``frame end``, ``rest`` (0/1, the last two only if their symbol is in
    ``labels``) and ``pitch height`` of a sequence of token labels, one per step."""
    features = {"end token": np.array([label == "<end>" for label in labels], dtype=float)}
    for name, symbol in (("frame end", "<next>"), ("rest", "<rest>")):
        if symbol in labels:
            features[name] = np.array([label == symbol for label in labels], dtype=float)
    pitches = [name_pitch(label) for label in labels]
    features["pitch height"] = np.array([np.nan if p is None else p for p in pitches], dtype=float)
    return features


def correlations(activations: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """Pearson's r of each unit's activation with ``feature``, over the steps where both are finite.

    ``activations`` ``(steps, units)``, ``feature`` ``(steps,)``; returns ``(units,)``
    float64, NaN for a unit (or a feature) that does not vary there or has fewer than
    ``MIN_STEPS`` steps defined.
    """
    activations = np.asarray(activations, dtype=np.float64)
    defined = np.isfinite(feature) & np.all(np.isfinite(activations), axis=1)
    if defined.sum() < MIN_STEPS:
        return np.full(activations.shape[1], np.nan)
    units = activations[defined] - activations[defined].mean(axis=0)
    values = feature[defined] - feature[defined].mean()
    spread = np.sqrt((units**2).sum(axis=0) * (values**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(spread > 1e-12, units.T @ values / spread, np.nan)


def rank_units(activations: np.ndarray, features: dict[str, np.ndarray]) -> list[UnitScore]:
    """Every unit with a defined correlation, by its best feature's |r|, strongest first."""
    names = list(features)
    table = np.stack([correlations(activations, features[name]) for name in names], axis=1)  # (units, features)
    scores = []
    for unit, row in enumerate(table):
        if np.all(np.isnan(row)):
            continue
        best = int(np.nanargmax(np.abs(row)))
        scores.append(UnitScore(unit, names[best], float(row[best])))
    return sorted(scores, key=lambda score: -abs(score.correlation))
