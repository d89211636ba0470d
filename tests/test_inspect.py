"""inspect_neurons.py and note_matrix.inspection: symbols, features, layout, heatmaps, the script."""

from __future__ import annotations

import shutil
from typing import ClassVar

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import inspect_neurons
from models import InputSpec, ModelConfig
from models.builder import build_model
from note_matrix.config import RunConfig
from note_matrix.inspection import InspectionError
from note_matrix.inspection.activations import layer_activations, pick_layer
from note_matrix.inspection.features import abc_features, correlations, rank_units, token_features
from note_matrix.inspection.heatmap import heatmap_png
from note_matrix.inspection.labels import is_text, symbol_labels
from note_matrix.inspection.layout import grid_layout, text_layout
from note_matrix.inspection.sequence import generated_tokens, primer_tokens
from note_matrix.representations.chord_tokens import ChordTokens
from note_matrix.representations.pitch_sequence import PitchSequence
from note_matrix.runs import load_model
from note_matrix.training.sample_logger import png_size

TUNE = 'X:1\nT:Reel\n% a comment\nM:4/4\nK:G\n|:"G"GA c\'d,|B2!trill!A[K:D]F:|\n'
NAN = np.nan


class Characters:
    """A stand-in for the abc_chars representation: what ``symbol_labels`` reads of it."""

    name = "abc_chars"
    symbols: ClassVar[list[str]] = ["<start>", "<end>", "<unk>", *sorted(set(TUNE))]


def abc_symbols(text: str = TUNE) -> list[str]:
    return ["<start>", *text, "<end>"]


@pytest.fixture(scope="module")
def token_run(song_folder, tmp_path_factory):
    """A pitch_sequence run trained by train.py: an LSTM of 8 units, one epoch."""
    import train

    base = tmp_path_factory.mktemp("inspect")
    assert train.main(["--dataset", str(song_folder), "--data-dir", str(base / "data"), "--logdir", str(base / "logs"),
                       "--run-name", "tokens", "--representation", "pitch_sequence", "--units", "8", "--epochs", "1",
                       "--quiet"]) == 0
    return base / "logs" / "tokens"


@pytest.fixture
def run_copy(token_run, tmp_path):
    """A copy of the token run that a test may write into."""
    return shutil.copytree(token_run, tmp_path / "run")


@pytest.fixture(scope="module")
def abc_run(tmp_path_factory):
    """An abc_chars run trained by train.py on 18 hand-written tunes: an LSTM of 8 units, one epoch."""
    pytest.importorskip("note_matrix.representations.abc_chars")
    import train

    base = tmp_path_factory.mktemp("abc")
    folder = base / "tunes"
    folder.mkdir()
    for n in range(6):
        (folder / f"t{n}.abc").write_text("".join(f"X:{k}\nT:Tune {k}\nM:4/4\nL:1/8\nK:G\n"
                                                  f'|:"G"GABc dedB|"D"A2FA DEFA:|\n|:"C"cBAG FGAB|"G"G4 G4:|\n\n'
                                                  for k in range(3)))
    assert train.main(["--dataset", str(folder), "--data-dir", str(base / "data"), "--logdir", str(base / "logs"),
                       "--run-name", "abc", "--representation", "abc_chars", "--units", "8", "--window", "32",
                       "--epochs", "1", "--quiet"]) == 0
    return base / "logs" / "abc"


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("inspect_neurons.py: error: "), lines
    return lines[0]


# -- symbols and features ------------------------------------------------------------------------------------


def test_symbol_labels_name_pitches_chords_and_special_tokens():
    melody = symbol_labels(PitchSequence())
    assert len(melody) == 129 and melody[60] == "C4" and melody[61] == "C#4" and melody[21] == "A0"
    assert melody[128] == "<end>"
    pitches = symbol_labels(ChordTokens())
    assert len(pitches) == 130 and pitches[128:] == ["<next>", "<end>"]
    chords = symbol_labels(ChordTokens(chord_symbols=True, chords=[[60, 64, 67]]))
    assert chords == ["<rest>", "<end>", "<unk>", "C4+E4+G4"]
    assert symbol_labels(Characters()) == Characters.symbols


def test_abc_chars_labels_are_its_special_symbols_then_its_characters():
    abc_chars = pytest.importorskip("note_matrix.representations.abc_chars")
    representation = abc_chars.AbcChars(characters="\n :ABC|")
    assert symbol_labels(representation) == ["<start>", "<end>", "<unk>", "\n", " ", ":", "A", "B", "C", "|"]
    assert is_text(representation) and is_text(Characters()) and not is_text(PitchSequence())


def test_abc_features_of_a_hand_made_tune():
    features = abc_features(abc_symbols())
    header = len("X:1\nT:Reel\n% a comment\nM:4/4\nK:G\n")
    body = '|:"G"GA c\'d,|B2!trill!A[K:D]F:|\n'
    marks = {  # one character of the body each: the feature's value, "." where it is 0 (NaN for pitch)
        "bar line": "11..........1................11.",
        "chord symbol": '..111...........................',
        "note pitch": {body.index("GA"): 4, body.index("A "): 5, body.index("c'"): 14, body.index("d,"): 1,
                       body.index("B2"): 6, body.index("A["): 5, body.index("F:"): 3},
    }
    assert len(marks["bar line"]) == len(marks["chord symbol"]) == len(body)
    pitch = np.full(len(body), NAN)
    pitch[list(marks["note pitch"])] = list(marks["note pitch"].values())
    np.testing.assert_array_equal(features["in header"], [NAN] + [1] * header + [0] * len(body) + [NAN])
    for name in ("bar line", "chord symbol"):
        expected = [float(mark == "1") for mark in marks[name]]
        np.testing.assert_array_equal(features[name], [NAN, *[0] * header, *expected, NAN], err_msg=name)
    np.testing.assert_array_equal(features["note pitch"], [NAN, *[NAN] * header, *pitch, NAN])


def test_the_header_starts_again_with_each_tune_and_ends_at_a_music_line():
    symbols = [*abc_symbols("X:1\nK:D\nDE|\n"), *abc_symbols("X:2\nK:A\nA|\n")]
    header = abc_features(symbols)["in header"]
    assert "".join("." if np.isnan(v) else str(int(v)) for v in header) == ".11111111" "0000" ".." "11111111" "000" "."
    no_header = abc_features(list("DE|\nT:not a header\n"))["in header"]  # the body from the start: no header
    assert not no_header.any()


def test_token_features_read_the_labels():
    labels = ["C4", "E4+G4", "<next>", "<rest>", "<end>"]
    features = token_features(labels)
    np.testing.assert_array_equal(features["end token"], [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(features["frame end"], [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(features["rest"], [0, 0, 0, 1, 0])
    np.testing.assert_array_equal(features["pitch height"], [60, 64, NAN, NAN, NAN])
    assert "frame end" not in token_features(["C4", "<end>"])


def test_correlations_skip_undefined_steps_and_units_that_do_not_vary():
    rng = np.random.default_rng(0)
    activations = rng.normal(size=(40, 3))
    activations[:, 2] = 0.5  # constant: no correlation
    feature = rng.normal(size=40)
    feature[::4] = NAN
    r = correlations(activations, feature)
    defined = ~np.isnan(feature)
    assert r[0] == pytest.approx(np.corrcoef(activations[defined, 0], feature[defined])[0, 1])
    assert np.isnan(r[2])
    assert np.isnan(correlations(activations, np.full(40, NAN))).all()


def test_top_ranks_a_planted_unit_first():
    symbols = abc_symbols(TUNE * 3)
    features = abc_features(symbols)
    activations = np.tanh(np.random.default_rng(1).normal(size=(len(symbols), 8)))
    activations[:, 5] = np.nan_to_num(features["bar line"]) * 1.8 - 0.9
    activations[:, 2] = -np.nan_to_num(features["in header"])  # second: perfect too, but anti-correlated
    ranked = rank_units(activations, features)
    assert (ranked[0].unit, ranked[0].feature) in {(5, "bar line"), (2, "in header")}
    assert {(s.unit, s.feature) for s in ranked[:2]} == {(5, "bar line"), (2, "in header")}
    assert ranked[0].correlation == pytest.approx(1.0) or ranked[0].correlation == pytest.approx(-1.0)
    assert abs(ranked[2].correlation) < 0.9


# -- layout and drawing ------------------------------------------------------------------------------------


def test_text_layout_breaks_at_newlines_and_wraps():
    layout = text_layout(abc_symbols(), columns=20)
    lines = TUNE.count("\n")
    body = '|:"G"GA c\'d,|B2!trill!A[K:D]F:|\n'
    assert layout.rows == lines + 1 + 1  # the long body line wraps once, <end> goes on a line of its own
    assert layout.texts[0] == "<start>" and layout.width[0] == 7 and layout.texts[4] == "↵"
    assert layout.columns == 20 and (layout.column + layout.width).max() <= 20
    assert len(body) > 20
    grid = grid_layout(["C4", "C#4", "<end>"] * 10, columns=20)
    assert set(grid.width) == {6} and grid.rows == 10  # three cells of 6 a line


def test_heatmap_png_has_the_size_of_its_text(tmp_path):
    symbols = abc_symbols(TUNE * 4)
    values = np.sin(np.arange(len(symbols)) / 5)
    layout = text_layout(symbols)
    png = heatmap_png(layout, values, title="test\nunit 0")
    width, height = png_size(png)
    assert layout.rows == 4 * TUNE.count("\n") + 1
    assert width == 650  # 5-inch minimum text area + 1.5 inches, at 100 dpi
    assert 100 * (layout.rows * 0.2 + 1.1) - 2 <= height <= 100 * (layout.rows * 0.2 + 1.1) + 2
    with pytest.raises(ValueError):
        heatmap_png(layout, values[:-1])


# -- the model side ----------------------------------------------------------------------------------------


def test_a_layer_returning_its_last_step_is_read_at_every_step():
    model = build_model(ModelConfig(units=8, targets="last", head="categorical"),
                        InputSpec("tokens", 1, vocabulary=20, embedding=4))
    layer = pick_layer(model)
    assert layer.name == "lstm" and not layer.return_sequences
    assert pick_layer(model, "1") is layer and pick_layer(model, "lstm") is layer
    tokens = np.random.default_rng(2).integers(0, 20, 30)
    activations = layer_activations(model, layer, tokens)
    last = keras.Model(model.input, layer.output)(tokens.reshape(1, -1, 1).astype("int32"))
    assert activations.shape == (30, 8)
    np.testing.assert_allclose(activations[-1], keras.ops.convert_to_numpy(last)[0], atol=1e-5)
    with pytest.raises(InspectionError, match="layers are lstm \\(or 1..1\\)"):
        pick_layer(model, "2")


def test_generation_runs_from_a_primer_and_stops_after_end(token_run):
    config = RunConfig.read(token_run)
    representation = config.build_representation()
    labels = symbol_labels(representation)
    tokens = generated_tokens(load_model(token_run), representation, config.head(), np.array([60], np.int32), 40,
                              labels, progress=False)
    assert tokens[0] == 60 and 2 <= len(tokens) <= 41
    ends = np.flatnonzero(tokens == 128)
    assert len(ends) == 0 or ends[0] == len(tokens) - 1
    with pytest.raises(InspectionError, match="no <start>"):
        primer_tokens(labels)
    np.testing.assert_array_equal(primer_tokens(Characters.symbols, "K:\u00e9"),
                                  [0, Characters.symbols.index("K"), Characters.symbols.index(":"), 2])


# -- the script --------------------------------------------------------------------------------------------


def test_script_writes_the_png_and_the_tensorboard_image(run_copy, song_folder, capsys):
    assert inspect_neurons.main(["--model", str(run_copy), "--neuron", "3", "--text",
                                 str(song_folder / "song0.mid"), "--quiet"]) == 0
    png = run_copy / "inspect" / "lstm-unit-3.png"
    assert f"wrote {png}" in capsys.readouterr().out
    width, height = png_size(png.read_bytes())
    assert 600 <= width <= 1000 and 150 <= height <= 800
    events = EventAccumulator(str(run_copy / "inspect"), size_guidance={"images": 0})
    events.Reload()
    assert events.Tags()["images"] == ["neuron/lstm/3"]
    image = events.Images("neuron/lstm/3")[0]
    assert (image.width, image.height, image.step) == (width, height, 0)


def test_script_top_prints_the_table_and_draws_each_unit(run_copy, song_folder, tmp_path, capsys):
    out = tmp_path / "pictures" / "heat.png"
    assert inspect_neurons.main(["--model", str(run_copy), "--top", "2", "--text", str(song_folder / "song1.mid"),
                                 "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].endswith("steps, song1.mid") and printed[1].split() == ["unit", "feature", "r"]
    rows = [line.split() for line in printed[2:4]]
    units = [int(row[0]) for row in rows]
    assert all(0 <= unit < 8 for unit in units) and len(set(units)) == 2
    assert all(" ".join(row[1:-1]) in {"end token", "pitch height"} for row in rows)
    assert abs(float(rows[0][-1])) >= abs(float(rows[1][-1]))
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(f"heat-unit-{u}.png" for u in units)


def test_an_abc_run_draws_a_generated_tune_the_same_for_the_same_seed(abc_run, tmp_path, capsys):
    run = shutil.copytree(abc_run, tmp_path / "run")
    flags = ["--model", str(run), "--length", "80", "--random-seed", "7", "--quiet"]
    assert inspect_neurons.main([*flags, "--neuron", "2"]) == 0
    assert inspect_neurons.main([*flags, "--neuron", "2", "--out", str(tmp_path / "again.png")]) == 0
    assert "generated at temperature 1, random seed 7" in capsys.readouterr().out
    assert (run / "inspect" / "lstm-unit-2.png").read_bytes() == (tmp_path / "again.png").read_bytes()
    assert inspect_neurons.main([*flags, "--neuron", "2", "--prime", "X:1\\nK:G\\n", "--temperature", "0"]) == 0
    assert "generated at argmax" in capsys.readouterr().out
    events = EventAccumulator(str(run / "inspect"), size_guidance={"images": 0})
    events.Reload()
    assert [image.step for image in events.Images("neuron/lstm/2")] == [0, 1, 2]


def test_an_abc_run_ranks_units_by_the_abc_features_of_a_file(abc_run, tmp_path, capsys):
    tune = tmp_path / "tune.abc"
    tune.write_text('X:1\nT:Reel\nM:4/4\nK:D\n|:"D"DFAd fdAF|"G"GBdg "A"fedc:|\n')
    run = shutil.copytree(abc_run, tmp_path / "run")
    assert inspect_neurons.main(["--model", str(run), "--top", "2", "--text", str(tune), "--quiet"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "56 steps, tune.abc" and printed[1].split() == ["unit", "feature", "r"]
    assert all(" ".join(line.split()[1:-1]) in {"bar line", "in header", "note pitch", "chord symbol"}
               for line in printed[2:4])
    assert len(list((run / "inspect").glob("lstm-unit-*.png"))) == 2


@pytest.mark.parametrize("flags, message", [
    (["--neuron", "999"], "the layer lstm has 8 units"),
    (["--neuron", "0", "--layer", "gru"], "recurrent layers are lstm"),
    (["--neuron", "0"], "no <start> to generate from"),
    (["--neuron", "0", "--prime", "X:1"], "--prime is text, for ABC runs"),
    (["--neuron", "0", "--text", "missing.mid"], "missing.mid"),
])
def test_script_errors_are_one_line(run_copy, flags, message, capsys):
    assert inspect_neurons.main(["--model", str(run_copy), *flags, "--quiet"]) == 2
    assert message in one_error_line(capsys)


def test_a_missing_run_and_a_run_without_tokens_are_one_line(trained_run, tmp_path, capsys):
    assert inspect_neurons.main(["--model", str(tmp_path / "no-such-run"), "--neuron", "0"]) == 2
    assert "no-such-run" in one_error_line(capsys)
    assert inspect_neurons.main(["--model", str(trained_run), "--neuron", "0"]) == 2
    assert "note_matrix steps are not tokens" in one_error_line(capsys)

