"""The abc_chars representation and datasets of ABC tunes: symbols, the vocabulary, keys per tune."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from note_matrix import datasets as ds
from note_matrix.errors import DatasetError, MidiError
from note_matrix.representations import create, from_json
from note_matrix.representations.abc_chars import END, START, UNK, AbcChars

# Every kind of character a tune may hold: ABC's own, a tab, a backslash, quotes, accents and
# guillemets, a character beyond the Basic Multilingual Plane (line endings are "\n": read_tunes
# turns every other line ending into one).
ODD_TUNE = 'X:7\nT:Ça va — «très» bien 🎻 \\ "quoted"\tT2\nM:6/8\nK:G\n"Am"a2b c\'de|~f^g_a =B,,|]\n'


def tune(number: int, notes: str = "abcd efga|gfed cBAG|") -> str:
    return f"X:{number}\nT:Tune {number}\nM:4/4\nL:1/8\nK:D\n|:{notes * 3}:|\n"


def write_corpus(folder: Path) -> Path:
    """Two good corpus files of 3 tunes each, a binary file and one without an X: line."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "reels.abc").write_text("% a corpus\n\n" + "\n\n".join(tune(n) for n in (1, 2, 3)) + "\n\n")
    sub = folder / "more"
    sub.mkdir()
    (sub / "jigs.abc").write_text("\n".join([tune(1, "dcB AGF|"), ODD_TUNE, tune(3, "A2B c3|")]))
    (folder / "junk.abc").write_bytes(bytes(range(256)) * 8)
    (folder / "notes.abc").write_text("% a header only\nT:no tune here\n")
    return folder


def fitted(*texts: str, tmp_path: Path) -> AbcChars:
    representation = AbcChars()
    paths = []
    for number, text in enumerate(texts):
        paths.append(tmp_path / f"fit{number}.abc")
        paths[-1].write_text(text)
    representation.fit(paths)
    return representation


# -- symbols ------------------------------------------------------------------------------


def test_text_to_symbols_to_text_is_exact_with_unusual_characters(tmp_path):
    representation = fitted(ODD_TUNE, tmp_path=tmp_path)
    path = tmp_path / "odd.abc"
    path.write_text(ODD_TUNE)
    steps = representation.encode(path).steps
    assert steps.dtype == np.int32 and steps.shape == (len(ODD_TUNE) + 2, 1)
    assert steps[0, 0] == START and steps[-1, 0] == END and UNK not in steps
    assert representation.decode(steps, {}, tmp_path / "back.abc") == len(ODD_TUNE)
    assert (tmp_path / "back.abc").read_text(encoding="utf-8") == ODD_TUNE
    assert representation.text(representation.symbols(ODD_TUNE)) == ODD_TUNE


def test_an_unseen_character_is_unk_and_decodes_to_nothing(tmp_path):
    representation = fitted(tune(1), tmp_path=tmp_path)
    assert "é" not in representation.characters
    symbols = representation.symbols("K:é\n")
    assert symbols.tolist() == [START, representation.symbols("K")[1], representation.symbols(":")[1], UNK,
                                representation.symbols("\n")[1], END]
    assert representation.text(symbols) == "K:\n"


def test_the_vocabulary_is_every_training_character_in_code_point_order_and_saved(tmp_path):
    representation = fitted(tune(1), "X:2\nK:C\nzé|\n", tmp_path=tmp_path)
    assert list(representation.characters) == sorted(set(tune(1) + "X:2\nK:C\nzé|\n"))
    assert representation.vocabulary == 3 + len(representation.characters)
    saved = json.loads(json.dumps(representation.to_json()))
    again = from_json(saved)
    assert again.characters == representation.characters and again.inputs() == representation.inputs()
    assert again.head("categorical", 1).width == representation.vocabulary


def test_a_file_of_several_tunes_gives_each_wrapped_in_start_and_end(tmp_path):
    representation = fitted(tune(1), tmp_path=tmp_path)
    path = tmp_path / "two.abc"
    path.write_text(tune(1) + "\n\n" + tune(2))
    tokens = representation.encode(path).steps[:, 0]
    assert (tokens == START).sum() == 2 and (tokens == END).sum() == 2
    first_end = int(np.flatnonzero(tokens == END)[0])
    assert tokens[first_end + 1] == START
    assert representation.text(tokens) == tune(1)  # decoding stops at the first end


def test_decoding_any_tokens_never_fails_and_refuses_out_of_range(tmp_path):
    representation = fitted(tune(1), tmp_path=tmp_path)
    rng = np.random.default_rng(0)
    for _ in range(20):
        steps = rng.integers(0, representation.vocabulary, (rng.integers(0, 300), 1))
        written = representation.decode(steps, {}, tmp_path / "any.abc")
        assert written == len((tmp_path / "any.abc").read_text(encoding="utf-8"))
    inner_start = [representation.symbols("a")[1], START, UNK, representation.symbols("b")[1], END, 5]
    assert representation.text(np.array(inner_start)) == "ab"
    with pytest.raises(MidiError, match="tokens must lie in"):
        representation.decode(np.array([[representation.vocabulary]]), {}, tmp_path / "bad.abc")


@pytest.mark.parametrize("data", [{"characters": "aa"}, {"characters": 3}, {"embedding": 0}, {"unknown": 1}])
def test_bad_saved_options_are_value_errors(data):
    with pytest.raises(ValueError):
        AbcChars.from_json({"name": "abc_chars", **data})


def test_binary_and_tuneless_files_are_refused_with_the_reason(tmp_path):
    folder = write_corpus(tmp_path / "corpus")
    representation = create("abc_chars")
    with pytest.raises(MidiError, match="NUL bytes"):
        representation.encode(folder / "junk.abc")
    with pytest.raises(MidiError, match="no ABC tune"):
        representation.encode(folder / "notes.abc")


# -- datasets of tunes --------------------------------------------------------------------


def test_a_folder_of_abc_files_is_keyed_by_tune_and_bad_files_are_skipped(tmp_path):
    folder = write_corpus(tmp_path / "corpus")
    files = ds.resolve_dataset(str(folder), tmp_path / "data", suffixes=(".abc",))
    assert files.keys == [f"more/jigs.abc:{n}" for n in (1, 2, 3)] + [f"reels.abc:{n}" for n in (1, 2, 3)]
    assert set(files.skipped) == {"junk.abc", "notes.abc"}
    assert "NUL bytes" in files.skipped["junk.abc"] and "X:" in files.skipped["notes.abc"]
    assert files.path("more/jigs.abc:2").read_text(encoding="utf-8") == ODD_TUNE
    assert files.path("reels.abc:3").read_text(encoding="utf-8") == tune(3)
    assert not files.path("reels.abc:1").is_relative_to(folder)  # the user's folder is never written
    # Without suffixes, a folder with no MIDI file is read as ABC; MIDI suffixes find nothing.
    assert ds.resolve_dataset(str(folder), tmp_path / "data").keys == files.keys
    with pytest.raises(DatasetError, match="no .mid or .midi files"):
        ds.resolve_dataset(str(folder), tmp_path / "data", suffixes=(".mid", ".midi"))


def test_the_tunes_written_are_not_read_as_a_corpus_when_the_data_folder_is_inside_the_dataset(tmp_path):
    folder = write_corpus(tmp_path / "corpus")
    first = ds.resolve_dataset(str(folder), folder / "data", suffixes=(".abc",))
    assert first.path(first.keys[0]).is_relative_to(folder / "data")
    assert ds.resolve_dataset(str(folder), folder / "data", suffixes=(".abc",)).keys == first.keys


def test_an_unchanged_tune_is_not_written_again_and_a_changed_one_is_encoded_again(tmp_path):
    folder = write_corpus(tmp_path / "corpus")
    data_dir = tmp_path / "data"
    representation = create("abc_chars")
    files = ds.resolve_dataset(str(folder), data_dir, suffixes=(".abc",))
    first = ds.encode_dataset(files, representation, data_dir, progress=False)
    assert first.parsed_files == 6
    stamps = {key: os.stat(files.path(key)).st_mtime_ns for key in files.keys}
    text = (folder / "reels.abc").read_text()
    (folder / "reels.abc").write_text(text.replace("Tune 2", "Tune two"))
    files = ds.resolve_dataset(str(folder), data_dir, suffixes=(".abc",))
    assert {key: os.stat(files.path(key)).st_mtime_ns for key in files.keys if key != "reels.abc:2"} == {
        key: stamp for key, stamp in stamps.items() if key != "reels.abc:2"
    }
    again = ds.encode_dataset(files, representation, data_dir, progress=False)
    assert again.parsed_files == 1 and again.fingerprint != first.fingerprint
    assert len(again.arrays["reels.abc:2"]) == len(first.arrays["reels.abc:2"]) + 2


def test_worker_processes_encode_tunes_as_this_process_does(tmp_path):
    folder = write_corpus(tmp_path / "corpus")
    representation = create("abc_chars")
    files = ds.resolve_dataset(str(folder), tmp_path / "data", suffixes=(".abc",))
    here = ds.encode_dataset(files, representation, tmp_path / "data", use_cache=False, progress=False)
    there = ds.encode_dataset(files, representation, tmp_path / "other", use_cache=False, progress=False, workers=2)
    assert list(there.arrays) == list(here.arrays) and there.skipped == here.skipped
    assert all(np.array_equal(there.arrays[key], here.arrays[key]) for key in here.arrays)


def test_the_split_is_by_tune_and_seeded(tmp_path):
    folder = write_corpus(tmp_path / "corpus")
    files = ds.resolve_dataset(str(folder), tmp_path / "data", suffixes=(".abc",))
    split = ds.split_by_file(files.keys, validation_fraction=0.2, test_fraction=0.2, seed=3)
    assert sorted(key for part in split.values() for key in part) == sorted(files.keys)
    assert split == ds.split_by_file(files.keys, validation_fraction=0.2, test_fraction=0.2, seed=3)
    assert split != ds.split_by_file(files.keys, validation_fraction=0.2, test_fraction=0.2, seed=4)


def test_a_registered_dataset_of_another_format_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="holds .abc files"):
        ds.resolve_dataset("nottingham-abc", tmp_path / "data", suffixes=(".mid", ".midi"))
    with pytest.raises(DatasetError, match="holds .mid and .midi files"):
        ds.resolve_dataset("pop", tmp_path / "data", suffixes=(".abc",))


def test_nottingham_abc_from_the_mirror_is_1034_tunes(mirror, monkeypatch, tmp_path):
    monkeypatch.setenv(ds.MIRROR_ENV, str(mirror))
    files = ds.resolve_dataset("nottingham-abc", tmp_path / "data")
    assert len(files.keys) == 1034 and files.skipped == {}
    assert files.root == tmp_path / "data" / "nottingham-abc"
    assert sorted(p.name for p in files.root.iterdir()) == sorted(ds.load_registry("nottingham-abc")["files"])
    assert files.path("jigs.abc:2").read_text().startswith("X: 2\nT:Abacus\n")


# -- training ------------------------------------------------------------------------------


def _train(argv: list[str]) -> int:
    import train

    return train.main([*argv, "--quiet"])


def test_train_on_a_folder_of_abc_files_fits_the_vocabulary_on_the_training_tunes(tmp_path, capsys):
    folder = write_corpus(tmp_path / "corpus")
    logs = tmp_path / "logs"
    code = _train(["--dataset", str(folder), "--representation", "abc_chars", "--units", "8", "--epochs", "1",
                   "--window", "20", "--data-dir", str(tmp_path / "data"), "--logdir", str(logs), "--run-name", "abc",
                   "--sample-every", "1"])
    assert code == 0
    out = capsys.readouterr().out
    # TensorBoard's samples are MIDI: asked for, they are declined in one line, not failed each epoch
    assert "no samples in TensorBoard: abc_chars writes .abc files, not MIDI" in out and "no sample after" not in out
    assert f"python generate.py --model {logs / 'abc'}\n" in out  # no --seed: a tune needs none
    run = logs / "abc"
    assert {"model.keras", "config.json", "split.json", "history.json", "skipped.txt"} <= {p.name for p in run.iterdir()}
    split = json.loads((run / "split.json").read_text())
    assert sorted(split["train"] + split["validation"] + split["test"]) == sorted(
        ds.resolve_dataset(str(folder), tmp_path / "data").keys
    )
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["batches"] == "stream" and config["model"]["monitor"] == "loss"
    files = ds.resolve_dataset(str(folder), tmp_path / "data")
    training_text = "".join(files.path(key).read_text(encoding="utf-8") for key in split["train"])
    assert config["representation"]["characters"] == "".join(sorted(set(training_text)))
    skipped = (run / "skipped.txt").read_text()
    assert "junk.abc\t" in skipped and "notes.abc\t" in skipped


def test_train_on_nottingham_abc_from_the_mirror(mirror, monkeypatch, tmp_path):
    monkeypatch.setenv(ds.MIRROR_ENV, str(mirror))
    code = _train(["--dataset", "nottingham-abc", "--representation", "abc_chars", "--max-files", "30",
                   "--epochs", "1", "--units", "16", "--data-dir", str(tmp_path / "data"),
                   "--logdir", str(tmp_path / "logs"), "--run-name", "nottingham"])
    assert code == 0
    split = json.loads((tmp_path / "logs" / "nottingham" / "split.json").read_text())
    assert len(split["train"] + split["validation"] + split["test"]) == 30
    assert all(key.startswith("ashover.abc:") for key in split["train"])
