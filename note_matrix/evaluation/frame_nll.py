"""The polyphonic benchmarks' metric, and the baselines a piano-roll model must beat.

``frame_nll`` is the number every paper on the four benchmarks reports (Boulanger-
Lewandowski, Bengio and Vincent 2012; Bai, Kolter and Koltun 2018): for each frame, the
sum over the 88 keys of the Bernoulli negative log-likelihood of the key's state, in
nats; summed over every frame of every piece of a split and divided by the number of
frames. It is computed as the published code computes it, with no floor on the
probabilities: a probability of exactly 0 for what happened scores infinity. Logits
give the same number without rounding a probability to 0 or 1 first (``log sigmoid``
in its stable form). Uniform guessing (``p = 0.5``) scores ``88 ln 2 = 61.0``.
``model_frame_nll`` scores a model that predicts the next frame at every step this way,
over every frame of a split's pieces; ``model_token_frame_nll`` a model of the frames'
tokens (``roll_tokens``), by the same number.

Baselines (``RollBaselines``), fitted on the training pieces and scored on the frames a
window-``W`` model is scored on (``baselines.target_rows``), or on every frame of every
piece as ``model_frame_nll`` scores a model (``score_frames``):

- ``repeat previous frame``: the frame before, as a point prediction (no distribution);
- ``key frequencies``: each key on with its share of the training frames, independently;
- ``Markov chain per key``: each key on with the training share of frames where it is on
  after a frame where it was on (or off), independently.

Both distributions are add-one smoothed, so none gives a probability of 0 or 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from note_matrix.evaluation.baselines import target_rows


def frame_nlls(targets, *, probabilities=None, logits=None) -> np.ndarray:
    """Per frame, the sum over the keys (last axis) of ``-log P(target)`` in nats, float64
    ``targets.shape[:-1]``, from the probability that each key is on or its logit (exactly
    one of them, the shape of ``targets``). ``ValueError`` for mismatched shapes, targets
    other than 0 and 1, or probabilities outside [0, 1]."""
    if (probabilities is None) == (logits is None):
        raise ValueError("frame_nll takes either probabilities or logits")
    targets = np.asarray(targets, np.float64)
    given = np.asarray(probabilities if logits is None else logits, np.float64)
    if targets.shape != given.shape or targets.ndim < 1 or targets.shape[-1] == 0:
        raise ValueError(f"targets and predictions need one shape (..., keys), got {targets.shape} and {given.shape}")
    on = targets == 1
    if not np.all(on | (targets == 0)):
        raise ValueError("targets must be 0 or 1")
    if logits is not None:
        return np.logaddexp(0.0, np.where(on, -given, given)).sum(axis=-1)  # -log sigmoid(+-logit)
    if not np.all((given >= 0) & (given <= 1)):
        raise ValueError("probabilities must lie in [0, 1]")
    with np.errstate(divide="ignore"):
        return -np.log(np.where(on, given, 1.0 - given)).sum(axis=-1)


def frame_nll(targets, *, probabilities=None, logits=None) -> float:
    """The benchmarks' frame-level NLL (module docstring): ``frame_nlls`` summed over every
    frame and divided by their number. For a split, concatenate its pieces' frames."""
    per_frame = frame_nlls(targets, probabilities=probabilities, logits=logits)
    if per_frame.size == 0:
        raise ValueError("frame_nll needs at least one frame")
    return float(per_frame.sum() / per_frame.size)


def model_frame_nll(model, pieces: list[np.ndarray], *, batch_size: int = 16) -> float:
    """``frame_nll`` of every frame of every piece under a Keras ``model`` that predicts the
    next frame's logits at every step (``targets="all"``: ``(batch, steps, keys)`` in and
    out). Each piece is read after one silent frame, so its first frame is scored too.
    Pieces are padded at the end to the longest (a recurrent model's earlier outputs do
    not depend on what follows), so the model runs at one input shape. A model that reads
    the frames it predicts (the ``nade`` head, ``models.reads_targets``) is given them too.
    """
    import keras

    from models import model_inputs

    longest, keys = max(len(piece) for piece in pieces), pieces[0].shape[1]
    logits = []
    for start in range(0, len(pieces), batch_size):
        batch, targets = np.zeros((2, batch_size, longest, keys), np.float32)
        for row, piece in enumerate(pieces[start : start + batch_size]):
            batch[row, 1 : len(piece)] = piece[:-1]
            targets[row, : len(piece)] = piece
        output = keras.ops.convert_to_numpy(model.predict_on_batch(model_inputs(model, batch, targets)))
        logits += [output[row, : len(piece)] for row, piece in enumerate(pieces[start : start + batch_size])]
    return frame_nll(np.concatenate(pieces), logits=np.concatenate(logits))


def model_token_frame_nll(model, pieces: list[np.ndarray], *, batch_size: int = 16) -> float:
    """``frame_nll`` of every frame of every piece of ``roll_tokens`` steps (``(tokens, 1)``,
    ``representations.roll_tokens``) under a Keras ``model`` that predicts the next token at
    every step: each piece read from its first token (the ``END`` before its first frame),
    scored by ``roll_tokens.frame_token_nll``. Pieces are padded at the end to the longest."""
    import keras

    from note_matrix.representations.roll_tokens import frame_token_nll

    longest = max(len(piece) for piece in pieces) - 1
    logits = []
    for start in range(0, len(pieces), batch_size):
        group = pieces[start : start + batch_size]
        batch = np.zeros((len(group), longest, 1), np.int32)
        for row, piece in enumerate(group):
            batch[row, : len(piece) - 1] = piece[:-1]
        output = keras.ops.convert_to_numpy(model.predict_on_batch(batch))
        logits += [output[row, : len(piece) - 1] for row, piece in enumerate(group)]
    return frame_token_nll(pieces, logits)


def _scores(points: np.ndarray, probabilities: np.ndarray | None, target: np.ndarray) -> dict:
    nll = None if probabilities is None else frame_nll(target, probabilities=probabilities)
    return {"accuracy": float(np.mean(np.all((points > 0.5) == (target > 0.5), axis=-1))), "nll": nll}


@dataclass(frozen=True)
class RollBaselines:
    """What the piano-roll baselines learn from the training frames (module docstring)."""

    frequency: np.ndarray  # (keys,) P(on)
    after_on: np.ndarray  # (keys,) P(on | on in the frame before)
    after_off: np.ndarray  # (keys,) P(on | off in the frame before)

    @classmethod
    def fit(cls, training: list[np.ndarray]) -> RollBaselines:
        frames = np.concatenate(training) > 0.5
        before = np.concatenate([piece[:-1] for piece in training]) > 0.5
        after = np.concatenate([piece[1:] for piece in training]) > 0.5

        def share(on: np.ndarray, among: np.ndarray) -> np.ndarray:
            return (np.sum(on & among, axis=0) + 1.0) / (np.sum(among, axis=0) + 2.0)

        return cls(share(frames, np.ones_like(frames)), share(after, before), share(after, ~before))

    def score_all(self, arrays: list[np.ndarray], window: int) -> dict[str, dict]:
        """Every baseline's scores on the frames a window-``window`` model is scored on."""
        previous, target = target_rows(arrays, window)
        frequency = np.broadcast_to(self.frequency, target.shape)
        markov = np.where(previous > 0.5, self.after_on, self.after_off)
        return {
            "repeat previous frame": _scores(previous, None, target),
            "key frequencies": _scores(frequency, frequency, target),
            "Markov chain per key": _scores(markov, markov, target),
        }

    def score_frames(self, pieces: list[np.ndarray]) -> dict[str, dict]:
        """Every baseline's scores on every frame of ``pieces``, each read after one silent frame."""
        return self.score_all([np.pad(piece, ((1, 0), (0, 0))) for piece in pieces], 1)
