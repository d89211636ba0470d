"""The piano roll as tokens (``roll_tokens``): each frame's keys ascending, then END. The
tokens go to frames and back exactly, the model's distribution is its softmax over the
tokens that keep keys ascending (so a frame's probability is its tokens'), the benchmarks'
frame-level NLL is computed from it by hand on a tiny piece, transposition moves keys and
leaves END, and a run trains, is scored by ``evaluate.py`` and writes music with
``generate.py`` on a synthetic benchmark."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest

import evaluate
import generate
import train
from models import build_model
from note_matrix.datasets import resolve
from note_matrix.evaluation.frame_nll import model_token_frame_nll
from note_matrix.representations.piano_roll import KEYS
from note_matrix.representations.roll_tokens import (
    END,
    VOCABULARY,
    RollTokens,
    allowed,
    frame_token_nll,
    roll_of_tokens,
    tokens_of_roll,
)
from note_matrix.training.windows import transposed_tokens
from tests.test_polyphonic_datasets import _benchmark

TOKENS = RollTokens()


def _roll(frames: int, seed: int, density: float = 0.06) -> np.ndarray:
    return (np.random.default_rng(seed).random((frames, KEYS)) < density).astype(np.float32)


# -- tokens and frames ------------------------------------------------------------------------------


def test_a_roll_becomes_ascending_keys_and_end_per_frame_and_back():
    roll = np.zeros((3, KEYS), np.float32)
    roll[0, [40, 3, 60]] = 1
    roll[2, 87] = 1  # frame 1 silent
    tokens = tokens_of_roll(roll)
    assert tokens.dtype == np.int32 and tokens.shape == (8, 1)
    assert tokens[:, 0].tolist() == [END, 3, 40, 60, END, END, 87, END]
    np.testing.assert_array_equal(roll_of_tokens(tokens), roll)
    np.testing.assert_array_equal(roll_of_tokens(tokens[1:]), roll)  # without the leading END too
    for seed in range(5):
        random_roll = _roll(40 + seed, seed, density=0.02 * (seed + 1))
        np.testing.assert_array_equal(roll_of_tokens(tokens_of_roll(random_roll)), random_roll)
    assert tokens_of_roll(np.zeros((0, KEYS))).tolist() == [[END]] and roll_of_tokens([END]).shape == (0, KEYS)
    np.testing.assert_array_equal(np.flatnonzero(roll_of_tokens([END, 5, 9])[0]), [5, 9])  # an unfinished frame
    with pytest.raises(ValueError, match="roll tokens lie in 0..88"):
        roll_of_tokens([END, 89])


def test_after_a_key_only_higher_keys_or_end_may_follow():
    table = allowed(np.array([END, 0, 40, 87]))
    assert table.shape == (4, VOCABULARY)
    assert table[0].all()  # a new frame: any key, or END (a silent frame)
    assert np.flatnonzero(table[1]).tolist() == list(range(1, VOCABULARY))
    assert np.flatnonzero(table[2]).tolist() == list(range(41, VOCABULARY))
    assert np.flatnonzero(table[3]).tolist() == [END]


def test_the_frame_nll_is_the_tokens_nll_under_the_renormalised_softmax_by_hand():
    roll = np.zeros((2, KEYS), np.float32)
    roll[0, [10, 20]] = 1  # tokens: END 10 20 END END
    piece = tokens_of_roll(roll)
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(len(piece) - 1, VOCABULARY))
    by_hand = 0.0
    for given, target, row in zip(piece[:-1, 0], piece[1:, 0], logits):
        mask = [token > given or token == END or given == END for token in range(VOCABULARY)]
        norm = math.log(sum(math.exp(value) for value, keep in zip(row, mask) if keep))
        by_hand += norm - row[target]
    assert frame_token_nll([piece], [logits]) == pytest.approx(by_hand / 2, rel=1e-12)
    # Uniform logits: every frame costs the log of how many tokens were allowed at each step.
    uniform = frame_token_nll([piece], [np.zeros_like(logits)])
    assert uniform == pytest.approx((math.log(89) + math.log(89 - 11) + math.log(89 - 21) + math.log(89)) / 2)
    with pytest.raises(ValueError, match="at least one frame"):
        frame_token_nll([np.array([[END]])], [np.zeros((0, VOCABULARY))])


def test_the_masked_probabilities_of_every_frame_of_a_small_keyboard_sum_to_one():
    """On keys 0..3 only (logits of the others -inf), the frames' probabilities sum to 1:
    the renormalised softmax is a distribution over sets of keys, each set one sequence."""
    rng = np.random.default_rng(0)
    table = rng.normal(size=(VOCABULARY, VOCABULARY))  # logits as a function of the token before
    table[:, 4:END] = -np.inf
    total = 0.0
    for subset in range(16):
        keys = [k for k in range(4) if subset >> k & 1]
        piece = np.array([END, *keys, END])[:, None]
        total += math.exp(-frame_token_nll([piece], [table[piece[:-1, 0]]]))
    assert total == pytest.approx(1.0, abs=1e-9)


def test_generation_never_draws_a_key_at_or_below_the_one_before_in_a_frame():
    prediction = keras.ops.convert_to_tensor(np.zeros((4, VOCABULARY), np.float32) + np.eye(4, VOCABULARY) * 50)
    previous = keras.ops.convert_to_tensor(np.array([[END], [30], [2], [87]], np.int32))
    head = TOKENS.head("categorical", 1)
    point = keras.ops.convert_to_numpy(TOKENS.next_step(head, prediction, None, previous, temperature=0.0,
                                                        top_k=None, spread=None))
    assert point[0, 0] == 0  # free: the model's favourite key
    assert point[1, 0] > 30 and point[2, 0] > 2 and point[3, 0] == END  # the favourites 1, 2, 3 are not allowed
    rng = np.random.default_rng(1)
    for _ in range(20):
        noise = keras.ops.convert_to_tensor(rng.random((4, head.noise_width)).astype(np.float32))
        drawn = keras.ops.convert_to_numpy(TOKENS.next_step(head, prediction, noise, previous, temperature=1.0,
                                                            top_k=None, spread=None))[:, 0]
        assert drawn[1] > 30 and drawn[2] > 2 and drawn[3] == END


def test_transposition_moves_keys_together_and_leaves_end():
    rng = np.random.default_rng(0)
    x = np.array([[END, 10, 20, END], [END, 0, 87, END], [END, END, END, END]], np.int32)[..., None]
    y = np.concatenate([x[:, 1:], np.full((3, 1, 1), END, np.int32)], axis=1)
    seen = set()
    for _ in range(60):
        moved_x, moved_y = transposed_tokens(x, y, 5, rng, KEYS)
        shift = int(moved_x[0, 1, 0] - x[0, 1, 0])
        seen.add(shift)
        assert -5 <= shift <= 5
        np.testing.assert_array_equal(moved_x[0, :, 0], np.where(x[0, :, 0] < KEYS, x[0, :, 0] + shift, END))
        np.testing.assert_array_equal(moved_y[0, :, 0], np.where(y[0, :, 0] < KEYS, y[0, :, 0] + shift, END))
        np.testing.assert_array_equal(moved_x[1], x[1])  # keys 0 and 87 sound: no room to move
        np.testing.assert_array_equal(moved_x[2], x[2])
    assert seen == set(range(-5, 6))


# -- train.py, evaluate.py, generate.py -----------------------------------------------------------


@pytest.fixture(scope="module")
def tokens_run(tmp_path_factory):
    """A jsb run of roll tokens trained by train.py on a synthetic mirror: (run folder, mirror)."""
    base = tmp_path_factory.mktemp("jsb-tokens")
    _benchmark(base / "mirror" / "polyphonic" / "JSB_Chorales.mat")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(resolve.MIRROR_ENV, str(base / "mirror"))
        argv = ["--dataset", "jsb", "--representation", "roll_tokens", "--data-dir", str(base / "data"),
                "--logdir", str(base / "logs"), "--run-name", "tokens", "--sample-every", "1", "--units", "8",
                "--epochs", "1", "--window", "16", "--batch-size", "4", "--transpose", "2", "--quiet"]
        assert train.main(argv) == 0
    return base / "logs" / "tokens", base / "mirror"


def test_train_saves_a_roll_tokens_run(tokens_run):
    run, _ = tokens_run
    config = json.loads((run / "config.json").read_text())
    assert config["representation"] == {"name": "roll_tokens", "frame": 1.0, "restrike": False, "embedding": 64}
    assert config["train"]["transpose"] == 2 and config["train"]["model"]["targets"] == "all"
    assert (run / "samples" / "epoch-0001.mid").is_file()


def test_evaluate_scores_roll_tokens_by_the_frame_nll(tokens_run, monkeypatch, capsys):
    import scipy.io

    from note_matrix import runs

    run, mirror = tokens_run
    monkeypatch.setenv(resolve.MIRROR_ENV, str(mirror))
    assert evaluate.main(["--model", str(run), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    result = json.loads((run / "evaluation.json").read_text())["frame_nll"]
    scores = result["scores"]["model (roll tokens)"]
    assert lines[4].split() == ["model", "(roll", "tokens)", f"{scores['validation']:.3f}", f"{scores['test']:.3f}"]
    rolls = [np.asarray(piece, np.float32) for piece in scipy.io.loadmat(mirror / "polyphonic" /
                                                                         "JSB_Chorales.mat")["validdata"].reshape(-1)]
    assert result["splits"]["validation"]["frames"] == sum(map(len, rolls))
    pieces = [tokens_of_roll(roll) for roll in rolls]
    assert scores["validation"] == pytest.approx(model_token_frame_nll(runs.load_model(run), pieces))
    assert "Markov chain per key" in result["scores"]  # the frame baselines, on the same frames


def test_generate_primes_roll_tokens_with_a_benchmark_piece(tokens_run, tmp_path, monkeypatch, capsys):
    run, mirror = tokens_run
    monkeypatch.setenv(resolve.MIRROR_ENV, str(mirror))
    out = tmp_path / "piece.mid"
    assert generate.main(["--model", str(run), "--seed", "jsb:valid:1", "--length", "60", "--random-seed", "2",
                          "--plot", "--out", str(out)]) == 0
    assert f"wrote {out}: " in capsys.readouterr().out
    assert out.with_suffix(".png").read_bytes().startswith(b"\x89PNG")
    roll = TOKENS.roll.encode(out).steps
    assert 0 < roll.sum() < roll.size


def test_one_epoch_on_a_few_real_pieces_lowers_the_frame_nll(mirror, tmp_path):
    """CI's check of roll tokens on the mirror's JSB Chorales: one epoch on its first 12 pieces
    lowers the validation NLL well below the untrained model's."""
    from note_matrix import run_data, runs

    argv = ["--dataset", "jsb", "--representation", "roll_tokens", "--max-files", "12", "--data-dir",
            str(tmp_path / "data"), "--logdir", str(tmp_path), "--run-name", "run", "--learning-rate", "0.01",
            "--units", "16", "--epochs", "1", "--window", "32", "--batch-size", "4", "--sample-every", "0", "--quiet"]
    assert train.main(argv) == 0
    data = run_data.open_run(tmp_path / "run")
    run_data.encode(data, progress=False)
    pieces = data.part("validation")
    keras.utils.set_random_seed(0)  # as train.py builds it, before its first step
    untrained = build_model(data.config.train.model, TOKENS.inputs(), TOKENS.head("categorical", 1))
    before = model_token_frame_nll(untrained, pieces)
    after = model_token_frame_nll(runs.load_model(tmp_path / "run"), pieces)
    assert after < before - 1.0

