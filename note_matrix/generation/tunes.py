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
from tqdm import tqdm

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
    """A generated tune: its ``text``, whether it ``ended`` with ``<end>`` (else it was cut at the length)
    and, drawn with ``generate_well_formed``, how many pieces the checker ``refused``."""

    text: str
    ended: bool
    refused: int = 0


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


MAX_STEPS_PER_CHARACTER = 10  # well-formed sampling stops after this many steps per character of --length


def generate_well_formed(
    generator,
    representation,
    primer: TunePrimer,
    count: int,
    length: int,
    *,
    sampling=None,
    progress: bool = False,
    checker=None,
) -> list[Tune]:
    """``count`` tunes as ``generate_tunes`` draws them, each checked as it is drawn
    (``abc.checker.TuneChecker``): a header line or bar that is refused is drawn again from the
    state where it began, and symbols that cannot be right there are never drawn.

    One step feeds every tune one character (``CarriedStateGenerator.start``/``advance``),
    drawn in NumPy with ``sampling``'s temperature and top-k from ``numpy.random.default_rng``
    (its random seed); ``sampling`` None: the most likely symbol. A tune ends at ``<end>``, at
    ``length`` characters, or when the batch has run ``MAX_STEPS_PER_CHARACTER * length`` steps.
    ``checker``: makes a tune's checker from the primer text and the run's characters (default
    ``TuneChecker``; tests give others).
    """
    from note_matrix.abc.checker import TuneChecker
    from note_matrix.representations.abc_chars import SPECIAL_SYMBOLS

    symbols = [*SPECIAL_SYMBOLS, *representation.characters]
    rng = np.random.default_rng(0 if sampling is None else sampling.random_seed)
    checkers = [(checker or TuneChecker)(primer.text, representation.characters) for _ in range(count)]
    states, output = generator.start(np.repeat(primer.tokens[None], count, axis=0))
    kept = [[_row(states, output, index)] for index in range(count)]  # each tune's state where each piece began
    masks: dict[frozenset, np.ndarray] = {}
    done = np.zeros(count, dtype=bool)
    with tqdm(total=count, desc="tunes", unit="tune", disable=not progress) as bar:
        for _ in range(MAX_STEPS_PER_CHARACTER * length):
            forbidden = np.stack([_mask(masks, symbols, checker.forbidden()) for checker in checkers])
            drawn = _draw(output, forbidden, sampling, rng)
            refused, closed = [], []
            for index in np.flatnonzero(~done):
                checker = checkers[index]
                if not checker.take(symbols[drawn[index]]):
                    refused.append(index)
                    del kept[index][len(kept[index]) - checker.back :]
                elif checker.piece_ended:
                    closed.append(index)
                if checker.ended or len(checker.text) - len(primer.text) >= length:
                    done[index] = True
                    bar.update()
            if done.all():
                break
            states, output = generator.advance(states, drawn[:, None])
            for index in refused:
                _restore(states, output, index, kept[index][-1])
            for index in closed:
                kept[index].append(_row(states, output, index))
    return [Tune(checker.text, checker.ended, checker.refusals) for checker in checkers]


def draw_tunes(generator, representation, head, primer: TunePrimer, count: int, length: int, *, sampling=None,
               well_formed: bool = True, progress: bool = False) -> list[Tune]:
    """``count`` tunes, ``generate_well_formed``'s or, with ``well_formed`` False, ``generate_tunes``'."""
    if well_formed:
        return generate_well_formed(generator, representation, primer, count, length, sampling=sampling,
                                    progress=progress)
    return generate_tunes(generator, representation, head, primer, count, length, sampling=sampling,
                          progress=progress)


def _row(states: tuple, output: np.ndarray, index: int) -> tuple:
    """Tune ``index``'s state and output, copied."""
    return tuple(tuple(part[index].copy() for part in layer) for layer in states), output[index].copy()


def _restore(states: tuple, output: np.ndarray, index: int, row: tuple) -> None:
    """Tune ``index``'s state and output set back to ``row`` (``_row``'s), in place."""
    for layer, saved_layer in zip(states, row[0]):
        for part, saved in zip(layer, saved_layer):
            part[index] = saved
    output[index] = row[1]


def _mask(masks: dict, symbols: list[str], forbidden: frozenset) -> np.ndarray:
    if forbidden not in masks:
        masks[forbidden] = np.array([symbol in forbidden for symbol in symbols])
    return masks[forbidden]


def _draw(output: np.ndarray, forbidden: np.ndarray, sampling, rng) -> np.ndarray:
    """One symbol per row of logits ``output`` ``(N, V)``, never a ``forbidden`` one: the argmax
    (``sampling`` None or at temperature 0), else a draw from ``softmax(output / T)`` over the top-k."""
    logits = np.where(forbidden, -np.inf, output.astype(np.float64))
    if sampling is None or not sampling.samples:
        return np.argmax(logits, axis=-1).astype(np.int32)
    scaled = logits / sampling.temperature
    if sampling.top_k is not None and sampling.top_k < scaled.shape[-1]:
        kth = -np.sort(-scaled, axis=-1)[:, sampling.top_k - 1 : sampling.top_k]
        scaled = np.where(scaled >= kth, scaled, -np.inf)
    probabilities = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    cdf = np.cumsum(probabilities, axis=-1)
    threshold = (1.0 - rng.random(len(cdf)))[:, None] * cdf[:, -1:]  # in (0, 1]: a zero-probability symbol is never drawn
    return np.minimum(np.sum(cdf < threshold, axis=-1), cdf.shape[-1] - 1).astype(np.int32)


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
