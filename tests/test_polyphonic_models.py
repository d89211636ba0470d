"""The polyphonic benchmarks' models on one trainer: the LSTM with independent keys (head
``bernoulli``), RNN-NADE (head ``nade``, ``models.nade``) and the biaxial LSTM (head
``biaxial``, ``models.biaxial``), wired into the builder, the training batches, the
frame-level NLL and the carried-state generators; each trains from ``train.py``, is
scored by ``evaluate.py`` and writes music with ``generate.py``, primed by a MIDI file or
by a benchmark piece named by its key (``jsb:valid:1``)."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import evaluate
import generate
import train
from models import ModelConfig, build_model, model_inputs, reads_targets
from note_matrix.datasets import resolve
from note_matrix.errors import RunError
from note_matrix.evaluation.frame_nll import frame_nll, model_frame_nll
from note_matrix.generation import Sampling, generate_rows
from note_matrix.representations.piano_roll import KEYS, PianoRoll
from tests.test_polyphonic_datasets import _benchmark

ROLL = PianoRoll()
TINY = ["--units", "8", "--output-units", "6", "--epochs", "1", "--window", "16", "--batch-size", "4", "--quiet"]


def _model(head_name: str = "nade", seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    config = ModelConfig(units=12, head=head_name, output_units=10, targets="all", dropout_rate=0.0)
    return build_model(config, ROLL.inputs(), ROLL.head(head_name, 1))


def _rolls(count: int, frames: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((count, frames, KEYS)) < 0.08).astype(np.float32)


@pytest.mark.parametrize("head_name", ["nade", "biaxial"])
def test_a_frame_head_reads_the_frames_it_predicts(head_name):
    model, independent = _model(head_name), _model("bernoulli")
    assert reads_targets(model) and not reads_targets(independent)
    assert [tensor.name for tensor in model.inputs] == ["window", "next"]
    x, y = _rolls(2, 5, 1), _rolls(2, 5, 2)
    assert model_inputs(model, x, y) == [x, y] and model_inputs(independent, x, y) is x
    logits = keras.ops.convert_to_numpy(model([x, y]))
    changed = y.copy()
    changed[:, :, 40] = 1 - changed[:, :, 40]  # key 40 of every predicted frame flipped
    moved = keras.ops.convert_to_numpy(model([x, changed]))
    np.testing.assert_array_equal(moved[..., :41], logits[..., :41])  # a key depends on the keys below it only
    assert not np.allclose(moved[..., 41:], logits[..., 41:])
    with pytest.raises(ValueError, match=f"the {head_name} head predicts a multi-hot frame at every step"):
        build_model(ModelConfig(units=8, head=head_name, targets="last"), ROLL.inputs(), ROLL.head(head_name, 1))


def test_the_frame_nll_of_a_nade_model_is_its_exact_likelihood():
    model = _model()
    pieces = [_rolls(1, frames, seed)[0] for seed, frames in enumerate((7, 11, 4))]
    condition = keras.Model(model.inputs[0], model.get_layer("dropout").output)
    nade = model.get_layer("nade")
    log_p = []
    for piece in pieces:
        before = np.concatenate([np.zeros((1, KEYS), np.float32), piece[:-1]])[None]  # read after a silent frame
        log_p.append(keras.ops.convert_to_numpy(nade.log_prob(condition(before), piece[None]))[0])
    expected = -np.concatenate(log_p).sum() / sum(len(piece) for piece in pieces)
    assert model_frame_nll(model, pieces, batch_size=2) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("head_name", ["nade", "biaxial"])
def test_generation_draws_each_frame_key_by_key_as_the_model_scores_it(head_name):
    model, head = _model(head_name, seed=3), ROLL.head(head_name, 1)
    primers = _rolls(2, 6, 4)
    frames = generate_rows(model, primers, 8, ROLL, head, progress=False)  # point frames
    # Every key is on exactly where its logit, given the keys drawn below it, is positive.
    history = np.concatenate([primers, frames], axis=1)
    logits = keras.ops.convert_to_numpy(model([history[:, :-1], history[:, 1:]]))[:, 6 - 1 :]
    np.testing.assert_array_equal(frames, (logits > 0).astype(np.float32))
    sampled = [generate_rows(model, primers, 8, ROLL, head, progress=False, sampling=Sampling(1.0, random_seed=seed))
               for seed in (5, 5, 6)]
    np.testing.assert_array_equal(sampled[0], sampled[1])  # a seed repeats the frames
    assert not np.array_equal(sampled[0], sampled[2])
    assert set(np.unique(sampled[0])) == {0.0, 1.0} and 0 < sampled[0].mean() < 1
    with pytest.raises(RunError, match="this head draws its frames key by key in the carried-state loop; use --method carried"):
        generate_rows(model, primers, 2, ROLL, head, method="window", progress=False)


# -- train.py, evaluate.py, generate.py ----------------------------------------------------------------


@pytest.fixture(scope="module")
def nade_run(tmp_path_factory):
    """A jsb run of the nade head trained by train.py on a synthetic mirror: (run folder, mirror)."""
    base = tmp_path_factory.mktemp("jsb-nade")
    _benchmark(base / "mirror" / "polyphonic" / "JSB_Chorales.mat")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(resolve.MIRROR_ENV, str(base / "mirror"))
        argv = ["--dataset", "jsb", "--representation", "piano_roll", "--head", "nade", "--data-dir",
                str(base / "data"), "--logdir", str(base / "logs"), "--run-name", "nade", "--sample-every", "1", *TINY]
        assert train.main(argv) == 0
    return base / "logs" / "nade", base / "mirror"


def test_train_saves_a_nade_model_that_loads_and_samples_in_tensorboard(nade_run):
    from note_matrix import runs

    run, _ = nade_run
    config = json.loads((run / "config.json").read_text())["train"]["model"]
    assert config["head"] == "nade" and config["output_units"] == 6
    model = runs.load_model(run)
    assert reads_targets(model) and model.get_layer("nade").hidden == 6
    assert (run / "samples" / "epoch-0001.mid").is_file()  # drawn key by key by the carried-state loop
    assert not (run / runs.CALIBRATION_FILE).exists()  # Bernoulli keys need no spread: no pass over validation


@pytest.mark.parametrize("head_name", ["nade", "biaxial"])
def test_train_refuses_a_frame_head_with_targets_last_in_one_line(head_name, nade_run, tmp_path, monkeypatch,
                                                                   capsys):
    _, mirror = nade_run
    monkeypatch.setenv(resolve.MIRROR_ENV, str(mirror))
    argv = ["--dataset", "jsb", "--representation", "piano_roll", "--head", head_name, "--targets", "last",
            "--data-dir", str(tmp_path / "data"), "--logdir", str(tmp_path / "logs"), *TINY]
    assert train.main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        f"train.py: error: the {head_name} head predicts the frame after every step: use --targets all")
    assert not (tmp_path / "logs").exists()  # refused before any run folder is made


def test_evaluate_scores_the_nade_model_by_the_frame_nll(nade_run, monkeypatch, capsys):
    import scipy.io

    from note_matrix import runs

    run, mirror = nade_run
    monkeypatch.setenv(resolve.MIRROR_ENV, str(mirror))
    assert evaluate.main(["--model", str(run), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    scores = json.loads((run / "evaluation.json").read_text())["frame_nll"]["scores"]["model (nade head)"]
    assert lines[4].split() == ["model", "(nade", "head)", f"{scores['validation']:.3f}", f"{scores['test']:.3f}"]
    pieces = [np.asarray(piece, np.float32) for piece in scipy.io.loadmat(mirror / "polyphonic" /
                                                                          "JSB_Chorales.mat")["validdata"].reshape(-1)]
    assert scores["validation"] == pytest.approx(model_frame_nll(runs.load_model(run), pieces))


def test_generate_primes_with_a_benchmark_piece_by_its_key(nade_run, tmp_path, monkeypatch, capsys):
    run, mirror = nade_run
    monkeypatch.setenv(resolve.MIRROR_ENV, str(mirror))
    out = tmp_path / "piece.mid"
    argv = ["--model", str(run), "--seed", "jsb:valid:1", "--length", "24", "--random-seed", "2", "--plot",
            "--out", str(out)]
    assert generate.main(argv) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}: " in printed and "seed jsb:valid:1" in printed
    assert out.with_suffix(".png").read_bytes().startswith(b"\x89PNG")
    roll = ROLL.encode(out).steps  # the written MIDI, read back: neither silence nor every key
    assert 0 < roll.sum() < roll.size
    assert generate.main([*argv[:3], "jsb:valid:7", *argv[4:]]) == 2
    assert capsys.readouterr().err.strip() == (
        "generate.py: error: --seed jsb:valid:7: no such piece in JSB_Chorales.mat (pieces per split: train 4, "
        "validation 2, test 3; keys count from 0, e.g. jsb:valid:0)"
    )


@pytest.mark.parametrize("head_name", ["bernoulli", "nade", "biaxial"])
def test_one_epoch_on_a_few_real_pieces_lowers_the_frame_nll(head_name, mirror, tmp_path):
    """CI's check of each model on the mirror's JSB Chorales: one epoch on its first 12 pieces
    lowers the validation NLL below the untrained model's (and below uniform guessing)."""
    from note_matrix import run_data, runs

    argv = ["--dataset", "jsb", "--representation", "piano_roll", "--head", head_name, "--max-files", "12",
            "--data-dir", str(tmp_path / "data"), "--logdir", str(tmp_path), "--run-name", "run",
            "--learning-rate", "0.01", "--units", "16", "--output-units", "8", "--epochs", "1", "--window", "16",
            "--batch-size", "4", "--sample-every", "0", "--quiet"]
    assert train.main(argv) == 0
    data = run_data.open_run(tmp_path / "run")
    run_data.encode(data, progress=False)
    pieces = data.part("validation")
    keras.utils.set_random_seed(0)  # as train.py builds it, before its first step
    untrained = build_model(data.config.train.model, ROLL.inputs(), ROLL.head(head_name, 1))
    before, after = model_frame_nll(untrained, pieces), model_frame_nll(runs.load_model(tmp_path / "run"), pieces)
    assert after < before - 1.0 and after < frame_nll(np.concatenate(pieces), probabilities=np.full((1, KEYS), 0.5)
                                                      .repeat(sum(map(len, pieces)), 0))
