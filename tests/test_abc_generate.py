"""generate.py and evaluate.py on an abc_chars run: tunes as text and MIDI, NLL per character, playable
rate, copy check. One tiny run (8 units, one epoch, --batches stream) on tunes written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from note_matrix.abc import BarIndex, playable, split_bars
from note_matrix.evaluation import copy_check
from note_matrix.generation.tunes import Tune, unescape

PHRASES = ("GABc dedB|dedB dedB|c2ec B2dB|", "ABcd efge|fdec dcBA|GFED CDEF|", "cBAG FGAB|c2c2 BcdB|AGFE D4|")


def tune(number: int) -> str:
    """A tune of 4/4 bars of eighth notes (the unit length), every bar full: playable."""
    first, second = PHRASES[number % 3], PHRASES[(number + 1) % 3]
    return f"X:{number}\nT:Tune {number}\nM:4/4\nL:1/8\nK:G\n|:{first}\n{second}c4 B4:|\n"


@pytest.fixture(scope="module")
def abc_run(tmp_path_factory) -> Path:
    """A run trained by train.py itself on 12 tunes in two .abc files."""
    import train

    base = tmp_path_factory.mktemp("abc")
    corpus = base / "tunes"
    corpus.mkdir()
    (corpus / "reels.abc").write_text("\n".join(tune(n) for n in range(1, 7)))
    (corpus / "jigs.abc").write_text("\n".join(tune(n) for n in range(7, 13)))
    code = train.main(
        [
            "--dataset",
            str(corpus),
            "--data-dir",
            str(base / "data"),
            "--logdir",
            str(base / "logs"),
            "--run-name",
            "abc",
            "--representation",
            "abc_chars",
            "--units",
            "8",
            "--epochs",
            "1",
            "--batches",
            "stream",
            "--window",
            "20",
            "--batch-size",
            "4",
            "--validation-fraction",
            "0.2",
            "--test-fraction",
            "0.2",
            "--quiet",
        ]
    )
    assert code == 0
    return base / "logs" / "abc"


def test_the_written_tunes_are_playable():
    assert all(playable(tune(n)).ok for n in (1, 2, 3))


def test_backslash_escapes_are_read_as_typed():
    assert unescape(r"X:1\nT:A\tB\\n\q") == "X:1\nT:A\tB\\n\\q"


def test_generate_writes_the_tune_after_the_prime(abc_run, tmp_path, capsys):
    import generate

    out = tmp_path / "tune.abc"
    code = generate.main(
        [
            "--model",
            str(abc_run),
            "--prime",
            r"X:1\nT:Tune\nM:4/4\nL:1/8\nK:G\n",
            "--length",
            "60",
            "--random-seed",
            "3",
            "--out",
            str(out),
            "--no-well-formed",
            "--quiet",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0 and "refused" not in printed
    text = out.read_text(encoding="utf-8")
    assert text.startswith("X:1\nT:Tune\nM:4/4\nL:1/8\nK:G\n")
    assert 0 < len(text) - len("X:1\nT:Tune\nM:4/4\nL:1/8\nK:G\n") <= 60
    assert f"wrote {out}: {len(text)} characters" in printed and "random seed 3" in printed
    assert (f"wrote {out.with_suffix('.mid')}" in printed) == out.with_suffix(".mid").exists()


def test_several_tunes_in_one_batch_each_in_its_file(abc_run, tmp_path, capsys):
    import generate

    out = tmp_path / "t.abc"
    assert (
        generate.main(["--model", str(abc_run), "--num-outputs", "3", "--length", "30", "--out", str(out), "--quiet"])
        == 0
    )
    assert sorted(path.name for path in tmp_path.glob("*.abc")) == ["t-1.abc", "t-2.abc", "t-3.abc"]
    assert capsys.readouterr().out.count("wrote ") >= 3


def test_an_unplayable_tune_is_written_as_text_with_the_reason(abc_run, tmp_path, capsys):
    import generate

    out = tmp_path / "short.abc"
    assert (
        generate.main(["--model", str(abc_run), "--prime", r"X:1\n", "--length", "5", "--out", str(out), "--quiet"])
        == 0
    )
    printed = capsys.readouterr().out
    text = out.read_text(encoding="utf-8")
    assert text.startswith("X:1\n") and len(text) <= 9
    reason = playable(text).reason
    assert reason and f"  not playable: {reason}; no .mid written" in printed.splitlines()
    assert not out.with_suffix(".mid").exists()


def test_a_prime_character_the_run_never_saw_is_noted_and_left_out(abc_run, tmp_path, capsys):
    import generate

    out = tmp_path / "odd.abc"
    assert (
        generate.main(["--model", str(abc_run), "--prime", "X:1\nT:é", "--length", "3", "--out", str(out), "--quiet"])
        == 0
    )
    assert "note: --prime holds 1 character(s) the run never saw in training ('é')" in capsys.readouterr().out
    assert out.read_text(encoding="utf-8").startswith("X:1\nT:")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "nowhere"], "nowhere: "),
        (["--seed", "song.mid"], "is an abc_chars run: it needs no --seed"),
        (["--method", "window"], "carried state only"),
    ],
)
def test_errors_are_one_line(abc_run, tmp_path, capsys, argv, message):
    import generate

    argv = [*argv, "--model", str(abc_run)] if argv[0] != "--model" else [argv[0], str(tmp_path / argv[1])]
    assert generate.main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("generate.py: error: ") and message in err and err.count("\n") == 1


def test_evaluate_scores_nll_per_character_and_playable_rate(abc_run, capsys):
    import evaluate

    assert (
        evaluate.main(
            ["--model", str(abc_run), "--split", "validation", "--tunes", "3", "--temperatures", "1.0", "--quiet"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    entry = json.loads((abc_run / "evaluation.json").read_text())["validation"]
    history = json.loads((abc_run / "history.json").read_text())
    # The very number training monitors: the validation stream's NLL per character.
    assert entry["nll_per_character"] == pytest.approx(history["epochs"]["val_loss"][-1], rel=1e-4)
    tunes = entry["temperatures"]["1"]
    assert tunes["tunes"] == 3 and 0 <= tunes["playable"] <= 3 and tunes["copies"]["max_bars"] >= 0
    assert f"NLL {entry['nll_per_character']:.4f} nats per character" in printed
    assert "temperature  playable  rate" in printed and "longest copy (bars)" in printed


def test_the_copy_check_fires_on_a_training_tune():
    training = [tune(n) for n in range(1, 4)]
    index = BarIndex(training)
    assert copy_check([tune(1)], index) == {
        "max_bars": len(split_bars(tune(1))),
        "mean_bars": len(split_bars(tune(1))),
        "tunes_over": 1,
        "flagged": True,
    }
    assert not copy_check(["X:9\nM:4/4\nL:1/8\nK:G\n|C8|D8|E8|F8|\n"], index)["flagged"]


def test_evaluate_flags_generated_tunes_that_are_training_tunes(abc_run, monkeypatch, capsys):
    import evaluate
    from note_matrix.generation import tunes as tune_generation

    split = json.loads((abc_run / "split.json").read_text())
    copied = tune(int(split["train"][0].rpartition(":")[2]) + 6 * split["train"][0].startswith("jigs"))
    monkeypatch.setattr(tune_generation, "generate_tunes", lambda *args, **kwargs: [Tune(copied, True)] * 2)
    assert evaluate.main(["--model", str(abc_run), "--tunes", "2", "--temperatures", "1.0", "--quiet"]) == 0
    printed = capsys.readouterr().out
    entry = json.loads((abc_run / "evaluation.json").read_text())["test"]["temperatures"]["1"]
    assert entry["playable"] == 2 and entry["copies"]["flagged"] and entry["copies"]["max_bars"] > 2
    assert entry["midi_failures"] == {"not_written": 0, "mido": 0, "pretty_midi": 0, "first_error": ""}
    assert entry["statistics"]["generated"]["files"] == 2
    assert "! copy check: at T=1 a tune repeats more than 2 consecutive bars" in printed


class Unchecked:
    """A checker that forbids nothing and refuses once, at drawn character ``refuse_at`` (None: never):
    it is then back at the primer, where the sampler must restore the network's state too."""

    refuse_at = None

    def __init__(self, primer: str, characters: str):
        self.primer, self.text, self.ended, self.refusals, self.piece_ended = primer, primer, False, 0, False
        self.back = 0

    def forbidden(self):
        return frozenset()

    def take(self, symbol: str) -> bool:
        if symbol == "<end>":
            self.ended = True
            return True
        if len(self.text) - len(self.primer) == self.refuse_at and not self.refusals:
            self.refusals, self.text = 1, self.primer
            return False
        self.text += "\0" if symbol in ("<start>", "<unk>") else symbol  # drawn, written as nothing
        return True


class RefusesOnce(Unchecked):
    refuse_at = 7


def test_well_formed_sampling_steps_as_the_compiled_loop_and_restores_the_state_of_a_refused_piece(abc_run):
    from note_matrix import runs
    from note_matrix.config import RunConfig
    from note_matrix.generation.tunes import generate_tunes, generate_well_formed, tune_generator, tune_primer

    config = RunConfig.read(abc_run)
    representation, head = config.build_representation(), config.head()
    generator = tune_generator(runs.load_model(abc_run), representation, head)
    primer = tune_primer(representation, "X:1\n")
    compiled = generate_tunes(generator, representation, head, primer, 2, 40)  # argmax: no sampling
    for checker in (Unchecked, RefusesOnce):
        stepped = generate_well_formed(generator, representation, primer, 2, 40, checker=checker)
        assert [tune.text.replace("\0", "") for tune in stepped] == [tune.text for tune in compiled], checker
        assert [tune.refused for tune in stepped] == [checker.refuse_at is not None] * 2


def test_generate_and_evaluate_well_formed(abc_run, tmp_path, capsys):
    import evaluate
    import generate

    out = tmp_path / "wf.abc"
    argv = ["--model", str(abc_run), "--length", "200", "--random-seed", "1", "--out", str(out)]  # checked by default
    assert generate.main([*argv, "--num-outputs", "2", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("piece(s) refused and drawn again") == 2
    for path in (tmp_path / "wf-1.abc", tmp_path / "wf-2.abc"):
        assert f"wrote {path}: {len(path.read_text(encoding='utf-8'))} characters" in printed
    argv = ["--model", str(abc_run), "--split", "validation", "--tunes", "2", "--temperatures", "1.0", "--quiet"]
    assert evaluate.main([*argv, "--well-formed"]) == 0
    printed = capsys.readouterr().out
    entry = json.loads((abc_run / "evaluation.json").read_text())["validation_well_formed"]
    assert entry["well_formed"] and entry["temperatures"]["1"]["mean_refused"] >= 0
    assert "well-formed sampling" in printed and "refused/tune" in printed
