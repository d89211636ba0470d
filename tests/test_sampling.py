"""Sampling: the temperature's limits, top-k, the draws' distribution, seeds, calibration,
and generate.py's sampling, --plot and --audio flags; every sampled file plays."""

from __future__ import annotations

import io
import json
import re
import shutil
import wave

import keras
import numpy as np
import pytest
from PIL import Image

import generate
import train
from models import ModelConfig, build_model
from models.fields import sample_categorical
from note_matrix.training import calibrate
from note_matrix.generation import Sampling, generate_rows
from note_matrix.representations import NoteMatrix
from note_matrix.representations.note_matrix import MIDI_GRID
from tests.test_generate import assert_playable

REPRESENTATION = NoteMatrix()
HEADS = REPRESENTATION.heads
STD = {"note": 0.05, "velocity": 0.2, "time": 0.1}


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def softmax(logits):
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def random_output(head, rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.4, 1.0, (rows, head.width)).astype(np.float32)


# -- the draws ---------------------------------------------------------------------------------------


def test_a_tiny_temperature_draws_the_argmax():
    logits = np.random.default_rng(0).normal(0, 1, (500, 128)).astype(np.float32)
    uniform = 1.0 - np.random.default_rng(1).random(500).astype(np.float32)
    drawn = numpy(sample_categorical(logits, uniform, 1e-6))
    np.testing.assert_array_equal(drawn, logits.argmax(axis=1))


def test_draws_follow_the_tempered_softmax():
    """Evenly spaced uniforms (exact quantiles): each class drawn in proportion to its probability."""
    logits = np.array([2.0, 1.0, 0.0, -1.0, 0.5], np.float32)
    n = 20_000
    uniform = ((np.arange(n) + 0.5) / n).astype(np.float32)
    for temperature in (1.0, 2.0, 0.5):
        drawn = numpy(sample_categorical(np.tile(logits, (n, 1)), uniform, temperature))
        frequencies = np.bincount(drawn, minlength=5) / n
        np.testing.assert_allclose(frequencies, softmax(logits / temperature), atol=2 / n)


def test_top_k_draws_among_the_k_most_likely_only():
    logits = np.random.default_rng(2).normal(0, 1, (1, 128)).astype(np.float32)
    n = 3000
    uniform = ((np.arange(n) + 0.5) / n).astype(np.float32)
    drawn = numpy(sample_categorical(np.tile(logits, (n, 1)), uniform, 5.0, top_k=3))
    top3 = set(np.argsort(logits[0])[-3:].tolist())
    assert set(drawn.tolist()) == top3  # all three, nothing else, even at a high temperature
    renormalised = softmax(logits[0] / 5.0)[sorted(top3)]
    np.testing.assert_allclose(np.bincount(drawn, minlength=128)[sorted(top3)] / n,
                               renormalised / renormalised.sum(), atol=2 / n)
    # Extreme uniforms never reach a class outside the top k.
    edges = numpy(sample_categorical(np.tile(logits, (2, 1)), np.array([1e-9, 1.0], np.float32), 5.0, top_k=1))
    assert edges.tolist() == [int(logits.argmax())] * 2


@pytest.mark.parametrize("name", HEADS)
def test_temperature_towards_zero_is_the_point_row(name):
    head = REPRESENTATION.head(name, 3)
    output = random_output(head, 64)
    noise = head.draw_noise(np.random.default_rng(3), (64,))
    point = numpy(head.point(output))
    tiny = numpy(head.sample(output, noise, temperature=1e-6, top_k=None, spread=STD))
    np.testing.assert_array_equal(tiny[:, 0] if name != "regression" else np.round(tiny[:, 0] * 127),
                                  point[:, 0] if name != "regression" else np.round(point[:, 0] * 127))
    np.testing.assert_allclose(tiny, point, atol=1e-5)
    zero = numpy(head.sample(output, noise, temperature=0.0, spread=STD))
    np.testing.assert_array_equal(zero, point)


def test_regression_and_categorical_noise_is_temperature_times_the_calibrated_std():
    std = np.array([STD["note"], STD["velocity"], STD["time"]], np.float32)
    head = REPRESENTATION.head("regression", 3)
    output, noise = random_output(head, 10), head.draw_noise(np.random.default_rng(4), (10,))
    sampled = numpy(head.sample(output, noise, temperature=1.5, spread=STD))
    np.testing.assert_allclose(sampled - output, 1.5 * std * noise, atol=1e-5)
    head = REPRESENTATION.head("categorical", 3)
    output, noise = random_output(head, 10), head.draw_noise(np.random.default_rng(5), (10,))
    sampled = numpy(head.sample(output, noise, temperature=0.5, spread=STD))
    np.testing.assert_allclose(sampled[:, 1:] - output[:, 128:], 0.5 * std[1:] * noise[:, 1:], atol=1e-5)
    np.testing.assert_allclose(sampled[:, 0] * 127, np.round(sampled[:, 0] * 127), atol=1e-4)  # a MIDI note


def test_mdn_picks_components_by_weight_and_scales_their_spread():
    head = REPRESENTATION.head("mdn", 2)
    n = 4000
    output = np.zeros((n, 128 + 10), np.float32)
    output[:, 128:130] = np.log([0.25, 0.75])  # mixture weights
    output[:, 130:132] = [0.2, 0.8]  # velocity means
    output[:, 132:134] = [0.1, 0.5]  # time means
    output[:, 134:138] = np.log(0.01)  # every std 0.01 (+ the floor)
    noise = head.draw_noise(np.random.default_rng(6), (n,))
    noise[:, 1] = (np.arange(n) + 0.5) / n  # exact quantiles for the component
    sampled = numpy(head.sample(output, noise, temperature=1.0))
    second = sampled[:, 1] > 0.5
    assert second.mean() == pytest.approx(0.75, abs=1e-3)
    np.testing.assert_allclose(sampled[second, 2].mean(), 0.5, atol=2e-3)
    np.testing.assert_allclose(sampled[second, 1].std(), 0.011, rtol=0.1)
    hot = numpy(head.sample(output, noise, temperature=2.0))
    np.testing.assert_allclose(hot[hot[:, 1] > 0.5, 1].std(), 0.022, rtol=0.1)


def test_noise_widths_and_uniforms_in_zero_one():
    for name, width in (("regression", 3), ("categorical", 3), ("mdn", 4)):
        head = REPRESENTATION.head(name, 5)
        noise = head.draw_noise(np.random.default_rng(0), (5, 7))
        assert noise.shape == (5, 7, width) == (5, 7, head.noise_width) and noise.dtype == np.float32
    uniforms = REPRESENTATION.head("mdn", 5).draw_noise(np.random.default_rng(0), (10_000,))[:, :2]
    assert uniforms.min() > 0 and uniforms.max() <= 1


# -- generation with sampling ------------------------------------------------------------------------


def tiny(name: str, targets: str = "last"):
    """A tiny untrained model of the head ``name`` (3 mixtures) and that head."""
    keras.utils.set_random_seed(0)
    head = REPRESENTATION.head(name, 3)
    return build_model(ModelConfig(units=8, head=name, mixtures=3, targets=targets), REPRESENTATION.inputs(),
                       head), head


def primers(count: int = 2, rows: int = 6) -> np.ndarray:
    return REPRESENTATION.valid_row(np.random.default_rng(1).random((count, rows, 3)))


@pytest.mark.parametrize("head", HEADS)
def test_a_seed_repeats_a_piece_and_another_seed_changes_it(head):
    model, fields = tiny(head)
    sampling = Sampling(1.0, None, 7, STD)
    first = generate_rows(model, primers(), 40, REPRESENTATION, fields, sampling=sampling, progress=False)
    again = generate_rows(model, primers(), 40, REPRESENTATION, fields, sampling=sampling, progress=False)
    other = generate_rows(model, primers(), 40, REPRESENTATION, fields, sampling=Sampling(1.0, None, 8, STD),
                          progress=False)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    argmax = generate_rows(model, primers(), 40, REPRESENTATION, fields, sampling=Sampling(0.0), progress=False)
    np.testing.assert_array_equal(argmax, generate_rows(model, primers(), 40, REPRESENTATION, fields, progress=False))


@pytest.mark.parametrize("targets", ["last", "all"])
def test_top_1_without_spread_is_argmax_at_any_temperature(targets):
    model, head = tiny("categorical", targets)
    no_spread = {"note": 0.0, "velocity": 0.0, "time": 0.0}
    hot = generate_rows(model, primers(), 50, REPRESENTATION, head, sampling=Sampling(50.0, 1, 4, no_spread),
                        progress=False)
    np.testing.assert_array_equal(hot, generate_rows(model, primers(), 50, REPRESENTATION, head, progress=False))


@pytest.mark.parametrize("head", HEADS)
def test_wild_samples_still_make_valid_rows_and_a_playable_file(head, tmp_path):
    model, fields = tiny(head, targets="all")
    rows = generate_rows(model, primers(1, 8)[0], 300, REPRESENTATION, fields, sampling=Sampling(20.0, None, 1, STD),
                         progress=False)
    assert np.all(np.isin(rows[:, :2], MIDI_GRID)) and np.all((rows[:, 2] >= 0) & (rows[:, 2] <= 1))
    assert REPRESENTATION.decode(rows, {}, tmp_path / "wild.mid") > 0
    assert_playable(tmp_path / "wild.mid")


def test_a_sampling_head_without_calibration_is_refused():
    from note_matrix.errors import RunError

    model, head = tiny("categorical")
    with pytest.raises(RunError, match="calibration.json"):
        generate_rows(model, primers(), 3, REPRESENTATION, head, sampling=Sampling(1.0), progress=False)
    # The mdn head's spread is its own.
    model, head = tiny("mdn")
    assert generate_rows(model, primers(), 3, REPRESENTATION, head, sampling=Sampling(1.0), progress=False).shape == (
        2, 3, 3)


# -- calibration -----------------------------------------------------------------------------------


def test_training_writes_a_calibration_and_calibrate_recomputes_it(trained_run, song_folder, tmp_path):
    written = json.loads((trained_run / "calibration.json").read_text())
    assert written["split"] == "validation" and "head" not in written  # the run's head is in config.json
    split = json.loads((trained_run / "split.json").read_text())
    # One row per sliding validation window: the row after it.
    assert written["rows"] == sum(len(REPRESENTATION.encode(song_folder / key).steps) - 50
                                  for key in split["validation"])
    std = written["residual_std"]
    assert set(std) == {"note", "velocity", "time"} and all(0 < v < 1 for v in std.values())
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "calibration.json").unlink()
    computed = calibrate(run)
    assert json.loads((run / "calibration.json").read_text()) == computed
    for name, value in std.items():
        assert computed["residual_std"][name] == pytest.approx(value, rel=1e-5)
    assert computed["rows"] == written["rows"]


def test_resuming_a_finished_run_without_calibration_writes_it(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    written = json.loads((run / "calibration.json").read_text())
    (run / "calibration.json").unlink()
    assert train.main(["--resume", str(run), "--quiet"]) == 0  # finished: nothing to train
    calibration = json.loads((run / "calibration.json").read_text())
    assert calibration["rows"] == written["rows"] > 0 and calibration["split"] == written["split"]
    for name, value in written["residual_std"].items():  # the same best model, the same windows
        assert calibration["residual_std"][name] == pytest.approx(value, rel=1e-5)


# -- generate.py -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def categorical_run(song_folder, tmp_path_factory):
    base = tmp_path_factory.mktemp("categorical")
    assert train.main(["--dataset", str(song_folder), "--data-dir", str(base / "data"), "--logdir", str(base / "logs"),
                       "--run-name", "categorical", "--units", "8", "--epochs", "2", "--batch-size", "32",
                       "--head", "categorical", "--learning-rate", "0.01", "--quiet"]) == 0
    return base / "logs" / "categorical"


def _generate(run, seed_song, out, *flags):
    return generate.main(["--seed", str(seed_song), "--model", str(run), "--length", "60", "--out", str(out),
                          "--quiet", *flags])


def test_a_categorical_run_samples_by_default_and_its_seed_repeats_the_file(categorical_run, song_folder, tmp_path,
                                                                           capsys):
    history = json.loads((categorical_run / "history.json").read_text())
    assert history["monitor"] == "val_last_loss"
    song = song_folder / "song1.mid"
    assert _generate(categorical_run, song, tmp_path / "a.mid") == 0
    out = capsys.readouterr().out
    seed = int(re.search(r"--random-seed (\d+) repeats this output", out).group(1))
    assert "temperature 1," in out
    assert _generate(categorical_run, song, tmp_path / "b.mid", "--random-seed", str(seed)) == 0
    assert _generate(categorical_run, song, tmp_path / "c.mid", "--random-seed", str(seed + 1)) == 0
    assert (tmp_path / "a.mid").read_bytes() == (tmp_path / "b.mid").read_bytes()
    assert (tmp_path / "a.mid").read_bytes() != (tmp_path / "c.mid").read_bytes()
    for name in "abc":
        assert_playable(tmp_path / f"{name}.mid")
    # The done-criterion of the heads: sampled pitches do not collapse to one repeated note.
    pitches = REPRESENTATION.encode(tmp_path / "a.mid").steps[:, 0]
    assert len(np.unique(pitches)) >= 5


def test_argmax_is_temperature_zero_and_top_k_one(categorical_run, song_folder, tmp_path, capsys):
    song = song_folder / "song2.mid"
    assert _generate(categorical_run, song, tmp_path / "argmax.mid", "--argmax") == 0
    assert "argmax" in capsys.readouterr().out
    assert _generate(categorical_run, song, tmp_path / "zero.mid", "--temperature", "0") == 0
    assert _generate(categorical_run, song, tmp_path / "top1.mid", "--top-k", "1", "--temperature", "1e-3",
                     "--random-seed", "3") == 0
    argmax = (tmp_path / "argmax.mid").read_bytes()
    assert (tmp_path / "zero.mid").read_bytes() == argmax
    # The first row sees the same primer either way: top-1 draws the argmax pitch. (Later rows may part:
    # velocity and time are still sampled, and fed back.)
    top1 = REPRESENTATION.encode(tmp_path / "top1.mid").steps
    assert top1[0, 0] == REPRESENTATION.encode(tmp_path / "argmax.mid").steps[0, 0]


def test_a_regression_run_is_deterministic_unless_given_a_temperature(trained_run, song_folder, tmp_path, capsys):
    song = song_folder / "song3.mid"
    assert _generate(trained_run, song, tmp_path / "d1.mid") == 0
    assert _generate(trained_run, song, tmp_path / "d2.mid", "--random-seed", "5") == 0  # no sampling: no effect
    assert "deterministic" in capsys.readouterr().out
    assert (tmp_path / "d1.mid").read_bytes() == (tmp_path / "d2.mid").read_bytes()
    assert _generate(trained_run, song, tmp_path / "t1.mid", "--temperature", "1", "--random-seed", "5") == 0
    assert _generate(trained_run, song, tmp_path / "t2.mid", "--temperature", "1", "--random-seed", "5") == 0
    assert (tmp_path / "t1.mid").read_bytes() == (tmp_path / "t2.mid").read_bytes()
    assert (tmp_path / "t1.mid").read_bytes() != (tmp_path / "d1.mid").read_bytes()
    assert_playable(tmp_path / "t1.mid")
    capsys.readouterr()
    assert _generate(trained_run, song, tmp_path / "k.mid", "--top-k", "5") == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--top-k" in error and "tiny's head has no categorical field" in error


def test_generate_computes_a_missing_calibration(trained_run, song_folder, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "calibration.json").unlink()
    assert _generate(run, song_folder / "song0.mid", tmp_path / "x.mid", "--temperature", "0.5") == 0
    assert "no calibration.json; computing it" in capsys.readouterr().out
    assert (run / "calibration.json").is_file()


def test_plot_and_audio_go_beside_each_midi_file(categorical_run, song_folder, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NOTE_MATRIX_SOUNDFONT", raising=False)
    assert generate.main(["--seed", str(song_folder / "song4.mid"), "--model", str(categorical_run), "--length", "40",
                          "--num-outputs", "2", "--out", str(tmp_path / "piece.mid"), "--plot", "--audio",
                          "--quiet"]) == 0
    out = capsys.readouterr().out
    for n in (1, 2):
        png, wav = tmp_path / f"piece-{n}.png", tmp_path / f"piece-{n}.wav"
        assert Image.open(io.BytesIO(png.read_bytes())).format == "PNG"
        with wave.open(str(wav)) as clip:
            assert clip.getnchannels() == 1 and clip.getsampwidth() == 2 and clip.getnframes() > 0
        assert f"wrote {png}" in out and f"wrote {wav} (" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["piece-1.mid", "piece-1.png", "piece-1.wav", "piece-2.mid",
                                                          "piece-2.png", "piece-2.wav"]


def test_a_missing_soundfont_is_a_one_line_error(trained_run, song_folder, tmp_path, capsys):
    assert _generate(trained_run, song_folder / "song0.mid", tmp_path / "x.mid", "--audio", "--soundfont",
                     str(tmp_path / "none.sf2")) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "none.sf2: no such file" in error
    assert not (tmp_path / "x.mid").exists()


@pytest.mark.parametrize("argv", [["--temperature", "-1"], ["--temperature", "nan"], ["--temperature", "inf"],
                                  ["--top-k", "0"], ["--top-k", "129"], ["--argmax", "--temperature", "1"],
                                  ["--random-seed", "-1"], ["--soundfont", "x.sf2"]])
def test_bad_sampling_flags_get_usage(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        generate.parse_args(["--seed", "x.mid", *argv])
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err
