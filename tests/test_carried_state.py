"""Carried-state generation: the same rows as the window method where both see the same
context (for every head, point or sampled rows), batches, the compiled loop traced once,
the model as the only copy of the weights, the sampling hook, and generate.py's
--num-outputs and --method."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

import generate
from models import ModelConfig, build_model
from note_matrix.config import RunConfig
from note_matrix.errors import RunError
from note_matrix.generation import (
    Sampling,
    carried_state_generator,
    generate_rows,
    generate_window,
    load_model,
    output_paths,
    spread_primers,
)
from note_matrix.generation.carried_state import CarriedStateGenerator
from note_matrix.generation.compile import compile_function, is_compiled
from note_matrix.representations import NoteMatrix
from note_matrix.representations.note_matrix import MIDI_GRID
from tests.midi_factory import write_song
from tests.test_generate import assert_playable

REPRESENTATION = NoteMatrix()
HEAD = REPRESENTATION.head("regression", 1)  # the card's: the row itself, width 3 (tiny_model's output)
UNITS = 8


def tiny_model(cell: str, layers: int = 1, *, sequences: bool = False, reset_after: bool = True,
               seed: int = 0) -> keras.Model:
    """A tiny recurrent model like the builder's, built with keras directly.

    ``sequences``: every recurrent layer returns sequences, output ``(batch, steps, 3)``
    (the "targets: all" training mode). The head's weights are set so that predictions
    spread over [0, 1]: the rows then differ in pitch, velocity and time, and a bug
    cannot hide behind rows all clipped to the same value.
    """
    keras.utils.set_random_seed(seed)
    cells = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU, "rnn": keras.layers.SimpleRNN}
    options = {"reset_after": reset_after} if cell == "gru" else {}
    inputs = keras.Input(shape=(None, 3), name="window")
    x = inputs
    for index in range(layers):
        suffix = "" if index == 0 else f"_{index + 1}"
        x = cells[cell](UNITS, return_sequences=sequences or index < layers - 1, name=f"{cell}{suffix}",
                        **options)(x)
    x = keras.layers.Dropout(0.75, name="dropout")(x)
    x = keras.layers.Dense(3, name="dense")(x)
    outputs = keras.layers.Activation("linear", name="activation")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(seed)
    dense = model.get_layer("dense")
    dense.kernel.assign(rng.normal(0.0, 0.8, (UNITS, 3)).astype(np.float32))
    dense.bias.assign(np.array([0.5, 0.4, 0.5], np.float32))
    return model


def random_primers(count: int, rows: int, seed: int = 1) -> np.ndarray:
    """``(count, rows, 3)`` valid rows."""
    return REPRESENTATION.valid_row(np.random.default_rng(seed).random((count, rows, 3)))


MODELS = {
    "lstm": {"cell": "lstm"},
    "gru": {"cell": "gru"},
    "gru-reset-before": {"cell": "gru", "reset_after": False},
    "rnn": {"cell": "rnn"},
    "lstm-stacked": {"cell": "lstm", "layers": 2},
    "gru-stacked": {"cell": "gru", "layers": 3},
    "lstm-sequences": {"cell": "lstm", "sequences": True},
    "gru-stacked-sequences": {"cell": "gru", "layers": 2, "sequences": True},
    "rnn-sequences": {"cell": "rnn", "sequences": True},
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_carried_state_equals_a_growing_window_while_the_piece_fits(name):
    """Primer of k rows, window W > k: the first W - k + 1 rows see the same context both ways."""
    model = tiny_model(**MODELS[name])
    window, k = 9, 3
    primers = random_primers(2, k)
    carried = generate_rows(model, primers, window - k + 1, REPRESENTATION, HEAD, progress=False)
    reference = generate_window(model, primers, window - k + 1, REPRESENTATION, HEAD, window_length=window,
                                progress=False)
    assert carried.shape == reference.shape == (2, window - k + 1, 3)
    np.testing.assert_allclose(carried, reference, atol=1e-5)
    assert len(np.unique(carried[..., 0])) > 2 and len(np.unique(carried[..., 2])) > 2  # rows differ


@pytest.mark.parametrize("sampled", [False, True])
@pytest.mark.parametrize("targets", ["last", "all"])
@pytest.mark.parametrize("head", ["regression", "categorical", "mdn"])
def test_every_head_carried_equals_the_window_for_point_and_sampled_rows(head, targets, sampled):
    """The same row function in both methods, and the same random numbers when sampling."""
    keras.utils.set_random_seed(3)
    config = ModelConfig(cell="gru", units=UNITS, layers=2, head=head, mixtures=3, targets=targets)
    fields = REPRESENTATION.head(config.head, config.mixtures)
    model = build_model(config, REPRESENTATION.inputs(), fields)
    spread = {"note": 0.05, "velocity": 0.2, "time": 0.1}
    sampling = Sampling(1.0, 20 if head != "regression" else None, 11, spread) if sampled else None
    window, k = 9, 3
    primers = random_primers(2, k)
    carried = generate_rows(model, primers, window - k + 1, REPRESENTATION, fields, sampling=sampling,
                            progress=False)
    reference = generate_rows(model, primers, window - k + 1, REPRESENTATION, fields, method="window",
                              window_length=window, sampling=sampling, progress=False)
    assert carried.shape == reference.shape == (2, window - k + 1, 3)
    np.testing.assert_allclose(carried, reference, atol=1e-5)
    assert np.all(np.isin(carried[..., :2], MIDI_GRID))
    # The head is the run's, never guessed from the output width: a head of another width is refused.
    other = REPRESENTATION.head("mdn" if head != "mdn" else "regression", 2)
    assert other.width != fields.width
    for method in ("carried", "window"):
        with pytest.raises(RunError, match="width"):
            generate_rows(model, primers, 2, REPRESENTATION, other, method=method, progress=False)


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn", "lstm-stacked", "lstm-sequences"])
def test_first_row_after_a_full_primer_is_the_card_prediction(name):
    model = tiny_model(**MODELS[name])
    primer = random_primers(1, 50, seed=4)
    first = generate_rows(model, primer[0], 1, REPRESENTATION, HEAD, progress=False)[0]
    prediction = keras.ops.convert_to_numpy(model.predict_on_batch(primer))
    prediction = prediction[:, -1] if prediction.ndim == 3 else prediction
    np.testing.assert_allclose(first, REPRESENTATION.valid_row(prediction[0]), atol=1e-5)


def test_the_builders_models_and_a_trained_run_agree_with_the_window_method(trained_run, song_folder):
    primer = REPRESENTATION.encode(song_folder / "song2.mid").steps[:50]
    models = [(build_model(ModelConfig(units=UNITS, layers=2), REPRESENTATION.inputs(), HEAD), HEAD),
              (load_model(trained_run), RunConfig.read(trained_run).head())]
    if "targets" in {field.name for field in dataclasses.fields(ModelConfig)}:  # the sequence-output mode
        models.append((build_model(ModelConfig(units=UNITS, layers=2, targets="all"), REPRESENTATION.inputs(),
                                   HEAD), HEAD))
    for model, head in models:
        carried = generate_rows(model, primer, 4, REPRESENTATION, head, progress=False)
        window = generate_rows(model, primer, 4, REPRESENTATION, head, method="window", progress=False)
        np.testing.assert_allclose(carried[0], window[0], atol=1e-5)  # then the window drops row 1


def test_a_batch_gives_each_piece_what_it_gives_alone():
    model = tiny_model("lstm", layers=2)
    primers = random_primers(3, 12, seed=5)
    generator = carried_state_generator(model, REPRESENTATION, HEAD)
    together = generator.generate(primers, 40)
    for index in range(3):
        alone = generator.generate(primers[index : index + 1], 40)
        np.testing.assert_allclose(together[index], alone[0], atol=1e-5)
    assert not np.allclose(together[0], together[1])


def test_compiled_once_and_chunks_carry_the_state():
    model = tiny_model("lstm")
    primers = random_primers(2, 6)
    whole = CarriedStateGenerator(model, lambda p, n, _: REPRESENTATION.valid_steps(p), chunk_steps=1024)
    chunked = CarriedStateGenerator(model, lambda p, n, _: REPRESENTATION.valid_steps(p), chunk_steps=8)
    expected = whole.generate(primers, 30)
    rows = chunked.generate(primers, 30)  # 4 chunks of 8 rows, the last padded
    np.testing.assert_allclose(rows, expected, atol=1e-6)
    second = chunked.generate(primers * 0.5, 30)  # same shapes, other values
    assert not np.allclose(second, rows)
    if is_compiled():
        assert chunked.traces == {"prime": 1, "run": 1}
        assert whole.traces == {"prime": 1, "run": 1}


def test_weights_are_read_from_the_model_at_every_call():
    model = tiny_model("gru")
    primers = random_primers(1, 5)
    generator = carried_state_generator(model, REPRESENTATION, HEAD)
    before = generator.generate(primers, 6)
    model.get_layer("dense").bias.assign(np.array([0.3, 0.6, 0.2], np.float32))
    model.get_layer("gru").cell.kernel.assign(model.get_layer("gru").cell.kernel * 2.0)
    after = generator.generate(primers, 6)
    assert not np.allclose(before, after)
    reference = generate_window(model, primers, 6, REPRESENTATION, HEAD, window_length=11, progress=False)
    np.testing.assert_allclose(after, reference, atol=1e-5)


def test_noise_reaches_the_loop_one_slice_per_row():
    """The sampling hook: row t of the output is whatever the row function makes of noise[:, t]."""
    model = tiny_model("lstm")
    noise = REPRESENTATION.valid_row(np.random.default_rng(2).random((2, 23, 3)))
    echo = CarriedStateGenerator(model, lambda prediction, noise_t, previous: noise_t, chunk_steps=5)
    np.testing.assert_array_equal(echo.generate(random_primers(2, 4), 23, noise=noise), noise)
    shifted = CarriedStateGenerator(model, lambda p, n, _: REPRESENTATION.valid_steps(p + n))
    plain = carried_state_generator(model, REPRESENTATION, HEAD)
    primers = random_primers(2, 4)
    np.testing.assert_allclose(shifted.generate(primers, 23, noise=np.zeros((2, 23, 3), np.float32)),
                               plain.generate(primers, 23), atol=1e-6)
    assert not np.allclose(shifted.generate(primers, 23, noise=noise * 0.2), plain.generate(primers, 23))
    with pytest.raises(ValueError, match="noise must have shape"):
        plain.generate(primers, 23, noise=noise[:, :5])
    # The noise has the width the row function needs, not necessarily the row's.
    wide = CarriedStateGenerator(model, lambda p, n, _: REPRESENTATION.valid_steps(p + n[:, 1:]), noise_width=4)
    four = np.concatenate([np.ones((2, 23, 1), np.float32), noise * 0.2], axis=-1)
    np.testing.assert_allclose(wide.generate(primers, 23, noise=four), shifted.generate(primers, 23, noise=noise * 0.2),
                               atol=1e-6)
    with pytest.raises(ValueError, match=r"noise must have shape \(2, 23, 4\)"):
        wide.generate(primers, 23, noise=noise)


def test_the_row_function_sees_the_row_fed_last():
    """``previous`` is the primer's last row at first, then each generated row, across chunks."""
    model = tiny_model("lstm")
    primers = random_primers(2, 4)
    counting = CarriedStateGenerator(model, lambda p, n, previous: previous + 0.01, chunk_steps=5)
    rows = counting.generate(primers, 12)  # 3 chunks of 4 rows
    expected = primers[:, -1:] + 0.01 * np.arange(1, 13, dtype=np.float32)[None, :, None]
    np.testing.assert_allclose(rows, expected, atol=1e-5)


def test_in_graph_validity_equals_valid_row():
    edges = np.array([np.nan, np.inf, -np.inf, -0.5, 0.0, 1.0, 1.5, 0.9999, REPRESENTATION.max_time_value()])
    halfway = (np.arange(128) + 0.5) / 127  # rounding boundaries
    values = np.concatenate([edges, halfway, np.nextafter(halfway, 0), np.nextafter(halfway, 1),
                             np.random.default_rng(0).uniform(-0.2, 1.2, 3000)]).astype(np.float32)
    rows = np.stack([values, values[::-1], values], axis=-1)
    expected = REPRESENTATION.valid_row(rows)
    compiled = compile_function(REPRESENTATION.valid_steps)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(compiled(rows)), expected)
    assert np.all(np.isin(expected[:, :2], MIDI_GRID))  # the encoder's k / 127, exactly
    assert np.all((expected[:, 2] >= 0) & (expected[:, 2] <= REPRESENTATION.max_time_value()))


def test_unsupported_models_are_refused_naming_the_layer():
    inputs = keras.Input(shape=(None, 3))
    x = keras.layers.Bidirectional(keras.layers.LSTM(4), name="both_ways")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    with pytest.raises(RunError, match="both_ways.*--method window"):
        carried_state_generator(model, REPRESENTATION, HEAD)
    x = keras.layers.LSTM(4, go_backwards=True, name="backwards")(inputs)
    with pytest.raises(RunError, match="backwards"):
        carried_state_generator(keras.Model(inputs, keras.layers.Dense(3)(x)), REPRESENTATION, HEAD)


def test_spread_primers_and_output_paths():
    seed = np.arange(100 * 3, dtype=np.float32).reshape(100, 3)
    primers, starts = spread_primers(seed, 50, 3)
    assert starts.tolist() == [0, 25, 50] and primers.shape == (3, 50, 3)
    np.testing.assert_array_equal(primers[2], seed[50:])
    _, starts = spread_primers(seed[:52], 50, 5)
    assert sorted(set(starts.tolist())) == [0, 1, 2] and starts[0] == 0 and starts[-1] == 2
    assert spread_primers(seed, 50, 1)[1].tolist() == [0]
    assert output_paths("run/generated.mid", 1) == [Path("run/generated.mid")]
    assert [p.name for p in output_paths("run/generated.mid", 3)] == ["generated-1.mid", "generated-2.mid",
                                                                        "generated-3.mid"]
    assert [str(p) for p in output_paths("out/{n}-piece.mid", 2)] == ["out/1-piece.mid", "out/2-piece.mid"]


# -- generate.py ---------------------------------------------------------------------------------

def test_num_outputs_writes_n_playable_files_from_different_primers(trained_run, song_folder, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    assert generate.main(["--seed", str(song_folder / "song4.mid"), "--model", str(run), "--length", "60",
                          "--num-outputs", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    files = sorted(run.glob("generated*.mid"))
    assert [f.name for f in files] == ["generated-1.mid", "generated-2.mid", "generated-3.mid"]
    for path in files:
        assert_playable(path, tempo=500_000)
        assert f"wrote {path}" in out
    assert "primer at row 0," in out and "note:" not in out
    assert len({f.read_bytes() for f in files}) == 3  # different primers, different pieces


def test_num_outputs_with_a_pattern_and_a_short_seed_says_primers_repeat(trained_run, tmp_path, capsys):
    notes = [(0.5 * i, 0.4, 60 + i % 8, 90) for i in range(26)]
    seed = write_song(tmp_path / "short.mid", notes)  # 52 rows: room for 3 primers of 50
    assert generate.main(["--seed", str(seed), "--model", str(trained_run), "--length", "20", "--num-outputs",
                          "5", "--out", str(tmp_path / "take{n}.mid"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "note: " in out and "room for 3 different primers" in out and "2 of the 5 pieces repeat" in out
    for n in range(1, 6):
        assert_playable(tmp_path / f"take{n}.mid")


def test_window_method_from_the_command_line(trained_run, song_folder, tmp_path, capsys):
    outs = {}
    for method in ("window", "carried"):
        outs[method] = tmp_path / f"{method}.mid"
        assert generate.main(["--seed", str(song_folder / "song1.mid"), "--model", str(trained_run),
                              "--length", "12", "--method", method, "--out", str(outs[method]), "--quiet"]) == 0
        assert_playable(outs[method])
    assert "window)" in capsys.readouterr().out


@pytest.mark.parametrize("flag", ["--well-formed", "--no-well-formed"])
def test_abc_sampling_flags_on_a_midi_run_are_one_line_errors(trained_run, song_folder, tmp_path, flag, capsys):
    argv = ["--seed", str(song_folder / "song1.mid"), "--model", str(trained_run), flag, "--quiet"]
    assert generate.main([*argv, "--out", str(tmp_path / "x.mid")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--(no-)well-formed are for abc_chars runs" in err
    assert not (tmp_path / "x.mid").exists()


@pytest.mark.parametrize("argv", [["--num-outputs", "0"], ["--num-outputs", "257"], ["--method", "beam"],
                                  ["--num-outputs", "20", "--length", "60000"]])
def test_bad_generation_flags_get_usage(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        generate.parse_args(["--seed", "x.mid", *argv])
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_generation_code_is_backend_neutral():
    """Only note_matrix/generation/compile.py may name a backend; the rest of generation uses keras.ops."""
    import ast

    import note_matrix.generation

    backends = {"tensorflow", "jax", "jaxlib", "torch"}
    modules = sorted(Path(note_matrix.generation.__file__).parent.glob("*.py"))
    assert len(modules) > 2
    for module in modules:
        if module.name == "compile.py":
            continue
        tree = ast.parse(module.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not {name.split(".")[0] for name in names} & backends, f"{module.name} imports {names}"
