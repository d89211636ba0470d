"""The event-field note matrix (``representations.note_events``): its encoding and its
tolerances, generation that keeps every step valid, the one-hot input, its n-gram
baselines, and the whole path (train, generate, evaluate) under both backends."""

from __future__ import annotations

import json

import keras
import mido
import numpy as np
import pytest

from models import InputSpec, ModelConfig
from models.builder import OneHotColumns, build_model
from note_matrix import representations
from note_matrix.config import RunConfig
from note_matrix.evaluation.event_baselines import EventBaselines
from note_matrix.evaluation.ngram import NGram
from note_matrix.generation import carried_state_generator, generate_rows
from note_matrix.generation.sampling import Sampling
from note_matrix.representations.note_events import (
    MAX_GAP_SECONDS,
    MIN_GAP_SECONDS,
    TIME_CLASSES,
    TIME_VALUES,
    EventFields,
    class_velocity,
    drawn_probabilities,
    sounding_before,
    time_class,
    velocity_class,
)
from tests.midi_factory import write_song
from tests.test_backends import _run

EVENTS = EventFields()
HEAD = EVENTS.head("categorical", 5)


def test_velocity_levels_decode_within_4():
    velocity = np.arange(128)
    level = velocity_class(velocity)
    assert level[0] == 0 and level[1:].min() == 1 and level.max() == 16
    assert np.abs(class_velocity(level) - velocity).max() <= 4


def test_time_bins_decode_within_5_ms_or_4_6_percent():
    gaps = np.concatenate([[0.0], np.geomspace(1e-4, 4.99, 20000)])
    decoded = TIME_VALUES[time_class(gaps)]
    short = gaps < MIN_GAP_SECONDS
    assert np.all(decoded[short] == 0.0) and np.all(np.abs(decoded - gaps)[short] < MIN_GAP_SECONDS)
    assert np.max(np.abs(decoded[~short] / gaps[~short] - 1)) <= 0.046
    assert time_class(np.array([5.0, 60.0])).tolist() == [TIME_CLASSES - 1] * 2
    assert TIME_VALUES[-1] == MAX_GAP_SECONDS and np.all(time_class(TIME_VALUES) == np.arange(TIME_CLASSES))


def test_encoding_keeps_meaningful_events_and_tracks_the_sounding_notes(tmp_path):
    # A chord (60, 64), 64 struck again while it sounds, and a stray note-off of 70.
    steps = EVENTS.from_events(np.array([0.0, 0.0, 0.5, 0.5, 0.75, 1.0, 1.0]), np.array([60, 64, 64, 70, 64, 60, 64]),
                               np.array([100, 90, 70, 0, 0, 0, 0]))
    assert steps.dtype == np.int32 and steps.shape == (6, 131)
    assert steps[:, :2].tolist() == [[13, 60], [12, 64], [0, 64], [9, 64], [0, 64], [0, 60]]
    assert steps[:, 2].tolist() == time_class(np.array([0, 0, 0.5, 0, 0.25, 0.25])).tolist()
    sounding = [sorted(np.flatnonzero(row[3:]).tolist()) for row in steps]
    assert sounding == [[60], [60, 64], [60], [60, 64], [60], []]
    time, pitch, velocity = EVENTS.to_events(steps)
    assert np.array_equal(EVENTS.from_events(time, pitch, velocity), steps)  # decoding round-trips


def test_a_file_round_trips_through_encode_and_decode(tmp_path):
    path = tmp_path / "song.mid"
    write_song(path, [(0.0, 0.5, 60, 90), (0.0, 0.5, 64, 90), (0.5, 1.25, 67, 60), (1.5, 2.0, 72, 110)])
    encoded = EVENTS.encode(path)
    assert encoded.steps.shape == (8, 131)
    out = tmp_path / "out.mid"
    assert EVENTS.decode(encoded.steps, encoded.meta, out) == 4
    again = EVENTS.encode(out)
    assert np.array_equal(again.steps, encoded.steps)
    with pytest.raises(ValueError, match="pitch must lie in 0..127"):
        EVENTS.to_events(np.array([[1, 130, 0]]))


def _predictions(rng, n):
    return rng.normal(0, 3, (n, HEAD.width)).astype(np.float32)


@pytest.mark.parametrize("temperature", [0.0, 1.0, 2.0])
def test_next_step_never_releases_a_silent_note_or_strikes_a_sounding_one(temperature):
    rng = np.random.default_rng(1)
    n = 400
    previous = np.zeros((n, 131), np.int32)
    previous[:, 3:] = rng.random((n, 128)) < rng.random((n, 1)) * 0.1  # from nothing to a few sounding
    previous[:5, 3:] = 0  # nothing sounding: a note-off is impossible
    previous[5:8, 3:] = 1  # everything sounding: a note-on is impossible
    noise = HEAD.draw_noise(rng, (n,))
    step = keras.ops.convert_to_numpy(EVENTS.next_step(HEAD, _predictions(rng, n), noise, previous,
                                                       temperature=temperature, top_k=None, spread=None))
    level, pitch = step[:, 0], step[:, 1]
    was = previous[np.arange(n), 3 + pitch] > 0
    assert np.all(was[level == 0]) and not np.any(was[level > 0])
    assert np.all(level[:5] > 0) and np.all(level[5:8] == 0)
    now = previous[:, 3:].copy()
    now[np.arange(n), pitch] = level > 0
    assert np.array_equal(step[:, 3:], now)  # the sounding notes follow the event
    assert (level == 0).any() and (level > 0).any()


def test_scores_are_of_the_distribution_the_generator_draws_from():
    rng = np.random.default_rng(4)
    sounding = np.zeros(128, np.int32)
    sounding[[60, 64]] = 1  # 60 and 64 sound; the target events: 64 released, 67 struck, 60 released
    targets = np.zeros((3, 131), np.int32)
    targets[:, :3] = [[0, 64, 5], [9, 67, 0], [0, 60, 1]]
    targets[0, 3:] = sounding
    targets[0, 3 + 64] = 0
    targets[1, 3:] = targets[0, 3:]
    targets[1, 3 + 67] = 1
    targets[2, 3:] = targets[1, 3:]
    targets[2, 3 + 60] = 0
    outputs = _predictions(rng, 3)
    softmax = [np.exp(part) / np.exp(part).sum(axis=1, keepdims=True) for part in np.split(
        outputs.astype(np.float64), [17, 145], axis=1)]
    before = sounding_before(targets)
    assert [sorted(np.flatnonzero(row)) for row in before] == [[60, 64], [60], [60, 67]]
    velocity, given_on, given_off, time = drawn_probabilities(*softmax, before)
    for probabilities in (velocity, given_on, given_off, time):
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert set(np.flatnonzero(given_off[0] > 1e-12)) == {60, 64}  # what sounded before the first event
    assert set(np.flatnonzero(given_off[1] > 1e-12)) == {60}
    assert given_on[1, 60] < 1e-12 and given_on[1, 67] > 0
    scores = EVENTS.distribution_scores(HEAD, outputs, targets, None)
    rows = np.arange(3)
    struck = np.where(targets[:, 0] > 0, given_on[rows, targets[:, 1]], given_off[rows, targets[:, 1]])
    joint = -np.log(velocity[rows, targets[:, 0]] * struck * time[rows, targets[:, 2]])
    assert scores["nll"] == pytest.approx(joint.mean())
    marginal = velocity[:, :1] * given_off + (1 - velocity[:, :1]) * given_on
    assert scores["nll_pitch"] == pytest.approx(-np.log(marginal[rows, targets[:, 1]]).mean())


def test_one_hot_columns_layer_expands_and_serialises():
    layer = OneHotColumns((3, 1, 1, 4))
    x = np.array([[2, 1, 0, 3], [0, 0, 1, 1]], np.int32)
    expected = [[0, 0, 1, 1, 0, 0, 0, 0, 1], [1, 0, 0, 0, 1, 0, 1, 0, 0]]
    assert keras.ops.convert_to_numpy(layer(x)).tolist() == expected
    again = OneHotColumns.from_config(json.loads(json.dumps(layer.get_config())))
    assert again.classes == (3, 1, 1, 4)
    with pytest.raises(ValueError, match="one classes entry per column"):
        InputSpec("one_hot", 3, classes=(2, 2))


def _songs(folder, rng, count=6):
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        notes, time = [], 0.0
        for _ in range(60):
            pitch = int(rng.integers(55, 75))
            length = float(rng.choice([0.25, 0.5]))
            notes.append((time, time + length, pitch, int(rng.integers(40, 120))))
            if rng.random() < 0.5:
                notes.append((time, time + length, pitch + 4, 70))
            time += length
        write_song(folder / f"song{index}.mid", notes)
    return folder


def test_both_generation_methods_write_the_same_valid_events(tmp_path):
    inputs = EVENTS.inputs()
    model = build_model(ModelConfig(units=8, dropout_rate=0.0, head="categorical", targets="all"), inputs, HEAD)
    primer = EVENTS.encode(_songs(tmp_path, np.random.default_rng(3), 1) / "song0.mid").steps[:30]
    sampling = Sampling(temperature=1.0, random_seed=9)
    carried = generate_rows(model, primer, 40, EVENTS, HEAD, sampling=sampling, progress=False)
    window = generate_rows(model, primer, 40, EVENTS, HEAD, sampling=sampling, method="window", progress=False,
                           window_length=200)
    assert carried.dtype == np.int32 and np.array_equal(carried, window)
    sounding = primer[-1, 3:].astype(bool)
    for level, pitch, *_ in carried.tolist():
        assert sounding[pitch] == (level == 0)
        sounding[pitch] = level > 0
    generator = carried_state_generator(model, EVENTS, HEAD)  # the point steps: valid as well
    point = generator.generate(primer[None], 20)[0]
    assert np.array_equal(point[:, 3:], EVENTS.from_events(*EVENTS.to_events(np.concatenate([primer, point])))[30:, 3:])


def test_ngram_interpolates_as_its_formula_says():
    train = [np.array([0, 1, 0, 1, 0, 2])]
    base = np.full(3, 1 / 3)
    model = NGram(train, 2, base, strength=1.0)
    p, escape = model.distributions(np.array([0, 1]), start=1)
    # unigram: counts 0:3, 1:2, 2:1, 3 types -> (c + 3 * 1/3) / (6 + 3)
    unigram = (np.array([3, 2, 1]) + 1) / 9
    # after 0: followers 1 (twice), 2 (once): 2 types -> (c + 2 * unigram) / (3 + 2)
    expected = (np.array([0, 2, 1]) + 2 * unigram) / 5
    np.testing.assert_allclose(p[0], expected)
    np.testing.assert_allclose(escape[0], (3 / 9) * (2 / 5))
    assert p.sum() == pytest.approx(1.0)
    tuned = NGram.tune(train, [np.array([0, 1, 0, 1, 0, 1])], 3, base)
    scores = {}
    for strength in (0.25, 4.0):
        tuned_copy = NGram(train, 3, base, strength)
        scores[strength] = tuned_copy.nll([np.array([0, 1, 0, 1, 0, 1])])
    assert tuned.nll([np.array([0, 1, 0, 1, 0, 1])]) <= min(scores.values()) + 1e-12


def test_event_baselines_give_distributions_and_the_longer_ngram_wins_on_repeats(tmp_path):
    rng = np.random.default_rng(5)
    phrase = EVENTS.encode(_songs(tmp_path, rng, 1) / "song0.mid").steps[:40]
    song = np.concatenate([phrase] * 6)  # a song that repeats itself
    baselines = EventBaselines.fit([song, song[:120]], [song[:200]])
    scores = baselines.score_all([song, song[40:]], 20)  # two test files: each file's own event ids
    assert {"repeat previous event", "unigram", "n-gram per field, order 8", "n-gram of events, order 8"} <= set(scores)
    assert scores["n-gram of events, order 8"]["pitch_accuracy"] > 0.95
    assert scores["n-gram of events, order 8"]["nll"] < scores["n-gram per field, order 2"]["nll"] < \
        scores["unigram"]["nll"]
    for name, score in scores.items():
        assert all(0 <= score[key] <= 1 for key in ("pitch_accuracy", "on_off_accuracy", "time_accuracy"))
        if name != "repeat previous event":
            assert all(np.isfinite(score[key]) and score[key] >= -1e-9 for key in ("nll", "nll_pitch", "nll_time"))
    # The event n-gram's distribution over the valid events: marginals of one total, nothing invalid.
    files = [song]
    seen = np.unique(np.concatenate(baselines.training), axis=0)
    members = [np.eye(n)[seen[:, c]] for c, n in enumerate((17, 128, 80))]
    base = np.prod([baselines.unigrams[c][seen[:, c]] for c in range(3)], axis=0)
    p = rng.random((len(song) - 20, len(seen)))
    escape = rng.random(len(song) - 20) * 0.1
    ids = np.full(len(song) - 20, -1)
    velocity, pitch, time, joint = baselines._valid_only(p, escape, files[0][20:], seen, base, members, ids)
    for marginal in (velocity, pitch, time):
        np.testing.assert_allclose(marginal.sum(axis=1), 1.0)
    before = sounding_before(files[0][20:])
    off = velocity[:, 0] > 0
    assert np.all(pitch[~before.any(axis=1)][:, :].sum(axis=1) > 0) and np.all(velocity[~before.any(axis=1), 0] == 0)
    assert np.all((joint > 0) & (joint < 1)) and off.any()


def test_train_py_takes_the_recipe_and_flags_override_it():
    import train

    config = train.config_from_args(train.parse_args(["--representation", "note_events", "--units", "64"]),
                                    ["--representation", "note_events", "--units", "64"])
    assert config.model.units == 64 and config.model.optimizer == "adam" and config.model.clipnorm == 1.0
    assert config.window_length == EventFields.recipe["window_length"] and config.model.head == "categorical"
    card = train.config_from_args(train.parse_args([]), [])
    assert card.model.optimizer == "rmsprop" and card.model.clipnorm is None and card.model.units == 512


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_note_events_train_generate_and_evaluate(backend, tmp_path):
    songs = _songs(tmp_path / "songs", np.random.default_rng(8), 8)
    logs = tmp_path / "logs"
    trained = _run(backend, "train.py", "--representation", "note_events", "--dataset", str(songs),
                   "--data-dir", str(tmp_path / "data"), "--logdir", str(logs), "--run-name", "events", "--units", "8",
                   "--epochs", "2", "--window", "20", "--batch-size", "8", "--sample-every", "1", "--quiet")
    assert trained.returncode == 0, trained.stderr[-3000:]
    run = logs / "events"
    config = RunConfig.read(run)
    assert config.model.inputs["kind"] == "one_hot" and config.head().width == 17 + 128 + 80
    assert config.train.model.optimizer == "adam"
    history = json.loads((run / "history.json").read_text())
    assert history["monitor"] == "val_last_loss" and "pitch_accuracy" in history["epochs"]
    assert (run / "samples" / "epoch-0002.mid").is_file()
    out = tmp_path / "out.mid"
    generated = _run(backend, "generate.py", "--seed", str(songs / "song0.mid"), "--model", str(run),
                     "--length", "40", "--random-seed", "4", "--out", str(out), "--quiet")
    assert generated.returncode == 0, generated.stderr[-3000:]
    messages = [m for m in mido.merge_tracks(mido.MidiFile(out).tracks) if m.type in ("note_on", "note_off")]
    assert messages and all(0 <= m.note <= 127 for m in messages)
    evaluated = _run(backend, "evaluate.py", "--model", str(run), "--quiet")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    scores = json.loads((run / "evaluation.json").read_text())["test"]["scores"]
    model = scores["model (categorical head)"]
    assert 0 <= model["pitch_accuracy"] <= 1 and 0 < model["nll"] < 20
    assert all(model[key] >= 0 for key in ("nll_pitch", "nll_on_off", "nll_time"))
    assert "n-gram of events, order 8" in scores and "NLL pitch" in evaluated.stdout
    on_validation = _run(backend, "evaluate.py", "--model", str(run), "--split", "validation", "--quiet")
    assert on_validation.returncode == 0, on_validation.stderr[-3000:]
    saved = json.loads((run / "evaluation.json").read_text())
    assert set(saved) >= {"test", "validation"} and saved["validation"]["split"] == "validation"
    assert saved["validation"]["files"] == json.loads((run / "split.json").read_text())["validation"]
    assert on_validation.stdout.startswith("Validation split of")
    assert "  " in generated.stdout.splitlines()[-1] and "notes/s" in generated.stdout  # the statistics line


def test_registry_lists_note_events():
    assert "note_events" in representations.names()
    assert representations.create("note_events").columns[:3] == HEAD.names
