"""The piano roll as a sequence of tokens: each frame's sounding keys, lowest first, then ``END``.

The frames are the piano roll's (``representations.piano_roll``: the 88 keys, MIDI 21 to
108, read from the benchmarks' ``.mat`` files or from MIDI at ``frame`` beats a frame).
A frame becomes the tokens of its sounding keys in ascending order (``k`` for key
``21 + k``) followed by ``END`` (88); a piece starts with one ``END``, the frame before
it, silent (Walder 2016, "Modelling symbolic music: beyond the piano roll"). An empty
frame is a lone ``END``. Steps are ``(tokens, 1)`` int32.

Keys ascend within a frame, so a frame's set of keys is one sequence of tokens and back:
the model's probability of a frame is the product of its tokens' probabilities given
what came before, exactly, when every token that would not ascend has probability 0. The
model's distribution is therefore its softmax renormalised over the tokens ``allowed``
after the one before (after key ``k`` only keys above ``k`` or ``END``; after ``END``
anything): generation draws from it (``next_step``) and the benchmarks' frame-level NLL
of a piece is the sum of its tokens' NLLs under it divided by its frames
(``frame_token_nll``), the same number the piano roll's heads are scored by. Training
minimises the plain softmax's cross-entropy, which bounds that NLL from above.

Decoding turns the tokens back into frames (``roll_of_tokens``) and writes them as the
piano roll does (a held key one sustained note, or re-struck with ``restrike``).
"""

from __future__ import annotations

import os
from typing import ClassVar

import numpy as np

from note_matrix.errors import MidiError
from note_matrix.representations.base import Encoded
from note_matrix.representations.piano_roll import DEFAULT_FRAME_BEATS, KEYS, PianoRoll
from note_matrix.representations.symbols import SymbolSteps

END = KEYS  # 88: the end of a frame
VOCABULARY = KEYS + 1
EMBEDDING = 64


def tokens_of_roll(roll: np.ndarray) -> np.ndarray:
    """A ``(frames, 88)`` 0/1 roll as ``(tokens, 1)`` int32: ``END``, then per frame its keys
    ascending and ``END`` (module docstring)."""
    on = np.asarray(roll) > 0.5
    frames, keys = np.nonzero(on)  # row-major: frame by frame, keys ascending
    # Frame f's keys go after the END of every frame before it and the leading END.
    tokens = np.full(1 + len(keys) + len(on), END, np.int32)
    key_slots = np.arange(len(keys)) + 1 + frames  # one END before each frame's keys so far
    tokens[key_slots] = keys
    return tokens[:, None]


def roll_of_tokens(tokens: np.ndarray) -> np.ndarray:
    """``(tokens,)`` or ``(tokens, 1)`` tokens back to a ``(frames, 88)`` float32 roll: one
    frame per ``END`` after the first token (a leading ``END`` opens the piece, as
    ``tokens_of_roll`` writes it), holding the keys before it; keys after the last
    ``END`` make a last frame. ``ValueError`` for a token outside ``0..88``."""
    tokens = np.asarray(tokens).reshape(-1)
    if np.any((tokens < 0) | (tokens > END)):
        raise ValueError(f"roll tokens lie in 0..{END}")
    if len(tokens) and tokens[0] == END:
        tokens = tokens[1:]
    ends = np.flatnonzero(tokens == END)
    frames = len(ends) + int(len(tokens) > 0 and tokens[-1] != END)
    roll = np.zeros((frames, KEYS), np.float32)
    frame_of = np.searchsorted(ends, np.arange(len(tokens)))  # the END at or after each token
    keys = tokens != END
    roll[frame_of[keys], tokens[keys]] = 1.0
    return roll


def allowed(previous, xp=np):
    """``(..., 89)`` bool: the tokens that may follow ``previous`` (``(...)`` int tokens), keys
    ascending within a frame (module docstring). ``xp``: ``numpy``, or ``keras.ops`` inside
    the compiled generation loop (the same expression on tensors)."""
    before = xp.expand_dims(previous, -1)
    token = xp.arange(VOCABULARY)
    return xp.logical_or(xp.logical_or(token > before, token == END), before == END)


def frame_token_nll(pieces: list[np.ndarray], logits: list[np.ndarray]) -> float:
    """The benchmarks' frame-level NLL from token logits: ``pieces`` as ``tokens_of_roll``
    writes them, ``logits[i]`` ``(len(pieces[i]) - 1, 89)`` the network's output at each
    token but the last (predicting the token after it), masked by ``allowed`` here (the
    distribution: module docstring). Sum of ``-log p`` over every
    token after the first of every piece, divided by the number of frames (``END`` tokens
    after the first)."""
    total, frames = 0.0, 0
    for piece, output in zip(pieces, logits):
        tokens = np.asarray(piece).reshape(-1)
        given, target = tokens[:-1], tokens[1:]
        output = np.where(allowed(given), np.asarray(output, np.float64), -np.inf)  # the distribution
        log_norm = np.logaddexp.reduce(output, axis=-1)
        total += float(np.sum(log_norm - output[np.arange(len(target)), target]))
        frames += int(np.sum(target == END))
    if frames == 0:
        raise ValueError("frame_token_nll needs at least one frame")
    return total / frames


class RollTokens(SymbolSteps):
    """Piano-roll frames as ascending key tokens and ``END`` (module docstring)."""

    name = "roll_tokens"
    columns = ("token",)
    options = ("frame", "restrike", "embedding")
    vocabulary = VOCABULARY
    reads_rolls = True  # a piano-roll benchmark (``--dataset jsb`` ...) reads into it
    key_tokens = KEYS  # ids below it are keys a semitone apart (``--transpose``)
    # Walder 2016's LSTM, sized for this CPU: the piano roll's recipe on windows of 64 tokens, batch 8.
    recipe: ClassVar[dict] = {**PianoRoll.recipe, "window_length": 64, "batch_size": 8}

    def __init__(self, frame: float = DEFAULT_FRAME_BEATS, restrike: bool = False, embedding: int = EMBEDDING):
        if isinstance(embedding, bool) or not isinstance(embedding, int) or embedding < 1:
            raise ValueError(f"embedding must be a positive integer, got {embedding!r}")
        self.roll = PianoRoll(frame, restrike)  # checks frame and restrike
        self.frame, self.restrike, self.embedding = self.roll.frame, restrike, embedding

    # -- files ---------------------------------------------------------------------
    def encode(self, path: str | os.PathLike) -> Encoded:
        encoded = self.roll.encode(path)
        return Encoded(tokens_of_roll(encoded.steps), encoded.meta)

    def encode_roll(self, roll: np.ndarray) -> Encoded:
        """A benchmark piece (``(frames, 88)`` 0/1) as tokens, at the default tempo."""
        encoded = PianoRoll.encode_roll(roll)
        return Encoded(tokens_of_roll(encoded.steps), encoded.meta)

    def decode(self, steps: np.ndarray, meta: dict, path: str | os.PathLike) -> int:
        try:
            roll = roll_of_tokens(steps)
        except ValueError as error:
            raise MidiError(path, str(error)) from None
        return self.roll.decode(roll, meta, path)

    # -- the network (``SymbolSteps``: embedded tokens in, one categorical field out) -------
    def next_step(self, head, prediction, noise, previous, *, temperature: float, top_k: int | None, spread):
        """The next token from the softmax renormalised over the tokens ``allowed`` after
        ``previous`` (``(N, 1)``, the token fed last): keys ascend within every frame."""
        from keras import ops

        masked = ops.where(allowed(ops.cast(previous, "int32")[:, 0], ops), ops.cast(prediction, "float32"), -1e9)
        return super().next_step(head, masked, noise, previous, temperature=temperature, top_k=top_k, spread=spread)

    # -- evaluation (``evaluation.benchmark.evaluate_frames``) ------------------------------
    model_label = "model (roll tokens)"

    def frames(self, steps: np.ndarray) -> np.ndarray:
        """The piano-roll frames of ``steps`` (``roll_of_tokens``)."""
        return roll_of_tokens(steps)

    def model_frame_nll(self, model, pieces: list[np.ndarray]) -> float:
        """The benchmarks' frame-level NLL of ``model`` on ``pieces`` of tokens (``evaluation.frame_nll``)."""
        from note_matrix.evaluation.frame_nll import model_token_frame_nll

        return model_token_frame_nll(model, pieces)

    def to_json(self) -> dict:
        return {"name": self.name, "frame": self.frame, "restrike": self.restrike, "embedding": self.embedding}
