"""Folk tunes from an ``abc_chars`` run: a text primer, a batch of tunes with the state carried, files.

A tune is primed with a warm-up tune (``WARM_UP``, between ``<start>`` and ``<end>``), then
``<start>`` and, optionally, the opening of a tune as text
(``"X:1\\nT:...\\nK:G\\n"``), then drawn one character per step with the recurrent state
carried (``CarriedStateGenerator``, every tune of the batch at once) until every tune has
written ``<end>`` or ``length`` characters are drawn. The warm-up puts the network where
training always showed it a tune's start: a ``--batches stream`` run reads the tunes back
to back, so ``<start>`` comes after a whole tune, almost never from a zero state; from a
zero state the recipe's LSTM is unsure even of the ``X:`` that opens every tune, and its
headers come out garbled (``X P4``). The warm-up is a short tune written for this (no dataset's), the same for
every tune generated, so it adds no randomness; its text is not part of the output.
A tune's text is the primer's
characters and the drawn ones up to its first ``<end>`` (``AbcChars.text``).
``write_tune`` writes the text, and the MIDI file only for a tune that is ``playable``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from note_matrix import atomic
from note_matrix.abc import parse, playable, to_midi
from note_matrix.errors import MidiError
from note_matrix.representations.abc_chars import END

# the tune the network reads before <start> (module docstring): common characters only (an unseen one is <unk>)
WARM_UP = 'X: 1\nT:Warm Up\nM:4/4\nL:1/4\nK:G\n|:"G"GA Bc|"D"dc BA|"G"GB "D"AF|"G"G2 G2:|\n'

DEFAULT_LENGTH = 1000  # characters per tune at most; most Nottingham tunes hold 200-700
CHUNK_STEPS = 100  # characters per compiled call: generation stops after the first chunk where every tune has ended
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def unescape(text: str) -> str:
    """``text`` with ``\\n``, ``\\t`` and ``\\\\`` read as a newline, a tab and a backslash
    (as typed on a command line); any other backslash is kept as written."""
    return _ESCAPE.sub(lambda match: _ESCAPES.get(match.group(1), match.group()), text)


@dataclass(frozen=True)
class TunePrimer:
    """``tokens`` ``(k, 1)`` int32: the warm-up tune's ``warm_up`` symbols, then ``<start>`` and the
    characters of ``text``; ``unknown``: the characters of ``text`` the run's vocabulary lacks, each encoded
    as ``<unk>`` (and written as nothing)."""

    text: str
    tokens: np.ndarray
    unknown: str
    warm_up: int

    @property
    def tune_tokens(self) -> np.ndarray:
        """``(k - warm_up,)``: the tune's own symbols, ``<start>`` first."""
        return self.tokens[self.warm_up :, 0]

    def describe(self) -> str:
        return "<start>" if not self.text else f"<start>{self.text!r}"


def tune_primer(representation, text: str = "") -> TunePrimer:
    """The primer ``<start>`` + ``WARM_UP`` + ``<end>`` + ``<start>`` + ``text`` for ``representation``
    (an ``AbcChars``)."""
    unknown = "".join(sorted({character for character in text if character not in representation.characters}))
    warm_up = representation.symbols(WARM_UP)
    tokens = np.concatenate([warm_up, representation.symbols(text)[:-1]]).astype(np.int32)
    return TunePrimer(text, tokens[:, None], unknown, len(warm_up))


def tune_generator(model, representation, head, sampling=None):
    """A ``CarriedStateGenerator`` of characters for ``model`` (``sampling`` None: the most likely),
    in chunks of ``CHUNK_STEPS`` so that generation stops soon after every tune has ended."""
    from note_matrix.generation.carried_state import CarriedStateGenerator
    from note_matrix.generation.sampling import check_model, row_function

    check_model(model, head)
    return CarriedStateGenerator(
        model, row_function(representation, head, sampling), noise_width=head.noise_width, chunk_steps=CHUNK_STEPS
    )


@dataclass(frozen=True)
class Tune:
    """A generated tune: its ``text`` and whether it ``ended`` with ``<end>`` (else it was cut at the length)."""

    text: str
    ended: bool


def generate_tunes(
    generator,
    representation,
    head,
    primer: TunePrimer,
    count: int,
    length: int,
    *,
    sampling=None,
    progress: bool = False,
) -> list[Tune]:
    """``count`` tunes of at most ``length`` drawn characters each, after ``primer``, in one batch.

    ``generator``: ``tune_generator``'s, for ``sampling`` (whose random seed draws the numbers).
    """
    from note_matrix.generation.sampling import sampling_noise

    primers = np.repeat(primer.tokens[None], count, axis=0)
    noise = sampling_noise(head, sampling, count, length)
    rows = generator.generate(primers, length, noise=noise, progress=progress, until=_every_tune_ended)
    tunes = []
    for drawn in rows[:, :, 0]:
        ended = bool(np.any(drawn == END))
        tunes.append(Tune(representation.text(np.concatenate([primer.tune_tokens, drawn])), ended))
    return tunes


def _every_tune_ended(rows: np.ndarray) -> bool:
    return bool(np.all(np.any(rows[:, :, 0] == END, axis=1)))


@dataclass(frozen=True)
class WrittenTune:
    """What ``write_tune`` wrote: the ``.abc`` file, the ``.mid`` file (None: not written, ``why_not``
    says why) and the notes in it."""

    abc_path: Path
    midi_path: Path | None
    notes: int = 0
    why_not: str = ""


def write_tune(text: str, path: str | os.PathLike) -> WrittenTune:
    """``text`` to ``<path>.abc`` always, and to ``<path>.mid`` (``abc.to_midi``) when the tune is playable."""
    path = Path(path)
    abc_path, midi_path = path.with_suffix(".abc"), path.with_suffix(".mid")
    atomic.write_text(abc_path, text)
    parsed = parse(text)
    verdict = playable(text, parsed)
    if not verdict.ok:
        return WrittenTune(abc_path, None, why_not=f"not playable: {verdict.reason}")
    try:
        notes = to_midi(text, midi_path, parsed)
    except MidiError as error:
        return WrittenTune(abc_path, None, why_not=f"no MIDI file: {error.reason}")
    return WrittenTune(abc_path, midi_path, notes)
