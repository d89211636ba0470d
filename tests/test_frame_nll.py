"""The polyphonic benchmarks' frame-level NLL (``evaluation.frame_nll``), against uniform
guessing's 88 ln 2 = 61.0 and a hand computation, and a model's over every frame of a split."""

from __future__ import annotations

import math

import numpy as np
import pytest

from note_matrix.evaluation.frame_nll import frame_nll, frame_nlls, model_frame_nll

TARGETS = np.array([[1, 0, 0], [0, 1, 1]])
PROBABILITIES = np.array([[0.8, 0.1, 0.5], [0.25, 0.5, 0.9]])
# By hand: frame 1, -ln 0.8 - ln 0.9 - ln 0.5 = 0.223144 + 0.105361 + 0.693147 = 1.021651;
# frame 2, -ln 0.75 - ln 0.5 - ln 0.9 = 0.287682 + 0.693147 + 0.105361 = 1.086190.
BY_HAND = (1.021651 + 1.086190) / 2


def test_uniform_guessing_scores_88_ln_2():
    pieces = [np.random.default_rng(seed).integers(0, 2, (frames, 88)) for seed, frames in ((1, 7), (2, 30))]
    targets = np.concatenate(pieces)
    assert frame_nll(targets, probabilities=np.full(targets.shape, 0.5)) == pytest.approx(88 * math.log(2))
    assert round(frame_nll(targets, logits=np.zeros(targets.shape)), 1) == 61.0


def test_a_tiny_roll_by_hand():
    assert frame_nlls(TARGETS, probabilities=PROBABILITIES) == pytest.approx([1.021651, 1.086190], abs=1e-6)
    assert frame_nll(TARGETS, probabilities=PROBABILITIES) == pytest.approx(BY_HAND, abs=1e-6)
    logits = np.log(PROBABILITIES / (1 - PROBABILITIES))
    assert frame_nll(TARGETS, logits=logits) == pytest.approx(BY_HAND, abs=1e-6)


def test_the_split_is_averaged_over_frames_not_pieces():
    short, long = TARGETS[:1], np.repeat(TARGETS[1:], 3, axis=0)
    predictions = np.concatenate([PROBABILITIES[:1], np.repeat(PROBABILITIES[1:], 3, axis=0)])
    split = frame_nll(np.concatenate([short, long]), probabilities=predictions)
    assert split == pytest.approx((1.021651 + 3 * 1.086190) / 4, abs=1e-6)  # not (1.021651 + 1.086190) / 2


def test_certainty_is_exact_from_logits_and_unbounded_from_probabilities():
    assert frame_nll([[0, 1]], logits=[[-1000.0, 1000.0]]) == 0.0
    assert frame_nll([[1, 1]], logits=[[-1000.0, 1000.0]]) == pytest.approx(1000.0)
    assert frame_nll([[1, 0]], probabilities=[[0.0, 0.0]]) == math.inf  # no floor, as published


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: frame_nll(TARGETS, probabilities=PROBABILITIES[:, :2]), "one shape"),
        (lambda: frame_nll(TARGETS * 0.5, probabilities=PROBABILITIES), "0 or 1"),
        (lambda: frame_nll(TARGETS, probabilities=PROBABILITIES + 0.5), r"lie in \[0, 1\]"),
        (lambda: frame_nll(TARGETS), "either probabilities or logits"),
        (lambda: frame_nll(TARGETS, probabilities=PROBABILITIES, logits=PROBABILITIES), "either"),
        (lambda: frame_nll(np.zeros((0, 88)), logits=np.zeros((0, 88))), "at least one frame"),
    ],
)
def test_bad_arguments_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def _model():
    from models import InputSpec, ModelConfig
    from models.builder import build_model
    from models.fields import Bernoulli, Head

    config = ModelConfig(units=8, dropout_rate=0.0, head="bernoulli", targets="all")
    return build_model(config, InputSpec("multi_hot", 88), Head((Bernoulli(88),)))


def test_a_model_is_scored_on_every_frame_of_every_piece():
    rng = np.random.default_rng(4)
    pieces = [rng.integers(0, 2, (frames, 88)).astype(np.float32) for frames in (3, 10, 1)]
    model = _model()
    expected = []  # piece by piece, each after a silent frame, at its own length
    for piece in pieces:
        steps = np.concatenate([np.zeros((1, 88), np.float32), piece[:-1]])[None]
        expected.append(frame_nlls(piece, logits=np.asarray(model.predict_on_batch(steps))[0]))
    assert model_frame_nll(model, pieces, batch_size=2) == pytest.approx(np.concatenate(expected).mean(), rel=1e-5)
    dense = model.get_layer("dense")
    dense.set_weights([np.zeros_like(weight) for weight in dense.get_weights()])  # logits 0: p = 0.5
    assert model_frame_nll(model, pieces) == pytest.approx(88 * math.log(2))
